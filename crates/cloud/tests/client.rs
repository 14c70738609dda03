//! The cloud client against a scripted generate/result server on loopback, with real tokens
//! from the Cognito emulator (so refreshes are real).

mod common;

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::{moto, pool, PASSWORD};
use selfdiffusion_cloud::{
    cloud_recipe, follow_cloud_job, upscale_in_cloud, Accounts, CloudClient, CloudError,
    GenerateRequest, Status, SubmittedJob, SubmittedUpscale, Tokens, UpscaleEvent,
};

/// A new confirmed user of the emulated pool, logged in.
async fn signed_up(moto_url: &str, name: &str) -> (Arc<Accounts>, Tokens) {
    let accounts = Arc::new(Accounts::new(pool(moto_url, false).await));
    accounts
        .sign_up(&format!("{name}@example.com"), name, PASSWORD)
        .await
        .unwrap();
    accounts.confirm_sign_up(name, "1").await.unwrap();
    let tokens = accounts.log_in(name, PASSWORD).await.unwrap();
    (accounts, tokens)
}

/// What the scripted server does.
#[derive(Default)]
struct Script {
    /// Answer the first `/generate` with 500.
    fail_first_generate: bool,
    /// Reject this bearer token with 401 (a token the server considers expired).
    reject_token: Option<String>,
    /// Authorization headers seen.
    seen_tokens: Vec<String>,
    /// How many `/result` calls per job.
    polls: HashMap<String, usize>,
    /// The `Last-Event-ID` of each event stream request (`None`: a first connection).
    resumed_from: Vec<Option<String>>,
    /// Each `/upscale` body.
    upscales: Vec<serde_json::Value>,
    /// Jobs asked to stop (`DELETE /v1/generations/{id}`).
    cancelled: Vec<String>,
}

/// The server's upscaled image: 4×4, its embedded recipe saying how it was made larger.
fn upscaled_png() -> Vec<u8> {
    let recipe = selfdiffusion_recipe::Recipe {
        prompt: "what the server read".into(),
        upscale: Some(selfdiffusion_recipe::Upscale {
            factor: 2,
            upscaler: "RealESRGAN_x2".into(),
            source_sha256: "from the server".into(),
        }),
        ..Default::default()
    };
    selfdiffusion_recipe::encode_png(4, 4, &[7; 48], &recipe).unwrap()
}

/// A 2×2 PNG from the app's writer.
fn png() -> Vec<u8> {
    selfdiffusion_recipe::encode_png(
        2,
        2,
        &[255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9],
        &Default::default(),
    )
    .unwrap()
}

