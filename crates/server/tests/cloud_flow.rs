//! The whole cloud path on loopback: accounts in the Cognito emulator, the real server with a
//! tiny model, the desktop's client saving into a real library; then what other users, stale
//! links and bad requests get.

mod common;

#[path = "../../cloud/tests/common/mod.rs"]
mod cognito;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use selfdiffusion_cloud::{
    follow_cloud_job, follow_cloud_upscale, restored, run_cloud_job, submit_cloud_job,
    submit_cloud_upscale, Accounts, CloudClient, CloudError, CloudJobEvent, GenerateRequest,
    PendingJob, PendingJobs, Status, StyleRef,
};
use selfdiffusion_library::Library;
use selfdiffusion_protocol::LoraRef;
use selfdiffusion_server::config::Limits;

struct Cloud {
    _moto: cognito::Moto,
    accounts: Arc<Accounts>,
    server: common::Running,
}

async fn cloud(limits: Limits) -> Option<Cloud> {
    let moto = cognito::moto()?;
    let config = cognito::pool(&moto.url, false).await;
    let issuer = format!(
        "https://cognito-idp.{}.amazonaws.com/{}",
        config.region, config.user_pool_id
    );
    let jwks = format!("{}/{}/.well-known/jwks.json", moto.url, config.user_pool_id);
    let server = common::start(&issuer, &jwks, &config.client_id, limits).await;
    Some(Cloud {
        accounts: Arc::new(Accounts::new(config)),
        _moto: moto,
        server,
    })
}

async fn user(accounts: &Accounts, name: &str) -> selfdiffusion_cloud::Tokens {
    accounts
        .sign_up(&format!("{name}@example.com"), name, cognito::PASSWORD)
        .await
        .unwrap();
    accounts.confirm_sign_up(name, "123456").await.unwrap();
    accounts.log_in(name, cognito::PASSWORD).await.unwrap()
}

/// A style of the user's own: the server knows it only from the request.
fn brass() -> selfdiffusion_styles::Style {
    selfdiffusion_styles::Style {
        name: "Brass".into(),
        category: "User".into(),
        prompt: "{prompt}, cast in brass".into(),
        negative_prompt: "rust".into(),
        description: String::new(),
    }
}

/// A PNG of `width`×`height` (a gradient), and the same in base64.
fn png(width: u32, height: u32) -> Vec<u8> {
    let rgb: Vec<u8> = (0..width * height * 3).map(|i| (i % 253) as u8).collect();
    selfdiffusion_recipe::encode_png(width, height, &rgb, &Default::default()).unwrap()
}

fn png_base64(width: u32, height: u32) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(png(width, height))
}

