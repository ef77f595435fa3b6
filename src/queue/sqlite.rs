//! The SQLite backend: the embedded default, one machine, the queue in a file.
//!
//! The tables, columns and indexes are those of the PostgreSQL migrations, in SQLite types
//! (`sqlite_schema.sql`, applied by `crate::queue::migrate::apply_sqlite` when the queue is
//! opened), and every operation implements the same life cycle with the same semantics as the
//! SQL functions of `migrations/0002_queue.sql`, here in Rust over plain statements.
//!
//! Storage forms: uuids are TEXT (hyphenated, lower case); times are TEXT in one canonical
//! form, `TIMESTAMP_FORMAT` (UTC, milliseconds), so that comparing the text orders the
//! times; JSON is TEXT; booleans are INTEGER 0/1. Writers other than the worker must use the
//! same forms ([`format_timestamp`]); the schema refuses ids and compared times in other
//! forms.
//!
//! Concurrency: several processes may share the file (a worker and the CLI, or two workers).
//! Every operation that writes runs in a write transaction opened with `BEGIN IMMEDIATE`, so a
//! second writer waits for the lock (busy timeout 30 s) instead of failing on a lock upgrade;
//! SQLite has no `SKIP LOCKED`, the write lock serialises claimers instead. Inside one process
//! writers queue on an async mutex first, so they hand the lock over without the busy
//! handler's sleeps.
//!
//! Wake-ups: SQLite has no NOTIFY. The queue signals its subscribers whenever this process
//! makes a job claimable (enqueue, retry, release, rescue); jobs made claimable by other
//! processes are seen by `watch`, which reads the file's change counter every 200 ms.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row, Sqlite, Transaction};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::{
    ClaimedJob, CompleteOutcome, Completion, EnqueueOutcome, EnqueueRequest, EnqueueResult,
    FailOutcome, FailedAttempt, JobFilter, JobQueue, JobRecord, JobSignal, Learned, Lease,
    QueueError, QueueOverview, ReleaseOutcome, Rescued, RetryOutcome, RetryResult, RetryTarget,
    VideoCover, VideoRow, VideoState, WorkerLoad, WorkerStats, retry_seconds,
};
use super::{QueueAdmin, QueueName};
use crate::error::ErrorClass;
use crate::queue::migrate::MigrateError;

mod admin;
mod enqueue;
mod learn;
mod lifecycle;
mod values;
mod watch;

use enqueue::requeue_video;
use lifecycle::job_from_row;
use values::{
    clamp_i64, db_error, json_column, json_text, lease_item, lease_secs, now, parse_uuid,
    uuid_column, with_context,
};
pub use values::{douyin_id_from_url, format_timestamp};

/// The `strftime` format of every time the SQLite queue stores, e.g.
/// `2025-01-31T08:00:00.000Z`: UTC, millisecond precision. SQLite writes the same text with
/// `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`.
pub(crate) const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// How long a writer waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections in the pool of [`SqliteQueue::open`]: writes are serialised anyway, the
/// others serve concurrent reads.
const MAX_CONNECTIONS: u32 = 4;

/// Attempts at applying the schema when another process holds the file's lock at the same
/// moment (a lock upgrade conflict fails at once instead of waiting).
const SCHEMA_ATTEMPTS: u32 = 20;

/// The longest retry delay stored; longer delays are cut to it (`chrono` times end in the
/// year 262143, PostgreSQL's in 294276; a job due in a century is not coming back either).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// A subscribed wake-up signal, dropped once its shutdown token is cancelled.
#[derive(Debug)]
struct Subscriber {
    signal: Arc<JobSignal>,
    shutdown: CancellationToken,
}

/// State shared by the clones of one queue.
#[derive(Debug, Default)]
struct Shared {
    /// Serialises this process's write transactions (see the module docs).
    write_lock: tokio::sync::Mutex<()>,
    /// Who to wake when this process makes a job claimable.
    subscribers: Mutex<Vec<Subscriber>>,
}

/// A `BEGIN IMMEDIATE` transaction and this process's write turn. Dropped without
/// [`WriteTx::commit`], it rolls back.
struct WriteTx<'a> {
    // Declared first: dropped (rolled back) before the turn is handed on.
    tx: Transaction<'static, Sqlite>,
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

impl WriteTx<'_> {
    async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

/// The queue in a SQLite file (the embedded default).
///
/// Clones share the pool, the write turn and the subscribers.
#[derive(Clone, Debug)]
pub struct SqliteQueue {
    pool: SqlitePool,
    shared: Arc<Shared>,
}

impl SqliteQueue {
    /// Opens (creating it and its folder when missing) the queue file at `path`, in WAL mode,
    /// and applies the schema.
    pub async fn open(path: &Path) -> Result<Self, QueueError> {
        let shown = path.display();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                let msg = format!(
                    "cannot create the folder {} of the sqlite queue: {e}",
                    dir.display()
                );
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    QueueError::PermissionDenied(msg)
                } else {
                    QueueError::Database(msg)
                }
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            // A local file does not go stale; skip the ping on every acquire.
            .test_before_acquire(false)
            .connect_with(options)
            .await;
        let pool = pool.map_err(|e| {
            let context = format!("opening the sqlite queue {shown}");
            with_context(db_error(e), &context)
        })?;

