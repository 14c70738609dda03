//! The cloud generation client: `POST {base}/generate` → `{job_id}`, `POST {base}/result` →
//! `{status, progress?, images, error?}`, with a Bearer token that is refreshed before it
//! expires and once more on a 401; polling with backoff; retries of timeouts and 5xx with
//! jitter; image downloads with a size cap and a content-type check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use selfdiffusion_protocol::{
    GenerateRequest, JobStatus, Limits, ResultRequest, ServerInfo, Status, Submitted,
};
use selfdiffusion_recipe::{own_recipe, Recipe};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::accounts::{needs_refresh, Accounts};
use crate::error::AccountError;
use crate::session::Tokens;

/// Largest image accepted from the cloud.
pub const MAX_IMAGE_BYTES: usize = 32 * 1024 * 1024;
/// Attempts for one request when the server times out or answers 5xx.
const ATTEMPTS: u32 = 4;

/// What can go wrong talking to the cloud.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The server could not be reached.
    #[error(
        "cannot reach the cloud at {0}: you seem to be offline (local generation still works)"
    )]
    Offline(String),
    /// The session is no longer accepted.
    #[error("your session has expired or was signed out; log in again")]
    Unauthorized,
    /// The account service failed while refreshing.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The server refused the request.
    #[error("the cloud refused the request ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server answered something that is not the protocol.
    #[error("the cloud sent an unexpected answer: {0}")]
    Protocol(String),
    /// The job failed on the server.
    #[error("the cloud job failed: {0}")]
    JobFailed(String),
    /// The job did not finish in time.
    #[error("the cloud job did not finish within {0:?}; it may still complete later")]
    TimedOut(Duration),
    /// The user stopped following the job.
    #[error("stopped following the cloud job")]
    Cancelled,
    /// The library could not save an image.
    #[error("cannot save the image into the library: {0}")]
    Library(String),
    /// A downloaded file is not an acceptable image.
    #[error("{url}: {reason}")]
    BadImage {
        /// The image URL.
        url: String,
        /// Why it was refused.
        reason: String,
    },
}

/// A client for one cloud endpoint and one signed-in session.
pub struct CloudClient {
    base: String,
    http: reqwest::Client,
    accounts: Arc<Accounts>,
    tokens: Mutex<Tokens>,
}

/// Jittered exponential backoff: 200 ms, 400 ms, 800 ms … plus up to 50 %.
fn backoff(attempt: u32) -> Duration {
    let base = 200u64 << attempt.min(6);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_millis(base + (nanos as u64 % (base / 2 + 1)))
}

impl CloudClient {
    /// A client for `base` (e.g. `https://api.example.com`), authenticating with `tokens`.
    pub fn new(base: &str, accounts: Arc<Accounts>, tokens: Tokens) -> Self {
        CloudClient {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client with the built-in TLS configuration builds"),
            accounts,
            tokens: Mutex::new(tokens),
        }
    }

    /// The current tokens (refreshed ones included), e.g. to store the refresh token.
    pub async fn tokens(&self) -> Tokens {
        self.tokens.lock().await.clone()
    }

    async fn bearer(&self, force_refresh: bool) -> Result<String, CloudError> {
        let mut tokens = self.tokens.lock().await;
        if force_refresh || needs_refresh(&tokens, SystemTime::now()) {
            *tokens = self.accounts.refresh(&tokens).await.map_err(|e| match e {
                AccountError::WrongCredentials => CloudError::Unauthorized,
                other => CloudError::Account(other),
            })?;
        }
        Ok(tokens.id_token().to_owned())
    }

    /// POSTs JSON with retries (timeouts, connection resets, 5xx) and one refresh on a 401.
    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, CloudError> {
        let url = format!("{}{path}", self.base);
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            let token = self.bearer(false).await?;
            let sent = self
                .http
                .post(&url)
                .bearer_auth(&token)
                .json(body)
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(e)
                    if (e.is_timeout() || e.is_connect() || e.is_request())
                        && attempt + 1 < ATTEMPTS =>
                {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) if e.is_connect() || e.is_timeout() => {
                    return Err(CloudError::Offline(self.base.clone()))
                }
                Err(e) => return Err(CloudError::Protocol(e.to_string())),
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED {
                if refreshed {
                    return Err(CloudError::Unauthorized);
                }
                refreshed = true;
                self.bearer(true).await?;
                continue;
            }
            if status.is_server_error() && attempt + 1 < ATTEMPTS {
                attempt += 1;
                tracing::warn!(%url, status = status.as_u16(), attempt, "cloud server error; retrying");
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            let text = response
                .text()
                .await
                .map_err(|e| CloudError::Protocol(e.to_string()))?;
            if !status.is_success() {
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| {
                        v.get("error")
                            .or_else(|| v.get("message"))
                            .and_then(|m| m.as_str())
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| text.chars().take(200).collect());
                return Err(CloudError::Refused {
                    status: status.as_u16(),
                    message,
                });
            }
            return serde_json::from_str(&text)
                .map_err(|e| CloudError::Protocol(format!("{path}: {e}")));
        }
    }

