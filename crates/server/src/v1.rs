//! The `/v1` API of the earlier backends (seed 002): `POST /v1/generations` → 202 `{id,
//! status}`, `GET /v1/generations/{id}` → status, progress and signed `output_urls`, with an
//! `X-API-Key` or a Cognito token; `Idempotency-Key` makes a retried create return the same
//! job; `DELETE /v1/generations/{id}` cancels it; `GET /v1/generations/{id}/events` streams it as Server-Sent Events (`accepted`,
//! `progress`, `complete`, `failed`, `cancelled`; `Last-Event-ID` resumes). API keys: `POST /v1/keys`
//! (shown once), `GET /v1/keys`, `DELETE /v1/keys/{id}`, by their owner signed in with a token
//! (a key cannot make or revoke keys).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::Stream;
use selfdiffusion_protocol::{
    ApiKeyCreate, ApiKeyInfo, CreatedApiKey, ErrorBody, GenerateRequest, Generation,
    GenerationCreate, Limits, Status,
};

use crate::jobs::JobView;
use crate::routes::{caller, image_links, submit_generate, token_caller, ApiError, AppState};

/// The `/v1` routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/generations", post(create))
        .route("/v1/generations/{id}", get(show).delete(cancel))
        .route("/v1/generations/{id}/events", get(events))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{id}", delete(revoke_key))
}

/// Pixels an `aspect_ratio` size covers, about: 512².
const RATIO_AREA: f64 = 512.0 * 512.0;
/// Longest name of an API key.
const MAX_KEY_NAME: usize = 100;
/// Longest `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 200;

/// The size `ratio` (`"W:H"`) asks for: about [`RATIO_AREA`] pixels in that shape, each side a
/// multiple of the model's step within its largest side.
fn size_of_ratio(ratio: &str, limits: &Limits) -> Result<(u32, u32), String> {
    let bad = || {
        format!("aspect_ratio {ratio:?} is not W:H with whole numbers from 1 to 100, e.g. \"16:9\"")
    };
    let (w, h) = ratio.split_once(':').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if !(1..=100).contains(&w) || !(1..=100).contains(&h) {
        return Err(bad());
    }
    let step = limits.side_step.max(1);
    let side = |share: f64| {
        let pixels = (RATIO_AREA * share).sqrt();
        let rounded = ((pixels / step as f64).round() as u32).max(1) * step;
        rounded.min(limits.max_side / step * step)
    };
    Ok((side(w as f64 / h as f64), side(h as f64 / w as f64)))
}

/// `body` as the `generate` request it amounts to.
fn as_generate(body: GenerationCreate, limits: &Limits) -> Result<GenerateRequest, String> {
    let (width, height) = match (&body.aspect_ratio, body.width, body.height) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err("give aspect_ratio or width and height, not both".into())
        }
        (Some(ratio), None, None) => {
            let (w, h) = size_of_ratio(ratio, limits)?;
            (Some(w), Some(h))
        }
        (None, w, h) => (w, h),
    };
    Ok(GenerateRequest {
        prompt: body.prompt,
        samples: body.samples.unwrap_or(1),
        negative_prompt: body.negative_prompt,
        styles: body.styles,
        steps: body.steps,
        guidance: body.guidance,
        seed: body.seed,
        width,
        height,
        lora_scale: body.lora_scale,
        ..GenerateRequest::default()
    })
}

/// The `Idempotency-Key` header, checked.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default().trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible characters"),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// Queues a generation; `Idempotency-Key` makes a retried create return the same job.
#[utoipa::path(post, path = "/v1/generations", tag = "v1", request_body = GenerationCreate,
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key returns the same job")),
    security(("api_key" = []), ("cognito" = [])),
    responses((status = 202, body = Generation), (status = 400, description = "The body is not valid: the message says what to change", body = ErrorBody),
        (status = 401, description = "No valid token or API key", body = ErrorBody),
        (status = 429, description = "Too many open jobs", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<GenerationCreate>, JsonRejection>,
) -> Result<(StatusCode, Json<Generation>), ApiError> {
    let caller = caller(&state, &headers).await?;
    let Json(body) = body.map_err(|e| ApiError::rejected(e, state.max_body_bytes))?;
    let idempotency = idempotency_key(&headers)?;
    let body = as_generate(body, &state.checks.limits)
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    let id = submit_generate(&state, &caller, body, idempotency.as_deref()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(generation(&state, &caller.sub, &id).await?),
    ))
}

