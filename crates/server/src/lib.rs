//! The self-hostable SelfDiffusion generation server: the cloud `generate` / `result` protocol
//! over HTTP, Cognito JWTs verified against the pool's key set, a per-user job queue on the
//! local engine, and images served to their owner or through signed, expiring URLs.

pub mod api_keys;
pub mod auth;
pub mod config;
pub mod jobs;
pub mod metrics;
pub mod openai;
pub mod request;
pub mod routes;
pub mod signed_url;
pub mod store;
pub mod v1;

use std::sync::Arc;
use std::time::Duration;

use selfdiffusion_engine::{default_dtype, model_limits, DeviceChoice, Engine, ModelSpec};

pub use config::{Config, ConfigError};
pub use routes::{router, AppState};

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The device cannot be opened.
    #[error(transparent)]
    Engine(#[from] selfdiffusion_engine::EngineError),
    /// The job store cannot be opened or read.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The data folder cannot be used.
    #[error("data folder {path}: {error}")]
    DataDir {
        /// The folder.
        path: String,
        /// What failed.
        error: std::io::Error,
    },
}

/// Checks `config`, opens the device, prepares the data folder and starts the workers.
pub fn build(config: &Config) -> Result<Arc<AppState>, StartError> {
    config.validate()?;
    let rules = config.token_rules()?;
    let model_dir = config.model_dir()?.to_path_buf();
    let limits = config.limits.within(&model_limits(&model_dir)?);
    let device = DeviceChoice::parse(&config.device)?.open()?;
    let dtype = default_dtype(&device);
    let data_error = |error| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        error,
    };
    let images_dir = config.data_dir.join("images");
    std::fs::create_dir_all(&images_dir).map_err(data_error)?;
    let signer = signed_url::UrlSigner::load_or_create(&config.data_dir.join("signing.key"))
        .map_err(data_error)?;
    tracing::info!(model = %model_dir.display(), ?device, workers = config.workers, "starting");
    // A bad upscaler file stops the start, with what is wrong, rather than every upscale job.
    let upscaler = config
        .upscaler
        .as_ref()
        .map(|file| {
            selfdiffusion_engine::Upscaler::load(file, &device)
                .map(|u| (Arc::new(u), device.clone()))
        })
        .transpose()?;
    let checks = Arc::new(request::Checks {
        limits,
        model_name: config.model_name.clone(),
        styles: selfdiffusion_styles::builtin(),
        loras: selfdiffusion_models::LoraLibrary::new(config.loras_dir()),
        caps: request::InputCaps {
            bytes: config.limits.max_input_bytes,
            pixels: config.limits.max_input_pixels as u64,
        },
        upscaler_scale: upscaler.as_ref().map_or(1, |(u, _)| u.scale as u32),
    });
    let store = Arc::new(store::JobStore::open(
        &config.data_dir.join("jobs.sqlite3"),
    )?);
    let resume = {
        let checks = checks.clone();
        Box::new(move |stored: &store::StoredRequest| checks.resume(stored))
    };
    let jobs = jobs::Jobs::start(jobs::JobsConfig {
        engine: Arc::new(
            Engine::new(device.clone(), dtype)
                .with_low_memory(config.low_memory)
                .with_half_weights(config.half_weights),
        ),
        model: ModelSpec::folder(model_dir),
        model_name: config.model_name.clone(),
        images_dir,
        workers: config.workers,
        max_jobs_per_user: config.limits.max_jobs_per_user,
        retention: Duration::from_secs(config.job_retention_s),
        upscaler,
        store: store.clone(),
        resume,
    })?;
    let verifier = auth::Verifier::new(rules);
    Ok(Arc::new(AppState::new(
        config, checks, jobs, store, verifier, signer,
    )))
}