    /// The server's `GET /health` answer (no token needed).
    pub async fn server_info(&self) -> Result<ServerInfo, CloudError> {
        let url = format!("{}/health", self.base);
        let response = self.http.get(&url).send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                CloudError::Offline(self.base.clone())
            } else {
                CloudError::Protocol(e.to_string())
            }
        })?;
        if !response.status().is_success() {
            return Err(CloudError::Protocol(format!(
                "/health answered {}",
                response.status()
            )));
        }
        response
            .json()
            .await
            .map_err(|e| CloudError::Protocol(format!("/health: {e}")))
    }

    /// What requests the server takes, from `/health`.
    pub async fn limits(&self) -> Result<Limits, CloudError> {
        self.server_info().await?.limits.ok_or_else(|| {
            CloudError::Protocol("/health does not say what requests it takes".into())
        })
    }

    /// Submits a generation; returns the job id.
    pub async fn generate(&self, request: &GenerateRequest) -> Result<String, CloudError> {
        let body = serde_json::to_value(request).expect("a request serialises");
        let submitted: Submitted = self.post("/generate", &body).await?;
        Ok(submitted.job_id)
    }

    /// Asks where a job is.
    pub async fn result(&self, job_id: &str) -> Result<JobStatus, CloudError> {
        let body = ResultRequest {
            job_id: job_id.to_owned(),
        };
        self.post(
            "/result",
            &serde_json::to_value(body).expect("a request serialises"),
        )
        .await
    }

    /// Polls until the job succeeds or fails, backing off from 0.5 s to 5 s; `on_status` sees
    /// every answer. Setting `cancel` stops following the job.
    pub async fn wait(
        &self,
        job_id: &str,
        timeout: Duration,
        cancel: &AtomicBool,
        on_status: &mut (dyn FnMut(&JobStatus) + Send),
    ) -> Result<JobStatus, CloudError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(CloudError::Cancelled);
            }
            let status = self.result(job_id).await?;
            on_status(&status);
            match status.status {
                Status::Succeeded => return Ok(status),
                Status::Failed => {
                    return Err(CloudError::JobFailed(
                        status.error.unwrap_or_else(|| "no reason given".into()),
                    ))
                }
                Status::Cancelled => return Err(CloudError::Cancelled),
                Status::Queued | Status::Running => {}
            }
            if started.elapsed() + delay > timeout {
                return Err(CloudError::TimedOut(timeout));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(5));
        }
    }

    /// Downloads a result image: at most [`MAX_IMAGE_BYTES`], and only PNG, JPEG or WebP. The
    /// token is sent only to the cloud's own host (signed URLs elsewhere need none).
    pub async fn download(&self, url: &str) -> Result<Vec<u8>, CloudError> {
        let bad = |reason: String| CloudError::BadImage {
            url: url.to_owned(),
            reason,
        };
        let mut request = self.http.get(url);
        if url.starts_with(&self.base) {
            request = request.bearer_auth(self.bearer(false).await?);
        }
        let mut response = request.send().await.map_err(|e| {
            if e.is_connect() {
                CloudError::Offline(self.base.clone())
            } else {
                bad(e.to_string())
            }
        })?;
        if !response.status().is_success() {
            return Err(bad(format!("the server answered {}", response.status())));
        }
        let kind = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !["image/png", "image/jpeg", "image/webp"]
            .iter()
            .any(|t| kind.starts_with(t))
        {
            return Err(bad(format!("not an image (content type {kind:?})")));
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_IMAGE_BYTES)
        {
            return Err(bad(format!("larger than {MAX_IMAGE_BYTES} bytes")));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| bad(e.to_string()))? {
            if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
                return Err(bad(format!("larger than {MAX_IMAGE_BYTES} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// The recipe of image `index` of a cloud job whose file carries none of ours (a server other
/// than selfdiffusion-server): the request as it was sent. The styles are named, not applied
/// again here: only the server knows the prompt its model saw.
pub fn cloud_recipe(request: &GenerateRequest, job_id: &str, index: usize) -> Recipe {
    let negative = request.negative_prompt.clone().unwrap_or_default();
    let styles = request
        .styles
        .iter()
        .flatten()
        .map(|s| s.name().to_owned())
        .collect();
    Recipe {
        prompt: request.prompt.trim().to_owned(),
        negative_prompt: negative.trim().to_owned(),
        model: request.model.clone(),
        steps: request.steps,
        guidance: request.guidance,
        seed: request.seed.map(|s| s + index as u64),
        width: request.width,
        height: request.height,
        backend: Some("cloud".into()),
        job_id: Some(job_id.to_owned()),
        ..Recipe::default()
    }
    .styled(styles, request.prompt.trim(), negative.trim())
}

/// The recipe of a downloaded cloud image: the one the server embedded (the prompt its model
/// saw, the styles it applied, its scheduler), marked as a cloud image of `job_id`; or, when the
/// file carries none, [`cloud_recipe`].
pub fn received_recipe(
    bytes: &[u8],
    request: &GenerateRequest,
    job_id: &str,
    index: usize,
) -> Recipe {
    match own_recipe(bytes) {
        Some(mut recipe) => {
            recipe.backend = Some("cloud".into());
            recipe.job_id = Some(job_id.to_owned());
            recipe
        }
        None => cloud_recipe(request, job_id, index),
    }
}
