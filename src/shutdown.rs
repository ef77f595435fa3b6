//! One shutdown signal, fanned out to every task as a [`CancellationToken`].
//!
//! The first SIGINT or SIGTERM cancels the token: the worker stops claiming and lets running
//! jobs finish within the grace period. A second signal exits the process at once; the jobs'
//! leases expire and another worker rescues them.

use tokio_util::sync::CancellationToken;

/// Exit code for the second signal (128 + SIGINT, as shells report it).
pub const FORCED_EXIT_CODE: i32 = 130;

/// Cancels the returned token on the first SIGINT or SIGTERM; exits the process on the second.
pub fn on_signals() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let first = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "shutting down: no new jobs; running jobs may finish (signal again to exit at once)"
        );
        first.cancel();
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(
            signal = name,
            "second signal: exiting now; leases of running jobs will expire and be rescued"
        );
        std::process::exit(FORCED_EXIT_CODE);
    });
    Ok(token)
}

/// Waits for the first SIGINT or SIGTERM and names it (never returns where the handlers
/// cannot be installed). For one-shot commands that must clean up before they exit (`get`).
pub async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}
