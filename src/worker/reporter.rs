//! Records job outcomes in batches: everything that finished while the previous batch was
//! being written goes in the next call, one call per kind (complete, fail, release). A queue
//! that is down is retried with backoff; the leases stay renewed meanwhile, because a lease
//! is forgotten only once its outcome is recorded.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::queue::{
    CompleteOutcome, Completion, FailOutcome, FailedAttempt, Lease, QueueError, ReleaseOutcome,
};
use crate::retry::Backoff;

/// The end of one job attempt, to be recorded. One per job goes through a channel, so the
/// size of the largest variant costs nothing worth a box.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// Done and stored.
    Complete(Completion),
    /// Failed; rescheduled or failed for good.
    Fail(FailedAttempt),
    /// Not finished at shutdown: back to pending.
    Release(Lease),
}

/// A message to the reporter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    /// Record this.
    Outcome(Outcome),
    /// Every job has ended: record what is left and stop.
    Stop,
}

/// Runs until [`Msg::Stop`] (after recording everything before it) or until `give_up`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    give_up: CancellationToken,
) {
    let batch = shared.opts.report_batch.max(1);
    let mut pending: Vec<Outcome> = Vec::new();
    let linger = shared.opts.report_linger;
    loop {
        let mut stop = false;
        match rx.recv().await {
            Some(Msg::Outcome(o)) => pending.push(o),
            Some(Msg::Stop) | None => stop = true,
        }
        // Gather what else ends within the linger time: under load one call records many
        // jobs; when idle it only delays the record by the linger.
        let deadline = tokio::time::Instant::now() + linger;
        while !stop && pending.len() < batch {
            match rx.try_recv() {
                Ok(Msg::Outcome(o)) => pending.push(o),
                Ok(Msg::Stop) => stop = true,
                Err(mpsc::error::TryRecvError::Disconnected) => stop = true,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(Msg::Outcome(o))) => pending.push(o),
                        Ok(Some(Msg::Stop)) | Ok(None) => stop = true,
                        Err(_) => break,
                    }
                }
            }
        }
        if !pending.is_empty() && !record(&shared, std::mem::take(&mut pending), &give_up).await {
            return;
        }
        if stop {
            return;
        }
    }
}

/// Records one batch; returns false when it gave up.
async fn record(shared: &Shared, batch: Vec<Outcome>, give_up: &CancellationToken) -> bool {
    let mut completions = Vec::new();
    let mut failures = Vec::new();
    let mut releases = Vec::new();
    for o in batch {
        match o {
            Outcome::Complete(c) => completions.push(c),
            Outcome::Fail(f) => failures.push(f),
            Outcome::Release(l) => releases.push(l),
        }
    }
    let worker = &*shared.worker_id;
    let queue = &shared.queue;
    let counters = shared.counters();

    if !completions.is_empty() {
        let Some(results) = retrying(give_up, || queue.complete(worker, &completions)).await else {
            return false;
        };
        for (id, outcome) in &results {
            let (video_id, douyin_id) = shared.job_fields(*id);
            match outcome {
                CompleteOutcome::Completed => {
                    counters.completed.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(crate::metrics::JOBS_COMPLETED).increment(1);
                    tracing::debug!(job_id = %id, video_id, douyin_id, "completed");
                }
                CompleteOutcome::LeaseLost => {
                    counters.lease_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(job_id = %id, video_id, douyin_id, "finished, but the lease was lost to another worker: not recorded");
                }
            }
        }
        shared.forget(completions.iter().map(|c| c.lease.job_id));
    }
    if !failures.is_empty() {
        let Some(results) = retrying(give_up, || queue.fail(worker, &failures)).await else {
            return false;
        };
        for (id, outcome) in &results {
            let (video_id, douyin_id) = shared.job_fields(*id);
            if !matches!(outcome, FailOutcome::LeaseLost)
                && let Some(f) = failures.iter().find(|f| f.lease.job_id == *id)
            {
                metrics::counter!(
                    crate::metrics::JOBS_FAILED,
                    "class" => f.class.to_string(),
                    "code" => crate::metrics::code_label(&f.code),
                    "final" => if matches!(outcome, FailOutcome::Failed) { "true" } else { "false" },
                )
                .increment(1);
            }
            match outcome {
                FailOutcome::RetryScheduled(at) => {
                    counters.retried.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(crate::metrics::JOBS_RETRIED).increment(1);
                    shared.signal.job_due_at(*at);
                    tracing::info!(job_id = %id, video_id, douyin_id, next_attempt_at = %at, "retry scheduled");
                }
                FailOutcome::Failed => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(job_id = %id, video_id, douyin_id, "job failed for good");
                }
                FailOutcome::LeaseLost => {
                    counters.lease_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(job_id = %id, video_id, douyin_id, "failure not recorded: the lease was lost to another worker");
                }
            }
        }
        shared.forget(failures.iter().map(|f| f.lease.job_id));
    }
    if !releases.is_empty() {
        let Some(results) = retrying(give_up, || queue.release(worker, &releases)).await else {
            return false;
        };
        for (id, outcome) in &results {
            let (video_id, douyin_id) = shared.job_fields(*id);
            match outcome {
                ReleaseOutcome::Released => {
                    counters.released.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(crate::metrics::JOBS_RELEASED).increment(1);
                    tracing::info!(job_id = %id, video_id, douyin_id, "released to pending");
                }
                ReleaseOutcome::LeaseLost => {
                    counters.lease_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(job_id = %id, video_id, douyin_id, "not released: the lease was lost to another worker");
                }
            }
        }
        shared.forget(releases.iter().map(|l| l.job_id));
    }
    true
}

/// Calls `op` until it succeeds, backing off on transient errors. Other errors are logged
/// and the batch is dropped (the leases expire and the rescue requeues the jobs).
async fn retrying<T, F, Fut>(give_up: &CancellationToken, mut op: F) -> Option<Vec<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, QueueError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let r = tokio::select! {
            _ = give_up.cancelled() => return None,
            r = op() => r,
        };
        match r {
            Ok(v) => return Some(v),
            Err(e) if e.is_transient() => {
                let wait = backoff.next_wait();
                tracing::warn!(error = %e, retry_in = format_args!("{wait:.1?}"), "recording job outcomes failed");
                tokio::select! {
                    _ = give_up.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "recording job outcomes was refused; the jobs will be rescued when their leases expire");
                return Some(Vec::new());
            }
        }
    }
}
