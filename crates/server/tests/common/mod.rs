//! Starting the real server on loopback with a tiny random model, and raw HTTP helpers.
#![allow(dead_code)]

pub mod cluster;
#[path = "../../../engine/tests/common/mod.rs"]
pub mod engine;
pub mod keys;
pub mod process;
pub mod services;
pub mod sse;

use std::path::PathBuf;

use selfdiffusion_server::config::{AuthConfig, Config, Limits};

/// A server running on loopback until dropped (with its data folder).
pub struct Running {
    /// Its base URL.
    pub base: String,
    /// Its data folder.
    pub data: PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the server for tokens from `issuer` (keys at `jwks_url`) issued to `client_id`.
pub async fn start(issuer: &str, jwks_url: &str, client_id: &str, limits: Limits) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    engine::tiny_model(&model);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        listen: addr,
        data_dir: dir.path().join("data"),
        model: Some(model),
        model_name: "tiny".into(),
        device: "cpu".into(),
        workers: 2,
        auth: AuthConfig {
            issuer: Some(issuer.into()),
            jwks_url: Some(jwks_url.into()),
            client_ids: vec![client_id.into()],
            jwks_refetch_min_s: Some(0),
            ..AuthConfig::default()
        },
        limits,
        ..Config::default()
    };
    let state = selfdiffusion_server::build(&config).unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, selfdiffusion_server::router(state))
            .await
            .unwrap();
    });
    Running {
        base: format!("http://{addr}"),
        data: config.data_dir,
        _dir: dir,
        task,
    }
}

/// POSTs `body` (raw) with an optional bearer token; returns status and JSON (or text).
pub async fn post(
    url: &str,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

/// GETs `url`; returns status, content type and body.
pub async fn get(url: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, response.bytes().await.unwrap().to_vec())
}

/// The `error` message of a JSON error answer.
pub fn message(json: &serde_json::Value) -> String {
    json["error"].as_str().unwrap_or_default().to_owned()
}