        // Two processes creating the file at the same moment may conflict on the lock
        // upgrade inside the schema transaction, which fails at once: try again.
        let mut attempt = 1;
        loop {
            let e = match crate::queue::migrate::apply_sqlite(&pool).await {
                Ok(report) => {
                    if !report.applied.is_empty() {
                        let applied = report.applied;
                        tracing::info!(path = %shown, ?applied, "sqlite queue schema applied");
                    }
                    return Ok(Self::from_pool(pool));
                }
                Err(e) => migrate_error(e, &shown.to_string()),
            };
            if !e.is_transient() || attempt >= SCHEMA_ATTEMPTS {
                return Err(e);
            }
            tracing::debug!(error = %e, attempt, "sqlite queue schema busy; retrying");
            let wait =
                crate::retry::Backoff::new(Duration::from_millis(25), Duration::from_secs(1))
                    .after(attempt);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Wraps an existing pool. The schema is not applied: see [`QueueAdmin::check_schema`].
    /// Connections must have foreign keys on and should have a busy timeout.
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self {
            pool,
            shared: Arc::new(Shared::default()),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Takes this process's write turn, then opens a `BEGIN IMMEDIATE` transaction.
    async fn write(&self) -> Result<WriteTx<'_>, sqlx::Error> {
        let turn = self.shared.write_lock.lock().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, _turn: turn })
    }

    /// Calls `f` on every live subscriber.
    fn notify(&self, f: impl Fn(&JobSignal)) {
        let mut subscribers = self
            .shared
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        subscribers.retain(|s| !s.shutdown.is_cancelled());
        for s in subscribers.iter() {
            f(&s.signal);
        }
    }
}

/// A failed schema application as a queue error.
fn migrate_error(e: MigrateError, path: &str) -> QueueError {
    let (context, source) = match e {
        MigrateError::File { name, source } => (
            format!("applying the sqlite queue schema {name} to {path} failed"),
            source,
        ),
        MigrateError::Database(source) => (
            format!("recording the sqlite queue schema in {path} failed"),
            source,
        ),
    };
    match QueueError::from(source) {
        e @ (QueueError::Unavailable(_) | QueueError::PermissionDenied(_)) => {
            with_context(e, &context)
        }
        other => QueueError::Schema(format!("{context}: {other}")),
    }
}

impl QueueName for SqliteQueue {
    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

#[async_trait]
impl JobQueue for SqliteQueue {
    async fn claim(
        &self,
        worker_id: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        if worker_id.is_empty() {
            return Err(QueueError::Rejected(
                "claim: the worker id must not be empty".into(),
            ));
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.claim_tx(worker_id, limit, lease)
            .await
            .map_err(db_error)
    }

    async fn heartbeat(
        &self,
        worker_id: &str,
        leases: &[Lease],
        lease: Duration,
    ) -> Result<Vec<Lease>, QueueError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        self.heartbeat_turn(worker_id, leases, lease)
            .await
            .map_err(db_error)
    }

    async fn complete(
        &self,
        worker_id: &str,
        items: &[Completion],
    ) -> Result<Vec<(Uuid, CompleteOutcome)>, QueueError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(c) = items
            .iter()
            .find(|c| c.stored.bucket.is_empty() || c.stored.object_key.is_empty())
        {
            return Err(QueueError::Rejected(format!(
                "complete: every result needs a bucket and an object_key \
                 (job {} has bucket {:?}, object_key {:?})",
                c.lease.job_id, c.stored.bucket, c.stored.object_key
            )));
        }
        self.complete_tx(worker_id, items).await.map_err(db_error)
    }

    async fn fail(
        &self,
        worker_id: &str,
        items: &[FailedAttempt],
    ) -> Result<Vec<(Uuid, FailOutcome)>, QueueError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.fail_tx(worker_id, items).await.map_err(db_error)?;
        let earliest_retry = out
            .iter()
            .filter_map(|(_, o)| match o {
                FailOutcome::RetryScheduled(at) => Some(*at),
                _ => None,
            })
            .min();
        if let Some(due) = earliest_retry {
            self.notify(|s| s.job_due_at(due));
        }
        Ok(out)
    }

    async fn release(
        &self,
        worker_id: &str,
        leases: &[Lease],
    ) -> Result<Vec<(Uuid, ReleaseOutcome)>, QueueError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.release_tx(worker_id, leases).await.map_err(db_error)?;
        if out.iter().any(|(_, o)| *o == ReleaseOutcome::Released) {
            self.notify(JobSignal::job_due_now);
        }
        Ok(out)
    }

    async fn rescue(&self, limit: u32) -> Result<Vec<Rescued>, QueueError> {
        let out = self.rescue_tx(limit).await.map_err(db_error)?;
        if out.iter().any(|r| r.requeued) {
            self.notify(JobSignal::job_due_now);
        }
        Ok(out)
    }

    async fn progress(
        &self,
        worker_id: &str,
        lease: &Lease,
        done: u64,
        total: Option<u64>,
    ) -> Result<bool, QueueError> {
        self.progress_tx(worker_id, lease, clamp_i64(done), total.map(clamp_i64))
            .await
            .map_err(db_error)
    }

    async fn learn_douyin_id(
        &self,
        worker_id: &str,
        lease: &Lease,
        douyin_id: &str,
    ) -> Result<Learned, QueueError> {
        let id = douyin_id.trim();
        if !(8..=25).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(QueueError::Rejected(format!(
                "learn_douyin_id: the Douyin id must be 8 to 25 digits (got {douyin_id:?})"
            )));
        }
        self.learn_tx(worker_id, lease, id).await.map_err(db_error)
    }

    async fn subscribe(
        &self,
        signal: Arc<JobSignal>,
        shutdown: CancellationToken,
    ) -> Result<(), QueueError> {
        let mut subscribers = self
            .shared
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        subscribers.retain(|s| !s.shutdown.is_cancelled());
        subscribers.push(Subscriber {
            signal: signal.clone(),
            shutdown: shutdown.clone(),
        });
        drop(subscribers);
        watch::spawn(&self.pool.connect_options(), signal, shutdown);
        Ok(())
    }
}

