//! The PostgreSQL backend: the SQL functions of `migrations/`, and LISTEN/NOTIFY wake-ups,
//! over direct connections or through a connection pooler (Supabase's session or transaction
//! pooler, PgBouncer).
//!
//! - `db`: how statements are run, per pooler mode. (`DATABASE_URL` becomes connect options in
//!   [`crate::config::database_url`].)

mod changes;
mod db;
mod listen;
mod rows;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::DbPooler;

use self::db::Db;
use self::rows::{claimed_from_row, job_from_row, video_from_row};
use super::wire::{completion_json, failure_json, lease_json};
use super::{
    ClaimedJob, CompleteOutcome, Completion, EnqueueOutcome, EnqueueRequest, EnqueueResult,
    FailOutcome, FailedAttempt, JobFilter, JobQueue, JobRecord, JobSignal, Learned, Lease,
    NOTIFY_CHANNEL, QueueError, QueueOverview, ReleaseOutcome, Rescued, RetryOutcome, RetryResult,
    RetryTarget, SCHEMA_VERSION, VideoCover, VideoState, WorkerLoad, WorkerStats,
};
use super::{QueueAdmin, QueueName};
use crate::config::database_url::connect_options;

/// The queue in a PostgreSQL database (self-hosted or Supabase's), directly or through a
/// connection pooler.
#[derive(Clone, Debug)]
pub struct PgQueue {
    db: Db,
}

