//! `POST /v1/images/generations`, OpenAI's image API, so clients written for it work against a
//! self-hosted server: `prompt`, `n`, `size` (`"WxH"`), `response_format` (`url` or
//! `b64_json`); `model`, `quality`, `style` and `user` are accepted and ignored (the server has
//! one model). The answer waits for the images, as OpenAI's does. Authentication as every
//! `/v1` route: `Authorization: Bearer <API key>` (what OpenAI clients send), `X-API-Key`, or
//! a Cognito token.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::Engine as _;
use selfdiffusion_protocol::{GenerateRequest, Status};
use serde::{Deserialize, Serialize};

use crate::routes::{caller, image_links, submit_generate, ApiError, AppState};

/// The request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagesRequest {
    prompt: String,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    response_format: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    quality: Option<String>,
    #[serde(default)]
    style: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// One image of the answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ImageData {
    /// A signed, expiring link.
    Url {
        /// The link.
        url: String,
    },
    /// The PNG itself.
    Base64 {
        /// The PNG in base64.
        b64_json: String,
    },
}

/// The answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImagesResponse {
    /// When the images were made, in seconds since the epoch.
    pub created: u64,
    /// The images.
    pub data: Vec<ImageData>,
}

/// How long the answer waits for the images.
const WAIT: Duration = Duration::from_secs(600);

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// `"WxH"` as a size.
fn size(text: &str) -> Result<(u32, u32), ApiError> {
    let parse = || {
        let (w, h) = text.trim().split_once(['x', 'X'])?;
        Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
    };
    parse().ok_or_else(|| {
        bad(format!(
            "size {text:?} is not WIDTHxHEIGHT, e.g. \"512x512\""
        ))
    })
}

/// `POST /v1/images/generations`.
#[utoipa::path(post, path = "/v1/images/generations", tag = "openai", request_body = ImagesRequest,
    security(("api_key" = []), ("cognito" = [])),
    responses((status = 200, body = ImagesResponse),
        (status = 400, description = "The body is not valid", body = selfdiffusion_protocol::ErrorBody),
        (status = 401, description = "No valid token or API key", body = selfdiffusion_protocol::ErrorBody),
        (status = 504, description = "The images are not ready yet: follow the generation", body = selfdiffusion_protocol::ErrorBody)))]
pub async fn generate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<ImagesRequest>, JsonRejection>,
) -> Result<Json<ImagesResponse>, ApiError> {
    let caller = caller(&state, &headers).await?;
    let Json(body) = body.map_err(|e| ApiError::rejected(e, state.max_body_bytes))?;
    tracing::debug!(
        model = ?body.model, quality = ?body.quality, style = ?body.style, user = ?body.user,
        "OpenAI fields the server ignores"
    );
    let as_base64 = match body.response_format.as_deref() {
        None | Some("url") => false,
        Some("b64_json") => true,
        Some(other) => {
            return Err(bad(format!(
                "response_format {other:?}: give \"url\" or \"b64_json\""
            )))
        }
    };
    let (width, height) = match &body.size {
        Some(text) => {
            let (w, h) = size(text)?;
            (Some(w), Some(h))
        }
        None => (None, None),
    };
    let request = GenerateRequest {
        prompt: body.prompt,
        samples: body.n.unwrap_or(1),
        width,
        height,
        ..GenerateRequest::default()
    };
    let id = submit_generate(&state, &caller, request, None).await?;
    let deadline = Instant::now() + WAIT;
    let view = loop {
        let view =
            state.backend.view(&caller.sub, &id).await?.ok_or_else(|| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the job was lost")
            })?;
        match view.status {
            Status::Succeeded => break view,
            Status::Failed | Status::Cancelled => {
                let why = view.error.unwrap_or_else(|| "cancelled".into());
                return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why));
            }
            Status::Queued | Status::Running => {}
        }
        if Instant::now() > deadline {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the images are not ready yet; follow GET /v1/generations/{id}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let data = if as_base64 {
        let mut data = Vec::with_capacity(view.images);
        for n in 0..view.images {
            let png = state
                .backend
                .image(Some(&caller.sub), &id, n)
                .await?
                .ok_or_else(|| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "an image is missing")
                })?;
            data.push(ImageData::Base64 {
                b64_json: base64::engine::general_purpose::STANDARD.encode(png),
            });
        }
        data
    } else {
        image_links(&state, &caller.sub, &id, &view)
            .await?
            .into_iter()
            .map(|url| ImageData::Url { url })
            .collect()
    };
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Json(ImagesResponse { created, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_width_by_height() {
        assert_eq!(size("512x512").unwrap(), (512, 512));
        assert_eq!(size(" 768 X 512 ").unwrap(), (768, 512));
        for text in ["512", "512*512", "x512", "ax b", "-1x4"] {
            assert!(size(text).is_err(), "{text:?}");
        }
    }
}
