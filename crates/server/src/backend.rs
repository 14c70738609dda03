//! Where the HTTP handlers' jobs, images and API keys live: in this process (one box: the
//! in-process queue and workers, SQLite, images on local disk behind signed URLs), or shared
//! by every node of a scale-out deployment (PostgreSQL, S3 with presigned links). The handlers
//! are the same for both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use selfdiffusion_protocol::{ApiKeyInfo, Status};

use crate::auth::Caller;
use crate::cluster::db::{CancelOrDb, Db};
use crate::cluster::objects::Objects;
use crate::jobs::{CancelError, JobView, Jobs, SubmitError};
use crate::metrics::Metrics;
use crate::routes::ApiError;
use crate::signed_url::UrlSigner;
use crate::store::{JobStore, StoredRequest};
use crate::work::{image_path, Work};

/// The one-box server's own queue, store and image folder.
pub struct OneBox {
    /// The queue and its workers.
    pub jobs: Jobs,
    /// Jobs and API keys on disk.
    pub store: Arc<JobStore>,
    /// Where the images are.
    pub images_dir: PathBuf,
    /// Signs image links.
    pub signer: UrlSigner,
    /// Base of image links.
    pub public_base: String,
}

/// An API node of a scale-out deployment: the shared database and bucket.
pub struct Shared {
    /// Jobs and API keys.
    pub db: Db,
    /// The images.
    pub objects: Arc<Objects>,
    /// Most jobs one user may have open.
    pub max_jobs_per_user: usize,
    /// This node's metrics (jobs by state and live workers come from the database).
    pub metrics: Metrics,
    /// A worker not seen for this long is not counted as alive.
    pub worker_alive: Duration,
}

/// The jobs, images and keys behind the handlers.
pub enum Backend {
    /// One process does everything.
    OneBox(OneBox),
    /// Stateless API node over shared storage.
    Shared(Shared),
}

/// A database failure as an answer: the server cannot do it now.
fn unavailable(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "storage failed");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "storage failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// A refused submission as an answer: the user's limit (429), or the server's state (503).
fn submit_error(e: SubmitError) -> ApiError {
    let status = match e {
        SubmitError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
        SubmitError::ShuttingDown | SubmitError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.to_string())
}