/// Job `id` of `owner`; 404 for a missing job and another user's alike.
async fn job(state: &AppState, owner: &str, id: &str) -> Result<JobView, ApiError> {
    state
        .backend
        .view(owner, id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no generation {id:?}")))
}

/// Job `id` of `owner` as `/v1` shows it.
async fn generation(state: &AppState, owner: &str, id: &str) -> Result<Generation, ApiError> {
    let view = job(state, owner, id).await?;
    Ok(Generation {
        id: id.to_owned(),
        status: view.status,
        progress: (view.status == Status::Running)
            .then_some(view.progress)
            .flatten(),
        output_urls: image_links(state, owner, id, &view).await?,
        error: view.error,
    })
}

/// A generation: status, progress, and expiring `output_urls` once it ended.
#[utoipa::path(get, path = "/v1/generations/{id}", tag = "v1",
    params(("id" = String, Path, description = "The generation id")),
    security(("api_key" = []), ("cognito" = [])),
    responses((status = 200, body = Generation),
        (status = 401, description = "No valid token or API key", body = ErrorBody),
        (status = 404, description = "No such generation of the caller's", body = ErrorBody)))]
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Generation>, ApiError> {
    let caller = caller(&state, &headers).await?;
    Ok(Json(generation(&state, &caller.sub, &id).await?))
}

/// Cancels a generation: a queued one at once, a running one after its step.
#[utoipa::path(delete, path = "/v1/generations/{id}", tag = "v1",
    params(("id" = String, Path, description = "The generation id")),
    security(("api_key" = []), ("cognito" = [])),
    responses((status = 200, body = Generation),
        (status = 404, description = "No such generation of the caller's", body = ErrorBody),
        (status = 409, description = "It already ended", body = ErrorBody)))]
pub(crate) async fn cancel(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Generation>, ApiError> {
    let caller = caller(&state, &headers).await?;
    state.backend.cancel(&caller.sub, &id).await?;
    Ok(Json(generation(&state, &caller.sub, &id).await?))
}

/// The id of the last event of a stream (`complete` or `failed`); `accepted` is 0 and each
/// `progress` event's id is the steps done so far, so a resumed stream (`Last-Event-ID`) sends
/// only what is newer.
const FINAL_EVENT: u64 = 1 << 40;
/// How often a stream looks at its job.
const POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// A stream following one job.
struct Follow {
    state: Arc<AppState>,
    owner: String,
    id: String,
    /// The id of the last event sent (or the client had).
    sent: Option<u64>,
}

impl Follow {
    /// The next event to send about `view` (whose image links are `urls`), if there is a
    /// newer one.
    fn next(&mut self, view: &JobView, urls: &[String]) -> Option<Event> {
        let (seq, event) = match view.status {
            _ if self.sent.is_none() => (
                0,
                Event::default()
                    .event("accepted")
                    .json_data(serde_json::json!({ "id": self.id, "status": view.status })),
            ),
            Status::Queued => return None,
            Status::Running => {
                let (done, total) = view.steps?;
                let seq = done as u64;
                if self.sent.is_some_and(|sent| sent >= seq) {
                    return None;
                }
                let eta = view.eta.map(|eta| eta.as_secs_f64());
                let data = serde_json::json!({
                    "step": done, "total": total, "progress": view.progress, "eta_s": eta,
                });
                (seq, Event::default().event("progress").json_data(data))
            }
            Status::Succeeded => {
                let data = serde_json::json!({ "id": self.id, "output_urls": urls });
                (
                    FINAL_EVENT,
                    Event::default().event("complete").json_data(data),
                )
            }
            Status::Failed => {
                let data = serde_json::json!({ "id": self.id, "error": view.error });
                (
                    FINAL_EVENT,
                    Event::default().event("failed").json_data(data),
                )
            }
            Status::Cancelled => {
                let data = serde_json::json!({ "id": self.id, "output_urls": urls });
                (
                    FINAL_EVENT,
                    Event::default().event("cancelled").json_data(data),
                )
            }
        };
        if self.sent.is_some_and(|sent| sent >= seq) {
            return None;
        }
        self.sent = Some(seq);
        // Serialising plain JSON values cannot fail.
        Some(event.expect("JSON data").id(seq.to_string()))
    }
}

/// The generation as Server-Sent Events: `accepted`, `progress` (step, total, progress,
/// eta_s), then `complete` (output_urls), `failed` or `cancelled`.
#[utoipa::path(get, path = "/v1/generations/{id}/events", tag = "v1",
    params(("id" = String, Path, description = "The generation id"),
           ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event")),
    security(("api_key" = []), ("cognito" = [])),
    responses((status = 200, description = "The event stream", content_type = "text/event-stream"),
        (status = 404, description = "No such generation of the caller's", body = ErrorBody)))]
pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let caller = caller(&state, &headers).await?;
    job(&state, &caller.sub, &id).await?;
    let sent = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let follow = Follow {
        state,
        owner: caller.sub,
        id,
        sent,
    };
    let stream = futures_util::stream::unfold(follow, |mut follow| async move {
        loop {
            if follow.sent == Some(FINAL_EVENT) {
                return None;
            }
            // A job forgotten meanwhile (retention) ends the stream; a storage failure (reading
            // the job, or linking its images: `complete` never goes out without them) is
            // retried at the next look.
            let view = match follow.state.backend.view(&follow.owner, &follow.id).await {
                Ok(view) => view?,
                Err(_) => {
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let links = follow
                .state
                .backend
                .image_links(&follow.owner, &follow.id, &view, follow.state.link_ttl)
                .await;
            let Ok(urls) = links else {
                tokio::time::sleep(POLL).await;
                continue;
            };
            if let Some(event) = follow.next(&view, &urls) {
                return Some((Ok(event), follow));
            }
            if view.status.has_ended() {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Makes an API key, shown this once (the server keeps its hash).
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = ApiKeyCreate,
    security(("cognito" = [])),
    responses((status = 201, body = CreatedApiKey), (status = 400, description = "The body is not valid: the message says what to change", body = ErrorBody),
        (status = 401, description = "No valid token or API key", body = ErrorBody)))]
pub(crate) async fn create_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<ApiKeyCreate>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let caller = token_caller(&state, &headers).await?;
    let Json(body) = body.map_err(|e| ApiError::rejected(e, state.max_body_bytes))?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_KEY_NAME || name.chars().any(char::is_control)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("name the key with 1 to {MAX_KEY_NAME} characters, no control characters"),
        ));
    }
    let (info, key) = state.backend.create_key(&caller, name).await?;
    tracing::info!(user = %caller.username, key = %info.id, "API key made");
    Ok((StatusCode::CREATED, Json(CreatedApiKey { info, key })))
}

/// The caller's API keys (never the keys themselves).
#[utoipa::path(get, path = "/v1/keys", tag = "keys", security(("cognito" = [])),
    responses((status = 200, body = Vec<ApiKeyInfo>),
        (status = 401, description = "No valid token", body = ErrorBody)))]
pub(crate) async fn list_keys(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<ApiKeyInfo>>, ApiError> {
    let caller = token_caller(&state, &headers).await?;
    Ok(Json(state.backend.keys(&caller.sub).await?))
}

/// Revokes one of the caller's API keys.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    security(("cognito" = [])),
    responses((status = 204, description = "Revoked"),
        (status = 404, description = "No such key of the caller's", body = ErrorBody)))]
pub(crate) async fn revoke_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let caller = token_caller(&state, &headers).await?;
    if !state.backend.revoke_key(&caller.sub, &id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no API key {id:?}"),
        ));
    }
    tracing::info!(user = %caller.username, key = %id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            side_step: 64,
            max_side: 1024,
            ..selfdiffusion_engine::LIMITS
        }
    }

    #[test]
    fn an_aspect_ratio_is_about_512_squared_in_its_shape() {
        assert_eq!(size_of_ratio("1:1", &limits()), Ok((512, 512)));
        assert_eq!(size_of_ratio("16:9", &limits()), Ok((704, 384)));
        assert_eq!(size_of_ratio("9:16", &limits()), Ok((384, 704)));
        assert_eq!(size_of_ratio(" 3 : 2 ", &limits()), Ok((640, 448)));
        // Within the largest side.
        assert_eq!(size_of_ratio("100:1", &limits()).unwrap().0, 1024);
        for bad in ["", "16x9", "0:1", "1:0", "101:1", "-1:2", "a:b"] {
            assert!(size_of_ratio(bad, &limits()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_size_is_a_ratio_or_a_width_and_height() {
        let body = GenerationCreate {
            prompt: "a fox".into(),
            aspect_ratio: Some("1:1".into()),
            width: Some(512),
            ..GenerationCreate::default()
        };
        assert!(as_generate(body, &limits())
            .unwrap_err()
            .contains("not both"));
        let body: GenerationCreate = serde_json::from_str(
            r#"{"prompt": "a fox", "num_inference_steps": 12, "guidance_scale": 4.5,
                "width": 320, "height": 256}"#,
        )
        .unwrap();
        let request = as_generate(body, &limits()).unwrap();
        assert_eq!(
            (
                request.steps,
                request.guidance,
                request.width,
                request.height,
                request.samples
            ),
            (Some(12), Some(4.5), Some(320), Some(256), 1)
        );
        let typo = serde_json::from_str::<GenerationCreate>(r#"{"prompt": "a", "stpes": 3}"#);
        assert!(typo.unwrap_err().to_string().contains("stpes"));
    }
}
