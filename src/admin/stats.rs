//! `stats`: the queue at a glance: the `get_worker_stats()` figures, the jobs due now and how
//! long the oldest of them has waited, and the running jobs of each worker.

use std::time::Duration;

use super::table::{self, Table};
use super::{AdminError, Format, Out, write_json};
use crate::queue::{QueueAdmin, QueueOverview};

/// Prints the overview of `queue`.
pub async fn run(queue: &dyn QueueAdmin, format: Format, out: Out<'_>) -> Result<(), AdminError> {
    let overview = queue.overview().await?;
    match format {
        Format::Json => write_json(out, &overview),
        Format::Table => write_table(&overview, out),
    }
}

/// The overview as two tables: the figures, then the workers.
pub(crate) fn write_table(o: &QueueOverview, out: Out<'_>) -> Result<(), AdminError> {
    let s = &o.stats;
    let mut figures = Table::headless().right_align(&[1]);
    figures.row(["total jobs".to_string(), s.total_jobs.to_string()]);
    figures.row(["pending".to_string(), s.pending_jobs.to_string()]);
    figures.row(["  due now".to_string(), o.due_jobs.to_string()]);
    figures.row([
        "  oldest due for".to_string(),
        o.oldest_due_seconds
            .map(|s| table::age(Duration::from_secs_f64(s.max(0.0))))
            .unwrap_or_else(|| table::NONE.into()),
    ]);
    figures.row(["running".to_string(), s.running_jobs.to_string()]);
    figures.row(["completed".to_string(), s.completed_jobs.to_string()]);
    figures.row(["failed".to_string(), s.failed_jobs.to_string()]);
    figures.row(["active workers".to_string(), s.active_workers.to_string()]);
    figures.write(out)?;
    if !o.workers.is_empty() {
        writeln!(out)?;
        let mut workers = Table::new(["WORKER", "RUNNING"]).right_align(&[1]);
        for w in &o.workers {
            workers.row([w.worker_id.clone(), w.running.to_string()]);
        }
        workers.write(out)?;
    }
    Ok(())
}
