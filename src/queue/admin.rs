//! The operations side of the queue: what the commands (`enqueue`, `stats`, `jobs`,
//! `retry`, `gc`) and the HTTP server (readiness, the download API, metrics) ask of it, as the
//! [`QueueAdmin`] trait, and the types they exchange.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use tokio_util::sync::CancellationToken;

use super::changes::{VideoChanges, VideoMark};
use super::{QueueError, QueueName};

/// What the commands and the HTTP server need of a queue; every backend implements it.
#[async_trait]
pub trait QueueAdmin: QueueName {
    /// Checks that the schema is there and recent enough; the error says what to do.
    async fn check_schema(&self) -> Result<(), QueueError>;

    /// Queues a download.
    async fn enqueue(&self, req: &EnqueueRequest) -> Result<EnqueueResult, QueueError>;

    /// `get_worker_stats()`.
    async fn stats(&self) -> Result<WorkerStats, QueueError>;

    /// Calls the application's `ensure_videos_bucket()` (storage policies on Supabase) where
    /// it exists; returns whether it was called.
    async fn ensure_videos_bucket(&self) -> Result<bool, QueueError>;

    /// One job with its video's download fields, if it exists.
    async fn job(&self, id: Uuid) -> Result<Option<JobRecord>, QueueError>;

    /// A video's download state, if the video exists.
    async fn video(&self, id: Uuid) -> Result<Option<VideoState>, QueueError>;

    /// Jobs, newest first.
    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, QueueError>;

    /// Requeues failed jobs (a new job row per video; the failed row stays as history).
    async fn retry(&self, target: &RetryTarget) -> Result<Vec<RetryResult>, QueueError>;

    /// The queue at a glance.
    async fn overview(&self) -> Result<QueueOverview, QueueError>;

    /// The object keys in `bucket` that videos still want: every `videos.object_key` of a
    /// video not marked for deletion whose `videos.bucket` is `bucket` or unset, whatever
    /// its status.
    async fn wanted_object_keys(&self, bucket: &str) -> Result<HashSet<String>, QueueError>;

    /// What a poll compares for each of these videos (those that exist), in one read where
    /// the backend can (the default asks for each video).
    async fn video_marks(&self, ids: &[Uuid]) -> Result<Vec<VideoMark>, QueueError> {
        let mut marks = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(v) = self.video(*id).await? {
                marks.push(VideoMark {
                    id: v.id,
                    status: v.status,
                    download_progress: v.download_progress,
                    active_job_status: v.active_job_id.and(v.latest_job_status),
                });
            }
        }
        Ok(marks)
    }

    /// Wakes `hub`'s watchers when their videos change, until `stop` (see `changes`). The
    /// default polls every `hub.poll_interval()`; an error means no feed could start (the
    /// caller then polls).
    async fn feed_video_changes(
        &self,
        hub: Arc<VideoChanges>,
        stop: CancellationToken,
    ) -> Result<(), QueueError> {
        super::changes::poll(self, &hub, &stop).await;
        Ok(())
    }

    /// Where the video's cover is stored (`get_video_cover`), if the video exists; a merged
    /// row answers as the row it was merged into.
    async fn video_cover(&self, id: Uuid) -> Result<Option<VideoCover>, QueueError>;
}

/// Where a video's cover is stored: `storage_metadata.cover.key` in the video's bucket (an
/// image post's cover is its first picture, the video's own object).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoCover {
    /// `videos.id` (the row merged into, for a merged row).
    pub id: Uuid,
    /// `videos.bucket`.
    pub bucket: Option<String>,
    /// The cover's object key; `None` when no cover is stored.
    pub cover_key: Option<String>,
    /// `videos.marked_for_deletion`.
    pub marked_for_deletion: bool,
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

