//! The cloud generation client: `POST {base}/generate` → `{job_id}`, then the job followed over
//! the server's event stream (`GET {base}/v1/generations/{id}/events`, resumed with
//! `Last-Event-ID` when it breaks) or, from a server without one, by polling `POST
//! {base}/result` → `{status, progress?, images, error?}` with backoff; a Bearer token that is
//! refreshed before it expires and once more on a 401; retries of timeouts and 5xx with
//! jitter; image downloads with a size cap and a content-type check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use selfdiffusion_protocol::{
    ApiKeyCreate, ApiKeyInfo, CreatedApiKey, GenerateRequest, JobStatus, Limits, ResultRequest,
    ServerInfo, Status, Submitted, UpscaleRequest,
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
/// Times a job's event stream may break before the client polls instead.
const STREAM_BREAKS: u32 = 5;
/// How often a quiet event stream looks at the cancel flag.
const CANCEL_CHECK: Duration = Duration::from_millis(250);

/// Whether `response` is a Server-Sent Events stream.
fn is_event_stream(response: &reqwest::Response) -> bool {
    response.status().is_success()
        && response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// One Server-Sent Event.
#[derive(Debug, Default, PartialEq)]
struct Event {
    id: Option<u64>,
    name: String,
    data: String,
}

/// Takes the first whole event off `buffer`, if one has arrived (comments and keep-alives are
/// skipped).
fn take_event(buffer: &mut Vec<u8>) -> Option<Event> {
    loop {
        let end = buffer.windows(2).position(|w| w == b"\n\n")?;
        let block: Vec<u8> = buffer.drain(..end + 2).collect();
        let mut event = Event::default();
        for line in String::from_utf8_lossy(&block).lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => event.id = value.trim().parse().ok(),
                "event" => event.name = value.to_owned(),
                "data" => event.data.push_str(value),
                _ => {}
            }
        }
        if !event.name.is_empty() {
            return Some(event);
        }
    }
}

