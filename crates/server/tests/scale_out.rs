//! Scale-out on real servers on loopback: a throwaway PostgreSQL cluster, an S3 server
//! (`s3s-fs`, which checks presigned links' signatures and expiry), two `api` nodes and two
//! `worker`s of the real binary on a tiny model. Jobs from four users through both nodes each
//! run once and download by their presigned links; a worker killed mid-job, an API node
//! restarted under a stream, PostgreSQL restarted and the storage down are each lived through.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{token, Cluster};
use common::sse::Events;
use serde_json::{json, Value};

/// How long a worker's lease lasts in this test, in seconds.
const LEASE_S: u64 = 3;
/// How long node B's links last, in seconds (node A's: 15 minutes).
const SHORT_TTL_S: u64 = 4;

/// `GET /v1/generations/{id}` on `node`: status code and body (0 when it cannot connect).
async fn show(node: &str, token: &str, id: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{node}/v1/generations/{id}"))
        .bearer_auth(token)
        .send()
        .await;
    match response {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

/// Polls job `id` on `node` until it ends (through restarts: a refused connection or a 503
/// is retried); returns its last state.
async fn wait_end(node: &str, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (code, body) = show(node, token, id).await;
        match code {
            200 if matches!(
                body["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) =>
            {
                return body
            }
            200 | 0 | 503 => {}
            other => panic!("job {id}: {other} {body}"),
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls job `id` until it is running.
async fn wait_running(node: &str, token: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (code, body) = show(node, token, id).await;
        if code == 200 && body["status"] == "running" {
            return;
        }
        assert!(Instant::now() < deadline, "job {id} did not start: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /v1/generations` on `node`; returns the job id.
async fn create(node: &str, token: &str, body: Value) -> String {
    let (status, json) = common::post(
        &format!("{node}/v1/generations"),
        Some(token),
        body.to_string(),
    )
    .await;
    assert_eq!(status, 202, "{json}");
    json["id"].as_str().unwrap().to_owned()
}

/// Downloads `link` (no credentials but the link's own) and checks it is job `id`'s PNG.
async fn download(link: &str, id: &str) {
    let (code, kind, png) = common::get(link, None).await;
    assert_eq!(code, 200, "{link}: {}", String::from_utf8_lossy(&png));
    assert_eq!(kind, "image/png");
    let recipe = selfdiffusion_recipe::own_recipe(&png).unwrap();
    assert_eq!(recipe.job_id.as_deref(), Some(id));
}

fn links(job: &Value) -> Vec<String> {
    job["output_urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_api_nodes_and_two_workers_share_postgres_and_s3() {
    let Some(mut cluster) = Cluster::start(LEASE_S).await else {
        return;
    };
    let (node_a, a) = cluster.api("api-a", 900, false).await;
    // Node B makes its links for the store's public name (`s3_public_endpoint`).
    let (_node_b, b) = cluster.api("api-b", SHORT_TTL_S, true).await;
    let mut workers = vec![
        cluster.worker("worker-1").await,
        cluster.worker("worker-2").await,
    ];
    let db = cluster.pg.client().await;
    let tokens: Vec<String> = (1..=4).map(token).collect();

    // 40 jobs from 4 users through both nodes, half by /v1, half by the desktop's /generate.
    let mut jobs = Vec::new();
    for i in 0..40 {
        let (node, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let user = i % 4;
        let body = json!({ "prompt": format!("a lighthouse, take {i}"), "steps": 2, "samples": 1,
                           "width": 64, "height": 64, "seed": i });
        let id = if i % 4 < 2 {
            create(node, &tokens[user], body).await
        } else {
            let (status, json) = common::post(
                &format!("{node}/generate"),
                Some(&tokens[user]),
                body.to_string(),
            )
            .await;
            assert_eq!(status, 200, "{json}");
            json["job_id"].as_str().unwrap().to_owned()
        };
        jobs.push((id, user, other.clone()));
    }
    for (id, user, other) in &jobs {
        let job = wait_end(other, &tokens[*user], id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let urls = links(&job);
        assert_eq!(urls.len(), 1);
        let store = if *other == b {
            cluster.s3.public_endpoint()
        } else {
            cluster.s3.endpoint()
        };
        assert!(urls[0].starts_with(&format!("{store}/")), "{}", urls[0]);
        download(&urls[0], id).await;
        assert_eq!(
            cluster.s3.keys(&format!("user-{}/{id}", user + 1)),
            [format!("user-{}/{id}/0.png", user + 1)]
        );
        // Another user's job is missing on every node, and so is its stream.
        let stranger = &tokens[(user + 1) % 4];
        for node in [&a, &b] {
            assert_eq!(show(node, stranger, id).await.0, 404);
            let (code, _, _) = common::get(
                &format!("{node}/v1/generations/{id}/events"),
                Some(stranger),
            )
            .await;
            assert_eq!(code, 404);
        }
    }
    let once: i64 = db
        .query_one(
            "SELECT count(*) FROM jobs WHERE status = 'succeeded' AND attempts = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(once, 40, "every job ran exactly once");
    let by: i64 = db
        .query_one("SELECT count(DISTINCT worker) FROM jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(by, 2, "both workers took jobs");
    // An altered link and an expired one are refused by the store.
    let (id, user, _) = &jobs[0];
    let link = links(&show(&b, &tokens[*user], id).await.1)[0].clone();
    let altered = format!(
        "{}{}",
        &link[..link.len() - 1],
        if link.ends_with('0') { '1' } else { '0' }
    );
    assert_eq!(common::get(&altered, None).await.0, 403);
    tokio::time::sleep(Duration::from_secs(SHORT_TTL_S + 2)).await;
    assert_eq!(common::get(&link, None).await.0, 403, "an expired link");

    // A worker killed mid-job, and the node streaming the job restarted: the job finishes on
    // the other worker after the lease, the stream resumes where it was.
    let long =
        json!({ "prompt": "a long night", "steps": 150, "samples": 2, "width": 64, "height": 64 });
    let id = create(&a, &tokens[0], long).await;
    wait_running(&b, &tokens[0], &id).await;
    let events_url = format!("{a}/v1/generations/{id}/events");
    let bearer = format!("Bearer {}", tokens[0]);
    let mut stream = Events::open(&events_url, ("Authorization", &bearer), None).await;
    let mut last = 0;
    while let Some((event_id, name, _)) = stream.next().await {
        last = event_id;
        if name == "progress" {
            break;
        }
    }
    assert!(last > 0, "a progress event came");
    let running_on: String = db
        .query_one("SELECT worker FROM jobs WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    let at = workers
        .iter()
        .position(|(_, name)| *name == running_on)
        .unwrap();
    let (killed, _) = workers.remove(at);
    killed.kill();
    node_a.kill();
    drop(stream);
    let _node_a = cluster.restart_api("api-a", &a).await;
    let mut stream = Events::open(&events_url, ("Authorization", &bearer), Some(last)).await;
    let mut names = Vec::new();
    let mut complete = Value::Null;
    while let Some((event_id, name, data)) = stream.next().await {
        assert!(
            event_id > last,
            "only newer events after Last-Event-ID {last}: {event_id}"
        );
        last = event_id;
        names.push(name.clone());
        if name == "complete" {
            complete = data;
        }
    }
    assert_eq!(
        names.last().map(String::as_str),
        Some("complete"),
        "{names:?}"
    );
    let urls = links(&complete);
    assert_eq!(urls.len(), 2);
    for url in &urls {
        download(url, &id).await;
    }
    let (attempts, worker): (i32, String) = {
        let row = db
            .query_one("SELECT attempts, worker FROM jobs WHERE id = $1", &[&id])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(attempts, 2, "started again once, after the lease");
    assert_eq!(worker, workers[0].1, "on the other worker");
    assert_eq!(
        cluster.s3.keys(&format!("user-1/{id}")).len(),
        2,
        "no image lost or duplicated"
    );

    // PostgreSQL restarted under a running job: workers and nodes reconnect and go on.
    let id = create(
        &b,
        &tokens[1],
        json!({ "prompt": "a storm", "steps": 150, "samples": 2, "width": 64, "height": 64 }),
    )
    .await;
    wait_running(&a, &tokens[1], &id).await;
    cluster.pg.restart();
    let job = wait_end(&a, &tokens[1], &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    download(&links(&job)[0], &id).await;
    for node in [&a, &b] {
        let id = create(
            node,
            &tokens[2],
            json!({ "prompt": "after the storm", "steps": 2, "width": 64, "height": 64 }),
        )
        .await;
        assert_eq!(wait_end(node, &tokens[2], &id).await["status"], "succeeded");
    }

    // An ESRGAN upscale: checked by a node (which read only the upscaler's scale), run by the
    // worker, its image ×4 with the source's recipe.
    let recipe = selfdiffusion_recipe::Recipe {
        prompt: "a cat".into(),
        ..Default::default()
    };
    let rgb: Vec<u8> = (0..24 * 20 * 3).map(|i| (i % 251) as u8).collect();
    let png = selfdiffusion_recipe::encode_png(24, 20, &rgb, &recipe).unwrap();
    let image = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&png)
    };
    let (status, json) = common::post(
        &format!("{b}/upscale"),
        Some(&tokens[2]),
        json!({ "image": image, "factor": 4 }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let id = json["job_id"].as_str().unwrap().to_owned();
    let job = wait_end(&a, &tokens[2], &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, _, larger) = common::get(&links(&job)[0], None).await;
    let picture =
        selfdiffusion_engine::Picture::decode(&larger, selfdiffusion_engine::MAX_INPUT_PIXELS)
            .unwrap();
    assert_eq!((picture.width, picture.height), (96, 80));
    let kept = selfdiffusion_recipe::embedded_recipe(&larger).unwrap();
    let how = kept.upscale.unwrap();
    assert_eq!(
        (kept.prompt.as_str(), how.upscaler.as_str()),
        ("a cat", "x4")
    );

    // Storage down: the job is tried again, then fails with the reason; nothing is listed.
    cluster.s3.stop();
    let id = create(
        &a,
        &tokens[3],
        json!({ "prompt": "lost at sea", "steps": 2, "width": 64, "height": 64 }),
    )
    .await;
    let job = wait_end(&b, &tokens[3], &id).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("gave up after 3 attempts") && error.contains("image store"),
        "{error}"
    );
    cluster.s3.resume().await;
    assert!(cluster.s3.keys(&format!("user-4/{id}")).is_empty());
    let id = create(
        &b,
        &tokens[3],
        json!({ "prompt": "found", "steps": 2, "width": 64, "height": 64 }),
    )
    .await;
    assert_eq!(wait_end(&a, &tokens[3], &id).await["status"], "succeeded");

    // What an orchestrator scales on, from any node: the queue, and the one worker left.
    tokio::time::sleep(Duration::from_secs(LEASE_S + 1)).await;
    let (code, _, text) = common::get(&format!("{b}/metrics"), None).await;
    assert_eq!(code, 200);
    let text = String::from_utf8(text).unwrap();
    for line in [
        "selfdiffusion_jobs{state=\"succeeded\"} 46",
        "selfdiffusion_jobs{state=\"failed\"} 1",
        "selfdiffusion_jobs{state=\"queued\"} 0",
        "selfdiffusion_workers 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }

    // Bad input on a scale-out node: a wrong key, a malformed body, an unknown field.
    let (status, _) =
        common::post(&format!("{a}/v1/generations"), Some("sdk_not-a-key"), "{}").await;
    assert_eq!(status, 401);
    let (status, _) = common::post(
        &format!("{b}/v1/generations"),
        Some(&tokens[0]),
        "{\"prompt\": ",
    )
    .await;
    assert_eq!(status, 400);
    let (status, json) = common::post(
        &format!("{a}/v1/generations"),
        Some(&tokens[0]),
        "{\"prompt\": \"a\", \"stpes\": 3}",
    )
    .await;
    assert_eq!(status, 400);
    assert!(common::message(&json).contains("stpes"), "{json}");
}