fn request(samples: u32, steps: u32) -> GenerateRequest {
    GenerateRequest {
        prompt: "a lighthouse at dusk".into(),
        samples,
        negative_prompt: Some("fog".into()),
        styles: Some(vec![
            StyleRef::Named(selfdiffusion_styles::builtin()[0].name.to_uppercase()),
            StyleRef::Inline(brass()),
        ]),
        steps: Some(steps),
        guidance: Some(6.0),
        seed: Some(7),
        width: Some(64),
        height: Some(64),
        ..GenerateRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_up_log_in_generate_and_save_with_the_recipe() {
    let Some(cloud) = cloud(Limits::default()).await else {
        return;
    };
    let base = &cloud.server.base;
    let tokens = user(&cloud.accounts, "ana").await;

    let (status, _) = common::post(&format!("{base}/health"), None, "").await;
    assert_eq!(status, 405, "health is a GET");
    let (status, _, body) = common::get(&format!("{base}/health"), None).await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (health["status"].as_str(), health["model"].as_str()),
        (Some("ok"), Some("tiny"))
    );

    // The access token has expired: the client refreshes it before the first call.
    let stale = tokens
        .clone()
        .expiring_at(SystemTime::now() - Duration::from_secs(60));
    let client = CloudClient::new(base, cloud.accounts.clone(), stale);
    assert_eq!(
        client.server_info().await.unwrap().model.as_deref(),
        Some("tiny")
    );
    // The limits clients show come from the server: its configuration within the model's (the
    // tiny UNet's two levels allow sides from 16 px, in steps of 8).
    let limits = client.limits().await.unwrap();
    assert_eq!(
        (limits.min_side, limits.side_step, limits.max_side),
        (16, 8, 1024)
    );
    assert_eq!((limits.max_count, limits.max_steps), (4, 100));
    assert_eq!(limits.max_prompt_chars, Some(2000));
    // A LoRA the server has, listed in /health and named in the request.
    let loras = cloud.server.data.join("loras");
    std::fs::create_dir_all(&loras).unwrap();
    common::engine::tiny_lora(&loras.join("glow.safetensors"));
    assert_eq!(
        client.server_info().await.unwrap().loras,
        Some(vec!["glow".to_owned()])
    );
    let dir = tempfile::tempdir().unwrap();
    let library = Arc::new(Library::open(dir.path()).unwrap());
    let project = library.create_project("Cloud", None).unwrap();
    let mut events = Vec::new();
    let request = GenerateRequest {
        loras: Some(vec![LoraRef {
            name: "glow".into(),
            weight: 0.5,
        }]),
        ..request(2, 2)
    };
    let saved = run_cloud_job(
        &client,
        &request,
        library.clone(),
        project.id,
        Duration::from_secs(120),
        &AtomicBool::new(false),
        &mut |e| events.push(e),
    )
    .await
    .unwrap();
    assert!(
        client.tokens().await.expires_at() > SystemTime::now(),
        "refreshed"
    );
    assert_eq!(saved.len(), 2);

    let job_id = match &events[0] {
        CloudJobEvent::Submitted(job) => job.job_id.clone(),
        other => panic!("first event {other:?}"),
    };
    let statuses: Vec<Status> = events
        .iter()
        .filter_map(|e| match e {
            CloudJobEvent::Status(s) => Some(s.status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses.last(), Some(&Status::Succeeded));
    for (i, id) in saved.iter().enumerate() {
        let image = library.image(*id).unwrap();
        assert_eq!((image.summary.width, image.summary.height), (64, 64));
        let recipe = &image.recipe;
        assert_eq!(recipe.backend.as_deref(), Some("cloud"));
        assert_eq!(recipe.job_id.as_deref(), Some(job_id.as_str()));
        // The recipe the server embedded: the prompt the model saw (a built-in style found by
        // name in any case, then the user's own style sent as its text), what the user typed
        // beside it, and the scheduler it ran.
        let style = selfdiffusion_styles::builtin()[0].clone();
        let (styled, negative) =
            selfdiffusion_styles::apply("a lighthouse at dusk", "fog", &[&style, &brass()]);
        assert_eq!(recipe.prompt, styled);
        assert_eq!(recipe.negative_prompt, negative);
        assert_eq!(recipe.extra["user_prompt"], "a lighthouse at dusk");
        assert_eq!(recipe.extra["user_negative_prompt"], "fog");
        assert_eq!(recipe.seed, Some(7 + i as u64));
        assert_eq!(recipe.styles, [style.name.clone(), "Brass".to_owned()]);
        assert!(recipe.scheduler.is_some(), "{recipe:?}");
        assert_eq!(
            recipe
                .loras
                .iter()
                .map(|l| (l.name.as_str(), l.weight))
                .collect::<Vec<_>>(),
            [("glow", 0.5)]
        );
        // Kept as the server wrote it: the recipe embedded once, by the server.
        let stored = std::fs::read(library.path_of(&image.summary.file)).unwrap();
        let served = std::fs::read(
            cloud
                .server
                .data
                .join("images")
                .join(&job_id)
                .join(format!("{i}.png")),
        )
        .unwrap();
        assert_eq!(stored, served);
        assert_eq!(
            (recipe.steps, recipe.model.as_deref()),
            (Some(2), Some("tiny"))
        );
    }

    // The links are signed: without the signature the image needs its owner's token.
    let done = client.result(&job_id).await.unwrap();
    let url = &done.images[0];
    let (status, kind, png) = common::get(url, None).await;
    assert_eq!((status, kind.as_str()), (200, "image/png"));
    assert!(png.starts_with(b"\x89PNG"));
    let bare = url.split('?').next().unwrap();
    assert_eq!(common::get(bare, None).await.0, 401);
    assert_eq!(common::get(bare, Some(tokens.id_token())).await.0, 200);
    let tampered = url.replace("/0.png", "/1.png");
    assert_eq!(common::get(&tampered, None).await.0, 403);
    let longer = url.replace("expires=", "expires=9");
    assert_eq!(common::get(&longer, None).await.0, 403);

    // The server's own copy records its recipe too.
    let files = std::fs::read_dir(cloud.server.data.join("images").join(&job_id))
        .unwrap()
        .count();
    assert_eq!(files, 2, "no temporary files left");

    // Another user sees nothing of it.
    let bob = user(&cloud.accounts, "bob").await;
    let body = serde_json::json!({ "job_id": job_id }).to_string();
    let (status, json) = common::post(&format!("{base}/result"), Some(bob.id_token()), body).await;
    assert_eq!(status, 404, "{json}");
    assert_eq!(common::get(bare, Some(bob.id_token())).await.0, 404);
    // Access tokens are accepted as well as id tokens.
    let body = serde_json::json!({ "job_id": job_id }).to_string();
    let (status, _) =
        common::post(&format!("{base}/result"), Some(tokens.access_token()), body).await;
    assert_eq!(status, 200);

    // After signing out, the client fails clearly instead of looping.
    cloud
        .accounts
        .sign_out(&client.tokens().await)
        .await
        .unwrap();
    let signed_out = CloudClient::new(
        base,
        cloud.accounts.clone(),
        client.tokens().await.expiring_at(SystemTime::UNIX_EPOCH),
    );
    let err = signed_out.result(&job_id).await.unwrap_err();
    assert!(matches!(err, CloudError::Unauthorized), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_submitted_before_a_restart_is_followed_after_it() {
    let Some(cloud) = cloud(Limits::default()).await else {
        return;
    };
    let base = &cloud.server.base;
    let tokens = user(&cloud.accounts, "eli").await;
    let dir = tempfile::tempdir().unwrap();
    let library = Arc::new(Library::open(dir.path().join("library")).unwrap());
    let project = library.create_project("Resumed", None).unwrap();
    let source_recipe = selfdiffusion_recipe::Recipe {
        prompt: "a harbour".into(),
        seed: Some(8),
        ..Default::default()
    };
    let rgb: Vec<u8> = (0..12 * 10 * 3).map(|i| (i % 251) as u8).collect();
    let source = library
        .add_generated(
            project.id,
            selfdiffusion_library::Pixels {
                width: 12,
                height: 10,
                rgb: &rgb,
            },
            &source_recipe,
            Some("harbour.png"),
        )
        .unwrap();
    let pending = PendingJobs::new(dir.path().join("cloud-jobs.json"));

    // The app submits a generation and an upscale, writes them down, and is closed before
    // following them.
    let before = CloudClient::new(base, cloud.accounts.clone(), tokens.clone());
    let job = submit_cloud_job(&before, &request(1, 2), project.id)
        .await
        .unwrap();
    pending.add(&PendingJob::Generation(Box::new(job))).unwrap();
    let upscale = submit_cloud_upscale(&before, library.clone(), source.summary.id, 2)
        .await
        .unwrap();
    pending.add(&PendingJob::Upscale(upscale)).unwrap();
    // Both finish while the app is closed (a job's event stream then starts with a finished
    // `accepted`, the images following in `complete`).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    for job in pending.list() {
        while !before
            .result(job.job_id())
            .await
            .unwrap()
            .status
            .has_ended()
        {
            assert!(std::time::Instant::now() < deadline, "the job never ended");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(before);

    // The next run restores the session from the refresh token and follows what was pending.
    let after = CloudClient::new(
        base,
        cloud.accounts.clone(),
        restored("eli", tokens.refresh_token()),
    );
    let (mut generated, mut upscaled) = (0, 0);
    for job in PendingJobs::new(dir.path().join("cloud-jobs.json")).list() {
        let timeout = Duration::from_secs(120);
        let cancel = AtomicBool::new(false);
        match &job {
            PendingJob::Generation(job) => {
                let saved =
                    follow_cloud_job(&after, job, library.clone(), timeout, &cancel, &mut |_| {})
                        .await
                        .unwrap();
                generated += saved.len();
                let recipe = library.image(saved[0]).unwrap().recipe;
                assert_eq!(recipe.job_id.as_deref(), Some(job.job_id.as_str()));
                assert_eq!(recipe.model.as_deref(), Some("tiny"));
            }
            PendingJob::Upscale(job) => {
                let larger = follow_cloud_upscale(
                    &after,
                    job,
                    library.clone(),
                    timeout,
                    &cancel,
                    &mut |_| {},
                )
                .await
                .unwrap();
                upscaled += 1;
                assert_eq!(larger.summary.original_name, "harbour-x2.png");
                assert_eq!((larger.summary.width, larger.summary.height), (24, 20));
                assert_eq!(larger.summary.project_id, project.id);
                assert_eq!(larger.recipe.prompt, "a harbour", "the source's recipe");
                let how = larger.recipe.upscale.unwrap();
                assert_eq!((how.factor, how.upscaler.as_str()), (2, "lanczos"));
            }
        }
        pending.remove(job.job_id()).unwrap();
    }
    assert_eq!((generated, upscaled), (1, 1));
    assert!(pending.list().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_errors() {
    let limits = Limits {
        max_jobs_per_user: 2,
        max_input_bytes: 32 * 1024,
        max_input_pixels: 128 * 128,
        ..Limits::default()
    };
    let Some(cloud) = cloud(limits).await else {
        return;
    };
    let base = &cloud.server.base;
    let tokens = user(&cloud.accounts, "cy").await;
    let token = Some(tokens.id_token());
    let generate = format!("{base}/generate");

    let cases: Vec<(String, u16, &str)> = vec![
        ("{\"prompt\": ".into(), 400, "invalid request body"),
        ("[1, 2]".into(), 400, "invalid request body"),
        (r#"{"samples": 1}"#.into(), 400, "prompt"),
        (
            r#"{"prompt": "a", "samples": 9}"#.into(),
            400,
            "samples must be between 1 and 4",
        ),
        (
            r#"{"prompt": "a", "samples": -1}"#.into(),
            400,
            "invalid request body",
        ),
        (
            serde_json::json!({"prompt": "p".repeat(5000), "samples": 1}).to_string(),
            400,
            "limit is 2000",
        ),
        (
            serde_json::json!({"prompt": "p".repeat(400_000), "samples": 1}).to_string(),
            413,
            "larger than",
        ),
        (
            serde_json::json!({"prompt": "a", "samples": 1, "init_image": "bm90IGFuIGltYWdl"})
                .to_string(),
            400,
            "init_image: the image to start from: not a PNG, JPEG or WebP image",
        ),
        (
            serde_json::json!({"prompt": "a", "samples": 1, "init_image": png_base64(256, 256)})
                .to_string(),
            400,
            "more than the 16384 pixels allowed",
        ),
        (
            serde_json::json!({"prompt": "a", "samples": 1, "init_image": png_base64(64, 64), "strength": -0.5})
                .to_string(),
            400,
            "strength -0.5 is outside 0 to 1",
        ),
        (
            serde_json::json!({"prompt": "a", "samples": 1, "mask": png_base64(64, 64)}).to_string(),
            400,
            "mask goes with init_image",
        ),
        (
            r#"{"prompt": "a", "samples": 1, "width": 4000}"#.into(),
            400,
            "width",
        ),
        (
            r#"{"prompt": "a", "samples": 1, "model": "sdxl"}"#.into(),
            400,
            "not served",
        ),
    ];
    for (body, status, expected) in cases {
        let (got, json) = common::post(&generate, token, body.clone()).await;
        let message = common::message(&json);
        assert_eq!(got, status, "{}: {message}", &body[..body.len().min(60)]);
        assert!(message.contains(expected), "{expected}: {message}");
    }
    let (status, json) =
        common::post(&format!("{base}/result"), token, r#"{"job_id": "nope"}"#).await;
    assert_eq!(
        (status, common::message(&json).as_str()),
        (404, "no job \"nope\"")
    );
    let (status, _) = common::post(&format!("{base}/result"), token, r#"{"id": "x"}"#).await;
    assert_eq!(status, 400);

    // Per-user limit on waiting jobs: long jobs fill it, the next is refused with 429.
    let long = serde_json::json!({"prompt": "slow", "samples": 4, "steps": 100, "width": 64, "height": 64})
        .to_string();
    for _ in 0..2 {
        assert_eq!(common::post(&generate, token, long.clone()).await.0, 200);
    }
    let (status, json) = common::post(&generate, token, long.clone()).await;
    assert_eq!(status, 429);
    assert!(common::message(&json).contains("2 jobs"), "{json}");
    // Another user is not held back by cy's jobs.
    let dee = user(&cloud.accounts, "dee").await;
    assert_eq!(
        common::post(&generate, Some(dee.id_token()), long).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inpaint_request_makes_an_image_that_names_its_source() {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let Some(cloud) = cloud(Limits::default()).await else {
        return;
    };
    let tokens = user(&cloud.accounts, "ines").await;
    let client = CloudClient::new(&cloud.server.base, cloud.accounts.clone(), tokens);
    let dir = tempfile::tempdir().unwrap();
    let library = Arc::new(Library::open(dir.path()).unwrap());
    let project = library.create_project("Inpaint", None).unwrap();
    let (image, mask) = (png(64, 48), png(32, 24));
    let request = GenerateRequest {
        init_image: Some(base64::engine::general_purpose::STANDARD.encode(&image)),
        mask: Some(base64::engine::general_purpose::STANDARD.encode(&mask)),
        strength: Some(0.6),
        width: None,
        height: None,
        ..request(1, 5)
    };
    let saved = run_cloud_job(
        &client,
        &request,
        library.clone(),
        project.id,
        Duration::from_secs(120),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .await
    .unwrap();
    let made = library.image(saved[0]).unwrap();
    assert_eq!(
        (made.summary.width, made.summary.height),
        (64, 48),
        "the size of the image it started from"
    );
    let hex = |bytes: &[u8]| {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let source = made.recipe.source.clone().unwrap();
    assert_eq!(source.image_sha256, hex(&image));
    assert_eq!(source.mask_sha256, Some(hex(&mask)));
    assert_eq!(source.strength, 0.6);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upscale_request_returns_the_image_larger_with_its_recipe() {
    let Some(cloud) = cloud(Limits::default()).await else {
        return;
    };
    let base = &cloud.server.base;
    let tokens = user(&cloud.accounts, "uma").await;
    let token = Some(tokens.id_token());
    let recipe = selfdiffusion_recipe::Recipe {
        prompt: "a cat".into(),
        seed: Some(3),
        ..Default::default()
    };
    let rgb: Vec<u8> = (0..24 * 20 * 3).map(|i| (i % 251) as u8).collect();
    let png = selfdiffusion_recipe::encode_png(24, 20, &rgb, &recipe).unwrap();
    let encoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&png)
    };
    let upscale = format!("{base}/upscale");
    for (body, expected) in [
        (
            serde_json::json!({"image": encoded, "factor": 3}),
            "factor must be 2 or 4",
        ),
        (
            serde_json::json!({"image": "bm90IGFuIGltYWdl", "factor": 2}),
            "image: not a PNG, JPEG or WebP image",
        ),
    ] {
        let (status, json) = common::post(&upscale, token, body.to_string()).await;
        assert_eq!(status, 400, "{json}");
        assert!(common::message(&json).contains(expected), "{json}");
    }
    let (status, _) = common::post(
        &upscale,
        None,
        serde_json::json!({"image": encoded, "factor": 2}).to_string(),
    )
    .await;
    assert_eq!(status, 401, "a token is needed");

    let (status, json) = common::post(
        &upscale,
        token,
        serde_json::json!({"image": encoded, "factor": 2}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let job_id = json["job_id"].as_str().unwrap().to_owned();
    let result = format!("{base}/result");
    let started = std::time::Instant::now();
    let url = loop {
        let (status, json) = common::post(
            &result,
            token,
            serde_json::json!({ "job_id": job_id }).to_string(),
        )
        .await;
        assert_eq!(status, 200, "{json}");
        match json["status"].as_str() {
            Some("succeeded") => break json["images"][0].as_str().unwrap().to_owned(),
            Some("failed") => panic!("{json}"),
            _ => {
                assert!(started.elapsed() < Duration::from_secs(60), "still {json}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (status, _, bytes) = common::get(&url, None).await;
    assert_eq!(status, 200);
    let picture =
        selfdiffusion_engine::Picture::decode(&bytes, selfdiffusion_engine::MAX_INPUT_PIXELS)
            .unwrap();
    assert_eq!((picture.width, picture.height), (48, 40));
    let kept = selfdiffusion_recipe::embedded_recipe(&bytes).unwrap();
    assert_eq!((kept.prompt.as_str(), kept.seed), ("a cat", Some(3)));
    let how = kept.upscale.unwrap();
    assert_eq!((how.factor, how.upscaler.as_str()), (2, "lanczos"));
    assert_eq!(kept.job_id.as_deref(), Some(job_id.as_str()));
}
