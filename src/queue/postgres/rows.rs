//! The rows of the SQL functions' answers, read into the queue's records.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::super::{ClaimedJob, JobRecord, Lease, VideoRow, VideoState};

pub(super) fn claimed_from_row(row: &PgRow) -> Result<ClaimedJob, sqlx::Error> {
    Ok(ClaimedJob {
        lease: Lease {
            job_id: row.try_get("id")?,
            lease_id: row.try_get("lease_id")?,
        },
        video_id: row.try_get("video_id")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        priority: row.try_get("priority")?,
        payload: row.try_get("payload")?,
        scheduled_at: row.try_get("scheduled_at")?,
        created_at: row.try_get("created_at")?,
        video: VideoRow {
            douyin_id: row.try_get("douyin_id")?,
            video_url: row.try_get("video_url")?,
            title: row.try_get("title")?,
            thumbnail_url: row.try_get("thumbnail_url")?,
            video_url_direct: row.try_get("video_url_direct")?,
            video_url_meta: row.try_get("video_url_meta")?,
            marked_for_deletion: row
                .try_get::<Option<bool>, _>("marked_for_deletion")?
                .unwrap_or(false),
        },
    })
}

pub(super) fn job_from_row(r: &PgRow) -> Result<JobRecord, sqlx::Error> {
    Ok(JobRecord {
        id: r.try_get("id")?,
        video_id: r.try_get("video_id")?,
        status: r.try_get("status")?,
        worker_id: r.try_get("worker_id")?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        priority: r.try_get("priority")?,
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
        video_douyin_id: r.try_get("video_douyin_id")?,
    })
}

pub(super) fn video_from_row(r: &PgRow) -> Result<VideoState, sqlx::Error> {
    Ok(VideoState {
        id: r.try_get("id")?,
        douyin_id: r.try_get("douyin_id")?,
        title: r.try_get("title")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        download_progress: r.try_get("download_progress")?,
        marked_for_deletion: r.try_get("marked_for_deletion")?,
        bucket: r.try_get("bucket")?,
        object_key: r.try_get("object_key")?,
        filesize: r.try_get("filesize")?,
        mime_type: r.try_get("mime_type")?,
        active_job_id: r.try_get("active_job_id")?,
        latest_job_status: r.try_get("latest_job_status")?,
        latest_error_class: r.try_get("latest_error_class")?,
        latest_job_id: r.try_get("latest_job_id")?,
        latest_job_created_at: r.try_get("latest_job_created_at")?,
        latest_error_code: r.try_get("latest_error_code")?,
    })
}
