//! The admin side of the queue (`video`, `jobs`, `retry`, `overview`, `wanted_object_keys`)
//! on every backend, and the `stats`, `jobs`, `retry` and `gc` commands through the binary on
//! a real PostgreSQL and on SQLite (`gc` with a local-folder store).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use douyin_worker::error::ErrorClass;
use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::queue::sqlite::SqliteQueue;
use douyin_worker::queue::{
    ClaimedJob, Completion, EnqueueOutcome, EnqueueRequest, Failure, JobFilter, JobQueue,
    JobStatus, RetryOutcome, RetryTarget, StoredObject, VideoUpdate,
};
use serde_json::Value;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::backends::{Backend, Kind, on_every_backend};

const LEASE: Duration = Duration::from_secs(60);

on_every_backend!(
    a_video_shows_its_download_state_and_its_latest_job,
    jobs_are_listed_newest_first_by_status_and_limit,
    retry_queues_a_new_job_and_says_why_it_did_not,
    retry_all_failed_takes_the_latest_failed_job_of_each_video_still_wanted,
    the_overview_counts_due_jobs_their_wait_and_each_workers_jobs,
    wanted_object_keys_are_those_of_live_videos_in_the_bucket,
);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Runs `sql` on the backend's database with `$1` bound to `id` (`?1` on SQLite).
async fn exec(b: &Backend, sql: &str, id: Uuid) {
    exec2(b, sql, &sql.replace("$1", "?1"), id).await;
}

/// Runs `pg` on PostgreSQL or `sqlite` on SQLite, with the first parameter bound to `id`.
async fn exec2(b: &Backend, pg: &str, sqlite: &str, id: Uuid) {
    match &b.pg {
        Some(db) => {
            sqlx::query(AssertSqlSafe(pg.to_string()))
                .bind(id)
                .execute(&db.pool)
                .await
                .unwrap_or_else(|e| panic!("{pg}: {e}"));
        }
        None => {
            let q = SqliteQueue::open(Path::new(&b.locator.1)).await.unwrap();
            sqlx::query(AssertSqlSafe(sqlite.to_string()))
                .bind(id.hyphenated().to_string())
                .execute(q.pool())
                .await
                .unwrap_or_else(|e| panic!("{sqlite}: {e}"));
        }
    }
}

fn stored(bucket: &str, key: &str) -> StoredObject {
    StoredObject {
        storage_provider: "local".into(),
        bucket: bucket.into(),
        object_key: key.into(),
        storage_etag: Some("etag".into()),
        filesize: 2048,
        mime_type: "video/mp4".into(),
        storage_metadata: serde_json::json!({}),
    }
}

/// Claims the one due job, which must be `job`.
async fn claim(q: &dyn JobQueue, job: Uuid, worker: &str) -> ClaimedJob {
    let mut jobs = q.claim(worker, 1, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 1, "one due job");
    let claimed = jobs.remove(0);
    assert_eq!(claimed.id(), job);
    claimed
}

/// Claims `job` and fails it for good.
async fn fail_for_good(q: &dyn JobQueue, job: Uuid) {
    let c = claim(q, job, "w").await;
    q.fail(
        "w",
        &[Failure {
            lease: c.lease,
            error: "video deleted: 作品已删除".into(),
            code: "video-deleted".into(),
            class: ErrorClass::Permanent,
            retry_in: None,
        }],
    )
    .await
    .unwrap();
}

/// Claims `job` and completes it with the object `key` in `bucket`.
async fn complete(q: &dyn JobQueue, job: Uuid, bucket: &str, key: &str) {
    let c = claim(q, job, "w").await;
    q.complete(
        "w",
        &[Completion {
            lease: c.lease,
            stored: stored(bucket, key),
            video: VideoUpdate::default(),
        }],
    )
    .await
    .unwrap();
}

async fn video_of(q: &dyn JobQueue, job: Uuid) -> Uuid {
    q.job(job).await.unwrap().expect("job").video_id
}

