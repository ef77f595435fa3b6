//! The job queue: one trait, a backend per child module.
//!
//! Every backend implements the same life cycle with the same semantics (see
//! `migrations/0002_queue.sql`, which is the reference): claim a batch with a lease per job,
//! renew leases by heartbeat, then complete, fail (reschedule or give up), or release each
//! job, fenced by its lease id; any worker rescues expired leases.
//!
//! - [`postgres`]: the SQL functions over a direct connection, LISTEN/NOTIFY wake-ups.
//! - [`sqlite`]: the embedded default, one machine, the same tables in a SQLite file.

mod admin;
pub mod postgres;
pub mod rest;
pub mod sqlite;
mod wire;

pub use admin::{
    JobFilter, JobStatus, QueueOverview, RetryOutcome, RetryResult, RetryTarget, UnknownJobStatus,
    VideoState, WorkerLoad,
};

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::ErrorClass;

/// The schema version (`douyin_worker_schema_version()`) this build works with.
pub const SCHEMA_VERSION: i32 = 5;

/// The NOTIFY channel the database signals claimable jobs on.
pub const NOTIFY_CHANNEL: &str = "douyin_worker_jobs";

/// A claim on a running job: the job and the fencing token handed out when it was claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// `download_jobs.id`.
    pub job_id: Uuid,
    /// `download_jobs.lease_id`, new at every claim.
    pub lease_id: Uuid,
}

/// What the worker knows about the video a job is for, read in the same round trip as the claim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    /// `videos.douyin_id` (the aweme id); may be unknown until a short link is resolved.
    pub douyin_id: Option<String>,
    /// `videos.video_url`, the Douyin page link.
    pub video_url: Option<String>,
    /// `videos.title`.
    pub title: Option<String>,
    /// `videos.thumbnail_url`.
    pub thumbnail_url: Option<String>,
    /// Cached direct media URL from an earlier extraction.
    pub video_url_direct: Option<String>,
    /// What is known about the cached direct URL.
    pub video_url_meta: Option<Value>,
    /// The video is to be deleted; it must not be downloaded.
    pub marked_for_deletion: bool,
}

/// A job this worker holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimedJob {
    /// The job and its fencing token.
    pub lease: Lease,
    /// `download_jobs.video_id`.
    pub video_id: Uuid,
    /// When the lease runs out unless renewed.
    pub lease_expires_at: DateTime<Utc>,
    /// This attempt's number, from 1.
    pub attempts: i32,
    /// Attempts allowed before the job fails for good.
    pub max_attempts: i32,
    /// Claim priority (higher first).
    pub priority: i32,
    /// `download_jobs.payload`, e.g. `{"url": "..."}`.
    pub payload: Option<Value>,
    /// When the job was due.
    pub scheduled_at: DateTime<Utc>,
    /// When the job was queued.
    pub created_at: DateTime<Utc>,
    /// The video row.
    pub video: VideoInfo,
}

impl ClaimedJob {
    /// The job id.
    pub fn id(&self) -> Uuid {
        self.lease.job_id
    }
}

/// Where a finished download was stored; becomes the `videos` row's storage fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredObject {
    /// `videos.storage_provider`, e.g. `supabase`, `s3`, `local`.
    pub storage_provider: String,
    /// `videos.bucket`.
    pub bucket: String,
    /// `videos.object_key`.
    pub object_key: String,
    /// `videos.storage_etag`.
    pub storage_etag: Option<String>,
    /// `videos.filesize`, in bytes.
    pub filesize: i64,
    /// `videos.mime_type`.
    pub mime_type: String,
    /// `videos.storage_metadata`: checksum, duration, dimensions, codecs, source, worker.
    pub storage_metadata: Value,
}

/// Fields of the `videos` row that a finished job may fill (title and thumbnail only when
/// the row has none).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoUpdate {
    /// The aweme id, when the row did not know it (short links).
    pub douyin_id: Option<String>,
    /// The description, used as title when the row has none.
    pub title: Option<String>,
    /// The cover, used as thumbnail when the row has none.
    pub thumbnail_url: Option<String>,
    /// The direct media URL, cached for later.
    pub video_url_direct: Option<String>,
    /// What is known about the direct URL (expiry, codec, size, metadata).
    pub video_url_meta: Option<Value>,
}

