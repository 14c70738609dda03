//! Logs go through `tracing` to a daily file in the OS log dir (and to stderr in debug builds).

use tauri::{AppHandle, Manager};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Keeps the log writer alive for the life of the app.
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Starts logging; `RUST_LOG` overrides the default `info` level.
pub fn init(app: &AppHandle) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = cfg!(debug_assertions).then(|| fmt::layer().with_writer(std::io::stderr));
    let (file, guard) = match app.path().app_log_dir() {
        Ok(dir) if std::fs::create_dir_all(&dir).is_ok() => {
            let (writer, guard) = tracing_appender::non_blocking(tracing_appender::rolling::daily(
                &dir,
                "selfdiffusion.log",
            ));
            (
                Some(fmt::layer().with_ansi(false).with_writer(writer)),
                Some(guard),
            )
        }
        _ => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "SelfDiffusion starting"
    );
    LogGuard { _writer: guard }
}
