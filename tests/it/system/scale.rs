//! Scale-out: four worker processes of sixteen slots each share one database and one store.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use douyin_worker::queue::postgres::PgQueue;
use futures::StreamExt;

use super::{enqueue, entries, files_under, sha256, wait_until, with_message};
use crate::cli::RunningBinary;
use fakes::douyin::{Behaviour, DouyinServer, video_post};
use fakes::pg::fresh_pg;

const JOBS: usize = 2_000;
const PROCESSES: usize = 4;
const SLOTS: &str = "16";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_of_sixteen_slots_store_two_thousand_jobs_exactly_once() {
    let t = Instant::now();
    let ids: Vec<String> = (0..JOBS).map(|i| format!("74{i:017}")).collect();
    let server = DouyinServer::start(
        ids.iter()
            .map(|id| video_post(id, Behaviour::OldSharePage))
            .collect(),
    )
    .await;
    eprintln!("{JOBS} posts built in {:?}", t.elapsed());
    let db = fresh_pg().await;
    let q = PgQueue::from_pool(db.pool.clone());
    let store = tempfile::tempdir().unwrap();
    let temp = tempfile::tempdir().unwrap();

    // Queued before the workers start, 32 at a time.
    let t = Instant::now();
    let jobs: Vec<uuid::Uuid> = futures::stream::iter(&ids)
        .map(|id| enqueue(&q, id, None))
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(jobs.len(), JOBS);
    eprintln!("{JOBS} jobs queued in {:?}", t.elapsed());

    let started = Instant::now();
    let workers: Vec<RunningBinary> = (0..PROCESSES)
        .map(|i| {
            RunningBinary::start(&[
                ("DATABASE_URL", &db.url),
                ("DOUYIN_UPSTREAM", &server.url),
                ("STORAGE_DIR", store.path().to_str().unwrap()),
                ("TEMP_DIR", temp.path().to_str().unwrap()),
                ("WORKER_ID", &format!("scale-{i}")),
                ("MAX_CONCURRENT", SLOTS),
                ("BROWSER_ENABLED", "false"),
                ("ALLOW_PRIVATE_NETWORKS", "true"),
                // One object per job is counted below; covers are tested in `covers`.
                ("STORE_COVERS", "false"),
            ])
        })
        .collect();
    // A bound against a hang, not a speed target (the throughput is in the benches): generous
    // enough for a machine busy with other builds.
    wait_until(Duration::from_secs(240), "2,000 jobs completed", || async {
        let done: i64 = sqlx::query_scalar(
            "select count(*) from download_jobs where status in ('completed', 'failed')",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        (done as usize == JOBS).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    eprintln!(
        "{JOBS} jobs through {PROCESSES} processes x {SLOTS} slots in {elapsed:?} ({:.0} jobs/s, debug build, start-up included)",
        JOBS as f64 / elapsed.as_secs_f64()
    );

    let t = Instant::now();
    let mut logs = Vec::new();
    for w in workers {
        let (code, lines) = w.stop();
        assert_eq!(code, Some(0));
        logs.push(lines);
    }

    eprintln!("stopped in {:?}", t.elapsed());
    // The queue: one row per video, every one completed at its first attempt.
    let rows: Vec<(String, i64, i64, i32, i32)> = sqlx::query_as(
        "select status, count(*), count(distinct video_id), min(attempts), max(attempts) \
         from download_jobs group by status",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![("completed".to_string(), JOBS as i64, JOBS as i64, 1, 1)],
        "status, jobs, videos, min and max attempts"
    );
    // Every video ready with its object.
    let videos: Vec<(String, String, Option<String>, Option<i64>)> =
        sqlx::query_as("select douyin_id, status, object_key, filesize from videos")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(videos.len(), JOBS);
    for (id, status, key, _) in &videos {
        assert_eq!(status, "ready", "{id}");
        assert_eq!(key.as_deref(), Some(format!("{id}/{id}.mp4").as_str()));
    }

    // The store: exactly each object and its sidecar, no upload left half-way.
    let files = files_under(store.path());
    let expected: BTreeSet<String> = ids
        .iter()
        .flat_map(|id| [format!("{id}/{id}.mp4"), format!("{id}/{id}.mp4.meta.json")])
        .collect();
    assert_eq!(files.len(), expected.len());
    assert_eq!(files.into_iter().collect::<BTreeSet<_>>(), expected);
    let size = videos[0].3.unwrap();
    let mut hashes = BTreeSet::new();
    for id in &ids {
        let bytes = std::fs::read(store.path().join(format!("{id}/{id}.mp4"))).unwrap();
        assert_eq!(bytes.len() as i64, size, "{id}");
        hashes.insert(sha256(&bytes));
    }
    // The fixture CDN tags each post's file with its URL: 2,000 different files.
    assert_eq!(hashes.len(), JOBS, "a video stored with another one's file");

    // The logs: each job claimed once and done once, in all four processes together; every
    // process took a share.
    let mut claimed: HashMap<String, usize> = HashMap::new();
    let mut done: HashMap<String, usize> = HashMap::new();
    for lines in &logs {
        let mine = with_message(lines, "job done").count();
        assert!(mine > 0, "a process did no job");
        for l in with_message(lines, "job picked up") {
            *claimed
                .entry(l["span"]["job_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        for l in with_message(lines, "job done") {
            *done
                .entry(l["span"]["job_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let per_process: Vec<usize> = logs
        .iter()
        .map(|l| with_message(l, "job done").count())
        .collect();
    eprintln!("jobs done per process: {per_process:?}");
    assert_eq!(claimed.len(), JOBS);
    assert_eq!(done.len(), JOBS);
    assert!(claimed.values().all(|n| *n == 1), "a job claimed twice");
    assert!(done.values().all(|n| *n == 1), "a job done twice");
    let job_ids: BTreeSet<String> = jobs.iter().map(|j| j.to_string()).collect();
    assert_eq!(done.keys().cloned().collect::<BTreeSet<_>>(), job_ids);

    assert_eq!(entries(temp.path()), Vec::<String>::new());
}
