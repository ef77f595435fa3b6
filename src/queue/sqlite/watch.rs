//! Wake-ups from other processes. SQLite has no NOTIFY, but `PRAGMA data_version` read on one
//! connection changes whenever another connection (of this process or another) commits to the
//! file. A subscribed worker gets a connection of its own that reads it every
//! [`WATCH_INTERVAL`]; after a change, the earliest pending job's due time goes to the worker's
//! signal, so a job queued by `douyin-worker enqueue` in another shell is claimed within a
//! fraction of a second instead of at the next poll, and a retry scheduled by another process
//! is claimed when it falls due. Polling remains the fallback if the watch cannot run.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio_util::sync::CancellationToken;

use crate::queue::changes::VideoChanges;
use crate::queue::{JobSignal, QueueError};

/// How often the watch reads the file's change counter (a read of one page header: cheap).
pub(super) const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// Watches the queue file of `options` and wakes `signal` after another connection commits,
/// until `shutdown`. An in-memory database has no other connections: nothing to watch.
pub(super) fn spawn(
    options: &SqliteConnectOptions,
    signal: Arc<JobSignal>,
    shutdown: CancellationToken,
) {
    let file = options.get_filename();
    if file.as_os_str().is_empty() || file.as_os_str() == ":memory:" {
        return;
    }
    let options = options.clone();
    tokio::spawn(async move {
        let mut conn = match options.connect().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the sqlite queue for jobs queued by other processes; they are found by polling");
                return;
            }
        };
        let mut commits = Commits::new(&mut conn).await;
        while commits.next(&mut conn, &shutdown).await {
            match earliest_due(&mut conn).await {
                Ok(Some(due)) => signal.job_due_at(due),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "reading the sqlite queue's next due job failed")
                }
            }
        }
        let _ = conn.close().await;
    });
}

/// Wakes every watcher of `hub` after another connection commits to the file of `options`,
/// until `stop` (the events streams' change feed). An in-memory database has no file to
/// watch: an error, and the caller polls.
pub(super) async fn feed_changes(
    options: &SqliteConnectOptions,
    hub: Arc<VideoChanges>,
    stop: CancellationToken,
) -> Result<(), QueueError> {
    let file = options.get_filename();
    if file.as_os_str().is_empty() || file.as_os_str() == ":memory:" {
        return Err(QueueError::Rejected(
            "an in-memory sqlite queue has no file to watch".into(),
        ));
    }
    let mut conn = options.connect().await?;
    let mut commits = Commits::new(&mut conn).await;
    while commits.next(&mut conn, &stop).await {
        hub.changed_all();
    }
    let _ = conn.close().await;
    Ok(())
}

/// Commits of other connections, seen through the file's change counter.
struct Commits {
    last: Option<i64>,
    tick: tokio::time::Interval,
}

impl Commits {
    async fn new(conn: &mut SqliteConnection) -> Self {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            last: data_version(conn).await.ok(),
            tick,
        }
    }

    /// Returns true after the next commit of another connection, false at `stop`.
    async fn next(&mut self, conn: &mut SqliteConnection, stop: &CancellationToken) -> bool {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = self.tick.tick() => {}
            }
            let now = match data_version(conn).await {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::debug!(error = %e, "reading the sqlite queue's data_version failed");
                    continue;
                }
            };
            if now != self.last {
                self.last = now;
                return true;
            }
        }
    }
}

/// The file's change counter as this connection sees it.
async fn data_version(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("pragma data_version")
        .fetch_one(conn)
        .await
}

/// When the earliest pending job is due (it may be now or past), if any job is pending.
async fn earliest_due(conn: &mut SqliteConnection) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let at: Option<String> =
        sqlx::query_scalar("select min(scheduled_at) from download_jobs where status = 'pending'")
            .fetch_one(conn)
            .await?;
    Ok(at
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc)))
}
