//! The job queue: what the worker needs ([`JobQueue`]: the lease life cycle), what the
//! commands and the HTTP server need ([`QueueAdmin`]), and a backend per child module that
//! implements both.
//!
//! Every backend implements the same life cycle with the same semantics (see
//! `migrations/0002_queue.sql`, which is the reference): claim a batch with a lease per job,
//! renew leases by heartbeat, then complete, fail (reschedule or give up), or release each
//! job, fenced by its lease id; any worker rescues expired leases.
//!
//! - [`job`]: the records of the life cycle (claimed job, completion, failed attempt, ...).
//! - [`admin`]: the [`QueueAdmin`] trait and its types.
//! - [`signal`]: [`JobSignal`], the in-process wake-up.
//! - [`changes`]: the per-process hub of video changes the API's events streams wait on.
//! - [`migrate`]: the embedded schema migrations (`migrations/` for PostgreSQL, one schema
//!   file for SQLite).
//! - [`postgres`]: the SQL functions over a direct connection, LISTEN/NOTIFY wake-ups.
//! - [`rest`]: the same functions over Supabase's REST API.
//! - [`sqlite`]: the embedded default, one machine, the same tables in a SQLite file.

pub mod admin;
pub mod changes;
pub mod job;
pub mod migrate;
pub mod postgres;
pub mod rest;
pub mod signal;
pub mod sqlite;
mod wire;

pub use admin::{
    EnqueueOutcome, EnqueueRequest, EnqueueResult, JobFilter, JobRecord, JobStatus, QueueAdmin,
    QueueOverview, RetryOutcome, RetryResult, RetryTarget, UnknownJobStatus, VideoCover,
    VideoState, WorkerLoad, WorkerStats,
};
pub(crate) use job::retry_seconds;
pub use job::{
    ClaimedJob, CompleteOutcome, Completion, FailOutcome, FailedAttempt, Learned, ReleaseOutcome,
    Rescued, StoredObject, VideoRow, VideoUpdate,
};
pub use signal::JobSignal;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The schema version (`douyin_worker_schema_version()`) this build works with.
pub const SCHEMA_VERSION: i32 = 8;

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
                    // invalid_authorization_specification, invalid_password: the server
                    // refuses the credentials (never shown: the message names the user only).
                    "28000" | "28P01" => QueueError::PermissionDenied(format!(
                        "{msg}: the user or password of DATABASE_URL is refused"
                    )),
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

/// Which backend a queue is, for logs: `postgres`, `sqlite`, `supabase`. Both faces of a
/// queue have it.
pub trait QueueName: Send + Sync + 'static {
    /// A short name for logs.
    fn backend(&self) -> &'static str;
}

/// The queue life cycle, what the worker needs, the same on every backend.
///
/// Every method that changes a running job takes its [`Lease`] and changes nothing when the
/// lease no longer matches (the job was rescued and maybe claimed by someone else).
#[async_trait]
pub trait JobQueue: QueueName {
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
        items: &[FailedAttempt],
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

    /// Records the Douyin id extraction learnt for a running job whose video row had none (a
    /// short link queued before it could be resolved). When another row already has that id,
    /// the job's row is merged into it: the job carries on for that row, or ends when that row
    /// is stored or busy. Race-safe: of two rows learning one id at once, one keeps it.
    async fn learn_douyin_id(
        &self,
        worker_id: &str,
        lease: &Lease,
        douyin_id: &str,
    ) -> Result<Learned, QueueError>;

    /// Starts delivering wake-ups to `signal` until `shutdown`. Backends without a push
    /// channel may do nothing; the worker then relies on polling.
    async fn subscribe(
        &self,
        signal: Arc<JobSignal>,
        shutdown: CancellationToken,
    ) -> Result<(), QueueError>;
}

/// Names the backend only (for the `Debug` of what holds a queue).
impl std::fmt::Debug for dyn JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobQueue({})", self.backend())
    }
}

/// A whole queue: both faces. [`open`] hands one out; the worker takes it as a
/// [`JobQueue`], the commands and the HTTP server as a [`QueueAdmin`].
pub trait Queue: JobQueue + QueueAdmin {}

impl<T: JobQueue + QueueAdmin> Queue for T {}

/// Opens the queue the configuration names, ready for use: the SQLite file is created and
/// its schema applied; PostgreSQL's schema is checked (not changed: that is `migrate`).
pub async fn open(
    settings: &crate::config::QueueSettings,
    supabase: Option<&crate::config::Supabase>,
) -> Result<Arc<dyn Queue>, QueueError> {
    use crate::config::QueueBackend;
    match &settings.backend {
        QueueBackend::Postgres { url } => {
            let q = postgres::PgQueue::connect(
                url.expose(),
                settings.db_pooler,
                settings.db_max_connections,
            )
            .await?;
            q.check_schema().await?;
            Ok(Arc::new(q))
        }
        QueueBackend::Sqlite { path } => {
            let q = sqlite::SqliteQueue::open(path).await?;
            q.check_schema().await?;
            Ok(Arc::new(q))
        }
        QueueBackend::Supabase => {
            let Some(project) = supabase else {
                return Err(QueueError::Rejected(
                    "Supabase mode needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY".into(),
                ));
            };
            let q = rest::RestQueue::new(&project.url, project.key.clone())?;
            q.check_schema().await?;
            Ok(Arc::new(q))
        }
    }
}
