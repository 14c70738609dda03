//! The self-hostable SelfDiffusion generation server: the cloud `generate` / `result` protocol
//! and the `/v1` API over HTTP, Cognito JWTs verified against the pool's key set or API keys,
//! and a per-user job queue on the local engine. One box keeps everything in one process
//! (SQLite, images on disk behind signed URLs); scale-out runs stateless `api` nodes and
//! `worker`s over PostgreSQL and S3 ([`cluster`]).

pub mod api_keys;
pub mod auth;
pub mod backend;
pub mod cluster;
pub mod config;
pub mod jobs;
pub mod metrics;
pub mod openai;
pub mod openapi;
pub mod request;
pub mod routes;
pub mod signed_url;
pub mod store;
pub mod v1;
pub mod work;

use std::sync::Arc;
use std::time::Duration;

use selfdiffusion_engine::{
    default_dtype, model_limits, Device, DeviceChoice, Engine, ModelSpec, Upscaler,
};

use request::Checks;
use work::Runner;

pub use config::{Config, ConfigError};
pub use routes::{router, worker_router, AppState};

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
    /// The shared job database cannot be reached or prepared.
    #[error(transparent)]
    Database(#[from] cluster::db::DbError),
    /// The data folder cannot be used.
    #[error("data folder {path}: {error}")]
    DataDir {
        /// The folder.
        path: String,
        /// What failed.
        error: std::io::Error,
    },
}

/// The upscaler `config` names, loaded on `device`.
fn upscaler(config: &Config, device: &Device) -> Result<Option<Arc<Upscaler>>, StartError> {
    // A bad upscaler file stops the start, with what is wrong, rather than every upscale job.
    Ok(config
        .upscaler
        .as_ref()
        .map(|file| Upscaler::load(file, device).map(Arc::new))
        .transpose()?)
}

/// What requests are checked against under `config`, its upscaler making images
/// `upscaler_scale` times larger (1: Lanczos).
fn checks(config: &Config, upscaler_scale: usize) -> Result<Arc<Checks>, StartError> {
    let model_dir = config.model_dir()?;
    Ok(Arc::new(Checks {
        limits: config.limits.within(&model_limits(model_dir)?),
        model_name: config.model_name.clone(),
        styles: selfdiffusion_styles::builtin(),
        loras: selfdiffusion_models::LoraLibrary::new(config.loras_dir()),
        caps: request::InputCaps {
            bytes: config.limits.max_input_bytes,
            pixels: config.limits.max_input_pixels as u64,
        },
        upscaler_scale: upscaler_scale as u32,
    }))
}

/// The engine on `config`'s device, its model, and the upscaler on the same device.
fn runner(config: &Config) -> Result<Runner, StartError> {
    let device = DeviceChoice::parse(&config.device)?.open()?;
    let dtype = default_dtype(&device);
    let model_dir = config.model_dir()?.to_path_buf();
    tracing::info!(model = %model_dir.display(), ?device, workers = config.workers, "starting");
    Ok(Runner {
        upscaler: upscaler(config, &device)?.map(|u| (u, device.clone())),
        engine: Arc::new(
            Engine::new(device, dtype)
                .with_low_memory(config.low_memory)
                .with_half_weights(config.half_weights),
        ),
        model: ModelSpec::folder(model_dir),
        model_name: config.model_name.clone(),
    })
}

/// One box: checks `config`, opens the device, prepares the data folder and starts the
/// workers, resuming the jobs a restart interrupted.
pub fn build(config: &Config) -> Result<Arc<AppState>, StartError> {
    config.validate()?;
    let rules = config.token_rules()?;
    let data_error = |error| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        error,
    };
    let images_dir = config.data_dir.join("images");
    std::fs::create_dir_all(&images_dir).map_err(data_error)?;
    let signer = signed_url::UrlSigner::load_or_create(&config.data_dir.join("signing.key"))
        .map_err(data_error)?;
    let runner = runner(config)?;
    let checks = checks(config, runner.upscaler.as_ref().map_or(1, |(u, _)| u.scale))?;
    let store = Arc::new(store::JobStore::open(
        &config.data_dir.join("jobs.sqlite3"),
    )?);
    let resume = {
        let checks = checks.clone();
        Box::new(move |stored: &store::StoredRequest| checks.resume(stored))
    };
    let jobs = jobs::Jobs::start(jobs::JobsConfig {
        runner,
        images_dir: images_dir.clone(),
        workers: config.workers,
        max_jobs_per_user: config.limits.max_jobs_per_user,
        retention: Duration::from_secs(config.job_retention_s),
        store: store.clone(),
        resume,
    })?;
    let backend = backend::Backend::OneBox(backend::OneBox {
        jobs,
        store,
        images_dir,
        signer,
        public_base: config.public_base(),
    });
    Ok(Arc::new(AppState::new(
        config,
        checks,
        backend,
        auth::Verifier::new(rules),
    )))
}

/// A scale-out API node: checks `config` and connects to the shared database and bucket. It
/// runs no engine (the upscaler, if any, is read on the CPU for its scale).
pub async fn build_api(config: &Config) -> Result<Arc<AppState>, StartError> {
    config.validate()?;
    config.cluster.validate()?;
    let rules = config.token_rules()?;
    // API nodes only check requests: the upscaler's scale is read from its file's index.
    let scale = config
        .upscaler
        .as_deref()
        .map(selfdiffusion_engine::upscaler_scale)
        .transpose()?
        .unwrap_or(1);
    let checks = checks(config, scale)?;
    let (db, objects) = cluster::connect(&config.cluster).await?;
    cluster::forget_expired_jobs(
        db.clone(),
        objects.clone(),
        Duration::from_secs(config.job_retention_s),
    );
    let backend = backend::Backend::Shared(backend::Shared {
        db,
        objects,
        max_jobs_per_user: config.limits.max_jobs_per_user,
        metrics: metrics::Metrics::default(),
        worker_alive: Duration::from_secs(config.cluster.lease_s),
    });
    Ok(Arc::new(AppState::new(
        config,
        checks,
        backend,
        auth::Verifier::new(rules),
    )))
}

/// A scale-out worker: checks `config`, opens the device and connects to the shared database
/// and bucket; [`cluster::worker::Worker::run`] then takes jobs.
pub async fn build_worker(config: &Config) -> Result<Arc<cluster::worker::Worker>, StartError> {
    config.validate()?;
    config.cluster.validate()?;
    let runner = runner(config)?;
    let checks = checks(config, runner.upscaler.as_ref().map_or(1, |(u, _)| u.scale))?;
    let (db, objects) = cluster::connect(&config.cluster).await?;
    let wake = Arc::new(tokio::sync::Notify::new());
    db.wake_on_new_jobs(wake.clone());
    Ok(Arc::new(cluster::worker::Worker {
        name: cluster::worker_name(),
        db,
        objects,
        runner: Arc::new(runner),
        checks,
        lease: Duration::from_secs(config.cluster.lease_s),
        max_attempts: config.cluster.max_attempts,
        metrics: Arc::new(metrics::Metrics::default()),
        wake,
    }))
}
