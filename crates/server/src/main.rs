//! `selfdiffusion-server [api|worker] [--config FILE]`: one box (the default) serves the APIs
//! and runs the jobs; `api` nodes and `worker`s split that over PostgreSQL and S3.

use std::future::IntoFuture;
use std::path::PathBuf;

use anyhow::{bail, Context};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: selfdiffusion-server [api|worker] [--config FILE]

One box (no mode): serves the SelfDiffusion APIs (POST /generate, POST /result, /v1/…,
GET /health, GET /metrics) and runs the jobs, kept in <data_dir> across restarts.
Scale-out: `api` serves the APIs over the shared PostgreSQL job table and S3 bucket
(any number of nodes); `worker` runs jobs from them on this machine's device (one per GPU)
and serves GET /health and GET /metrics on the listen address.
Settings come from FILE (TOML) and SELFDIFFUSION_SERVER_* environment variables;
see the README section \"Running the generation server\".";

/// How this process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    OneBox,
    Api,
    Worker,
}

fn arguments() -> anyhow::Result<(Mode, Option<PathBuf>)> {
    let mut args = std::env::args().skip(1);
    let (mut mode, mut path) = (Mode::OneBox, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                path = Some(PathBuf::from(args.next().context("--config needs a file")?))
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "api" if mode == Mode::OneBox => mode = Mode::Api,
            "worker" if mode == Mode::OneBox => mode = Mode::Worker,
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let path = path.or_else(|| std::env::var_os("SELFDIFFUSION_SERVER_CONFIG").map(PathBuf::from));
    Ok((mode, path))
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
    tracing::info!("shutting down");
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

/// Loads the configuration, starts what the mode runs and serves until a shutdown signal.
async fn serve() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let (mode, path) = arguments()?;
    let config = selfdiffusion_server::Config::load(path.as_deref())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let router = match mode {
        Mode::OneBox => selfdiffusion_server::router(selfdiffusion_server::build(&config)?),
        Mode::Api => selfdiffusion_server::router(selfdiffusion_server::build_api(&config).await?),
        Mode::Worker => return work(&config, listener).await,
    };
    tracing::info!(address = %config.listen, public = %config.public_base(), ?mode, "listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the server stopped")
}

/// A scale-out worker: takes jobs until a shutdown signal (the running ones go back to the
/// queue), serving its health and metrics on `listener` meanwhile.
async fn work(
    config: &selfdiffusion_server::Config,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<()> {
    let worker = selfdiffusion_server::build_worker(config).await?;
    tracing::info!(name = %worker.name, address = %config.listen, "worker taking jobs");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.clone().run(config.workers, stopped));
    let status = tokio::spawn(
        axum::serve(listener, selfdiffusion_server::worker_router(worker)).into_future(),
    );
    shutdown_signal().await;
    let _ = stop.send(true);
    running.await.context("the worker failed")?;
    status.abort();
    Ok(())
}
