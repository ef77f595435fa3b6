//! The progress flusher: writes the download progress of running jobs to the queue, as the
//! rule of `stage::progress` allows, and logs each quarter once.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Shared;

/// Runs until `stop`: every `progress_interval`, and at once when a download reaches its final
/// byte, takes the board's news and writes what is due.
pub(super) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(shared.opts.progress_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last quarter (25 %, 50 %, 75 %) logged per job: a milestone line, not one a second.
    let mut logged: HashMap<Uuid, u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            _ = shared.progress.final_byte() => {}
        }
        let updates = shared.progress.take(tokio::time::Instant::now());
        {
            let held = shared.held();
            logged.retain(|id, _| held.contains_key(id));
        }
        for u in updates {
            let (video_id, douyin_id) = shared.job_fields(u.lease.job_id);
            if let Some(total) = u.total.filter(|t| *t > 0) {
                let quarter = (u.done.min(total) * 4 / total).min(3);
                let last = logged.entry(u.lease.job_id).or_insert(0);
                if quarter > *last {
                    *last = quarter;
                    tracing::info!(
                        job_id = %u.lease.job_id,
                        video_id,
                        douyin_id,
                        bytes = u.done,
                        total,
                        percent = u.done * 100 / total,
                        "download progress"
                    );
                }
            }
            if !u.write {
                continue;
            }
            if let Err(e) = shared
                .queue
                .progress(&shared.worker_id, &u.lease, u.done, u.total)
                .await
            {
                tracing::debug!(job_id = %u.lease.job_id, video_id, douyin_id, error = %e, "progress update failed");
            }
        }
    }
}
