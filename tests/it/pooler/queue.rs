//! The queue's calls and `migrate` through PgBouncer, with several clients at once so that
//! statements of different clients meet on shared server connections.

use std::collections::HashSet;
use std::time::Duration;

use douyin_worker::config::database_url::connect_options;
use douyin_worker::error::ErrorClass;
use douyin_worker::queue::QueueAdmin;
use douyin_worker::queue::migrate::{self, MigrationReport, POSTGRES};
use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::queue::{
    ClaimedJob, CompleteOutcome, Completion, EnqueueOutcome, EnqueueRequest, FailOutcome,
    FailedAttempt, JobFilter, JobQueue, JobStatus, Lease, ReleaseOutcome, RetryOutcome,
    RetryTarget, StoredObject, VideoUpdate,
};
use futures::future::join_all;
use sqlx::ConnectOptions;

use super::{PgBouncer, PoolMode};
use fakes::pg::{fresh_pg, fresh_pg_empty};

const LEASE: Duration = Duration::from_secs(300);
/// Worker processes, each with a queue (a pool and a claim connection) of its own.
const WORKERS: usize = 4;
const JOBS: usize = 24;

fn douyin_id(i: usize) -> String {
    format!("74100000000{i:08}")
}

fn stored(douyin_id: &str) -> StoredObject {
    StoredObject {
        storage_provider: "local".into(),
        bucket: "videos".into(),
        object_key: format!("{douyin_id}/{douyin_id}.mp4"),
        storage_etag: Some("etag".into()),
        filesize: 4096,
        mime_type: "video/mp4".into(),
        storage_metadata: serde_json::json!({}),
    }
}

fn failure(lease: Lease, class: ErrorClass) -> FailedAttempt {
    FailedAttempt {
        lease,
        error: format!("{} failure", class.as_str()),
        code: "test".into(),
        class,
        retry_in: (class != ErrorClass::Permanent).then_some(Duration::from_secs(3600)),
        forget_direct_url: None,
    }
}

/// Claims until nothing is due, two at a time, reporting progress on each new job and
/// renewing every lease held after each claim, as a worker does.
async fn claim_all(q: &PgQueue, worker: &str) -> Vec<ClaimedJob> {
    let mut held: Vec<ClaimedJob> = Vec::new();
    loop {
        let jobs = q.claim(worker, 2, LEASE).await.unwrap();
        if jobs.is_empty() {
            return held;
        }
        for job in &jobs {
            assert!(q.progress(worker, &job.lease, 10, Some(100)).await.unwrap());
        }
        held.extend(jobs);
        let leases: Vec<Lease> = held.iter().map(|j| j.lease).collect();
        let renewed = q.heartbeat(worker, &leases, LEASE).await.unwrap();
        assert_eq!(renewed.len(), leases.len(), "{worker} keeps every lease");
    }
}

/// What happens to a claimed job, by its place among all claimed jobs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    Complete,
    FailTransient,
    FailPermanent,
    Release,
    Rescue,
}

fn fate(i: usize) -> Fate {
    [
        Fate::Complete,
        Fate::FailTransient,
        Fate::FailPermanent,
        Fate::Release,
        Fate::Rescue,
        Fate::Complete,
    ][i % 6]
}