fn start(script: Arc<Mutex<Script>>) -> String {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.server_addr().to_ip().unwrap());
    let base2 = base.clone();
    std::thread::spawn(move || {
        for mut req in server.incoming_requests() {
            let auth = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Authorization"))
                .map(|h| h.value.to_string())
                .unwrap_or_default();
            let mut body = String::new();
            let _ = std::io::Read::read_to_string(req.as_reader(), &mut body);
            let json = |code: u16, v: &str| {
                tiny_http::Response::from_string(v)
                    .with_status_code(code)
                    .with_header(
                        tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap(),
                    )
                    .boxed()
            };
            let last_event = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Last-Event-ID"))
                .map(|h| h.value.to_string());
            let events = |text: String| {
                tiny_http::Response::from_string(text)
                    .with_header(
                        tiny_http::Header::from_bytes("Content-Type", "text/event-stream").unwrap(),
                    )
                    .boxed()
            };
            let mut s = script.lock().unwrap();
            s.seen_tokens.push(auth.clone());
            let token = auth.strip_prefix("Bearer ").unwrap_or("").to_owned();
            let url = req.url().to_owned();
            let response = if url.starts_with("/images/") {
                match url.as_str() {
                    "/images/0.png" | "/images/1.png" => tiny_http::Response::from_data(png())
                        .with_header(
                            tiny_http::Header::from_bytes("Content-Type", "image/png").unwrap(),
                        )
                        .boxed(),
                    "/images/up.png" => tiny_http::Response::from_data(upscaled_png())
                        .with_header(
                            tiny_http::Header::from_bytes("Content-Type", "image/png").unwrap(),
                        )
                        .boxed(),
                    "/images/page.png" => tiny_http::Response::from_string("<html>")
                        .with_header(
                            tiny_http::Header::from_bytes("Content-Type", "text/html").unwrap(),
                        )
                        .boxed(),
                    "/images/huge.png" => tiny_http::Response::new(
                        200.into(),
                        vec![tiny_http::Header::from_bytes("Content-Type", "image/png").unwrap()],
                        Box::new(Cursor::new(vec![
                            0u8;
                            selfdiffusion_cloud::MAX_IMAGE_BYTES + 1
                        ])) as Box<dyn std::io::Read + Send>,
                        Some(selfdiffusion_cloud::MAX_IMAGE_BYTES + 1),
                        None,
                    ),
                    _ => json(404, r#"{"error": "no such image"}"#),
                }
            } else if token.is_empty() || s.reject_token.as_deref() == Some(token.as_str()) {
                json(401, r#"{"error": "token expired"}"#)
            } else if url == "/v1/generations/job-4/events" {
                s.resumed_from.push(last_event.clone());
                // The first stream breaks after a progress event; resumed, it sends the rest.
                match last_event.as_deref() {
                    None => events(
                        ": keep-alive\n\nid: 0\nevent: accepted\ndata: {\"id\": \"job-4\", \"status\": \"queued\"}\n\n\
                         id: 3\nevent: progress\ndata: {\"step\": 3, \"total\": 6, \"progress\": 0.5, \"eta_s\": 1.5}\n\n"
                            .into(),
                    ),
                    Some("3") => events(format!(
                        "id: 6\nevent: progress\ndata: {{\"step\": 6, \"total\": 6, \"progress\": 1.0}}\n\n\
                         id: 1099511627776\nevent: complete\ndata: {{\"id\": \"job-4\", \"output_urls\": [\"{base2}/images/0.png\"]}}\n\n"
                    )),
                    Some(_) => json(400, r#"{"error": "unexpected Last-Event-ID"}"#),
                }
            } else if url == "/v1/generations/job-6/events" {
                // A job that ended before it was followed: `accepted` says so, `complete` follows.
                events(format!(
                    "id: 0\nevent: accepted\ndata: {{\"id\": \"job-6\", \"status\": \"succeeded\"}}\n\n\
                     id: 1099511627776\nevent: complete\ndata: {{\"id\": \"job-6\", \"output_urls\": [\"{base2}/images/1.png\"]}}\n\n"
                ))
            } else if url == "/v1/generations/job-5/events" {
                events("id: 0\nevent: accepted\ndata: {\"status\": \"running\"}\n\nid: 1099511627776\nevent: failed\ndata: {\"error\": \"out of GPU memory\"}\n\n".into())
            } else if *req.method() == tiny_http::Method::Delete {
                let job = url.trim_start_matches("/v1/generations/").to_owned();
                s.cancelled.push(job);
                json(200, r#"{"status": "cancelled"}"#)
            } else if url == "/upscale" {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let job = format!("up-{}", v["factor"]);
                s.upscales.push(v);
                json(200, &format!(r#"{{"job_id": "{job}"}}"#))
            } else if url == "/generate" {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                if s.fail_first_generate {
                    s.fail_first_generate = false;
                    json(500, r#"{"error": "busy"}"#)
                } else if v["prompt"].as_str().is_some_and(|p| p.len() > 1000) {
                    json(400, r#"{"error": "prompt longer than 1000 characters"}"#)
                } else if v["prompt"] == "malformed" {
                    json(200, "{not json")
                } else {
                    json(200, &format!(r#"{{"job_id": "job-{}"}}"#, v["samples"]))
                }
            } else if url == "/result" {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let job = v["job_id"].as_str().unwrap_or_default().to_owned();
                let n = {
                    let n = s.polls.entry(job.clone()).or_default();
                    *n += 1;
                    *n
                };
                match (job.as_str(), n) {
                    ("job-2", 1) => json(200, r#"{"status": "queued", "images": []}"#),
                    ("job-2", 2) => json(
                        200,
                        r#"{"status": "running", "progress": 0.5, "images": []}"#,
                    ),
                    ("job-2", _) => json(
                        200,
                        &format!(
                            r#"{{"status": "succeeded", "images": ["{base2}/images/0.png", "{base2}/images/1.png"]}}"#
                        ),
                    ),
                    ("up-2", _) => json(
                        200,
                        &format!(
                            r#"{{"status": "succeeded", "images": ["{base2}/images/up.png"]}}"#
                        ),
                    ),
                    ("up-4", _) => json(
                        200,
                        r#"{"status": "running", "progress": 0.25, "images": []}"#,
                    ),
                    ("job-empty", _) => json(200, r#"{"status": "succeeded", "images": []}"#),
                    ("job-3", _) => json(
                        200,
                        r#"{"status": "failed", "images": [], "error": "out of GPU memory"}"#,
                    ),
                    _ => json(404, r#"{"error": "unknown job_id"}"#),
                }
            } else {
                json(404, r#"{"error": "not found"}"#)
            };
            drop(s);
            let _ = req.respond(response);
        }
    });
    base
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_poll_download_and_save_with_the_recipe() {
    let Some(moto) = moto() else { return };
    let (accounts, tokens) = signed_up(&moto.url, "eve").await;
    let script = Arc::new(Mutex::new(Script {
        fail_first_generate: true,
        reject_token: Some(tokens.id_token().to_owned()),
        ..Script::default()
    }));
    let base = start(script.clone());
    let client = CloudClient::new(&base, accounts.clone(), tokens.clone());

    // The login token is refused once (401): the client refreshes and retries; then a 500 is retried.
    let request = GenerateRequest {
        prompt: "a kite over dunes".into(),
        samples: 2,
        negative_prompt: Some("blurry".into()),
        seed: Some(40),
        ..GenerateRequest::default()
    };
    let job = client.generate(&request).await.unwrap();
    assert_eq!(job, "job-2");
    assert_ne!(
        client.tokens().await.id_token(),
        tokens.id_token(),
        "the session was refreshed"
    );
    assert!(
        script.lock().unwrap().seen_tokens.len() >= 3,
        "401, then 500, then success"
    );

    let mut seen = Vec::new();
    let done = client
        .wait(
            &job,
            Duration::from_secs(30),
            &AtomicBool::new(false),
            &mut |s| seen.push(s.status),
        )
        .await
        .unwrap();
    assert_eq!(seen, [Status::Queued, Status::Running, Status::Succeeded]);
    assert_eq!(done.images.len(), 2);

    let dir = tempfile::tempdir().unwrap();
    let library = selfdiffusion_library::Library::open(dir.path()).unwrap();
    let project = library.create_project("Cloud", None).unwrap();
    for (i, url) in done.images.iter().enumerate() {
        let bytes = client.download(url).await.unwrap();
        let recipe = cloud_recipe(&request, &job, i);
        let saved = library
            .add_image(project.id, &bytes, &recipe, None)
            .unwrap();
        assert_eq!(saved.recipe.backend.as_deref(), Some("cloud"));
        assert_eq!(saved.recipe.job_id.as_deref(), Some("job-2"));
        assert_eq!(saved.recipe.seed, Some(40 + i as u64));
    }
    assert_eq!(library.project_summary(project.id).unwrap().image_count, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_followed_over_its_event_stream_which_resumes_where_it_broke() {
    let Some(moto) = moto() else { return };
    let (accounts, tokens) = signed_up(&moto.url, "gus").await;
    let script = Arc::new(Mutex::new(Script::default()));
    let base = start(script.clone());
    let client = CloudClient::new(&base, accounts.clone(), tokens.clone());
    let mut seen = Vec::new();
    let done = client
        .wait(
            "job-4",
            Duration::from_secs(30),
            &AtomicBool::new(false),
            &mut |s| seen.push((s.status, s.progress)),
        )
        .await
        .unwrap();
    assert_eq!(
        seen,
        [
            (Status::Queued, None),
            (Status::Running, Some(0.5)),
            (Status::Running, Some(1.0)),
            (Status::Succeeded, Some(1.0)),
        ]
    );
    assert_eq!(done.images, [format!("{base}/images/0.png")]);
    {
        let script = script.lock().unwrap();
        assert_eq!(script.resumed_from, [None, Some("3".to_owned())]);
        assert!(
            !script.polls.contains_key("job-4"),
            "followed without polling /result"
        );
    }
    // A job that ended before it was followed ends with its images, not at `accepted`.
    let mut seen = Vec::new();
    let done = client
        .wait(
            "job-6",
            Duration::from_secs(30),
            &AtomicBool::new(false),
            &mut |s| seen.push(s.status),
        )
        .await
        .unwrap();
    assert_eq!(seen, [Status::Succeeded]);
    assert_eq!(done.images, [format!("{base}/images/1.png")]);
    // A failure comes over the stream too.
    let failed = client
        .wait(
            "job-5",
            Duration::from_secs(30),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&failed, CloudError::JobFailed(m) if m == "out of GPU memory"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_clear() {
    let Some(moto) = moto() else { return };
    let (accounts, tokens) = signed_up(&moto.url, "fay").await;
    let base = start(Arc::new(Mutex::new(Script::default())));
    let client = CloudClient::new(&base, accounts.clone(), tokens.clone());
    let req = |prompt: &str| GenerateRequest {
        prompt: prompt.into(),
        samples: 3,
        ..GenerateRequest::default()
    };

    assert!(matches!(
        client.generate(&req("malformed")).await,
        Err(CloudError::Protocol(_))
    ));
    match client.generate(&req(&"x".repeat(1001))).await {
        Err(CloudError::Refused {
            status: 400,
            message,
        }) => assert!(message.contains("1000")),
        other => panic!("{other:?}"),
    }
    match client.result("nope").await {
        Err(CloudError::Refused {
            status: 404,
            message,
        }) => assert!(message.contains("unknown job_id")),
        other => panic!("{other:?}"),
    }
    let failed = client
        .wait(
            "job-3",
            Duration::from_secs(10),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .await;
    assert!(
        matches!(failed, Err(CloudError::JobFailed(ref m)) if m.contains("GPU")),
        "{failed:?}"
    );
    assert!(matches!(
        client
            .wait(
                "job-2",
                Duration::from_secs(10),
                &AtomicBool::new(true),
                &mut |_| {}
            )
            .await,
        Err(CloudError::Cancelled)
    ));
    let page = client
        .download(&format!("{base}/images/page.png"))
        .await
        .unwrap_err();
    assert!(page.to_string().contains("not an image"), "{page}");
    let huge = client
        .download(&format!("{base}/images/huge.png"))
        .await
        .unwrap_err();
    assert!(huge.to_string().contains("larger than"), "{huge}");

    // A job the server calls done without an image is an error, not an empty success.
    let dir = tempfile::tempdir().unwrap();
    let library = Arc::new(selfdiffusion_library::Library::open(dir.path()).unwrap());
    let project = library.create_project("Empty", None).unwrap();
    let job = SubmittedJob {
        job_id: "job-empty".into(),
        username: "fay".into(),
        project_id: project.id,
        request: req("a cat"),
    };
    let err = follow_cloud_job(
        &client,
        &job,
        library,
        Duration::from_secs(30),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("without an image"), "{err}");

    // A signed-out session fails clearly after one refresh attempt.
    accounts.sign_out(&tokens).await.unwrap();
    let revoked = Arc::new(Mutex::new(Script {
        reject_token: Some(tokens.id_token().to_owned()),
        ..Script::default()
    }));
    let signed_out = CloudClient::new(&start(revoked), accounts.clone(), tokens.clone());
    assert!(matches!(
        signed_out.generate(&req("a cat")).await,
        Err(CloudError::Unauthorized)
    ));

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let offline = CloudClient::new(&format!("http://{closed}"), accounts, tokens);
    let err = offline.generate(&req("a cat")).await.unwrap_err();
    assert!(err.to_string().contains("offline"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upscale_in_the_cloud_keeps_the_recipe_and_a_cancelled_one_adds_nothing() {
    let Some(moto) = moto() else { return };
    let (accounts, tokens) = signed_up(&moto.url, "ivy").await;
    let script = Arc::new(Mutex::new(Script::default()));
    let client = CloudClient::new(&start(script.clone()), accounts, tokens);

    let dir = tempfile::tempdir().unwrap();
    let library = Arc::new(selfdiffusion_library::Library::open(dir.path()).unwrap());
    let project = library.create_project("Upscales", None).unwrap();
    let recipe = selfdiffusion_recipe::Recipe {
        prompt: "a lake at dawn".into(),
        seed: Some(5),
        ..Default::default()
    };
    let source = library
        .add_generated(
            project.id,
            selfdiffusion_library::Pixels {
                width: 2,
                height: 2,
                rgb: &[1; 12],
            },
            &recipe,
            Some("lake.png"),
        )
        .unwrap();

    let (mut progress, mut submitted) = (Vec::new(), Vec::new());
    let larger = upscale_in_cloud(
        &client,
        library.clone(),
        source.summary.id,
        2,
        Duration::from_secs(30),
        &AtomicBool::new(false),
        &mut |event| match event {
            UpscaleEvent::Submitted(job) => submitted.push(job),
            UpscaleEvent::Status(s) => progress.push(s.status),
        },
    )
    .await
    .unwrap();
    assert_eq!(progress, [Status::Succeeded]);
    assert_eq!(
        submitted,
        [SubmittedUpscale {
            job_id: "up-2".into(),
            username: "ivy".into(),
            image_id: source.summary.id,
            project_id: project.id,
            source_name: "lake.png".into(),
            factor: 2,
        }],
        "what a restart needs to follow it"
    );
    {
        let s = script.lock().unwrap();
        assert_eq!(s.upscales.len(), 1);
        assert_eq!(s.upscales[0]["factor"], 2);
        let sent = base64::engine::general_purpose::STANDARD
            .decode(s.upscales[0]["image"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            sent,
            std::fs::read(library.path_of(&source.summary.file)).unwrap(),
            "the library's file, as stored"
        );
    }
    assert_eq!(larger.summary.original_name, "lake-x2.png");
    assert_eq!(larger.summary.project_id, project.id);
    assert_eq!((larger.summary.width, larger.summary.height), (4, 4));
    assert_eq!(
        larger.recipe.prompt, "a lake at dawn",
        "the source's recipe"
    );
    assert_eq!(larger.recipe.seed, Some(5));
    let how = larger.recipe.upscale.as_ref().unwrap();
    assert_eq!(
        (how.factor, how.upscaler.as_str()),
        (2, "RealESRGAN_x2"),
        "how the server made it larger"
    );

    // Cancelled while the server works: the job is stopped there and nothing is added.
    let cancel = AtomicBool::new(false);
    let err = upscale_in_cloud(
        &client,
        library.clone(),
        source.summary.id,
        4,
        Duration::from_secs(30),
        &cancel,
        &mut |event| {
            if matches!(event, UpscaleEvent::Status(s) if s.status == Status::Running) {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CloudError::Cancelled), "{err}");
    assert_eq!(script.lock().unwrap().cancelled, ["up-4"]);
    assert_eq!(library.project_summary(project.id).unwrap().image_count, 2);

    // An image that is not in the library is a clear error before anything is sent.
    let err = upscale_in_cloud(
        &client,
        library.clone(),
        source.summary.id + 100,
        2,
        Duration::from_secs(30),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CloudError::Library(_)), "{err}");
    assert_eq!(script.lock().unwrap().upscales.len(), 2);
}