/// Queues the video again (it must be queued).
async fn enqueue_video(q: &dyn JobQueue, video_id: Uuid) -> Uuid {
    let r = q
        .enqueue(&EnqueueRequest {
            video_id: Some(video_id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.outcome, EnqueueOutcome::Queued);
    r.job_id.unwrap()
}

// ---------------------------------------------------------------------------------------------
// The queue methods, on every backend

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
        &[Failure {
            lease: c.lease,
            error: "cdn said 503".into(),
            code: "http-503".into(),
            class: ErrorClass::Transient,
            retry_in: Some(Duration::ZERO),
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
        &[Failure {
            lease: two[0].lease,
            error: "slow down".into(),
            code: "http-429".into(),
            class: ErrorClass::Transient,
            retry_in: Some(Duration::from_secs(3600)),
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

// ---------------------------------------------------------------------------------------------
// The commands, through the binary

/// Where the binary finds its queue and store.
struct Place {
    env: Vec<(String, String)>,
    store: PathBuf,
    _dir: tempfile::TempDir,
}

impl Place {
    /// A PostgreSQL database (and a store folder).
    fn postgres(url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        Place {
            env: vec![
                ("DATABASE_URL".into(), url.into()),
                (
                    "DATA_DIR".into(),
                    dir.path().join("data").display().to_string(),
                ),
                ("STORAGE_DIR".into(), store.display().to_string()),
            ],
            store,
            _dir: dir,
        }
    }

    /// The embedded default: a SQLite file in DATA_DIR (and a store folder).
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        Place {
            env: vec![
                (
                    "DATA_DIR".into(),
                    dir.path().join("data").display().to_string(),
                ),
                ("STORAGE_DIR".into(), store.display().to_string()),
            ],
            store,
            _dir: dir,
        }
    }

    /// The SQLite queue the binary uses.
    async fn sqlite_queue(&self) -> SqliteQueue {
        let data = &self.env.iter().find(|(k, _)| k == "DATA_DIR").unwrap().1;
        SqliteQueue::open(&Path::new(data).join("douyin-worker.db"))
            .await
            .unwrap()
    }

    /// Runs the binary with `args`.
    fn run(&self, args: &[&str]) -> Output {
        let cwd = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_douyin-worker"));
        cmd.args(args).current_dir(cwd.path());
        for var in [
            "DATABASE_URL",
            "SUPABASE_URL",
            "SUPABASE_SERVICE_ROLE_KEY",
            "DATA_DIR",
            "STORAGE_DIR",
            "STORAGE_URL",
            "STORAGE_BUCKET",
            "LOG_FORMAT",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HTTP_ADDR", "off");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Runs the binary; it must succeed; returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs the binary with `--json`; it must succeed.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The lines of a table whose first cell is `first`.
fn rows_starting<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(first))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_jobs_and_retry_through_the_binary_on_postgres() {
    let db = crate::helpers::fresh_pg().await;
    let q = PgQueue::from_pool(db.pool.clone());
    stats_jobs_and_retry(&q, &Place::postgres(&db.url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_jobs_and_retry_through_the_binary_on_sqlite() {
    crate::helpers::init_tracing();
    let place = Place::sqlite();
    let q = place.sqlite_queue().await;
    stats_jobs_and_retry(&q, &place).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_through_the_binary_in_supabase_mode() {
    let b = Backend::new(Kind::Rest).await;
    let (url, key) = b.locator.1.split_once(' ').unwrap();
    b.enqueue("7400000000000000001").await;
    let place = Place {
        env: vec![
            ("SUPABASE_URL".into(), url.into()),
            ("SUPABASE_SERVICE_ROLE_KEY".into(), key.into()),
        ],
        store: PathBuf::new(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let stats = tokio::task::spawn_blocking(move || place.json(&["stats", "--json"]))
        .await
        .unwrap();
    assert_eq!(stats["stats"]["pending_jobs"], 1);
    assert_eq!(stats["due_jobs"], 1);
}

async fn stats_jobs_and_retry(q: &dyn JobQueue, place: &Place) {
    let enqueue = |douyin_id: &'static str| async move {
        q.enqueue(&EnqueueRequest {
            douyin_id: Some(douyin_id.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .job_id
        .unwrap()
    };
    let failed = enqueue("7400000000000000002").await;
    fail_for_good(q, failed).await;
    let running = enqueue("7400000000000000001").await;
    let _held = claim(q, running, "w-hold").await;

    // stats
    let table = place.ok(&["stats"]);
    assert_eq!(rows_starting(&table, "total"), ["total jobs        2"]);
    assert!(table.lines().any(|l| l == "failed            1"), "{table}");
    assert!(table.lines().any(|l| l == "running           1"), "{table}");
    assert!(
        table.contains("WORKER  RUNNING\nw-hold        1"),
        "{table}"
    );
    let stats = place.json(&["stats", "--json"]);
    assert_eq!(stats["stats"]["total_jobs"], 2);
    assert_eq!(stats["stats"]["failed_jobs"], 1);
    assert_eq!(stats["stats"]["active_workers"], 1);
    assert_eq!(stats["due_jobs"], 0);
    assert_eq!(stats["oldest_due_seconds"], Value::Null);
    assert_eq!(stats["workers"][0]["worker_id"], "w-hold");

    // jobs
    let table = place.ok(&["jobs"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for column in [
        "JOB",
        "VIDEO",
        "STATUS",
        "ATTEMPTS",
        "WORKER",
        "PROGRESS",
        "LAST ERROR",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    // Newest first; aligned: every row's status starts where the title's does.
    let status_at = lines[0].find("STATUS").unwrap();
    assert!(lines[1].starts_with(&running.to_string()), "{table}");
    assert_eq!(&lines[1][status_at..status_at + 7], "running");
    assert!(lines[1].contains("w-hold") && lines[1].contains("7400000000000000001"));
    assert!(lines[2].starts_with(&failed.to_string()), "{table}");
    assert_eq!(&lines[2][status_at..status_at + 6], "failed");
    assert!(lines[2].contains("7400000000000000002"));
    assert!(lines[2].contains("1/5"));
    assert!(lines[2].ends_with("video deleted: 作品已删除"), "{table}");
    let jobs = place.json(&["jobs", "--status", "failed", "--json"]);
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["id"], failed.to_string());
    assert_eq!(jobs[0]["status"], "failed");
    assert_eq!(jobs[0]["last_error_class"], "permanent");
    let jobs = place.json(&["jobs", "--limit", "1", "--json"]);
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["id"], running.to_string());
    assert_eq!(
        place.ok(&["jobs", "--status", "completed"]),
        "no completed jobs\n"
    );
    let o = place.run(&["jobs", "--status", "done"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown job status \"done\": expected pending, running"),
        "{}",
        stderr(&o)
    );
    let o = place.run(&["jobs", "--limit", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // retry
    let o = place.run(&["retry", "not-a-uuid"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("\"not-a-uuid\" is not a job id"),
        "{}",
        stderr(&o)
    );
    assert_eq!(place.run(&["retry"]).status.code(), Some(2));
    assert_eq!(
        place
            .run(&["retry", "--all-failed", &failed.to_string()])
            .status
            .code(),
        Some(2)
    );
    let table = place.ok(&["retry", &failed.to_string()]);
    let rows = rows_starting(&table, &failed.to_string());
    assert_eq!(rows.len(), 1, "{table}");
    assert!(table.starts_with("JOB "), "{table}");
    let cells: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(cells[1], "queued");
    let new_job: Uuid = cells[2].parse().unwrap();
    assert_eq!(q.job(new_job).await.unwrap().unwrap().status, "pending");

    let unknown = Uuid::new_v4();
    let o = place.run(&[
        "retry",
        "--json",
        &failed.to_string(),
        &running.to_string(),
        &unknown.to_string(),
    ]);
    assert_eq!(o.status.code(), Some(2), "not_found is bad input");
    assert!(
        stderr(&o).contains("1 of 3 job ids match no job"),
        "{}",
        stderr(&o)
    );
    let results: Value = serde_json::from_slice(&o.stdout).unwrap();
    let outcomes: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["duplicate", "not_failed", "not_found"]);
    assert_eq!(results[0]["new_job_id"], new_job.to_string());

    assert_eq!(
        place.ok(&["retry", "--all-failed"]),
        "no failed jobs to retry\n"
    );
    assert_eq!(
        place.json(&["retry", "--all-failed", "--json"]),
        Value::Array(vec![])
    );

    // enqueue prints the same kind of table.
    let table = place.ok(&["enqueue", "7400000000000000002"]);
    assert!(table.starts_with("OUTCOME"), "{table}");
    assert_eq!(rows_starting(&table, "duplicate").len(), 1, "{table}");
}

/// Writes an object file of `size` bytes last modified `age` ago.
fn put_file(store: &Path, key: &str, size: usize, age: Duration) {
    let path = store.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![7u8; size]).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

const TWO_DAYS: Duration = Duration::from_secs(2 * 86_400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_exactly_the_orphans_on_postgres() {
    let db = crate::helpers::fresh_pg().await;
    let q = PgQueue::from_pool(db.pool.clone());
    let place = Place::postgres(&db.url);
    gc_deletes_exactly_the_orphans(&q, &place, |sql, id| {
        let pool = db.pool.clone();
        async move {
            sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_exactly_the_orphans_on_sqlite() {
    crate::helpers::init_tracing();
    let place = Place::sqlite();
    let q = place.sqlite_queue().await;
    let pool = q.pool().clone();
    gc_deletes_exactly_the_orphans(&q, &place, |sql, id| {
        let pool = pool.clone();
        async move {
            sqlx::query(AssertSqlSafe(sql.replace("$1", "?1")))
                .bind(id.hyphenated().to_string())
                .execute(&pool)
                .await
                .unwrap();
        }
    })
    .await;
}

async fn gc_deletes_exactly_the_orphans<F, Fut>(q: &dyn JobQueue, place: &Place, exec: F)
where
    F: Fn(String, Uuid) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let store = &place.store;
    // A store whose queue wants nothing is not emptied by mistake.
    put_file(store, "0/0.mp4", 10, TWO_DAYS);
    let o = place.run(&["gc", "--apply"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refusing to delete all 1 objects"),
        "{}",
        stderr(&o)
    );
    assert!(store.join("0/0.mp4").exists());
    std::fs::remove_file(store.join("0/0.mp4")).unwrap();

    let mut videos = Vec::new();
    for (i, key) in [
        (1, "1/1.mp4"),
        (2, "2/2.mp4"),
        (3, "3/3.mp4"),
        (4, "4/4.mp4"),
    ] {
        let r = q
            .enqueue(&EnqueueRequest {
                douyin_id: Some(format!("740000000000000000{i}")),
                ..Default::default()
            })
            .await
            .unwrap();
        complete(q, r.job_id.unwrap(), "videos", key).await;
        videos.push(r.video_id.unwrap());
    }
    put_file(store, "1/1.mp4", 1000, TWO_DAYS); // wanted
    put_file(store, "2/2.mp4", 2000, TWO_DAYS); // its video is deleted
    exec("delete from videos where id = $1".into(), videos[1]).await;
    put_file(store, "3/3.mp4", 3000, TWO_DAYS); // its video is marked for deletion
    exec(
        "update videos set marked_for_deletion = true where id = $1".into(),
        videos[2],
    )
    .await;
    put_file(store, "4/4.mp4", 4000, TWO_DAYS); // wanted
    put_file(store, "4/4_1700000000000.mp4", 5000, TWO_DAYS); // the old worker's copy
    put_file(store, "5/5.mp4", 6000, Duration::from_secs(60)); // an upload not recorded yet
    let orphans = ["2/2.mp4", "3/3.mp4", "4/4_1700000000000.mp4"];
    let all = [
        "1/1.mp4",
        "2/2.mp4",
        "3/3.mp4",
        "4/4.mp4",
        "4/4_1700000000000.mp4",
        "5/5.mp4",
    ];
    let present = || -> Vec<&str> {
        all.iter()
            .copied()
            .filter(|k| store.join(k).exists())
            .collect()
    };

    // Dry runs: listed, nothing deleted.
    let table = place.ok(&["gc"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(
        lines[0].starts_with("KEY") && lines[0].contains("SIZE"),
        "{table}"
    );
    for (line, key) in lines[1..4].iter().zip(orphans) {
        assert!(
            line.starts_with(key) && line.ends_with("would delete"),
            "{table}"
        );
    }
    assert!(
        lines[1].contains("2.0 KiB") && lines[1].contains("2d"),
        "{table}"
    );
    assert_eq!(
        lines[4],
        "dry run: would delete 3 orphans (9.8 KiB) from bucket videos (local) \
         (6 objects, 2 wanted); kept 1 orphan younger than 1d; run with --apply to delete"
    );
    let report = place.json(&["gc", "--json"]);
    let keys: Vec<&str> = report["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, orphans);
    assert_eq!(report["orphans"][0]["size"], 2000);
    assert_eq!(report["orphans"][0]["result"], "would_delete");
    assert_eq!(report["orphan_bytes"], 10_000);
    assert_eq!(report["apply"], false);
    assert_eq!(
        (report["objects"].as_u64(), report["wanted"].as_u64()),
        (Some(6), Some(2))
    );
    assert_eq!(report["kept_young"], 1);
    assert_eq!(report["min_age_seconds"], 86_400);
    assert_eq!(present(), all);

    // Apply: exactly the orphans go.
    let report = place.json(&["gc", "--apply", "--json"]);
    assert_eq!(report["deleted"], 3);
    assert_eq!(report["failed"], 0);
    assert!(
        report["orphans"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["result"] == "deleted")
    );
    assert_eq!(present(), ["1/1.mp4", "4/4.mp4", "5/5.mp4"]);
    assert_eq!(
        place.ok(&["gc", "--apply"]),
        "no orphans to delete in bucket videos (local) (3 objects, 2 wanted); \
         kept 1 orphan younger than 1d\n"
    );

    // A shorter --min-age takes the young orphan too; the table reports each deletion.
    let table = place.ok(&["gc", "--apply", "--min-age", "30s"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("5/5.mp4") && l.ends_with("deleted")),
        "{table}"
    );
    assert!(
        table.ends_with(
            "deleted 1 of 1 orphan (5.9 KiB) from bucket videos (local) (3 objects, 2 wanted)\n"
        ),
        "{table}"
    );
    assert_eq!(present(), ["1/1.mp4", "4/4.mp4"]);

    let o = place.run(&["gc", "--min-age", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("\"soon\": expected a duration"),
        "{}",
        stderr(&o)
    );
}
