//! A stored video stays available, and one row per video (issue #15, sections 2 and 3), on
//! every backend: a failed, released or rescued job leaves a stored video `ready`; a failure
//! may make the video row forget its cached direct URL; a row whose Douyin id turns out to be
//! another row's is merged into it.

mod api;
pub(crate) mod enqueue;
mod merge;
pub(crate) mod worker;

use std::time::Duration;

use douyin_worker::error::ErrorClass;
use douyin_worker::queue::{
    ClaimedJob, Completion, EnqueueOutcome, EnqueueRequest, FailOutcome, FailedAttempt, Lease,
    StoredObject, VideoUpdate,
};

use crate::support::backends::{Backend, Kind, on_every_backend};

const LEASE: Duration = Duration::from_secs(60);
const ID: &str = "7400000000000000001";
const KEY: &str = "7400000000000000001/7400000000000000001.mp4";
const DIRECT: &str =
    "https://v26-web.douyinvod.com/0123456789abcdef0123456789abcdef/7fffffff/video/tos/cn/a/";

fn completion(lease: Lease) -> Completion {
    Completion {
        lease,
        stored: StoredObject {
            storage_provider: "test".into(),
            bucket: "videos".into(),
            object_key: KEY.into(),
            storage_etag: Some("etag-1".into()),
            filesize: 1234,
            mime_type: "video/mp4".into(),
            storage_metadata: serde_json::json!({"sha256": "ab"}),
        },
        video: VideoUpdate {
            video_url_direct: Some(DIRECT.into()),
            video_url_meta: Some(serde_json::json!({"candidate": {"data_size": 1234}})),
            ..Default::default()
        },
    }
}

fn failure(lease: Lease, class: ErrorClass, forget: Option<&str>) -> FailedAttempt {
    FailedAttempt {
        lease,
        error: "Douyin announced 1234 bytes, the CDN sent 99".into(),
        code: "size-mismatch".into(),
        class,
        retry_in: (class != ErrorClass::Permanent).then_some(Duration::ZERO),
        forget_direct_url: forget.map(str::to_owned),
    }
}

/// Queues, claims and completes the video `ID`; returns its video id.
async fn stored_video(b: &Backend) -> uuid::Uuid {
    b.enqueue(ID).await;
    let job = claim_one(b, "w1").await;
    b.queue
        .complete("w1", &[completion(job.lease)])
        .await
        .unwrap();
    job.video_id
}

async fn claim_one(b: &Backend, worker: &str) -> ClaimedJob {
    let mut jobs = b.queue.claim(worker, 1, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 1, "one due job");
    jobs.remove(0)
}

/// `enqueue --force` of a stored video, with `max_attempts`.
async fn force(b: &Backend, max_attempts: i32) -> uuid::Uuid {
    let r = b
        .queue
        .enqueue(&EnqueueRequest {
            douyin_id: Some(ID.into()),
            force: true,
            max_attempts: Some(max_attempts),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.outcome, EnqueueOutcome::Queued);
    r.job_id.unwrap()
}

on_every_backend!(
    a_failed_forced_download_leaves_the_stored_video_ready,
    a_released_or_rescued_job_leaves_the_stored_video_ready,
    a_failure_forgets_the_cached_direct_url_it_names,
);

async fn a_failed_forced_download_leaves_the_stored_video_ready(kind: Kind) {
    let b = Backend::new(kind).await;
    let video = stored_video(&b).await;

    // Queued again by force: the file is still there, the video stays ready.
    let job_id = force(&b, 5).await;
    let state = b.queue.video(video).await.unwrap().unwrap();
    assert_eq!(state.status, "ready");
    assert_eq!(state.active_job_id, Some(job_id));

    // An attempt fails with attempts left: the video stays ready while the retry waits.
    let job = claim_one(&b, "w2").await;
    assert_eq!(
        b.queue.job(job_id).await.unwrap().unwrap().video_status,
        "downloading"
    );
    let out = b
        .queue
        .fail("w2", &[failure(job.lease, ErrorClass::Transient, None)])
        .await
        .unwrap();
    assert!(
        matches!(out[0].1, FailOutcome::RetryScheduled(_)),
        "{out:?}"
    );
    let state = b.queue.video(video).await.unwrap().unwrap();
    assert_eq!(state.status, "ready");
    assert_eq!(state.object_key.as_deref(), Some(KEY));
    assert_eq!(state.download_progress, Some(100));

    // It fails for good: the job row keeps the failure, the video stays ready and stored.
    let job = claim_one(&b, "w2").await;
    let out = b
        .queue
        .fail("w2", &[failure(job.lease, ErrorClass::Permanent, None)])
        .await
        .unwrap();
    assert_eq!(out[0].1, FailOutcome::Failed);
    let rec = b.queue.job(job_id).await.unwrap().unwrap();
    assert_eq!(rec.status, "failed");
    assert_eq!(rec.last_error_code.as_deref(), Some("size-mismatch"));
    assert_eq!(rec.video_status, "ready");
    assert_eq!(rec.video_object_key.as_deref(), Some(KEY));
    assert_eq!(
        rec.video_last_error, None,
        "the failure stays on the job row"
    );
    let state = b.queue.video(video).await.unwrap().unwrap();
    assert_eq!(state.status, "ready");
    assert_eq!(state.filesize, Some(1234));

    // Still stored: enqueue without --force says so.
    let again = b
        .queue
        .enqueue(&EnqueueRequest {
            douyin_id: Some(ID.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(again.outcome, EnqueueOutcome::Ready);
}

async fn a_released_or_rescued_job_leaves_the_stored_video_ready(kind: Kind) {
    let b = Backend::new(kind).await;
    let video = stored_video(&b).await;

    force(&b, 1).await;
    let job = claim_one(&b, "w2").await;
    b.queue.release("w2", &[job.lease]).await.unwrap();
    let state = b.queue.video(video).await.unwrap().unwrap();
    assert_eq!(
        (state.status.as_str(), state.download_progress),
        ("ready", Some(100))
    );

    // A lease that runs out on the last attempt fails the job, not the video.
    let job = b
        .queue
        .claim("w3", 1, Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(job.video_id, video);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let rescued = b.queue.rescue(10).await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert!(!rescued[0].requeued);
    let rec = b.queue.job(job.id()).await.unwrap().unwrap();
    assert_eq!(rec.status, "failed");
    assert_eq!(rec.video_status, "ready");
    assert_eq!(rec.video_last_error, None);
}

async fn a_failure_forgets_the_cached_direct_url_it_names(kind: Kind) {
    let b = Backend::new(kind).await;
    stored_video(&b).await;
    force(&b, 5).await;

    // A failure naming another URL leaves the cache alone.
    let job = claim_one(&b, "w2").await;
    assert_eq!(job.video.video_url_direct.as_deref(), Some(DIRECT));
    b.queue
        .fail(
            "w2",
            &[failure(
                job.lease,
                ErrorClass::Transient,
                Some("https://v3-web.douyinvod.com/other/"),
            )],
        )
        .await
        .unwrap();
    let job = claim_one(&b, "w2").await;
    assert_eq!(job.video.video_url_direct.as_deref(), Some(DIRECT));
    assert!(job.video.video_url_meta.is_some());

    // The file the cached URL gave failed the size check: the next attempt has no cache.
    b.queue
        .fail(
            "w2",
            &[failure(job.lease, ErrorClass::Transient, Some(DIRECT))],
        )
        .await
        .unwrap();
    let job = claim_one(&b, "w2").await;
    assert_eq!(job.video.video_url_direct, None);
    assert_eq!(job.video.video_url_meta, None);
}
