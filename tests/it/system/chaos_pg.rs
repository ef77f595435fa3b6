//! PostgreSQL restarted during a run (a private cluster, never the shared one): the workers
//! reconnect and finish; nothing is lost and nothing is stored twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Rig, files_under, sha256, wait_until, with_message};
use fakes::cdn::Serve;
use fakes::pg::{PrivateCluster, TestDb, pool_for};

const JOBS: usize = 12;
const KIB: usize = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_run_the_workers_reconnect_and_finish_every_job() {
    through(Chaos::Restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_longer_than_a_lease_the_workers_reconnect_and_finish_every_job() {
    through(Chaos::Outage(Duration::from_secs(7))).await;
}

/// What happens to PostgreSQL mid-run.
#[derive(Clone, Copy, Debug)]
enum Chaos {
    /// `pg_ctl restart -m fast` (down for a fraction of a second).
    Restart,
    /// Stopped, then started again after this long (longer than the 5-s lease: every lease
    /// has expired when it comes back).
    Outage(Duration),
}

/// Twelve jobs through two workers of three slots; `chaos` while six are mid-download.
async fn through(chaos: Chaos) {
    let cluster = tokio::task::spawn_blocking(PrivateCluster::start)
        .await
        .unwrap();
    let pool = pool_for(&cluster.url, 10).await;
    douyin_worker::queue::migrate::apply_postgres(&pool)
        .await
        .unwrap();
    let db = TestDb {
        pool,
        url: cluster.url.clone(),
        name: "postgres".into(),
    };
    // Every file pauses 1.5 s a quarter of the way: the restart lands mid-download.
    let ids: Vec<String> = (0..JOBS)
        .map(|i| format!("74123456789012350{i:02}"))
        .collect();
    let videos: Vec<(&str, usize, Serve)> = ids
        .iter()
        .map(|id| {
            (
                id.as_str(),
                512 * KIB,
                Serve::StallAfter {
                    after: 128 * KIB as u64,
                    stall: Duration::from_millis(1500),
                },
            )
        })
        .collect();
    let rig = Rig::start_on(db, &videos).await;
    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(rig.enqueue(id).await);
    }
    let workers: Vec<_> = (0..2)
        .map(|i| {
            rig.worker(&[
                ("MAX_CONCURRENT", "3"),
                ("LEASE_SECONDS", "5"),
                ("WORKER_ID", &format!("pg-{i}")),
            ])
        })
        .collect();
    wait_until(Duration::from_secs(20), "six jobs running", || async {
        let running: i64 =
            sqlx::query_scalar("select count(*) from download_jobs where status = 'running'")
                .fetch_one(&rig.db.pool)
                .await
                .unwrap();
        (running == 6).then_some(())
    })
    .await;
    let started_at = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>("select pg_postmaster_start_time()")
            .fetch_one(&rig.db.pool)
            .await
            .unwrap()
    };
    let before = started_at().await;
    let t = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        match chaos {
            Chaos::Restart => cluster.restart(),
            Chaos::Outage(down) => cluster.outage(down),
        }
        cluster
    })
    .await
    .unwrap();
    eprintln!("PostgreSQL {chaos:?}: back after {:?}", t.elapsed());
    assert!(started_at().await > before, "a new postmaster");

    for job in &jobs {
        let r = rig
            .wait(*job, &["completed", "failed"], Duration::from_secs(60))
            .await;
        assert_eq!(r.status, "completed", "{r:?}");
        assert!(r.attempts <= 3, "{r:?}");
    }
    let mut done: HashMap<String, usize> = HashMap::new();
    for w in workers {
        let (code, lines) = w.stop();
        assert_eq!(code, Some(0));
        for l in with_message(&lines, "job done") {
            *done
                .entry(l["span"]["job_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let attempts: Vec<i32> = sqlx::query_scalar("select attempts from download_jobs")
        .fetch_all(&rig.db.pool)
        .await
        .unwrap();
    eprintln!(
        "attempts per job: {attempts:?}; 'job done' lines per job: {:?}",
        done.values().collect::<Vec<_>>()
    );
    // One job row per video, every video ready with its one object.
    assert_eq!(attempts.len(), JOBS);
    assert_eq!(done.len(), JOBS, "every job done at least once");
    let ready: i64 = sqlx::query_scalar(
        "select count(*) from videos where status = 'ready' and object_key is not null",
    )
    .fetch_one(&rig.db.pool)
    .await
    .unwrap();
    assert_eq!(ready, JOBS as i64);
    let mut expected: Vec<String> = ids
        .iter()
        .flat_map(|id| [format!("{id}/{id}.mp4"), format!("{id}/{id}.mp4.meta.json")])
        .collect();
    expected.sort();
    assert_eq!(files_under(&rig.store()), expected);
    for v in &rig.videos {
        let stored = std::fs::read(rig.store().join(format!("{0}/{0}.mp4", v.id))).unwrap();
        assert_eq!(sha256(&stored), sha256(&v.media), "{}", v.id);
    }
    assert_eq!(rig.temp_entries(), Vec::<String>::new());
    drop(cluster);
}
