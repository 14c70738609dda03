//! Account errors, each a message a user can act on.

/// What can go wrong with an account operation.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AccountError {
    /// A field is empty or malformed; nothing was sent.
    #[error("{0}")]
    Invalid(String),
    /// Wrong username or password (or a revoked session).
    #[error("wrong username or password")]
    WrongCredentials,
    /// The account exists but its email was not confirmed.
    #[error(
        "this account is not confirmed yet: enter the code we emailed you (or ask for a new one)"
    )]
    NotConfirmed,
    /// Sign-up with a taken username.
    #[error("that username is taken; choose another or log in")]
    UsernameExists,
    /// The password does not meet the pool's policy.
    #[error("the password is too weak: {0}")]
    WeakPassword(String),
    /// A confirmation or reset code is wrong.
    #[error("that code is wrong; check the email and try again")]
    WrongCode,
    /// A confirmation or reset code expired.
    #[error("that code has expired; ask for a new one")]
    ExpiredCode,
    /// Too many attempts.
    #[error("too many attempts; wait a few minutes and try again")]
    TooManyAttempts,
    /// No such user.
    #[error("no account with that username")]
    UnknownUser,
    /// Not logged in.
    #[error("you are not logged in")]
    NotLoggedIn,
    /// The service could not be reached.
    #[error(
        "cannot reach the account service: you seem to be offline (local generation still works)"
    )]
    Offline,
    /// Anything else the service said.
    #[error("the account service said: {0}")]
    Service(String),
    /// Storing the session failed.
    #[error("cannot store the session: {0}")]
    Storage(String),
}

impl AccountError {
    /// Maps a Cognito error code and message to a clear error.
    pub(crate) fn from_code(code: Option<&str>, message: Option<&str>) -> Self {
        let message = message.unwrap_or_default().to_owned();
        match code.unwrap_or_default() {
            "NotAuthorizedException" => AccountError::WrongCredentials,
            "UserNotConfirmedException" => AccountError::NotConfirmed,
            "UsernameExistsException" | "AliasExistsException" => AccountError::UsernameExists,
            "InvalidPasswordException" => AccountError::WeakPassword(message),
            "CodeMismatchException" => AccountError::WrongCode,
            "ExpiredCodeException" => AccountError::ExpiredCode,
            "TooManyRequestsException"
            | "LimitExceededException"
            | "TooManyFailedAttemptsException" => AccountError::TooManyAttempts,
            "UserNotFoundException" => AccountError::UnknownUser,
            "" => AccountError::Service(if message.is_empty() {
                "an unknown error".into()
            } else {
                message
            }),
            other => AccountError::Service(format!("{other}: {message}")),
        }
    }
}
