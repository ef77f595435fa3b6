//! Unit tests of the SQLite backend's own behaviour (schema checks, triggers, timestamps);
//! the shared life-cycle suite in `tests/it/queue.rs` runs on every backend.
use std::collections::HashSet;

use serde_json::json;

use super::*;
use crate::queue::StoredObject;
use crate::queue::VideoUpdate;

const LEASE: Duration = Duration::from_secs(60);

async fn open_temp() -> (tempfile::TempDir, SqliteQueue) {
    let dir = tempfile::tempdir().expect("temp dir");
    // A folder that does not exist yet: open creates it.
    let q = SqliteQueue::open(&dir.path().join("data/queue.db"))
        .await
        .expect("open sqlite queue");
    (dir, q)
}

async fn enqueue(q: &SqliteQueue, req: EnqueueRequest) -> EnqueueResult {
    q.enqueue(&req).await.expect("enqueue")
}

async fn enqueue_url(q: &SqliteQueue, url: &str) -> EnqueueResult {
    enqueue(
        q,
        EnqueueRequest {
            url: Some(url.into()),
            ..Default::default()
        },
    )
    .await
}

/// A link for a new video, numbered `n`.
fn link(n: u64) -> String {
    format!(
        "https://www.douyin.com/video/{}",
        7_300_000_000_000_000_000 + n
    )
}

async fn video(q: &SqliteQueue, id: Uuid) -> SqliteRow {
    sqlx::query("select * from videos where id = ?1")
        .bind(id.hyphenated())
        .fetch_one(q.pool())
        .await
        .expect("video row")
}

async fn job_row(q: &SqliteQueue, id: Uuid) -> SqliteRow {
    sqlx::query("select * from download_jobs where id = ?1")
        .bind(id.hyphenated())
        .fetch_one(q.pool())
        .await
        .expect("job row")
}

