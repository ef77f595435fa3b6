//! The queue methods behind the admin commands and the download API, on every backend.

use std::collections::HashSet;
use std::time::Duration;

use douyin_worker::error::ErrorClass;
use douyin_worker::queue::{
    EnqueueRequest, FailedAttempt, JobFilter, JobStatus, RetryOutcome, RetryTarget,
};
use serde_json::Value;
use uuid::Uuid;

use super::{LEASE, claim, complete, enqueue_video, exec, exec2, fail_for_good, video_of};
use crate::support::backends::{Backend, Kind, on_every_backend};

on_every_backend!(
    a_video_shows_its_download_state_and_its_latest_job,
    jobs_are_listed_newest_first_by_status_and_limit,
    retry_queues_a_new_job_and_says_why_it_did_not,
    retry_all_failed_takes_the_latest_failed_job_of_each_video_still_wanted,
    the_overview_counts_due_jobs_their_wait_and_each_workers_jobs,
    wanted_object_keys_are_those_of_live_videos_in_the_bucket,
);

async fn a_video_shows_its_download_state_and_its_latest_job(kind: Kind) {
    let b = Backend::new(kind).await;
    let q = b.queue.as_ref();
    assert_eq!(q.video(Uuid::new_v4()).await.unwrap(), None);

    let job = b.enqueue("7400000000000000001").await;
    let video = video_of(q, job).await;
    let v = q.video(video).await.unwrap().unwrap();
    assert_eq!(v.id, video);
    assert_eq!(v.douyin_id.as_deref(), Some("7400000000000000001"));
    assert_eq!(v.status, "queued");
    assert_eq!(v.active_job_id, Some(job));
    assert_eq!(v.latest_job_status.as_deref(), Some("pending"));
    assert_eq!(v.latest_error_class, None);
    assert!(!v.marked_for_deletion);

    // A transient failure: still active, waiting for its retry, with the class of the failure.
    let c = claim(q, job, "w").await;
    q.progress("w", &c.lease, 50, Some(200)).await.unwrap();
    let v = q.video(video).await.unwrap().unwrap();
    assert_eq!(
        (v.status.as_str(), v.download_progress),
        ("downloading", Some(25))
    );
    assert_eq!(v.latest_job_status.as_deref(), Some("running"));
    q.fail(
        "w",
        &[FailedAttempt {
            lease: c.lease,
            error: "cdn said 503".into(),
            code: "http-503".into(),
            class: ErrorClass::Transient,
            retry_in: Some(Duration::ZERO),
            forget_direct_url: None,
        }],
    )
    .await
    .unwrap();
    let v = q.video(video).await.unwrap().unwrap();
    assert_eq!(v.status, "pending");
    assert_eq!(v.attempts, 1);
    assert_eq!(v.last_error.as_deref(), Some("cdn said 503"));
    assert_eq!(v.active_job_id, Some(job));
    assert_eq!(v.latest_job_status.as_deref(), Some("pending"));
    assert_eq!(v.latest_error_class.as_deref(), Some("transient"));
    // The latest job's id, time and code (the API's cooldown and public message).
    assert_eq!(v.latest_job_id, Some(job));
    assert_eq!(v.latest_error_code.as_deref(), Some("http-503"));
    let record = q.job(job).await.unwrap().unwrap();
    assert_eq!(v.latest_job_created_at, Some(record.created_at));

    // Then a permanent one: failed, nothing active.
    fail_for_good(q, job).await;
    let v = q.video(video).await.unwrap().unwrap();
    assert_eq!(v.status, "failed");
    assert_eq!(v.active_job_id, None);
    assert_eq!(v.latest_job_status.as_deref(), Some("failed"));
    assert_eq!(v.latest_error_class.as_deref(), Some("permanent"));

    // Queued again and stored: the new job is the latest; the object is on the row.
    let again = enqueue_video(q, video).await;
    let v = q.video(video).await.unwrap().unwrap();
    assert_eq!(v.active_job_id, Some(again));
    assert_eq!(v.latest_job_status.as_deref(), Some("pending"));
    assert_eq!(v.latest_error_class, None);
    complete(q, again, "videos", "1/1.mp4").await;
    let v = q.video(video).await.unwrap().unwrap();
    assert_eq!(v.status, "ready");
    assert_eq!(v.download_progress, Some(100));
    assert_eq!(v.bucket.as_deref(), Some("videos"));
    assert_eq!(v.object_key.as_deref(), Some("1/1.mp4"));
    assert_eq!(v.filesize, Some(2048));
    assert_eq!(v.mime_type.as_deref(), Some("video/mp4"));
    assert_eq!(v.active_job_id, None);
    assert_eq!(v.latest_job_status.as_deref(), Some("completed"));
    assert_eq!(v.latest_error_class, None);
    assert_eq!(v.last_error, None);

    exec(
        &b,
        "update videos set marked_for_deletion = true where id = $1",
        video,
    )
    .await;
    assert!(q.video(video).await.unwrap().unwrap().marked_for_deletion);
}

