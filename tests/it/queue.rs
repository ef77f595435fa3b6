//! The queue life cycle, the same on every backend.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use douyin_worker::error::ErrorClass;
use douyin_worker::queue::{
    CompleteOutcome, Completion, EnqueueOutcome, EnqueueRequest, FailOutcome, FailedAttempt,
    JobSignal, Lease, ReleaseOutcome, Rescued, StoredObject, VideoUpdate,
};
use tokio_util::sync::CancellationToken;

use crate::support::backends::{Backend, Kind, on_every_backend, on_push_backends};

const LEASE: Duration = Duration::from_secs(60);

fn stored(key: &str) -> StoredObject {
    StoredObject {
        storage_provider: "test".into(),
        bucket: "videos".into(),
        object_key: key.into(),
        storage_etag: Some("etag-1".into()),
        filesize: 1234,
        mime_type: "video/mp4".into(),
        storage_metadata: serde_json::json!({"sha256": "ab"}),
    }
}

fn completion(lease: Lease, key: &str) -> Completion {
    Completion {
        lease,
        stored: stored(key),
        video: VideoUpdate::default(),
    }
}

fn failure(lease: Lease, class: ErrorClass, retry_in: Option<Duration>) -> FailedAttempt {
    FailedAttempt {
        lease,
        error: "cdn said 503".into(),
        code: "http-503".into(),
        class,
        retry_in,
        forget_direct_url: None,
    }
}

on_every_backend!(
    eight_concurrent_claimers_claim_each_of_2000_jobs_exactly_once,
    an_expired_lease_is_rescued_and_claimed_again,
    a_stale_worker_is_fenced_off_after_its_job_was_taken_over,
    transient_failures_back_off_until_attempts_run_out,
    permanent_failures_fail_at_once,
    one_active_job_per_video,
    simultaneous_enqueues_of_one_video_make_one_active_job,
    claim_order_is_priority_then_due_time_then_age,
    release_puts_the_job_back_without_counting_the_attempt,
    completion_fills_the_video_row,
    completion_fills_only_what_the_video_row_lacks,
    a_batch_of_completions_with_one_bad_entry_records_nothing,
    an_empty_failure_message_is_recorded_as_unknown_error,
    progress_reaches_the_job_and_video_rows,
    claim_returns_only_due_jobs_and_respects_the_limit,
);

mod push {
    use super::*;
    on_push_backends!(a_new_job_wakes_a_subscribed_signal);
}

async fn eight_concurrent_claimers_claim_each_of_2000_jobs_exactly_once(kind: Kind) {
    let b = Backend::new(kind).await;
    let ids: HashSet<_> = b.enqueue_many(2000).await.into_iter().collect();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let q = b.queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let jobs = q.claim(&format!("w{w}"), 7, LEASE).await.unwrap();
                if jobs.is_empty() {
                    return mine;
                }
                mine.extend(jobs.into_iter().map(|j| j.id()));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        for id in t.await.unwrap() {
            total += 1;
            assert!(seen.insert(id), "job {id} claimed twice");
        }
    }
    assert_eq!(total, 2000);
    assert_eq!(seen, ids);
    let stats = b.queue.stats().await.unwrap();
    assert_eq!(stats.running_jobs, 2000);
    assert_eq!(stats.pending_jobs, 0);
    assert_eq!(stats.active_workers, 8);
}

