//! One job attempt: the handler run under the job's cancel token and a panic guard, then its
//! result turned into the outcome the reporter records.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::reporter::{Msg, Outcome};
use super::{Held, Shared};
use crate::error::{JobError, LEASE_LOST, MERGED};
use crate::queue::{ClaimedJob, Completion, FailedAttempt, Lease};
use crate::stage::{JobContext, JobOutput};

/// What an attempt ended with: `None` when it was cancelled (shutdown past the grace period,
/// or the lease lost).
type AttemptResult = Option<Result<JobOutput, JobError>>;

/// Runs one job attempt and hands its outcome to the reporter.
pub(crate) async fn run_job(shared: Arc<Shared>, job: ClaimedJob, permit: OwnedSemaphorePermit) {
    let lease = job.lease;
    let cancel = shared.hard_cancel.child_token();
    let lost = Arc::new(AtomicBool::new(false));
    shared.held().insert(
        lease.job_id,
        Held {
            lease,
            video_id: job.video_id,
            douyin_id: job.video.douyin_id.clone(),
            cancel: cancel.clone(),
            lost: lost.clone(),
            finished: false,
        },
    );
    let span = tracing::info_span!(
        "job",
        job_id = %lease.job_id,
        video_id = %job.video_id,
        douyin_id = job.video.douyin_id.as_deref().unwrap_or(""),
        attempt = job.attempts,
    );
    async move {
        tracing::info!(
            link = job.video.video_url.as_deref().unwrap_or(""),
            max_attempts = job.max_attempts,
            "job picked up"
        );
        let started = std::time::Instant::now();
        let in_flight = metrics::gauge!(crate::metrics::JOBS_IN_FLIGHT);
        in_flight.increment(1.0);
        let result = attempt(&shared, &job, &cancel).await;
        drop(permit);
        in_flight.decrement(1.0);
        let elapsed = started.elapsed();
        let result_label = match &result {
            None => "cancelled",
            Some(Ok(_)) => "done",
            Some(Err(_)) => "error",
        };
        metrics::histogram!(crate::metrics::JOB_SECONDS, "result" => result_label)
            .record(elapsed.as_secs_f64());
        let Some(outcome) = outcome_of(&shared, &job, result, lost.load(Ordering::SeqCst), elapsed)
        else {
            return;
        };
        if let Some(h) = shared.held().get_mut(&lease.job_id) {
            h.finished = true;
        }
        let _ = shared.outcomes.send(Msg::Outcome(outcome));
    }
    .instrument(span)
    .await
}

/// Runs the handler for `job` until it ends or `cancel` fires; a video marked for deletion is
/// refused without running it, and a panic is a transient failure.
async fn attempt(shared: &Shared, job: &ClaimedJob, cancel: &CancellationToken) -> AttemptResult {
    if job.video.marked_for_deletion {
        return Some(Err(JobError::permanent(
            "marked-for-deletion",
            "the video is marked for deletion",
        )));
    }
    let ctx = JobContext::new(
        job.lease,
        shared.worker_id.clone(),
        cancel.clone(),
        &shared.opts.temp_dir,
        shared.progress.clone(),
    )
    .with_queue(shared.queue.clone());
    let work = AssertUnwindSafe(shared.handler.handle(job, &ctx)).catch_unwind();
    let r = tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        r = work => Some(r),
    };
    // Dropping the context removes the job's temp folder.
    drop(ctx);
    r.map(|r| match r {
        Ok(r) => r,
        Err(panic) => Err(JobError::transient(
            "handler-panic",
            format!("the job handler panicked: {}", panic_message(&panic)),
        )),
    })
}

/// What to record for an attempt: completed, failed (with its retry, or for good), or
/// released (cancelled by shutdown); nothing when the lease was lost to another worker.
fn outcome_of(
    shared: &Shared,
    job: &ClaimedJob,
    result: AttemptResult,
    lost: bool,
    elapsed: Duration,
) -> Option<Outcome> {
    let lease: Lease = job.lease;
    Some(match result {
        None if lost => {
            tracing::warn!("lease lost to another worker: job abandoned");
            shared.counters.lease_lost.fetch_add(1, Ordering::Relaxed);
            shared.forget([lease.job_id]);
            return None;
        }
        None => {
            tracing::info!(
                elapsed = format_args!("{elapsed:.1?}"),
                "cancelled by shutdown: releasing the job"
            );
            Outcome::Release(lease)
        }
        Some(Ok(out)) => {
            tracing::info!(elapsed = format_args!("{elapsed:.1?}"), "job done");
            Outcome::Complete(Completion {
                lease,
                stored: out.stored,
                video: out.video,
            })
        }
        Some(Err(e)) if e.code == MERGED => {
            tracing::info!(?elapsed, note = %e, "merged into another video row: job done");
            shared.forget([lease.job_id]);
            return None;
        }
        Some(Err(e)) if e.code == LEASE_LOST => {
            tracing::warn!("lease lost to another worker: job abandoned");
            shared.counters.lease_lost.fetch_add(1, Ordering::Relaxed);
            shared.forget([lease.job_id]);
            return None;
        }
        Some(Err(e)) => {
            let last = !e.class.is_retryable()
                || shared.opts.retry.exhausted(job.attempts, job.max_attempts);
            let retry_in = (!last).then(|| shared.opts.retry.delay(job.attempts, e.retry_after));
            let next = match retry_in {
                Some(d) => format!("retry in {d:.1?}"),
                None => "none: failed for good".into(),
            };
            tracing::warn!(
                elapsed = format_args!("{elapsed:.1?}"),
                error = %e,
                code = e.code,
                class = %e.class,
                %next,
                "job failed"
            );
            Outcome::Fail(FailedAttempt {
                lease,
                error: e.message,
                code: e.code.to_string(),
                class: e.class,
                retry_in,
                forget_direct_url: e.stale_direct_url,
            })
        }
    })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}
