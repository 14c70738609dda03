//! Amazon Cognito user-pool accounts: sign up, confirm, resend the code, log in, forgot
//! password, refresh, sign out, current user. `SECRET_HASH` goes on every call that takes it
//! when the app client has a secret.

use std::time::{Duration, SystemTime};

use aws_sdk_cognitoidentityprovider as cip;
use base64::Engine as _;
use cip::error::{ProvideErrorMetadata, SdkError};
use cip::types::{AttributeType, AuthFlowType};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::AccountError;
use crate::session::Tokens;

/// Where the user pool is.
#[derive(Clone)]
pub struct CognitoConfig {
    /// AWS region, e.g. `us-east-2`.
    pub region: String,
    /// User pool id.
    pub user_pool_id: String,
    /// App client id.
    pub client_id: String,
    /// App client secret, when the client has one.
    pub client_secret: Option<String>,
    /// A different endpoint (an emulator, a proxy).
    pub endpoint_url: Option<String>,
}

impl std::fmt::Debug for CognitoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CognitoConfig")
            .field("region", &self.region)
            .field("user_pool_id", &self.user_pool_id)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("endpoint_url", &self.endpoint_url)
            .finish()
    }
}

/// The signed-in user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Username.
    pub username: String,
    /// Email, if the pool has it.
    pub email: Option<String>,
}

/// Account operations against one user pool.
pub struct Accounts {
    client: cip::Client,
    config: CognitoConfig,
}

fn map_err<E: ProvideErrorMetadata>(e: SdkError<E>) -> AccountError {
    match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => AccountError::Offline,
        SdkError::ServiceError(s) => AccountError::from_code(s.err().code(), s.err().message()),
        _ => AccountError::from_code(e.code(), e.message()),
    }
}

fn required(value: &str, what: &str) -> Result<String, AccountError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(AccountError::Invalid(format!("{what} is empty")));
    }
    Ok(v.to_owned())
}

fn valid_email(email: &str) -> Result<String, AccountError> {
    let email = required(email, "the email")?;
    let ok = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    }) && !email.contains(char::is_whitespace);
    if !ok {
        return Err(AccountError::Invalid(format!(
            "\"{email}\" is not an email address"
        )));
    }
    Ok(email)
}

impl Accounts {
    /// A client for the pool in `config`.
    pub fn new(config: CognitoConfig) -> Self {
        let mut builder = cip::Config::builder()
            .behavior_version(cip::config::BehaviorVersion::latest())
            .region(cip::config::Region::new(config.region.clone()));
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        Accounts {
            client: cip::Client::from_conf(builder.build()),
            config,
        }
    }