impl PgQueue {
    /// Connects a pool of `max_connections` to `url` (through `pooler`, see
    /// [`DbPooler`]). The pool connects lazily, so a database that is down at start-up is
    /// retried, not fatal.
    pub fn connect_lazy(
        url: &str,
        pooler: DbPooler,
        max_connections: u32,
    ) -> Result<Self, QueueError> {
        let options = connect_options(url)
            .map_err(|e| QueueError::Rejected(format!("DATABASE_URL: {e}")))?
            .application_name("douyin-worker")
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(5));
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            // No ping before every query (a round trip each): a broken connection fails
            // its query, is discarded, and the caller's retry gets a fresh one.
            .test_before_acquire(false)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self::from_pool_behind(pool, pooler))
    }

    /// [`PgQueue::connect_lazy`], then one connection opened at once to see that the database
    /// answers: a database that refuses connections, or a wrong password, is reported now
    /// with the reason (`cannot connect to DATABASE_URL: ... Connection refused`), where the
    /// pool would retry for its acquire timeout and then say only `pool timed out`.
    pub async fn connect(
        url: &str,
        pooler: DbPooler,
        max_connections: u32,
    ) -> Result<Self, QueueError> {
        let q = Self::connect_lazy(url, pooler, max_connections)?;
        let options = q.pool().connect_options();
        match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
            Ok(Ok(conn)) => {
                let _ = sqlx::Connection::close(conn).await;
                Ok(q)
            }
            Ok(Err(e)) => Err(match QueueError::from(e) {
                QueueError::Unavailable(m) => {
                    QueueError::Unavailable(format!("cannot connect to DATABASE_URL: {m}"))
                }
                QueueError::PermissionDenied(m) => {
                    QueueError::PermissionDenied(format!("cannot connect to DATABASE_URL: {m}"))
                }
                other => QueueError::Database(format!("cannot connect to DATABASE_URL: {other}")),
            }),
            Err(_) => Err(QueueError::Unavailable(format!(
                "cannot connect to DATABASE_URL: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Wraps an existing pool of direct connections (or through a session-mode pooler).
    pub fn from_pool(pool: PgPool) -> Self {
        Self::from_pool_behind(pool, DbPooler::None)
    }

    /// Wraps an existing pool whose connections go through `pooler`.
    pub(crate) fn from_pool_behind(pool: PgPool, pooler: DbPooler) -> Self {
        Self {
            db: Db::new(pool, pooler),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }
}

/// How long the first connection of [`PgQueue::connect`] may take (the pool's acquire
/// timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn lease_secs(lease: Duration) -> i32 {
    lease.as_secs().clamp(1, i32::MAX as u64) as i32
}

/// A job count or limit as the SQL functions' `integer`.
fn sql_int(n: u32) -> i32 {
    n.min(i32::MAX as u32) as i32
}

impl QueueName for PgQueue {
    fn backend(&self) -> &'static str {
        "postgres"
    }
}

#[async_trait]
impl JobQueue for PgQueue {
    async fn claim(
        &self,
        worker_id: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        let rows = self
            .db
            .claim_rows(
                sqlx::query("select * from public.claim_download_jobs($1, $2, $3)")
                    .bind(worker_id)
                    .bind(limit.min(i32::MAX as u32) as i32)
                    .bind(lease_secs(lease)),
            )
            .await?;
        rows.iter()
            .map(|r| claimed_from_row(r).map_err(QueueError::from))
            .collect()
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
        let rows: Vec<(Uuid, Uuid)> = self
            .db
            .all(
                sqlx::query(
                    "select job_id, lease_id from public.heartbeat_download_jobs($1, $2, $3)",
                )
                .bind(worker_id)
                .bind(lease_json(leases))
                .bind(lease_secs(lease)),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(job_id, lease_id)| Lease { job_id, lease_id })
            .collect())
    }

    async fn complete(
        &self,
        worker_id: &str,
        items: &[Completion],
    ) -> Result<Vec<(Uuid, CompleteOutcome)>, QueueError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let body = Value::Array(items.iter().map(completion_json).collect());
        let rows: Vec<(Uuid, String)> = self
            .db
            .all(
                sqlx::query("select job_id, outcome from public.complete_download_jobs($1, $2)")
                    .bind(worker_id)
                    .bind(body),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, o)| (id, CompleteOutcome::from_sql(&o)))
            .collect())
    }

    async fn fail(
        &self,
        worker_id: &str,
        items: &[FailedAttempt],
    ) -> Result<Vec<(Uuid, FailOutcome)>, QueueError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let body = Value::Array(items.iter().map(failure_json).collect());
        let rows: Vec<(Uuid, String, Option<DateTime<Utc>>)> = self
            .db
            .all(
                sqlx::query(
                    "select job_id, outcome, scheduled_at from public.fail_download_jobs($1, $2)",
                )
                .bind(worker_id)
                .bind(body),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, o, at)| (id, FailOutcome::from_sql(&o, at)))
            .collect())
    }

    async fn release(
        &self,
        worker_id: &str,
        leases: &[Lease],
    ) -> Result<Vec<(Uuid, ReleaseOutcome)>, QueueError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(Uuid, String)> = self
            .db
            .all(
                sqlx::query("select job_id, outcome from public.release_download_jobs($1, $2)")
                    .bind(worker_id)
                    .bind(lease_json(leases)),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, o)| (id, ReleaseOutcome::from_sql(&o)))
            .collect())
    }

    async fn rescue(&self, limit: u32) -> Result<Vec<Rescued>, QueueError> {
        let rows: Vec<(Uuid, String, Option<String>, Uuid, Option<String>)> = self
            .db
            .all(
                sqlx::query(
                    "select job_id, outcome, worker_id, video_id, douyin_id
                       from public.rescue_download_jobs($1)",
                )
                .bind(limit.min(i32::MAX as u32) as i32),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(job_id, outcome, worker_id, video_id, douyin_id)| Rescued {
                    job_id,
                    video_id,
                    douyin_id,
                    requeued: outcome == "requeued",
                    worker_id,
                },
            )
            .collect())
    }

    async fn progress(
        &self,
        worker_id: &str,
        lease: &Lease,
        done: u64,
        total: Option<u64>,
    ) -> Result<bool, QueueError> {
        let (held,): (bool,) = self
            .db
            .one(
                sqlx::query("select public.report_download_progress($1, $2, $3, $4, $5)")
                    .bind(worker_id)
                    .bind(lease.job_id)
                    .bind(lease.lease_id)
                    .bind(done.min(i64::MAX as u64) as i64)
                    .bind(total.map(|t| t.min(i64::MAX as u64) as i64)),
            )
            .await?;
        Ok(held)
    }

    async fn learn_douyin_id(
        &self,
        worker_id: &str,
        lease: &Lease,
        douyin_id: &str,
    ) -> Result<Learned, QueueError> {
        let (outcome, video_id): (String, Option<Uuid>) = self
            .db
            .one(
                sqlx::query("select outcome, video_id from public.learn_douyin_id($1, $2, $3, $4)")
                    .bind(worker_id)
                    .bind(lease.job_id)
                    .bind(lease.lease_id)
                    .bind(douyin_id),
            )
            .await?;
        Ok(Learned::from_sql(&outcome, video_id))
    }

    async fn subscribe(
        &self,
        signal: Arc<JobSignal>,
        shutdown: CancellationToken,
    ) -> Result<(), QueueError> {
        if !self.db.pooler().keeps_sessions() {
            // LISTEN needs a session: behind a transaction-mode pooler the connection goes
            // back to the pool after every transaction, and notifications with it.
            tracing::info!(
                "push wake-ups are off: DATABASE_URL goes through a transaction-mode pooler \
                 (DB_POOLER), where LISTEN cannot work, so new jobs are picked up by polling, \
                 up to POLL_INTERVAL after they are queued; a session-mode pooler or a direct \
                 connection URL gives millisecond pickups"
            );
            return Ok(());
        }
        let listener = listen::connect(self.db.pool(), NOTIFY_CHANNEL).await?;
        tokio::spawn(listen::run(
            listener,
            shutdown,
            move |payload| match payload
                .and_then(|p| p.parse::<i64>().ok())
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            {
                Some(due) => signal.job_due_at(due),
                None => signal.job_due_now(),
            },
        ));
        Ok(())
    }
}

