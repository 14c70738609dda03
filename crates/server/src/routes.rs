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
use crate::config::Config;
use crate::jobs::{Jobs, Status, SubmitError};
use crate::request::Checks;
use crate::signed_url::UrlSigner;
use crate::store::{JobStore, StoredRequest};

/// What the handlers share.
pub struct AppState {
    /// The job queue.
    pub jobs: Jobs,
    /// Token verification.
    pub verifier: Verifier,
    /// Image URL signing.
    pub signer: UrlSigner,
    /// What requests are checked against.
    pub checks: Arc<Checks>,
    /// The job store (API keys live there too).
    pub store: Arc<JobStore>,
    /// Base of image URLs.
    pub public_base: String,
    /// Signed URL lifetime.
    pub signed_url_ttl_s: u64,
    /// The largest request body.
    pub max_body_bytes: usize,
}

impl AppState {
    /// State for `config` around running `jobs` (written down in `store`), checking requests
    /// with `checks`.
    pub fn new(
        config: &Config,
        checks: Arc<Checks>,
        jobs: Jobs,
        store: Arc<JobStore>,
        verifier: Verifier,
        signer: UrlSigner,
    ) -> Self {
        AppState {
            jobs,
            verifier,
            signer,
            checks,
            store,
            public_base: config.public_base(),
            signed_url_ttl_s: config.signed_url_ttl_s,
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
        .layer(DefaultBodyLimit::max(crate::config::TEXT_BODY_BYTES))
        .with_state(state)
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
    state
        .store
        .key_owner(key)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
        .ok_or_else(|| {
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

async fn health(State(state): State<Arc<AppState>>) -> Json<ServerInfo> {
    let (queued, running) = state.jobs.load();
    Json(ServerInfo {
        status: "ok".into(),
        model: Some(state.checks.model_name.clone()),
        max_samples: Some(state.checks.limits.max_count),
        limits: Some(state.checks.limits),
        loras: Some(lora_names(&state)),
        queued: Some(queued),
        running: Some(running),
    })
}

/// The Prometheus text exposition (no token: it holds counts only; keep the port private or
/// filter the path at the proxy).
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.jobs.metrics_text(),
    )
        .into_response()
}

async fn generate(
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
        .jobs
        .submit(caller, request, stored, idempotency_key)
        .map_err(submit_error)
}

async fn upscale(
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
        .jobs
        .submit(&caller, job, stored, None)
        .map_err(submit_error)?;
    Ok(Json(Submitted { job_id }))
}

/// A refused submission as an answer: the user's limit (429), or the server's state (503).
fn submit_error(e: SubmitError) -> ApiError {
    let status = match e {
        SubmitError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
        SubmitError::ShuttingDown | SubmitError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.to_string())
}

async fn result(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<ResultRequest>, JsonRejection>,
) -> Result<Json<JobStatus>, ApiError> {
    let caller = caller(&state, &headers).await?;
    let Json(body) = body.map_err(|e| ApiError::rejected(e, state.max_body_bytes))?;
    let view = state
        .jobs
        .view(&caller.sub, &body.job_id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job {:?}", body.job_id)))?;
    Ok(Json(JobStatus {
        status: view.status,
        progress: view.progress,
        images: image_links(&state, &body.job_id, &view),
        error: view.error,
    }))
}

/// Signed, expiring links to the images of job `id` once it succeeded or was cancelled (the
/// images made before stay); none before.
pub(crate) fn image_links(state: &AppState, id: &str, view: &crate::jobs::JobView) -> Vec<String> {
    if !matches!(view.status, Status::Succeeded | Status::Cancelled) {
        return Vec::new();
    }
    (0..view.images)
        .map(|n| {
            let path = format!("/images/{id}/{n}.png");
            let query = state.signer.sign(&path, state.signed_url_ttl_s);
            format!("{}{path}?{query}", state.public_base)
        })
        .collect()
}

/// The query of a signed image URL.
#[derive(Deserialize)]
struct Signature {
    expires: Option<u64>,
    signature: Option<String>,
}

async fn image(
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
            state
                .signer
                .check(&path, expires, &sig)
                .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e.to_string()))?;
            None
        }
        _ => Some(caller(&state, &headers).await?.sub),
    };
    let path = state
        .jobs
        .image_file(owner.as_deref(), &job, index)
        .ok_or_else(not_found)?;
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        tracing::error!(file = %path.display(), error = %e, "cannot read an image");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the image cannot be read",
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        bytes,
    )
        .into_response())
}