#[async_trait]
impl QueueAdmin for SqliteQueue {
    /// Any commit to the file wakes every stream (the file's change counter), which then
    /// re-reads its video.
    async fn feed_video_changes(
        &self,
        hub: Arc<super::changes::VideoChanges>,
        stop: CancellationToken,
    ) -> Result<(), QueueError> {
        watch::feed_changes(&self.pool.connect_options(), hub, stop).await
    }

    /// Storage policies exist only on Supabase: nothing to call here.
    async fn ensure_videos_bucket(&self) -> Result<bool, QueueError> {
        Ok(false)
    }

    async fn check_schema(&self) -> Result<(), QueueError> {
        let (tables, job_columns, video_columns): (i64, i64, i64) = sqlx::query_as(
            "select
                 (select count(*) from sqlite_master
                   where type = 'table' and name in ('videos', 'download_jobs')),
                 (select count(*) from pragma_table_info('download_jobs')
                   where name in ('lease_id', 'lease_expires_at', 'priority', 'max_attempts',
                                  'last_error_code', 'progress_bytes')),
                 (select count(*) from pragma_table_info('videos')
                   where name in ('status', 'object_key', 'marked_for_deletion',
                                  'download_progress', 'next_attempt_at'))",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        if tables != 2 {
            return Err(QueueError::Schema(
                "the sqlite queue file has no videos and download_jobs tables: open it with \
                 the worker (it creates them), or point it at another file"
                    .into(),
            ));
        }
        if job_columns != 6 || video_columns != 5 {
            return Err(QueueError::Schema(
                "the sqlite queue file has videos and download_jobs tables that are not the \
                 douyin-worker schema (lease and progress columns are missing): point the \
                 worker at another file"
                    .into(),
            ));
        }
        Ok(())
    }

    async fn enqueue(&self, req: &EnqueueRequest) -> Result<EnqueueResult, QueueError> {
        let url = req.url.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let douyin_id = req
            .douyin_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        if req.video_id.is_none() && url.is_none() && douyin_id.is_none() {
            return Err(QueueError::Rejected(
                "enqueue: give a video id, a url or a douyin id".into(),
            ));
        }
        let result = self
            .enqueue_tx(req, url, douyin_id)
            .await
            .map_err(db_error)?;
        if result.outcome == EnqueueOutcome::Queued {
            self.notify(JobSignal::job_due_now);
        }
        Ok(result)
    }

    async fn stats(&self) -> Result<WorkerStats, QueueError> {
        self.stats_q().await.map_err(db_error)
    }

    async fn job(&self, id: Uuid) -> Result<Option<JobRecord>, QueueError> {
        let sql = format!("{} where j.id = ?1", admin::JOB_SELECT);
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.hyphenated())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.map(|r| job_from_row(&r).map_err(db_error)).transpose()
    }

    async fn video(&self, id: Uuid) -> Result<Option<VideoState>, QueueError> {
        self.video_q(id).await.map_err(db_error)
    }

    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, QueueError> {
        self.jobs_q(filter).await.map_err(db_error)
    }

    async fn retry(&self, target: &RetryTarget) -> Result<Vec<RetryResult>, QueueError> {
        let out = self.retry_tx(target).await.map_err(db_error)?;
        if out.iter().any(|r| r.outcome == RetryOutcome::Queued) {
            self.notify(JobSignal::job_due_now);
        }
        Ok(out)
    }

    async fn overview(&self) -> Result<QueueOverview, QueueError> {
        self.overview_q().await.map_err(db_error)
    }

    async fn wanted_object_keys(&self, bucket: &str) -> Result<HashSet<String>, QueueError> {
        self.wanted_keys_q(bucket).await.map_err(db_error)
    }

    async fn video_cover(&self, id: Uuid) -> Result<Option<VideoCover>, QueueError> {
        self.video_cover_q(id).await.map_err(db_error)
    }
}

#[cfg(test)]
mod tests;
