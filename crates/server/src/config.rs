//! The server's configuration: a TOML file, then `SELFDIFFUSION_SERVER_*` environment variables
//! over it. Every value is checked before the server starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// Everything the server needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The address clients reach the server at, used in image URLs (default: `http://<listen>`).
    pub public_url: Option<String>,
    /// Folder for generated images and the URL signing key.
    pub data_dir: PathBuf,
    /// The diffusers-layout model folder the workers run.
    pub model: Option<PathBuf>,
    /// The model's name, as clients may ask for it in `model`.
    pub model_name: String,
    /// The folder of LoRA `.safetensors` files clients may name (default `<data_dir>/loras`).
    pub loras_dir: Option<PathBuf>,
    /// Device: `auto`, `cpu`, `cuda`, `cuda:N` or `metal`.
    pub device: String,
    /// Generation workers sharing the one loaded model.
    pub workers: usize,
    /// Free the text encoders after each request's prompts are encoded (read again for the
    /// next): less memory while denoising, a little more time per request.
    pub low_memory: bool,
    /// Keep the weight matrices in f16 while computing in f32 (a CPU server): half the memory,
    /// a little more time per step.
    pub half_weights: bool,
    /// An ESRGAN upscaler (`.safetensors` or `.pth`) for `upscale` requests; Lanczos without.
    pub upscaler: Option<PathBuf>,
    /// How long a signed image URL stays valid, in seconds.
    pub signed_url_ttl_s: u64,
    /// How long finished jobs (and their images) are kept, in seconds.
    pub job_retention_s: u64,
    /// Token verification.
    pub auth: AuthConfig,
    /// Request limits.
    pub limits: Limits,
    /// Scale-out: the job database and object store shared by `api` nodes and `worker`s.
    pub cluster: ClusterConfig,
}

/// A setting that may hold a password: never shown by `Debug` (so never logged).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Scale-out settings (unused by the one-box server). The S3 credentials come from the
/// standard `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The PostgreSQL connection string, e.g. `postgres://user:password@db:5432/selfdiffusion`.
    pub database_url: Option<Secret>,
    /// Most connections each process keeps to the database.
    pub database_connections: usize,
    /// The CA certificate(s) (PEM) the database's certificate is checked against when the URL
    /// asks for TLS (`?sslmode=require`); the public web roots when unset.
    pub database_ca_file: Option<PathBuf>,
    /// How long a worker's claim on a job lasts without a heartbeat, in seconds: a job whose
    /// worker died is started again after this long.
    pub lease_s: u64,
    /// How many times a job is started (a worker died, or storage failed) before it fails.
    pub max_attempts: u32,
    /// The S3 bucket the images go to (as `<user>/<job>/<n>.png`).
    pub s3_bucket: Option<String>,
    /// The S3 endpoint of an S3-compatible store (MinIO, Ceph, R2…); AWS when unset.
    pub s3_endpoint: Option<String>,
    /// The store's endpoint as the clients reach it, which presigned links are made for
    /// (`https://images.example.com` when the servers reach it as `http://minio:9000`);
    /// `s3_endpoint` when unset.
    pub s3_public_endpoint: Option<String>,
    /// The S3 region.
    pub s3_region: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            database_url: None,
            database_connections: 8,
            database_ca_file: None,
            lease_s: 30,
            max_attempts: 3,
            s3_bucket: None,
            s3_endpoint: None,
            s3_public_endpoint: None,
            s3_region: "us-east-1".into(),
        }
    }
}

