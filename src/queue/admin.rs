//! The types of the operations side of the queue: a video's download state for the UI's API,
//! job listings, retries and the queue overview (`douyin-worker stats`, `jobs`, `retry`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::WorkerStats;

/// A video's download state, as the download API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    pub const ALL: [JobStatus; 4] = [
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
