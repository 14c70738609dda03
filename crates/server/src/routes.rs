//! The HTTP surface: `POST /generate`, `POST /result`, `GET /health`, `GET /metrics`
//! (Prometheus), and `GET /images/{job}/{n}.png` (with the owner's token or a signed, expiring
//! URL). Every error is
//! JSON `{"error": "..."}` with a status that says whose fault it is.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use selfdiffusion_protocol::{
    ErrorBody, GenerateRequest, JobStatus, ResultRequest, ServerInfo, Submitted, UpscaleRequest,
};
use serde::Deserialize;

use crate::auth::{AuthError, Caller, Verifier};
use crate::backend::Backend;
use crate::config::Config;
use crate::jobs::JobView;
use crate::request::Checks;
use crate::store::StoredRequest;

/// What the handlers share.
pub struct AppState {
    /// Where jobs, images and API keys are.
    pub backend: Backend,
    /// Token verification.
    pub verifier: Verifier,
    /// What requests are checked against.
    pub checks: Arc<Checks>,
    /// How long an image link stays valid.
    pub link_ttl: std::time::Duration,
    /// The largest request body.
    pub max_body_bytes: usize,
}

impl AppState {
    /// State for `config` over `backend`, checking requests with `checks`.
    pub fn new(config: &Config, checks: Arc<Checks>, backend: Backend, verifier: Verifier) -> Self {
        AppState {
            backend,
            verifier,
            checks,
            link_ttl: std::time::Duration::from_secs(config.signed_url_ttl_s),
            max_body_bytes: config.limits.max_body_bytes(),
        }
    }
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match e {
            AuthError::KeysUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, e.to_string())
    }
}

impl ApiError {
    /// A body that could not be read as JSON, or was over `max_body_bytes`.
    pub(crate) fn rejected(e: JsonRejection, max_body_bytes: usize) -> Self {
        let status = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the request body is larger than {max_body_bytes} bytes")
        } else {
            format!("invalid request body: {}", e.body_text())
        };
        ApiError::new(status, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response
    }
}

/// The routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let max_body_bytes = state.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        // Only `generate` and `upscale` carry images; the rest keep a small body limit.
        .route(
            "/generate",
            post(generate).layer(DefaultBodyLimit::max(max_body_bytes)),
        )
        .route(
            "/upscale",
            post(upscale).layer(DefaultBodyLimit::max(max_body_bytes)),
        )
        .route("/result", post(result))
        .route("/images/{job}/{file}", get(image))
        .merge(crate::v1::routes())
        .route("/v1/images/generations", post(crate::openai::generate))
        .route("/openapi.json", get(crate::openapi::document))
        .layer(DefaultBodyLimit::max(crate::config::TEXT_BODY_BYTES))
        .with_state(state)
}

/// A scale-out worker's own routes: `GET /health` and `GET /metrics` (its queue waits, run
/// times and outcomes; the jobs by state are on the API nodes).
pub fn worker_router(worker: Arc<crate::cluster::worker::Worker>) -> Router {
    Router::new()
        .route(
            "/health",
            get(
                |State(worker): State<Arc<crate::cluster::worker::Worker>>| async move {
                    Json(serde_json::json!({ "status": "ok", "worker": worker.name }))
                },
            ),
        )
        .route(
            "/metrics",
            get(
                |State(worker): State<Arc<crate::cluster::worker::Worker>>| async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        worker.metrics.render(&[]),
                    )
                },
            ),
        )
        .with_state(worker)
}

/// The caller of a request: from its API key — `X-API-Key`, or `Authorization: Bearer sdk_…`
/// as OpenAI's clients send one — else from its Cognito token ([`token_caller`]).
pub(crate) async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let key = match headers.get("x-api-key") {
        Some(key) => key.to_str().unwrap_or_default().trim(),
        None => match bearer(headers) {
            Some(token) if token.starts_with(crate::api_keys::PREFIX) => token,
            _ => return token_caller(state, headers).await,
        },
    };
    state.backend.key_owner(key).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the API key is not valid (revoked, or never made): make one under POST /v1/keys",
        )
    })
}

/// The value of `Authorization: Bearer …`, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The caller of a request signed in with `Authorization: Bearer <Cognito token>`.
pub(crate) async fn token_caller(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let token = bearer(headers).ok_or(AuthError::Missing)?;
    Ok(state.verifier.verify(token).await?)
}

/// The names of the LoRAs served (none when the folder cannot be read: logged).
fn lora_names(state: &AppState) -> Vec<String> {
    match state.checks.loras.list() {
        Ok(loras) => loras.into_iter().map(|l| l.name).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the LoRAs");
            Vec::new()
        }
    }
}

/// The server's model, limits, LoRAs and load (no token needed).
#[utoipa::path(get, path = "/health", tag = "server",
    responses((status = 200, body = ServerInfo), (status = 503, body = ErrorBody)))]
pub(crate) async fn health(
    State(state): State<Arc<AppState>>,
) -> Result<Json<ServerInfo>, ApiError> {
    let (queued, running) = state.backend.load().await?;
    Ok(Json(ServerInfo {
        status: "ok".into(),
        model: Some(state.checks.model_name.clone()),
        max_samples: Some(state.checks.limits.max_count),
        limits: Some(state.checks.limits),
        loras: Some(lora_names(&state)),
        queued: Some(queued),
        running: Some(running),
    }))
}

/// The Prometheus text exposition (no token: it holds counts only; keep the port private or
/// filter the path at the proxy).
#[utoipa::path(get, path = "/metrics", tag = "server",
    responses((status = 200, description = "OpenMetrics text: jobs by state, queue wait and run time, live workers", content_type = "application/openmetrics-text")))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.backend.metrics_text().await?,
    )
        .into_response())
}

