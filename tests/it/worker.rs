//! The worker loop over every backend, with test handlers.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use douyin_worker::error::ErrorClass;
use douyin_worker::queue::Queue;
use douyin_worker::retry::RetryPolicy;
use douyin_worker::stage::JobHandler;
use douyin_worker::worker::{RunSummary, Worker, WorkerOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::backends::{Backend, Kind, on_every_backend, on_push_backends};
use crate::support::stages::{FailTimes, Hang, Panic, Progressing, Succeed};

pub fn options(worker_id: &str, temp_dir: PathBuf) -> WorkerOptions {
    WorkerOptions {
        worker_id: worker_id.into(),
        max_concurrent: 4,
        poll_interval: Duration::from_secs(30),
        lease: Duration::from_secs(30),
        heartbeat_interval: Duration::from_secs(10),
        rescue_interval: Duration::from_secs(1),
        progress_interval: Duration::from_millis(200),
        retry: RetryPolicy {
            base: Duration::ZERO,
            cap: Duration::ZERO,
            max_attempts: 5,
        },
        shutdown_grace: Duration::from_secs(5),
        temp_dir,
        min_free_disk: 0,
        report_batch: 100,
        report_linger: Duration::from_millis(10),
        report_deadline: Duration::from_secs(5),
    }
}

struct Running {
    stop: CancellationToken,
    handle: JoinHandle<RunSummary>,
}

impl Running {
    async fn stop(self) -> RunSummary {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("the worker did not stop")
            .unwrap()
    }
}

fn start(queue: Arc<dyn Queue>, handler: Arc<dyn JobHandler>, opts: WorkerOptions) -> Running {
    let stop = CancellationToken::new();
    let worker = Worker::new(queue, handler, opts);
    let handle = tokio::spawn(worker.run(stop.clone()));
    Running { stop, handle }
}

/// Waits until the job has `status`, or panics after `within`.
async fn wait_for_status(b: &Backend, id: Uuid, status: &str, within: Duration) {
    crate::support::backends::wait_for_status(b.queue.as_ref(), id, &[status], within).await;
}

on_every_backend!(
    jobs_complete_and_the_video_row_follows,
    transient_failures_are_retried_until_they_succeed,
    permanent_failures_are_not_retried,
    a_panicking_handler_fails_the_attempt_not_the_worker,
    shutdown_releases_running_jobs_and_removes_their_temp_files,
    shutdown_lets_jobs_finish_within_the_grace_period,
    a_killed_worker_process_leaves_its_job_to_another_process,
    sigterm_releases_running_jobs_after_the_grace_period_and_exits_0,
    a_second_signal_exits_at_once_and_the_lease_covers_the_job,
    a_worker_that_lost_its_lease_stops_the_job_and_writes_nothing,
);

mod push {
    use super::*;
    on_push_backends!(a_new_job_wakes_an_idle_worker_long_before_the_poll_interval);
}

async fn jobs_complete_and_the_video_row_follows(kind: Kind) {
    let b = Backend::new(kind).await;
    let ids = b.enqueue_many(50).await;
    let tmp = tempfile::tempdir().unwrap();
    let handler = Arc::new(Succeed::default());
    let w = start(
        b.queue.clone(),
        handler.clone(),
        options("w1", tmp.path().into()),
    );
    for id in &ids {
        wait_for_status(&b, *id, "completed", Duration::from_secs(20)).await;
    }
    let summary = w.stop().await;
    assert_eq!(summary.claimed, 50);
    assert_eq!(summary.completed, 50);
    for id in &ids {
        assert_eq!(handler.log.attempts(*id), 1);
        let rec = b.queue.job(*id).await.unwrap().unwrap();
        assert_eq!(rec.video_status, "ready");
        assert!(rec.video_object_key.unwrap().ends_with(".mp4"));
        assert_eq!(rec.worker_id.as_deref(), Some("w1"));
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

async fn transient_failures_are_retried_until_they_succeed(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b.enqueue("7400000000000000001").await;
    let tmp = tempfile::tempdir().unwrap();
    let handler = Arc::new(FailTimes {
        times: 2,
        class: ErrorClass::Transient,
        log: Default::default(),
    });
    let w = start(
        b.queue.clone(),
        handler.clone(),
        options("w1", tmp.path().into()),
    );
    wait_for_status(&b, id, "completed", Duration::from_secs(20)).await;
    let summary = w.stop().await;
    assert_eq!(handler.log.attempts(id), 3);
    assert_eq!(summary.retried, 2);
    assert_eq!(b.queue.job(id).await.unwrap().unwrap().attempts, 3);
}

async fn permanent_failures_are_not_retried(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b.enqueue("7400000000000000001").await;
    let tmp = tempfile::tempdir().unwrap();
    let handler = Arc::new(FailTimes {
        times: 100,
        class: ErrorClass::Permanent,
        log: Default::default(),
    });
    let w = start(
        b.queue.clone(),
        handler.clone(),
        options("w1", tmp.path().into()),
    );
    wait_for_status(&b, id, "failed", Duration::from_secs(20)).await;
    let summary = w.stop().await;
    assert_eq!(handler.log.attempts(id), 1);
    assert_eq!(summary.failed, 1);
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!(rec.video_status, "failed");
    assert_eq!(rec.video_last_error.as_deref(), Some("planned failure 1"));
    assert_eq!(rec.last_error_code.as_deref(), Some("test-failure"));
}

async fn a_panicking_handler_fails_the_attempt_not_the_worker(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b
        .enqueue_with(douyin_worker::queue::EnqueueRequest {
            douyin_id: Some("7400000000000000001".into()),
            max_attempts: Some(2),
            ..Default::default()
        })
        .await;
    let tmp = tempfile::tempdir().unwrap();
    let w = start(
        b.queue.clone(),
        Arc::new(Panic),
        options("w1", tmp.path().into()),
    );
    wait_for_status(&b, id, "failed", Duration::from_secs(20)).await;
    let summary = w.stop().await;
    assert_eq!(summary.retried, 1);
    assert_eq!(summary.failed, 1);
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!(rec.last_error_code.as_deref(), Some("handler-panic"));
    assert!(rec.last_error.unwrap().contains("handler exploded"));
}

async fn a_new_job_wakes_an_idle_worker_long_before_the_poll_interval(kind: Kind) {
    let b = Backend::new(kind).await;
    let tmp = tempfile::tempdir().unwrap();
    let handler = Arc::new(Succeed::default());
    // Polling alone would take an hour: only a wake-up gets the job done.
    let mut opts = options("w1", tmp.path().into());
    opts.poll_interval = Duration::from_secs(3600);
    let w = start(b.queue.clone(), handler.clone(), opts);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = b.enqueue("7400000000000000001").await;
    wait_for_status(&b, id, "completed", Duration::from_secs(60)).await;
    assert_eq!(handler.log.attempts(id), 1);
    w.stop().await;
}

async fn a_worker_that_lost_its_lease_stops_the_job_and_writes_nothing(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b.enqueue("7400000000000000001").await;
    let tmp = tempfile::tempdir().unwrap();
    let handler = Arc::new(Hang::default());
    let mut opts = options("w1", tmp.path().into());
    opts.heartbeat_interval = Duration::from_millis(100);
    let stop = CancellationToken::new();
    let worker = Worker::new(b.queue.clone(), handler.clone(), opts);
    let counters = worker.counters();
    let run = tokio::spawn(worker.run(stop.clone()));
    while handler.log.temp_dirs.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let job_dir = handler.log.temp_dirs.lock().unwrap()[0].clone();
    assert!(job_dir.exists());

    // Another worker holds the job now: the next heartbeat finds the lease gone, and the
    // job (which would otherwise wait for cancellation for ever) stops.
    b.take_over(id, "w2").await;
    let guard = Instant::now();
    while counters.snapshot().lease_lost < 1 || job_dir.exists() {
        assert!(
            guard.elapsed() < Duration::from_secs(60),
            "the job never stopped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let summary = {
        stop.cancel();
        run.await.unwrap()
    };
    assert_eq!(
        (
            summary.lease_lost,
            summary.released,
            summary.failed,
            summary.retried
        ),
        (1, 0, 0, 0),
        "{summary:?}"
    );
    // Nothing of the first worker's: the job is still the second worker's, attempt 1.
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!(
        (rec.status.as_str(), rec.worker_id.as_deref(), rec.attempts),
        ("running", Some("w2"), 1),
        "{rec:?}"
    );
    assert_eq!(handler.log.attempts(id), 1);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

async fn shutdown_releases_running_jobs_and_removes_their_temp_files(kind: Kind) {
    let b = Backend::new(kind).await;
    let ids = b.enqueue_many(3).await;
    let tmp = tempfile::tempdir().unwrap();
    let handler = Arc::new(Hang::default());
    let mut opts = options("w1", tmp.path().into());
    opts.shutdown_grace = Duration::from_millis(300);
    let w = start(b.queue.clone(), handler.clone(), opts);
    for id in &ids {
        wait_for_status(&b, *id, "running", Duration::from_secs(10)).await;
    }
    while handler.log.temp_dirs.lock().unwrap().len() < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let summary = w.stop().await;
    assert_eq!(summary.released, 3);
    for id in &ids {
        let rec = b.queue.job(*id).await.unwrap().unwrap();
        assert_eq!(rec.status, "pending");
        assert_eq!(rec.attempts, 0, "a release does not count the attempt");
        assert_eq!(rec.video_status, "pending");
    }
    for dir in handler.log.temp_dirs.lock().unwrap().iter() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

async fn shutdown_lets_jobs_finish_within_the_grace_period(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b.enqueue("7400000000000000001").await;
    let tmp = tempfile::tempdir().unwrap();
    let handler = Arc::new(Hang {
        finish_after: Some(Duration::from_millis(700)),
        log: Default::default(),
    });
    let w = start(
        b.queue.clone(),
        handler.clone(),
        options("w1", tmp.path().into()),
    );
    wait_for_status(&b, id, "running", Duration::from_secs(10)).await;
    let summary = w.stop().await;
    assert_eq!(summary.completed, 1);
    assert_eq!(summary.released, 0);
    assert_eq!(b.queue.job(id).await.unwrap().unwrap().status, "completed");
}

/// Runs this test binary again as a worker process that hangs on every job. With
/// `grace`, it stops on SIGINT/SIGTERM like the real binary, with that grace period.
fn spawn_child_worker(b: &Backend, temp_dir: &std::path::Path, grace: Option<Duration>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "worker::child_worker_process",
        "--ignored",
        "--nocapture",
    ])
    .env("DW_CHILD_BACKEND", &b.locator.0)
    .env("DW_CHILD_TARGET", &b.locator.1)
    .env("DW_CHILD_TEMP", temp_dir)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    if let Some(grace) = grace {
        cmd.env("DW_CHILD_GRACE_MS", grace.as_millis().to_string());
    }
    cmd.spawn().expect("spawn the child worker")
}

/// Waits until the child worker holds the job.
async fn wait_for_child_claim(b: &Backend, id: Uuid, child: &mut Child) {
    let claimed = async {
        loop {
            let rec = b.queue.job(id).await.unwrap().unwrap();
            if rec.status == "running" && rec.worker_id.as_deref() == Some("doomed") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), claimed)
        .await
        .is_err()
    {
        let _ = child.kill();
        panic!("the child worker never claimed the job");
    }
}

fn signal(child: &Child, sig: i32) {
    let r = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(r, 0, "kill({}, {sig})", child.id());
}

/// Waits for the child to exit; its exit code.
async fn exit_code(mut child: Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child worker did not exit within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The child side of the `kill -9` test; does nothing unless started by it.
#[tokio::test]
#[ignore = "runs only as the child process of a_killed_worker_process_leaves_its_job_to_another_process"]
async fn child_worker_process() {
    let (Ok(backend), Ok(target), Ok(temp)) = (
        std::env::var("DW_CHILD_BACKEND"),
        std::env::var("DW_CHILD_TARGET"),
        std::env::var("DW_CHILD_TEMP"),
    ) else {
        return;
    };
    let queue: Arc<dyn Queue> = if backend == "postgres" {
        let pool = sqlx::PgPool::connect(&target).await.unwrap();
        Arc::new(douyin_worker::queue::postgres::PgQueue::from_pool(pool))
    } else if backend == "rest" {
        let (url, key) = target.split_once(' ').unwrap();
        Arc::new(
            douyin_worker::queue::rest::RestQueue::new(
                &url.parse().unwrap(),
                douyin_worker::config::Secret::new(key),
            )
            .unwrap(),
        )
    } else {
        Arc::new(
            douyin_worker::queue::sqlite::SqliteQueue::open(std::path::Path::new(&target))
                .await
                .unwrap(),
        )
    };
    let mut opts = options("doomed", temp.into());
    opts.lease = Duration::from_secs(2);
    opts.heartbeat_interval = Duration::from_millis(500);
    let shutdown = match std::env::var("DW_CHILD_GRACE_MS") {
        Ok(ms) => {
            opts.shutdown_grace = Duration::from_millis(ms.parse().unwrap());
            douyin_worker::shutdown::on_signals().unwrap()
        }
        Err(_) => CancellationToken::new(),
    };
    let worker = Worker::new(queue, Arc::new(Hang::default()), opts);
    let summary = worker.run(shutdown).await;
    assert_eq!(summary.released, summary.claimed, "{summary:?}");
}

async fn a_killed_worker_process_leaves_its_job_to_another_process(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b.enqueue("7400000000000000001").await;
    let tmp = tempfile::tempdir().unwrap();
    let mut child = spawn_child_worker(&b, tmp.path(), None);
    wait_for_child_claim(&b, id, &mut child).await;
    // Its heartbeats keep the lease alive while it lives.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        b.queue.job(id).await.unwrap().unwrap().worker_id.as_deref(),
        Some("doomed")
    );
    // kill -9: no cleanup, no release.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(b.queue.job(id).await.unwrap().unwrap().status, "running");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert_eq!(
        left.len(),
        1,
        "the killed worker's temp folder is still there"
    );

    // Another process rescues the job once the lease expires, completes it, and removes
    // the dead worker's temp folder.
    let handler = Arc::new(Succeed::default());
    let w = start(
        b.queue.clone(),
        handler.clone(),
        options("survivor", tmp.path().into()),
    );
    wait_for_status(&b, id, "completed", Duration::from_secs(20)).await;
    let summary = w.stop().await;
    assert_eq!(summary.completed, 1);
    assert!(summary.rescued >= 1);
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!(rec.worker_id.as_deref(), Some("survivor"));
    assert_eq!(rec.attempts, 2);
    assert_eq!(handler.log.attempts(id), 1);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

async fn sigterm_releases_running_jobs_after_the_grace_period_and_exits_0(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b.enqueue("7400000000000000001").await;
    let tmp = tempfile::tempdir().unwrap();
    let mut child = spawn_child_worker(&b, tmp.path(), Some(Duration::from_millis(500)));
    wait_for_child_claim(&b, id, &mut child).await;
    while std::fs::read_dir(tmp.path()).unwrap().count() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = Instant::now();
    signal(&child, libc::SIGTERM);
    assert_eq!(exit_code(child, Duration::from_secs(20)).await, Some(0));
    assert!(
        sent.elapsed() >= Duration::from_millis(500),
        "the grace period was not given"
    );
    let rec = b.queue.job(id).await.unwrap().unwrap();
    assert_eq!(
        (rec.status.as_str(), rec.attempts),
        ("pending", 0),
        "{rec:?}"
    );
    assert_eq!(rec.video_status, "pending");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "temp files left behind"
    );
}

async fn a_second_signal_exits_at_once_and_the_lease_covers_the_job(kind: Kind) {
    let b = Backend::new(kind).await;
    let id = b.enqueue("7400000000000000001").await;
    let tmp = tempfile::tempdir().unwrap();
    // A grace period of an hour: an exit within the guard is the second signal's doing.
    let mut child = spawn_child_worker(&b, tmp.path(), Some(Duration::from_secs(3600)));
    wait_for_child_claim(&b, id, &mut child).await;
    signal(&child, libc::SIGINT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, libc::SIGINT);
    let code = exit_code(child, Duration::from_secs(60)).await;
    assert_eq!(code, Some(douyin_worker::shutdown::FORCED_EXIT_CODE));
    // Not released: the lease runs out and another worker takes it over.
    assert_eq!(b.queue.job(id).await.unwrap().unwrap().status, "running");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let rescued = b.queue.rescue(10).await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].worker_id.as_deref(), Some("doomed"));
}

/// Collects log output in memory.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs `test` on a one-thread runtime, so this thread's subscriber sees every task, logging
/// as the binary does in JSON at `filter`; the text it logged.
pub(crate) fn json_logs_of<F: std::future::Future<Output = ()>>(
    filter: &str,
    test: impl FnOnce() -> F,
) -> String {
    let logs = Captured::default();
    let subscriber = douyin_worker::telemetry::subscriber(
        douyin_worker::config::LogFormat::Json,
        tracing_subscriber::EnvFilter::new(filter),
        false,
        logs.clone(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || rt.block_on(test()));
    String::from_utf8(logs.0.lock().unwrap().clone()).unwrap()
}

#[test]
fn every_log_line_about_a_job_names_the_job_its_video_and_its_douyin_id() {
    let text = json_logs_of("debug,sqlx=warn", || async {
        let b = Backend::new(Kind::Sqlite).await;
        let ids = b.enqueue_many(3).await;
        let tmp = tempfile::tempdir().unwrap();
        let handler = Arc::new(FailTimes {
            times: 1,
            class: ErrorClass::Transient,
            log: Default::default(),
        });
        let w = start(b.queue.clone(), handler, options("w1", tmp.path().into()));
        for id in &ids {
            wait_for_status(&b, *id, "completed", Duration::from_secs(20)).await;
        }
        w.stop().await;
    });
    let mut about_jobs = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("every line is JSON");
        let field = |name: &str| {
            v.get(name)
                .or_else(|| v.get("span").and_then(|s| s.get(name)))
                .cloned()
        };
        if field("job_id").is_some() {
            about_jobs += 1;
            assert!(field("video_id").is_some(), "no video_id: {line}");
            let douyin = field("douyin_id").unwrap_or_else(|| panic!("no douyin_id: {line}"));
            assert!(
                douyin.as_str().is_some_and(|d| d.starts_with("74")),
                "{line}"
            );
        }
    }
    // claimed, failed, retry scheduled, claimed again, done, completed: per job.
    assert!(about_jobs >= 3 * 5, "only {about_jobs} job lines:\n{text}");
}

#[test]
fn download_progress_is_logged_at_each_quarter_not_at_every_update() {
    let text = json_logs_of("debug,sqlx=warn", || async {
        let b = Backend::new(Kind::Sqlite).await;
        let id = b.enqueue("7400000000000000077").await;
        let tmp = tempfile::tempdir().unwrap();
        let handler = Arc::new(Progressing {
            steps: vec![100, 200, 300, 600, 650, 1000],
            pause: Duration::from_millis(80),
        });
        let mut opts = options("w1", tmp.path().into());
        opts.progress_interval = Duration::from_millis(20);
        let w = start(b.queue.clone(), handler, opts);
        wait_for_status(&b, id, "completed", Duration::from_secs(20)).await;
        w.stop().await;
    });
    let percents: Vec<u64> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["message"] == "download progress")
        .map(|v| {
            assert_eq!(v["douyin_id"], "7400000000000000077", "{v}");
            assert_eq!(v["total"], 1000);
            v["percent"].as_u64().unwrap()
        })
        .collect();
    // 10 and 20 % are below the first quarter; 65 % is still the second.
    assert_eq!(
        percents,
        [30, 60, 100],
        "{} lines: {text}",
        text.lines().count()
    );
}

#[tokio::test]
async fn a_running_worker_sweeps_the_temp_folders_of_dead_processes() {
    let b = Backend::new(Kind::Sqlite).await;
    let tmp = tempfile::tempdir().unwrap();
    let w = start(
        b.queue.clone(),
        Arc::new(Succeed::default()),
        options("sweeper", tmp.path().into()),
    );
    // After start-up: a folder of a process that is gone (a pid that cannot be running), and
    // one of this process (a live worker's), as a killed worker on this machine leaves them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let dead = tmp
        .path()
        .join(format!("douyin-worker-{}-{}", i32::MAX - 1, Uuid::new_v4()));
    let live = tmp.path().join(format!(
        "douyin-worker-{}-{}",
        std::process::id(),
        Uuid::new_v4()
    ));
    for dir in [&dead, &live] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("partial.mp4"), b"half a video").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while dead.exists() {
        assert!(
            Instant::now() < deadline,
            "the dead process's folder is still there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(live.exists(), "a live process's folder is kept");
    w.stop().await;
}
