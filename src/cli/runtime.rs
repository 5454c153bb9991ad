//! What the long-running commands share: a tokio runtime, logging set up
//! from a config file, and waiting for SIGINT or SIGTERM.

use std::future::Future;

use super::CliError;
use crate::config::{LogFormat, Logging};

/// Runs a role (`server run`, `agent run`) until SIGINT or SIGTERM: awaits
/// `start` on a fresh runtime, then hands what it started to `shutdown`
/// once a signal comes.
pub(super) fn run_until_signal<H, E, S>(
    start: impl Future<Output = Result<H, E>>,
    shutdown: impl FnOnce(H) -> S,
) -> Result<(), CliError>
where
    E: std::error::Error,
    S: Future<Output = ()>,
{
    runtime()?.block_on(async {
        let running = start.await.map_err(|e| CliError::failed(&e))?;
        wait_for_signal().await;
        shutdown(running).await;
        Ok(())
    })
}

/// A multi-threaded runtime for a server or agent.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed_in("cannot start the async runtime", &e))
}

/// Sets up logging for a role. `flag` (the global --log-level, when given)
/// wins over the config file's level.
pub(super) fn init_role_logging(flag: Option<&str>, logging: &Logging) {
    let level = flag.unwrap_or(&logging.level);
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A logger may already be installed (tests run commands in-process); keep it.
    let _ = match logging.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub(super) async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