/// A video's download state, as the download API shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoState {
    /// `videos.id`.
    pub id: Uuid,
    /// `videos.douyin_id`.
    pub douyin_id: Option<String>,
    /// `videos.title`.
    pub title: Option<String>,
    /// `videos.status` (`new`, `queued`, `pending`, `downloading`, `running`, `uploaded`,
    /// `processed`, `ready`, `failed`).
    pub status: String,
    /// `videos.attempts`.
    pub attempts: i32,
    /// `videos.last_error`.
    pub last_error: Option<String>,
    /// `videos.download_progress` (percent).
    pub download_progress: Option<i16>,
    /// `videos.marked_for_deletion`.
    pub marked_for_deletion: bool,
    /// `videos.bucket`.
    pub bucket: Option<String>,
    /// `videos.object_key`.
    pub object_key: Option<String>,
    /// `videos.filesize`.
    pub filesize: Option<i64>,
    /// `videos.mime_type`.
    pub mime_type: Option<String>,
    /// The pending or running job, if any.
    pub active_job_id: Option<Uuid>,
    /// The latest job's status, if the video ever had one.
    pub latest_job_status: Option<String>,
    /// The latest job's `last_error_class` (`transient`, `permanent`, `drift`), if an
    /// attempt of it failed: a pending job waiting for its retry keeps the class of its last
    /// failure; a completed job has none. The latest job is the active one, else the newest.
    pub latest_error_class: Option<String>,
    /// The latest job's id, if the video ever had one.
    #[serde(default)]
    pub latest_job_id: Option<Uuid>,
    /// When the latest job was queued: the download API queues no new job for a video
    /// within `API_RETRY_COOLDOWN_SECONDS` of it.
    #[serde(default)]
    pub latest_job_created_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The latest job's `last_error_code`, if an attempt of it failed: the download API
    /// chooses its public failure message by class and code.
    #[serde(default)]
    pub latest_error_code: Option<String>,
}

/// The status of a `download_jobs` row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting to be claimed (due now or later).
    Pending,
    /// Held by a worker under a lease.
    Running,
    /// Stored; the video is ready.
    Completed,
    /// Failed for good (a permanent error, or out of attempts).
    Failed,
}

impl JobStatus {
    /// Every status, in life-cycle order.
    pub(crate) const ALL: [JobStatus; 4] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
    ];

    /// The value of `download_jobs.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job status that does not exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status {0:?}: expected pending, running, completed or failed")]
pub struct UnknownJobStatus(pub String);

impl std::str::FromStr for JobStatus {
    type Err = UnknownJobStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownJobStatus(s.to_string()))
    }
}

/// Which jobs `jobs` lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// At most this many, newest first.
    pub limit: u32,
}

impl Default for JobFilter {
    /// Every status, the 50 newest.
    fn default() -> Self {
        Self {
            status: None,
            limit: 50,
        }
    }
}

/// Which jobs `retry` requeues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryTarget {
    /// These jobs, in this order.
    Jobs(Vec<Uuid>),
    /// Every failed job that is the latest job of its video (so the video has no active job),
    /// whose video is neither stored nor marked for deletion; oldest first.
    AllFailed,
}

/// What retrying one job did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOutcome {
    /// A new pending job was queued for its video.
    Queued,
    /// Its video already has an active job; none was added.
    Duplicate,
    /// The job is not failed (pending, running or completed); nothing changed.
    NotFailed,
    /// Its video is marked for deletion; nothing was queued.
    MarkedForDeletion,
    /// Its video was stored since, or has a newer job (completed or failed); nothing was
    /// queued. Retry the newer job instead, or `enqueue --force` the video.
    Superseded,
    /// No job has that id.
    NotFound,
}

impl RetryOutcome {
    /// Parses the outcome column of `retry_download_jobs`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "duplicate" => Self::Duplicate,
            "not_failed" => Self::NotFailed,
            "marked_for_deletion" => Self::MarkedForDeletion,
            "superseded" => Self::Superseded,
            "not_found" => Self::NotFound,
            _ => return None,
        })
    }

    /// The outcome as `retry_download_jobs` and `--json` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Duplicate => "duplicate",
            Self::NotFailed => "not_failed",
            Self::MarkedForDeletion => "marked_for_deletion",
            Self::Superseded => "superseded",
            Self::NotFound => "not_found",
        }
    }
}

/// The result of retrying one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryResult {
    /// The job asked for.
    pub job_id: Uuid,
    /// Its video, if the job exists.
    pub video_id: Option<Uuid>,
    /// The new (or already active) job.
    pub new_job_id: Option<Uuid>,
    /// What happened.
    pub outcome: RetryOutcome,
}

/// Running jobs of one worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerLoad {
    /// The worker.
    pub worker_id: String,
    /// Jobs it holds.
    pub running: i64,
}

/// `stats`: `get_worker_stats()` plus what an operator asks next.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueOverview {
    /// The `get_worker_stats()` figures.
    pub stats: WorkerStats,
    /// Pending jobs due now.
    pub due_jobs: i64,
    /// Seconds the oldest due job has waited, if any is due.
    pub oldest_due_seconds: Option<f64>,
    /// Running jobs per worker, busiest first.
    pub workers: Vec<WorkerLoad>,
}