/// A finished job, ready to be recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The job and its lease.
    pub lease: Lease,
    /// Where the file went.
    pub stored: StoredObject,
    /// What to fill in on the video row.
    pub video: VideoUpdate,
}

/// A failed attempt, ready to be recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// The job and its lease.
    pub lease: Lease,
    /// `last_error`.
    pub error: String,
    /// `last_error_code`.
    pub code: String,
    /// `last_error_class`; permanent failures are final.
    pub class: ErrorClass,
    /// When to try again; `None` fails the job for good.
    pub retry_in: Option<Duration>,
}

/// What recording a completion did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompleteOutcome {
    /// The job is `completed` and the video `ready`.
    Completed,
    /// The lease had expired and the job was taken over: nothing was recorded.
    LeaseLost,
}

impl CompleteOutcome {
    /// Reads the `outcome` column of `complete_download_jobs`.
    pub fn from_sql(outcome: &str) -> Self {
        if outcome == "completed" {
            Self::Completed
        } else {
            Self::LeaseLost
        }
    }
}

/// What recording a failure did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOutcome {
    /// Back to pending, due at the given time.
    RetryScheduled(DateTime<Utc>),
    /// Failed for good (permanent error or out of attempts).
    Failed,
    /// The lease had expired and the job was taken over: nothing was recorded.
    LeaseLost,
}

impl FailOutcome {
    /// Reads the `outcome` and `scheduled_at` columns of `fail_download_jobs`.
    pub fn from_sql(outcome: &str, scheduled_at: Option<DateTime<Utc>>) -> Self {
        match (outcome, scheduled_at) {
            ("retry_scheduled", Some(at)) => Self::RetryScheduled(at),
            ("failed", _) => Self::Failed,
            _ => Self::LeaseLost,
        }
    }
}

/// What releasing a job did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// Back to pending, due now, the attempt not counted.
    Released,
    /// The lease had expired and the job was taken over: nothing was changed.
    LeaseLost,
}

impl ReleaseOutcome {
    /// Reads the `outcome` column of `release_download_jobs`.
    pub fn from_sql(outcome: &str) -> Self {
        if outcome == "released" {
            Self::Released
        } else {
            Self::LeaseLost
        }
    }
}

/// What the rescue did with one job whose lease had expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rescued {
    /// The job.
    pub job_id: Uuid,
    /// Its video.
    pub video_id: Uuid,
    /// The video's Douyin id, if known.
    pub douyin_id: Option<String>,
    /// Requeued or failed (out of attempts).
    pub requeued: bool,
    /// The worker whose lease expired.
    pub worker_id: Option<String>,
}

/// A request to queue a download.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EnqueueRequest {
    /// An existing `videos.id`.
    pub video_id: Option<Uuid>,
    /// A Douyin link; a `videos` row is created when none has this link or its id.
    pub url: Option<String>,
    /// A Douyin (aweme) id.
    pub douyin_id: Option<String>,
    /// `download_jobs.payload`.
    pub payload: Option<Value>,
    /// Claim priority; by default derived from the video's ranking.
    pub priority: Option<i32>,
    /// Attempts allowed; default 5.
    pub max_attempts: Option<i32>,
    /// Queue even when the video is already stored.
    pub force: bool,
}

/// What an enqueue did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnqueueOutcome {
    /// A new pending job.
    Queued,
    /// The video already had an active job (returned); none was added.
    Duplicate,
    /// The video is already stored; nothing was queued.
    Ready,
    /// The video is marked for deletion; nothing was queued.
    MarkedForDeletion,
    /// No video has that id.
    NotFound,
}

impl EnqueueOutcome {
    /// Parses the outcome column of `enqueue_download_job`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "duplicate" => Self::Duplicate,
            "ready" => Self::Ready,
            "marked_for_deletion" => Self::MarkedForDeletion,
            "not_found" => Self::NotFound,
            _ => return None,
        })
    }
}

