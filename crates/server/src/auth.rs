//! Cognito JWT verification: RS256 signatures against the pool's key set (fetched from the
//! configured URL, cached, fetched again when a token names a key the cache does not hold),
//! then `iss`, `exp`, `token_use`, and `aud` (id tokens) or `client_id` (access tokens).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::TokenRules;

/// Allowed clock skew on `exp`, in seconds.
const LEEWAY_S: u64 = 30;

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's stable id (`sub`).
    pub sub: String,
    /// The username, for logs and recipes.
    pub username: String,
}

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token: send `Authorization: Bearer <Cognito id or access token>`")]
    Missing,
    /// The token has expired.
    #[error("the token has expired; refresh it and try again")]
    Expired,
    /// The token is not one this server accepts.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The key set could not be fetched, so nothing can be verified.
    #[error("cannot fetch the token signing keys: {0}")]
    KeysUnavailable(String),
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    token_use: Option<String>,
    aud: Option<String>,
    client_id: Option<String>,
    #[serde(rename = "cognito:username")]
    cognito_username: Option<String>,
    username: Option<String>,
}

struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// Verifies bearer tokens.
pub struct Verifier {
    rules: TokenRules,
    http: reqwest::Client,
    cache: Mutex<KeyCache>,
}

impl Verifier {
    /// A verifier for `rules` (the key set is fetched on first use).
    pub fn new(rules: TokenRules) -> Self {
        Verifier {
            rules,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client with the built-in TLS configuration builds"),
            cache: Mutex::new(KeyCache {
                keys: HashMap::new(),
                fetched_at: None,
            }),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, AuthError> {
        let unavailable =
            |e: String| AuthError::KeysUnavailable(format!("{}: {e}", self.rules.jwks_url));
        let response = self
            .http
            .get(&self.rules.jwks_url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("answered {}", response.status())));
        }
        let set: JwkSet = response
            .json()
            .await
            .map_err(|e| unavailable(format!("not a JWK set: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk))
            else {
                tracing::warn!("skipping a key without kid or of an unsupported type");
                continue;
            };
            keys.insert(kid, key);
        }
        tracing::info!(keys = keys.len(), url = %self.rules.jwks_url, "fetched the token signing keys");
        Ok(keys)
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        let mut cache = self.cache.lock().await;
        if let Some(key) = cache.keys.get(kid) {
            return Ok(key.clone());
        }
        let may_fetch = cache
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.rules.refetch_min);
        if may_fetch {
            let keys = self.fetch().await?;
            cache.keys = keys;
            cache.fetched_at = Some(Instant::now());
        }
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| AuthError::Invalid(format!("unknown signing key {kid:?}")))
    }

    /// Verifies `token` and returns who sent it.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted (RS256 only)",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("the token names no signing key (kid)".into()))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.rules.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = LEEWAY_S;
        // `aud` is checked below, for id tokens only: access tokens carry `client_id` instead.
        validation.validate_aud = false;
        let claims = decode::<Claims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            })?
            .claims;
        let (client, username) = match claims.token_use.as_deref() {
            Some("id") => (claims.aud, claims.cognito_username),
            Some("access") => (claims.client_id, claims.username),
            other => {
                return Err(AuthError::Invalid(format!(
                    "token_use must be \"id\" or \"access\" (got {other:?})"
                )))
            }
        };
        let client = client.unwrap_or_default();
        if !self.rules.client_ids.contains(&client) {
            return Err(AuthError::Invalid(format!(
                "the token was issued to app client {client:?}, which this server does not accept"
            )));
        }
        Ok(Caller {
            username: username.unwrap_or_else(|| claims.sub.clone()),
            sub: claims.sub,
        })
    }
}
