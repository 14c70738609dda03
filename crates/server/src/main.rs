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

/// Ctrl-C, or SIGTERM (what service managers send) on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down: running jobs are cancelled");
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("selfdiffusion-server: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("selfdiffusion-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Loads the configuration, starts the workers and serves until a shutdown signal.
async fn serve() -> anyhow::Result<()> {
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
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the server stopped")
}
