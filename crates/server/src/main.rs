//! `selfdiffusion-server [--config FILE]`: serves generate/result on the configured address.

use std::path::PathBuf;

use anyhow::{bail, Context};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: selfdiffusion-server [--config FILE]

Serves the SelfDiffusion cloud protocol (POST /generate, POST /result, GET /health).
Settings come from FILE (TOML) and SELFDIFFUSION_SERVER_* environment variables;
see the README section \"Running the generation server\".";

fn config_path() -> anyhow::Result<Option<PathBuf>> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                path = Some(PathBuf::from(args.next().context("--config needs a file")?))
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(path.or_else(|| std::env::var_os("SELFDIFFUSION_SERVER_CONFIG").map(PathBuf::from)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = selfdiffusion_server::Config::load(config_path()?.as_deref())?;
    let state = selfdiffusion_server::build(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(address = %config.listen, public = %config.public_base(), "listening");
    axum::serve(listener, selfdiffusion_server::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
        .await
        .context("the server stopped")
}
