//! The JSON arguments of the batch functions (`p_leases`, `p_results`, `p_failures`), the
//! same for the direct PostgreSQL backend and the REST backend.

use serde_json::{Value, json};

use super::{Completion, FailedAttempt, Lease, retry_seconds};

/// `[{"job_id", "lease_id"}, ...]`.
pub(crate) fn lease_json(leases: &[Lease]) -> Value {
    Value::Array(
        leases
            .iter()
            .map(|l| json!({"job_id": l.job_id, "lease_id": l.lease_id}))
            .collect(),
    )
}

/// The JSON item `complete_download_jobs` takes for one completion.
pub(crate) fn completion_json(c: &Completion) -> Value {
    json!({
        "job_id": c.lease.job_id,
        "lease_id": c.lease.lease_id,
        "bucket": c.stored.bucket,
        "object_key": c.stored.object_key,
        "storage_etag": c.stored.storage_etag,
        "filesize": c.stored.filesize,
        "mime_type": c.stored.mime_type,
        "storage_provider": c.stored.storage_provider,
        "storage_metadata": c.stored.storage_metadata,
        "douyin_id": c.video.douyin_id,
        "title": c.video.title,
        "thumbnail_url": c.video.thumbnail_url,
        "video_url_direct": c.video.video_url_direct,
        "video_url_meta": c.video.video_url_meta,
        "stored_thumbnail_url": c.video.stored_thumbnail_url,
    })
}

/// The JSON item `fail_download_jobs` takes for one failure.
pub(crate) fn failure_json(f: &FailedAttempt) -> Value {
    json!({
        "job_id": f.lease.job_id,
        "lease_id": f.lease.lease_id,
        "error": f.error,
        "error_code": f.code,
        "error_class": f.class.as_str(),
        "retry_in_seconds": retry_seconds(f),
        "forget_direct_url": f.forget_direct_url,
    })
}
