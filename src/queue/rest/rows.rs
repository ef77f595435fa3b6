//! The rows the REST API's RPC answers, as serde reads them, and their queue types.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::queue::{ClaimedJob, Lease, VideoRow, WorkerLoad, WorkerStats};

/// A row of `claim_download_jobs`.
#[derive(Deserialize)]
pub(super) struct ClaimRow {
    pub(super) id: Uuid,
    pub(super) video_id: Uuid,
    pub(super) lease_id: Uuid,
    pub(super) lease_expires_at: DateTime<Utc>,
    pub(super) attempts: i32,
    pub(super) max_attempts: i32,
    pub(super) priority: i32,
    pub(super) payload: Option<Value>,
    pub(super) scheduled_at: DateTime<Utc>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) douyin_id: Option<String>,
    pub(super) video_url: Option<String>,
    pub(super) title: Option<String>,
    pub(super) thumbnail_url: Option<String>,
    pub(super) video_url_direct: Option<String>,
    pub(super) video_url_meta: Option<Value>,
    pub(super) marked_for_deletion: Option<bool>,
}

impl From<ClaimRow> for ClaimedJob {
    fn from(r: ClaimRow) -> Self {
        ClaimedJob {
            lease: Lease {
                job_id: r.id,
                lease_id: r.lease_id,
            },
            video_id: r.video_id,
            lease_expires_at: r.lease_expires_at,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            priority: r.priority,
            payload: r.payload,
            scheduled_at: r.scheduled_at,
            created_at: r.created_at,
            video: VideoRow {
                douyin_id: r.douyin_id,
                video_url: r.video_url,
                title: r.title,
                thumbnail_url: r.thumbnail_url,
                video_url_direct: r.video_url_direct,
                video_url_meta: r.video_url_meta,
                marked_for_deletion: r.marked_for_deletion.unwrap_or(false),
            },
        }
    }
}

#[derive(Deserialize)]
pub(super) struct OutcomeRow {
    pub(super) job_id: Uuid,
    pub(super) outcome: String,
    #[serde(default)]
    pub(super) scheduled_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
pub(super) struct LeaseRow {
    pub(super) job_id: Uuid,
    pub(super) lease_id: Uuid,
}

#[derive(Deserialize)]
pub(super) struct RescueRow {
    pub(super) job_id: Uuid,
    pub(super) outcome: String,
    pub(super) worker_id: Option<String>,
    pub(super) video_id: Uuid,
    pub(super) douyin_id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct EnqueueRow {
    pub(super) job_id: Option<Uuid>,
    pub(super) video_id: Option<Uuid>,
    pub(super) outcome: String,
}

/// A row of `retry_download_jobs`.
#[derive(Deserialize)]
pub(super) struct RetryRow {
    pub(super) job_id: Uuid,
    pub(super) video_id: Option<Uuid>,
    pub(super) new_job_id: Option<Uuid>,
    pub(super) outcome: String,
}

/// The row of `get_download_queue_overview`.
#[derive(Deserialize)]
pub(super) struct OverviewRow {
    #[serde(flatten)]
    pub(super) stats: WorkerStats,
    pub(super) due_jobs: i64,
    pub(super) oldest_due_seconds: Option<f64>,
    pub(super) workers: Vec<WorkerLoad>,
}

/// A row of `list_wanted_object_keys`.
#[derive(Deserialize)]
pub(super) struct KeyRow {
    pub(super) object_key: String,
}
