//! SelfDiffusion's cloud side: accounts (Amazon Cognito user pools through the official SDK,
//! errors a user can act on, tokens that never reach logs, the refresh token in the OS keyring
//! or a private file) and the client of the cloud `generate` / `upscale` / `result` protocol, its event
//! streams and the account's API keys.

mod accounts;
mod client;
mod error;
mod hosted_ui;
mod job;
mod service;
mod session;
mod upscale;

pub use accounts::{needs_refresh, Accounts, CognitoConfig, User, REFRESH_MARGIN};
pub use client::{cloud_recipe, received_recipe, CloudClient, CloudError, MAX_IMAGE_BYTES};
pub use error::AccountError;
pub use hosted_ui::{HostedUi, PendingLogin, LOOPBACK_PORT};
pub use job::{
    follow_cloud_job, run_cloud_job, submit_cloud_job, worth_resuming, CloudJobEvent, PendingJob,
    PendingJobs, SubmittedJob,
};
pub use selfdiffusion_protocol::{
    ApiKeyInfo, CreatedApiKey, GenerateRequest, JobStatus, Limits, ServerInfo, Status, StyleRef,
    UpscaleRequest,
};
pub use service::CloudSettings;
pub use session::{restored, OsKeyring, RefreshStore, SecretVault, Tokens};
pub use upscale::{
    follow_cloud_upscale, submit_cloud_upscale, upscale_in_cloud, SubmittedUpscale, UpscaleEvent,
};