impl Event {
    /// The job's status this event tells of (`accepted`, `progress`, `complete`, `failed`,
    /// `cancelled`); `None` for another event, and for an `accepted` of a job that already
    /// ended: its outcome, with the images, is the next event.
    fn status(&self) -> Option<JobStatus> {
        let data: serde_json::Value = serde_json::from_str(&self.data).unwrap_or_default();
        let urls = || {
            data["output_urls"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (status, progress, images, error) = match self.name.as_str() {
            "accepted" => {
                let status = data["status"]
                    .as_str()
                    .and_then(Status::from_name)
                    .unwrap_or(Status::Queued);
                if status.has_ended() {
                    return None;
                }
                (status, None, Vec::new(), None)
            }
            "progress" => (Status::Running, data["progress"].as_f64(), Vec::new(), None),
            "complete" => (Status::Succeeded, Some(1.0), urls(), None),
            "failed" => (
                Status::Failed,
                None,
                Vec::new(),
                data["error"].as_str().map(str::to_owned),
            ),
            "cancelled" => (Status::Cancelled, None, urls(), None),
            _ => return None,
        };
        Some(JobStatus {
            status,
            progress,
            images,
            error,
        })
    }
}

/// How a job with `status` ended, or `None` while it runs. A job the server calls succeeded
/// without an image is an error, never an empty success.
fn outcome(job_id: &str, status: JobStatus) -> Option<Result<JobStatus, CloudError>> {
    Some(match status.status {
        Status::Queued | Status::Running => return None,
        Status::Succeeded if status.images.is_empty() => Err(CloudError::Protocol(format!(
            "cloud job {job_id} succeeded without an image"
        ))),
        Status::Succeeded => Ok(status),
        Status::Failed => Err(CloudError::JobFailed(
            status.error.unwrap_or_else(|| "no reason given".into()),
        )),
        Status::Cancelled => Err(CloudError::Cancelled),
    })
}

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

    /// POSTs JSON; see [`CloudClient::call`].
    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, CloudError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Sends `method path` (with a JSON `body`) signed in, with retries (timeouts, connection
    /// resets, 5xx) and one refresh on a 401; an empty answer (204) reads as JSON `null`.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, CloudError> {
        let url = format!("{}{path}", self.base);
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            let token = self.bearer(false).await?;
            let mut request = self.http.request(method.clone(), &url).bearer_auth(&token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let sent = request.send().await;
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
            let text = if text.trim().is_empty() {
                "null"
            } else {
                &text
            };
            return serde_json::from_str(text)
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

    /// Submits an upscale of one image (`POST /upscale`); returns the job id, followed like a
    /// generation's.
    pub async fn upscale(&self, request: &UpscaleRequest) -> Result<String, CloudError> {
        let body = serde_json::to_value(request).expect("a request serialises");
        let submitted: Submitted = self.post("/upscale", &body).await?;
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

    /// Cancels job `job_id` on the server (`DELETE /v1/generations/{id}`): a queued job never
    /// runs, a running one stops after its step. A job that already ended, or a server without
    /// the `/v1` API, is left as it is.
    pub async fn cancel(&self, job_id: &str) -> Result<(), CloudError> {
        let path = format!("/v1/generations/{job_id}");
        match self
            .call::<serde_json::Value>(reqwest::Method::DELETE, &path, None)
            .await
        {
            Ok(_)
            | Err(CloudError::Refused {
                status: 404 | 405 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The signed-in user's API keys for the server's `/v1` API (never the keys themselves).
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyInfo>, CloudError> {
        self.call(reqwest::Method::GET, "/v1/keys", None).await
    }

    /// Makes an API key named `name`; the answer holds the key, shown this once.
    pub async fn create_api_key(&self, name: &str) -> Result<CreatedApiKey, CloudError> {
        let body = serde_json::to_value(ApiKeyCreate {
            name: name.to_owned(),
        })
        .expect("a request serialises");
        self.post("/v1/keys", &body).await
    }

    /// Revokes the signed-in user's API key `id`.
    pub async fn revoke_api_key(&self, id: &str) -> Result<(), CloudError> {
        self.call(reqwest::Method::DELETE, &format!("/v1/keys/{id}"), None)
            .await
    }

    /// Follows the job until it succeeds (with at least one image) or fails: over its event
    /// stream, or (a server without one, or a stream that keeps breaking) by polling, backing
    /// off from 0.5 s to 5 s. `on_status` sees every change. Setting `cancel` stops following
    /// the job.
    pub async fn wait(
        &self,
        job_id: &str,
        timeout: Duration,
        cancel: &AtomicBool,
        on_status: &mut (dyn FnMut(&JobStatus) + Send),
    ) -> Result<JobStatus, CloudError> {
        let started = Instant::now();
        if let Some(status) = self.stream(job_id, timeout, cancel, on_status).await? {
            return Ok(status);
        }
        let mut delay = Duration::from_millis(500);
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(CloudError::Cancelled);
            }
            let status = self.result(job_id).await?;
            on_status(&status);
            if let Some(outcome) = outcome(job_id, status) {
                return outcome;
            }
            if started.elapsed() + delay > timeout {
                return Err(CloudError::TimedOut(timeout));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(5));
        }
    }

    /// Follows `job_id` over `GET /v1/generations/{id}/events` until its outcome, reconnecting
    /// with `Last-Event-ID` when the stream breaks; `None` when the server has no such stream
    /// (or it broke [`STREAM_BREAKS`] times): the caller polls instead.
    async fn stream(
        &self,
        job_id: &str,
        timeout: Duration,
        cancel: &AtomicBool,
        on_status: &mut (dyn FnMut(&JobStatus) + Send),
    ) -> Result<Option<JobStatus>, CloudError> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/v1/generations/{job_id}/events", self.base);
        let mut last: Option<u64> = None;
        let mut breaks = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CloudError::TimedOut(timeout));
            }
            let mut request = self
                .http
                .get(&url)
                .bearer_auth(self.bearer(false).await?)
                .header(reqwest::header::ACCEPT, "text/event-stream")
                .timeout(left);
            if let Some(id) = last {
                request = request.header("Last-Event-ID", id.to_string());
            }
            let mut response = match request.send().await {
                Ok(r) if is_event_stream(&r) => r,
                // Not a stream (an older server, a proxy, a 401 the polling path refreshes).
                Ok(_) => return Ok(None),
                Err(_) => {
                    breaks += 1;
                    if breaks >= STREAM_BREAKS {
                        return Ok(None);
                    }
                    tokio::time::sleep(backoff(breaks)).await;
                    continue;
                }
            };
            let mut buffer = Vec::new();
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Err(CloudError::Cancelled);
                }
                let chunk = match tokio::time::timeout(CANCEL_CHECK, response.chunk()).await {
                    Err(_) => continue,
                    Ok(Ok(Some(chunk))) => chunk,
                    // Ended or broke before the outcome: reconnect.
                    Ok(Ok(None) | Err(_)) => break,
                };
                buffer.extend_from_slice(&chunk);
                while let Some(event) = take_event(&mut buffer) {
                    if event.id.is_some() {
                        last = event.id;
                    }
                    if let Some(status) = event.status() {
                        on_status(&status);
                        if let Some(outcome) = outcome(job_id, status) {
                            return outcome.map(Some);
                        }
                    }
                }
            }
            breaks += 1;
            if breaks >= STREAM_BREAKS {
                return Ok(None);
            }
            tokio::time::sleep(backoff(breaks)).await;
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
