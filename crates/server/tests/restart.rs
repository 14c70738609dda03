//! A one-box server keeps its jobs in `<data_dir>/jobs.sqlite3`: killed (SIGKILL) with jobs
//! queued and running, it runs them after a restart, each once, and the jobs that had
//! finished keep their state and images.

mod common;

use std::time::{Duration, Instant};

use common::keys::{id_claims, serve_keys, sign, CLIENT, ISSUER};
use common::process::{free_port, Server};

/// The job's status (polling `result`), and its image links.
async fn result(base: &str, token: &str, id: &str) -> (String, Vec<String>, serde_json::Value) {
    let (status, json) = common::post(
        &format!("{base}/result"),
        Some(token),
        serde_json::json!({ "job_id": id }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let images = json["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    (json["status"].as_str().unwrap().to_owned(), images, json)
}

async fn wait_done(base: &str, token: &str, id: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (status, images, json) = result(base, token, id).await;
        match status.as_str() {
            "succeeded" => return images,
            "failed" => panic!("job {id} failed: {json}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "job {id} did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_queued_when_the_server_is_killed_run_after_the_restart() {
    let keys = serve_keys(&["key-1"]);
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    common::engine::tiny_model(&model);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            listen = "127.0.0.1:{port}"
            data_dir = {data:?}
            model = {model:?}
            model_name = "tiny"
            device = "cpu"
            workers = 1
            [auth]
            issuer = "{ISSUER}"
            jwks_url = "{jwks}"
            client_ids = ["{CLIENT}"]
            [limits]
            max_jobs_per_user = 8
            "#,
            data = dir.path().join("data"),
            jwks = keys.url,
        ),
    )
    .unwrap();
    let token = sign("key-1", &id_claims());
    let submit = |samples: u32, steps: u32, seed: Option<u64>| {
        let (base, token) = (base.clone(), token.clone());
        async move {
            let body = serde_json::json!({
                "prompt": "a lighthouse at dusk", "samples": samples, "steps": steps,
                "width": 64, "height": 64, "seed": seed,
            });
            let (status, json) =
                common::post(&format!("{base}/generate"), Some(&token), body.to_string()).await;
            assert_eq!(status, 200, "{json}");
            json["job_id"].as_str().unwrap().to_owned()
        }
    };

    let server = Server::start(None, &config, &base, &[]).await;
    let done = submit(2, 2, Some(1)).await;
    let done_images = wait_done(&base, &token, &done).await;
    assert_eq!(done_images.len(), 2);
    // The first runs long enough to be killed mid-way; the others wait behind it.
    let interrupted = [
        submit(4, 100, None).await,
        submit(2, 3, None).await,
        submit(1, 3, Some(5)).await,
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    while result(&base, &token, &interrupted[0]).await.0 != "running" {
        assert!(Instant::now() < deadline, "the first job did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();

    let _server = Server::start(None, &config, &base, &[]).await;
    // The finished job is still there, its images served as before.
    let (status, images, _) = result(&base, &token, &done).await;
    assert_eq!((status.as_str(), images.len()), ("succeeded", 2));
    let (code, kind, png) = common::get(&images[0], None).await;
    assert_eq!((code, kind.as_str()), (200, "image/png"));
    assert!(png.starts_with(b"\x89PNG"));
    for (id, expected) in interrupted.iter().zip([4, 2, 1]) {
        let images = wait_done(&base, &token, id).await;
        assert_eq!(images.len(), expected, "job {id}");
        for link in images {
            let (code, _, png) = common::get(&link, None).await;
            assert_eq!(code, 200);
            let recipe = selfdiffusion_recipe::own_recipe(&png).unwrap();
            assert_eq!(recipe.job_id.as_deref(), Some(id.as_str()));
        }
    }
    // What an orchestrator scales on: every job finished, the 3 resumed ones since the restart.
    let (code, kind, text) = common::get(&format!("{base}/metrics"), None).await;
    assert_eq!(code, 200);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = String::from_utf8(text).unwrap();
    for line in [
        "selfdiffusion_jobs{state=\"succeeded\"} 4",
        "selfdiffusion_jobs{state=\"queued\"} 0",
        "selfdiffusion_jobs_finished_total{state=\"succeeded\"} 3",
        "selfdiffusion_job_queue_wait_seconds_count 3",
        "selfdiffusion_workers 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    // Another user still sees none of them.
    let mut other = id_claims();
    other["sub"] = "user-2".into();
    let (status, _) = common::post(
        &format!("{base}/result"),
        Some(&sign("key-1", &other)),
        serde_json::json!({ "job_id": done }).to_string(),
    )
    .await;
    assert_eq!(status, 404);
}
