//! Tokens in memory (never in logs) and the refresh token kept between runs: in the OS keyring
//! where the platform integration is wired, else in a file only the user can read.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::AccountError;

/// A signed-in session's tokens. `Debug` never prints them.
#[derive(Clone, PartialEq)]
pub struct Tokens {
    username: String,
    id_token: String,
    access_token: String,
    refresh_token: String,
    expires_at: SystemTime,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("username", &self.username)
            .field("tokens", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Tokens {
    /// Tokens that expire `lifetime` from now.
    pub fn new(
        username: &str,
        id_token: &str,
        access_token: &str,
        refresh_token: &str,
        lifetime: Duration,
    ) -> Self {
        Tokens {
            username: username.to_owned(),
            id_token: id_token.to_owned(),
            access_token: access_token.to_owned(),
            refresh_token: refresh_token.to_owned(),
            expires_at: SystemTime::now() + lifetime,
        }
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The id token (sent to the cloud API as the Bearer token).
    pub fn id_token(&self) -> &str {
        &self.id_token
    }

    /// The access token (for Cognito user calls).
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// The refresh token.
    pub fn refresh_token(&self) -> &str {
        &self.refresh_token
    }

    /// When the id and access tokens expire.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// The same tokens, marked as expiring at `at` (tests of refresh).
    pub fn expiring_at(mut self, at: SystemTime) -> Self {
        self.expires_at = at;
        self
    }
}

/// Keeps the refresh token (and username) between runs in a file readable only by the user.
#[derive(Debug, Clone)]
pub struct RefreshStore {
    file: PathBuf,
}

impl RefreshStore {
    /// A store in `file`.
    pub fn new(file: impl Into<PathBuf>) -> Self {
        RefreshStore { file: file.into() }
    }

    /// The store in the OS config dir (`SelfDiffusion/session.json`).
    pub fn default_location() -> Option<Self> {
        dirs::config_dir().map(|d| Self::new(d.join("SelfDiffusion").join("session.json")))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Saves the username and refresh token (mode 0600 on Unix, written atomically).
    pub fn save(&self, tokens: &Tokens) -> Result<(), AccountError> {
        let storage =
            |e: std::io::Error| AccountError::Storage(format!("{}: {e}", self.file.display()));
        let dir = self.file.parent().expect("the session file has a folder");
        std::fs::create_dir_all(dir).map_err(storage)?;
        let body =
            serde_json::json!({"username": tokens.username, "refresh_token": tokens.refresh_token})
                .to_string();
        let tmp = self.file.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp).map_err(storage)?;
            file.write_all(body.as_bytes()).map_err(storage)?;
            file.sync_all().map_err(storage)?;
        }
        std::fs::rename(&tmp, &self.file).map_err(storage)
    }

    /// The saved username and refresh token, if any.
    pub fn load(&self) -> Option<(String, String)> {
        let text = std::fs::read_to_string(&self.file).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some((
            v["username"].as_str()?.to_owned(),
            v["refresh_token"].as_str()?.to_owned(),
        ))
    }

    /// Forgets the session.
    pub fn clear(&self) -> Result<(), AccountError> {
        match std::fs::remove_file(&self.file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(AccountError::Storage(
                format!("{}: {e}", self.file.display()),
            )),
            _ => Ok(()),
        }
    }
}

/// Tokens rebuilt from a stored refresh token (expired, so the first use refreshes them).
pub fn restored(username: &str, refresh_token: &str) -> Tokens {
    Tokens {
        username: username.to_owned(),
        id_token: String::new(),
        access_token: String::new(),
        refresh_token: refresh_token.to_owned(),
        expires_at: SystemTime::UNIX_EPOCH,
    }
}
