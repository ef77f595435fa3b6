//! The SQLite backend: the embedded default, one machine, the queue in a file.
//!
//! The tables, columns and indexes are those of the PostgreSQL migrations, in SQLite types
//! (`sqlite_schema.sql`, applied by [`crate::migrate::apply_sqlite`] when the queue is
//! opened), and every operation implements the same life cycle with the same semantics as the
//! SQL functions of `migrations/0002_queue.sql`, here in Rust over plain statements.
//!
//! Storage forms: uuids are TEXT (hyphenated, lower case); times are TEXT in one canonical
//! form, [`TIMESTAMP_FORMAT`] (UTC, milliseconds), so that comparing the text orders the
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
//! processes are found by the worker's polling.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
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
    FailOutcome, Failure, JobQueue, JobRecord, JobSignal, Lease, QueueError, ReleaseOutcome,
    Rescued, VideoInfo, WorkerStats, retry_seconds,
};
use crate::error::ErrorClass;
use crate::migrate::MigrateError;

/// The `strftime` format of every time the SQLite queue stores, e.g.
/// `2025-01-31T08:00:00.000Z`: UTC, millisecond precision. SQLite writes the same text with
/// `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

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

/// Formats a time the way the SQLite queue stores it ([`TIMESTAMP_FORMAT`]), truncated to
/// milliseconds. Bind this, never a `DateTime` (sqlx would write another form).
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.trunc_subsecs(3).format(TIMESTAMP_FORMAT).to_string()
}

/// Now, at the precision the queue stores.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// The lease length as the PostgreSQL functions take it: whole seconds, at least one.
fn lease_secs(lease: Duration) -> i64 {
    lease.as_secs().clamp(1, i32::MAX as u64) as i64
}

/// A u64 as the `bigint` the PostgreSQL backend binds.
fn clamp_i64(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// JSON for a TEXT column: `None` and JSON `null` are SQL NULL (as `jsonb_to_recordset` reads a
/// JSON null).
fn json_text(v: Option<&Value>) -> Option<String> {
    v.filter(|v| !v.is_null()).map(Value::to_string)
}

/// Reads a JSON TEXT column. Text that is not JSON (written by someone else) is logged and
/// read as absent rather than failing the whole batch (and, for a claim, blocking the queue).
fn json_column(row: &SqliteRow, column: &str) -> Result<Option<Value>, sqlx::Error> {
    let text: Option<String> = row.try_get(column)?;
    Ok(text.and_then(|t| match serde_json::from_str(&t) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(column, error = %e, "ignoring a value that is not JSON");
            None
        }
    }))
}

/// Parses a uuid read as text.
fn parse_uuid(s: &str) -> Result<Uuid, sqlx::Error> {
    Uuid::parse_str(s).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// The `{"job_id", "lease_id"}` item of a batch, as text uuids.
fn lease_item(l: &Lease) -> Value {
    json!({
        "job_id": l.job_id.hyphenated().to_string(),
        "lease_id": l.lease_id.hyphenated().to_string(),
    })
}

/// Reads a uuid TEXT column.
fn uuid_column(row: &SqliteRow, column: &str) -> Result<Uuid, sqlx::Error> {
    Ok(row.try_get::<Hyphenated, _>(column)?.into_uuid())
}

/// The Douyin (aweme) id in a link, as `enqueue_download_job` finds it: a link that is only
/// 8 to 25 digits, else the first `/video/ID`, `/note/ID`, `/slides/ID`, `?modal_id=ID`,
/// `&modal_id=ID`, `?vid=ID` or `&vid=ID` with an ID of 8 to 25 digits (longer runs of digits
/// give their first 25, as the regex does). Short links (`v.douyin.com/...`) have none.
pub fn douyin_id_from_url(url: &str) -> Option<String> {
    let trimmed = url.trim();
    if (8..=25).contains(&trimmed.len()) && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Some(trimmed.to_owned());
    }
    const MARKERS: [&[u8]; 7] = [
        b"/video/",
        b"/note/",
        b"/slides/",
        b"?modal_id=",
        b"&modal_id=",
        b"?vid=",
        b"&vid=",
    ];
    let bytes = trimmed.as_bytes();
    for start in 0..bytes.len() {
        for marker in MARKERS {
            if !bytes[start..].starts_with(marker) {
                continue;
            }
            let from = start + marker.len();
            let digits = bytes[from..]
                .iter()
                .take(25)
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits >= 8 {
                // ASCII digits: always a char boundary.
                return Some(trimmed[from..from + digits].to_owned());
            }
        }
    }
    None
}

/// Maps an sqlx error; a missing table or column is a schema problem.
fn db_error(e: sqlx::Error) -> QueueError {
    if let sqlx::Error::Database(db) = &e {
        let msg = db.message();
        if msg.starts_with("no such table") || msg.starts_with("no such column") {
            return QueueError::Schema(format!(
                "{msg}: the sqlite queue file lacks the douyin-worker schema \
                 (it is created when the queue is opened)"
            ));
        }
    }
    QueueError::from(e)
}

