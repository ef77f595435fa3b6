//! The worker loop: claim as many jobs as there are free slots, run each under a lease,
//! record the outcomes in batches, shut down gracefully.
//!
//! Tasks, all stopped by one shutdown token:
//! - the dispatcher (this module's [`Worker::run`]): waits for a free slot, claims a batch
//!   for all free slots in one round trip, spawns one task per job; when the queue had fewer
//!   due jobs than free slots it sleeps until a wake-up (NOTIFY), a known due time, or the
//!   poll interval, and never while a slot is free and a job is due; it claims nothing while
//!   the temp folder has less than `MIN_FREE_DISK` free;
//! - the `reporter`: records completions, failures and releases in batches (River's batch
//!   completer is the model), so a slot is free as soon as its job's work ends;
//! - the heartbeat: renews every lease this process holds in one call, and cancels jobs
//!   whose lease was lost;
//! - the rescuer: puts jobs with expired leases (of any worker) back in the queue;
//! - the progress flusher (`progress`): writes download progress as the rule of
//!   `stage::progress` allows (one write per whole percent and half second per job).
//!
//! Shutdown: stop claiming at once; let running jobs finish within the grace period; then
//! cancel the rest (their temp folders are removed on drop) and release them to pending;
//! flush the outcomes; return.

mod claim_health;
mod dispatch;
mod job;
mod progress;
mod reporter;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::config::WorkerSettings;
use crate::queue::{JobQueue, JobSignal, Lease};
use crate::readiness::Readiness;
use crate::retry::RetryPolicy;
use crate::stage::{JobHandler, ProgressBoard};

pub use claim_health::NOT_READY_AFTER;
pub use reporter::Outcome;

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// This worker's id in the queue.
    pub worker_id: String,
    /// Jobs at once.
    pub max_concurrent: usize,
    /// Longest idle wait without a wake-up.
    pub poll_interval: Duration,
    /// Lease length.
    pub lease: Duration,
    /// How often leases are renewed.
    pub heartbeat_interval: Duration,
    /// How often expired leases are rescued.
    pub rescue_interval: Duration,
    /// How often the progress flusher looks for progress due to be written (the rule of
    /// `stage::progress` decides what is).
    pub progress_interval: Duration,
    /// Backoff and attempts.
    pub retry: RetryPolicy,
    /// How long running jobs may finish after shutdown is asked.
    pub shutdown_grace: Duration,
    /// Root of the per-job temp folders.
    pub temp_dir: PathBuf,
    /// No claim while fewer bytes than this are free under `temp_dir` (0: no check).
    pub min_free_disk: u64,
    /// Largest batch of outcomes recorded in one call.
    pub report_batch: usize,
    /// How long the first outcome of a batch waits for others to join it.
    pub report_linger: Duration,
    /// How long to keep trying to record outcomes at shutdown while the queue is down.
    pub report_deadline: Duration,
}

impl WorkerOptions {
    /// The worker of these settings: heartbeats every third of the lease, rescues every poll
    /// interval (1 s to a minute), progress looked at every 100 ms, outcomes in batches of 500.
    pub fn new(cfg: &WorkerSettings) -> Self {
        Self {
            worker_id: cfg.worker_id.clone(),
            max_concurrent: cfg.max_concurrent,
            poll_interval: cfg.poll_interval,
            lease: cfg.lease,
            heartbeat_interval: cfg.lease / 3,
            rescue_interval: cfg
                .poll_interval
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            progress_interval: Duration::from_millis(100),
            retry: RetryPolicy {
                base: cfg.retry_base,
                cap: cfg.retry_max,
                max_attempts: cfg.max_attempts,
            },
            shutdown_grace: cfg.shutdown_grace,
            temp_dir: cfg.temp_dir.clone(),
            min_free_disk: cfg.min_free_disk,
            report_batch: 500,
            report_linger: Duration::from_millis(10),
            report_deadline: Duration::from_secs(10),
        }
    }
}

/// Counts of what a run did.
#[derive(Debug, Default)]
pub struct Counters {
    /// Claim round trips.
    pub claims: AtomicU64,
    /// Jobs claimed.
    pub claimed: AtomicU64,
    /// Jobs recorded as completed.
    pub completed: AtomicU64,
    /// Attempts failed and rescheduled.
    pub retried: AtomicU64,
    /// Jobs failed for good.
    pub failed: AtomicU64,
    /// Jobs released at shutdown.
    pub released: AtomicU64,
    /// Jobs whose lease was lost (taken over by another worker).
    pub lease_lost: AtomicU64,
    /// Expired leases of any worker that this worker rescued.
    pub rescued: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Claim round trips.
    pub claims: u64,
    /// Jobs claimed.
    pub claimed: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Attempts rescheduled.
    pub retried: u64,
    /// Jobs failed for good.
    pub failed: u64,
    /// Jobs released at shutdown.
    pub released: u64,
    /// Leases lost.
    pub lease_lost: u64,
    /// Expired leases rescued.
    pub rescued: u64,
}

