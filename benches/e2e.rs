//! End-to-end benchmark (figures, not a timed test): the real binary as 1 or 4 worker
//! processes on loopback, against the Douyin fixture server (`DOUYIN_UPSTREAM`), the raw
//! loopback CDN of the tests serving real MP4 files, PostgreSQL and a store (a local folder,
//! and s3s-fs, a real S3 server). Per cell (store × file size × processes × `MAX_CONCURRENT`):
//! jobs/s, MB/s, enqueue → `ready` p50 and p99, the run time of one job (claim → outcome),
//! peak RSS per process (`VmHWM`) and the CPU the workers used. Compared in the same run
//! with the raw limits (`curl` downloading the same file from the same CDN into a file, then
//! `cp` into the folder or `curl --aws-sigv4 -T` into the same bucket, as many at once as the
//! cell has slots) and with the old worker's design ceiling (one claim per `POLL_INTERVAL`).
//!
//! `cargo bench --bench e2e` (release build), or `bash scripts/bench-e2e.sh`. Jobs are
//! enqueued in one burst through the library's queue, so enqueue → `ready` includes the time
//! a job waits for a free slot. Settings (comma-separated lists):
//! `BENCH_STORES` (`local,s3`), `BENCH_SIZES_MB` (`5,200`), `BENCH_PROCS` (`1,4`),
//! `BENCH_CONCURRENT` (`1,4,16`), `BENCH_JOBS` (jobs per cell; default 100 for files up to
//! 50 MB, 16 above), `BENCH_QUICK=1` (30 and 6 jobs, `MAX_CONCURRENT` 1 and 16).
//! Uses `DW_TEST_DATABASE_URL` when set, else starts a throwaway cluster with
//! `tests/support/pg-cluster.sh`. Needs curl and s3s-fs (scripts/test.sh installs it); ffmpeg
//! makes the media (H.264, cached in the temp folder), else synthetic MP4s are used and the
//! output says so. Prints figures; asserts nothing beyond every job ending `ready`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::queue::{EnqueueRequest, QueueAdmin};
use fakes::cdn::{Cdn, Serve};
use fakes::douyin::{Behaviour, DouyinServer, mp4_of_size, video_post_from};

const ACCESS: &str = "bench-access";
const SECRET: &str = "bench-secret";
/// The old worker's default `POLL_INTERVAL`: one claim per interval, whatever the slots.
const OLD_POLL_MS: f64 = 10_000.0;
/// A cell that has not finished by then is reported as timed out.
const CELL_TIMEOUT: Duration = Duration::from_secs(600);