async fn jobs_are_listed_newest_first_by_status_and_limit(kind: Kind) {
    let b = Backend::new(kind).await;
    let q = b.queue.as_ref();
    assert!(q.jobs(&JobFilter::default()).await.unwrap().is_empty());
    let first = b.enqueue("7400000000000000001").await;
    let second = b.enqueue("7400000000000000002").await;
    let third = b.enqueue("7400000000000000003").await;
    fail_for_good(q, first).await;
    let _running = claim(q, second, "w-busy").await;

    let all = q.jobs(&JobFilter::default()).await.unwrap();
    let ids: Vec<Uuid> = all.iter().map(|j| j.id).collect();
    assert_eq!(ids, [third, second, first]);
    let statuses: Vec<&str> = all.iter().map(|j| j.status.as_str()).collect();
    assert_eq!(statuses, ["pending", "running", "failed"]);
    assert_eq!(
        all[2].video_douyin_id.as_deref(),
        Some("7400000000000000001")
    );
    assert_eq!(all[1].worker_id.as_deref(), Some("w-busy"));
    assert_eq!(all[2].last_error_class.as_deref(), Some("permanent"));
    // The same record as `job`.
    assert_eq!(q.job(first).await.unwrap().as_ref(), Some(&all[2]));

    let limited = q
        .jobs(&JobFilter {
            status: None,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(
        limited.iter().map(|j| j.id).collect::<Vec<_>>(),
        [third, second]
    );
    for (status, expected) in [
        (JobStatus::Pending, third),
        (JobStatus::Running, second),
        (JobStatus::Failed, first),
    ] {
        let found = q
            .jobs(&JobFilter {
                status: Some(status),
                limit: 50,
            })
            .await
            .unwrap();
        assert_eq!(
            found.iter().map(|j| j.id).collect::<Vec<_>>(),
            [expected],
            "{status}"
        );
    }
    let none = q
        .jobs(&JobFilter {
            status: Some(JobStatus::Completed),
            limit: 50,
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn retry_queues_a_new_job_and_says_why_it_did_not(kind: Kind) {
    let b = Backend::new(kind).await;
    let q = b.queue.as_ref();
    let payload = serde_json::json!({"url": "https://www.douyin.com/video/7400000000000000001"});
    let failed = b
        .enqueue_with(EnqueueRequest {
            douyin_id: Some("7400000000000000001".into()),
            payload: Some(payload.clone()),
            priority: Some(7),
            max_attempts: Some(3),
            ..Default::default()
        })
        .await;
    fail_for_good(q, failed).await;
    let video = video_of(q, failed).await;
    // Each job is failed while it is the only one due.
    let marked = b.enqueue("7400000000000000003").await;
    fail_for_good(q, marked).await;
    exec(
        &b,
        "update videos set marked_for_deletion = true where id = $1",
        video_of(q, marked).await,
    )
    .await;
    // Failed, then stored by a later job.
    let stored_since = b.enqueue("7400000000000000004").await;
    fail_for_good(q, stored_since).await;
    let later = enqueue_video(q, video_of(q, stored_since).await).await;
    complete(q, later, "videos", "4/4.mp4").await;
    // Failed, then failed again in a newer job.
    let older = b.enqueue("7400000000000000005").await;
    fail_for_good(q, older).await;
    let newer = enqueue_video(q, video_of(q, older).await).await;
    fail_for_good(q, newer).await;
    let pending = b.enqueue("7400000000000000002").await;
    let unknown = Uuid::new_v4();

    let results = q
        .retry(&RetryTarget::Jobs(vec![
            failed,
            failed,
            pending,
            unknown,
            marked,
            stored_since,
            older,
        ]))
        .await
        .unwrap();
    let outcomes: Vec<RetryOutcome> = results.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            RetryOutcome::Queued,
            RetryOutcome::Duplicate,
            RetryOutcome::NotFailed,
            RetryOutcome::NotFound,
            RetryOutcome::MarkedForDeletion,
            RetryOutcome::Superseded,
            RetryOutcome::Superseded,
        ]
    );
    let ids: Vec<Uuid> = results.iter().map(|r| r.job_id).collect();
    assert_eq!(
        ids,
        [
            failed,
            failed,
            pending,
            unknown,
            marked,
            stored_since,
            older
        ]
    );
    assert_eq!(results[3].video_id, None);
    assert_eq!(results[0].video_id, Some(video));
    let new_job = results[0].new_job_id.expect("a new job");
    assert_ne!(new_job, failed);
    assert_eq!(results[1].new_job_id, Some(new_job), "the active job");
    assert!(results[2..].iter().all(|r| r.new_job_id.is_none()));

    // The failed row stays as history; the new one is pending, due now, with the old
    // payload, priority and attempts allowed, and the video is queued again.
    let old = q.job(failed).await.unwrap().unwrap();
    assert_eq!(old.status, "failed");
    let new = q.job(new_job).await.unwrap().unwrap();
    assert_eq!(
        (
            new.status.as_str(),
            new.attempts,
            new.max_attempts,
            new.priority
        ),
        ("pending", 0, 3, 7)
    );
    assert_eq!(new.video_status, "queued");
    assert_eq!(new.video_last_error, None);
    let v = q.video(video).await.unwrap().unwrap();
    assert_eq!(v.active_job_id, Some(new_job));
    let claimed = q.claim("w2", 10, LEASE).await.unwrap();
    let claimed = claimed
        .iter()
        .find(|c| c.id() == new_job)
        .expect("claimable");
    let mut expected = payload;
    expected["retry"] = Value::Bool(true);
    expected["retry_of"] = Value::String(failed.to_string());
    assert_eq!(claimed.payload.as_ref(), Some(&expected));

    // The newer failed job is the one to retry.
    let r = q.retry(&RetryTarget::Jobs(vec![newer])).await.unwrap();
    assert_eq!(r[0].outcome, RetryOutcome::Queued);
    assert!(
        q.retry(&RetryTarget::Jobs(vec![]))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn retry_all_failed_takes_the_latest_failed_job_of_each_video_still_wanted(kind: Kind) {
    let b = Backend::new(kind).await;
    let q = b.queue.as_ref();
    assert!(q.retry(&RetryTarget::AllFailed).await.unwrap().is_empty());
    let plain = b.enqueue("7400000000000000001").await;
    fail_for_good(q, plain).await;
    let older = b.enqueue("7400000000000000002").await;
    fail_for_good(q, older).await;
    let newer = enqueue_video(q, video_of(q, older).await).await;
    fail_for_good(q, newer).await;
    let marked = b.enqueue("7400000000000000003").await;
    fail_for_good(q, marked).await;
    exec(
        &b,
        "update videos set marked_for_deletion = true where id = $1",
        video_of(q, marked).await,
    )
    .await;
    // Stored some other way (by hand, another worker): not retried.
    let stored = b.enqueue("7400000000000000004").await;
    fail_for_good(q, stored).await;
    exec(
        &b,
        "update videos set status = 'ready', object_key = '4/4.mp4' where id = $1",
        video_of(q, stored).await,
    )
    .await;
    let _pending = b.enqueue("7400000000000000005").await;

    let results = q.retry(&RetryTarget::AllFailed).await.unwrap();
    let got: Vec<(Uuid, RetryOutcome)> = results.iter().map(|r| (r.job_id, r.outcome)).collect();
    assert_eq!(
        got,
        [(plain, RetryOutcome::Queued), (newer, RetryOutcome::Queued)],
        "oldest first"
    );
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.pending_jobs, stats.failed_jobs), (3, 5));
    // Their videos have active jobs now: nothing left to retry.
    assert!(q.retry(&RetryTarget::AllFailed).await.unwrap().is_empty());
}

async fn the_overview_counts_due_jobs_their_wait_and_each_workers_jobs(kind: Kind) {
    let b = Backend::new(kind).await;
    let q = b.queue.as_ref();
    let empty = q.overview().await.unwrap();
    assert_eq!(empty.stats.total_jobs, 0);
    assert_eq!((empty.due_jobs, empty.oldest_due_seconds), (0, None));
    assert!(empty.workers.is_empty());

    let ids = b.enqueue_many(6).await;
    let one: Vec<Uuid> = q
        .claim("w-one", 1, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id())
        .collect();
    let two = q.claim("w-two", 2, LEASE).await.unwrap();
    assert_eq!(one, [ids[0]]);
    // One of w-two's jobs fails and is due in an hour; one more is claimed by w-one.
    q.fail(
        "w-two",
        &[FailedAttempt {
            lease: two[0].lease,
            error: "slow down".into(),
            code: "http-429".into(),
            class: ErrorClass::Transient,
            retry_in: Some(Duration::from_secs(3600)),
            forget_direct_url: None,
        }],
    )
    .await
    .unwrap();
    q.claim("w-one", 1, LEASE).await.unwrap();
    // Of the two jobs due now, one has waited ten minutes.
    exec2(
        &b,
        "update download_jobs set scheduled_at = now() - interval '10 minutes' where id = $1",
        "update download_jobs set scheduled_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-10 minutes') where id = ?1",
        ids[5],
    )
    .await;

    let o = q.overview().await.unwrap();
    assert_eq!(o.stats.total_jobs, 6);
    assert_eq!(o.stats.pending_jobs, 3);
    assert_eq!(o.stats.running_jobs, 3);
    assert_eq!(o.stats.active_workers, 2);
    assert_eq!(o.due_jobs, 2);
    let waited = o.oldest_due_seconds.expect("a due job");
    assert!((599.0..=660.0).contains(&waited), "{waited}");
    let workers: Vec<(&str, i64)> = o
        .workers
        .iter()
        .map(|w| (w.worker_id.as_str(), w.running))
        .collect();
    assert_eq!(workers, [("w-one", 2), ("w-two", 1)]);
    assert_eq!(o.stats, q.stats().await.unwrap());
}

async fn wanted_object_keys_are_those_of_live_videos_in_the_bucket(kind: Kind) {
    let b = Backend::new(kind).await;
    let q = b.queue.as_ref();
    assert!(q.wanted_object_keys("videos").await.unwrap().is_empty());
    let keep = b.enqueue("7400000000000000001").await;
    complete(q, keep, "videos", "1/1.mp4").await;
    let other_bucket = b.enqueue("7400000000000000002").await;
    complete(q, other_bucket, "archive", "2/2.mp4").await;
    let marked = b.enqueue("7400000000000000003").await;
    complete(q, marked, "videos", "3/3.mp4").await;
    exec(
        &b,
        "update videos set marked_for_deletion = true where id = $1",
        video_of(q, marked).await,
    )
    .await;
    let deleted = b.enqueue("7400000000000000004").await;
    complete(q, deleted, "videos", "4/4.mp4").await;
    exec(
        &b,
        "delete from videos where id = $1",
        video_of(q, deleted).await,
    )
    .await;
    // Failed since its last download, no bucket recorded: still wants its object.
    let failed = b.enqueue("7400000000000000005").await;
    fail_for_good(q, failed).await;
    exec(
        &b,
        "update videos set object_key = '5/5_1700000000000.mp4', bucket = null where id = $1",
        video_of(q, failed).await,
    )
    .await;

    let wanted = q.wanted_object_keys("videos").await.unwrap();
    assert_eq!(
        wanted,
        HashSet::from(["1/1.mp4".to_string(), "5/5_1700000000000.mp4".to_string()])
    );
    let archive = q.wanted_object_keys("archive").await.unwrap();
    assert!(archive.contains("2/2.mp4") && !archive.contains("1/1.mp4"));

    // Many more than one REST page.
    exec2(
        &b,
        "insert into videos (object_key, bucket, status)
         select 'bulk/' || g || '.mp4', 'videos', 'ready' from generate_series(1, 2500) g
          where $1::uuid is not null",
        "with recursive n(g) as (select 1 union all select g + 1 from n where g < 2500)
         insert into videos (object_key, bucket, status)
         select 'bulk/' || g || '.mp4', 'videos', 'ready' from n where ?1 is not null",
        Uuid::new_v4(),
    )
    .await;
    let wanted = q.wanted_object_keys("videos").await.unwrap();
    assert_eq!(wanted.len(), 2502);
    assert!(wanted.contains("bulk/1.mp4") && wanted.contains("bulk/2500.mp4"));
}