/// The result of an enqueue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnqueueResult {
    /// The new or already active job, if any.
    pub job_id: Option<Uuid>,
    /// The video, if known.
    pub video_id: Option<Uuid>,
    /// What happened.
    pub outcome: EnqueueOutcome,
}

/// `get_worker_stats()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// All job rows.
    pub total_jobs: i64,
    /// Waiting (due or scheduled).
    pub pending_jobs: i64,
    /// Held by a worker.
    pub running_jobs: i64,
    /// Done.
    pub completed_jobs: i64,
    /// Failed for good.
    pub failed_jobs: i64,
    /// Distinct workers holding running jobs.
    pub active_workers: i64,
}

/// One job with its video's download fields (`list_download_jobs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job.
    pub id: Uuid,
    /// Its video.
    pub video_id: Uuid,
    /// `pending`, `running`, `completed` or `failed`.
    pub status: String,
    /// The worker holding (or that last held) it.
    pub worker_id: Option<String>,
    /// Attempts so far.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Claim priority.
    pub priority: i32,
    /// When it is (or was) due.
    pub scheduled_at: DateTime<Utc>,
    /// When the current lease runs out.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The last error.
    pub last_error: Option<String>,
    /// Its code.
    pub last_error_code: Option<String>,
    /// Its class.
    pub last_error_class: Option<String>,
    /// Bytes downloaded.
    pub progress_bytes: Option<i64>,
    /// Bytes expected.
    pub progress_total: Option<i64>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it completed or failed for good.
    pub finished_at: Option<DateTime<Utc>>,
    /// `videos.status`.
    pub video_status: String,
    /// `videos.attempts`.
    pub video_attempts: i32,
    /// `videos.last_error`.
    pub video_last_error: Option<String>,
    /// `videos.next_attempt_at`.
    pub video_next_attempt_at: Option<DateTime<Utc>>,
    /// `videos.download_progress` (percent).
    pub video_download_progress: Option<i16>,
    /// `videos.in_progress_by`.
    pub video_in_progress_by: Option<String>,
    /// `videos.object_key`.
    pub video_object_key: Option<String>,
    /// `videos.douyin_id`.
    #[serde(default)]
    pub video_douyin_id: Option<String>,
}

/// Errors of the queue backends.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database could not be reached or the connection broke; retrying helps.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error.
    #[error("database error: {0}")]
    Database(String),
    /// The schema is missing or older than this build needs.
    #[error("{0}")]
    Schema(String),
    /// The credentials lack a privilege.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A request the queue refuses (bad argument).
    #[error("rejected: {0}")]
    Rejected(String),
}

impl QueueError {
    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
                QueueError::Unavailable(e.to_string())
            }
            E::Protocol(_) => QueueError::Unavailable(e.to_string()),
            E::Database(db) if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let msg = db.message().to_string();
                // SQLite result codes (extended): busy, locked, busy timeout, and friends.
                match code.as_str() {
                    "5" | "6" | "261" | "262" | "517" | "773" => QueueError::Unavailable(msg),
                    _ if msg.starts_with("no such table") || msg.starts_with("no such column") => {
                        QueueError::Schema(format!(
                            "{msg}: the SQLite queue file lacks the douyin-worker schema"
                        ))
                    }
                    _ => QueueError::Database(format!("{msg} (SQLite code {code})")),
                }
            }
            E::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let msg = db.message().to_string();
                match code.as_str() {
                    "42501" => QueueError::PermissionDenied(msg),
                    "42883" | "42P01" | "42703" => QueueError::Schema(format!(
                        "{msg}: the database schema is missing or outdated; run `douyin-worker migrate`"
                    )),
                    // connection exceptions, admin shutdown, cannot connect now, too many
                    // connections, serialization failures and deadlocks: all pass
                    c if c.starts_with("08")
                        || c.starts_with("57P")
                        || c.starts_with("53")
                        || c == "40001"
                        || c == "40P01" =>
                    {
                        QueueError::Unavailable(msg)
                    }
                    _ => QueueError::Database(if code.is_empty() {
                        msg
                    } else {
                        format!("{msg} (SQLSTATE {code})")
                    }),
                }
            }
            _ => QueueError::Database(e.to_string()),
        }
    }
}