/// The answer of a refused cancel: 404 (not the caller's), 409 (already ended).
fn cancel_error(e: CancelError, id: &str) -> ApiError {
    match e {
        CancelError::NotFound => {
            ApiError::new(StatusCode::NOT_FOUND, format!("no generation {id:?}"))
        }
        e @ CancelError::Ended(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
    }
}

impl Backend {
    /// Queues `work` (written down as `stored`) for `caller`; returns the job id. With an
    /// `idempotency_key` the caller used before, returns the job made then.
    pub async fn submit(
        &self,
        caller: &Caller,
        work: Work,
        stored: StoredRequest,
        idempotency_key: Option<&str>,
    ) -> Result<String, ApiError> {
        match self {
            Backend::OneBox(one) => one.jobs.submit(caller, work, stored, idempotency_key),
            Backend::Shared(shared) => {
                // A worker checks the stored request again before it runs it.
                drop(work);
                shared
                    .db
                    .submit(caller, &stored, idempotency_key, shared.max_jobs_per_user)
                    .await
            }
        }
        .map_err(submit_error)
    }

    /// `owner`'s job `id`; `None` for a missing job and another user's alike.
    pub async fn view(&self, owner: &str, id: &str) -> Result<Option<JobView>, ApiError> {
        match self {
            Backend::OneBox(one) => Ok(one.jobs.view(owner, id)),
            Backend::Shared(shared) => shared.db.view(owner, id).await.map_err(unavailable),
        }
    }

    /// Cancels `owner`'s job `id`; 404 when it is not theirs, 409 when it already ended.
    pub async fn cancel(&self, owner: &str, id: &str) -> Result<JobView, ApiError> {
        match self {
            Backend::OneBox(one) => one.jobs.cancel(owner, id).map_err(|e| cancel_error(e, id)),
            Backend::Shared(shared) => match shared.db.cancel(owner, id).await {
                Ok(view) => Ok(view),
                Err(CancelOrDb::Cancel(e)) => Err(cancel_error(e, id)),
                Err(CancelOrDb::Db(e)) => Err(unavailable(e)),
            },
        }
    }

    /// Expiring links to the images of `owner`'s job `id` once it succeeded or was cancelled
    /// (the images made before stay); none before.
    pub async fn image_links(
        &self,
        owner: &str,
        id: &str,
        view: &JobView,
        ttl: Duration,
    ) -> Result<Vec<String>, ApiError> {
        if !matches!(view.status, Status::Succeeded | Status::Cancelled) {
            return Ok(Vec::new());
        }
        match self {
            Backend::OneBox(one) => Ok((0..view.images)
                .map(|n| {
                    let path = format!("/images/{id}/{n}.png");
                    let query = one.signer.sign(&path, ttl.as_secs());
                    format!("{}{path}?{query}", one.public_base)
                })
                .collect()),
            Backend::Shared(shared) => {
                let mut links = Vec::with_capacity(view.images);
                for n in 0..view.images {
                    let link = shared.objects.link(owner, id, n, ttl).await;
                    links.push(link.map_err(internal)?);
                }
                Ok(links)
            }
        }
    }

    /// The PNG of image `index` of job `id`, if it is ready and (when `owner` is given: the
    /// caller signed in rather than holding a signed link) the job is theirs.
    pub async fn image(
        &self,
        owner: Option<&str>,
        id: &str,
        index: usize,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        match (self, owner) {
            (Backend::OneBox(one), owner) => {
                if !one.jobs.has_image(owner, id, index) {
                    return Ok(None);
                }
                let path = image_path(&one.images_dir, id, index);
                let bytes = tokio::fs::read(&path).await.map_err(|e| {
                    tracing::error!(file = %path.display(), error = %e, "cannot read an image");
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the image cannot be read",
                    )
                })?;
                Ok(Some(bytes))
            }
            // Links to a shared store's images are the store's own (presigned).
            (Backend::Shared(_), None) => Ok(None),
            (Backend::Shared(shared), Some(owner)) => {
                match shared.db.view(owner, id).await.map_err(unavailable)? {
                    Some(view) if index < view.images => {
                        let bytes = shared.objects.get(owner, id, index).await;
                        Ok(Some(bytes.map_err(internal)?))
                    }
                    _ => Ok(None),
                }
            }
        }
    }

    /// Checks a signed image link's `expires` and `signature` for `path` (403 when wrong or
    /// expired); a shared store's links are its own, so none reach a scale-out node.
    pub fn check_link(&self, path: &str, expires: u64, signature: &str) -> Result<(), ApiError> {
        match self {
            Backend::OneBox(one) => one
                .signer
                .check(path, expires, signature)
                .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e.to_string())),
            Backend::Shared(_) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no such image: follow the job's output_urls",
            )),
        }
    }

    /// Jobs waiting and running.
    pub async fn load(&self) -> Result<(usize, usize), ApiError> {
        match self {
            Backend::OneBox(one) => Ok(one.jobs.load()),
            Backend::Shared(shared) => {
                let counts = shared.db.counts().await.map_err(unavailable)?;
                let of = |s| counts.iter().find(|(c, _)| *c == s).map_or(0, |(_, n)| *n);
                Ok((of(Status::Queued), of(Status::Running)))
            }
        }
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub async fn metrics_text(&self) -> Result<String, ApiError> {
        match self {
            Backend::OneBox(one) => Ok(one.jobs.metrics_text()),
            Backend::Shared(shared) => {
                let counts = shared.db.counts().await.map_err(unavailable)?;
                let workers = shared.db.live_workers(shared.worker_alive).await;
                shared.metrics.set_workers(workers.map_err(unavailable)?);
                Ok(shared.metrics.render(&counts))
            }
        }
    }

    /// The owner of API key `key`, if it was made and not revoked.
    pub async fn key_owner(&self, key: &str) -> Result<Option<Caller>, ApiError> {
        match self {
            Backend::OneBox(one) => one.store.key_owner(key).map_err(unavailable),
            Backend::Shared(shared) => shared.db.key_owner(key).await.map_err(unavailable),
        }
    }

    /// Makes a key named `name` for `caller`: as listed, and the key (shown this once).
    pub async fn create_key(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(ApiKeyInfo, String), ApiError> {
        match self {
            Backend::OneBox(one) => one.store.create_key(caller, name).map_err(unavailable),
            Backend::Shared(shared) => shared
                .db
                .create_key(caller, name)
                .await
                .map_err(unavailable),
        }
    }

    /// `owner`'s keys, oldest first.
    pub async fn keys(&self, owner: &str) -> Result<Vec<ApiKeyInfo>, ApiError> {
        match self {
            Backend::OneBox(one) => one.store.keys(owner).map_err(unavailable),
            Backend::Shared(shared) => shared.db.keys(owner).await.map_err(unavailable),
        }
    }

    /// Revokes `owner`'s key `id`; false when they have no such key.
    pub async fn revoke_key(&self, owner: &str, id: &str) -> Result<bool, ApiError> {
        match self {
            Backend::OneBox(one) => one.store.revoke_key(owner, id).map_err(unavailable),
            Backend::Shared(shared) => shared.db.revoke_key(owner, id).await.map_err(unavailable),
        }
    }
}