/// The same error with `context` in front of its message.
fn with_context(e: QueueError, context: &str) -> QueueError {
    match e {
        QueueError::Unavailable(m) => QueueError::Unavailable(format!("{context}: {m}")),
        QueueError::Database(m) => QueueError::Database(format!("{context}: {m}")),
        QueueError::Schema(m) => QueueError::Schema(format!("{context}: {m}")),
        QueueError::PermissionDenied(m) => QueueError::PermissionDenied(format!("{context}: {m}")),
        QueueError::Rejected(m) => QueueError::Rejected(format!("{context}: {m}")),
    }
}

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
            let e = match crate::migrate::apply_sqlite(&pool).await {
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
            tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
            attempt += 1;
        }
    }

    /// Wraps an existing pool. The schema is not applied: see [`JobQueue::check_schema`].
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

    async fn claim_tx(
        &self,
        worker_id: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, sqlx::Error> {
        // An idle poll only reads: no write lock unless a job is due (WAL readers never wait).
        let due: bool = sqlx::query_scalar(
            "select exists (select 1 from download_jobs
                             where status = 'pending' and scheduled_at <= ?1)",
        )
        .bind(format_timestamp(now()))
        .fetch_one(&self.pool)
        .await?;
        if !due {
            return Ok(Vec::new());
        }

        let mut w = self.write().await?;
        let now = now();
        let expires = now + chrono::Duration::seconds(lease_secs(lease));
        let (now_s, expires_s) = (format_timestamp(now), format_timestamp(expires));
        let ids: Vec<(String,)> = sqlx::query_as(
            "select id from download_jobs
              where status = 'pending' and scheduled_at <= ?1
              order by priority desc, scheduled_at, created_at
              limit ?2",
        )
        .bind(&now_s)
        .bind(i64::from(limit))
        .fetch_all(&mut *w.tx)
        .await?;
        if ids.is_empty() {
            w.commit().await?;
            return Ok(Vec::new());
        }

        let picked = Value::Array(
            ids.iter()
                .map(|(id,)| json!({"id": id, "lease": Uuid::new_v4().hyphenated().to_string()}))
                .collect(),
        );
        let jobs = sqlx::query(
            "update download_jobs as j
                set status           = 'running',
                    worker_id        = ?1,
                    started_at       = ?2,
                    finished_at      = null,
                    attempts         = j.attempts + 1,
                    lease_id         = x.lease,
                    lease_expires_at = ?3,
                    heartbeat_at     = ?2,
                    progress_bytes   = null,
                    progress_total   = null,
                    progress_at      = null,
                    updated_at       = ?2
               from (select value ->> 'id' as id, value ->> 'lease' as lease
                       from json_each(?4)) as x
              where j.id = x.id
             returning id, video_id, lease_id, attempts, max_attempts, priority, payload,
                       scheduled_at, created_at",
        )
        .bind(worker_id)
        .bind(&now_s)
        .bind(&expires_s)
        .bind(picked.to_string())
        .fetch_all(&mut *w.tx)
        .await?;

        let mut touched = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let video_id: String = job.try_get("video_id")?;
            let attempts: i32 = job.try_get("attempts")?;
            touched.push(json!({"id": video_id, "attempts": attempts}));
        }
        let videos = sqlx::query(
            "update videos as v
                set status              = 'downloading',
                    download_started_at = ?1,
                    in_progress_by      = ?2,
                    in_progress_at      = ?1,
                    attempts            = x.attempts,
                    last_attempt_at     = ?1,
                    download_progress   = 0,
                    next_attempt_at     = null,
                    updated_at          = ?1
               from (select value ->> 'id' as id, value ->> 'attempts' as attempts
                       from json_each(?3)) as x
              where v.id = x.id
             returning id, douyin_id, video_url, title, thumbnail_url, video_url_direct,
                       video_url_meta,
                       coalesce(marked_for_deletion, 0) <> 0 as marked_for_deletion",
        )
        .bind(&now_s)
        .bind(worker_id)
        .bind(Value::Array(touched).to_string())
        .fetch_all(&mut *w.tx)
        .await?;
        w.commit().await?;

        let mut videos_by_id = HashMap::with_capacity(videos.len());
        for row in &videos {
            let info = VideoInfo {
                douyin_id: row.try_get("douyin_id")?,
                video_url: row.try_get("video_url")?,
                title: row.try_get("title")?,
                thumbnail_url: row.try_get("thumbnail_url")?,
                video_url_direct: row.try_get("video_url_direct")?,
                video_url_meta: json_column(row, "video_url_meta")?,
                marked_for_deletion: row.try_get("marked_for_deletion")?,
            };
            videos_by_id.insert(row.try_get::<String, _>("id")?, info);
        }
        let mut by_id = HashMap::with_capacity(jobs.len());
        for job in &jobs {
            let video_id: String = job.try_get("video_id")?;
            let claimed = ClaimedJob {
                lease: Lease {
                    job_id: uuid_column(job, "id")?,
                    lease_id: uuid_column(job, "lease_id")?,
                },
                video_id: uuid_column(job, "video_id")?,
                lease_expires_at: expires,
                attempts: job.try_get("attempts")?,
                max_attempts: job.try_get("max_attempts")?,
                priority: job.try_get::<Option<i32>, _>("priority")?.unwrap_or(0),
                payload: json_column(job, "payload")?,
                scheduled_at: job.try_get("scheduled_at")?,
                created_at: job.try_get("created_at")?,
                // No video row only when someone wrote with foreign keys off; PostgreSQL
                // cannot get there.
                video: videos_by_id.remove(&video_id).unwrap_or_default(),
            };
            by_id.insert(job.try_get::<String, _>("id")?, claimed);
        }
        // In claim order.
        Ok(ids.iter().filter_map(|(id,)| by_id.remove(id)).collect())
    }

    async fn heartbeat_turn(
        &self,
        worker_id: &str,
        leases: &[Lease],
        lease: Duration,
    ) -> Result<Vec<Lease>, sqlx::Error> {
        let items = Value::Array(leases.iter().map(lease_item).collect());
        // One statement: atomic without an explicit transaction.
        let _turn = self.shared.write_lock.lock().await;
        let now = now();
        let expires = now + chrono::Duration::seconds(lease_secs(lease));
        let rows: Vec<(String, String)> = sqlx::query_as(
            "update download_jobs as j
                set lease_expires_at = ?1,
                    heartbeat_at     = ?2
               from (select value ->> 'job_id' as job_id, value ->> 'lease_id' as lease_id
                       from json_each(?3)) as x
              where j.id = x.job_id
                and j.lease_id = x.lease_id
                and j.worker_id = ?4
                and j.status = 'running'
             returning id, lease_id",
        )
        .bind(format_timestamp(expires))
        .bind(format_timestamp(now))
        .bind(items.to_string())
        .bind(worker_id)
        .fetch_all(&self.pool)
        .await?;
        let held: HashSet<(String, String)> = rows.into_iter().collect();
        let mut seen = HashSet::with_capacity(leases.len());
        Ok(leases
            .iter()
            .filter(|l| {
                held.contains(&(
                    l.job_id.hyphenated().to_string(),
                    l.lease_id.hyphenated().to_string(),
                )) && seen.insert(**l)
            })
            .copied()
            .collect())
    }

    async fn complete_tx(
        &self,
        worker_id: &str,
        items: &[Completion],
    ) -> Result<Vec<(Uuid, CompleteOutcome)>, sqlx::Error> {
        let jobs = Value::Array(
            items
                .iter()
                .map(|c| {
                    let mut item = lease_item(&c.lease);
                    item["filesize"] = json!(c.stored.filesize);
                    item
                })
                .collect(),
        );
        let mut w = self.write().await?;
        let now_s = format_timestamp(now());
        let done: Vec<(String, String)> = sqlx::query_as(
            "update download_jobs as j
                set status           = 'completed',
                    finished_at      = ?1,
                    lease_id         = null,
                    lease_expires_at = null,
                    last_error       = null,
                    last_error_code  = null,
                    last_error_class = null,
                    progress_bytes   = coalesce(x.filesize, j.progress_bytes),
                    progress_total   = coalesce(x.filesize, j.progress_total),
                    progress_at      = ?1,
                    updated_at       = ?1
               from (select value ->> 'job_id' as job_id, value ->> 'lease_id' as lease_id,
                            value ->> 'filesize' as filesize
                       from json_each(?2)) as x
              where j.id = x.job_id
                and j.lease_id = x.lease_id
                and j.worker_id = ?3
                and j.status = 'running'
             returning id, video_id",
        )
        .bind(&now_s)
        .bind(jobs.to_string())
        .bind(worker_id)
        .fetch_all(&mut *w.tx)
        .await?;
        let mut video_of: HashMap<Uuid, String> = HashMap::with_capacity(done.len());
        for (job_id, video_id) in done {
            video_of.insert(parse_uuid(&job_id)?, video_id);
        }

        let mut videos = Vec::with_capacity(video_of.len());
        let mut filled = HashSet::with_capacity(video_of.len());
        for c in items {
            let Some(video_id) = video_of.get(&c.lease.job_id) else {
                continue;
            };
            if !filled.insert(c.lease.job_id) {
                continue;
            }
            videos.push(json!({
                "id": video_id,
                "bucket": c.stored.bucket,
                "object_key": c.stored.object_key,
                "storage_etag": c.stored.storage_etag,
                "filesize": c.stored.filesize,
                "mime_type": c.stored.mime_type,
                "storage_provider": c.stored.storage_provider,
                "storage_metadata": json_text(Some(&c.stored.storage_metadata)),
                "douyin_id": c.video.douyin_id,
                "title": c.video.title,
                "thumbnail_url": c.video.thumbnail_url,
                "video_url_direct": c.video.video_url_direct,
                "video_url_meta": json_text(c.video.video_url_meta.as_ref()),
            }));
        }
        if !videos.is_empty() {
            sqlx::query(
                "update videos as v
                    set status            = 'ready',
                        bucket            = x.bucket,
                        object_key        = x.object_key,
                        storage_etag      = x.storage_etag,
                        filesize          = x.filesize,
                        mime_type         = x.mime_type,
                        storage_provider  = x.storage_provider,
                        storage_metadata  = x.storage_metadata,
                        downloaded_at     = ?1,
                        in_progress_by    = null,
                        in_progress_at    = null,
                        last_error        = null,
                        download_progress = 100,
                        next_attempt_at   = null,
                        douyin_id         = coalesce(nullif(v.douyin_id, ''), x.douyin_id),
                        title             = coalesce(nullif(v.title, ''), x.title),
                        thumbnail_url     = coalesce(nullif(v.thumbnail_url, ''), x.thumbnail_url),
                        video_url_direct  = coalesce(x.video_url_direct, v.video_url_direct),
                        video_url_meta    = coalesce(x.video_url_meta, v.video_url_meta),
                        updated_at        = ?1
                   from (select value ->> 'id' as id, value ->> 'bucket' as bucket,
                                value ->> 'object_key' as object_key,
                                value ->> 'storage_etag' as storage_etag,
                                value ->> 'filesize' as filesize,
                                value ->> 'mime_type' as mime_type,
                                value ->> 'storage_provider' as storage_provider,
                                value ->> 'storage_metadata' as storage_metadata,
                                value ->> 'douyin_id' as douyin_id, value ->> 'title' as title,
                                value ->> 'thumbnail_url' as thumbnail_url,
                                value ->> 'video_url_direct' as video_url_direct,
                                value ->> 'video_url_meta' as video_url_meta
                           from json_each(?2)) as x
                  where v.id = x.id",
            )
            .bind(&now_s)
            .bind(Value::Array(videos).to_string())
            .execute(&mut *w.tx)
            .await?;
        }
        w.commit().await?;
        Ok(items
            .iter()
            .map(|c| {
                let outcome = if video_of.contains_key(&c.lease.job_id) {
                    CompleteOutcome::Completed
                } else {
                    CompleteOutcome::LeaseLost
                };
                (c.lease.job_id, outcome)
            })
            .collect())
    }

    async fn fail_tx(
        &self,
        worker_id: &str,
        items: &[Failure],
    ) -> Result<Vec<(Uuid, FailOutcome)>, sqlx::Error> {
        let now = now();
        let jobs = Value::Array(
            items
                .iter()
                .map(|f| {
                    let retry = retry_seconds(f);
                    let delay = retry
                        .map(|s| {
                            Duration::try_from_secs_f64(s.max(0.0))
                                .unwrap_or(MAX_RETRY_DELAY)
                                .min(MAX_RETRY_DELAY)
                        })
                        .unwrap_or_default();
                    let due = now
                        .checked_add_signed(chrono::Duration::from_std(delay).unwrap_or_default())
                        .unwrap_or(now);
                    let mut item = lease_item(&f.lease);
                    // Final whatever the attempts: a permanent error, or no retry asked for.
                    item["final"] = json!(f.class == ErrorClass::Permanent || retry.is_none());
                    item["due"] = json!(format_timestamp(due));
                    item["error"] = json!(if f.error.is_empty() {
                        "unknown error"
                    } else {
                        f.error.as_str()
                    });
                    item["code"] = json!(f.code);
                    item["class"] = json!(f.class.as_str());
                    item
                })
                .collect(),
        );
        let mut w = self.write().await?;
        let now_s = format_timestamp(now);
        let updated = sqlx::query(
            "update download_jobs as j
                set status           = case when x.final or j.attempts >= j.max_attempts
                                            then 'failed' else 'pending' end,
                    worker_id        = case when x.final or j.attempts >= j.max_attempts
                                            then j.worker_id end,
                    finished_at      = case when x.final or j.attempts >= j.max_attempts
                                            then ?1 end,
                    scheduled_at     = case when x.final or j.attempts >= j.max_attempts
                                            then j.scheduled_at else x.due end,
                    lease_id         = null,
                    lease_expires_at = null,
                    last_error       = x.error,
                    last_error_code  = x.code,
                    last_error_class = x.class,
                    updated_at       = ?1
               from (select value ->> 'job_id' as job_id, value ->> 'lease_id' as lease_id,
                            value ->> 'final' as final, value ->> 'due' as due,
                            value ->> 'error' as error, value ->> 'code' as code,
                            value ->> 'class' as class
                       from json_each(?2)) as x
              where j.id = x.job_id
                and j.lease_id = x.lease_id
                and j.worker_id = ?3
                and j.status = 'running'
             returning id, video_id, status, attempts, last_error, scheduled_at",
        )
        .bind(&now_s)
        .bind(jobs.to_string())
        .bind(worker_id)
        .fetch_all(&mut *w.tx)
        .await?;

        let mut outcomes: HashMap<Uuid, FailOutcome> = HashMap::with_capacity(updated.len());
        let mut videos = Vec::with_capacity(updated.len());
        for row in &updated {
            let failed = row.try_get::<String, _>("status")? == "failed";
            let scheduled_at: DateTime<Utc> = row.try_get("scheduled_at")?;
            outcomes.insert(
                uuid_column(row, "id")?,
                if failed {
                    FailOutcome::Failed
                } else {
                    FailOutcome::RetryScheduled(scheduled_at)
                },
            );
            videos.push(json!({
                "id": row.try_get::<String, _>("video_id")?,
                "status": if failed { "failed" } else { "pending" },
                "error": row.try_get::<Option<String>, _>("last_error")?,
                "attempts": row.try_get::<i32, _>("attempts")?,
                "next": (!failed).then(|| format_timestamp(scheduled_at)),
            }));
        }
        if !videos.is_empty() {
            sqlx::query(
                "update videos as v
                    set status            = x.status,
                        last_error        = x.error,
                        attempts          = x.attempts,
                        in_progress_by    = null,
                        in_progress_at    = null,
                        download_progress = null,
                        next_attempt_at   = x.next,
                        updated_at        = ?1
                   from (select value ->> 'id' as id, value ->> 'status' as status,
                                value ->> 'error' as error, value ->> 'attempts' as attempts,
                                value ->> 'next' as next
                           from json_each(?2)) as x
                  where v.id = x.id",
            )
            .bind(&now_s)
            .bind(Value::Array(videos).to_string())
            .execute(&mut *w.tx)
            .await?;
        }
        w.commit().await?;
        Ok(items
            .iter()
            .map(|f| {
                let id = f.lease.job_id;
                (
                    id,
                    outcomes.get(&id).copied().unwrap_or(FailOutcome::LeaseLost),
                )
            })
            .collect())
    }

    async fn release_tx(
        &self,
        worker_id: &str,
        leases: &[Lease],
    ) -> Result<Vec<(Uuid, ReleaseOutcome)>, sqlx::Error> {
        let items = Value::Array(leases.iter().map(lease_item).collect());
        let mut w = self.write().await?;
        let now_s = format_timestamp(now());
        let released: Vec<(String, String, i32)> = sqlx::query_as(
            "update download_jobs as j
                set status           = 'pending',
                    worker_id        = null,
                    scheduled_at     = ?1,
                    attempts         = max(j.attempts - 1, 0),
                    lease_id         = null,
                    lease_expires_at = null,
                    progress_bytes   = null,
                    progress_total   = null,
                    updated_at       = ?1
               from (select value ->> 'job_id' as job_id, value ->> 'lease_id' as lease_id
                       from json_each(?2)) as x
              where j.id = x.job_id
                and j.lease_id = x.lease_id
                and j.worker_id = ?3
                and j.status = 'running'
             returning id, video_id, attempts",
        )
        .bind(&now_s)
        .bind(items.to_string())
        .bind(worker_id)
        .fetch_all(&mut *w.tx)
        .await?;
        let mut done = HashSet::with_capacity(released.len());
        let mut videos = Vec::with_capacity(released.len());
        for (job_id, video_id, attempts) in &released {
            done.insert(parse_uuid(job_id)?);
            videos.push(json!({"id": video_id, "attempts": attempts}));
        }
        if !videos.is_empty() {
            sqlx::query(
                "update videos as v
                    set status            = 'pending',
                        attempts          = x.attempts,
                        in_progress_by    = null,
                        in_progress_at    = null,
                        download_progress = null,
                        next_attempt_at   = null,
                        updated_at        = ?1
                   from (select value ->> 'id' as id, value ->> 'attempts' as attempts
                           from json_each(?2)) as x
                  where v.id = x.id",
            )
            .bind(&now_s)
            .bind(Value::Array(videos).to_string())
            .execute(&mut *w.tx)
            .await?;
        }
        w.commit().await?;
        Ok(leases
            .iter()
            .map(|l| {
                let outcome = if done.contains(&l.job_id) {
                    ReleaseOutcome::Released
                } else {
                    ReleaseOutcome::LeaseLost
                };
                (l.job_id, outcome)
            })
            .collect())
    }

    async fn rescue_tx(&self, limit: u32) -> Result<Vec<Rescued>, sqlx::Error> {
        // Like an idle claim, a rescue that finds nothing takes no write lock.
        let expired: bool = sqlx::query_scalar(
            "select exists (select 1 from download_jobs
                             where status = 'running' and lease_expires_at < ?1)",
        )
        .bind(format_timestamp(now()))
        .fetch_one(&self.pool)
        .await?;
        if !expired {
            return Ok(Vec::new());
        }

        let mut w = self.write().await?;
        let now_s = format_timestamp(now());
        let expired: Vec<(String, String, Option<String>, i32, i32)> = sqlx::query_as(
            "select id, video_id, worker_id, attempts, max_attempts
               from download_jobs
              where status = 'running' and lease_expires_at < ?1
              order by lease_expires_at
              limit ?2",
        )
        .bind(&now_s)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&mut *w.tx)
        .await?;
        if expired.is_empty() {
            w.commit().await?;
            return Ok(Vec::new());
        }
        let mut jobs = Vec::with_capacity(expired.len());
        let mut videos = Vec::with_capacity(expired.len());
        let mut out = Vec::with_capacity(expired.len());
        for (id, video_id, worker_id, attempts, max_attempts) in expired {
            let failed = attempts >= max_attempts;
            let error = format!(
                "lease expired: worker {} stopped renewing it during attempt {attempts} of \
                 {max_attempts}",
                worker_id.as_deref().unwrap_or("?")
            );
            jobs.push(json!({"id": id, "failed": failed, "error": error}));
            videos.push(json!({
                "id": video_id,
                "status": if failed { "failed" } else { "pending" },
                "error": error,
                "attempts": attempts,
            }));
            out.push(Rescued {
                job_id: parse_uuid(&id)?,
                requeued: !failed,
                worker_id,
            });
        }
        sqlx::query(
            "update download_jobs as j
                set status           = case when x.failed then 'failed' else 'pending' end,
                    worker_id        = case when x.failed then j.worker_id end,
                    finished_at      = case when x.failed then ?1 end,
                    scheduled_at     = ?1,
                    lease_id         = null,
                    lease_expires_at = null,
                    last_error       = x.error,
                    last_error_code  = 'lease-expired',
                    last_error_class = 'transient',
                    updated_at       = ?1
               from (select value ->> 'id' as id, value ->> 'failed' as failed,
                            value ->> 'error' as error
                       from json_each(?2)) as x
              where j.id = x.id",
        )
        .bind(&now_s)
        .bind(Value::Array(jobs).to_string())
        .execute(&mut *w.tx)
        .await?;
        sqlx::query(
            "update videos as v
                set status            = x.status,
                    last_error        = x.error,
                    attempts          = x.attempts,
                    in_progress_by    = null,
                    in_progress_at    = null,
                    download_progress = null,
                    updated_at        = ?1
               from (select value ->> 'id' as id, value ->> 'status' as status,
                            value ->> 'error' as error, value ->> 'attempts' as attempts
                       from json_each(?2)) as x
              where v.id = x.id",
        )
        .bind(&now_s)
        .bind(Value::Array(videos).to_string())
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(out)
    }

    async fn progress_tx(
        &self,
        worker_id: &str,
        lease: &Lease,
        done: i64,
        total: Option<i64>,
    ) -> Result<bool, sqlx::Error> {
        let mut w = self.write().await?;
        let now_s = format_timestamp(now());
        let video_id: Option<(String,)> = sqlx::query_as(
            "update download_jobs
                set progress_bytes = ?1,
                    progress_total = ?2,
                    progress_at    = ?3
              where id = ?4 and lease_id = ?5 and worker_id = ?6 and status = 'running'
             returning video_id",
        )
        .bind(done)
        .bind(total)
        .bind(&now_s)
        .bind(lease.job_id.hyphenated())
        .bind(lease.lease_id.hyphenated())
        .bind(worker_id)
        .fetch_optional(&mut *w.tx)
        .await?;
        if let (Some((video_id,)), Some(total)) = (&video_id, total.filter(|t| *t > 0)) {
            // floor(done * 100 / total), held below 100 until the job completes.
            let percent = (i128::from(done) * 100 / i128::from(total)).clamp(0, 99) as i64;
            sqlx::query("update videos set download_progress = ?1 where id = ?2")
                .bind(percent)
                .bind(video_id)
                .execute(&mut *w.tx)
                .await?;
        }
        w.commit().await?;
        Ok(video_id.is_some())
    }

    async fn enqueue_tx(
        &self,
        req: &EnqueueRequest,
        url: Option<&str>,
        douyin_id: Option<&str>,
    ) -> Result<EnqueueResult, sqlx::Error> {
        // By id; else by Douyin id, then by link.
        let douyin_id = match req.video_id {
            Some(_) => None,
            None => douyin_id
                .map(str::to_owned)
                .or_else(|| url.and_then(douyin_id_from_url)),
        };
        let url = if req.video_id.is_some() { None } else { url };

        // The write transaction serialises enqueues of the same video, as the advisory lock
        // does in PostgreSQL.
        let mut w = self.write().await?;
        let now_s = format_timestamp(now());
        let found: Option<EnqueueVideo> = sqlx::query_as(
            "select v.id, v.status, v.object_key,
                    coalesce(v.marked_for_deletion, 0) <> 0,
                    -- download_job_default_priority
                    (case when coalesce(v.surge_detected, 0) then 1000000 else 0 end)
                      + cast(max(min(round(coalesce(v.viral_momentum, 0)), 999999), 0)
                             as integer),
                    (select j.id from download_jobs j
                      where j.video_id = v.id and j.status in ('pending', 'running')
                      limit 1)
               from videos v
              where v.rowid = coalesce(
                        (select rowid from videos where id = ?1),
                        (select rowid from videos where douyin_id = ?2
                          order by created_at, rowid limit 1),
                        (select rowid from videos where video_url = ?3
                          order by created_at, rowid limit 1))",
        )
        .bind(req.video_id.map(|id| id.hyphenated()))
        .bind(douyin_id.as_deref())
        .bind(url)
        .fetch_optional(&mut *w.tx)
        .await?;

        let Some((video_id_s, status, object_key, marked, default_priority, active)) = found else {
            if let Some(video_id) = req.video_id {
                w.commit().await?;
                return Ok(EnqueueResult {
                    job_id: None,
                    video_id: Some(video_id),
                    outcome: EnqueueOutcome::NotFound,
                });
            }
            // A new video, `queued` already: its job is the only thing left to add.
            let video_id = Uuid::new_v4();
            let video_url = match (url, &douyin_id) {
                (Some(url), _) => url.to_owned(),
                (None, Some(id)) => format!("https://www.douyin.com/video/{id}"),
                (None, None) => unreachable!("enqueue checks that a url or an id is given"),
            };
            sqlx::query(
                "insert into videos (id, douyin_id, video_url, status, created_at, updated_at)
                 values (?1, ?2, ?3, 'queued', ?4, ?4)",
            )
            .bind(video_id.hyphenated())
            .bind(douyin_id.as_deref())
            .bind(&video_url)
            .bind(&now_s)
            .execute(&mut *w.tx)
            .await?;
            let job_id = insert_job(&mut w, req, video_id, 0, &now_s).await?;
            w.commit().await?;
            return Ok(EnqueueResult {
                job_id: Some(job_id),
                video_id: Some(video_id),
                outcome: EnqueueOutcome::Queued,
            });
        };

        let video_id = parse_uuid(&video_id_s)?;
        let (job_id, outcome) = if marked {
            (None, EnqueueOutcome::MarkedForDeletion)
        } else if let Some(active) = active {
            (Some(parse_uuid(&active)?), EnqueueOutcome::Duplicate)
        } else if !req.force
            && matches!(status.as_str(), "ready" | "uploaded" | "processed")
            && object_key.is_some()
        {
            (None, EnqueueOutcome::Ready)
        } else {
            let job_id = insert_job(&mut w, req, video_id, default_priority, &now_s).await?;
            sqlx::query(
                "update videos
                    set status = 'queued', last_error = null, next_attempt_at = null,
                        updated_at = ?1
                  where id = ?2 and status not in ('downloading', 'running')",
            )
            .bind(&now_s)
            .bind(&video_id_s)
            .execute(&mut *w.tx)
            .await?;
            (Some(job_id), EnqueueOutcome::Queued)
        };
        w.commit().await?;
        Ok(EnqueueResult {
            job_id,
            video_id: Some(video_id),
            outcome,
        })
    }
}

