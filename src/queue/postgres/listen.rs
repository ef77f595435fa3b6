//! One `LISTEN` loop for each use of NOTIFY (the worker's job wake-ups, the events streams'
//! video changes): it hands each payload on, and says "look at everything" when notifications
//! may have been lost (the connection dropped, or LISTEN failed and is retried with backoff).

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio_util::sync::CancellationToken;

/// A connection listening on `channel`.
pub(super) async fn connect(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// Calls `on` with each notification's payload, and with `None` when notifications may have
/// been lost, until `stop`.
pub(super) async fn run(
    mut listener: PgListener,
    stop: CancellationToken,
    mut on: impl FnMut(Option<&str>) + Send,
) {
    let mut failures: u32 = 0;
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            n = listener.try_recv() => n,
        };
        match next {
            Ok(Some(n)) => {
                failures = 0;
                on(Some(n.payload()));
            }
            Ok(None) => {
                // The connection dropped and will be re-established by the next call;
                // notifications sent meanwhile are lost, so look now.
                tracing::warn!("LISTEN connection lost; reconnecting");
                on(None);
            }
            Err(e) => {
                failures += 1;
                let wait =
                    crate::retry::Backoff::new(Duration::from_millis(500), Duration::from_secs(32))
                        .after(failures);
                tracing::warn!(error = %e, retry_in = ?wait, "LISTEN failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                on(None);
            }
        }
    }
}
