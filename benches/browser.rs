//! Browser strategy benchmark: extraction latency and browser memory with the shared browser
//! warm (the pool) against a fresh browser per job (what the old worker did), on the loopback
//! Douyin fixture server whose web page fetches its record from a script.
//!
//! Latency is one `BrowserPool::extract` (open a tab, load the page, capture the detail
//! answer, read cookies, close the tab), launch included for a browser per job. Memory is the
//! sum of the proportional set sizes (PSS, `/proc/<pid>/smaps_rollup`) of the browser's
//! processes, sampled right after each extraction (the sampling is left out of jobs/s; a
//! browser per job includes its launch and close in jobs/s). Needs Chromium (`CHROMIUM_PATH`, else
//! `chromium` on `PATH`). `cargo bench --bench browser`; `BENCH_JOBS` (default 40) sets the
//! warm job count (a browser per job runs a quarter of it, at least 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use douyin_worker::extract::BrowserOptions;
use douyin_worker::extract::browser::BrowserPool;
use douyin_worker::extract::client::ClientOptions;
use douyin_worker::extract::strategy::Target;
use douyin_worker::net::upstream::Upstream;
use fakes::douyin::{Behaviour, DouyinServer, video_post};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

struct Case {
    name: String,
    latencies: Vec<Duration>,
    pss: Vec<u64>,
    wall: Duration,
}

impl Case {
    fn row(mut self) -> String {
        self.latencies.sort();
        self.pss.sort();
        let jobs = self.latencies.len();
        format!(
            "| {} | {jobs} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} | {:.0} MiB | {:.0} MiB |",
            self.name,
            percentile(&self.latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&self.latencies, 0.9).as_secs_f64() * 1e3,
            self.latencies.last().unwrap().as_secs_f64() * 1e3,
            jobs as f64 / self.wall.as_secs_f64(),
            mib(self.pss[self.pss.len() / 2]),
            mib(*self.pss.last().unwrap()),
        )
    }
}

fn pool(server: &DouyinServer, max_tabs: usize) -> Arc<BrowserPool> {
    Arc::new(BrowserPool::new(
        BrowserOptions {
            enabled: true,
            chromium_path: std::env::var_os("CHROMIUM_PATH").map(Into::into),
            max_tabs,
            ..BrowserOptions::default()
        },
        ClientOptions {
            upstream: Upstream::rewrite_to(server.url.parse().unwrap()),
            ..Default::default()
        },
    ))
}

fn target(i: usize) -> Target {
    Target {
        aweme_id: format!("74123456789{:08}", i),
        kind: None,
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let jobs: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let cold_jobs = (jobs / 4).max(5);
    let server = DouyinServer::start(
        (0..jobs + 1)
            .map(|i| video_post(&target(i).aweme_id, Behaviour::DetailOnly))
            .collect(),
    )
    .await;

    // Warm pool, one job at a time.
    let warm = pool(&server, 2);
    let t = Instant::now();
    warm.extract(&target(jobs))
        .await
        .expect("warm-up extraction");
    let first = t.elapsed();
    let mut case = Case {
        name: "pool warm, sequential".into(),
        latencies: Vec::new(),
        pss: Vec::new(),
        wall: Duration::ZERO,
    };
    let started = Instant::now();
    let mut sampled = Duration::ZERO;
    for i in 0..jobs {
        let t = Instant::now();
        warm.extract(&target(i)).await.expect("extraction");
        case.latencies.push(t.elapsed());
        let sampling = Instant::now();
        case.pss.extend(warm.memory_pss().await);
        sampled += sampling.elapsed();
    }
    case.wall = started.elapsed() - sampled;
    let warm_row = case.row();

    // Warm pool, two tabs at once (MAX_CONCURRENT=2).
    let mut case = Case {
        name: "pool warm, 2 tabs at once".into(),
        latencies: Vec::new(),
        pss: Vec::new(),
        wall: Duration::ZERO,
    };
    let started = Instant::now();
    let mut sampled = Duration::ZERO;
    let mut next = 0;
    while next < jobs {
        let batch: Vec<_> = (next..(next + 2).min(jobs))
            .map(|i| {
                let warm = warm.clone();
                tokio::spawn(async move {
                    let t = Instant::now();
                    warm.extract(&target(i)).await.expect("extraction");
                    t.elapsed()
                })
            })
            .collect();
        for job in batch {
            case.latencies.push(job.await.unwrap());
        }
        let sampling = Instant::now();
        case.pss.extend(warm.memory_pss().await);
        sampled += sampling.elapsed();
        next += 2;
    }
    case.wall = started.elapsed() - sampled;
    let pair_row = case.row();
    warm.shutdown().await;

    // A fresh browser per job (launch, extract, close).
    let mut case = Case {
        name: "browser per job".into(),
        latencies: Vec::new(),
        pss: Vec::new(),
        wall: Duration::ZERO,
    };
    let started = Instant::now();
    let mut sampled = Duration::ZERO;
    for i in 0..cold_jobs {
        let cold = pool(&server, 1);
        let t = Instant::now();
        cold.extract(&target(i)).await.expect("extraction");
        case.latencies.push(t.elapsed());
        let sampling = Instant::now();
        case.pss.extend(cold.memory_pss().await);
        sampled += sampling.elapsed();
        cold.shutdown().await;
    }
    case.wall = started.elapsed() - sampled;
    let cold_row = case.row();

    println!(
        "douyin-worker browser benchmark (loopback fixture server, {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("first extraction of the pool (launch included): {first:.2?}");
    println!("| case | jobs | p50 | p90 | max | jobs/s | PSS p50 | PSS max |");
    println!("|---|---|---|---|---|---|---|---|");
    println!("{warm_row}");
    println!("{pair_row}");
    println!("{cold_row}");
}