/// What enqueue reads of the video: id, status, object_key, marked_for_deletion, the default
/// priority from its ranking, and its active job.
type EnqueueVideo = (String, String, Option<String>, bool, i64, Option<String>);

/// Inserts the pending job of an enqueue; `default_priority` is the video's ranking.
async fn insert_job(
    w: &mut WriteTx<'_>,
    req: &EnqueueRequest,
    video_id: Uuid,
    default_priority: i64,
    now_s: &str,
) -> Result<Uuid, sqlx::Error> {
    let job_id = Uuid::new_v4();
    let priority = req
        .priority
        .unwrap_or_else(|| default_priority.clamp(0, i64::from(i32::MAX)) as i32);
    sqlx::query(
        "insert into download_jobs
             (id, video_id, status, payload, priority, max_attempts,
              scheduled_at, created_at, updated_at)
         values (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?6, ?6)",
    )
    .bind(job_id.hyphenated())
    .bind(video_id.hyphenated())
    .bind(req.payload.as_ref().map(Value::to_string))
    .bind(priority)
    .bind(req.max_attempts.unwrap_or(5))
    .bind(now_s)
    .execute(&mut *w.tx)
    .await?;
    Ok(job_id)
}

/// A `get_download_job` row.
fn job_from_row(r: &SqliteRow) -> Result<JobRecord, sqlx::Error> {
    Ok(JobRecord {
        id: uuid_column(r, "id")?,
        video_id: uuid_column(r, "video_id")?,
        status: r.try_get("status")?,
        worker_id: r.try_get("worker_id")?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        priority: r.try_get::<Option<i32>, _>("priority")?.unwrap_or(0),
        scheduled_at: r.try_get("scheduled_at")?,
        lease_expires_at: r.try_get("lease_expires_at")?,
        last_error: r.try_get("last_error")?,
        last_error_code: r.try_get("last_error_code")?,
        last_error_class: r.try_get("last_error_class")?,
        progress_bytes: r.try_get("progress_bytes")?,
        progress_total: r.try_get("progress_total")?,
        created_at: r.try_get("created_at")?,
        finished_at: r.try_get("finished_at")?,
        video_status: r.try_get("video_status")?,
        video_attempts: r.try_get("video_attempts")?,
        video_last_error: r.try_get("video_last_error")?,
        video_next_attempt_at: r.try_get("video_next_attempt_at")?,
        video_download_progress: r.try_get("video_download_progress")?,
        video_in_progress_by: r.try_get("video_in_progress_by")?,
        video_object_key: r.try_get("video_object_key")?,
    })
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

#[async_trait]
impl JobQueue for SqliteQueue {
    fn backend(&self) -> &'static str {
        "sqlite"
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
        items: &[Failure],
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
        let r: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
            "select count(*),
                    coalesce(sum(status = 'pending'), 0),
                    coalesce(sum(status = 'running'), 0),
                    coalesce(sum(status = 'completed'), 0),
                    coalesce(sum(status = 'failed'), 0),
                    count(distinct case when status = 'running' then worker_id end)
               from download_jobs",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(WorkerStats {
            total_jobs: r.0,
            pending_jobs: r.1,
            running_jobs: r.2,
            completed_jobs: r.3,
            failed_jobs: r.4,
            active_workers: r.5,
        })
    }

    async fn job(&self, id: Uuid) -> Result<Option<JobRecord>, QueueError> {
        let row = sqlx::query(
            "select j.id, j.video_id, j.status, j.worker_id, j.attempts, j.max_attempts,
                    j.priority, j.scheduled_at, j.lease_expires_at, j.last_error,
                    j.last_error_code, j.last_error_class, j.progress_bytes, j.progress_total,
                    j.created_at, j.finished_at,
                    v.status as video_status, v.attempts as video_attempts,
                    v.last_error as video_last_error, v.next_attempt_at as video_next_attempt_at,
                    v.download_progress as video_download_progress,
                    v.in_progress_by as video_in_progress_by,
                    v.object_key as video_object_key
               from download_jobs j
               join videos v on v.id = j.video_id
              where j.id = ?1",
        )
        .bind(id.hyphenated())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|r| job_from_row(&r).map_err(db_error)).transpose()
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
        subscribers.push(Subscriber { signal, shutdown });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;

    use super::*;
    use crate::queue::StoredObject;
    use crate::queue::VideoUpdate;

    const LEASE: Duration = Duration::from_secs(60);

    async fn open_temp() -> (tempfile::TempDir, SqliteQueue) {
        let dir = tempfile::tempdir().expect("temp dir");
        // A folder that does not exist yet: open creates it.
        let q = SqliteQueue::open(&dir.path().join("data/queue.db"))
            .await
            .expect("open sqlite queue");
        (dir, q)
    }

    async fn enqueue(q: &SqliteQueue, req: EnqueueRequest) -> EnqueueResult {
        q.enqueue(&req).await.expect("enqueue")
    }

    async fn enqueue_url(q: &SqliteQueue, url: &str) -> EnqueueResult {
        enqueue(
            q,
            EnqueueRequest {
                url: Some(url.into()),
                ..Default::default()
            },
        )
        .await
    }

    /// A link for a new video, numbered `n`.
    fn link(n: u64) -> String {
        format!(
            "https://www.douyin.com/video/{}",
            7_300_000_000_000_000_000 + n
        )
    }

    async fn video(q: &SqliteQueue, id: Uuid) -> SqliteRow {
        sqlx::query("select * from videos where id = ?1")
            .bind(id.hyphenated())
            .fetch_one(q.pool())
            .await
            .expect("video row")
    }

    async fn job_row(q: &SqliteQueue, id: Uuid) -> SqliteRow {
        sqlx::query("select * from download_jobs where id = ?1")
            .bind(id.hyphenated())
            .fetch_one(q.pool())
            .await
            .expect("job row")
    }

    async fn exec(q: &SqliteQueue, sql: &'static str, id: Uuid, text: Option<String>) {
        sqlx::query(sql)
            .bind(id.hyphenated())
            .bind(text)
            .execute(q.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Moves a job's due time `secs` seconds from now.
    async fn set_due(q: &SqliteQueue, job_id: Uuid, secs: i64) {
        let at = format_timestamp(Utc::now() + chrono::Duration::seconds(secs));
        exec(
            q,
            "update download_jobs set scheduled_at = ?2 where id = ?1",
            job_id,
            Some(at),
        )
        .await;
    }

    /// Makes a running job's lease run out a second ago.
    async fn expire(q: &SqliteQueue, job_id: Uuid) {
        let at = format_timestamp(Utc::now() - chrono::Duration::seconds(1));
        exec(
            q,
            "update download_jobs set lease_expires_at = ?2 where id = ?1",
            job_id,
            Some(at),
        )
        .await;
    }

    fn completion(lease: Lease, key: &str) -> Completion {
        Completion {
            lease,
            stored: StoredObject {
                storage_provider: "local".into(),
                bucket: "videos".into(),
                object_key: key.into(),
                storage_etag: Some("etag-1".into()),
                filesize: 12_345,
                mime_type: "video/mp4".into(),
                storage_metadata: json!({"sha256": "abc"}),
            },
            video: VideoUpdate::default(),
        }
    }

    fn failure(lease: Lease, class: ErrorClass, retry_in: Option<Duration>) -> Failure {
        Failure {
            lease,
            error: "boom".into(),
            code: "download-timeout".into(),
            class,
            retry_in,
        }
    }

    async fn claim_one(q: &SqliteQueue, worker: &str) -> ClaimedJob {
        let mut jobs = q.claim(worker, 1, LEASE).await.expect("claim");
        assert_eq!(jobs.len(), 1, "expected one claimable job");
        jobs.remove(0)
    }

    fn text(row: &SqliteRow, column: &str) -> Option<String> {
        row.try_get(column).unwrap()
    }

    fn int(row: &SqliteRow, column: &str) -> Option<i64> {
        row.try_get(column).unwrap()
    }

    #[test]
    fn douyin_ids_from_links() {
        let id = "7312345678901234567";
        for url in [
            id.to_owned(),
            format!("  {id}\n"),
            format!("https://www.douyin.com/video/{id}"),
            format!("https://www.douyin.com/video/{id}?previous_page=app_code_link"),
            format!("https://www.iesdouyin.com/share/video/{id}/?region=CN"),
            format!("https://www.douyin.com/note/{id}"),
            format!("https://www.douyin.com/slides/{id}"),
            format!("https://www.douyin.com/discover?modal_id={id}"),
            format!("https://www.douyin.com/user/MS4w?a=1&modal_id={id}&b=2"),
            format!("https://www.douyin.com/search/x?vid={id}"),
            format!("https://www.douyin.com/search/x?q=1&vid={id}"),
            // a first marker without enough digits is skipped
            format!("https://www.douyin.com/video/123/note/{id}"),
        ] {
            assert_eq!(douyin_id_from_url(&url).as_deref(), Some(id), "{url:?}");
        }
        // at most 25 digits are taken, as by the regex
        assert_eq!(
            douyin_id_from_url(&format!("/video/{}", "1".repeat(30))).as_deref(),
            Some("1".repeat(25).as_str())
        );
        assert_eq!(douyin_id_from_url("12345678").as_deref(), Some("12345678"));
        for url in [
            "https://v.douyin.com/iRNBho5m/",
            "1234567",
            &"1".repeat(26),
            "https://www.douyin.com/video/1234567",
            "https://www.douyin.com/Video/7312345678901234567",
            "https://www.douyin.com/x#modal_id=7312345678901234567",
            "https://www.douyin.com/x?avid=7312345678901234567",
            "",
        ] {
            assert_eq!(douyin_id_from_url(url), None, "{url:?}");
        }
    }

    #[test]
    fn timestamps_have_one_form() {
        let t = DateTime::parse_from_rfc3339("2025-01-31T08:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_timestamp(t), "2025-01-31T08:00:00.123Z");
        let t = DateTime::parse_from_rfc3339("2025-01-31T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_timestamp(t), "2025-01-31T08:00:00.000Z");
    }

    #[tokio::test]
    async fn enqueue_outcomes() {
        let (_dir, q) = open_temp().await;

        // by link: a new video row with the id from the link
        let url = "https://www.douyin.com/video/7312345678901234567?from=share";
        let r = enqueue_url(&q, url).await;
        assert_eq!(r.outcome, EnqueueOutcome::Queued);
        let video_id = r.video_id.unwrap();
        let v = video(&q, video_id).await;
        assert_eq!(
            text(&v, "douyin_id").as_deref(),
            Some("7312345678901234567")
        );
        assert_eq!(text(&v, "video_url").as_deref(), Some(url));
        assert_eq!(text(&v, "status").as_deref(), Some("queued"));
        let j = job_row(&q, r.job_id.unwrap()).await;
        assert_eq!(text(&j, "status").as_deref(), Some("pending"));
        assert_eq!(int(&j, "max_attempts"), Some(5));
        assert_eq!(int(&j, "priority"), Some(0));
        assert_eq!(int(&j, "attempts"), Some(0));

        // the same video by id or by another link form: the active job is reported
        let again = enqueue(
            &q,
            EnqueueRequest {
                douyin_id: Some(" 7312345678901234567 ".into()),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(again.outcome, EnqueueOutcome::Duplicate);
        assert_eq!(again.job_id, r.job_id);
        assert_eq!(again.video_id, Some(video_id));
        let again = enqueue_url(
            &q,
            "https://www.douyin.com/discover?modal_id=7312345678901234567",
        )
        .await;
        assert_eq!(
            (again.outcome, again.job_id),
            (EnqueueOutcome::Duplicate, r.job_id)
        );
        let again = enqueue(
            &q,
            EnqueueRequest {
                video_id: Some(video_id),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            (again.outcome, again.job_id),
            (EnqueueOutcome::Duplicate, r.job_id)
        );

        // by Douyin id only: the link is made up
        let r2 = enqueue(
            &q,
            EnqueueRequest {
                douyin_id: Some("7399999999999999999".into()),
                payload: Some(json!({"url": "x"})),
                priority: Some(7),
                max_attempts: Some(2),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(r2.outcome, EnqueueOutcome::Queued);
        let v = video(&q, r2.video_id.unwrap()).await;
        assert_eq!(
            text(&v, "video_url").as_deref(),
            Some("https://www.douyin.com/video/7399999999999999999")
        );
        let j = job_row(&q, r2.job_id.unwrap()).await;
        assert_eq!(int(&j, "priority"), Some(7));
        assert_eq!(int(&j, "max_attempts"), Some(2));
        assert_eq!(text(&j, "payload").as_deref(), Some(r#"{"url":"x"}"#));

        // a short link: no id, found again by the link
        let short = enqueue_url(&q, " https://v.douyin.com/iRNBho5m/ ").await;
        assert_eq!(short.outcome, EnqueueOutcome::Queued);
        let v = video(&q, short.video_id.unwrap()).await;
        assert_eq!(text(&v, "douyin_id"), None);
        assert_eq!(
            text(&v, "video_url").as_deref(),
            Some("https://v.douyin.com/iRNBho5m/")
        );
        let again = enqueue_url(&q, "https://v.douyin.com/iRNBho5m/").await;
        assert_eq!(
            (again.outcome, again.job_id),
            (EnqueueOutcome::Duplicate, short.job_id)
        );

        // an unknown video id
        let missing = Uuid::new_v4();
        let r = enqueue(
            &q,
            EnqueueRequest {
                video_id: Some(missing),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            (r.outcome, r.job_id, r.video_id),
            (EnqueueOutcome::NotFound, None, Some(missing))
        );

        // nothing to go by
        let err = q
            .enqueue(&EnqueueRequest {
                url: Some("  ".into()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, QueueError::Rejected(_)), "{err}");

        // marked for deletion: never queued
        let doomed = enqueue_url(&q, &link(1)).await;
        let job = claim_one(&q, "w1").await; // the oldest due job of priority 7 first
        assert_eq!(job.id(), r2.job_id.unwrap());
        q.fail("w1", &[failure(job.lease, ErrorClass::Permanent, None)])
            .await
            .unwrap();
        exec(
            &q,
            "update videos set marked_for_deletion = 1 where id = ?1 or id = ?2",
            r2.video_id.unwrap(),
            Some(doomed.video_id.unwrap().to_string()),
        )
        .await;
        let r = enqueue(
            &q,
            EnqueueRequest {
                video_id: r2.video_id,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            (r.outcome, r.job_id),
            (EnqueueOutcome::MarkedForDeletion, None)
        );
        // ... and a claimed job shows the mark to the worker
        exec(
            &q,
            "update download_jobs set priority = 100 where id = ?1",
            doomed.job_id.unwrap(),
            None,
        )
        .await;
        let job = claim_one(&q, "w1").await;
        assert_eq!(job.id(), doomed.job_id.unwrap());
        assert!(job.video.marked_for_deletion);

        // stored already: ready, unless forced
        let stored = enqueue_url(&q, &link(2)).await;
        exec(
            &q,
            "update download_jobs set priority = 100 where id = ?1",
            stored.job_id.unwrap(),
            None,
        )
        .await;
        let job = claim_one(&q, "w1").await;
        assert_eq!(job.id(), stored.job_id.unwrap());
        let done = q.complete("w1", &[completion(job.lease, "k/2.mp4")]).await;
        assert_eq!(done.unwrap(), vec![(job.id(), CompleteOutcome::Completed)]);
        let r = enqueue_url(&q, &link(2)).await;
        assert_eq!((r.outcome, r.job_id), (EnqueueOutcome::Ready, None));
        assert_eq!(r.video_id, stored.video_id);
        let forced = enqueue(
            &q,
            EnqueueRequest {
                url: Some(link(2)),
                force: true,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(forced.outcome, EnqueueOutcome::Queued);
        assert_eq!(forced.video_id, stored.video_id);
        // queued again: the video says so
        let v = video(&q, stored.video_id.unwrap()).await;
        assert_eq!(text(&v, "status").as_deref(), Some("queued"));
    }

    #[tokio::test]
    async fn enqueue_leaves_a_downloading_video_alone_and_ranks_by_virality() {
        let (_dir, q) = open_temp().await;
        let surging = Uuid::new_v4();
        let viral = Uuid::new_v4();
        let busy = Uuid::new_v4();
        for (id, surge, momentum, status) in [
            (surging, 1, 12.5, "new"),
            (viral, 0, 2_000_000.0, "new"),
            (busy, 0, -40.0, "downloading"),
        ] {
            sqlx::query(
                "insert into videos
                     (id, douyin_id, video_url, surge_detected, viral_momentum, status)
                 values (?1, ?2, 'https://www.douyin.com/video/x', ?3, ?4, ?5)",
            )
            .bind(id.hyphenated())
            .bind(id.simple().to_string())
            .bind(surge)
            .bind(momentum)
            .bind(status)
            .execute(q.pool())
            .await
            .unwrap();
        }
        let mut priorities = Vec::new();
        for id in [surging, viral, busy] {
            let r = enqueue(
                &q,
                EnqueueRequest {
                    video_id: Some(id),
                    ..Default::default()
                },
            )
            .await;
            assert_eq!(r.outcome, EnqueueOutcome::Queued);
            priorities.push(int(&job_row(&q, r.job_id.unwrap()).await, "priority").unwrap());
        }
        // surge + round(12.5) (half away from zero, as PostgreSQL), capped momentum, floor 0
        assert_eq!(priorities, vec![1_000_013, 999_999, 0]);
        assert_eq!(
            text(&video(&q, busy).await, "status").as_deref(),
            Some("downloading")
        );
        assert_eq!(
            text(&video(&q, viral).await, "status").as_deref(),
            Some("queued")
        );
    }

    #[tokio::test]
    async fn claim_order_is_priority_then_due_time_then_age() {
        let (_dir, q) = open_temp().await;
        let mut ids = Vec::new();
        for (n, priority) in [(1, 0), (2, 5), (3, 0), (4, 5), (5, 0)] {
            let r = enqueue(
                &q,
                EnqueueRequest {
                    url: Some(link(n)),
                    priority: Some(priority),
                    ..Default::default()
                },
            )
            .await;
            ids.push(r.job_id.unwrap());
        }
        // due times: job 3 has been due longest, job 4 before job 2
        set_due(&q, ids[2], -30).await;
        set_due(&q, ids[3], -20).await;
        let claimed = q.claim("w1", 10, LEASE).await.unwrap();
        let order: Vec<Uuid> = claimed.iter().map(ClaimedJob::id).collect();
        // priority 5 (job 4 due before job 2), then priority 0 (job 3 due first, then 1, 5
        // by due time, which equals their age here)
        assert_eq!(order, vec![ids[3], ids[1], ids[2], ids[0], ids[4]]);
        for c in &claimed {
            assert_eq!(c.attempts, 1);
            assert_eq!(c.max_attempts, 5);
            assert!(c.lease_expires_at > Utc::now() + chrono::Duration::seconds(55));
            assert!(
                c.video
                    .video_url
                    .as_deref()
                    .unwrap()
                    .starts_with("https://")
            );
        }
        assert_eq!(claimed[0].priority, 5);
    }

    #[tokio::test]
    async fn claim_takes_only_due_jobs_up_to_the_limit_and_marks_both_rows() {
        let (_dir, q) = open_temp().await;
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(enqueue_url(&q, &link(n)).await.job_id.unwrap());
        }
        set_due(&q, ids[4], 3600).await;
        assert!(q.claim("w1", 0, LEASE).await.unwrap().is_empty());
        assert!(q.claim("", 1, LEASE).await.is_err());

        let first = q.claim("w1", 3, LEASE).await.unwrap();
        assert_eq!(first.len(), 3);
        let second = q.claim("w2", 3, LEASE).await.unwrap();
        assert_eq!(second.len(), 1, "the job due in an hour is not claimed");
        assert!(q.claim("w3", 3, LEASE).await.unwrap().is_empty());
        let claimed: HashSet<Uuid> = first.iter().chain(&second).map(ClaimedJob::id).collect();
        assert_eq!(claimed, ids[..4].iter().copied().collect());

        let c = &second[0];
        let j = job_row(&q, c.id()).await;
        assert_eq!(text(&j, "status").as_deref(), Some("running"));
        assert_eq!(text(&j, "worker_id").as_deref(), Some("w2"));
        assert_eq!(int(&j, "attempts"), Some(1));
        assert_eq!(
            text(&j, "lease_id"),
            Some(c.lease.lease_id.hyphenated().to_string())
        );
        assert_eq!(c.lease.lease_id.get_version_num(), 4);
        assert_eq!(
            text(&j, "lease_expires_at"),
            Some(format_timestamp(c.lease_expires_at))
        );
        assert!(text(&j, "started_at").is_some());
        assert!(text(&j, "heartbeat_at").is_some());
        let v = video(&q, c.video_id).await;
        assert_eq!(text(&v, "status").as_deref(), Some("downloading"));
        assert_eq!(text(&v, "in_progress_by").as_deref(), Some("w2"));
        assert_eq!(int(&v, "attempts"), Some(1));
        assert_eq!(int(&v, "download_progress"), Some(0));
        assert!(text(&v, "download_started_at").is_some());
        assert!(text(&v, "last_attempt_at").is_some());

        let stats = q.stats().await.unwrap();
        assert_eq!(
            stats,
            WorkerStats {
                total_jobs: 5,
                pending_jobs: 1,
                running_jobs: 4,
                completed_jobs: 0,
                failed_jobs: 0,
                active_workers: 2,
            }
        );
    }

    #[tokio::test]
    async fn heartbeat_renews_and_every_write_is_fenced_after_a_rescue() {
        let (_dir, q) = open_temp().await;
        let r = enqueue_url(&q, &link(1)).await;
        let first = claim_one(&q, "w1").await;
        let lease = first.lease;

        // renew: a later expiry; a foreign worker or lease renews nothing
        let renewed = q
            .heartbeat("w1", &[lease, lease], Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(renewed, vec![lease]);
        let expires: DateTime<Utc> = job_row(&q, lease.job_id)
            .await
            .try_get("lease_expires_at")
            .unwrap();
        assert!(expires > first.lease_expires_at + chrono::Duration::seconds(500));
        assert!(q.heartbeat("w2", &[lease], LEASE).await.unwrap().is_empty());
        let forged = Lease {
            job_id: lease.job_id,
            lease_id: Uuid::new_v4(),
        };
        assert!(
            q.heartbeat("w1", &[forged], LEASE)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(q.heartbeat("w1", &[], LEASE).await.unwrap().is_empty());

        // the lease runs out and another worker takes the job over
        expire(&q, lease.job_id).await;
        let rescued = q.rescue(10).await.unwrap();
        assert_eq!(
            rescued,
            vec![Rescued {
                job_id: lease.job_id,
                requeued: true,
                worker_id: Some("w1".into()),
            }]
        );
        let j = job_row(&q, lease.job_id).await;
        assert_eq!(text(&j, "status").as_deref(), Some("pending"));
        assert_eq!(text(&j, "worker_id"), None);
        assert_eq!(text(&j, "lease_id"), None);
        assert_eq!(
            text(&j, "last_error").as_deref(),
            Some("lease expired: worker w1 stopped renewing it during attempt 1 of 5")
        );
        assert_eq!(
            text(&j, "last_error_code").as_deref(),
            Some("lease-expired")
        );
        assert_eq!(text(&j, "last_error_class").as_deref(), Some("transient"));
        let v = video(&q, r.video_id.unwrap()).await;
        assert_eq!(text(&v, "status").as_deref(), Some("pending"));
        assert_eq!(text(&v, "in_progress_by"), None);

        // the old holder has lost it, before and after the takeover
        assert!(q.heartbeat("w1", &[lease], LEASE).await.unwrap().is_empty());
        let second = claim_one(&q, "w2").await;
        assert_eq!(second.id(), lease.job_id);
        assert_eq!(second.attempts, 2);
        assert_ne!(second.lease.lease_id, lease.lease_id);
        assert!(q.heartbeat("w1", &[lease], LEASE).await.unwrap().is_empty());
        assert!(!q.progress("w1", &lease, 10, Some(20)).await.unwrap());
        assert_eq!(
            q.complete("w1", &[completion(lease, "k")]).await.unwrap(),
            vec![(lease.job_id, CompleteOutcome::LeaseLost)]
        );
        assert_eq!(
            q.fail("w1", &[failure(lease, ErrorClass::Transient, Some(LEASE))])
                .await
                .unwrap(),
            vec![(lease.job_id, FailOutcome::LeaseLost)]
        );
        assert_eq!(
            q.release("w1", &[lease]).await.unwrap(),
            vec![(lease.job_id, ReleaseOutcome::LeaseLost)]
        );
        // the new holder is untouched by all that
        let j = job_row(&q, lease.job_id).await;
        assert_eq!(text(&j, "status").as_deref(), Some("running"));
        assert_eq!(text(&j, "worker_id").as_deref(), Some("w2"));
        assert_eq!(
            q.heartbeat("w2", &[second.lease], LEASE).await.unwrap(),
            vec![second.lease]
        );
    }

    #[tokio::test]
    async fn a_short_lease_runs_out_by_itself() {
        let (_dir, q) = open_temp().await;
        enqueue_url(&q, &link(1)).await;
        let job = q
            .claim("w1", 1, Duration::from_millis(200))
            .await
            .unwrap()
            .remove(0);
        // at least one second, as in PostgreSQL
        assert!(job.lease_expires_at >= Utc::now() + chrono::Duration::milliseconds(700));
        assert!(q.rescue(10).await.unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let rescued = q.rescue(10).await.unwrap();
        assert_eq!(rescued.len(), 1);
        assert!(rescued[0].requeued);
    }

    #[tokio::test]
    async fn rescue_fails_a_job_out_of_attempts_and_respects_the_limit() {
        let (_dir, q) = open_temp().await;
        let last = enqueue(
            &q,
            EnqueueRequest {
                url: Some(link(1)),
                max_attempts: Some(1),
                priority: Some(1),
                ..Default::default()
            },
        )
        .await;
        let other = enqueue_url(&q, &link(2)).await;
        let a = claim_one(&q, "w1").await;
        let b = claim_one(&q, "w2").await;
        assert_eq!(
            (a.id(), b.id()),
            (last.job_id.unwrap(), other.job_id.unwrap())
        );
        expire(&q, a.id()).await;
        expire(&q, b.id()).await;
        // the oldest lease first; a second call takes the rest
        exec(
            &q,
            "update download_jobs set lease_expires_at = ?2 where id = ?1",
            a.id(),
            Some(format_timestamp(Utc::now() - chrono::Duration::seconds(60))),
        )
        .await;
        let first = q.rescue(1).await.unwrap();
        assert_eq!(
            first,
            vec![Rescued {
                job_id: a.id(),
                requeued: false,
                worker_id: Some("w1".into()),
            }]
        );
        let j = job_row(&q, a.id()).await;
        assert_eq!(text(&j, "status").as_deref(), Some("failed"));
        assert_eq!(text(&j, "worker_id").as_deref(), Some("w1"));
        assert!(text(&j, "finished_at").is_some());
        assert_eq!(
            text(&j, "last_error").as_deref(),
            Some("lease expired: worker w1 stopped renewing it during attempt 1 of 1")
        );
        let v = video(&q, a.video_id).await;
        assert_eq!(text(&v, "status").as_deref(), Some("failed"));
        assert_eq!(int(&v, "attempts"), Some(1));
        assert!(text(&v, "last_error").unwrap().starts_with("lease expired"));

        let second = q.rescue(0).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].job_id, b.id());
        assert!(second[0].requeued);
        assert!(q.rescue(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn complete_fills_the_video_row() {
        let (_dir, q) = open_temp().await;
        // a video that already has a title but no thumbnail and an empty douyin_id
        let video_id = Uuid::new_v4();
        sqlx::query(
            "insert into videos (id, douyin_id, video_url, title, thumbnail_url, last_error)
             values (?1, '', 'https://v.douyin.com/abc/', 'kept title', '', 'old error')",
        )
        .bind(video_id.hyphenated())
        .execute(q.pool())
        .await
        .unwrap();
        enqueue(
            &q,
            EnqueueRequest {
                video_id: Some(video_id),
                ..Default::default()
            },
        )
        .await;
        let job = claim_one(&q, "w1").await;
        assert_eq!(job.video.title.as_deref(), Some("kept title"));
        assert!(q.progress("w1", &job.lease, 10, Some(100)).await.unwrap());

        let mut c = completion(job.lease, "videos/7312345678901234567.mp4");
        c.video = VideoUpdate {
            douyin_id: Some("7312345678901234567".into()),
            title: Some("new title".into()),
            thumbnail_url: Some("https://p3.douyinpic.com/cover.jpeg".into()),
            video_url_direct: Some("https://v26.douyinvod.com/x.mp4".into()),
            video_url_meta: Some(json!({"expires_at": 1})),
        };
        // an empty bucket or key is refused, and nothing is recorded
        let mut bad = c.clone();
        bad.stored.object_key.clear();
        let err = q.complete("w1", &[c.clone(), bad]).await.unwrap_err();
        assert!(matches!(err, QueueError::Rejected(_)), "{err}");
        assert_eq!(
            text(&job_row(&q, job.id()).await, "status").as_deref(),
            Some("running")
        );

        let out = q.complete("w1", &[c.clone(), c.clone()]).await.unwrap();
        assert_eq!(
            out,
            vec![
                (job.id(), CompleteOutcome::Completed),
                (job.id(), CompleteOutcome::Completed)
            ]
        );
        let j = job_row(&q, job.id()).await;
        assert_eq!(text(&j, "status").as_deref(), Some("completed"));
        assert_eq!(text(&j, "lease_id"), None);
        assert_eq!(text(&j, "lease_expires_at"), None);
        assert_eq!(text(&j, "worker_id").as_deref(), Some("w1"));
        assert!(text(&j, "finished_at").is_some());
        assert_eq!(int(&j, "progress_bytes"), Some(12_345));
        assert_eq!(int(&j, "progress_total"), Some(12_345));

        let v = video(&q, video_id).await;
        assert_eq!(text(&v, "status").as_deref(), Some("ready"));
        assert_eq!(text(&v, "bucket").as_deref(), Some("videos"));
        assert_eq!(
            text(&v, "object_key").as_deref(),
            Some("videos/7312345678901234567.mp4")
        );
        assert_eq!(text(&v, "storage_etag").as_deref(), Some("etag-1"));
        assert_eq!(int(&v, "filesize"), Some(12_345));
        assert_eq!(text(&v, "mime_type").as_deref(), Some("video/mp4"));
        assert_eq!(text(&v, "storage_provider").as_deref(), Some("local"));
        assert_eq!(
            text(&v, "storage_metadata").as_deref(),
            Some(r#"{"sha256":"abc"}"#)
        );
        assert!(text(&v, "downloaded_at").is_some());
        assert_eq!(text(&v, "in_progress_by"), None);
        assert_eq!(text(&v, "in_progress_at"), None);
        assert_eq!(text(&v, "last_error"), None);
        assert_eq!(int(&v, "download_progress"), Some(100));
        assert_eq!(text(&v, "next_attempt_at"), None);
        // filled only where empty
        assert_eq!(
            text(&v, "douyin_id").as_deref(),
            Some("7312345678901234567")
        );
        assert_eq!(text(&v, "title").as_deref(), Some("kept title"));
        assert_eq!(
            text(&v, "thumbnail_url").as_deref(),
            Some("https://p3.douyinpic.com/cover.jpeg")
        );
        // replaced when given
        assert_eq!(
            text(&v, "video_url_direct").as_deref(),
            Some("https://v26.douyinvod.com/x.mp4")
        );
        assert_eq!(
            text(&v, "video_url_meta").as_deref(),
            Some(r#"{"expires_at":1}"#)
        );

        // a second completion without direct URL keeps the cached one
        let r = enqueue(
            &q,
            EnqueueRequest {
                video_id: Some(video_id),
                force: true,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(r.outcome, EnqueueOutcome::Queued);
        let job = claim_one(&q, "w1").await;
        assert_eq!(
            job.video.video_url_meta,
            Some(json!({"expires_at": 1})),
            "the claim reads the cached direct URL"
        );
        let mut c = completion(job.lease, "k2");
        c.video.title = Some("ignored".into());
        q.complete("w1", &[c]).await.unwrap();
        let v = video(&q, video_id).await;
        assert_eq!(text(&v, "title").as_deref(), Some("kept title"));
        assert_eq!(text(&v, "object_key").as_deref(), Some("k2"));
        assert_eq!(
            text(&v, "video_url_direct").as_deref(),
            Some("https://v26.douyinvod.com/x.mp4")
        );
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_later() {
        let (_dir, q) = open_temp().await;
        let r = enqueue_url(&q, &link(1)).await;
        let job = claim_one(&q, "w1").await;
        let before = Utc::now();
        let out = q
            .fail(
                "w1",
                &[failure(
                    job.lease,
                    ErrorClass::Drift,
                    Some(Duration::from_millis(30_500)),
                )],
            )
            .await
            .unwrap();
        let FailOutcome::RetryScheduled(due) = out[0].1 else {
            panic!("expected a retry, got {out:?}");
        };
        assert!(due >= before + chrono::Duration::milliseconds(30_400));
        assert!(due <= Utc::now() + chrono::Duration::milliseconds(30_600));

        let j = job_row(&q, job.id()).await;
        assert_eq!(text(&j, "status").as_deref(), Some("pending"));
        assert_eq!(text(&j, "worker_id"), None);
        assert_eq!(text(&j, "lease_id"), None);
        assert_eq!(text(&j, "finished_at"), None);
        assert_eq!(text(&j, "scheduled_at"), Some(format_timestamp(due)));
        assert_eq!(int(&j, "attempts"), Some(1));
        assert_eq!(text(&j, "last_error").as_deref(), Some("boom"));
        assert_eq!(
            text(&j, "last_error_code").as_deref(),
            Some("download-timeout")
        );
        assert_eq!(text(&j, "last_error_class").as_deref(), Some("drift"));
        let v = video(&q, r.video_id.unwrap()).await;
        assert_eq!(text(&v, "status").as_deref(), Some("pending"));
        assert_eq!(text(&v, "last_error").as_deref(), Some("boom"));
        assert_eq!(int(&v, "attempts"), Some(1));
        assert_eq!(text(&v, "in_progress_by"), None);
        assert_eq!(int(&v, "download_progress"), None);
        assert_eq!(text(&v, "next_attempt_at"), Some(format_timestamp(due)));

        // the same through the inspection call
        let record = q.job(job.id()).await.unwrap().expect("job record");
        assert_eq!(record.id, job.id());
        assert_eq!(record.video_id, r.video_id.unwrap());
        assert_eq!(record.status, "pending");
        assert_eq!(record.worker_id, None);
        assert_eq!(
            (record.attempts, record.max_attempts, record.priority),
            (1, 5, 0)
        );
        assert_eq!(record.scheduled_at, due);
        assert_eq!(record.lease_expires_at, None);
        assert_eq!(record.last_error.as_deref(), Some("boom"));
        assert_eq!(record.last_error_code.as_deref(), Some("download-timeout"));
        assert_eq!(record.last_error_class.as_deref(), Some("drift"));
        assert_eq!(record.finished_at, None);
        assert_eq!(record.video_status, "pending");
        assert_eq!(record.video_attempts, 1);
        assert_eq!(record.video_last_error.as_deref(), Some("boom"));
        assert_eq!(record.video_next_attempt_at, Some(due));
        assert_eq!(record.video_download_progress, None);
        assert_eq!(record.video_in_progress_by, None);
        assert_eq!(record.video_object_key, None);
        assert_eq!(q.job(Uuid::new_v4()).await.unwrap(), None);

        // not due yet; once due, claimed for attempt 2, and the video's retry time clears
        assert!(q.claim("w1", 5, LEASE).await.unwrap().is_empty());
        set_due(&q, job.id(), -1).await;
        let again = claim_one(&q, "w1").await;
        assert_eq!(again.attempts, 2);
        let v = video(&q, r.video_id.unwrap()).await;
        assert_eq!(text(&v, "next_attempt_at"), None);

        // an empty message is recorded as "unknown error"
        let mut f = failure(again.lease, ErrorClass::Transient, Some(Duration::ZERO));
        f.error.clear();
        assert!(matches!(
            q.fail("w1", &[f]).await.unwrap()[0].1,
            FailOutcome::RetryScheduled(_)
        ));
        let j = job_row(&q, job.id()).await;
        assert_eq!(text(&j, "last_error").as_deref(), Some("unknown error"));
        // due at once
        assert_eq!(claim_one(&q, "w1").await.attempts, 3);
    }

    #[tokio::test]
    async fn permanent_failures_and_the_last_attempt_fail_for_good() {
        let (_dir, q) = open_temp().await;
        let a = enqueue_url(&q, &link(1)).await;
        let b = enqueue_url(&q, &link(2)).await;
        let c = enqueue(
            &q,
            EnqueueRequest {
                url: Some(link(3)),
                max_attempts: Some(1),
                ..Default::default()
            },
        )
        .await;
        let jobs = q.claim("w1", 3, LEASE).await.unwrap();
        assert_eq!(jobs.len(), 3);
        let lease_of = |id: Option<Uuid>| jobs.iter().find(|j| Some(j.id()) == id).unwrap().lease;
        let out = q
            .fail(
                "w1",
                &[
                    // permanent, even with a retry time
                    failure(lease_of(a.job_id), ErrorClass::Permanent, Some(LEASE)),
                    // no retry time
                    failure(lease_of(b.job_id), ErrorClass::Transient, None),
                    // out of attempts
                    failure(lease_of(c.job_id), ErrorClass::Transient, Some(LEASE)),
                ],
            )
            .await
            .unwrap();
        assert!(
            out.iter().all(|(_, o)| *o == FailOutcome::Failed),
            "{out:?}"
        );
        for r in [&a, &b, &c] {
            let j = job_row(&q, r.job_id.unwrap()).await;
            assert_eq!(text(&j, "status").as_deref(), Some("failed"));
            assert_eq!(text(&j, "worker_id").as_deref(), Some("w1"), "kept");
            assert!(text(&j, "finished_at").is_some());
            assert_eq!(text(&j, "lease_id"), None);
            let v = video(&q, r.video_id.unwrap()).await;
            assert_eq!(text(&v, "status").as_deref(), Some("failed"));
            assert_eq!(text(&v, "last_error").as_deref(), Some("boom"));
            assert_eq!(int(&v, "attempts"), Some(1));
            assert_eq!(text(&v, "next_attempt_at"), None);
        }
        let j = job_row(&q, a.job_id.unwrap()).await;
        assert_eq!(text(&j, "last_error_class").as_deref(), Some("permanent"));
        assert_eq!(q.stats().await.unwrap().failed_jobs, 3);
        assert!(q.claim("w1", 3, LEASE).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn release_puts_the_job_back_without_counting_the_attempt() {
        let (_dir, q) = open_temp().await;
        let r = enqueue_url(&q, &link(1)).await;
        let first = claim_one(&q, "w1").await;
        q.fail(
            "w1",
            &[failure(
                first.lease,
                ErrorClass::Transient,
                Some(Duration::ZERO),
            )],
        )
        .await
        .unwrap();
        let job = claim_one(&q, "w1").await;
        assert_eq!(job.attempts, 2);
        assert!(q.progress("w1", &job.lease, 5, Some(10)).await.unwrap());
        let out = q.release("w1", &[job.lease]).await.unwrap();
        assert_eq!(out, vec![(job.id(), ReleaseOutcome::Released)]);
        let j = job_row(&q, job.id()).await;
        assert_eq!(text(&j, "status").as_deref(), Some("pending"));
        assert_eq!(int(&j, "attempts"), Some(1));
        assert_eq!(text(&j, "worker_id"), None);
        assert_eq!(text(&j, "lease_id"), None);
        assert_eq!(int(&j, "progress_bytes"), None);
        let v = video(&q, r.video_id.unwrap()).await;
        assert_eq!(text(&v, "status").as_deref(), Some("pending"));
        assert_eq!(int(&v, "attempts"), Some(1));
        assert_eq!(int(&v, "download_progress"), None);
        assert_eq!(text(&v, "in_progress_by"), None);
        // due now: claimed again, as attempt 2 again
        assert_eq!(claim_one(&q, "w2").await.attempts, 2);

        // attempts never go below zero
        exec(
            &q,
            "update download_jobs set attempts = 0 where id = ?1",
            job.id(),
            None,
        )
        .await;
        let again = q.claim("w2", 1, LEASE).await.unwrap();
        assert!(again.is_empty(), "already running");
        let held: (String,) = sqlx::query_as("select lease_id from download_jobs where id = ?1")
            .bind(job.id().hyphenated())
            .fetch_one(q.pool())
            .await
            .unwrap();
        let lease = Lease {
            job_id: job.id(),
            lease_id: Uuid::parse_str(&held.0).unwrap(),
        };
        q.release("w2", &[lease]).await.unwrap();
        assert_eq!(int(&job_row(&q, job.id()).await, "attempts"), Some(0));
    }

    #[tokio::test]
    async fn progress_sets_a_percentage_below_one_hundred() {
        let (_dir, q) = open_temp().await;
        let r = enqueue_url(&q, &link(1)).await;
        let job = claim_one(&q, "w1").await;
        let percent = |q: SqliteQueue| async move {
            int(&video(&q, r.video_id.unwrap()).await, "download_progress")
        };

        assert!(q.progress("w1", &job.lease, 50, Some(200)).await.unwrap());
        assert_eq!(percent(q.clone()).await, Some(25));
        let j = job_row(&q, job.id()).await;
        assert_eq!(int(&j, "progress_bytes"), Some(50));
        assert_eq!(int(&j, "progress_total"), Some(200));
        assert!(text(&j, "progress_at").is_some());

        assert!(q.progress("w1", &job.lease, 199, Some(200)).await.unwrap());
        assert_eq!(percent(q.clone()).await, Some(99));
        assert!(q.progress("w1", &job.lease, 500, Some(200)).await.unwrap());
        assert_eq!(percent(q.clone()).await, Some(99));
        assert!(
            q.progress("w1", &job.lease, u64::MAX, Some(u64::MAX))
                .await
                .unwrap()
        );
        assert_eq!(percent(q.clone()).await, Some(99));

        // unknown or zero total: bytes only
        assert!(q.progress("w1", &job.lease, 1, None).await.unwrap());
        assert_eq!(percent(q.clone()).await, Some(99));
        let j = job_row(&q, job.id()).await;
        assert_eq!(
            (int(&j, "progress_bytes"), int(&j, "progress_total")),
            (Some(1), None)
        );
        assert!(q.progress("w1", &job.lease, 1, Some(0)).await.unwrap());
        assert_eq!(percent(q.clone()).await, Some(99));

        assert!(!q.progress("w2", &job.lease, 1, Some(2)).await.unwrap());
    }

    #[tokio::test]
    async fn a_failed_job_put_back_by_hand_gets_its_attempts_back() {
        let (_dir, q) = open_temp().await;
        let r = enqueue(
            &q,
            EnqueueRequest {
                url: Some(link(1)),
                max_attempts: Some(2),
                ..Default::default()
            },
        )
        .await;
        let job_id = r.job_id.unwrap();
        for _ in 0..2 {
            let job = claim_one(&q, "w1").await;
            q.fail(
                "w1",
                &[failure(
                    job.lease,
                    ErrorClass::Transient,
                    Some(Duration::ZERO),
                )],
            )
            .await
            .unwrap();
        }
        let j = job_row(&q, job_id).await;
        assert_eq!(text(&j, "status").as_deref(), Some("failed"));
        assert_eq!(int(&j, "attempts"), Some(2));
        assert_eq!(text(&j, "worker_id").as_deref(), Some("w1"));

        // what the old README advises
        exec(
            &q,
            "update download_jobs set status = 'pending' where id = ?1",
            job_id,
            None,
        )
        .await;
        let j = job_row(&q, job_id).await;
        assert_eq!(text(&j, "status").as_deref(), Some("pending"));
        assert_eq!(int(&j, "attempts"), Some(0));
        assert_eq!(text(&j, "worker_id"), None);
        assert_eq!(text(&j, "lease_id"), None);
        assert_eq!(text(&j, "lease_expires_at"), None);
        let job = claim_one(&q, "w2").await;
        assert_eq!((job.id(), job.attempts), (job_id, 1));

        // other writers: a job inserted without due time or priority gets both; a due time set
        // to null becomes now
        let video_id = Uuid::new_v4();
        sqlx::query(
            "insert into videos (id, video_url, surge_detected, viral_momentum)
             values (?1, 'https://v.douyin.com/x/', 1, 3)",
        )
        .bind(video_id.hyphenated())
        .execute(q.pool())
        .await
        .unwrap();
        let (id,): (String,) = sqlx::query_as(
            "insert into download_jobs (video_id, scheduled_at) values (?1, null) returning id",
        )
        .bind(video_id.hyphenated())
        .fetch_one(q.pool())
        .await
        .unwrap();
        let id = Uuid::parse_str(&id).unwrap();
        assert_eq!(id.get_version_num(), 4);
        let j = job_row(&q, id).await;
        assert_eq!(int(&j, "priority"), Some(1_000_003));
        let due: DateTime<Utc> = j.try_get("scheduled_at").unwrap();
        assert!((Utc::now() - due).num_seconds().abs() < 5);
        set_due(&q, id, 3600).await;
        exec(
            &q,
            "update download_jobs set scheduled_at = null where id = ?1",
            id,
            None,
        )
        .await;
        let due: DateTime<Utc> = job_row(&q, id).await.try_get("scheduled_at").unwrap();
        assert!((Utc::now() - due).num_seconds().abs() < 5);
        assert_eq!(claim_one(&q, "w3").await.id(), id);
    }

    #[tokio::test]
    async fn one_active_job_per_video() {
        let (_dir, q) = open_temp().await;
        let r = enqueue_url(&q, &link(1)).await;
        let second = sqlx::query("insert into download_jobs (video_id) values (?1)")
            .bind(r.video_id.unwrap().hyphenated())
            .execute(q.pool())
            .await;
        let err = QueueError::from(second.unwrap_err());
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        // finished jobs do not count
        let job = claim_one(&q, "w1").await;
        q.fail("w1", &[failure(job.lease, ErrorClass::Permanent, None)])
            .await
            .unwrap();
        let again = enqueue_url(&q, &link(1)).await;
        assert_eq!(again.outcome, EnqueueOutcome::Queued);
        assert_ne!(again.job_id, r.job_id);
        // a failed job cannot be put back by hand while another is active
        let back = sqlx::query("update download_jobs set status = 'pending' where id = ?1")
            .bind(r.job_id.unwrap().hyphenated())
            .execute(q.pool())
            .await;
        assert!(back.is_err());
    }

    #[tokio::test]
    async fn the_schema_refuses_blob_uuids_and_other_time_forms() {
        let (_dir, q) = open_temp().await;
        let blob = sqlx::query("insert into videos (id) values (?1)")
            .bind(Uuid::new_v4())
            .execute(q.pool())
            .await;
        assert!(blob.is_err());
        let r = enqueue_url(&q, &link(1)).await;
        let other_form = sqlx::query("update download_jobs set scheduled_at = ?2 where id = ?1")
            .bind(r.job_id.unwrap().hyphenated())
            .bind(Utc::now())
            .execute(q.pool())
            .await;
        assert!(other_form.is_err());
        // every time the queue writes has the canonical form
        let job = claim_one(&q, "w1").await;
        q.progress("w1", &job.lease, 1, Some(2)).await.unwrap();
        let j = job_row(&q, job.id()).await;
        for column in [
            "scheduled_at",
            "created_at",
            "updated_at",
            "started_at",
            "lease_expires_at",
            "heartbeat_at",
            "progress_at",
        ] {
            let t = text(&j, column).unwrap();
            assert_eq!(t.len(), 24, "{column}: {t}");
            assert!(
                chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.3fZ").is_ok(),
                "{column}: {t}"
            );
        }
    }

    #[tokio::test]
    async fn subscribers_are_woken_by_this_process() {
        let (_dir, q) = open_temp().await;
        let signal = Arc::new(JobSignal::new());
        let stop = CancellationToken::new();
        q.clone()
            .subscribe(signal.clone(), stop.clone())
            .await
            .unwrap();
        let never = CancellationToken::new();
        let wait = |signal: Arc<JobSignal>| {
            let never = never.clone();
            async move {
                let start = std::time::Instant::now();
                signal.wait(Duration::from_secs(2), &never).await;
                start.elapsed()
            }
        };

        enqueue_url(&q, &link(1)).await;
        assert!(wait(signal.clone()).await < Duration::from_millis(500));

        // a retry in 300 ms wakes the waiter then
        let job = claim_one(&q, "w1").await;
        q.fail(
            "w1",
            &[failure(
                job.lease,
                ErrorClass::Transient,
                Some(Duration::from_millis(300)),
            )],
        )
        .await
        .unwrap();
        let waited = wait(signal.clone()).await;
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_millis(1500),
            "{waited:?}"
        );

        // after shutdown, no more signals
        stop.cancel();
        enqueue_url(&q, &link(2)).await;
        assert!(wait(signal.clone()).await >= Duration::from_millis(1900));
        assert!(q.shared.subscribers.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn schema_checks_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let q = SqliteQueue::open(&path).await.unwrap();
        assert_eq!(q.backend(), "sqlite");
        q.check_schema().await.unwrap();
        assert_eq!(q.stats().await.unwrap(), WorkerStats::default());
        let r = enqueue_url(&q, &link(1)).await;
        // applying the file again changes nothing
        sqlx::raw_sql(include_str!("sqlite_schema.sql"))
            .execute(q.pool())
            .await
            .unwrap();
        q.pool().close().await;
        let q = SqliteQueue::open(&path).await.unwrap();
        q.check_schema().await.unwrap();
        assert_eq!(enqueue_url(&q, &link(1)).await.job_id, r.job_id);
        let mode: (String,) = sqlx::query_as("pragma journal_mode")
            .fetch_one(q.pool())
            .await
            .unwrap();
        assert_eq!(mode.0, "wal");
        let fk: (i64,) = sqlx::query_as("pragma foreign_keys")
            .fetch_one(q.pool())
            .await
            .unwrap();
        assert_eq!(fk.0, 1);

        // a file without the schema
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("empty.db"))
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let bare = SqliteQueue::from_pool(pool);
        let err = bare.check_schema().await.unwrap_err();
        assert!(matches!(err, QueueError::Schema(_)), "{err}");
        let err = bare.stats().await.unwrap_err();
        assert!(matches!(err, QueueError::Schema(_)), "{err}");
        // deleting a video deletes its jobs (foreign keys are on)
        sqlx::query("delete from videos where id = ?1")
            .bind(r.video_id.unwrap().hyphenated())
            .execute(q.pool())
            .await
            .unwrap();
        assert_eq!(q.stats().await.unwrap().total_jobs, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claimers_claim_each_job_once() {
        const JOBS: usize = 2000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        // two queues on one file: two "processes" contending for the file's write lock, four
        // claimers each contending for their process's write turn
        let a = SqliteQueue::open(&path).await.unwrap();
        let b = SqliteQueue::open(&path).await.unwrap();
        sqlx::query(
            "with recursive n(i) as (select 1 union all select i + 1 from n where i < ?1)
             insert into videos (douyin_id, video_url, status)
             select i, 'https://x/' || i, 'queued' from n",
        )
        .bind(JOBS as i64)
        .execute(a.pool())
        .await
        .unwrap();
        sqlx::query("insert into download_jobs (video_id, priority) select id, 0 from videos")
            .execute(a.pool())
            .await
            .unwrap();

        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let q = if t % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                let worker = format!("w{t}");
                let mut mine = Vec::new();
                loop {
                    let jobs = q.claim(&worker, 7, LEASE).await.expect("claim");
                    if jobs.is_empty() {
                        break;
                    }
                    let done: Vec<Completion> = jobs
                        .iter()
                        .map(|j| completion(j.lease, &j.id().to_string()))
                        .collect();
                    let out = q.complete(&worker, &done).await.expect("complete");
                    assert!(out.iter().all(|(_, o)| *o == CompleteOutcome::Completed));
                    mine.extend(jobs.into_iter().map(|j| j.id()));
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let elapsed = started.elapsed();
        let unique: HashSet<Uuid> = all.iter().copied().collect();
        assert_eq!(all.len(), JOBS, "every job claimed once");
        assert_eq!(unique.len(), JOBS);
        let stats = a.stats().await.unwrap();
        assert_eq!(stats.completed_jobs, JOBS as i64);
        assert_eq!(stats.total_jobs, JOBS as i64);
        eprintln!(
            "{JOBS} jobs claimed and completed by 8 claimers in {elapsed:?} ({:.0} jobs/s)",
            JOBS as f64 / elapsed.as_secs_f64()
        );
    }
}