async fn an_expired_lease_is_rescued_and_claimed_again(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b.enqueue("7400000000000000001").await;
    let jobs = b
        .queue
        .claim("w1", 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert!(
        b.queue.rescue(100).await.unwrap().is_empty(),
        "lease not yet expired"
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let rescued = b.queue.rescue(100).await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert!(rescued[0].requeued);
    assert_eq!(rescued[0].worker_id.as_deref(), Some("w1"));
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!(rec.status, "pending");
    assert_eq!(rec.last_error_code.as_deref(), Some("lease-expired"));
    assert_eq!(rec.video_status, "pending");
    let again = b.queue.claim("w2", 10, LEASE).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_ne!(again[0].lease.lease_id, jobs[0].lease.lease_id);

    // Out of attempts, an expired lease fails the job instead.
    let id = b
        .enqueue_with(EnqueueRequest {
            douyin_id: Some("7400000000000000002".into()),
            max_attempts: Some(1),
            ..Default::default()
        })
        .await;
    b.queue
        .claim("w3", 10, Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let rescued = b.queue.rescue(100).await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert!(!rescued[0].requeued);
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!(rec.status, "failed");
    assert_eq!(rec.video_status, "failed");
    assert!(rec.video_last_error.unwrap().contains("lease expired"));
}

async fn a_stale_worker_is_fenced_off_after_its_job_was_taken_over(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b.enqueue("7400000000000000001").await;
    let q = &b.queue;
    let stale = q.claim("w1", 1, LEASE).await.unwrap()[0].clone();
    let lease = stale.lease;

    // A heartbeat renews the holder's lease (once, however often it is named); another
    // worker's name, a forged lease or none renew nothing.
    let renewed = q
        .heartbeat("w1", &[lease, lease], Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(renewed, vec![lease]);
    let expires = q.job(id).await.unwrap().unwrap().lease_expires_at.unwrap();
    assert!(expires > stale.lease_expires_at + chrono::Duration::seconds(500));
    assert!(q.heartbeat("w2", &[lease], LEASE).await.unwrap().is_empty());
    let forged = Lease {
        job_id: id,
        lease_id: uuid::Uuid::new_v4(),
    };
    assert!(
        q.heartbeat("w1", &[forged], LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(q.heartbeat("w1", &[], LEASE).await.unwrap().is_empty());

    // The lease runs out: the rescue puts the job back, saying whose lease it was.
    b.expire_lease(id).await;
    let rescued = q.rescue(10).await.unwrap();
    assert_eq!(
        rescued,
        vec![Rescued {
            job_id: id,
            video_id: stale.video_id,
            douyin_id: stale.video.douyin_id.clone(),
            requeued: true,
            worker_id: Some("w1".into()),
        }]
    );
    let rec = q.job(id).await.unwrap().unwrap();
    assert_eq!(
        (rec.status.as_str(), rec.worker_id.as_deref()),
        ("pending", None)
    );
    assert_eq!(
        rec.last_error.as_deref(),
        Some("lease expired: worker w1 stopped renewing it during attempt 1 of 5")
    );
    assert_eq!(rec.last_error_code.as_deref(), Some("lease-expired"));
    assert_eq!(rec.last_error_class.as_deref(), Some("transient"));
    assert_eq!(rec.video_status, "pending");
    assert_eq!(rec.video_in_progress_by, None);
    // The old holder has lost it, before and after another worker takes it.
    assert!(q.heartbeat("w1", &[lease], LEASE).await.unwrap().is_empty());
    let fresh = q.claim("w2", 1, LEASE).await.unwrap()[0].clone();
    assert_eq!((fresh.id(), fresh.attempts), (id, 2));
    assert_ne!(fresh.lease.lease_id, lease.lease_id);

    assert!(
        q.heartbeat("w1", &[stale.lease], LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!q.progress("w1", &stale.lease, 10, Some(100)).await.unwrap());
    assert_eq!(
        q.complete("w1", &[completion(stale.lease, "k")])
            .await
            .unwrap(),
        vec![(id, CompleteOutcome::LeaseLost)]
    );
    assert_eq!(
        q.fail("w1", &[failure(stale.lease, ErrorClass::Permanent, None)])
            .await
            .unwrap(),
        vec![(id, FailOutcome::LeaseLost)]
    );
    assert_eq!(
        q.release("w1", &[stale.lease]).await.unwrap(),
        vec![(id, ReleaseOutcome::LeaseLost)]
    );
    // The same lease under another worker's name is refused too.
    assert!(
        q.heartbeat("w1", &[fresh.lease], LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let rec = q.job(id).await.unwrap().unwrap();
    assert_eq!(rec.status, "running");
    assert_eq!(rec.worker_id.as_deref(), Some("w2"));

    assert_eq!(
        q.heartbeat("w2", &[fresh.lease], LEASE).await.unwrap(),
        vec![fresh.lease]
    );
    assert_eq!(
        q.complete("w2", &[completion(fresh.lease, "k")])
            .await
            .unwrap(),
        vec![(id, CompleteOutcome::Completed)]
    );
    assert_eq!(q.job(id).await.unwrap().unwrap().status, "completed");
}

async fn transient_failures_back_off_until_attempts_run_out(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b
        .enqueue_with(EnqueueRequest {
            douyin_id: Some("7400000000000000001".into()),
            max_attempts: Some(3),
            ..Default::default()
        })
        .await;
    let q = &b.queue;
    // Attempt 1 fails with a long backoff: not claimable until then; both rows say when.
    let job = q.claim("w", 1, LEASE).await.unwrap().remove(0);
    let before = chrono::Utc::now();
    let r = q
        .fail(
            "w",
            &[failure(
                job.lease,
                ErrorClass::Transient,
                Some(Duration::from_secs(600)),
            )],
        )
        .await
        .unwrap();
    let FailOutcome::RetryScheduled(at) = r[0].1 else {
        panic!("{r:?}")
    };
    assert!(
        at > before + chrono::Duration::seconds(590)
            && at < before + chrono::Duration::seconds(620),
        "{at}"
    );
    let rec = q.job(id).await.unwrap().unwrap();
    assert_eq!(rec.status, "pending");
    assert_eq!(rec.attempts, 1);
    assert_eq!((rec.max_attempts, rec.priority), (3, 0));
    assert_eq!(rec.worker_id, None, "the lease is given up");
    assert_eq!(rec.lease_expires_at, None);
    assert_eq!(rec.finished_at, None);
    assert!((rec.scheduled_at - at).num_milliseconds().abs() < 5);
    assert_eq!(rec.video_in_progress_by, None);
    assert_eq!(rec.video_download_progress, None);
    assert_eq!(rec.video_object_key, None);
    assert_eq!(rec.last_error.as_deref(), Some("cdn said 503"));
    assert_eq!(rec.last_error_code.as_deref(), Some("http-503"));
    assert_eq!(rec.last_error_class.as_deref(), Some("transient"));
    assert_eq!(rec.video_status, "pending");
    assert_eq!(rec.video_attempts, 1);
    assert_eq!(rec.video_last_error.as_deref(), Some("cdn said 503"));
    let next = rec
        .video_next_attempt_at
        .expect("next try on the video row");
    assert!((next - at).num_milliseconds().abs() < 5, "{next} vs {at}");
    assert!(
        q.claim("w", 1, LEASE).await.unwrap().is_empty(),
        "not due yet"
    );

    // Make it due, then attempts 2 and 3 fail; the third is the last.
    b.set_due(id, -1).await;
    let job = q.claim("w", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(job.attempts, 2);
    let rec = q.job(id).await.unwrap().unwrap();
    assert_eq!(rec.video_next_attempt_at, None, "cleared by the claim");
    let r = q
        .fail(
            "w",
            &[failure(job.lease, ErrorClass::Drift, Some(Duration::ZERO))],
        )
        .await
        .unwrap();
    assert!(matches!(r[0].1, FailOutcome::RetryScheduled(_)), "{r:?}");
    let job = q.claim("w", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(job.attempts, 3);
    let r = q
        .fail(
            "w",
            &[failure(
                job.lease,
                ErrorClass::Transient,
                Some(Duration::ZERO),
            )],
        )
        .await
        .unwrap();
    assert_eq!(r[0].1, FailOutcome::Failed);
    let rec = q.job(id).await.unwrap().unwrap();
    assert_eq!(rec.status, "failed");
    assert_eq!(rec.attempts, 3);
    assert!(rec.finished_at.is_some());
    assert_eq!(rec.video_status, "failed");
    assert_eq!(rec.video_attempts, 3);
    assert!(q.claim("w", 1, LEASE).await.unwrap().is_empty());
}

/// A permanent failure (even with a retry time), a failure without a retry time and a failure
/// on the last attempt each end the job for good, in one batch.
async fn permanent_failures_fail_at_once(kind: Kind) {
    let b = Backend::new(kind).await;
    let permanent = b.enqueue("7400000000000000001").await;
    let no_retry_time = b.enqueue("7400000000000000002").await;
    let last_attempt = b
        .enqueue_with(EnqueueRequest {
            douyin_id: Some("7400000000000000003".into()),
            max_attempts: Some(1),
            ..Default::default()
        })
        .await;
    let jobs = b.queue.claim("w", 3, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 3);
    let lease_of = |id| jobs.iter().find(|j| j.id() == id).unwrap().lease;
    let r = b
        .queue
        .fail(
            "w",
            &[
                failure(lease_of(permanent), ErrorClass::Permanent, Some(LEASE)),
                failure(lease_of(no_retry_time), ErrorClass::Transient, None),
                failure(lease_of(last_attempt), ErrorClass::Transient, Some(LEASE)),
            ],
        )
        .await
        .unwrap();
    assert!(r.iter().all(|(_, o)| *o == FailOutcome::Failed), "{r:?}");
    for id in [permanent, no_retry_time, last_attempt] {
        let rec = b.queue.job(id).await.unwrap().unwrap();
        assert_eq!((rec.status.as_str(), rec.attempts), ("failed", 1));
        assert_eq!(rec.worker_id.as_deref(), Some("w"), "who failed it is kept");
        assert_eq!(rec.lease_expires_at, None);
        assert!(rec.finished_at.is_some());
        assert_eq!(rec.video_status, "failed");
        assert_eq!(rec.video_attempts, 1);
        assert_eq!(rec.video_last_error.as_deref(), Some("cdn said 503"));
        assert_eq!(rec.video_next_attempt_at, None);
    }
    let rec = b.queue.job(permanent).await.unwrap().unwrap();
    assert_eq!(rec.last_error_class.as_deref(), Some("permanent"));
    assert_eq!(b.queue.stats().await.unwrap().failed_jobs, 3);
    assert!(b.queue.claim("w", 3, LEASE).await.unwrap().is_empty());
}

async fn an_empty_failure_message_is_recorded_as_unknown_error(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b.enqueue("7400000000000000001").await;
    let job = b.queue.claim("w", 1, LEASE).await.unwrap().remove(0);
    let mut f = failure(job.lease, ErrorClass::Transient, Some(Duration::ZERO));
    f.error.clear();
    let r = b.queue.fail("w", &[f]).await.unwrap();
    assert!(matches!(r[0].1, FailOutcome::RetryScheduled(_)), "{r:?}");
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!(rec.last_error.as_deref(), Some("unknown error"));
    assert_eq!(rec.video_last_error.as_deref(), Some("unknown error"));
    // A retry due at once is claimable at once.
    assert_eq!(b.queue.claim("w", 1, LEASE).await.unwrap()[0].attempts, 2);
    assert_eq!(b.queue.job(uuid::Uuid::new_v4()).await.unwrap(), None);
}

async fn one_active_job_per_video(kind: Kind) {
    let b = Backend::new(kind).await;
    let q = &b.queue;
    let req = EnqueueRequest {
        url: Some("https://www.douyin.com/video/7412345678901234567?previous_page=app".into()),
        ..Default::default()
    };
    let first = q.enqueue(&req).await.unwrap();
    assert_eq!(first.outcome, EnqueueOutcome::Queued);
    // The same video by id, by another link form, and by video id: all duplicates.
    for again in [
        req.clone(),
        EnqueueRequest {
            douyin_id: Some("7412345678901234567".into()),
            ..Default::default()
        },
        EnqueueRequest {
            url: Some("https://www.iesdouyin.com/share/video/7412345678901234567/".into()),
            ..Default::default()
        },
        EnqueueRequest {
            video_id: first.video_id,
            ..Default::default()
        },
    ] {
        let r = q.enqueue(&again).await.unwrap();
        assert_eq!(r.outcome, EnqueueOutcome::Duplicate, "{again:?}");
        assert_eq!(r.job_id, first.job_id);
        assert_eq!(r.video_id, first.video_id);
    }
    assert_eq!(q.stats().await.unwrap().total_jobs, 1);
    // Still one while it runs; once stored, the video is reported ready unless forced.
    let job = q.claim("w", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(
        q.enqueue(&req).await.unwrap().outcome,
        EnqueueOutcome::Duplicate
    );
    q.complete("w", &[completion(job.lease, "k")])
        .await
        .unwrap();
    assert_eq!(
        q.enqueue(&req).await.unwrap().outcome,
        EnqueueOutcome::Ready
    );
    let forced = q
        .enqueue(&EnqueueRequest {
            force: true,
            ..req.clone()
        })
        .await
        .unwrap();
    assert_eq!(forced.outcome, EnqueueOutcome::Queued);
    assert_ne!(forced.job_id, first.job_id);
    // A job that failed for good is not active: the video may be queued again. Its stored
    // file is still there, so that takes --force again.
    let job = q.claim("w", 1, LEASE).await.unwrap().remove(0);
    q.fail("w", &[failure(job.lease, ErrorClass::Permanent, None)])
        .await
        .unwrap();
    assert_eq!(
        q.enqueue(&req).await.unwrap().outcome,
        EnqueueOutcome::Ready
    );
    let after_failure = q
        .enqueue(&EnqueueRequest {
            force: true,
            ..req.clone()
        })
        .await
        .unwrap();
    assert_eq!(after_failure.outcome, EnqueueOutcome::Queued);
    assert_ne!(after_failure.job_id, forced.job_id);
    // Unknown video ids are reported, not created.
    let r = q
        .enqueue(&EnqueueRequest {
            video_id: Some(uuid::Uuid::new_v4()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.outcome, EnqueueOutcome::NotFound);
}

/// Sixteen enqueues of one video at the same moment, by its link, its other link form and
/// its id: one queues the job, every other reports it, none fails, and all name one video.
async fn simultaneous_enqueues_of_one_video_make_one_active_job(kind: Kind) {
    let b = Backend::new(kind).await;
    let forms = [
        EnqueueRequest {
            url: Some("https://www.douyin.com/video/7412345678901234567".into()),
            ..Default::default()
        },
        EnqueueRequest {
            url: Some("https://www.iesdouyin.com/share/video/7412345678901234567/".into()),
            ..Default::default()
        },
        EnqueueRequest {
            douyin_id: Some("7412345678901234567".into()),
            ..Default::default()
        },
    ];
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let q = b.queue.clone();
            let req = forms[i % forms.len()].clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                q.enqueue(&req).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().expect("an enqueue failed"));
    }
    let queued: Vec<_> = answers
        .iter()
        .filter(|a| a.outcome == EnqueueOutcome::Queued)
        .collect();
    assert_eq!(queued.len(), 1, "{answers:?}");
    let (job, video) = (queued[0].job_id, queued[0].video_id);
    for a in &answers {
        assert!(
            a.outcome == EnqueueOutcome::Queued || a.outcome == EnqueueOutcome::Duplicate,
            "{a:?}"
        );
        assert_eq!((a.job_id, a.video_id), (job, video), "{answers:?}");
    }
    let stats = b.queue.stats().await.unwrap();
    assert_eq!((stats.total_jobs, stats.pending_jobs), (1, 1));
}

async fn claim_order_is_priority_then_due_time_then_age(kind: Kind) {
    let b = Backend::new(kind).await;
    let mut ids = Vec::new();
    for (i, p) in [0, 5, 0, 5, 0].into_iter().enumerate() {
        ids.push(
            b.enqueue_with(EnqueueRequest {
                douyin_id: Some(format!("740000000000000000{i}")),
                priority: Some(p),
                ..Default::default()
            })
            .await,
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Due times: job 2 has been due longest, job 3 before job 1.
    b.set_due(ids[2], -30).await;
    b.set_due(ids[3], -20).await;
    let mut claimed = Vec::new();
    for _ in 0..5 {
        claimed.push(b.queue.claim("w", 1, LEASE).await.unwrap().remove(0));
    }
    let order: Vec<_> = claimed.iter().map(|c| c.id()).collect();
    // Priority 5 (job 3 due before job 1), then priority 0 (job 2 due first, then 0 and 4
    // by due time, which equals their age here).
    assert_eq!(order, vec![ids[3], ids[1], ids[2], ids[0], ids[4]]);
    for (c, p) in claimed.iter().zip([5, 5, 0, 0, 0]) {
        assert_eq!(c.priority, p);
        assert_eq!((c.attempts, c.max_attempts), (1, 5));
        assert!(c.lease_expires_at > chrono::Utc::now() + chrono::Duration::seconds(55));
        assert!(
            c.video
                .douyin_id
                .as_deref()
                .is_some_and(|d| d.starts_with("74"))
        );
    }
}

async fn release_puts_the_job_back_without_counting_the_attempt(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b.enqueue("7400000000000000001").await;
    // A first attempt fails and is due again at once: the released one is the second.
    let first = b.queue.claim("w", 1, LEASE).await.unwrap().remove(0);
    b.queue
        .fail(
            "w",
            &[failure(
                first.lease,
                ErrorClass::Transient,
                Some(Duration::ZERO),
            )],
        )
        .await
        .unwrap();
    let job = b.queue.claim("w", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(job.attempts, 2);
    assert!(
        b.queue
            .progress("w", &job.lease, 5, Some(10))
            .await
            .unwrap()
    );
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!(rec.video_status, "downloading");
    assert_eq!(rec.video_in_progress_by.as_deref(), Some("w"));
    assert_eq!(
        b.queue.release("w", &[job.lease]).await.unwrap(),
        vec![(id, ReleaseOutcome::Released)]
    );
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!((rec.status.as_str(), rec.attempts), ("pending", 1));
    assert_eq!(rec.worker_id, None);
    assert_eq!(rec.lease_expires_at, None);
    assert_eq!(rec.progress_bytes, None);
    assert_eq!(rec.video_status, "pending");
    assert_eq!(rec.video_attempts, 1);
    assert_eq!(rec.video_download_progress, None);
    assert_eq!(rec.video_in_progress_by, None);
    // Due now: claimed again, as the second attempt again.
    let again = b.queue.claim("w2", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(again.attempts, 2);
}

async fn completion_fills_the_video_row(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b
        .enqueue_with(EnqueueRequest {
            url: Some("https://v.douyin.com/iRNBho6u/".into()),
            payload: Some(serde_json::json!({"url": "https://v.douyin.com/iRNBho6u/"})),
            ..Default::default()
        })
        .await;
    let job = b.queue.claim("w", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(
        job.video.douyin_id, None,
        "a short link's id is not known yet"
    );
    assert_eq!(
        job.video.video_url.as_deref(),
        Some("https://v.douyin.com/iRNBho6u/")
    );
    assert_eq!(
        job.payload,
        Some(serde_json::json!({"url": "https://v.douyin.com/iRNBho6u/"}))
    );
    let c = Completion {
        lease: job.lease,
        stored: stored("7412345678901234567/7412345678901234567.mp4"),
        video: VideoUpdate {
            douyin_id: Some("7412345678901234567".into()),
            title: Some("a title".into()),
            thumbnail_url: Some("https://p3.douyinpic.com/x.jpeg".into()),
            video_url_direct: Some("https://v3.douyinvod.com/x/".into()),
            video_url_meta: Some(serde_json::json!({"expires": 1})),
            ..Default::default()
        },
    };
    assert_eq!(
        b.queue.complete("w", &[c]).await.unwrap(),
        vec![(id, CompleteOutcome::Completed)]
    );
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!(rec.status, "completed");
    assert_eq!(rec.video_status, "ready");
    assert_eq!(
        rec.video_object_key.as_deref(),
        Some("7412345678901234567/7412345678901234567.mp4")
    );
    assert_eq!(rec.video_download_progress, Some(100));
    assert_eq!(rec.video_in_progress_by, None);
    let stats = b.queue.stats().await.unwrap();
    assert_eq!((stats.completed_jobs, stats.running_jobs), (1, 0));
    // The id learnt from extraction makes the video findable by id now.
    let r = b
        .queue
        .enqueue(&EnqueueRequest {
            douyin_id: Some("7412345678901234567".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.outcome, EnqueueOutcome::Ready);

    // A completion without an object key is refused: `ready` needs bucket and key.
    let id2 = b.enqueue("7400000000000000009").await;
    let job = b.queue.claim("w", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(job.id(), id2);
    let bad = completion(job.lease, "");
    assert!(b.queue.complete("w", &[bad]).await.is_err());
    assert_eq!(b.queue.job(id2).await.unwrap().unwrap().status, "running");
}

/// What a completion writes beside the status: the stored object's fields, the lease gone,
/// what extraction learnt filled in only where the row lacks it, the direct URL replaced
/// when given and kept when not.
async fn completion_fills_only_what_the_video_row_lacks(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b
        .enqueue_with(EnqueueRequest {
            url: Some("https://v.douyin.com/iRNBho6u/".into()),
            ..Default::default()
        })
        .await;
    let video = b.queue.job(id).await.unwrap().unwrap().video_id;
    b.update_row(
        video,
        "update public.videos set title = 'kept title', last_error = 'old error' where id = $1",
        "update videos set title = 'kept title', last_error = 'old error' where id = ?1",
        &[],
    )
    .await;
    let col = |c: &'static str| b.column("videos", video, c);
    let json =
        |t: Option<String>| t.map(|t| serde_json::from_str::<serde_json::Value>(&t).unwrap());

    let job = b.queue.claim("w", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(job.video.title.as_deref(), Some("kept title"));
    assert!(
        b.queue
            .progress("w", &job.lease, 10, Some(100))
            .await
            .unwrap()
    );
    let c = Completion {
        lease: job.lease,
        stored: stored("7412345678901234567/7412345678901234567.mp4"),
        video: VideoUpdate {
            douyin_id: Some("7412345678901234567".into()),
            title: Some("new title".into()),
            thumbnail_url: Some("https://p3.douyinpic.com/cover.jpeg".into()),
            video_url_direct: Some("https://v26.douyinvod.com/x.mp4".into()),
            video_url_meta: Some(serde_json::json!({"expires_at": 1})),
            stored_thumbnail_url: None,
        },
    };
    assert_eq!(
        b.queue.complete("w", &[c]).await.unwrap(),
        vec![(id, CompleteOutcome::Completed)]
    );
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!(rec.worker_id.as_deref(), Some("w"));
    assert_eq!(rec.lease_expires_at, None);
    assert!(rec.finished_at.is_some());
    assert_eq!(
        (rec.progress_bytes, rec.progress_total),
        (Some(1234), Some(1234))
    );
    assert_eq!(rec.video_last_error, None);
    assert_eq!(rec.video_next_attempt_at, None);
    assert_eq!(col("storage_provider").await.as_deref(), Some("test"));
    assert_eq!(col("bucket").await.as_deref(), Some("videos"));
    assert_eq!(col("storage_etag").await.as_deref(), Some("etag-1"));
    assert_eq!(col("filesize").await.as_deref(), Some("1234"));
    assert_eq!(col("mime_type").await.as_deref(), Some("video/mp4"));
    assert_eq!(
        json(col("storage_metadata").await),
        Some(serde_json::json!({"sha256": "ab"}))
    );
    assert!(col("downloaded_at").await.is_some());
    assert_eq!(col("in_progress_at").await, None);
    // Filled only where empty.
    assert_eq!(
        col("douyin_id").await.as_deref(),
        Some("7412345678901234567")
    );
    assert_eq!(col("title").await.as_deref(), Some("kept title"));
    assert_eq!(
        col("thumbnail_url").await.as_deref(),
        Some("https://p3.douyinpic.com/cover.jpeg")
    );
    // Replaced when given.
    assert_eq!(
        col("video_url_direct").await.as_deref(),
        Some("https://v26.douyinvod.com/x.mp4")
    );
    assert_eq!(
        json(col("video_url_meta").await),
        Some(serde_json::json!({"expires_at": 1}))
    );

    // Downloaded again: the claim hands out the cached direct URL, and a completion without
    // one keeps it.
    b.enqueue_with(EnqueueRequest {
        video_id: Some(video),
        force: true,
        ..Default::default()
    })
    .await;
    let job = b.queue.claim("w", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(
        job.video.video_url_meta,
        Some(serde_json::json!({"expires_at": 1})),
        "the claim reads the cached direct URL"
    );
    let mut c = completion(job.lease, "k2");
    c.video.title = Some("ignored".into());
    b.queue.complete("w", &[c]).await.unwrap();
    assert_eq!(col("title").await.as_deref(), Some("kept title"));
    assert_eq!(col("object_key").await.as_deref(), Some("k2"));
    assert_eq!(
        col("video_url_direct").await.as_deref(),
        Some("https://v26.douyinvod.com/x.mp4")
    );
}

/// Completions are recorded together or not at all: a batch with an entry that has no object
/// key leaves every job running; the same completion twice in a batch completes once.
async fn a_batch_of_completions_with_one_bad_entry_records_nothing(kind: Kind) {
    let b = Backend::new(kind).await;
    let ids = b.enqueue_many(2).await;
    let jobs = b.queue.claim("w", 2, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 2);
    let good = completion(jobs[0].lease, "a.mp4");
    let bad = completion(jobs[1].lease, "");
    assert!(b.queue.complete("w", &[good.clone(), bad]).await.is_err());
    for id in &ids {
        assert_eq!(b.queue.job(*id).await.unwrap().unwrap().status, "running");
    }
    let out = b.queue.complete("w", &[good.clone(), good]).await.unwrap();
    assert!(
        out.iter()
            .all(|(id, o)| *id == jobs[0].id() && *o == CompleteOutcome::Completed),
        "{out:?}"
    );
    let rec = b.queue.job(jobs[0].id()).await.unwrap().unwrap();
    assert_eq!(rec.status, "completed");
}

async fn progress_reaches_the_job_and_video_rows(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b.enqueue("7400000000000000001").await;
    let job = b.queue.claim("w", 1, LEASE).await.unwrap().remove(0);
    assert!(
        b.queue
            .progress("w", &job.lease, 500, Some(1000))
            .await
            .unwrap()
    );
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!(
        (rec.progress_bytes, rec.progress_total),
        (Some(500), Some(1000))
    );
    assert_eq!(rec.video_download_progress, Some(50));
    // Below 100 until the job completes.
    assert!(
        b.queue
            .progress("w", &job.lease, 1000, Some(1000))
            .await
            .unwrap()
    );
    assert_eq!(
        b.queue
            .job(id)
            .await
            .unwrap()
            .unwrap()
            .video_download_progress,
        Some(99)
    );
}

async fn a_new_job_wakes_a_subscribed_signal(kind: Kind) {
    let b = Backend::new(kind).await;
    let signal = Arc::new(JobSignal::new());
    let stop = CancellationToken::new();
    b.queue
        .subscribe(signal.clone(), stop.clone())
        .await
        .unwrap();
    // Let LISTEN settle, then consume anything already signalled.
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal.wait(Duration::from_millis(1), &stop).await;
    let waiter = {
        let signal = signal.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let t = std::time::Instant::now();
            signal.wait(Duration::from_secs(3600), &stop).await;
            t.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.enqueue("7400000000000000001").await;
    // The wait is an hour: returning at all means the signal fired.
    let waited = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("the signal never fired")
        .unwrap();
    assert!(waited < Duration::from_secs(3600), "{waited:?}");
    stop.cancel();
}

async fn claim_returns_only_due_jobs_and_respects_the_limit(kind: Kind) {
    let b = Backend::new(kind).await;
    let ids = b.enqueue_many(5).await;
    b.set_due(ids[4], 3600).await;
    assert!(b.queue.claim("w", 0, LEASE).await.unwrap().is_empty());
    assert!(
        b.queue.claim("", 1, LEASE).await.is_err(),
        "a claim needs a worker id"
    );
    let first = b.queue.claim("w1", 3, LEASE).await.unwrap();
    assert_eq!(first.len(), 3);
    let second = b.queue.claim("w2", 3, LEASE).await.unwrap();
    assert_eq!(second.len(), 1, "the job due in an hour is not claimed");
    assert!(b.queue.claim("w3", 3, LEASE).await.unwrap().is_empty());
    let claimed: std::collections::HashSet<_> =
        first.iter().chain(&second).map(|c| c.id()).collect();
    assert_eq!(claimed, ids[..4].iter().copied().collect());

    // Both rows show the claim.
    let c = &second[0];
    assert_eq!(c.lease.lease_id.get_version_num(), 4);
    let rec = b.queue.job(c.id()).await.unwrap().unwrap();
    assert_eq!(rec.status, "running");
    assert_eq!(rec.worker_id.as_deref(), Some("w2"));
    assert_eq!(rec.attempts, 1);
    let expires = rec.lease_expires_at.expect("a lease");
    assert!((expires - c.lease_expires_at).num_milliseconds().abs() < 5);
    assert_eq!(rec.video_status, "downloading");
    assert_eq!(rec.video_in_progress_by.as_deref(), Some("w2"));
    assert_eq!(rec.video_attempts, 1);
    assert_eq!(rec.video_download_progress, Some(0));
    let stats = b.queue.stats().await.unwrap();
    assert_eq!(
        (
            stats.total_jobs,
            stats.pending_jobs,
            stats.running_jobs,
            stats.active_workers
        ),
        (5, 1, 4, 2)
    );
}

/// Claims go over a connection the queue keeps; when the server drops it, one claim fails
/// (transient) and the next opens a fresh connection and claims.
#[tokio::test]
async fn postgres_claims_survive_their_connection_being_dropped() {
    let b = Backend::new(Kind::Postgres).await;
    b.enqueue_many(3).await;
    assert_eq!(b.queue.claim("w", 1, LEASE).await.unwrap().len(), 1);
    let db = b.pg.as_ref().unwrap();
    let killed: i64 = sqlx::query_scalar(
        "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid()
            and query like '%claim_download_jobs%') t",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(killed, 1, "the claim connection");
    let mut claimed = 0;
    let mut errors = 0;
    for _ in 0..3 {
        match b.queue.claim("w", 1, LEASE).await {
            Ok(jobs) => claimed += jobs.len(),
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                errors += 1;
            }
        }
    }
    assert!(errors <= 1, "{errors} failed claims");
    assert_eq!(
        claimed, 2,
        "every job is claimed once the connection is replaced"
    );
}
