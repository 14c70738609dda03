//! "Log in with Google" (or any identity provider the user pool federates) through the Cognito
//! hosted UI: OAuth 2.0 authorization code with PKCE (RFC 7636) in the system browser, the
//! answer caught on a loopback redirect (RFC 8252), the code exchanged at the pool's token
//! endpoint. The tokens are the pool's own, so the session is then the same as a password
//! login's (refreshed through Cognito, the refresh token in the OS keyring).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::AccountError;
use crate::session::Tokens;

/// The loopback port the browser comes back to: register
/// `http://localhost:47615/callback` as a callback URL of the app client.
pub const LOOPBACK_PORT: u16 = 47615;
/// The path the browser comes back to.
const CALLBACK: &str = "/callback";
/// Longest request line and headers read from the browser.
const MAX_REQUEST: usize = 16 * 1024;

/// The hosted UI of a user pool.
#[derive(Clone)]
pub struct HostedUi {
    /// The pool's domain, e.g. `https://myapp.auth.eu-west-1.amazoncognito.com`.
    pub domain: String,
    /// The app client id.
    pub client_id: String,
    /// The app client secret, when the client has one.
    pub client_secret: Option<String>,
    /// The loopback port (normally [`LOOPBACK_PORT`]; 0 picks a free one, for tests).
    pub port: u16,
}

impl std::fmt::Debug for HostedUi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedUi")
            .field("domain", &self.domain)
            .field("client_id", &self.client_id)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A login waiting for the browser: open [`PendingLogin::url`], then [`PendingLogin::finish`].
pub struct PendingLogin {
    url: String,
    listener: TcpListener,
    redirect_uri: String,
    verifier: String,
    state: String,
    ui: HostedUi,
}

