//! A scale-out deployment on loopback: PostgreSQL, an S3 server, a key set for tokens and a
//! tiny model, with `api` nodes and `worker`s of the real binary started on demand.

use std::path::PathBuf;

use super::keys::{id_claims, serve_keys, sign, KeySet, CLIENT, ISSUER};
use super::process::{free_port, Server};
use super::services::{Postgres, BUCKET, S3, S3_ACCESS_KEY, S3_SECRET_KEY};

/// The services and the folder every process's config points at.
pub struct Cluster {
    /// The job database.
    pub pg: Postgres,
    /// The image store.
    pub s3: S3,
    /// How long a worker's lease lasts, in seconds.
    pub lease_s: u64,
    keys: KeySet,
    dir: tempfile::TempDir,
}

/// The S3 credentials every process gets.
const ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
];

impl Cluster {
    /// Starts the services, or says why they cannot run (`None`: skip).
    pub async fn start(lease_s: u64) -> Option<Self> {
        let pg = Postgres::start()?;
        let s3 = S3::start().await?;
        let dir = tempfile::tempdir().unwrap();
        super::engine::tiny_model(&dir.path().join("model"));
        Some(Cluster {
            pg,
            s3,
            lease_s,
            keys: serve_keys(&["key-1"]),
            dir,
        })
    }

    /// Writes the config of process `name` listening on `port`, its links valid `ttl_s` (and
    /// made for the store's public name when `public_links`).
    pub fn config(&self, name: &str, port: u16, ttl_s: u64, public_links: bool) -> PathBuf {
        let public = if public_links {
            format!("s3_public_endpoint = \"{}\"", self.s3.public_endpoint())
        } else {
            String::new()
        };
        let file = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                r#"
                listen = "127.0.0.1:{port}"
                data_dir = {data:?}
                model = {model:?}
                model_name = "tiny"
                upscaler = {upscaler:?}
                device = "cpu"
                workers = 1
                signed_url_ttl_s = {ttl_s}
                [auth]
                issuer = "{ISSUER}"
                jwks_url = "{jwks}"
                client_ids = ["{CLIENT}"]
                [limits]
                max_jobs_per_user = 16
                max_steps = 150
                [cluster]
                database_url = "{db}"
                lease_s = {lease_s}
                max_attempts = 3
                s3_bucket = "{BUCKET}"
                s3_endpoint = "{s3}"
                {public}
                "#,
                data = self.dir.path().join(name),
                model = self.dir.path().join("model"),
                upscaler = Self::upscaler(),
                jwks = self.keys.url,
                db = self.pg.url(),
                lease_s = self.lease_s,
                s3 = self.s3.endpoint(),
            ),
        )
        .unwrap();
        file
    }

    /// The tiny ESRGAN ×4 upscaler every process is configured with (API nodes read only its
    /// scale).
    pub fn upscaler() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../engine/tests/data/tiny-esrgan/x4.safetensors")
    }

    /// Starts API node `name` (its links valid `ttl_s`, for the store's public name when
    /// `public_links`) on a free port; returns it and its base URL.
    pub async fn api(&self, name: &str, ttl_s: u64, public_links: bool) -> (Server, String) {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let config = self.config(name, port, ttl_s, public_links);
        (Server::start(Some("api"), &config, &base, &ENV).await, base)
    }

    /// Starts API node `name` again on `base`'s port (as its config says).
    pub async fn restart_api(&self, name: &str, base: &str) -> Server {
        let config = self.dir.path().join(format!("{name}.toml"));
        Server::start(Some("api"), &config, base, &ENV).await
    }

    /// Starts worker `name`; returns it and the name it claims jobs under.
    pub async fn worker(&self, name: &str) -> (Server, String) {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let config = self.config(name, port, 900, false);
        let worker = Server::start(Some("worker"), &config, &base, &ENV).await;
        let (_, _, health) = super::get(&format!("{base}/health"), None).await;
        let health: serde_json::Value = serde_json::from_slice(&health).unwrap();
        (worker, health["worker"].as_str().unwrap().to_owned())
    }
}

/// The token of user `n` (subject `user-<n>`).
pub fn token(n: usize) -> String {
    let mut claims = id_claims();
    claims["sub"] = format!("user-{n}").into();
    claims["cognito:username"] = format!("user{n}").into();
    sign("key-1", &claims)
}