fn list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn numbers(name: &str, default: &str) -> Vec<usize> {
    list(name, default)
        .iter()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{name}: {s:?} is not a number"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The machine

fn proc_field(file: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = proc_field("/proc/cpuinfo", "model name").unwrap_or_default();
    let mem_kib: u64 = proc_field("/proc/meminfo", "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let disk = Command::new("df")
        .args(["-h", "--output=size,avail"])
        .arg(std::env::temp_dir())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .nth(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_default();
    format!(
        "{cores} cores {model}, {:.0} GiB RAM, temp disk (size avail) {disk}",
        mem_kib as f64 / 1024.0 / 1024.0
    )
}

// ---------------------------------------------------------------------------------------------
// Media

/// A real H.264 MP4 of about `bytes` made by ffmpeg (lossless `testsrc2`, whose bitrate is
/// steady, so a 2 s probe gives the duration), cached in the temp folder; `None` without
/// ffmpeg.
fn ffmpeg_mp4(bytes: u64) -> Option<Vec<u8>> {
    let dir = std::env::temp_dir().join("douyin-worker-bench-e2e");
    std::fs::create_dir_all(&dir).ok()?;
    let out = dir.join(format!("h264-{bytes}.mp4"));
    if let Ok(data) = std::fs::read(&out) {
        return Some(data);
    }
    let encode = |seconds: f64, to: &Path| -> Option<()> {
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=1280x720:rate=30")
            .arg("-t")
            .arg(format!("{seconds:.3}"))
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0"])
            .args(["-pix_fmt", "yuv420p", "-movflags", "+faststart"])
            .arg(to)
            .stdout(Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(())
    };
    let probe = dir.join("probe.mp4");
    encode(2.0, &probe)?;
    let rate = std::fs::metadata(&probe).ok()?.len() as f64 / 2.0;
    let tmp = dir.join(format!("h264-{bytes}.tmp.mp4"));
    encode(bytes as f64 / rate, &tmp)?;
    std::fs::rename(&tmp, &out).ok()?;
    std::fs::read(&out).ok()
}

struct Media {
    mb: usize,
    bytes: Vec<u8>,
    path: String,
    kind: &'static str,
}

fn media(mb: usize) -> Media {
    let target = mb as u64 * 1_000_000;
    let (bytes, kind) = match ffmpeg_mp4(target) {
        Some(b) => (b, "H.264 by ffmpeg"),
        None => (
            mp4_of_size("bench", target as usize),
            "synthetic (no ffmpeg)",
        ),
    };
    Media {
        mb,
        bytes,
        path: format!("/media/{mb}mb.mp4"),
        kind,
    }
}

// ---------------------------------------------------------------------------------------------
// Services

/// s3s-fs serving `root` (bucket `videos` = the folder `root/videos`); killed on drop.
struct S3 {
    child: Child,
    endpoint: String,
    root: tempfile::TempDir,
}

impl S3 {
    fn start() -> S3 {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("videos")).unwrap();
        let port = fakes::servers::free_port();
        let child = Command::new(fakes::servers::s3s_binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS, "--secret-key", SECRET])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs (bash scripts/test.sh installs it)");
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        S3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
        }
    }

    /// Deletes every object (the bucket stays).
    fn empty(&self) {
        let bucket = self.root.path().join("videos");
        for entry in std::fs::read_dir(&bucket).unwrap().flatten() {
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Store {
    Local,
    S3,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Local => "local folder",
            Store::S3 => "S3 (s3s-fs)",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Worker processes

struct Worker {
    child: Child,
    http: String,
}

fn spawn_worker(env: &[(&str, String)], log: &Path) -> Worker {
    let port = fakes::servers::free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_douyin-worker"));
    cmd.arg("run");
    for var in [
        "SUPABASE_URL",
        "SUPABASE_SERVICE_ROLE_KEY",
        "STORAGE_URL",
        "STORAGE_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("LOG_FORMAT", "json")
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("BROWSER_ENABLED", "false")
        .env("RETRY_BASE_SECONDS", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    Worker {
        child: cmd.spawn().expect("start douyin-worker"),
        http: format!("http://127.0.0.1:{port}/readyz"),
    }
}

/// Peak RSS (`VmHWM`) in KiB and CPU seconds (user + system) of a live process.
fn peak_and_cpu(pid: u32) -> (u64, f64) {
    let hwm = proc_field(&format!("/proc/{pid}/status"), "VmHWM")
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces); utime and stime are 14 and 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .unwrap_or(0.0);
    (hwm, cpu)
}

fn stop(mut w: Worker) -> Option<i32> {
    unsafe { libc::kill(w.child.id() as i32, libc::SIGTERM) };
    w.child.wait().ok()?.code()
}

// ---------------------------------------------------------------------------------------------
// One cell

struct Cell {
    jobs: usize,
    completed: usize,
    failed: usize,
    extra_attempts: i64,
    span: f64,
    bytes: i64,
    p50: f64,
    p99: f64,
    run_p50: f64,
    rss_mib: Vec<f64>,
    /// Jobs each process completed.
    per_process: Vec<i64>,
    cpu: f64,
    timed_out: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Ctx {
    admin: sqlx::PgPool,
    base_url: String,
    cdn: Cdn,
    s3: Option<S3>,
    work: tempfile::TempDir,
    next_id: AtomicUsize,
}

async fn fresh_db(ctx: &Ctx) -> (String, String) {
    let name = format!("bench_e2e_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {name}")))
        .execute(&ctx.admin)
        .await
        .unwrap();
    let mut url = url::Url::parse(&ctx.base_url).unwrap();
    url.set_path(&name);
    (name, url.to_string())
}

async fn run_cell(
    ctx: &Ctx,
    store: Store,
    media: &Media,
    procs: usize,
    concurrent: usize,
    jobs: usize,
) -> Cell {
    let (db_name, db_url) = fresh_db(ctx).await;
    let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
    douyin_worker::queue::migrate::apply_postgres(&pool)
        .await
        .unwrap();
    let queue = PgQueue::from_pool(pool.clone());

    let base =
        7_460_000_000_000_000_000u64 + 100_000 * ctx.next_id.fetch_add(1, Ordering::SeqCst) as u64;
    let ids: Vec<String> = (0..jobs).map(|i| (base + i as u64).to_string()).collect();
    let media_url = ctx.cdn.url(&media.path);
    let posts = ids
        .iter()
        .map(|id| {
            video_post_from(
                id,
                Behaviour::NewSharePage,
                &media_url,
                media.bytes.len() as u64,
            )
        })
        .collect();
    let server = DouyinServer::start(posts).await;

    let dir = tempfile::tempdir_in(ctx.work.path()).unwrap();
    let store_dir = dir.path().join("store");
    let mut env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", db_url.clone()),
        ("DOUYIN_UPSTREAM", server.url.clone()),
        ("ALLOW_PRIVATE_NETWORKS", "true".into()),
        ("MAX_CONCURRENT", concurrent.to_string()),
        ("DATA_DIR", dir.path().join("data").display().to_string()),
        ("TEMP_DIR", dir.path().join("tmp").display().to_string()),
    ];
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    match store {
        Store::Local => env.push(("STORAGE_DIR", store_dir.display().to_string())),
        Store::S3 => {
            let s3 = ctx.s3.as_ref().expect("s3s-fs running");
            env.extend([
                ("STORAGE_URL", "s3://videos".to_string()),
                ("AWS_ENDPOINT", s3.endpoint.clone()),
                ("AWS_ACCESS_KEY_ID", ACCESS.into()),
                ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
                ("AWS_REGION", "us-east-1".into()),
                ("AWS_ALLOW_HTTP", "true".into()),
                // As curl's upload below: the payload is not hashed into the signature.
                ("AWS_UNSIGNED_PAYLOAD", "true".into()),
            ]);
        }
    }
    let mut workers = Vec::new();
    for p in 0..procs {
        let mut env = env.clone();
        env.push(("WORKER_ID", format!("bench-{p}")));
        workers.push(spawn_worker(
            &env,
            &dir.path().join(format!("worker-{p}.log")),
        ));
    }
    // Wait until each process answers /readyz (its queue and store answer).
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for w in &mut workers {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(&w.http).send().await
                && r.status().is_success()
            {
                break;
            }
            if let Ok(Some(status)) = w.child.try_wait() {
                let logs: Vec<String> = (0..procs)
                    .filter_map(|p| {
                        std::fs::read_to_string(dir.path().join(format!("worker-{p}.log"))).ok()
                    })
                    .collect();
                panic!(
                    "a worker exited at start-up ({status}):\n{}",
                    logs.join("\n")
                );
            }
            assert!(Instant::now() < deadline, "worker not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    for id in &ids {
        queue
            .enqueue(&EnqueueRequest {
                douyin_id: Some(id.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let t0 = Instant::now();
    let mut timed_out = false;
    loop {
        let (done,): (i64,) = sqlx::query_as(
            "select count(*) from public.download_jobs where status in ('completed', 'failed')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if done as usize >= jobs {
            break;
        }
        if t0.elapsed() > CELL_TIMEOUT {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut rss_mib = Vec::new();
    let mut cpu = 0.0;
    for w in &workers {
        let (hwm, c) = peak_and_cpu(w.child.id());
        rss_mib.push(hwm as f64 / 1024.0);
        cpu += c;
    }
    for w in workers {
        let code = stop(w);
        if code != Some(0) {
            eprintln!("  a worker exited with {code:?}");
        }
    }

    let (completed, failed, extra_attempts): (i64, i64, i64) = sqlx::query_as(
        "select count(*) filter (where status = 'completed'),
                count(*) filter (where status = 'failed'),
                coalesce(sum(greatest(attempts - 1, 0)), 0)::int8
         from public.download_jobs",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let rows: Vec<(f64, f64)> = sqlx::query_as(
        "select extract(epoch from finished_at - created_at)::float8,
                extract(epoch from finished_at - started_at)::float8
         from public.download_jobs where status = 'completed'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let (span, bytes): (Option<f64>, Option<i64>) = sqlx::query_as(
        "select (select extract(epoch from max(finished_at) - min(created_at))::float8
                 from public.download_jobs),
                (select sum(filesize)::int8 from public.videos where status = 'ready')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    if failed > 0 || timed_out {
        let (err,): (Option<String>,) = sqlx::query_as(
            "select max(last_error) from public.download_jobs where last_error is not null",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        eprintln!("  failures: {failed}, timed out: {timed_out}, an error: {err:?}");
    }
    let mut per_process: Vec<i64> = sqlx::query_scalar(
        "select count(*) from public.download_jobs where status = 'completed' group by worker_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    per_process.resize(procs.max(per_process.len()), 0);
    let mut total: Vec<f64> = rows.iter().map(|r| r.0).collect();
    let mut run: Vec<f64> = rows.iter().map(|r| r.1).collect();
    total.sort_by(f64::total_cmp);
    run.sort_by(f64::total_cmp);
    pool.close().await;
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "drop database {db_name} with (force)"
    )))
    .execute(&ctx.admin)
    .await;
    drop(server);
    if let Some(s3) = &ctx.s3 {
        s3.empty();
    }
    drop(dir);
    Cell {
        jobs,
        completed: completed as usize,
        failed: failed as usize,
        extra_attempts,
        span: span.unwrap_or(f64::NAN),
        bytes: bytes.unwrap_or(0),
        p50: percentile(&total, 0.5),
        p99: percentile(&total, 0.99),
        run_p50: percentile(&run, 0.5),
        rss_mib,
        per_process,
        cpu,
        timed_out,
    }
}

// ---------------------------------------------------------------------------------------------
// Raw limits: curl + cp / curl -T

/// `jobs` × (curl the file from the CDN into a file, then `cp` it into a folder or PUT it
/// into the bucket with curl), `parallel` at a time. Returns the wall time.
fn raw(store: Store, url: &str, s3: Option<&S3>, jobs: usize, parallel: usize, work: &Path) -> f64 {
    let dir = tempfile::tempdir_in(work).unwrap();
    let out = dir.path().join("store");
    std::fs::create_dir_all(&out).unwrap();
    let next = AtomicUsize::new(0);
    let run = |cmd: &mut Command| {
        let status = cmd.stdout(Stdio::null()).status().expect("run");
        assert!(status.success(), "{cmd:?}");
    };
    let t = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..parallel {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= jobs {
                        break;
                    }
                    let file = dir.path().join(format!("dl-{i}.mp4"));
                    run(Command::new("curl")
                        .args(["-sSf", "--noproxy", "*", "-o"])
                        .arg(&file)
                        .arg(url));
                    match store {
                        Store::Local => {
                            run(Command::new("cp")
                                .arg(&file)
                                .arg(out.join(format!("{i}.mp4"))));
                        }
                        Store::S3 => {
                            let s3 = s3.expect("s3s-fs running");
                            run(Command::new("curl")
                                .args(["-sSf", "--noproxy", "*", "--aws-sigv4"])
                                .arg("aws:amz:us-east-1:s3")
                                .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
                                .arg("--user")
                                .arg(format!("{ACCESS}:{SECRET}"))
                                .arg("-T")
                                .arg(&file)
                                .arg(format!("{}/videos/raw/{i}.mp4", s3.endpoint)));
                        }
                    }
                    let _ = std::fs::remove_file(&file);
                }
            });
        }
    });
    let took = t.elapsed().as_secs_f64();
    if let Some(s3) = s3 {
        s3.empty();
    }
    took
}

// ---------------------------------------------------------------------------------------------

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let stores: Vec<Store> = list("BENCH_STORES", "local,s3")
        .iter()
        .map(|s| match s.as_str() {
            "local" => Store::Local,
            "s3" => Store::S3,
            other => panic!("BENCH_STORES: {other:?} is not local or s3"),
        })
        .collect();
    let sizes = numbers("BENCH_SIZES_MB", "5,200");
    let procs = numbers("BENCH_PROCS", "1,4");
    let concurrents = numbers("BENCH_CONCURRENT", if quick { "1,16" } else { "1,4,16" });
    let jobs_for = |mb: usize| -> usize {
        std::env::var("BENCH_JOBS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(match (mb <= 50, quick) {
                (true, false) => 100,
                (true, true) => 30,
                (false, false) => 16,
                (false, true) => 6,
            })
    };

    let load_before = load();
    eprintln!("e2e: making the media files");
    let media: Vec<Media> = sizes.iter().map(|&mb| media(mb)).collect();
    let cdn = Cdn::start().await;
    for m in &media {
        cdn.add(&m.path, m.bytes.clone(), Serve::Normal);
    }
    let base_url = fakes::pg::pg_url();
    let admin = sqlx::PgPool::connect(&base_url).await.expect("connect");
    let ctx = Ctx {
        admin,
        base_url,
        cdn,
        s3: stores.contains(&Store::S3).then(S3::start),
        work: tempfile::tempdir().unwrap(),
        next_id: AtomicUsize::new(0),
    };

    println!("douyin-worker end-to-end benchmark (loopback, release build)");
    println!("machine: {}", machine());
    println!(
        "media: {}",
        media
            .iter()
            .map(|m| format!("{} ({} bytes, {})", m.path, m.bytes.len(), m.kind))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "each cell: one burst of jobs enqueued, then every job to `ready`; MB = 10^6 bytes; \
         raw = curl from the same CDN to a file, then cp / curl -T to the same store, \
         as many at once as the cell's slots (capped at its jobs)"
    );
    println!("load average at start: {load_before}");

    for &store in &stores {
        for m in &media {
            let jobs = jobs_for(m.mb);
            let size_mb = m.bytes.len() as f64 / 1e6;
            println!();
            println!(
                "### {} · {:.0} MB files · {jobs} jobs per cell",
                store.name(),
                size_mb
            );
            println!();
            println!(
                "| processes | MAX_CONCURRENT | jobs/s | MB/s | enqueue→ready p50 | p99 | one job (claim→ready) p50 | peak RSS per process | jobs per process | worker CPU | raw curl+store MB/s | ours / raw |"
            );
            println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
            let mut raws: HashMap<usize, f64> = HashMap::new();
            for &p in &procs {
                for &c in &concurrents {
                    let parallel = (p * c).min(jobs);
                    eprintln!(
                        "e2e: {} {:.0} MB, {p} × {c} (load {})",
                        store.name(),
                        size_mb,
                        load()
                    );
                    let cell = run_cell(&ctx, store, m, p, c, jobs).await;
                    let raw_secs = match raws.get(&parallel) {
                        Some(s) => *s,
                        None => {
                            let url = ctx.cdn.url(&m.path);
                            let work = ctx.work.path().to_path_buf();
                            let s3 = ctx.s3.as_ref();
                            let s = tokio::task::block_in_place(|| {
                                raw(store, &url, s3, jobs, parallel, &work)
                            });
                            raws.insert(parallel, s);
                            s
                        }
                    };
                    let raw_mbps = jobs as f64 * size_mb / raw_secs;
                    let mbps = cell.bytes as f64 / 1e6 / cell.span;
                    let rss = if cell.rss_mib.len() == 1 {
                        format!("{:.0} MiB", cell.rss_mib[0])
                    } else {
                        let lo = cell.rss_mib.iter().copied().fold(f64::MAX, f64::min);
                        let hi = cell.rss_mib.iter().copied().fold(0.0, f64::max);
                        format!("{lo:.0}–{hi:.0} MiB")
                    };
                    let spread = {
                        let lo = cell.per_process.iter().min().copied().unwrap_or(0);
                        let hi = cell.per_process.iter().max().copied().unwrap_or(0);
                        if lo == hi {
                            lo.to_string()
                        } else {
                            format!("{lo}–{hi}")
                        }
                    };
                    let mut note = String::new();
                    if cell.failed > 0 || cell.timed_out || cell.completed < cell.jobs {
                        note = format!(
                            " ({} of {} ready, {} failed{})",
                            cell.completed,
                            cell.jobs,
                            cell.failed,
                            if cell.timed_out { ", timed out" } else { "" }
                        );
                    }
                    if cell.extra_attempts > 0 {
                        note.push_str(&format!(" ({} retries)", cell.extra_attempts));
                    }
                    println!(
                        "| {p} | {c} | {:.1}{note} | {mbps:.0} | {:.2} s | {:.2} s | {:.2} s | {rss} | {spread} | {:.1} s | {raw_mbps:.0} (×{parallel}) | {:.2} |",
                        cell.completed as f64 / cell.span,
                        cell.p50,
                        cell.p99,
                        cell.run_p50,
                        cell.cpu,
                        mbps / raw_mbps,
                    );
                }
            }
            for &p in &procs {
                let rate = p as f64 * 1000.0 / OLD_POLL_MS;
                println!(
                    "| {p} | any | {rate:.1} (old worker's ceiling) | {:.1} | ≥ {:.0} s | ≥ {:.0} s | | | | | | |",
                    rate * size_mb,
                    (jobs as f64 / 2.0) / rate,
                    (jobs as f64 - 1.0) / rate,
                );
            }
        }
    }
    println!();
    println!("load average at end: {}", load());
    println!(
        "old worker's ceiling: one claim per POLL_INTERVAL ({:.0} s) per process, whatever \
         MAX_CONCURRENT, so jobs/s ≤ processes / {:.0} s and a burst's p50 waits for half of it \
         (computed, not measured)",
        OLD_POLL_MS / 1000.0,
        OLD_POLL_MS / 1000.0
    );
    ctx.admin.close().await;
}