/// Records the outcomes of one worker's jobs, one batch per kind.
async fn settle(q: &PgQueue, worker: &str, jobs: &[(Fate, ClaimedJob)]) {
    let of = |f: Fate| jobs.iter().filter(move |(g, _)| *g == f).map(|(_, j)| j);
    let done: Vec<Completion> = of(Fate::Complete)
        .map(|j| Completion {
            lease: j.lease,
            stored: stored(j.video.douyin_id.as_deref().unwrap()),
            video: VideoUpdate::default(),
        })
        .collect();
    for (_, outcome) in q.complete(worker, &done).await.unwrap() {
        assert_eq!(outcome, CompleteOutcome::Completed);
    }
    let failed: Vec<FailedAttempt> = of(Fate::FailTransient)
        .map(|j| failure(j.lease, ErrorClass::Transient))
        .chain(of(Fate::FailPermanent).map(|j| failure(j.lease, ErrorClass::Permanent)))
        .collect();
    let outcomes = q.fail(worker, &failed).await.unwrap();
    assert_eq!(outcomes.len(), failed.len());
    for (id, outcome) in outcomes {
        let permanent = of(Fate::FailPermanent).any(|j| j.id() == id);
        match outcome {
            FailOutcome::Failed => assert!(permanent, "{id} failed for good"),
            FailOutcome::RetryScheduled(_) => assert!(!permanent, "{id} retried"),
            FailOutcome::LeaseLost => panic!("{id}: lease lost"),
        }
    }
    let released: Vec<Lease> = of(Fate::Release).map(|j| j.lease).collect();
    for (_, outcome) in q.release(worker, &released).await.unwrap() {
        assert_eq!(outcome, ReleaseOutcome::Released);
    }
}

