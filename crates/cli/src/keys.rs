//! `selfdiffusion-cli keys …`: the API keys of a cloud account, for scripts calling the
//! server's `/v1` API — made (shown once), listed and revoked by their owner, who logs in with
//! a username and password. The service is named by the environment, as for the app:
//! `SELFDIFFUSION_CLOUD_URL`, `SELFDIFFUSION_COGNITO_REGION`, `…_USER_POOL_ID`, `…_CLIENT_ID`
//! (and `…_ENDPOINT`, `…_CLIENT_SECRET` when needed).

use std::io::BufRead;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use selfdiffusion_cloud::{Accounts, CloudClient, CloudSettings};

/// Who logs in, and what to do with their keys.
#[derive(Args)]
pub struct KeysArgs {
    /// The account's username (default: $SELFDIFFUSION_USERNAME).
    #[arg(long, global = true)]
    username: Option<String>,
    /// Read the password from the first line of stdin (else: $SELFDIFFUSION_PASSWORD).
    #[arg(long, global = true)]
    password_stdin: bool,
    #[command(subcommand)]
    action: KeysAction,
}

/// What to do with the account's keys.
#[derive(Subcommand)]
pub enum KeysAction {
    /// List the keys (never the keys themselves).
    List,
    /// Make a key; it is printed this once.
    Create {
        /// What to call it ("nightly script").
        name: String,
    },
    /// Revoke a key by its id: requests made with it are refused from now on.
    Revoke {
        /// The key's id (from `keys list`).
        id: String,
    },
}

/// The password: a line of stdin, or `$SELFDIFFUSION_PASSWORD`.
fn password(from_stdin: bool) -> Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    std::env::var("SELFDIFFUSION_PASSWORD").map_err(|_| {
        anyhow::anyhow!("give the password with --password-stdin or SELFDIFFUSION_PASSWORD")
    })
}

/// Logs in and runs `args.action`.
pub fn run(args: KeysArgs, json: bool) -> Result<()> {
    let service = CloudSettings::default().with_env();
    let cognito = service.cognito().map_err(anyhow::Error::msg)?;
    let username = args
        .username
        .or_else(|| std::env::var("SELFDIFFUSION_USERNAME").ok())
        .filter(|u| !u.trim().is_empty())
        .context("give the account with --username or SELFDIFFUSION_USERNAME")?;
    let password = password(args.password_stdin)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let accounts = Arc::new(Accounts::new(cognito));
        let tokens = accounts.log_in(&username, &password).await?;
        let client = CloudClient::new(&service.api_url, accounts, tokens);
        match args.action {
            KeysAction::List => {
                let keys = client.api_keys().await?;
                crate::print(json, &keys, |keys| {
                    if keys.is_empty() {
                        return "no API keys".into();
                    }
                    keys.iter()
                        .map(|k| {
                            let state = if k.revoked { "  (revoked)" } else { "" };
                            format!("{}  {}{state}", k.id, k.name)
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })
            }
            KeysAction::Create { name } => {
                if name.trim().is_empty() {
                    bail!("name the key, e.g. `keys create \"nightly script\"`");
                }
                let made = client.create_api_key(name.trim()).await?;
                crate::print(json, &made, |made| {
                    format!(
                        "{}\n(key {} “{}”: copy it now, it is not shown again; send it as X-API-Key)",
                        made.key, made.info.id, made.info.name
                    )
                })
            }
            KeysAction::Revoke { id } => {
                client.revoke_api_key(&id).await?;
                crate::print(json, &serde_json::json!({ "revoked": id }), |_| {
                    format!("revoked {id}")
                })
            }
        }
    })
}