/// Queues a generation (the desktop app's protocol).
#[utoipa::path(post, path = "/generate", tag = "jobs", request_body = GenerateRequest,
    security(("cognito" = []), ("api_key" = [])),
    responses((status = 200, body = Submitted), (status = 400, description = "The body is not valid: the message says what to change", body = ErrorBody),
        (status = 401, description = "No valid token or API key", body = ErrorBody),
        (status = 429, description = "Too many open jobs", body = ErrorBody)))]
pub(crate) async fn generate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<GenerateRequest>, JsonRejection>,
) -> Result<Json<Submitted>, ApiError> {
    let caller = caller(&state, &headers).await?;
    let Json(body) = body.map_err(|e| ApiError::rejected(e, state.max_body_bytes))?;
    let job_id = submit_generate(&state, &caller, body, None).await?;
    Ok(Json(Submitted { job_id }))
}

/// Checks `body` ([`Checks::accept`]) and queues it for `caller`; returns the job id. The
/// checks run on the blocking pool: decoding an image to start from is CPU work.
pub(crate) async fn submit_generate(
    state: &AppState,
    caller: &Caller,
    body: GenerateRequest,
    idempotency_key: Option<&str>,
) -> Result<String, ApiError> {
    let checks = state.checks.clone();
    let (request, stored) = tokio::task::spawn_blocking(move || checks.accept(body))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    state
        .backend
        .submit(caller, request.into(), stored, idempotency_key)
        .await
}

/// Queues an upscale of one image; followed with `/result` like a generation.
#[utoipa::path(post, path = "/upscale", tag = "jobs", request_body = UpscaleRequest,
    security(("cognito" = []), ("api_key" = [])),
    responses((status = 200, body = Submitted), (status = 400, description = "The body is not valid: the message says what to change", body = ErrorBody),
        (status = 401, description = "No valid token or API key", body = ErrorBody),
        (status = 429, description = "Too many open jobs", body = ErrorBody)))]
pub(crate) async fn upscale(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<UpscaleRequest>, JsonRejection>,
) -> Result<Json<Submitted>, ApiError> {
    let caller = caller(&state, &headers).await?;
    let Json(body) = body.map_err(|e| ApiError::rejected(e, state.max_body_bytes))?;
    let checks = state.checks.clone();
    let stored = StoredRequest::Upscale(body.clone());
    let job = tokio::task::spawn_blocking(move || checks.upscale(body))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    let job_id = state
        .backend
        .submit(&caller, job.into(), stored, None)
        .await?;
    Ok(Json(Submitted { job_id }))
}

/// A job's status, progress and (once it ended) its image links.
#[utoipa::path(post, path = "/result", tag = "jobs", request_body = ResultRequest,
    security(("cognito" = []), ("api_key" = [])),
    responses((status = 200, body = JobStatus), (status = 400, description = "The body is not valid: the message says what to change", body = ErrorBody),
        (status = 401, description = "No valid token or API key", body = ErrorBody),
        (status = 404, description = "No such job of the caller's", body = ErrorBody)))]
pub(crate) async fn result(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<ResultRequest>, JsonRejection>,
) -> Result<Json<JobStatus>, ApiError> {
    let caller = caller(&state, &headers).await?;
    let Json(body) = body.map_err(|e| ApiError::rejected(e, state.max_body_bytes))?;
    let view = state
        .backend
        .view(&caller.sub, &body.job_id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job {:?}", body.job_id)))?;
    Ok(Json(JobStatus {
        status: view.status,
        progress: view.progress,
        images: image_links(&state, &caller.sub, &body.job_id, &view).await?,
        error: view.error,
    }))
}

/// Expiring links to the images of `owner`'s job `id` once it succeeded or was cancelled (the
/// images made before stay); none before.
pub(crate) async fn image_links(
    state: &AppState,
    owner: &str,
    id: &str,
    view: &JobView,
) -> Result<Vec<String>, ApiError> {
    state
        .backend
        .image_links(owner, id, view, state.link_ttl)
        .await
}

/// The query of a signed image URL.
#[derive(Deserialize)]
pub(crate) struct Signature {
    expires: Option<u64>,
    signature: Option<String>,
}

/// One image of a job: with the link's own signature, or the owner's token.
#[utoipa::path(get, path = "/images/{job}/{file}", tag = "jobs",
    params(("job" = String, Path, description = "The job id"),
           ("file" = String, Path, description = "`<n>.png`"),
           ("expires" = Option<u64>, Query, description = "From the signed link"),
           ("signature" = Option<String>, Query, description = "From the signed link")),
    responses((status = 200, description = "The PNG, its recipe embedded", content_type = "image/png"),
        (status = 403, description = "The link is altered or expired", body = ErrorBody),
        (status = 404, description = "No such image", body = ErrorBody)))]
pub(crate) async fn image(
    State(state): State<Arc<AppState>>,
    Path((job, file)): Path<(String, String)>,
    Query(signature): Query<Signature>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "no such image");
    let index: usize = file
        .strip_suffix(".png")
        .and_then(|n| n.parse().ok())
        .ok_or_else(not_found)?;
    let owner = match (signature.expires, signature.signature) {
        (Some(expires), Some(sig)) => {
            let path = format!("/images/{job}/{file}");
            state.backend.check_link(&path, expires, &sig)?;
            None
        }
        _ => Some(caller(&state, &headers).await?.sub),
    };
    let bytes = state
        .backend
        .image(owner.as_deref(), &job, index)
        .await?
        .ok_or_else(not_found)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        bytes,
    )
        .into_response())
}