/// Wakes an idle worker when a job becomes claimable.
///
/// Backends call [`JobSignal::job_due_at`] when they learn of a claimable job (a NOTIFY, or
/// an in-process write); the worker waits on [`JobSignal::wait`]. A signal that arrives while
/// the worker is busy is kept, so it is never lost between a claim and the next wait.
#[derive(Debug, Default)]
pub struct JobSignal {
    /// A job is claimable now.
    due_now: Notify,
    /// The earliest known future due time changed: recompute the sleep.
    rearm: Notify,
    earliest_future: Mutex<Option<DateTime<Utc>>>,
}

impl JobSignal {
    /// A new signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// A job is, or will be at `due`, claimable.
    pub fn job_due_at(&self, due: DateTime<Utc>) {
        if due <= Utc::now() + chrono::Duration::milliseconds(5) {
            self.due_now.notify_one();
            return;
        }
        let mut earliest = self
            .earliest_future
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if earliest.is_none_or(|e| due < e) {
            *earliest = Some(due);
            drop(earliest);
            self.rearm.notify_one();
        }
    }

    /// A job is claimable now.
    pub fn job_due_now(&self) {
        self.due_now.notify_one();
    }

    /// Takes the earliest known future due time if it has passed; else returns it.
    fn passed_or_next(&self) -> Result<(), Option<DateTime<Utc>>> {
        let mut earliest = self
            .earliest_future
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match *earliest {
            Some(at) if at <= Utc::now() => {
                *earliest = None;
                Ok(())
            }
            other => Err(other),
        }
    }

    /// Waits until a job may be claimable: a signal, a known due time passing, `max`
    /// elapsing, or `cancel`. Returns at once if a signal arrived since the last wait.
    pub async fn wait(&self, max: Duration, cancel: &CancellationToken) {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let next = match self.passed_or_next() {
                Ok(()) => return,
                Err(next) => next,
            };
            let until = match next {
                Some(at) => {
                    let ms = (at - Utc::now()).num_milliseconds().max(0) as u64 + 1;
                    deadline.min(tokio::time::Instant::now() + Duration::from_millis(ms))
                }
                None => deadline,
            };
            tokio::select! {
                _ = self.due_now.notified() => return,
                _ = self.rearm.notified() => continue,
                _ = tokio::time::sleep_until(until) => {
                    if until >= deadline {
                        return;
                    }
                }
                _ = cancel.cancelled() => return,
            }
        }
    }
}

