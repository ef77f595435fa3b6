//! The dispatcher: claims jobs for free slots and starts them.
//!
//! It claims as many due jobs as there are free slots in one round trip, one claim at a time
//! (two overlapping claims were measured slower: each gets half the slots, and the database
//! does twice the fixed work per job). When a claim finds fewer due jobs than it asked for,
//! nothing more is due: the dispatcher sleeps until a wake-up, a known due time or the poll
//! interval, never while a slot is free and a job is due. A claim is never abandoned half-way
//! (its jobs would stay `running` until their leases expired): on shutdown the dispatcher
//! starts no new claim, waits for the one in flight, and releases the jobs it returns.
//!
//! Before each claim it measures the free space under the temp folder: below
//! `MIN_FREE_DISK` it claims nothing (every download would fail on a full disk, after asking
//! Douyin) and measures again after a while; it says so in the log once, and in the
//! `douyin_low_disk` gauge.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Shared;
use super::claim_health::ClaimHealth;
use super::job::run_job;
use super::reporter::{Msg, Outcome};
use crate::disk::FreeSpace;
use crate::queue::{ClaimedJob, JobSignal, QueueError};
use crate::retry::Backoff;

type ClaimResult = (
    Result<Vec<ClaimedJob>, QueueError>,
    Vec<OwnedSemaphorePermit>,
);
type ClaimFuture = Pin<Box<dyn Future<Output = ClaimResult> + Send>>;

/// Runs until `shutdown` is cancelled and no claim is in flight.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    signal: &Arc<JobSignal>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(shared.opts.max_concurrent));
    let mut in_flight: Option<ClaimFuture> = None;
    // The last claim found fewer due jobs than free slots.
    let mut drained = false;
    // After a failed claim, no new claim before this instant.
    let mut backoff: Option<tokio::time::Instant> = None;
    let mut health = ClaimHealth::new(shared.readiness.clone(), shared.queue.backend());
    let mut disk = DiskGate::new(shared);
    // Too little room under the temp folder: no new claim before this instant.
    let mut disk_wait: Option<tokio::time::Instant> = None;
    loop {
        let idle = in_flight.is_none();
        let may_claim = idle
            && !drained
            && backoff.is_none()
            && disk_wait.is_none()
            && !shutdown.is_cancelled();
        tokio::select! {
            biased;
            (result, permits) = poll_claim(&mut in_flight), if !idle => {
                in_flight = None;
                let want = permits.len();
                match result {
                    Ok(jobs) => {
                        health.succeeded();
                        drained = jobs.len() < want;
                        start(shared, tracker, jobs, permits, shutdown.is_cancelled());
                    }
                    Err(e) => {
                        let failures = health.failed(&e);
                        let wait = Backoff::new(
                            Duration::from_millis(200),
                            shared.opts.poll_interval.max(Duration::from_secs(1)),
                        )
                        .after(failures);
                        tracing::warn!(error = %e, retry_in = format_args!("{wait:.1?}"), "claim failed");
                        backoff = Some(tokio::time::Instant::now() + wait);
                    }
                }
            }
            _ = shutdown.cancelled(), if idle => return,
            first = slots.clone().acquire_owned(), if may_claim => {
                let Ok(first) = first else { return };
                if !disk.allows_claims() {
                    disk_wait = Some(tokio::time::Instant::now() + disk.recheck);
                    continue;
                }
                // Jobs that end together free their slots a moment apart; let them, so one
                // claim fills all of them instead of a claim per slot.
                tokio::task::yield_now().await;
                let mut permits = vec![first];
                while let Ok(p) = slots.clone().try_acquire_owned() {
                    permits.push(p);
                }
                in_flight = Some(claim(shared, permits));
            }
            _ = signal.wait(shared.opts.poll_interval, shutdown), if drained && idle && backoff.is_none() => {
                drained = false;
            }
            _ = sleep_until(backoff), if backoff.is_some() && idle => {
                backoff = None;
            }
            _ = sleep_until(disk_wait), if disk_wait.is_some() && idle => {
                disk_wait = None;
            }
        }
    }
}

/// The free-space rule before each claim, and its state for the log and the gauge.
struct DiskGate {
    space: Option<FreeSpace>,
    paused: bool,
    /// How long to wait before measuring again while the disk is low.
    recheck: Duration,
}

impl DiskGate {
    fn new(shared: &Shared) -> Self {
        let min_free = shared.opts.min_free_disk;
        if min_free > 0 {
            metrics::gauge!(crate::metrics::LOW_DISK).set(0.0);
        }
        Self {
            space: (min_free > 0).then(|| FreeSpace::new(&shared.opts.temp_dir, min_free)),
            paused: false,
            recheck: shared.opts.poll_interval.min(Duration::from_secs(10)),
        }
    }

    /// Whether there is room to claim; logs when claiming pauses and when it resumes.
    fn allows_claims(&mut self) -> bool {
        let Some(space) = &self.space else {
            return true;
        };
        let low = space.low();
        match (&low, self.paused) {
            (Some(low), false) => {
                tracing::warn!(
                    free_bytes = low.free,
                    min_free_disk = low.min_free,
                    "not claiming new jobs: {low}; claiming resumes when there is room"
                );
                metrics::gauge!(crate::metrics::LOW_DISK).set(1.0);
            }
            (None, true) => {
                tracing::info!(
                    "free space under TEMP_DIR is above MIN_FREE_DISK again: claiming resumes"
                );
                metrics::gauge!(crate::metrics::LOW_DISK).set(0.0);
            }
            _ => {}
        }
        self.paused = low.is_some();
        !self.paused
    }
}

/// Polls the claim in flight (the caller checks that there is one).
async fn poll_claim(in_flight: &mut Option<ClaimFuture>) -> ClaimResult {
    match in_flight.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

fn claim(shared: &Arc<Shared>, permits: Vec<OwnedSemaphorePermit>) -> ClaimFuture {
    let shared = shared.clone();
    Box::pin(async move {
        let want = permits.len() as u32;
        let result = shared
            .queue
            .claim(&shared.worker_id, want, shared.opts.lease)
            .await;
        (result, permits)
    })
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Starts the claimed jobs, one slot each; during shutdown, gives them back instead.
fn start(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    jobs: Vec<ClaimedJob>,
    permits: Vec<OwnedSemaphorePermit>,
    shutting_down: bool,
) {
    let counters = shared.counters();
    counters.claims.fetch_add(1, Ordering::Relaxed);
    counters
        .claimed
        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
    metrics::counter!(crate::metrics::JOBS_CLAIMED).increment(jobs.len() as u64);
    if shutting_down {
        for job in jobs {
            tracing::info!(job_id = %job.id(), "claimed as shutdown began: releasing");
            let _ = shared
                .outcomes
                .send(Msg::Outcome(Outcome::Release(job.lease)));
        }
        return;
    }
    for (job, permit) in jobs.into_iter().zip(permits) {
        tracker.spawn(run_job(shared.clone(), job, permit));
    }
}