#[async_trait]
impl QueueAdmin for PgQueue {
    async fn check_schema(&self) -> Result<(), QueueError> {
        let version = self
            .db
            .one::<(i32,)>(sqlx::query("select public.douyin_worker_schema_version()"))
            .await;
        match version {
            Ok((v,)) if v >= SCHEMA_VERSION => {
                if v > SCHEMA_VERSION {
                    tracing::warn!(
                        database = v,
                        worker = SCHEMA_VERSION,
                        "the database schema is newer than this worker; consider upgrading the worker"
                    );
                }
                Ok(())
            }
            Ok((v,)) => Err(QueueError::Schema(format!(
                "the database schema is at version {v}, this worker needs {SCHEMA_VERSION}: \
                 run `douyin-worker migrate` (or paste migrations/*.sql in order into the SQL editor)"
            ))),
            Err(e) => match QueueError::from(e) {
                QueueError::Schema(_) => Err(QueueError::Schema(
                    "the douyin-worker functions are missing from the database: run \
                     `douyin-worker migrate` (or paste migrations/*.sql in order into the SQL editor)"
                        .into(),
                )),
                other => Err(other),
            },
        }
    }

    async fn enqueue(&self, req: &EnqueueRequest) -> Result<EnqueueResult, QueueError> {
        let row: (Option<Uuid>, Option<Uuid>, String) = self
            .db
            .one(
                sqlx::query(
                    "select job_id, video_id, outcome from public.enqueue_download_job(
                         p_video_id => $1, p_url => $2, p_douyin_id => $3, p_payload => $4,
                         p_priority => $5, p_max_attempts => $6, p_force => $7)",
                )
                .bind(req.video_id)
                .bind(req.url.as_deref())
                .bind(req.douyin_id.as_deref())
                .bind(req.payload.as_ref())
                .bind(req.priority)
                .bind(req.max_attempts)
                .bind(req.force),
            )
            .await?;
        let outcome = EnqueueOutcome::parse(&row.2)
            .ok_or_else(|| QueueError::Database(format!("unknown enqueue outcome {:?}", row.2)))?;
        Ok(EnqueueResult {
            job_id: row.0,
            video_id: row.1,
            outcome,
        })
    }

    async fn stats(&self) -> Result<WorkerStats, QueueError> {
        let r: (i64, i64, i64, i64, i64, i64) = self
            .db
            .one(sqlx::query("select * from public.get_worker_stats()"))
            .await?;
        Ok(WorkerStats {
            total_jobs: r.0,
            pending_jobs: r.1,
            running_jobs: r.2,
            completed_jobs: r.3,
            failed_jobs: r.4,
            active_workers: r.5,
        })
    }

    async fn ensure_videos_bucket(&self) -> Result<bool, QueueError> {
        let (exists,): (bool,) = self
            .db
            .one(sqlx::query(
                "select to_regprocedure('public.ensure_videos_bucket()') is not null",
            ))
            .await?;
        if exists {
            self.db
                .rows(sqlx::query("select public.ensure_videos_bucket()"))
                .await?;
        }
        Ok(exists)
    }

    async fn job(&self, id: Uuid) -> Result<Option<JobRecord>, QueueError> {
        let row = self
            .db
            .optional_row(
                sqlx::query("select * from public.list_download_jobs(p_job_id => $1)").bind(id),
            )
            .await?;
        row.map(|r| job_from_row(&r).map_err(QueueError::from))
            .transpose()
    }

    async fn video_marks(
        &self,
        ids: &[Uuid],
    ) -> Result<Vec<super::changes::VideoMark>, QueueError> {
        changes::marks(self, ids).await
    }

    async fn feed_video_changes(
        &self,
        hub: Arc<super::changes::VideoChanges>,
        stop: CancellationToken,
    ) -> Result<(), QueueError> {
        changes::feed(self, hub, stop).await
    }

    async fn video(&self, id: Uuid) -> Result<Option<VideoState>, QueueError> {
        let row = self
            .db
            .optional_row(sqlx::query("select * from public.get_download_video($1)").bind(id))
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(video_from_row(&row)?))
    }

    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, QueueError> {
        let rows = self
            .db
            .rows(
                sqlx::query(
                    "select * from public.list_download_jobs(p_status => $1, p_limit => $2)",
                )
                .bind(filter.status.map(|s| s.as_str()))
                .bind(sql_int(filter.limit)),
            )
            .await?;
        rows.iter()
            .map(|r| job_from_row(r).map_err(QueueError::from))
            .collect()
    }

    async fn retry(&self, target: &RetryTarget) -> Result<Vec<RetryResult>, QueueError> {
        let (ids, all_failed) = match target {
            RetryTarget::Jobs(ids) => (Some(ids.as_slice()), false),
            RetryTarget::AllFailed => (None, true),
        };
        let rows: Vec<(Uuid, Option<Uuid>, Option<Uuid>, String)> = self
            .db
            .all(
                sqlx::query(
                    "select job_id, video_id, new_job_id, outcome
                       from public.retry_download_jobs(p_job_ids => $1, p_all_failed => $2)",
                )
                .bind(ids)
                .bind(all_failed),
            )
            .await?;
        rows.into_iter()
            .map(|(job_id, video_id, new_job_id, outcome)| {
                let outcome = RetryOutcome::parse(&outcome).ok_or_else(|| {
                    QueueError::Database(format!("unknown retry outcome {outcome:?}"))
                })?;
                Ok(RetryResult {
                    job_id,
                    video_id,
                    new_job_id,
                    outcome,
                })
            })
            .collect()
    }

    async fn overview(&self) -> Result<QueueOverview, QueueError> {
        let r = self
            .db
            .row(sqlx::query(
                "select * from public.get_download_queue_overview()",
            ))
            .await?;
        let workers: sqlx::types::Json<Vec<WorkerLoad>> = r.try_get("workers")?;
        Ok(QueueOverview {
            stats: WorkerStats {
                total_jobs: r.try_get("total_jobs")?,
                pending_jobs: r.try_get("pending_jobs")?,
                running_jobs: r.try_get("running_jobs")?,
                completed_jobs: r.try_get("completed_jobs")?,
                failed_jobs: r.try_get("failed_jobs")?,
                active_workers: r.try_get("active_workers")?,
            },
            due_jobs: r.try_get("due_jobs")?,
            oldest_due_seconds: r.try_get("oldest_due_seconds")?,
            workers: workers.0,
        })
    }

    async fn wanted_object_keys(&self, bucket: &str) -> Result<HashSet<String>, QueueError> {
        let keys: Vec<(String,)> = self
            .db
            .all(
                sqlx::query("select object_key from public.list_wanted_object_keys($1)")
                    .bind(bucket),
            )
            .await?;
        Ok(keys.into_iter().map(|(key,)| key).collect())
    }

    async fn video_cover(&self, id: Uuid) -> Result<Option<VideoCover>, QueueError> {
        let q = sqlx::query("select * from public.get_video_cover($1)").bind(id);
        let rows: Vec<(Uuid, Option<String>, Option<String>, bool)> = self.db.all(q).await?;
        Ok(rows
            .into_iter()
            .next()
            .map(|(id, bucket, cover_key, marked_for_deletion)| VideoCover {
                id,
                bucket,
                cover_key,
                marked_for_deletion,
            }))
    }
}