/// The queue life cycle, the same on every backend.
///
/// Every method that changes a running job takes its [`Lease`] and changes nothing when the
/// lease no longer matches (the job was rescued and maybe claimed by someone else).
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// A short name for logs: `postgres`, `sqlite`, `supabase`.
    fn backend(&self) -> &'static str;

    /// Checks that the schema is there and recent enough; the error says what to do.
    async fn check_schema(&self) -> Result<(), QueueError>;

    /// Claims up to `limit` due jobs in claim order, each with a lease of `lease`.
    async fn claim(
        &self,
        worker_id: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, QueueError>;

    /// Renews the given leases; returns those still held.
    async fn heartbeat(
        &self,
        worker_id: &str,
        leases: &[Lease],
        lease: Duration,
    ) -> Result<Vec<Lease>, QueueError>;

    /// Records finished jobs and points their videos at the stored objects.
    async fn complete(
        &self,
        worker_id: &str,
        items: &[Completion],
    ) -> Result<Vec<(Uuid, CompleteOutcome)>, QueueError>;

    /// Records failed attempts: reschedules or fails each job.
    async fn fail(
        &self,
        worker_id: &str,
        items: &[Failure],
    ) -> Result<Vec<(Uuid, FailOutcome)>, QueueError>;

    /// Puts unfinished jobs back, due now, without counting the attempt.
    async fn release(
        &self,
        worker_id: &str,
        leases: &[Lease],
    ) -> Result<Vec<(Uuid, ReleaseOutcome)>, QueueError>;

    /// Requeues (or fails, when out of attempts) up to `limit` jobs whose lease expired.
    async fn rescue(&self, limit: u32) -> Result<Vec<Rescued>, QueueError>;

    /// Records download progress; returns false when the lease is lost.
    async fn progress(
        &self,
        worker_id: &str,
        lease: &Lease,
        done: u64,
        total: Option<u64>,
    ) -> Result<bool, QueueError>;

    /// Queues a download.
    async fn enqueue(&self, req: &EnqueueRequest) -> Result<EnqueueResult, QueueError>;

    /// `get_worker_stats()`.
    async fn stats(&self) -> Result<WorkerStats, QueueError>;

    /// Calls the application's `ensure_videos_bucket()` (storage policies on Supabase) where
    /// it exists; returns whether it was called.
    async fn ensure_videos_bucket(&self) -> Result<bool, QueueError> {
        Ok(false)
    }

    /// One job with its video's download fields, if it exists.
    async fn job(&self, id: Uuid) -> Result<Option<JobRecord>, QueueError> {
        let _ = id;
        Err(QueueError::Rejected(format!(
            "the {} backend cannot show a job",
            self.backend()
        )))
    }

    /// A video's download state, if the video exists.
    async fn video(&self, id: Uuid) -> Result<Option<VideoState>, QueueError> {
        let _ = id;
        Err(self.unsupported("show a video"))
    }

    /// Jobs, newest first.
    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, QueueError> {
        let _ = filter;
        Err(self.unsupported("list jobs"))
    }

    /// Requeues failed jobs (a new job row per video; the failed row stays as history).
    async fn retry(&self, target: &RetryTarget) -> Result<Vec<RetryResult>, QueueError> {
        let _ = target;
        Err(self.unsupported("retry jobs"))
    }

    /// The queue at a glance.
    async fn overview(&self) -> Result<QueueOverview, QueueError> {
        Err(self.unsupported("show the queue"))
    }

    /// The object keys in `bucket` that videos still want: every `videos.object_key` of a
    /// video not marked for deletion whose `videos.bucket` is `bucket` or unset, whatever
    /// its status.
    async fn wanted_object_keys(
        &self,
        bucket: &str,
    ) -> Result<std::collections::HashSet<String>, QueueError> {
        let _ = bucket;
        Err(self.unsupported("list stored objects"))
    }

    /// The error for an operation this backend lacks.
    fn unsupported(&self, what: &str) -> QueueError {
        QueueError::Rejected(format!("the {} backend cannot {what}", self.backend()))
    }

    /// Starts delivering wake-ups to `signal` until `shutdown`. Backends without a push
    /// channel may do nothing; the worker then relies on polling.
    async fn subscribe(
        &self,
        signal: std::sync::Arc<JobSignal>,
        shutdown: CancellationToken,
    ) -> Result<(), QueueError>;
}

/// The `retry_in_seconds` of a failure, as the SQL functions take it.
pub(crate) fn retry_seconds(f: &Failure) -> Option<f64> {
    if f.class.is_retryable() {
        f.retry_in.map(|d| d.as_secs_f64())
    } else {
        None
    }
}

/// Opens the queue the configuration names, ready for use: the SQLite file is created and
/// its schema applied; PostgreSQL's schema is checked (not changed: that is `migrate`).
pub async fn open(cfg: &crate::config::Config) -> Result<std::sync::Arc<dyn JobQueue>, QueueError> {
    use crate::config::QueueBackend;
    match &cfg.queue {
        QueueBackend::Postgres { url } => {
            let q = postgres::PgQueue::connect_lazy(
                url.expose(),
                cfg.db_pooler,
                cfg.db_max_connections,
            )?;
            q.check_schema().await?;
            Ok(std::sync::Arc::new(q))
        }
        QueueBackend::Sqlite { path } => {
            let q = sqlite::SqliteQueue::open(path).await?;
            q.check_schema().await?;
            Ok(std::sync::Arc::new(q))
        }
        QueueBackend::Supabase => {
            let (Some(url), Some(key)) = (&cfg.supabase_url, &cfg.supabase_key) else {
                return Err(QueueError::Rejected(
                    "Supabase mode needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY".into(),
                ));
            };
            let q = rest::RestQueue::new(url, key.clone())?;
            q.check_schema().await?;
            Ok(std::sync::Arc::new(q))
        }
    }
}
