//! Tokens in memory (never in logs) and the refresh token kept between runs: in the OS keyring
//! (macOS Keychain, Windows Credential Manager, the Secret Service on Linux) where there is one,
//! else in a file only the user can read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// Where a secret can be kept outside files.
pub trait SecretVault: Send + Sync {
    /// Stores `secret` for `account`.
    fn set(&self, account: &str, secret: &str) -> Result<(), String>;
    /// The secret of `account`, if one is stored.
    fn get(&self, account: &str) -> Result<Option<String>, String>;
    /// Forgets the secret of `account` (nothing stored is fine).
    fn delete(&self, account: &str) -> Result<(), String>;
}

/// The operating system's keyring.
pub struct OsKeyring;

/// The keyring service name entries are filed under.
const KEYRING_SERVICE: &str = "SelfDiffusion";

impl SecretVault for OsKeyring {
    fn set(&self, account: &str, secret: &str) -> Result<(), String> {
        keyring::Entry::new(KEYRING_SERVICE, account)
            .and_then(|e| e.set_password(secret))
            .map_err(|e| e.to_string())
    }

    fn get(&self, account: &str) -> Result<Option<String>, String> {
        match keyring::Entry::new(KEYRING_SERVICE, account).and_then(|e| e.get_password()) {
            Ok(secret) => Ok(Some(secret)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn delete(&self, account: &str) -> Result<(), String> {
        match keyring::Entry::new(KEYRING_SERVICE, account).and_then(|e| e.delete_credential()) {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Keeps the session between runs: the username in a small file, the refresh token in the
/// vault (the OS keyring) when it works, else in that file, which only the user can read.
#[derive(Clone)]
pub struct RefreshStore {
    file: PathBuf,
    vault: Option<Arc<dyn SecretVault>>,
}

impl std::fmt::Debug for RefreshStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshStore")
            .field("file", &self.file)
            .field("vault", &self.vault.is_some())
            .finish()
    }
}

impl RefreshStore {
    /// A store in `file` that uses the OS keyring when it can.
    pub fn new(file: impl Into<PathBuf>) -> Self {
        Self::with_vault(file, Some(Arc::new(OsKeyring)))
    }

    /// A store in `file` with `vault` for the token (`None`: the file only).
    pub fn with_vault(file: impl Into<PathBuf>, vault: Option<Arc<dyn SecretVault>>) -> Self {
        RefreshStore {
            file: file.into(),
            vault,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The vault account of this store and user (one per session file, so stores don't collide).
    fn account(&self, username: &str) -> String {
        format!("{username}@{}", self.file.display())
    }

    /// Saves the username and refresh token: the token in the vault when it takes it, else in
    /// the file (mode 0600 on Unix). Written atomically.
    pub fn save(&self, tokens: &Tokens) -> Result<(), AccountError> {
        let in_vault = match &self.vault {
            Some(vault) => {
                match vault.set(&self.account(&tokens.username), &tokens.refresh_token) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "no usable OS keyring; keeping the session in a private file");
                        false
                    }
                }
            }
            None => false,
        };
        let body = if in_vault {
            serde_json::json!({"username": tokens.username, "in_keyring": true})
        } else {
            serde_json::json!({"username": tokens.username, "refresh_token": tokens.refresh_token})
        };
        self.write(&body.to_string())
    }

    fn write(&self, body: &str) -> Result<(), AccountError> {
        let storage =
            |e: std::io::Error| AccountError::Storage(format!("{}: {e}", self.file.display()));
        selfdiffusion_files::write_atomic(
            &self.file,
            body.as_bytes(),
            selfdiffusion_files::Access::Private,
        )
        .map_err(storage)
    }

    /// The saved username and refresh token, if any.
    pub fn load(&self) -> Option<(String, String)> {
        let text = std::fs::read_to_string(&self.file).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let username = v["username"].as_str()?.to_owned();
        if v["in_keyring"].as_bool() == Some(true) {
            let vault = self.vault.as_ref()?;
            return match vault.get(&self.account(&username)) {
                Ok(Some(token)) => Some((username, token)),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the session from the OS keyring");
                    None
                }
            };
        }
        Some((username, v["refresh_token"].as_str()?.to_owned()))
    }

    /// Forgets the session (file and keyring entry).
    pub fn clear(&self) -> Result<(), AccountError> {
        if let (Some(vault), Some((username, _))) = (&self.vault, self.load()) {
            if let Err(e) = vault.delete(&self.account(&username)) {
                tracing::warn!(error = %e, "cannot remove the session from the OS keyring");
            }
        }
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