async fn exec(q: &SqliteQueue, sql: &'static str, id: Uuid, text: Option<String>) {
    sqlx::query(sql)
        .bind(id.hyphenated())
        .bind(text)
        .execute(q.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Moves a job's due time `secs` seconds from now.
async fn set_due(q: &SqliteQueue, job_id: Uuid, secs: i64) {
    let at = format_timestamp(Utc::now() + chrono::Duration::seconds(secs));
    exec(
        q,
        "update download_jobs set scheduled_at = ?2 where id = ?1",
        job_id,
        Some(at),
    )
    .await;
}

/// Makes a running job's lease run out a second ago.
async fn expire(q: &SqliteQueue, job_id: Uuid) {
    let at = format_timestamp(Utc::now() - chrono::Duration::seconds(1));
    exec(
        q,
        "update download_jobs set lease_expires_at = ?2 where id = ?1",
        job_id,
        Some(at),
    )
    .await;
}

fn completion(lease: Lease, key: &str) -> Completion {
    Completion {
        lease,
        stored: StoredObject {
            storage_provider: "local".into(),
            bucket: "videos".into(),
            object_key: key.into(),
            storage_etag: Some("etag-1".into()),
            filesize: 12_345,
            mime_type: "video/mp4".into(),
            storage_metadata: json!({"sha256": "abc"}),
        },
        video: VideoUpdate::default(),
    }
}

fn failure(lease: Lease, class: ErrorClass, retry_in: Option<Duration>) -> FailedAttempt {
    FailedAttempt {
        lease,
        error: "boom".into(),
        code: "download-timeout".into(),
        class,
        retry_in,
        forget_direct_url: None,
    }
}

async fn claim_one(q: &SqliteQueue, worker: &str) -> ClaimedJob {
    let mut jobs = q.claim(worker, 1, LEASE).await.expect("claim");
    assert_eq!(jobs.len(), 1, "expected one claimable job");
    jobs.remove(0)
}

fn text(row: &SqliteRow, column: &str) -> Option<String> {
    row.try_get(column).unwrap()
}

fn int(row: &SqliteRow, column: &str) -> Option<i64> {
    row.try_get(column).unwrap()
}

#[test]
fn douyin_ids_from_links() {
    let id = "7312345678901234567";
    for url in [
        id.to_owned(),
        format!("  {id}\n"),
        format!("https://www.douyin.com/video/{id}"),
        format!("https://www.douyin.com/video/{id}?previous_page=app_code_link"),
        format!("https://www.iesdouyin.com/share/video/{id}/?region=CN"),
        format!("https://www.douyin.com/note/{id}"),
        format!("https://www.douyin.com/slides/{id}"),
        format!("https://www.douyin.com/discover?modal_id={id}"),
        format!("https://www.douyin.com/user/MS4w?a=1&modal_id={id}&b=2"),
        format!("https://www.douyin.com/search/x?vid={id}"),
        format!("https://www.douyin.com/search/x?q=1&vid={id}"),
        // a first marker without enough digits is skipped
        format!("https://www.douyin.com/video/123/note/{id}"),
    ] {
        assert_eq!(douyin_id_from_url(&url).as_deref(), Some(id), "{url:?}");
    }
    // at most 25 digits are taken, as by the regex
    assert_eq!(
        douyin_id_from_url(&format!("/video/{}", "1".repeat(30))).as_deref(),
        Some("1".repeat(25).as_str())
    );
    assert_eq!(douyin_id_from_url("12345678").as_deref(), Some("12345678"));
    for url in [
        "https://v.douyin.com/iRNBho5m/",
        "1234567",
        &"1".repeat(26),
        "https://www.douyin.com/video/1234567",
        "https://www.douyin.com/Video/7312345678901234567",
        "https://www.douyin.com/x#modal_id=7312345678901234567",
        "https://www.douyin.com/x?avid=7312345678901234567",
        "",
    ] {
        assert_eq!(douyin_id_from_url(url), None, "{url:?}");
    }
}

#[test]
fn timestamps_have_one_form() {
    let t = DateTime::parse_from_rfc3339("2025-01-31T08:00:00.123456789Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(format_timestamp(t), "2025-01-31T08:00:00.123Z");
    let t = DateTime::parse_from_rfc3339("2025-01-31T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(format_timestamp(t), "2025-01-31T08:00:00.000Z");
}

#[tokio::test]
async fn enqueue_outcomes() {
    let (_dir, q) = open_temp().await;

    // by link: a new video row with the id from the link
    let url = "https://www.douyin.com/video/7312345678901234567?from=share";
    let r = enqueue_url(&q, url).await;
    assert_eq!(r.outcome, EnqueueOutcome::Queued);
    let video_id = r.video_id.unwrap();
    let v = video(&q, video_id).await;
    assert_eq!(
        text(&v, "douyin_id").as_deref(),
        Some("7312345678901234567")
    );
    assert_eq!(text(&v, "video_url").as_deref(), Some(url));
    assert_eq!(text(&v, "status").as_deref(), Some("queued"));
    let j = job_row(&q, r.job_id.unwrap()).await;
    assert_eq!(text(&j, "status").as_deref(), Some("pending"));
    assert_eq!(int(&j, "max_attempts"), Some(5));
    assert_eq!(int(&j, "priority"), Some(0));
    assert_eq!(int(&j, "attempts"), Some(0));

    // the same video by id or by another link form: the active job is reported
    let again = enqueue(
        &q,
        EnqueueRequest {
            douyin_id: Some(" 7312345678901234567 ".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(again.outcome, EnqueueOutcome::Duplicate);
    assert_eq!(again.job_id, r.job_id);
    assert_eq!(again.video_id, Some(video_id));
    let again = enqueue_url(
        &q,
        "https://www.douyin.com/discover?modal_id=7312345678901234567",
    )
    .await;
    assert_eq!(
        (again.outcome, again.job_id),
        (EnqueueOutcome::Duplicate, r.job_id)
    );
    let again = enqueue(
        &q,
        EnqueueRequest {
            video_id: Some(video_id),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (again.outcome, again.job_id),
        (EnqueueOutcome::Duplicate, r.job_id)
    );

    // by Douyin id only: the link is made up
    let r2 = enqueue(
        &q,
        EnqueueRequest {
            douyin_id: Some("7399999999999999999".into()),
            payload: Some(json!({"url": "x"})),
            priority: Some(7),
            max_attempts: Some(2),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r2.outcome, EnqueueOutcome::Queued);
    let v = video(&q, r2.video_id.unwrap()).await;
    assert_eq!(
        text(&v, "video_url").as_deref(),
        Some("https://www.douyin.com/video/7399999999999999999")
    );
    let j = job_row(&q, r2.job_id.unwrap()).await;
    assert_eq!(int(&j, "priority"), Some(7));
    assert_eq!(int(&j, "max_attempts"), Some(2));
    assert_eq!(text(&j, "payload").as_deref(), Some(r#"{"url":"x"}"#));

    // a short link: no id, found again by the link
    let short = enqueue_url(&q, " https://v.douyin.com/iRNBho5m/ ").await;
    assert_eq!(short.outcome, EnqueueOutcome::Queued);
    let v = video(&q, short.video_id.unwrap()).await;
    assert_eq!(text(&v, "douyin_id"), None);
    assert_eq!(
        text(&v, "video_url").as_deref(),
        Some("https://v.douyin.com/iRNBho5m/")
    );
    let again = enqueue_url(&q, "https://v.douyin.com/iRNBho5m/").await;
    assert_eq!(
        (again.outcome, again.job_id),
        (EnqueueOutcome::Duplicate, short.job_id)
    );

    // an unknown video id
    let missing = Uuid::new_v4();
    let r = enqueue(
        &q,
        EnqueueRequest {
            video_id: Some(missing),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (r.outcome, r.job_id, r.video_id),
        (EnqueueOutcome::NotFound, None, Some(missing))
    );

    // nothing to go by
    let err = q
        .enqueue(&EnqueueRequest {
            url: Some("  ".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Rejected(_)), "{err}");

    // marked for deletion: never queued
    let doomed = enqueue_url(&q, &link(1)).await;
    let job = claim_one(&q, "w1").await; // the oldest due job of priority 7 first
    assert_eq!(job.id(), r2.job_id.unwrap());
    q.fail("w1", &[failure(job.lease, ErrorClass::Permanent, None)])
        .await
        .unwrap();
    exec(
        &q,
        "update videos set marked_for_deletion = 1 where id = ?1 or id = ?2",
        r2.video_id.unwrap(),
        Some(doomed.video_id.unwrap().to_string()),
    )
    .await;
    let r = enqueue(
        &q,
        EnqueueRequest {
            video_id: r2.video_id,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (r.outcome, r.job_id),
        (EnqueueOutcome::MarkedForDeletion, None)
    );
    // ... and a claimed job shows the mark to the worker
    exec(
        &q,
        "update download_jobs set priority = 100 where id = ?1",
        doomed.job_id.unwrap(),
        None,
    )
    .await;
    let job = claim_one(&q, "w1").await;
    assert_eq!(job.id(), doomed.job_id.unwrap());
    assert!(job.video.marked_for_deletion);

    // stored already: ready, unless forced
    let stored = enqueue_url(&q, &link(2)).await;
    exec(
        &q,
        "update download_jobs set priority = 100 where id = ?1",
        stored.job_id.unwrap(),
        None,
    )
    .await;
    let job = claim_one(&q, "w1").await;
    assert_eq!(job.id(), stored.job_id.unwrap());
    let done = q.complete("w1", &[completion(job.lease, "k/2.mp4")]).await;
    assert_eq!(done.unwrap(), vec![(job.id(), CompleteOutcome::Completed)]);
    let r = enqueue_url(&q, &link(2)).await;
    assert_eq!((r.outcome, r.job_id), (EnqueueOutcome::Ready, None));
    assert_eq!(r.video_id, stored.video_id);
    let forced = enqueue(
        &q,
        EnqueueRequest {
            url: Some(link(2)),
            force: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(forced.outcome, EnqueueOutcome::Queued);
    assert_eq!(forced.video_id, stored.video_id);
    // queued again, but its file is still there: the video stays ready
    let v = video(&q, stored.video_id.unwrap()).await;
    assert_eq!(text(&v, "status").as_deref(), Some("ready"));
}

#[tokio::test]
async fn enqueue_leaves_a_downloading_video_alone_and_ranks_by_virality() {
    let (_dir, q) = open_temp().await;
    let surging = Uuid::new_v4();
    let viral = Uuid::new_v4();
    let busy = Uuid::new_v4();
    for (id, surge, momentum, status) in [
        (surging, 1, 12.5, "new"),
        (viral, 0, 2_000_000.0, "new"),
        (busy, 0, -40.0, "downloading"),
    ] {
        sqlx::query(
            "insert into videos
                 (id, douyin_id, video_url, surge_detected, viral_momentum, status)
             values (?1, ?2, 'https://www.douyin.com/video/x', ?3, ?4, ?5)",
        )
        .bind(id.hyphenated())
        .bind(id.simple().to_string())
        .bind(surge)
        .bind(momentum)
        .bind(status)
        .execute(q.pool())
        .await
        .unwrap();
    }
    let mut priorities = Vec::new();
    for id in [surging, viral, busy] {
        let r = enqueue(
            &q,
            EnqueueRequest {
                video_id: Some(id),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(r.outcome, EnqueueOutcome::Queued);
        priorities.push(int(&job_row(&q, r.job_id.unwrap()).await, "priority").unwrap());
    }
    // surge + round(12.5) (half away from zero, as PostgreSQL), capped momentum, floor 0
    assert_eq!(priorities, vec![1_000_013, 999_999, 0]);
    assert_eq!(
        text(&video(&q, busy).await, "status").as_deref(),
        Some("downloading")
    );
    assert_eq!(
        text(&video(&q, viral).await, "status").as_deref(),
        Some("queued")
    );
}

/// How a claim is written in SQLite's rows (the shared suite checks what a claim does on every
/// backend): times in the one text form, the lease as a hyphenated UUID.
#[tokio::test]
async fn a_claim_writes_its_times_and_lease_in_one_form() {
    let (_dir, q) = open_temp().await;
    enqueue_url(&q, &link(1)).await;
    let c = claim_one(&q, "w2").await;
    let j = job_row(&q, c.id()).await;
    assert_eq!(
        text(&j, "lease_id"),
        Some(c.lease.lease_id.hyphenated().to_string())
    );
    assert_eq!(
        text(&j, "lease_expires_at"),
        Some(format_timestamp(c.lease_expires_at))
    );
    assert!(text(&j, "started_at").is_some());
    assert!(text(&j, "heartbeat_at").is_some());
    let v = video(&q, c.video_id).await;
    assert!(text(&v, "download_started_at").is_some());
    assert!(text(&v, "last_attempt_at").is_some());
}

#[tokio::test]
async fn a_short_lease_runs_out_by_itself() {
    let (_dir, q) = open_temp().await;
    enqueue_url(&q, &link(1)).await;
    let job = q
        .claim("w1", 1, Duration::from_millis(200))
        .await
        .unwrap()
        .remove(0);
    // at least one second, as in PostgreSQL
    assert!(job.lease_expires_at >= Utc::now() + chrono::Duration::milliseconds(700));
    assert!(q.rescue(10).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rescued = q.rescue(10).await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert!(rescued[0].requeued);
}

#[tokio::test]
async fn rescue_fails_a_job_out_of_attempts_and_respects_the_limit() {
    let (_dir, q) = open_temp().await;
    let last = enqueue(
        &q,
        EnqueueRequest {
            url: Some(link(1)),
            max_attempts: Some(1),
            priority: Some(1),
            ..Default::default()
        },
    )
    .await;
    let other = enqueue_url(&q, &link(2)).await;
    let a = claim_one(&q, "w1").await;
    let b = claim_one(&q, "w2").await;
    assert_eq!(
        (a.id(), b.id()),
        (last.job_id.unwrap(), other.job_id.unwrap())
    );
    expire(&q, a.id()).await;
    expire(&q, b.id()).await;
    // the oldest lease first; a second call takes the rest
    exec(
        &q,
        "update download_jobs set lease_expires_at = ?2 where id = ?1",
        a.id(),
        Some(format_timestamp(Utc::now() - chrono::Duration::seconds(60))),
    )
    .await;
    let first = q.rescue(1).await.unwrap();
    assert_eq!(
        first,
        vec![Rescued {
            job_id: a.id(),
            video_id: a.video_id,
            douyin_id: a.video.douyin_id.clone(),
            requeued: false,
            worker_id: Some("w1".into()),
        }]
    );
    let j = job_row(&q, a.id()).await;
    assert_eq!(text(&j, "status").as_deref(), Some("failed"));
    assert_eq!(text(&j, "worker_id").as_deref(), Some("w1"));
    assert!(text(&j, "finished_at").is_some());
    assert_eq!(
        text(&j, "last_error").as_deref(),
        Some("lease expired: worker w1 stopped renewing it during attempt 1 of 1")
    );
    let v = video(&q, a.video_id).await;
    assert_eq!(text(&v, "status").as_deref(), Some("failed"));
    assert_eq!(int(&v, "attempts"), Some(1));
    assert!(text(&v, "last_error").unwrap().starts_with("lease expired"));

    let second = q.rescue(0).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].job_id, b.id());
    assert!(second[0].requeued);
    assert!(q.rescue(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn complete_fills_the_video_row() {
    let (_dir, q) = open_temp().await;
    // a video that already has a title but no thumbnail and an empty douyin_id
    let video_id = Uuid::new_v4();
    sqlx::query(
        "insert into videos (id, douyin_id, video_url, title, thumbnail_url, last_error)
         values (?1, '', 'https://v.douyin.com/abc/', 'kept title', '', 'old error')",
    )
    .bind(video_id.hyphenated())
    .execute(q.pool())
    .await
    .unwrap();
    enqueue(
        &q,
        EnqueueRequest {
            video_id: Some(video_id),
            ..Default::default()
        },
    )
    .await;
    let job = claim_one(&q, "w1").await;
    assert_eq!(job.video.title.as_deref(), Some("kept title"));
    assert!(q.progress("w1", &job.lease, 10, Some(100)).await.unwrap());

    let mut c = completion(job.lease, "videos/7312345678901234567.mp4");
    c.video = VideoUpdate {
        douyin_id: Some("7312345678901234567".into()),
        title: Some("new title".into()),
        thumbnail_url: Some("https://p3.douyinpic.com/cover.jpeg".into()),
        video_url_direct: Some("https://v26.douyinvod.com/x.mp4".into()),
        video_url_meta: Some(json!({"expires_at": 1})),
        ..Default::default()
    };
    // an empty bucket or key is refused, and nothing is recorded
    let mut bad = c.clone();
    bad.stored.object_key.clear();
    let err = q.complete("w1", &[c.clone(), bad]).await.unwrap_err();
    assert!(matches!(err, QueueError::Rejected(_)), "{err}");
    assert_eq!(
        text(&job_row(&q, job.id()).await, "status").as_deref(),
        Some("running")
    );

    let out = q.complete("w1", &[c.clone(), c.clone()]).await.unwrap();
    assert_eq!(
        out,
        vec![
            (job.id(), CompleteOutcome::Completed),
            (job.id(), CompleteOutcome::Completed)
        ]
    );
    let j = job_row(&q, job.id()).await;
    assert_eq!(text(&j, "status").as_deref(), Some("completed"));
    assert_eq!(text(&j, "lease_id"), None);
    assert_eq!(text(&j, "lease_expires_at"), None);
    assert_eq!(text(&j, "worker_id").as_deref(), Some("w1"));
    assert!(text(&j, "finished_at").is_some());
    assert_eq!(int(&j, "progress_bytes"), Some(12_345));
    assert_eq!(int(&j, "progress_total"), Some(12_345));

    let v = video(&q, video_id).await;
    assert_eq!(text(&v, "status").as_deref(), Some("ready"));
    assert_eq!(text(&v, "bucket").as_deref(), Some("videos"));
    assert_eq!(
        text(&v, "object_key").as_deref(),
        Some("videos/7312345678901234567.mp4")
    );
    assert_eq!(text(&v, "storage_etag").as_deref(), Some("etag-1"));
    assert_eq!(int(&v, "filesize"), Some(12_345));
    assert_eq!(text(&v, "mime_type").as_deref(), Some("video/mp4"));
    assert_eq!(text(&v, "storage_provider").as_deref(), Some("local"));
    assert_eq!(
        text(&v, "storage_metadata").as_deref(),
        Some(r#"{"sha256":"abc"}"#)
    );
    assert!(text(&v, "downloaded_at").is_some());
    assert_eq!(text(&v, "in_progress_by"), None);
    assert_eq!(text(&v, "in_progress_at"), None);
    assert_eq!(text(&v, "last_error"), None);
    assert_eq!(int(&v, "download_progress"), Some(100));
    assert_eq!(text(&v, "next_attempt_at"), None);
    // filled only where empty
    assert_eq!(
        text(&v, "douyin_id").as_deref(),
        Some("7312345678901234567")
    );
    assert_eq!(text(&v, "title").as_deref(), Some("kept title"));
    assert_eq!(
        text(&v, "thumbnail_url").as_deref(),
        Some("https://p3.douyinpic.com/cover.jpeg")
    );
    // replaced when given
    assert_eq!(
        text(&v, "video_url_direct").as_deref(),
        Some("https://v26.douyinvod.com/x.mp4")
    );
    assert_eq!(
        text(&v, "video_url_meta").as_deref(),
        Some(r#"{"expires_at":1}"#)
    );

    // a second completion without direct URL keeps the cached one
    let r = enqueue(
        &q,
        EnqueueRequest {
            video_id: Some(video_id),
            force: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.outcome, EnqueueOutcome::Queued);
    let job = claim_one(&q, "w1").await;
    assert_eq!(
        job.video.video_url_meta,
        Some(json!({"expires_at": 1})),
        "the claim reads the cached direct URL"
    );
    let mut c = completion(job.lease, "k2");
    c.video.title = Some("ignored".into());
    q.complete("w1", &[c]).await.unwrap();
    let v = video(&q, video_id).await;
    assert_eq!(text(&v, "title").as_deref(), Some("kept title"));
    assert_eq!(text(&v, "object_key").as_deref(), Some("k2"));
    assert_eq!(
        text(&v, "video_url_direct").as_deref(),
        Some("https://v26.douyinvod.com/x.mp4")
    );
}

#[tokio::test]
async fn a_transient_failure_is_retried_later() {
    let (_dir, q) = open_temp().await;
    let r = enqueue_url(&q, &link(1)).await;
    let job = claim_one(&q, "w1").await;
    let before = Utc::now();
    let out = q
        .fail(
            "w1",
            &[failure(
                job.lease,
                ErrorClass::Drift,
                Some(Duration::from_millis(30_500)),
            )],
        )
        .await
        .unwrap();
    let FailOutcome::RetryScheduled(due) = out[0].1 else {
        panic!("expected a retry, got {out:?}");
    };
    assert!(due >= before + chrono::Duration::milliseconds(30_400));
    assert!(due <= Utc::now() + chrono::Duration::milliseconds(30_600));

    let j = job_row(&q, job.id()).await;
    assert_eq!(text(&j, "status").as_deref(), Some("pending"));
    assert_eq!(text(&j, "worker_id"), None);
    assert_eq!(text(&j, "lease_id"), None);
    assert_eq!(text(&j, "finished_at"), None);
    assert_eq!(text(&j, "scheduled_at"), Some(format_timestamp(due)));
    assert_eq!(int(&j, "attempts"), Some(1));
    assert_eq!(text(&j, "last_error").as_deref(), Some("boom"));
    assert_eq!(
        text(&j, "last_error_code").as_deref(),
        Some("download-timeout")
    );
    assert_eq!(text(&j, "last_error_class").as_deref(), Some("drift"));
    let v = video(&q, r.video_id.unwrap()).await;
    assert_eq!(text(&v, "status").as_deref(), Some("pending"));
    assert_eq!(text(&v, "last_error").as_deref(), Some("boom"));
    assert_eq!(int(&v, "attempts"), Some(1));
    assert_eq!(text(&v, "in_progress_by"), None);
    assert_eq!(int(&v, "download_progress"), None);
    assert_eq!(text(&v, "next_attempt_at"), Some(format_timestamp(due)));

    // the same through the inspection call
    let record = q.job(job.id()).await.unwrap().expect("job record");
    assert_eq!(record.id, job.id());
    assert_eq!(record.video_id, r.video_id.unwrap());
    assert_eq!(record.status, "pending");
    assert_eq!(record.worker_id, None);
    assert_eq!(
        (record.attempts, record.max_attempts, record.priority),
        (1, 5, 0)
    );
    assert_eq!(record.scheduled_at, due);
    assert_eq!(record.lease_expires_at, None);
    assert_eq!(record.last_error.as_deref(), Some("boom"));
    assert_eq!(record.last_error_code.as_deref(), Some("download-timeout"));
    assert_eq!(record.last_error_class.as_deref(), Some("drift"));
    assert_eq!(record.finished_at, None);
    assert_eq!(record.video_status, "pending");
    assert_eq!(record.video_attempts, 1);
    assert_eq!(record.video_last_error.as_deref(), Some("boom"));
    assert_eq!(record.video_next_attempt_at, Some(due));
    assert_eq!(record.video_download_progress, None);
    assert_eq!(record.video_in_progress_by, None);
    assert_eq!(record.video_object_key, None);
    assert_eq!(q.job(Uuid::new_v4()).await.unwrap(), None);

    // not due yet; once due, claimed for attempt 2, and the video's retry time clears
    assert!(q.claim("w1", 5, LEASE).await.unwrap().is_empty());
    set_due(&q, job.id(), -1).await;
    let again = claim_one(&q, "w1").await;
    assert_eq!(again.attempts, 2);
    let v = video(&q, r.video_id.unwrap()).await;
    assert_eq!(text(&v, "next_attempt_at"), None);

    // an empty message is recorded as "unknown error"
    let mut f = failure(again.lease, ErrorClass::Transient, Some(Duration::ZERO));
    f.error.clear();
    assert!(matches!(
        q.fail("w1", &[f]).await.unwrap()[0].1,
        FailOutcome::RetryScheduled(_)
    ));
    let j = job_row(&q, job.id()).await;
    assert_eq!(text(&j, "last_error").as_deref(), Some("unknown error"));
    // due at once
    assert_eq!(claim_one(&q, "w1").await.attempts, 3);
}

#[tokio::test]
async fn permanent_failures_and_the_last_attempt_fail_for_good() {
    let (_dir, q) = open_temp().await;
    let a = enqueue_url(&q, &link(1)).await;
    let b = enqueue_url(&q, &link(2)).await;
    let c = enqueue(
        &q,
        EnqueueRequest {
            url: Some(link(3)),
            max_attempts: Some(1),
            ..Default::default()
        },
    )
    .await;
    let jobs = q.claim("w1", 3, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 3);
    let lease_of = |id: Option<Uuid>| jobs.iter().find(|j| Some(j.id()) == id).unwrap().lease;
    let out = q
        .fail(
            "w1",
            &[
                // permanent, even with a retry time
                failure(lease_of(a.job_id), ErrorClass::Permanent, Some(LEASE)),
                // no retry time
                failure(lease_of(b.job_id), ErrorClass::Transient, None),
                // out of attempts
                failure(lease_of(c.job_id), ErrorClass::Transient, Some(LEASE)),
            ],
        )
        .await
        .unwrap();
    assert!(
        out.iter().all(|(_, o)| *o == FailOutcome::Failed),
        "{out:?}"
    );
    for r in [&a, &b, &c] {
        let j = job_row(&q, r.job_id.unwrap()).await;
        assert_eq!(text(&j, "status").as_deref(), Some("failed"));
        assert_eq!(text(&j, "worker_id").as_deref(), Some("w1"), "kept");
        assert!(text(&j, "finished_at").is_some());
        assert_eq!(text(&j, "lease_id"), None);
        let v = video(&q, r.video_id.unwrap()).await;
        assert_eq!(text(&v, "status").as_deref(), Some("failed"));
        assert_eq!(text(&v, "last_error").as_deref(), Some("boom"));
        assert_eq!(int(&v, "attempts"), Some(1));
        assert_eq!(text(&v, "next_attempt_at"), None);
    }
    let j = job_row(&q, a.job_id.unwrap()).await;
    assert_eq!(text(&j, "last_error_class").as_deref(), Some("permanent"));
    assert_eq!(q.stats().await.unwrap().failed_jobs, 3);
    assert!(q.claim("w1", 3, LEASE).await.unwrap().is_empty());
}

/// The release SQL's floor (the shared suite checks the rest of a release on every backend).
#[tokio::test]
async fn release_never_takes_attempts_below_zero() {
    let (_dir, q) = open_temp().await;
    enqueue_url(&q, &link(1)).await;
    let job = claim_one(&q, "w1").await;
    exec(
        &q,
        "update download_jobs set attempts = 0 where id = ?1",
        job.id(),
        None,
    )
    .await;
    q.release("w1", &[job.lease]).await.unwrap();
    assert_eq!(int(&job_row(&q, job.id()).await, "attempts"), Some(0));
}

#[tokio::test]
async fn progress_sets_a_percentage_below_one_hundred() {
    let (_dir, q) = open_temp().await;
    let r = enqueue_url(&q, &link(1)).await;
    let job = claim_one(&q, "w1").await;
    let percent = |q: SqliteQueue| async move {
        int(&video(&q, r.video_id.unwrap()).await, "download_progress")
    };

    assert!(q.progress("w1", &job.lease, 50, Some(200)).await.unwrap());
    assert_eq!(percent(q.clone()).await, Some(25));
    let j = job_row(&q, job.id()).await;
    assert_eq!(int(&j, "progress_bytes"), Some(50));
    assert_eq!(int(&j, "progress_total"), Some(200));
    assert!(text(&j, "progress_at").is_some());

    assert!(q.progress("w1", &job.lease, 199, Some(200)).await.unwrap());
    assert_eq!(percent(q.clone()).await, Some(99));
    assert!(q.progress("w1", &job.lease, 500, Some(200)).await.unwrap());
    assert_eq!(percent(q.clone()).await, Some(99));
    assert!(
        q.progress("w1", &job.lease, u64::MAX, Some(u64::MAX))
            .await
            .unwrap()
    );
    assert_eq!(percent(q.clone()).await, Some(99));

    // unknown or zero total: bytes only
    assert!(q.progress("w1", &job.lease, 1, None).await.unwrap());
    assert_eq!(percent(q.clone()).await, Some(99));
    let j = job_row(&q, job.id()).await;
    assert_eq!(
        (int(&j, "progress_bytes"), int(&j, "progress_total")),
        (Some(1), None)
    );
    assert!(q.progress("w1", &job.lease, 1, Some(0)).await.unwrap());
    assert_eq!(percent(q.clone()).await, Some(99));

    assert!(!q.progress("w2", &job.lease, 1, Some(2)).await.unwrap());
}

#[tokio::test]
async fn a_failed_job_put_back_by_hand_gets_its_attempts_back() {
    let (_dir, q) = open_temp().await;
    let r = enqueue(
        &q,
        EnqueueRequest {
            url: Some(link(1)),
            max_attempts: Some(2),
            ..Default::default()
        },
    )
    .await;
    let job_id = r.job_id.unwrap();
    for _ in 0..2 {
        let job = claim_one(&q, "w1").await;
        q.fail(
            "w1",
            &[failure(
                job.lease,
                ErrorClass::Transient,
                Some(Duration::ZERO),
            )],
        )
        .await
        .unwrap();
    }
    let j = job_row(&q, job_id).await;
    assert_eq!(text(&j, "status").as_deref(), Some("failed"));
    assert_eq!(int(&j, "attempts"), Some(2));
    assert_eq!(text(&j, "worker_id").as_deref(), Some("w1"));

    // what the old README advises
    exec(
        &q,
        "update download_jobs set status = 'pending' where id = ?1",
        job_id,
        None,
    )
    .await;
    let j = job_row(&q, job_id).await;
    assert_eq!(text(&j, "status").as_deref(), Some("pending"));
    assert_eq!(int(&j, "attempts"), Some(0));
    assert_eq!(text(&j, "worker_id"), None);
    assert_eq!(text(&j, "lease_id"), None);
    assert_eq!(text(&j, "lease_expires_at"), None);
    let job = claim_one(&q, "w2").await;
    assert_eq!((job.id(), job.attempts), (job_id, 1));

    // other writers: a job inserted without due time or priority gets both; a due time set
    // to null becomes now
    let video_id = Uuid::new_v4();
    sqlx::query(
        "insert into videos (id, video_url, surge_detected, viral_momentum)
         values (?1, 'https://v.douyin.com/x/', 1, 3)",
    )
    .bind(video_id.hyphenated())
    .execute(q.pool())
    .await
    .unwrap();
    let (id,): (String,) = sqlx::query_as(
        "insert into download_jobs (video_id, scheduled_at) values (?1, null) returning id",
    )
    .bind(video_id.hyphenated())
    .fetch_one(q.pool())
    .await
    .unwrap();
    let id = Uuid::parse_str(&id).unwrap();
    assert_eq!(id.get_version_num(), 4);
    let j = job_row(&q, id).await;
    assert_eq!(int(&j, "priority"), Some(1_000_003));
    let due: DateTime<Utc> = j.try_get("scheduled_at").unwrap();
    assert!((Utc::now() - due).num_seconds().abs() < 5);
    set_due(&q, id, 3600).await;
    exec(
        &q,
        "update download_jobs set scheduled_at = null where id = ?1",
        id,
        None,
    )
    .await;
    let due: DateTime<Utc> = job_row(&q, id).await.try_get("scheduled_at").unwrap();
    assert!((Utc::now() - due).num_seconds().abs() < 5);
    assert_eq!(claim_one(&q, "w3").await.id(), id);
}

/// The schema's own guard (the shared suite checks the queue's answers on every backend): a
/// second active job cannot be written, not even by hand.
#[tokio::test]
async fn the_schema_allows_one_active_job_per_video() {
    let (_dir, q) = open_temp().await;
    let r = enqueue_url(&q, &link(1)).await;
    let second = sqlx::query("insert into download_jobs (video_id) values (?1)")
        .bind(r.video_id.unwrap().hyphenated())
        .execute(q.pool())
        .await;
    let err = QueueError::from(second.unwrap_err());
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    let job = claim_one(&q, "w1").await;
    q.fail("w1", &[failure(job.lease, ErrorClass::Permanent, None)])
        .await
        .unwrap();
    let again = enqueue_url(&q, &link(1)).await;
    assert_eq!(again.outcome, EnqueueOutcome::Queued);
    // A failed job cannot be put back by hand while another is active.
    let back = sqlx::query("update download_jobs set status = 'pending' where id = ?1")
        .bind(r.job_id.unwrap().hyphenated())
        .execute(q.pool())
        .await;
    assert!(back.is_err());
}

#[tokio::test]
async fn the_schema_refuses_blob_uuids_and_other_time_forms() {
    let (_dir, q) = open_temp().await;
    let blob = sqlx::query("insert into videos (id) values (?1)")
        .bind(Uuid::new_v4())
        .execute(q.pool())
        .await;
    assert!(blob.is_err());
    let r = enqueue_url(&q, &link(1)).await;
    let other_form = sqlx::query("update download_jobs set scheduled_at = ?2 where id = ?1")
        .bind(r.job_id.unwrap().hyphenated())
        .bind(Utc::now())
        .execute(q.pool())
        .await;
    assert!(other_form.is_err());
    // every time the queue writes has the canonical form
    let job = claim_one(&q, "w1").await;
    q.progress("w1", &job.lease, 1, Some(2)).await.unwrap();
    let j = job_row(&q, job.id()).await;
    for column in [
        "scheduled_at",
        "created_at",
        "updated_at",
        "started_at",
        "lease_expires_at",
        "heartbeat_at",
        "progress_at",
    ] {
        let t = text(&j, column).unwrap();
        assert_eq!(t.len(), 24, "{column}: {t}");
        assert!(
            chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.3fZ").is_ok(),
            "{column}: {t}"
        );
    }
}

#[tokio::test]
async fn subscribers_are_woken_by_this_process() {
    let (_dir, q) = open_temp().await;
    let signal = Arc::new(JobSignal::new());
    let stop = CancellationToken::new();
    q.clone()
        .subscribe(signal.clone(), stop.clone())
        .await
        .unwrap();
    let never = CancellationToken::new();
    let wait_for = |signal: Arc<JobSignal>, at_most: Duration| {
        let never = never.clone();
        async move {
            let start = std::time::Instant::now();
            signal.wait(at_most, &never).await;
            start.elapsed()
        }
    };
    // Waits of an hour: returning within the minute's guard means the signal fired.
    let woken = |signal: Arc<JobSignal>| async move {
        let hour = Duration::from_secs(3600);
        tokio::time::timeout(Duration::from_secs(60), wait_for(signal, hour))
            .await
            .expect("the signal never fired")
    };

    enqueue_url(&q, &link(1)).await;
    woken(signal.clone()).await;

    // a retry in 300 ms wakes the waiter then; first, the wake-up the file's change watcher
    // may still owe the enqueue (it looks every 200 ms) is let through and consumed
    let job = claim_one(&q, "w1").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = wait_for(signal.clone(), Duration::from_millis(1)).await;
    q.fail(
        "w1",
        &[failure(
            job.lease,
            ErrorClass::Transient,
            Some(Duration::from_millis(300)),
        )],
    )
    .await
    .unwrap();
    let waited = woken(signal.clone()).await;
    assert!(
        waited >= Duration::from_millis(200),
        "woken early: {waited:?}"
    );

    // after shutdown, no more signals
    stop.cancel();
    enqueue_url(&q, &link(2)).await;
    let waited = wait_for(signal.clone(), Duration::from_secs(2)).await;
    assert!(waited >= Duration::from_millis(1900), "woken: {waited:?}");
    assert!(q.shared.subscribers.lock().unwrap().is_empty());
}

#[tokio::test]
async fn schema_checks_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let q = SqliteQueue::open(&path).await.unwrap();
    assert_eq!(q.backend(), "sqlite");
    q.check_schema().await.unwrap();
    assert_eq!(q.stats().await.unwrap(), WorkerStats::default());
    let r = enqueue_url(&q, &link(1)).await;
    // applying the file again changes nothing
    sqlx::raw_sql(include_str!("../sqlite_schema.sql"))
        .execute(q.pool())
        .await
        .unwrap();
    q.pool().close().await;
    let q = SqliteQueue::open(&path).await.unwrap();
    q.check_schema().await.unwrap();
    assert_eq!(enqueue_url(&q, &link(1)).await.job_id, r.job_id);
    let mode: (String,) = sqlx::query_as("pragma journal_mode")
        .fetch_one(q.pool())
        .await
        .unwrap();
    assert_eq!(mode.0, "wal");
    let fk: (i64,) = sqlx::query_as("pragma foreign_keys")
        .fetch_one(q.pool())
        .await
        .unwrap();
    assert_eq!(fk.0, 1);

    // a file without the schema
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("empty.db"))
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    let bare = SqliteQueue::from_pool(pool);
    let err = bare.check_schema().await.unwrap_err();
    assert!(matches!(err, QueueError::Schema(_)), "{err}");
    let err = bare.stats().await.unwrap_err();
    assert!(matches!(err, QueueError::Schema(_)), "{err}");
    // deleting a video deletes its jobs (foreign keys are on)
    sqlx::query("delete from videos where id = ?1")
        .bind(r.video_id.unwrap().hyphenated())
        .execute(q.pool())
        .await
        .unwrap();
    assert_eq!(q.stats().await.unwrap().total_jobs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_claim_each_job_once() {
    const JOBS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    // two queues on one file: two "processes" contending for the file's write lock, four
    // claimers each contending for their process's write turn
    let a = SqliteQueue::open(&path).await.unwrap();
    let b = SqliteQueue::open(&path).await.unwrap();
    sqlx::query(
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < ?1)
         insert into videos (douyin_id, video_url, status)
         select i, 'https://x/' || i, 'queued' from n",
    )
    .bind(JOBS as i64)
    .execute(a.pool())
    .await
    .unwrap();
    sqlx::query("insert into download_jobs (video_id, priority) select id, 0 from videos")
        .execute(a.pool())
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let q = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let worker = format!("w{t}");
            let mut mine = Vec::new();
            loop {
                let jobs = q.claim(&worker, 7, LEASE).await.expect("claim");
                if jobs.is_empty() {
                    break;
                }
                let done: Vec<Completion> = jobs
                    .iter()
                    .map(|j| completion(j.lease, &j.id().to_string()))
                    .collect();
                let out = q.complete(&worker, &done).await.expect("complete");
                assert!(out.iter().all(|(_, o)| *o == CompleteOutcome::Completed));
                mine.extend(jobs.into_iter().map(|j| j.id()));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    let unique: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!(all.len(), JOBS, "every job claimed once");
    assert_eq!(unique.len(), JOBS);
    let stats = a.stats().await.unwrap();
    assert_eq!(stats.completed_jobs, JOBS as i64);
    assert_eq!(stats.total_jobs, JOBS as i64);
    eprintln!(
        "{JOBS} jobs claimed and completed by 8 claimers in {elapsed:?} ({:.0} jobs/s)",
        JOBS as f64 / elapsed.as_secs_f64()
    );
}