/// The queue's whole life cycle through a PgBouncer in `mode`: enqueue, claims by several
/// workers at once with progress and heartbeats, complete, fail, release, rescue, retry, and
/// the reads (`video`, `job`, `jobs`, `overview`, `stats`, wanted keys).
async fn life_cycle(mode: PoolMode) {
    let bouncer = PgBouncer::start(mode);
    let db = fresh_pg().await;
    let url = bouncer.url(&db.name);
    let queues: Vec<PgQueue> = (0..WORKERS)
        .map(|_| PgQueue::connect_lazy(&url, mode.pooler(), 3).unwrap())
        .collect();
    let q = &queues[0];
    q.check_schema().await.unwrap();

    let enqueued = join_all((0..JOBS).map(|i| {
        let q = &queues[i % WORKERS];
        async move {
            q.enqueue(&EnqueueRequest {
                douyin_id: Some(douyin_id(i)),
                ..Default::default()
            })
            .await
        }
    }))
    .await;
    for r in &enqueued {
        assert_eq!(r.as_ref().unwrap().outcome, EnqueueOutcome::Queued, "{r:?}");
    }

    let workers: Vec<String> = (0..WORKERS).map(|w| format!("pooler-{w}")).collect();
    let claimed = join_all(queues.iter().zip(&workers).map(|(q, w)| claim_all(q, w))).await;
    let ids: HashSet<_> = claimed.iter().flatten().map(|j| j.id()).collect();
    assert_eq!(ids.len(), JOBS, "every job claimed once");

    let mut place = 0;
    let fated: Vec<Vec<(Fate, ClaimedJob)>> = claimed
        .into_iter()
        .map(|jobs| {
            jobs.into_iter()
                .map(|j| {
                    place += 1;
                    (fate(place - 1), j)
                })
                .collect()
        })
        .collect();
    join_all(
        queues
            .iter()
            .zip(&workers)
            .zip(&fated)
            .map(|((q, w), jobs)| settle(q, w, jobs)),
    )
    .await;
    let all: Vec<&(Fate, ClaimedJob)> = fated.iter().flatten().collect();
    let with = |f: Fate| all.iter().filter(move |(g, _)| *g == f).map(|(_, j)| j);

    // The rest lose their leases and are rescued.
    let expiring: Vec<uuid::Uuid> = with(Fate::Rescue).map(|j| j.id()).collect();
    sqlx::query(
        "update public.download_jobs set lease_expires_at = now() - interval '1 minute'
          where id = any($1)",
    )
    .bind(&expiring)
    .execute(&db.pool)
    .await
    .unwrap();
    let rescued = q.rescue(100).await.unwrap();
    let rescued_ids: HashSet<_> = rescued.iter().map(|r| r.job_id).collect();
    assert_eq!(rescued_ids, expiring.iter().copied().collect());
    assert!(rescued.iter().all(|r| r.requeued), "{rescued:?}");

    // The reads, from every queue at once.
    let done = with(Fate::Complete).next().unwrap();
    for (video, job) in join_all(
        queues
            .iter()
            .map(|q| async { (q.video(done.video_id).await, q.job(done.id()).await) }),
    )
    .await
    {
        let video = video.unwrap().unwrap();
        assert_eq!(video.status, "ready");
        assert_eq!(
            video.object_key,
            Some(stored(video.douyin_id.as_deref().unwrap()).object_key)
        );
        assert_eq!(job.unwrap().unwrap().status, "completed");
    }
    let failed = q
        .jobs(&JobFilter {
            status: Some(JobStatus::Failed),
            limit: 50,
        })
        .await
        .unwrap();
    let permanent: HashSet<_> = with(Fate::FailPermanent).map(|j| j.id()).collect();
    assert_eq!(
        failed.iter().map(|j| j.id).collect::<HashSet<_>>(),
        permanent
    );
    let retried = queues[1].retry(&RetryTarget::AllFailed).await.unwrap();
    assert_eq!(retried.len(), permanent.len());
    assert!(
        retried.iter().all(|r| r.outcome == RetryOutcome::Queued),
        "{retried:?}"
    );

    let completed = with(Fate::Complete).count() as i64;
    let overview = queues[2].overview().await.unwrap();
    assert_eq!(overview.stats.completed_jobs, completed);
    assert_eq!(overview.stats.failed_jobs, permanent.len() as i64);
    assert_eq!(overview.stats.running_jobs, 0);
    // Released, rescued, retry scheduled, and the new jobs of the retried.
    let pending = JOBS as i64 - completed;
    assert_eq!(overview.stats.pending_jobs, pending, "{overview:?}");
    assert_eq!(
        overview.stats.total_jobs,
        JOBS as i64 + permanent.len() as i64
    );
    assert_eq!(queues[3].stats().await.unwrap(), overview.stats);
    let keys = q.wanted_object_keys("videos").await.unwrap();
    let want: HashSet<String> = with(Fate::Complete)
        .map(|j| stored(j.video.douyin_id.as_deref().unwrap()).object_key)
        .collect();
    assert_eq!(keys, want);
    q.ensure_videos_bucket().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_life_cycle_works_through_a_session_mode_pooler() {
    life_cycle(PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_life_cycle_works_through_a_transaction_mode_pooler() {
    life_cycle(PoolMode::Transaction).await;
}

/// One `migrate` run on a connection of its own to `url`.
async fn migrate_once(url: &str) -> MigrationReport {
    let mut conn = connect_options(url).unwrap().connect().await.unwrap();
    migrate::apply_postgres_on(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("migrate through {url}: {e}"))
}

/// Two `migrate` runs at once on an empty database apply each file once between them (the
/// other finds it done); a third run changes nothing; the worker then finds its schema.
async fn migrate_twice_at_once(url: &str, pooler: douyin_worker::config::DbPooler) {
    let (a, b) = tokio::join!(migrate_once(url), migrate_once(url));
    for m in POSTGRES {
        let applied = [&a, &b]
            .iter()
            .filter(|r| r.applied.contains(&m.name))
            .count();
        let unchanged = [&a, &b]
            .iter()
            .filter(|r| r.unchanged.contains(&m.name))
            .count();
        assert_eq!((applied, unchanged), (1, 1), "{}: {a:?} {b:?}", m.name);
    }
    let again = migrate_once(url).await;
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.unchanged.len(), POSTGRES.len());
    PgQueue::connect_lazy(url, pooler, 2)
        .unwrap()
        .check_schema()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_migrate_runs_at_once_apply_each_file_once_on_a_direct_connection() {
    let db = fresh_pg_empty().await;
    migrate_twice_at_once(&db.url, douyin_worker::config::DbPooler::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_migrate_runs_at_once_apply_each_file_once_through_a_session_mode_pooler() {
    let bouncer = PgBouncer::start(PoolMode::Session);
    let db = fresh_pg_empty().await;
    migrate_twice_at_once(&bouncer.url(&db.name), PoolMode::Session.pooler()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_migrate_runs_at_once_apply_each_file_once_through_a_transaction_mode_pooler() {
    let bouncer = PgBouncer::start(PoolMode::Transaction);
    let db = fresh_pg_empty().await;
    migrate_twice_at_once(&bouncer.url(&db.name), PoolMode::Transaction.pooler()).await;
}
