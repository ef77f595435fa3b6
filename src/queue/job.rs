//! What the worker's life cycle hands the queue and gets back: the claimed job and its video
//! row, what a finished or failed attempt records, and what each write did.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::Lease;
use crate::error::ErrorClass;

/// What the worker knows about the video a job is for, read in the same round trip as the claim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoRow {
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
    pub video: VideoRow,
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
    /// The lasting URL of the cover stored beside the video: replaces the thumbnail whatever
    /// the row holds (Douyin's cover URLs expire).
    #[serde(default)]
    pub stored_thumbnail_url: Option<String>,
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
pub struct FailedAttempt {
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
    /// The cached direct URL (`videos.video_url_direct`) this attempt used, when the file it
    /// gave failed the size check or validation: the video row forgets it (if it still holds
    /// it), so the next attempt extracts afresh.
    pub forget_direct_url: Option<String>,
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
    pub(crate) fn from_sql(outcome: &str) -> Self {
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
    pub(crate) fn from_sql(outcome: &str, scheduled_at: Option<DateTime<Utc>>) -> Self {
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
    pub(crate) fn from_sql(outcome: &str) -> Self {
        if outcome == "released" {
            Self::Released
        } else {
            Self::LeaseLost
        }
    }
}

/// What recording a Douyin id learnt by extraction did (`learn_douyin_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// The job's video row has the id (it had one, or now has it): carry on.
    Kept,
    /// Another row had the id: the job's row was merged into it, and the job now works for
    /// that row (given): carry on.
    Moved(Uuid),
    /// Another row had the id and is stored, marked for deletion or has a job of its own: the
    /// job's row was merged into it (given) and the job ended, `completed` with the code
    /// `merged`. Stop: nothing more to download or record.
    Merged(Uuid),
    /// The lease had expired and the job was taken over: nothing was changed.
    LeaseLost,
}

impl Learned {
    /// Reads the `outcome` and `video_id` columns of `learn_douyin_id`.
    pub(crate) fn from_sql(outcome: &str, video_id: Option<Uuid>) -> Self {
        match (outcome, video_id) {
            ("kept", _) => Self::Kept,
            ("moved", Some(id)) => Self::Moved(id),
            ("merged", Some(id)) => Self::Merged(id),
            _ => Self::LeaseLost,
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

/// The `retry_in_seconds` of a failed attempt, as the SQL functions take it.
pub(crate) fn retry_seconds(f: &FailedAttempt) -> Option<f64> {
    if f.class.is_retryable() {
        f.retry_in.map(|d| d.as_secs_f64())
    } else {
        None
    }
}
