//! The one error type every command returns: `{kind, message}` on the wire, so the UI switches
//! on `kind` and shows `message`, and never reads meaning out of the text.

use selfdiffusion_cloud::{AccountError, CloudError};
use selfdiffusion_engine::EngineError;
use selfdiffusion_library::Error as LibraryError;
use selfdiffusion_models::ModelError;
use selfdiffusion_queue::QueueError;
use serde::Serialize;

/// What kind of failure a command met: what the UI can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input is wrong: fix the form.
    Invalid,
    /// What was asked for does not exist (any more).
    NotFound,
    /// It clashes with what exists: a name taken, a project busy with a job.
    Conflict,
    /// The model is not downloaded yet.
    NotInstalled,
    /// The network or the cloud cannot be reached.
    Offline,
    /// The session is missing or no longer accepted: log in.
    Unauthorized,
    /// The account is not confirmed yet: offer the code form.
    NotConfirmed,
    /// The user stopped it.
    Cancelled,
    /// Anything else.
    Failed,
}

/// A command's failure as the UI receives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// A sentence for the user.
    pub message: String,
}

/// What commands return.
pub type CmdResult<T> = Result<T, CommandError>;

impl CommandError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CommandError {
            kind,
            message: message.into(),
        }
    }

    /// Bad input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// Anything else.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Failed, message.to_string())
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<LibraryError> for CommandError {
    fn from(e: LibraryError) -> Self {
        let kind = match e {
            LibraryError::InvalidName(_)
            | LibraryError::DescriptionTooLong(_)
            | LibraryError::InvalidCursor(_)
            | LibraryError::UnsupportedFile(_)
            | LibraryError::CorruptImage { .. } => ErrorKind::Invalid,
            LibraryError::ProjectNotFound(_)
            | LibraryError::ProjectNameNotFound(_)
            | LibraryError::ImageNotFound(_)
            | LibraryError::InputNotFound(_) => ErrorKind::NotFound,
            LibraryError::DuplicateName(_) | LibraryError::ProjectBusy { .. } => {
                ErrorKind::Conflict
            }
            LibraryError::Cancelled => ErrorKind::Cancelled,
            _ => ErrorKind::Failed,
        };
        CommandError::new(kind, e.to_string())
    }
}

impl From<QueueError> for CommandError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Library(e) => e.into(),
            QueueError::Invalid(_) => CommandError::invalid(e.to_string()),
            QueueError::UnknownJob(_) => CommandError::new(ErrorKind::NotFound, e.to_string()),
        }
    }
}

impl From<AccountError> for CommandError {
    fn from(e: AccountError) -> Self {
        let kind = match e {
            AccountError::Invalid(_)
            | AccountError::WrongCredentials
            | AccountError::WeakPassword(_)
            | AccountError::WrongCode
            | AccountError::ExpiredCode
            | AccountError::UnknownUser => ErrorKind::Invalid,
            AccountError::UsernameExists => ErrorKind::Conflict,
            AccountError::NotConfirmed => ErrorKind::NotConfirmed,
            AccountError::NotLoggedIn => ErrorKind::Unauthorized,
            AccountError::Offline => ErrorKind::Offline,
            _ => ErrorKind::Failed,
        };
        CommandError::new(kind, e.to_string())
    }
}

impl From<CloudError> for CommandError {
    fn from(e: CloudError) -> Self {
        let kind = match e {
            CloudError::Account(e) => return e.into(),
            CloudError::Offline(_) => ErrorKind::Offline,
            CloudError::Unauthorized => ErrorKind::Unauthorized,
            CloudError::Refused { status: 400, .. } => ErrorKind::Invalid,
            CloudError::Cancelled => ErrorKind::Cancelled,
            _ => ErrorKind::Failed,
        };
        CommandError::new(kind, e.to_string())
    }
}

impl From<EngineError> for CommandError {
    fn from(e: EngineError) -> Self {
        let kind = match e {
            EngineError::InvalidRequest(_)
            | EngineError::UnknownScheduler(_)
            | EngineError::BadImage { .. } => ErrorKind::Invalid,
            EngineError::Cancelled => ErrorKind::Cancelled,
            _ => ErrorKind::Failed,
        };
        CommandError::new(kind, e.to_string())
    }
}

impl From<ModelError> for CommandError {
    fn from(e: ModelError) -> Self {
        let kind = match e {
            ModelError::UnknownModel(_) | ModelError::UnknownLora { .. } => ErrorKind::NotFound,
            ModelError::LoraExists(_) => ErrorKind::Conflict,
            ModelError::Offline { .. } => ErrorKind::Offline,
            ModelError::Cancelled => ErrorKind::Cancelled,
            ModelError::NotAModel { .. } => ErrorKind::Invalid,
            _ => ErrorKind::Failed,
        };
        CommandError::new(kind, e.to_string())
    }
}

impl From<tauri::Error> for CommandError {
    fn from(e: tauri::Error) -> Self {
        CommandError::failed(e)
    }
}

/// Runs blocking work (disk, database) off the async runtime's threads.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> CmdResult<T> + Send + 'static,
) -> CmdResult<T> {
    tauri::async_runtime::spawn_blocking(work)
        .await
        .map_err(|e| CommandError::failed(format!("the operation stopped unexpectedly: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_reach_the_ui_as_kind_and_message() {
        let e: CommandError = LibraryError::DuplicateName("Trips".into()).into();
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "conflict");
        assert!(json["message"].as_str().unwrap().contains("Trips"));
        let e: CommandError = AccountError::NotConfirmed.into();
        assert_eq!(serde_json::to_value(&e).unwrap()["kind"], "not_confirmed");
        let e: CommandError = CloudError::Offline("https://x".into()).into();
        assert_eq!(e.kind, ErrorKind::Offline);
        let e: CommandError = CloudError::Account(AccountError::NotLoggedIn).into();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
    }
}
