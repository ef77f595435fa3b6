//! Worker-loop benchmark on PostgreSQL: no-op jobs per second through claim → no-op
//! pipeline → complete, and pickup latency (enqueue on an idle worker → handler starts).
//!
//! `cargo bench --bench worker_loop` (release build). Uses `DW_TEST_DATABASE_URL` when set,
//! else starts a throwaway cluster with `tests/support/pg-cluster.sh` (removed on exit).
//! Settings: `BENCH_JOBS` (20000 per round), `BENCH_CONCURRENCY` (10), `BENCH_ROUNDS` (5),
//! `BENCH_PICKUPS` (200). Each round runs on a fresh database; the median round is the
//! figure, since a shared 2-core machine varies by 10-20 % from one run to the next.
//! Prints figures; checks only that every job completed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use douyin_worker::error::JobError;
use douyin_worker::queue::Queue;
use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::queue::{ClaimedJob, StoredObject};
use douyin_worker::retry::RetryPolicy;
use douyin_worker::stage::{JobContext, JobHandler, JobOutput};
use douyin_worker::worker::{Worker, WorkerOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Does nothing but report when it started.
struct NoOp {
    started: mpsc::UnboundedSender<Instant>,
}

#[async_trait]
impl JobHandler for NoOp {
    async fn handle(&self, job: &ClaimedJob, _ctx: &JobContext) -> Result<JobOutput, JobError> {
        let _ = self.started.send(Instant::now());
        Ok(JobOutput {
            stored: StoredObject {
                storage_provider: "bench".into(),
                bucket: "videos".into(),
                object_key: format!("{}.mp4", job.id()),
                storage_etag: None,
                filesize: 1,
                mime_type: "video/mp4".into(),
                storage_metadata: serde_json::Value::Null,
            },
            video: Default::default(),
        })
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn options(concurrency: usize) -> WorkerOptions {
    WorkerOptions {
        worker_id: "bench".into(),
        max_concurrent: concurrency,
        poll_interval: Duration::from_millis(10_000),
        lease: Duration::from_secs(60),
        heartbeat_interval: Duration::from_secs(20),
        rescue_interval: Duration::from_secs(10),
        progress_interval: Duration::from_secs(1),
        retry: RetryPolicy::default(),
        shutdown_grace: Duration::from_secs(5),
        temp_dir: std::env::temp_dir(),
        min_free_disk: 0,
        report_batch: 500,
        report_linger: Duration::from_millis(10),
        report_deadline: Duration::from_secs(10),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// A fresh database with the schema applied, and the worker's own pool on it.
async fn fresh_database(admin: &sqlx::PgPool, base_url: &str, pool_size: u32) -> (String, PgQueue) {
    let db = format!("bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {db}")))
        .execute(admin)
        .await
        .unwrap();
    let mut url = url::Url::parse(base_url).unwrap();
    url.set_path(&db);
    // The worker's own pool settings.
    let pg = PgQueue::connect_lazy(
        url.as_str(),
        douyin_worker::config::DbPooler::None,
        pool_size,
    )
    .unwrap();
    douyin_worker::queue::migrate::apply_postgres(pg.pool())
        .await
        .unwrap();
    (db, pg)
}

async fn drop_database(admin: &sqlx::PgPool, db: &str, pg: PgQueue) {
    pg.pool().close().await;
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "drop database {db} with (force)"
    )))
    .execute(admin)
    .await;
}

/// One throughput round: `jobs` due jobs, one worker process. Returns the time from the
/// worker's start to the last completion recorded, and the number of claim round trips.
async fn throughput_round(
    admin: &sqlx::PgPool,
    base_url: &str,
    jobs: usize,
    concurrency: usize,
) -> (Duration, u64) {
    let (db, pg) = fresh_database(admin, base_url, concurrency as u32 + 4).await;
    let pool = pg.pool().clone();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "insert into public.videos (douyin_id) select (7400000000000000000 + g)::text from generate_series(1, {jobs}) g;
         insert into public.download_jobs (video_id, priority) select id, 0 from public.videos;"
    )))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql("analyze public.download_jobs; analyze public.videos;")
        .execute(&pool)
        .await
        .unwrap();
    let queue: Arc<dyn Queue> = Arc::new(pg.clone());
    let (tx, _rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let worker = Worker::new(
        queue.clone(),
        Arc::new(NoOp { started: tx }),
        options(concurrency),
    );
    let counters = worker.counters();
    let t0 = Instant::now();
    let run = tokio::spawn(worker.run(stop.clone()));
    while counters.snapshot().completed < jobs as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = t0.elapsed();
    let claims = counters.snapshot().claims;
    stop.cancel();
    run.await.unwrap();
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.completed_jobs, jobs as i64, "every job completed");
    drop(queue);
    drop_database(admin, &db, pg).await;
    (elapsed, claims)
}

/// Pickup latency: an idle worker; one job enqueued at a time from another connection.
async fn pickup_latencies(
    admin: &sqlx::PgPool,
    base_url: &str,
    pickups: usize,
    concurrency: usize,
) -> Vec<Duration> {
    let (db, pg) = fresh_database(admin, base_url, concurrency as u32 + 4).await;
    let pool = pg.pool().clone();
    let queue: Arc<dyn Queue> = Arc::new(pg.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let worker = Worker::new(queue, Arc::new(NoOp { started: tx }), options(concurrency));
    let run = tokio::spawn(worker.run(stop.clone()));
    let mut latencies = Vec::with_capacity(pickups);
    for i in 0..pickups {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = Instant::now();
        sqlx::query("select * from public.enqueue_download_job(p_douyin_id => $1)")
            .bind(format!("{}", 7_500_000_000_000_000_000u64 + i as u64))
            .execute(&pool)
            .await
            .unwrap();
        let started = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("pickup within 30 s")
            .unwrap();
        latencies.push(started.saturating_duration_since(t));
    }
    stop.cancel();
    run.await.unwrap();
    drop_database(admin, &db, pg).await;
    latencies.sort();
    latencies
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let jobs = env_or("BENCH_JOBS", 20_000);
    let concurrency = env_or("BENCH_CONCURRENCY", 10);
    let rounds = env_or("BENCH_ROUNDS", 5).max(1);
    let pickups = env_or("BENCH_PICKUPS", 200).max(1);
    let base_url = fakes::pg::pg_url();
    let admin = sqlx::PgPool::connect(&base_url).await.expect("connect");

    let mut rates = Vec::with_capacity(rounds);
    let mut claims = 0;
    for _ in 0..rounds {
        let (elapsed, c) = throughput_round(&admin, &base_url, jobs, concurrency).await;
        rates.push(jobs as f64 / elapsed.as_secs_f64());
        claims += c;
    }
    let each: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let latencies = pickup_latencies(&admin, &base_url, pickups, concurrency).await;

    println!("douyin-worker worker-loop benchmark (PostgreSQL, one process, no-op pipeline)");
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| figure | value |");
    println!("|---|---|");
    println!("| jobs per round | {jobs} |");
    println!("| MAX_CONCURRENT | {concurrency} |");
    println!("| rounds (each on a fresh database) | {rounds} |");
    println!("| throughput, median of rounds | {median:.0} jobs/s |");
    println!("| throughput, each round | {} jobs/s |", each.join(", "));
    println!(
        "| claim round trips | {:.1} jobs each |",
        (jobs * rounds) as f64 / claims.max(1) as f64
    );
    println!("| pickup samples | {pickups} |");
    println!(
        "| pickup median | {:.2} ms |",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3
    );
    println!(
        "| pickup p99 | {:.2} ms |",
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "| pickup max | {:.2} ms |",
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
}