impl RunSummary {
    /// The `worker stopped` line: one field per count, as a person reads them.
    fn log(&self) {
        tracing::info!(
            claims = self.claims,
            claimed = self.claimed,
            completed = self.completed,
            retried = self.retried,
            failed = self.failed,
            released = self.released,
            lease_lost = self.lease_lost,
            rescued = self.rescued,
            "worker stopped"
        );
    }
}

impl Counters {
    /// The current values.
    pub fn snapshot(&self) -> RunSummary {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RunSummary {
            claims: get(&self.claims),
            claimed: get(&self.claimed),
            completed: get(&self.completed),
            retried: get(&self.retried),
            failed: get(&self.failed),
            released: get(&self.released),
            lease_lost: get(&self.lease_lost),
            rescued: get(&self.rescued),
        }
    }
}

/// A lease this process holds, from claim until its outcome is recorded.
#[derive(Debug)]
struct Held {
    lease: Lease,
    video_id: Uuid,
    douyin_id: Option<String>,
    cancel: CancellationToken,
    lost: Arc<AtomicBool>,
    /// The job's work is over and its outcome is waiting to be recorded.
    finished: bool,
}

/// State shared by the worker's tasks.
pub(crate) struct Shared {
    queue: Arc<dyn JobQueue>,
    handler: Arc<dyn JobHandler>,
    opts: WorkerOptions,
    worker_id: Arc<str>,
    held: Mutex<HashMap<Uuid, Held>>,
    progress: Arc<ProgressBoard>,
    counters: Arc<Counters>,
    /// Cancelled when the grace period is over: running jobs stop.
    hard_cancel: CancellationToken,
    /// Wakes the dispatcher; the reporter uses it for the retries it schedules itself (a
    /// backend without push wake-ups would otherwise find them only at the next poll).
    signal: Arc<JobSignal>,
    outcomes: mpsc::UnboundedSender<reporter::Msg>,
    /// Where the dispatcher reports claims that keep failing.
    readiness: Arc<Readiness>,
}

impl Shared {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets leases whose outcome is recorded (or that were lost).
    pub(crate) fn forget(&self, job_ids: impl IntoIterator<Item = Uuid>) {
        let mut held = self.held();
        for id in job_ids {
            held.remove(&id);
        }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The video id and Douyin id of a held job, for log lines outside its span.
    pub(crate) fn job_fields(&self, job_id: Uuid) -> (String, String) {
        self.held()
            .get(&job_id)
            .map(|h| {
                (
                    h.video_id.to_string(),
                    h.douyin_id.clone().unwrap_or_default(),
                )
            })
            .unwrap_or_default()
    }
}

/// A worker: a queue, a job handler and options.
pub struct Worker {
    queue: Arc<dyn JobQueue>,
    handler: Arc<dyn JobHandler>,
    opts: WorkerOptions,
    counters: Arc<Counters>,
    readiness: Arc<Readiness>,
}

impl Worker {
    /// A worker over `queue` running `handler` for each job.
    pub fn new(
        queue: Arc<dyn JobQueue>,
        handler: Arc<dyn JobHandler>,
        opts: WorkerOptions,
    ) -> Self {
        Self {
            queue,
            handler,
            opts,
            counters: Arc::default(),
            readiness: Arc::default(),
        }
    }

    /// Reports claims that keep failing to `readiness` (the one `/readyz` reads), from
    /// `NOT_READY_AFTER` failures in a row until a claim works.
    pub fn with_readiness(mut self, readiness: Arc<Readiness>) -> Self {
        self.readiness = readiness;
        self
    }