    /// `SECRET_HASH` = Base64(HMAC-SHA256(client secret, username + client id)), when there is a secret.
    pub fn secret_hash(&self, username: &str) -> Option<String> {
        let secret = self.config.client_secret.as_ref()?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(username.as_bytes());
        mac.update(self.config.client_id.as_bytes());
        Some(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// Signs up; the user must then confirm with the emailed code.
    pub async fn sign_up(
        &self,
        email: &str,
        username: &str,
        password: &str,
    ) -> Result<(), AccountError> {
        let email = valid_email(email)?;
        let username = required(username, "the username")?;
        if password.is_empty() {
            return Err(AccountError::Invalid("the password is empty".into()));
        }
        let attribute = AttributeType::builder()
            .name("email")
            .value(email)
            .build()
            .map_err(|e| AccountError::Invalid(e.to_string()))?;
        self.client
            .sign_up()
            .client_id(&self.config.client_id)
            .username(&username)
            .password(password)
            .user_attributes(attribute)
            .set_secret_hash(self.secret_hash(&username))
            .send()
            .await
            .map_err(map_err)?;
        tracing::info!("sign-up sent");
        Ok(())
    }

    /// Confirms a sign-up with the emailed code.
    pub async fn confirm_sign_up(&self, username: &str, code: &str) -> Result<(), AccountError> {
        let username = required(username, "the username")?;
        let code = required(code, "the code")?;
        self.client
            .confirm_sign_up()
            .client_id(&self.config.client_id)
            .username(&username)
            .confirmation_code(code)
            .set_secret_hash(self.secret_hash(&username))
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Sends the confirmation code again.
    pub async fn resend_code(&self, username: &str) -> Result<(), AccountError> {
        let username = required(username, "the username")?;
        self.client
            .resend_confirmation_code()
            .client_id(&self.config.client_id)
            .username(&username)
            .set_secret_hash(self.secret_hash(&username))
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Logs in with USER_PASSWORD_AUTH.
    pub async fn log_in(&self, username: &str, password: &str) -> Result<Tokens, AccountError> {
        let username = required(username, "the username")?;
        if password.is_empty() {
            return Err(AccountError::Invalid("the password is empty".into()));
        }
        let mut request = self
            .client
            .initiate_auth()
            .client_id(&self.config.client_id)
            .auth_flow(AuthFlowType::UserPasswordAuth)
            .auth_parameters("USERNAME", &username)
            .auth_parameters("PASSWORD", password);
        if let Some(hash) = self.secret_hash(&username) {
            request = request.auth_parameters("SECRET_HASH", hash);
        }
        let out = request.send().await.map_err(map_err)?;
        let result = out.authentication_result().ok_or_else(|| {
            AccountError::Service(
                "the login needs a further challenge this app does not support".into(),
            )
        })?;
        let refresh = result
            .refresh_token()
            .ok_or_else(|| AccountError::Service("no refresh token in the login answer".into()))?;
        Ok(Tokens::new(
            &username,
            result.id_token().unwrap_or_default(),
            result.access_token().unwrap_or_default(),
            refresh,
            Duration::from_secs(result.expires_in().max(0) as u64),
        ))
    }

    /// New id and access tokens from the refresh token (REFRESH_TOKEN_AUTH).
    pub async fn refresh(&self, tokens: &Tokens) -> Result<Tokens, AccountError> {
        let mut request = self
            .client
            .initiate_auth()
            .client_id(&self.config.client_id)
            .auth_flow(AuthFlowType::RefreshTokenAuth)
            .auth_parameters("REFRESH_TOKEN", tokens.refresh_token());
        if let Some(hash) = self.secret_hash(tokens.username()) {
            request = request.auth_parameters("SECRET_HASH", hash);
        }
        let out = request.send().await.map_err(map_err)?;
        let result = out
            .authentication_result()
            .ok_or_else(|| AccountError::Service("no tokens in the refresh answer".into()))?;
        Ok(Tokens::new(
            tokens.username(),
            result.id_token().unwrap_or_default(),
            result.access_token().unwrap_or_default(),
            result.refresh_token().unwrap_or(tokens.refresh_token()),
            Duration::from_secs(result.expires_in().max(0) as u64),
        ))
    }

    /// Starts a password reset; the code goes to the user's email.
    pub async fn forgot_password(&self, username: &str) -> Result<(), AccountError> {
        let username = required(username, "the username")?;
        self.client
            .forgot_password()
            .client_id(&self.config.client_id)
            .username(&username)
            .set_secret_hash(self.secret_hash(&username))
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Sets a new password with the emailed code.
    pub async fn confirm_forgot_password(
        &self,
        username: &str,
        code: &str,
        new_password: &str,
    ) -> Result<(), AccountError> {
        let username = required(username, "the username")?;
        let code = required(code, "the code")?;
        if new_password.is_empty() {
            return Err(AccountError::Invalid("the new password is empty".into()));
        }
        self.client
            .confirm_forgot_password()
            .client_id(&self.config.client_id)
            .username(&username)
            .confirmation_code(code)
            .password(new_password)
            .set_secret_hash(self.secret_hash(&username))
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Signs out everywhere: the access token stops working and the refresh token is revoked.
    pub async fn sign_out(&self, tokens: &Tokens) -> Result<(), AccountError> {
        self.client
            .global_sign_out()
            .access_token(tokens.access_token())
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// The user the tokens belong to.
    pub async fn current_user(&self, tokens: &Tokens) -> Result<User, AccountError> {
        let out = self
            .client
            .get_user()
            .access_token(tokens.access_token())
            .send()
            .await
            .map_err(map_err)?;
        let email = out
            .user_attributes()
            .iter()
            .find(|a| a.name() == "email")
            .and_then(|a| a.value().map(str::to_owned));
        Ok(User {
            username: out.username().to_owned(),
            email,
        })
    }
}

/// Seconds before expiry at which a token counts as expired (refresh early).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(120);

/// Whether `tokens` should be refreshed now.
pub fn needs_refresh(tokens: &Tokens, now: SystemTime) -> bool {
    tokens
        .expires_at()
        .checked_sub(REFRESH_MARGIN)
        .is_none_or(|t| now >= t)
}
