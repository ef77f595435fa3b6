//! The queue: reachable, its schema current, and the worker's functions callable with the
//! configured credentials (a claim of no job and the statistics: nothing changes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Check, Outcome};
use crate::config::Config;
use crate::queue::{self, Queue, QueueError};

/// The queue's checks: `queue` (reachable, schema) and `queue functions`.
pub async fn checks(config: &Config, budget: Duration) -> Vec<Check> {
    let started = Instant::now();
    let opened =
        tokio::time::timeout(budget, queue::open(&config.queue, config.supabase.as_ref())).await;
    let ms = started.elapsed().as_millis() as u64;
    let queue = match opened {
        Ok(Ok(queue)) => queue,
        Ok(Err(e)) => {
            return vec![
                Check::new("queue", ms, failure(&e)),
                Check::new(
                    "queue functions",
                    0,
                    Outcome::skip("the queue cannot be used"),
                ),
            ];
        }
        Err(_) => {
            return vec![
                Check::new(
                    "queue",
                    ms,
                    Outcome::fail(
                        format!("no answer within {budget:?}"),
                        "is the database up and reachable from this machine?",
                    ),
                ),
                Check::new(
                    "queue functions",
                    0,
                    Outcome::skip("the queue cannot be used"),
                ),
            ];
        }
    };
    let reached = Check::new(
        "queue",
        ms,
        Outcome::pass(format!(
            "{} answers; schema version {} (current)",
            queue.backend(),
            queue::SCHEMA_VERSION
        )),
    );
    let functions = super::report::timed("queue functions", budget, callable(queue, config)).await;
    vec![reached, functions]
}

/// A claim of no job and the statistics, as the worker calls them.
async fn callable(queue: Arc<dyn Queue>, config: &Config) -> Outcome {
    let claimed = queue
        .claim(&config.worker.worker_id, 0, config.worker.lease)
        .await;
    if let Err(e) = claimed {
        return failure(&e);
    }
    match queue.stats().await {
        Ok(stats) => Outcome::pass(format!(
            "claim and statistics callable: {} pending, {} running, {} failed",
            stats.pending_jobs, stats.running_jobs, stats.failed_jobs
        )),
        Err(e) => failure(&e),
    }
}

/// A queue error with what to do about it.
fn failure(e: &QueueError) -> Outcome {
    let advice = match e {
        QueueError::Unavailable(_) => {
            "is the database up, and DATABASE_URL or SUPABASE_URL right? (`douyin-worker stats` \
             says the same)"
        }
        QueueError::Schema(_) => {
            "run `douyin-worker migrate` (or paste the migrations into the Supabase SQL editor)"
        }
        QueueError::PermissionDenied(_) => {
            "use the service role key (SUPABASE_SERVICE_ROLE_KEY) or a database user that owns \
             the worker's tables"
        }
        QueueError::Database(_) | QueueError::Rejected(_) => {
            "see the database's log; `douyin-worker migrate` repairs a missing function"
        }
    };
    Outcome::fail(e.to_string(), advice)
}