    /// Live counters, readable while [`Worker::run`] runs.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Runs until `shutdown` is cancelled, then shuts down gracefully (see the module doc).
    pub async fn run(self, shutdown: CancellationToken) -> RunSummary {
        let opts = self.opts;
        let stale = crate::workdir::remove_stale(&opts.temp_dir);
        if stale > 0 {
            tracing::info!(
                removed = stale,
                "removed temp folders of dead worker processes"
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let signal = Arc::new(JobSignal::new());
        let shared = Arc::new(Shared {
            queue: self.queue,
            handler: self.handler,
            worker_id: Arc::from(opts.worker_id.as_str()),
            opts,
            held: Mutex::default(),
            progress: Arc::default(),
            counters: self.counters,
            hard_cancel: CancellationToken::new(),
            signal: signal.clone(),
            outcomes: tx,
            readiness: self.readiness,
        });
        let background = CancellationToken::new();
        if let Err(e) = shared
            .queue
            .subscribe(signal.clone(), background.clone())
            .await
        {
            tracing::warn!(error = %e, "no push wake-ups; polling every {:?}", shared.opts.poll_interval);
        }
        let reporter_stop = CancellationToken::new();
        let reporter = tokio::spawn(reporter::run(shared.clone(), rx, reporter_stop.clone()));
        let heartbeat = tokio::spawn(heartbeat_loop(shared.clone(), background.clone()));
        let rescuer = tokio::spawn(rescue_loop(
            shared.clone(),
            signal.clone(),
            background.clone(),
        ));
        let progress = tokio::spawn(progress::run(shared.clone(), background.clone()));

        tracing::info!(
            worker_id = %shared.worker_id,
            backend = shared.queue.backend(),
            max_concurrent = shared.opts.max_concurrent,
            "worker started"
        );
        let tracker = TaskTracker::new();
        dispatch::run(&shared, &signal, &tracker, &shutdown).await;

        tracker.close();
        if !tracker.is_empty() {
            tracing::info!(
                running = tracker.len(),
                grace = format_args!("{:?}", shared.opts.shutdown_grace),
                "waiting for running jobs to finish"
            );
            tokio::select! {
                _ = tracker.wait() => {}
                _ = tokio::time::sleep(shared.opts.shutdown_grace) => {
                    tracing::warn!(running = tracker.len(), "grace period over: cancelling running jobs and releasing them");
                    shared.hard_cancel.cancel();
                    tracker.wait().await;
                }
            }
        }
        // Every job task has sent its outcome; record them, then stop the rest.
        let _ = shared.outcomes.send(reporter::Msg::Stop);
        let mut reporter = reporter;
        tokio::select! {
            _ = &mut reporter => {}
            _ = tokio::time::sleep(shared.opts.report_deadline) => {
                tracing::warn!("could not record every outcome in time; those jobs' leases will expire and be rescued");
                reporter_stop.cancel();
                let _ = reporter.await;
            }
        }
        background.cancel();
        let _ = tokio::join!(heartbeat, rescuer, progress);
        let summary = shared.counters.snapshot();
        summary.log();
        summary
    }
}

/// Renews every lease this process holds; cancels jobs whose lease was lost.
async fn heartbeat_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(
        shared
            .opts
            .heartbeat_interval
            .max(Duration::from_millis(100)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let leases: Vec<Lease> = shared.held().values().map(|h| h.lease).collect();
        if leases.is_empty() {
            continue;
        }
        match shared
            .queue
            .heartbeat(&shared.worker_id, &leases, shared.opts.lease)
            .await
        {
            Ok(renewed) => {
                let renewed: std::collections::HashSet<Lease> = renewed.into_iter().collect();
                let held = shared.held();
                for lease in leases.iter().filter(|l| !renewed.contains(l)) {
                    if let Some(h) = held.get(&lease.job_id)
                        && h.lease == *lease
                        && !h.finished
                    {
                        tracing::warn!(
                            job_id = %lease.job_id,
                            video_id = %h.video_id,
                            douyin_id = h.douyin_id.as_deref().unwrap_or(""),
                            "lease lost (expired and rescued): stopping the job"
                        );
                        h.lost.store(true, Ordering::SeqCst);
                        h.cancel.cancel();
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, leases = leases.len(), "heartbeat failed"),
        }
    }
}

/// Puts jobs with expired leases back in the queue, at start and then periodically.
async fn rescue_loop(shared: Arc<Shared>, signal: Arc<JobSignal>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(shared.opts.rescue_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // A worker killed on this machine leaves its jobs' temp folders (partial downloads)
        // behind; sweep them here too, not only when a worker starts.
        let root = shared.opts.temp_dir.clone();
        if let Ok(stale) =
            tokio::task::spawn_blocking(move || crate::workdir::remove_stale(&root)).await
            && stale > 0
        {
            tracing::info!(
                removed = stale,
                "removed temp folders of dead worker processes"
            );
        }
        match shared.queue.rescue(500).await {
            Ok(rescued) => {
                for r in &rescued {
                    let outcome = if r.requeued {
                        "back in the queue"
                    } else {
                        "failed for good (no attempts left)"
                    };
                    tracing::warn!(
                        job_id = %r.job_id,
                        video_id = %r.video_id,
                        douyin_id = r.douyin_id.as_deref().unwrap_or(""),
                        expired_worker = r.worker_id.as_deref().unwrap_or("?"),
                        outcome,
                        "rescued a job whose lease expired"
                    );
                }
                shared
                    .counters
                    .rescued
                    .fetch_add(rescued.len() as u64, Ordering::Relaxed);
                metrics::counter!(crate::metrics::LEASE_RESCUES).increment(rescued.len() as u64);
                if rescued.iter().any(|r| r.requeued) {
                    signal.job_due_now();
                }
            }
            Err(e) => tracing::debug!(error = %e, "rescue failed"),
        }
    }
}
