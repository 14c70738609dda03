//! SelfDiffusion's cloud accounts: Amazon Cognito user pools through the official SDK, with
//! errors a user can act on, tokens that never reach logs, and the refresh token kept in a
//! private file between runs.

mod accounts;
mod error;
mod session;

pub use accounts::{needs_refresh, Accounts, CognitoConfig, User, REFRESH_MARGIN};
pub use error::AccountError;
pub use session::{restored, RefreshStore, Tokens};