impl ClusterConfig {
    /// Checks the settings scale-out needs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.database_url.is_none() {
            return Err(ConfigError(
                "scale-out needs a database: set cluster.database_url or \
                 SELFDIFFUSION_SERVER_DATABASE_URL (postgres://user:password@host/db)"
                    .into(),
            ));
        }
        if self.s3_bucket.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError(
                "scale-out needs an S3 bucket: set cluster.s3_bucket or \
                 SELFDIFFUSION_SERVER_S3_BUCKET"
                    .into(),
            ));
        }
        if self.lease_s < 3 {
            return Err(ConfigError("cluster.lease_s must be at least 3".into()));
        }
        if self.max_attempts == 0 || self.database_connections == 0 {
            return Err(ConfigError(
                "cluster.max_attempts and cluster.database_connections must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Which tokens are accepted: Cognito user pool JWTs, RS256.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The expected `iss`; defaults to the AWS URL of `region` + `user_pool_id`.
    pub issuer: Option<String>,
    /// Where the key set is; defaults to `<issuer>/.well-known/jwks.json`.
    pub jwks_url: Option<String>,
    /// The pool's region (with `user_pool_id`, instead of `issuer`).
    pub region: Option<String>,
    /// The pool id (with `region`).
    pub user_pool_id: Option<String>,
    /// App client ids whose tokens are accepted (`aud` of id tokens, `client_id` of access tokens).
    pub client_ids: Vec<String>,
    /// Least time between two fetches of the key set caused by unknown key ids, in seconds.
    pub jwks_refetch_min_s: Option<u64>,
}

/// What one request and one user may ask for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest prompt (and negative prompt), in characters.
    pub max_prompt_chars: usize,
    /// Most images per request.
    pub max_samples: usize,
    /// Largest width or height, in pixels.
    pub max_side: usize,
    /// Most denoising steps.
    pub max_steps: usize,
    /// Most jobs one user may have queued or running.
    pub max_jobs_per_user: usize,
    /// Largest image file (an img2img image or a mask) a request may carry, in bytes.
    pub max_input_bytes: usize,
    /// Most pixels of an image a request carries (it is resized to the request's size).
    pub max_input_pixels: usize,
}

/// The text part of a request (prompt, styles, settings) is far below this; bodies without
/// images (`result`) are held to it.
pub const TEXT_BODY_BYTES: usize = 64 * 1024;

impl Limits {
    /// The largest request body: the text, and an image and a mask in base64.
    pub fn max_body_bytes(&self) -> usize {
        TEXT_BODY_BYTES + 2 * self.max_input_bytes.div_ceil(3) * 4
    }
}

impl Limits {
    /// What requests to this server may ask for: these limits within the served model's.
    pub fn within(&self, model: &selfdiffusion_recipe::Limits) -> selfdiffusion_recipe::Limits {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        model.narrowed(&selfdiffusion_recipe::Limits {
            min_side: 1,
            max_side: clamp(self.max_side),
            side_step: 1,
            max_steps: clamp(self.max_steps),
            max_count: clamp(self.max_samples),
            max_guidance: model.max_guidance,
            max_prompt_chars: Some(clamp(self.max_prompt_chars)),
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_prompt_chars: 2000,
            max_samples: 4,
            max_side: 1024,
            max_steps: 100,
            max_jobs_per_user: 4,
            max_input_bytes: 16 * 1024 * 1024,
            max_input_pixels: 2048 * 2048,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            public_url: None,
            data_dir: PathBuf::from("selfdiffusion-server-data"),
            model: None,
            model_name: "sd-1.5".into(),
            loras_dir: None,
            device: "auto".into(),
            workers: 1,
            low_memory: false,
            half_weights: false,
            upscaler: None,
            signed_url_ttl_s: 900,
            job_retention_s: 24 * 3600,
            auth: AuthConfig::default(),
            limits: Limits::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// The verified token settings.
#[derive(Debug, Clone)]
pub struct TokenRules {
    /// Expected issuer.
    pub issuer: String,
    /// Key set URL.
    pub jwks_url: String,
    /// Accepted app client ids.
    pub client_ids: Vec<String>,
    /// Least time between two fetches caused by unknown key ids.
    pub refetch_min: std::time::Duration,
}

impl Config {
    /// Reads `file` (when given), then applies the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
                toml::from_str(&text)
                    .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Applies `SELFDIFFUSION_SERVER_*` values read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let var = |name: &str| get(&format!("SELFDIFFUSION_SERVER_{name}"));
        fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError> {
            v.trim().parse().map_err(|_| {
                ConfigError(format!(
                    "SELFDIFFUSION_SERVER_{name} must be a number (got {v:?})"
                ))
            })
        }
        fn flag(name: &str, v: &str) -> Result<bool, ConfigError> {
            match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" => Ok(false),
                _ => Err(ConfigError(format!(
                    "SELFDIFFUSION_SERVER_{name}={v:?}: give true or false"
                ))),
            }
        }
        if let Some(v) = var("LISTEN") {
            self.listen = v.trim().parse().map_err(|_| {
                ConfigError(format!(
                    "SELFDIFFUSION_SERVER_LISTEN must be host:port, e.g. 0.0.0.0:8787 (got {v:?})"
                ))
            })?;
        }
        if let Some(v) = var("PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = var("DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = var("MODEL") {
            self.model = Some(v.into());
        }
        if let Some(v) = var("MODEL_NAME") {
            self.model_name = v;
        }
        if let Some(v) = var("LORAS_DIR") {
            self.loras_dir = Some(v.into());
        }
        if let Some(v) = var("DEVICE") {
            self.device = v;
        }
        if let Some(v) = var("WORKERS") {
            self.workers = number("WORKERS", &v)?;
        }
        if let Some(v) = var("UPSCALER") {
            self.upscaler = Some(PathBuf::from(v)).filter(|p| !p.as_os_str().is_empty());
        }
        if let Some(v) = var("LOW_MEMORY") {
            self.low_memory = flag("LOW_MEMORY", &v)?;
        }
        if let Some(v) = var("HALF_WEIGHTS") {
            self.half_weights = flag("HALF_WEIGHTS", &v)?;
        }
        if let Some(v) = var("SIGNED_URL_TTL_S") {
            self.signed_url_ttl_s = number("SIGNED_URL_TTL_S", &v)?;
        }
        if let Some(v) = var("JOB_RETENTION_S") {
            self.job_retention_s = number("JOB_RETENTION_S", &v)?;
        }
        if let Some(v) = var("ISSUER") {
            self.auth.issuer = Some(v);
        }
        if let Some(v) = var("JWKS_URL") {
            self.auth.jwks_url = Some(v);
        }
        if let Some(v) = var("REGION") {
            self.auth.region = Some(v);
        }
        if let Some(v) = var("USER_POOL_ID") {
            self.auth.user_pool_id = Some(v);
        }
        if let Some(v) = var("JWKS_REFETCH_MIN_S") {
            self.auth.jwks_refetch_min_s = Some(number("JWKS_REFETCH_MIN_S", &v)?);
        }
        if let Some(v) = var("CLIENT_IDS") {
            self.auth.client_ids = v
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
        }
        let cluster = &mut self.cluster;
        if let Some(v) = var("DATABASE_URL") {
            cluster.database_url = Some(Secret(v));
        }
        if let Some(v) = var("DATABASE_CONNECTIONS") {
            cluster.database_connections = number("DATABASE_CONNECTIONS", &v)?;
        }
        if let Some(v) = var("DATABASE_CA_FILE") {
            cluster.database_ca_file = Some(PathBuf::from(v)).filter(|p| !p.as_os_str().is_empty());
        }
        if let Some(v) = var("LEASE_S") {
            cluster.lease_s = number("LEASE_S", &v)?;
        }
        if let Some(v) = var("MAX_ATTEMPTS") {
            cluster.max_attempts = number("MAX_ATTEMPTS", &v)?;
        }
        if let Some(v) = var("S3_BUCKET") {
            cluster.s3_bucket = Some(v);
        }
        if let Some(v) = var("S3_ENDPOINT") {
            cluster.s3_endpoint = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = var("S3_PUBLIC_ENDPOINT") {
            cluster.s3_public_endpoint = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = var("S3_REGION") {
            cluster.s3_region = v;
        }
        let limits = &mut self.limits;
        for (name, slot) in [
            ("MAX_PROMPT_CHARS", &mut limits.max_prompt_chars),
            ("MAX_SAMPLES", &mut limits.max_samples),
            ("MAX_SIDE", &mut limits.max_side),
            ("MAX_STEPS", &mut limits.max_steps),
            ("MAX_JOBS_PER_USER", &mut limits.max_jobs_per_user),
            ("MAX_INPUT_BYTES", &mut limits.max_input_bytes),
            ("MAX_INPUT_PIXELS", &mut limits.max_input_pixels),
        ] {
            if let Some(v) = var(name) {
                *slot = number(name, &v)?;
            }
        }
        Ok(())
    }

    /// The model folder, which must exist.
    pub fn model_dir(&self) -> Result<&Path, ConfigError> {
        let dir = self.model.as_deref().ok_or_else(|| {
            ConfigError(
                "no model: set `model` in the config file or SELFDIFFUSION_SERVER_MODEL to a \
                 diffusers-layout folder"
                    .into(),
            )
        })?;
        if !dir.join("model_index.json").is_file() && !dir.join("unet").is_dir() {
            return Err(ConfigError(format!(
                "{} is not a diffusers model folder (no model_index.json or unet/)",
                dir.display()
            )));
        }
        Ok(dir)
    }

    /// The token rules, derived and checked.
    pub fn token_rules(&self) -> Result<TokenRules, ConfigError> {
        let auth = &self.auth;
        let issuer = match (&auth.issuer, &auth.region, &auth.user_pool_id) {
            (Some(issuer), _, _) => issuer.trim_end_matches('/').to_owned(),
            (None, Some(region), Some(pool)) => {
                format!("https://cognito-idp.{region}.amazonaws.com/{pool}")
            }
            _ => {
                return Err(ConfigError(
                    "set auth.issuer, or auth.region and auth.user_pool_id, so tokens can be \
                     verified"
                        .into(),
                ))
            }
        };
        if auth.client_ids.is_empty() {
            return Err(ConfigError(
                "set auth.client_ids to the app client id(s) whose tokens are accepted".into(),
            ));
        }
        let jwks_url = auth
            .jwks_url
            .clone()
            .unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
        Ok(TokenRules {
            issuer,
            jwks_url,
            client_ids: auth.client_ids.clone(),
            refetch_min: std::time::Duration::from_secs(auth.jwks_refetch_min_s.unwrap_or(30)),
        })
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.into()));
        if self.workers == 0 {
            return bad("workers must be at least 1");
        }
        let l = &self.limits;
        if l.max_samples == 0 || l.max_samples > 4 {
            return bad("limits.max_samples must be between 1 and 4");
        }
        if l.max_prompt_chars == 0
            || l.max_steps == 0
            || l.max_jobs_per_user == 0
            || l.max_input_bytes == 0
            || l.max_input_pixels == 0
        {
            return bad("limits must be at least 1");
        }
        let engine = selfdiffusion_engine::LIMITS;
        let (min, max) = (engine.min_side as usize, engine.max_side as usize);
        if l.max_side < min || l.max_side > max {
            return Err(ConfigError(format!(
                "limits.max_side must be between {min} and {max}"
            )));
        }
        if l.max_steps > engine.max_steps as usize {
            return Err(ConfigError(format!(
                "limits.max_steps must be at most {}",
                engine.max_steps
            )));
        }
        if self.signed_url_ttl_s == 0 {
            return bad("signed_url_ttl_s must be at least 1");
        }
        Ok(())
    }

    /// The folder of the LoRAs clients may name.
    pub fn loras_dir(&self) -> PathBuf {
        self.loras_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("loras"))
    }

    /// The base of image URLs.
    pub fn public_base(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_environment_overrides_the_file_and_errors_name_the_variable() {
        let mut config: Config = toml::from_str(
            r#"
            workers = 2
            [auth]
            region = "eu-west-1"
            user_pool_id = "eu-west-1_abc"
            client_ids = ["one"]
            [limits]
            max_samples = 3
            "#,
        )
        .unwrap();
        let env: HashMap<&str, &str> = [
            ("SELFDIFFUSION_SERVER_WORKERS", "3"),
            ("SELFDIFFUSION_SERVER_CLIENT_IDS", "a, b"),
            ("SELFDIFFUSION_SERVER_MAX_STEPS", "50"),
            ("SELFDIFFUSION_SERVER_JWKS_REFETCH_MIN_S", "5"),
            ("SELFDIFFUSION_SERVER_HALF_WEIGHTS", "yes"),
        ]
        .into();
        config
            .apply_env(|k| env.get(k).map(|v| v.to_string()))
            .unwrap();
        assert_eq!(config.workers, 3);
        assert!(config.half_weights && !config.low_memory);
        assert_eq!(config.limits.max_samples, 3);
        assert_eq!(config.limits.max_steps, 50);
        let rules = config.token_rules().unwrap();
        assert_eq!(
            rules.issuer,
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc"
        );
        assert_eq!(
            rules.jwks_url,
            format!("{}/.well-known/jwks.json", rules.issuer)
        );
        assert_eq!(rules.client_ids, ["a", "b"]);
        assert_eq!(rules.refetch_min, std::time::Duration::from_secs(5));
        config.validate().unwrap();

        let err = config
            .apply_env(|k| (k == "SELFDIFFUSION_SERVER_WORKERS").then(|| "many".into()))
            .unwrap_err();
        assert!(
            err.to_string().contains("SELFDIFFUSION_SERVER_WORKERS"),
            "{err}"
        );
        let err = config
            .apply_env(|k| (k == "SELFDIFFUSION_SERVER_LOW_MEMORY").then(|| "maybe".into()))
            .unwrap_err();
        assert!(err.to_string().contains("give true or false"), "{err}");
    }

    #[test]
    fn a_config_file_is_read_and_a_broken_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.toml");
        std::fs::write(&file, "model_name = \"sd-2.1\"\n[limits]\nmax_side = 768\n").unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(
            (config.model_name.as_str(), config.limits.max_side),
            ("sd-2.1", 768)
        );
        std::fs::write(&file, "workers = \"two\"").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(
            err.contains("server.toml") && err.contains("workers"),
            "{err}"
        );
        let missing = Config::load(Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
    }

    #[test]
    fn bad_configurations_are_refused_with_the_fix() {
        let err = toml::from_str::<Config>("wokers = 2").unwrap_err();
        assert!(err.to_string().contains("wokers"), "{err}");
        let config = Config::default();
        assert!(config.token_rules().unwrap_err().0.contains("auth.issuer"));
        assert!(config
            .model_dir()
            .unwrap_err()
            .0
            .contains("SELFDIFFUSION_SERVER_MODEL"));
        let config = Config {
            limits: Limits {
                max_samples: 9,
                ..Limits::default()
            },
            ..Config::default()
        };
        assert!(config.validate().unwrap_err().0.contains("max_samples"));
    }

    #[test]
    fn scale_out_settings_come_from_the_file_or_the_environment_and_hide_the_password() {
        let mut config: Config = toml::from_str(
            r#"
            [cluster]
            s3_bucket = "images"
            lease_s = 20
            "#,
        )
        .unwrap();
        let err = config.cluster.validate().unwrap_err().0;
        assert!(err.contains("SELFDIFFUSION_SERVER_DATABASE_URL"), "{err}");
        let env: HashMap<&str, &str> = [
            (
                "SELFDIFFUSION_SERVER_DATABASE_URL",
                "postgres://sd:hunter2@db/sd",
            ),
            ("SELFDIFFUSION_SERVER_MAX_ATTEMPTS", "5"),
            ("SELFDIFFUSION_SERVER_S3_ENDPOINT", "http://minio:9000"),
            (
                "SELFDIFFUSION_SERVER_S3_PUBLIC_ENDPOINT",
                "https://images.example.com",
            ),
        ]
        .into();
        config
            .apply_env(|k| env.get(k).map(|v| v.to_string()))
            .unwrap();
        config.cluster.validate().unwrap();
        assert_eq!(
            (config.cluster.lease_s, config.cluster.max_attempts),
            (20, 5)
        );
        assert_eq!(
            (
                config.cluster.s3_endpoint.as_deref(),
                config.cluster.s3_public_endpoint.as_deref()
            ),
            (
                Some("http://minio:9000"),
                Some("https://images.example.com")
            )
        );
        assert!(!format!("{config:?}").contains("hunter2"), "never logged");
        config.cluster.lease_s = 1;
        assert!(config.cluster.validate().unwrap_err().0.contains("lease_s"));
        config.cluster.lease_s = 20;
        config.cluster.s3_bucket = None;
        assert!(config
            .cluster
            .validate()
            .unwrap_err()
            .0
            .contains("S3_BUCKET"));
    }
}
