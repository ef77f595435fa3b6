//! One row per video: a row queued by a short link learns its Douyin id from the worker's
//! extraction, and is merged into the row that already has that id, on every backend.

use std::collections::HashSet;

use douyin_worker::queue::{
    CompleteOutcome, EnqueueOutcome, EnqueueRequest, Learned, RetryOutcome, RetryTarget,
};

use super::{LEASE, claim_one, completion, failure};
use crate::support::backends::{Backend, Kind, on_every_backend};

const X: &str = "7400000000000000042";
const SHORT: &str = "https://v.douyin.com/iRNBho6u/";

async fn enqueue_short(b: &Backend, link: &str, priority: i32) -> (uuid::Uuid, uuid::Uuid) {
    let r = b
        .queue
        .enqueue(&EnqueueRequest {
            url: Some(link.into()),
            priority: Some(priority),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.outcome, EnqueueOutcome::Queued);
    (r.video_id.unwrap(), r.job_id.unwrap())
}

on_every_backend!(
    a_short_link_row_keeps_the_id_no_other_row_has,
    a_short_link_row_merges_into_the_row_with_its_id_and_downloads_for_it,
    a_short_link_row_merges_into_a_busy_or_stored_row_and_its_job_ends,
    two_rows_learning_one_id_at_once_become_one,
);

async fn a_short_link_row_keeps_the_id_no_other_row_has(kind: Kind) {
    let b = Backend::new(kind).await;
    let (video, job_id) = enqueue_short(&b, SHORT, 0).await;
    let job = claim_one(&b, "w1").await;
    assert_eq!(job.video.douyin_id, None);
    assert_eq!(
        b.queue.learn_douyin_id("w1", &job.lease, X).await.unwrap(),
        Learned::Kept
    );
    let rec = b.queue.job(job_id).await.unwrap().unwrap();
    assert_eq!(rec.video_douyin_id.as_deref(), Some(X));
    assert_eq!(rec.video_id, video);
    // The id now finds that row: reported, not doubled.
    let again = b
        .queue
        .enqueue(&EnqueueRequest {
            douyin_id: Some(X.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (again.outcome, again.job_id),
        (EnqueueOutcome::Duplicate, Some(job_id))
    );
    // A stale lease changes nothing.
    let mut stale = job.lease;
    stale.lease_id = uuid::Uuid::new_v4();
    assert_eq!(
        b.queue.learn_douyin_id("w1", &stale, X).await.unwrap(),
        Learned::LeaseLost
    );
}

async fn a_short_link_row_merges_into_the_row_with_its_id_and_downloads_for_it(kind: Kind) {
    let b = Backend::new(kind).await;
    // The row with the id failed for good earlier: nothing downloads it now.
    let first = b.enqueue(X).await;
    let job = claim_one(&b, "w1").await;
    assert_eq!(job.id(), first);
    let survivor = job.video_id;
    b.queue
        .fail(
            "w1",
            &[failure(
                job.lease,
                douyin_worker::error::ErrorClass::Permanent,
                None,
            )],
        )
        .await
        .unwrap();

    // The short link's row failed once too, before anyone knew its id.
    let (short_row, early) = enqueue_short(&b, SHORT, 0).await;
    let job = claim_one(&b, "w2").await;
    b.queue
        .fail(
            "w2",
            &[failure(
                job.lease,
                douyin_worker::error::ErrorClass::Permanent,
                None,
            )],
        )
        .await
        .unwrap();
    let (again_row, job_id) = enqueue_short(&b, SHORT, 0).await;
    assert_eq!(again_row, short_row);
    let job = claim_one(&b, "w2").await;
    assert_eq!(job.id(), job_id);
    assert_eq!(
        b.queue.learn_douyin_id("w2", &job.lease, X).await.unwrap(),
        Learned::Moved(survivor)
    );
    // The job now works for the surviving row; the short link's row points at it.
    let rec = b.queue.job(job_id).await.unwrap().unwrap();
    assert_eq!(rec.video_id, survivor);
    assert_eq!(rec.video_status, "downloading");
    let state = b.queue.video(short_row).await.unwrap().unwrap();
    assert_eq!(state.id, survivor, "the merged row answers as its survivor");
    assert_eq!(state.active_job_id, Some(job_id));

    let done = b
        .queue
        .complete("w2", &[completion(job.lease)])
        .await
        .unwrap();
    assert_eq!(done[0].1, CompleteOutcome::Completed);
    let state = b.queue.video(survivor).await.unwrap().unwrap();
    assert_eq!(state.status, "ready");
    // The short link's old failure is retried as the row it joined, which is stored.
    let retried = b
        .queue
        .retry(&RetryTarget::Jobs(vec![early]))
        .await
        .unwrap();
    assert_eq!(retried[0].outcome, RetryOutcome::Superseded, "{retried:?}");
    assert!(
        b.queue
            .retry(&RetryTarget::AllFailed)
            .await
            .unwrap()
            .is_empty()
    );
    // Either link or the id now reports the one stored video.
    for req in [
        EnqueueRequest {
            url: Some(SHORT.into()),
            ..Default::default()
        },
        EnqueueRequest {
            douyin_id: Some(X.into()),
            ..Default::default()
        },
        EnqueueRequest {
            video_id: Some(short_row),
            ..Default::default()
        },
    ] {
        let r = b.queue.enqueue(&req).await.unwrap();
        assert_eq!(
            (r.outcome, r.video_id),
            (EnqueueOutcome::Ready, Some(survivor)),
            "{req:?}"
        );
    }
}

async fn a_short_link_row_merges_into_a_busy_or_stored_row_and_its_job_ends(kind: Kind) {
    let b = Backend::new(kind).await;
    let survivor_job = b.enqueue(X).await;
    // Claimed first (higher priority), while the other row's job is still pending.
    let (_, job_id) = enqueue_short(&b, SHORT, 10).await;
    let job = claim_one(&b, "w1").await;
    assert_eq!(job.id(), job_id);
    let survivor = b.queue.job(survivor_job).await.unwrap().unwrap().video_id;
    assert_eq!(
        b.queue.learn_douyin_id("w1", &job.lease, X).await.unwrap(),
        Learned::Merged(survivor)
    );
    let rec = b.queue.job(job_id).await.unwrap().unwrap();
    assert_eq!(rec.status, "completed");
    assert_eq!(rec.last_error_code.as_deref(), Some("merged"));
    let note = rec.last_error.unwrap();
    assert!(
        note.contains(&survivor.to_string()) && note.contains(&survivor_job.to_string()),
        "{note}"
    );
    assert_eq!(rec.video_status, "merged", "jobs shows the merge");
    assert_eq!(rec.video_douyin_id.as_deref(), Some(X));
    // The lease is gone: nothing more can be recorded for it.
    assert_eq!(
        b.queue
            .complete("w1", &[completion(job.lease)])
            .await
            .unwrap()[0]
            .1,
        CompleteOutcome::LeaseLost
    );
    assert_eq!(
        b.queue.job(survivor_job).await.unwrap().unwrap().status,
        "pending"
    );

    // The surviving row is stored: a third link's job ends the same way.
    let job = claim_one(&b, "w2").await;
    b.queue
        .complete("w2", &[completion(job.lease)])
        .await
        .unwrap();
    let (_, third) = enqueue_short(&b, "https://v.douyin.com/other9/", 0).await;
    let job = claim_one(&b, "w3").await;
    assert_eq!(job.id(), third);
    assert_eq!(
        b.queue.learn_douyin_id("w3", &job.lease, X).await.unwrap(),
        Learned::Merged(survivor)
    );
    let rec = b.queue.job(third).await.unwrap().unwrap();
    assert!(
        rec.last_error.unwrap().ends_with("it is already stored"),
        "{:?}",
        rec.last_error_code
    );
    let stats = b.queue.stats().await.unwrap();
    assert_eq!((stats.completed_jobs, stats.failed_jobs), (3, 0));
}

async fn two_rows_learning_one_id_at_once_become_one(kind: Kind) {
    let b = Backend::new(kind).await;
    let mut shorts = Vec::new();
    for code in ["aaaa1", "bbbb2", "cccc3", "dddd4"] {
        shorts.push(enqueue_short(&b, &format!("https://v.douyin.com/{code}/"), 0).await);
    }
    let jobs = b.queue.claim("w", 4, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 4);
    let mut tasks = Vec::new();
    for job in jobs {
        let q = b.queue.clone();
        tasks.push(tokio::spawn(async move {
            q.learn_douyin_id("w", &job.lease, X).await.unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let kept = outcomes.iter().filter(|o| **o == Learned::Kept).count();
    assert_eq!(kept, 1, "{outcomes:?}");
    let into: HashSet<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Learned::Merged(v) => Some(*v),
            _ => None,
        })
        .collect();
    assert_eq!(
        into.len(),
        1,
        "every other row merged into the same one: {outcomes:?}"
    );
    let survivor = *into.iter().next().unwrap();
    for (video, _) in &shorts {
        let state = b.queue.video(*video).await.unwrap().unwrap();
        assert_eq!(state.id, survivor);
    }
    let r = b
        .queue
        .enqueue(&EnqueueRequest {
            douyin_id: Some(X.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (r.outcome, r.video_id),
        (EnqueueOutcome::Duplicate, Some(survivor))
    );
}
