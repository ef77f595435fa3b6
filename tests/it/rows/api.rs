//! The download API on a stored video: a missing object is reported as such and can be
//! retried, and a failed re-download leaves the stored file served.

use std::sync::Arc;

use douyin_worker::error::ErrorClass;
use douyin_worker::http::ServerLimits;
use douyin_worker::queue::Queue;
use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::storage::ObjectBackend;
use douyin_worker::storage::local::LocalFolder;
use fakes::pg::fresh_pg;

use crate::api::{
    active_jobs, api_options, fail_for_good, get, insert_video, mark_stored, post, serve_with,
};

#[tokio::test]
async fn a_stored_video_whose_file_went_missing_is_reported_and_retried() {
    let db = fresh_pg().await;
    let store = tempfile::tempdir().unwrap();
    let q = PgQueue::from_pool(db.pool.clone());
    let queue: Arc<dyn Queue> = Arc::new(PgQueue::from_pool(db.pool.clone()));
    let storage: Arc<dyn ObjectBackend> = Arc::new(LocalFolder::new(store.path(), "videos"));
    let server = serve_with(queue, storage, api_options(&[]), ServerLimits::default()).await;
    let url = |id: &uuid::Uuid, tail: &str| format!("{}/api/videos/{id}/{tail}", server.base);

    // The row says ready; the object is gone (deleted by hand, a lost bucket).
    let video = insert_video(&db.pool, "7400000000000000007").await;
    let key = "7400000000000000007/7400000000000000007.mp4";
    mark_stored(&db.pool, store.path(), video, key, None).await;
    let (status, body) = get(&url(&video, "download")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (404, Some("missing")),
        "{body}"
    );
    assert_eq!(body["retry_available"], true);
    assert_eq!(
        active_jobs(&db.pool, video).await,
        0,
        "a GET queues nothing"
    );

    // The API's retry downloads it again.
    let (status, body) = post(&url(&video, "retry")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("queued")),
        "{body}"
    );
    assert_eq!(active_jobs(&db.pool, video).await, 1);
    let (status, body) = get(&url(&video, "download")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("queued")),
        "{body}"
    );
    let (status, _) = post(&url(&video, "retry")).await;
    assert_eq!(status, 202);
    assert_eq!(
        active_jobs(&db.pool, video).await,
        1,
        "a second retry adds nothing"
    );

    // Douyin deleted the video meanwhile: the re-download fails for good. The row stays
    // stored, the file is still missing, and a retry cannot help.
    fail_for_good(&q, ErrorClass::Permanent, "the video was deleted on Douyin").await;
    let (status, body) = get(&url(&video, "download")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (404, Some("missing")),
        "{body}"
    );
    assert_eq!(body["retry_available"], false);
    let (status, body) = post(&url(&video, "retry")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (409, Some("missing")),
        "{body}"
    );
    assert_eq!(active_jobs(&db.pool, video).await, 0);
}

#[tokio::test]
async fn a_failed_forced_download_leaves_the_stored_file_served() {
    let db = fresh_pg().await;
    let store = tempfile::tempdir().unwrap();
    let q = PgQueue::from_pool(db.pool.clone());
    let queue: Arc<dyn Queue> = Arc::new(PgQueue::from_pool(db.pool.clone()));
    let storage: Arc<dyn ObjectBackend> = Arc::new(LocalFolder::new(store.path(), "videos"));
    let server = serve_with(queue, storage, api_options(&[]), ServerLimits::default()).await;
    let url = |id: &uuid::Uuid| format!("{}/api/videos/{id}/download", server.base);

    let video = insert_video(&db.pool, "7400000000000000008").await;
    let key = "7400000000000000008/7400000000000000008.mp4";
    mark_stored(
        &db.pool,
        store.path(),
        video,
        key,
        Some(b"\0\0\0\x18ftypisom bytes"),
    )
    .await;
    use douyin_worker::queue::{EnqueueOutcome, EnqueueRequest, QueueAdmin};
    let forced = q
        .enqueue(&EnqueueRequest {
            video_id: Some(video),
            force: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(forced.outcome, EnqueueOutcome::Queued);
    // Queued again: the file is still served meanwhile.
    let (status, body) = get(&url(&video)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    fail_for_good(&q, ErrorClass::Transient, "the CDN timed out").await;
    let (status, body) = get(&url(&video)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    assert_eq!(body["filename"], "7400000000000000008.mp4");
}