/// `n` random bytes, base64url (no padding).
fn random(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the system's random source works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The token endpoint's answer.
#[derive(Deserialize)]
struct TokenAnswer {
    id_token: String,
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

/// The token endpoint's error answer.
#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The user name an ID token names (`cognito:username`, else `username`, else `email`). The
/// token comes straight from the pool's token endpoint over TLS, so its claims are read, not
/// verified again.
fn username_of(id_token: &str) -> Option<String> {
    let payload = id_token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    ["cognito:username", "username", "email"]
        .iter()
        .find_map(|k| claims[k].as_str().map(str::to_owned))
}

impl HostedUi {
    /// Starts a login with `provider` (e.g. `Google`; the hosted UI's own page when `None`):
    /// listens on the loopback port and returns the URL to open in the system browser.
    pub async fn begin(&self, provider: Option<&str>) -> Result<PendingLogin, AccountError> {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .map_err(|e| {
                AccountError::Service(format!(
                    "cannot listen on 127.0.0.1:{} for the browser's answer ({e}); is another \
                     login window open?",
                    self.port
                ))
            })?;
        let port = listener
            .local_addr()
            .map_err(|e| AccountError::Service(e.to_string()))?
            .port();
        let redirect_uri = format!("http://localhost:{port}{CALLBACK}");
        let verifier = random(48);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let state = random(24);
        let mut url = reqwest::Url::parse(&format!(
            "{}/oauth2/authorize",
            self.domain.trim_end_matches('/')
        ))
        .map_err(|e| AccountError::Invalid(format!("the hosted UI domain is not a URL: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("scope", "openid email profile")
                .append_pair("state", &state)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(provider) = provider {
                query.append_pair("identity_provider", provider);
            }
        }
        Ok(PendingLogin {
            url: url.into(),
            listener,
            redirect_uri,
            verifier,
            state,
            ui: self.clone(),
        })
    }
}

impl PendingLogin {
    /// The URL to open in the system browser.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Waits (at most `timeout`) for the browser to come back, checks that it answers this
    /// login, and exchanges the code for the pool's tokens.
    pub async fn finish(self, timeout: Duration) -> Result<Tokens, AccountError> {
        let code = tokio::time::timeout(timeout, self.answer())
            .await
            .map_err(|_| {
                AccountError::Invalid(
                    "the browser did not come back in time; try logging in again".into(),
                )
            })??;
        self.exchange(&code).await
    }

    /// The code the browser brings back (a request for anything else is answered 404 and the
    /// wait goes on).
    async fn answer(&self) -> Result<String, AccountError> {
        loop {
            let (mut stream, _) = self
                .listener
                .accept()
                .await
                .map_err(|e| AccountError::Service(e.to_string()))?;
            let Some(target) = request_target(&mut stream).await else {
                continue;
            };
            let Ok(url) = reqwest::Url::parse(&format!("http://localhost{target}")) else {
                respond(&mut stream, 400, "That is not a login answer.").await;
                continue;
            };
            if url.path() != CALLBACK {
                respond(&mut stream, 404, "Not found.").await;
                continue;
            }
            let param = |name: &str| {
                url.query_pairs()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            };
            if param("state").as_deref() != Some(self.state.as_str()) {
                // Another login's answer, or a forged one: never exchanged.
                respond(&mut stream, 400, "This answer is not for the login in progress; start the login again from the app.").await;
                continue;
            }
            if let Some(error) = param("error") {
                let why = param("error_description").unwrap_or_else(|| error.clone());
                respond(
                    &mut stream,
                    200,
                    "The login did not complete; you can close this tab and try again in the app.",
                )
                .await;
                return Err(AccountError::Service(format!(
                    "the login was refused: {why}"
                )));
            }
            let Some(code) = param("code") else {
                respond(&mut stream, 400, "The answer has no code.").await;
                continue;
            };
            respond(&mut stream, 200, "You are logged in to SelfDiffusion. You can close this tab and go back to the app.").await;
            return Ok(code);
        }
    }

    /// Exchanges `code` (with this login's verifier) at the token endpoint.
    async fn exchange(&self, code: &str) -> Result<Tokens, AccountError> {
        let url = format!("{}/oauth2/token", self.ui.domain.trim_end_matches('/'));
        let mut request = reqwest::Client::new()
            .post(&url)
            .timeout(Duration::from_secs(30))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", self.ui.client_id.as_str()),
                ("code", code),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("code_verifier", self.verifier.as_str()),
            ]);
        if let Some(secret) = &self.ui.client_secret {
            request = request.basic_auth(&self.ui.client_id, Some(secret));
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                AccountError::Offline
            } else {
                AccountError::Service(e.to_string())
            }
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| AccountError::Service(e.to_string()))?;
        if !status.is_success() {
            let why = serde_json::from_str::<TokenError>(&text)
                .map(|e| e.error_description.unwrap_or(e.error))
                .unwrap_or_else(|_| format!("{status}"));
            return Err(AccountError::Service(format!(
                "the token exchange failed: {why}"
            )));
        }
        let answer: TokenAnswer = serde_json::from_str(&text).map_err(|e| {
            AccountError::Service(format!("the token endpoint sent an unexpected answer: {e}"))
        })?;
        let username = username_of(&answer.id_token)
            .ok_or_else(|| AccountError::Service("the ID token names no user".into()))?;
        Ok(Tokens::new(
            &username,
            &answer.id_token,
            &answer.access_token,
            &answer.refresh_token,
            Duration::from_secs(answer.expires_in),
        ))
    }
}

/// The request target of the browser's request (`/callback?code=…`); `None` when it is not an
/// HTTP GET.
async fn request_target(stream: &mut TcpStream) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") && buffer.len() < MAX_REQUEST {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if read == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let head = String::from_utf8_lossy(&buffer);
    let mut parts = head.lines().next()?.split_whitespace();
    (parts.next()? == "GET").then(|| parts.next().map(str::to_owned))?
}

/// Answers the browser with a short page.
async fn respond(stream: &mut TcpStream, status: u16, message: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let body = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>SelfDiffusion</title>\
         <p style=\"font: 16px system-ui; margin: 3em\">{message}</p>"
    );
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_name_comes_from_the_id_token() {
        let payload =
            URL_SAFE_NO_PAD.encode(r#"{"cognito:username": "Google_1234", "email": "a@b.c"}"#);
        assert_eq!(
            username_of(&format!("h.{payload}.s")).as_deref(),
            Some("Google_1234")
        );
        let payload = URL_SAFE_NO_PAD.encode(r#"{"email": "a@b.c"}"#);
        assert_eq!(
            username_of(&format!("h.{payload}.s")).as_deref(),
            Some("a@b.c")
        );
        assert_eq!(username_of("not a token"), None);
    }
}
