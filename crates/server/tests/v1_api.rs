//! The `/v1` API on the real server: API keys made, listed and revoked by their owner; a
//! generation created with a key, retried with the same `Idempotency-Key`, polled, its images
//! downloaded by their signed links; what other users, revoked keys and bad bodies get.

mod common;

use std::time::{Duration, Instant};

use common::keys::{id_claims, serve_keys, sign, CLIENT, ISSUER};
use common::sse::Events;
use selfdiffusion_server::config::Limits;

/// A request to `url` with `headers`, and its status and JSON.
async fn call(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Each body of `cases` POSTed to `url` with `header` is a 400 whose message names the
/// expected part.
async fn refused(
    url: &str,
    header: (&str, &str),
    cases: impl IntoIterator<Item = (serde_json::Value, &str)>,
) {
    for (body, expected) in cases {
        let (status, json) = call(reqwest::Method::POST, url, &[header], Some(body)).await;
        assert_eq!(status, 400, "{json}");
        assert!(
            common::message(&json).contains(expected),
            "{expected}: {json}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_and_generations() {
    use reqwest::Method;
    let keys = serve_keys(&["key-1"]);
    let server = common::start(ISSUER, &keys.url, CLIENT, Limits::default()).await;
    let base = &server.base;
    let ana = format!("Bearer {}", sign("key-1", &id_claims()));
    let mut bo_claims = id_claims();
    bo_claims["sub"] = "user-2".into();
    bo_claims["cognito:username"] = "bo".into();
    let bo = format!("Bearer {}", sign("key-1", &bo_claims));

    // Keys: made with a token, shown once; listed without the key.
    let (status, made) = call(
        Method::POST,
        &format!("{base}/v1/keys"),
        &[("Authorization", &ana)],
        Some(serde_json::json!({"name": "nightly script"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    let key_id = made["info"]["id"].as_str().unwrap().to_owned();
    let (status, listed) = call(
        Method::GET,
        &format!("{base}/v1/keys"),
        &[("Authorization", &ana)],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "nightly script");
    assert!(
        !listed.to_string().contains(&key),
        "the key is never listed"
    );
    // A key cannot make keys; a blank name is refused.
    let (status, _) = call(
        Method::POST,
        &format!("{base}/v1/keys"),
        &[("X-API-Key", &key)],
        Some(serde_json::json!({"name": "more"})),
    )
    .await;
    assert_eq!(status, 401);
    let (status, json) = call(
        Method::POST,
        &format!("{base}/v1/keys"),
        &[("Authorization", &ana)],
        Some(serde_json::json!({"name": "  "})),
    )
    .await;
    assert_eq!(status, 400, "{json}");

    // A generation with the key, created twice with one Idempotency-Key: one job.
    let body = serde_json::json!({
        "prompt": "a lighthouse at dusk", "aspect_ratio": "1:1", "num_inference_steps": 2,
        "guidance_scale": 5.0, "samples": 2, "seed": 3,
    });
    let headers = [("X-API-Key", key.as_str()), ("Idempotency-Key", "run-1")];
    let (status, created) = call(
        Method::POST,
        &format!("{base}/v1/generations"),
        &headers,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    // Accepted: waiting, or already taken by a worker.
    assert!(
        created["status"] == "queued" || created["status"] == "running",
        "{created}"
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, again) = call(
        Method::POST,
        &format!("{base}/v1/generations"),
        &headers,
        Some(body.clone()),
    )
    .await;
    assert_eq!((status, again["id"].as_str()), (202, Some(id.as_str())));
    let url = format!("{base}/v1/generations/{id}");
    let deadline = Instant::now() + Duration::from_secs(300);
    let done = loop {
        let (status, json) = call(Method::GET, &url, &[("X-API-Key", &key)], None).await;
        assert_eq!(status, 200, "{json}");
        match json["status"].as_str().unwrap() {
            "succeeded" => break json,
            "failed" => panic!("{json}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "the generation did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let links = done["output_urls"].as_array().unwrap();
    assert_eq!(links.len(), 2);
    for link in links {
        let (code, kind, png) = common::get(link.as_str().unwrap(), None).await;
        assert_eq!((code, kind.as_str()), (200, "image/png"));
        let recipe = selfdiffusion_recipe::own_recipe(&png).unwrap();
        assert_eq!(
            (recipe.width, recipe.height, recipe.steps),
            (Some(512), Some(512), Some(2))
        );
    }
    // The owner's token sees it too; another user's does not, nor does a stranger's key.
    let (status, _) = call(Method::GET, &url, &[("Authorization", &ana)], None).await;
    assert_eq!(status, 200);
    let (status, _) = call(Method::GET, &url, &[("Authorization", &bo)], None).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        Method::GET,
        &url,
        &[(
            "X-API-Key",
            "sdk_0000000000000000000000000000000000000000000000000000000000000000",
        )],
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, json) = call(Method::GET, &url, &[], None).await;
    assert_eq!(status, 401, "{json}");

    // Followed as Server-Sent Events: accepted, progress with rising ids, complete.
    let body = serde_json::json!({
        "prompt": "a fox in the snow", "width": 64, "height": 64, "steps": 100, "samples": 4,
        "seed": 4,
    });
    let (status, created) = call(
        Method::POST,
        &format!("{base}/v1/generations"),
        &[("X-API-Key", &key)],
        Some(body),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let events_url = format!(
        "{base}/v1/generations/{}/events",
        created["id"].as_str().unwrap()
    );
    let stream = |last: Option<u64>| Events::open(&events_url, ("X-API-Key", &key), last);
    let events = stream(None).await.all().await;
    let names: Vec<&str> = events.iter().map(|(_, name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"accepted"), "{names:?}");
    assert_eq!(names.last(), Some(&"complete"), "{names:?}");
    assert!(names.contains(&"progress"), "{names:?}");
    assert!(
        events.windows(2).all(|w| w[0].0 < w[1].0),
        "ids rise: {events:?}"
    );
    for (_, name, data) in &events {
        if name == "progress" {
            // 4 images of 100 steps.
            assert_eq!(data["total"], 400);
            assert!(data["step"].as_u64().unwrap() <= 400);
        }
    }
    let (last_id, _, complete) = events.last().unwrap();
    assert_eq!(complete["output_urls"].as_array().unwrap().len(), 4);
    // Resumed after the last event: nothing more; after `accepted`: only the outcome.
    assert!(stream(Some(*last_id)).await.all().await.is_empty());
    let resumed = stream(Some(0)).await.all().await;
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!(resumed[0].1, "complete");
    // Another user cannot follow it.
    let (status, _) = call(Method::GET, &events_url, &[("Authorization", &bo)], None).await;
    assert_eq!(status, 404);

    // Cancelled: two long jobs take both workers, a third waits and is cancelled at once; a
    // running one stops after its step.
    let long = serde_json::json!({
        "prompt": "a long night", "width": 64, "height": 64, "steps": 100, "samples": 4,
    });
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, created) = call(
            Method::POST,
            &format!("{base}/v1/generations"),
            &[("X-API-Key", &key)],
            Some(long.clone()),
        )
        .await;
        assert_eq!(status, 202, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let at = |id: &str| format!("{base}/v1/generations/{id}");
    let (status, json) = call(
        Method::DELETE,
        &at(&ids[2]),
        &[("Authorization", &bo)],
        None,
    )
    .await;
    assert_eq!(status, 404, "another user's job: {json}");
    let (status, json) = call(Method::DELETE, &at(&ids[2]), &[("X-API-Key", &key)], None).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("cancelled")),
        "{json}"
    );
    let (status, json) = call(Method::DELETE, &at(&ids[2]), &[("X-API-Key", &key)], None).await;
    assert_eq!(status, 409, "{json}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while call(Method::GET, &at(&ids[0]), &[("X-API-Key", &key)], None)
        .await
        .1["status"]
        != "running"
    {
        assert!(
            Instant::now() < deadline,
            "the first long job did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in &ids[..2] {
        let (status, json) = call(Method::DELETE, &at(id), &[("X-API-Key", &key)], None).await;
        assert_eq!(status, 200, "{json}");
    }
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, json) = call(Method::GET, &at(id), &[("X-API-Key", &key)], None).await;
            if json["status"] == "cancelled" {
                break;
            }
            assert!(json["status"] != "succeeded", "{json}");
            assert!(Instant::now() < deadline, "{id} was not cancelled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (_, metrics_kind, metrics) = common::get(&format!("{base}/metrics"), None).await;
    assert!(metrics_kind.starts_with("application/openmetrics-text"));
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("selfdiffusion_jobs{state=\"cancelled\"} 3"),
        "{metrics}"
    );

    // Bad bodies say what to fix.
    let bad = [
        (serde_json::json!({"prompt": "a", "stpes": 3}), "stpes"),
        (
            serde_json::json!({"prompt": "a", "aspect_ratio": "wide"}),
            "aspect_ratio",
        ),
        (
            serde_json::json!({"prompt": "a", "aspect_ratio": "1:1", "width": 64}),
            "not both",
        ),
        (serde_json::json!({"prompt": "a", "samples": 99}), "samples"),
    ];
    refused(&format!("{base}/v1/generations"), ("X-API-Key", &key), bad).await;

    // OpenAI's image API, with the key as its clients send it.
    let openai = format!("{base}/v1/images/generations");
    let bearer_key = format!("Bearer {key}");
    let (status, json) = call(
        Method::POST,
        &openai,
        &[("Authorization", &bearer_key)],
        Some(serde_json::json!({
            "model": "dall-e-2", "prompt": "a red kite", "n": 2, "size": "64x64",
            "response_format": "b64_json",
        })),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert!(json["created"].as_u64().unwrap() > 0);
    let data = json["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for image in data {
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(image["b64_json"].as_str().unwrap())
            .unwrap();
        let recipe = selfdiffusion_recipe::own_recipe(&png).unwrap();
        assert_eq!((recipe.width, recipe.height), (Some(64), Some(64)));
    }
    let (status, json) = call(
        Method::POST,
        &openai,
        &[("Authorization", &bearer_key)],
        Some(serde_json::json!({"prompt": "a red kite", "size": "64x64"})),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let (code, kind, _) = common::get(json["data"][0]["url"].as_str().unwrap(), None).await;
    assert_eq!((code, kind.as_str()), (200, "image/png"));
    let bad = [
        (serde_json::json!({"prompt": "a", "size": "big"}), "size"),
        (
            serde_json::json!({"prompt": "a", "response_format": "jpeg"}),
            "response_format",
        ),
        (serde_json::json!({"prompt": "a", "nn": 2}), "nn"),
    ];
    refused(&openai, ("Authorization", &bearer_key), bad).await;

    // Revoked by its owner (not by another user): the key stops working.
    let revoke = format!("{base}/v1/keys/{key_id}");
    let (status, _) = call(Method::DELETE, &revoke, &[("Authorization", &bo)], None).await;
    assert_eq!(status, 404);
    let (status, _) = call(Method::DELETE, &revoke, &[("Authorization", &ana)], None).await;
    assert_eq!(status, 204);
    let (status, json) = call(Method::GET, &url, &[("X-API-Key", &key)], None).await;
    assert_eq!(status, 401);
    assert!(common::message(&json).contains("not valid"), "{json}");
}
