//! `jobs`: jobs newest first, optionally of one status, with their progress and last error.

use super::table::{self, NONE, Table};
use super::{AdminError, Format, Out, write_json};
use crate::queue::{JobFilter, JobRecord, QueueAdmin};

/// How much of a last error the table shows.
const ERROR_WIDTH: usize = 60;

/// Prints the jobs `filter` selects.
pub async fn run(
    queue: &dyn QueueAdmin,
    filter: &JobFilter,
    format: Format,
    out: Out<'_>,
) -> Result<(), AdminError> {
    let jobs = queue.jobs(filter).await?;
    match format {
        Format::Json => write_json(out, &jobs),
        Format::Table => {
            if jobs.is_empty() {
                match filter.status {
                    Some(status) => writeln!(out, "no {status} jobs")?,
                    None => writeln!(out, "no jobs")?,
                }
                return Ok(());
            }
            write_table(&jobs, out)
        }
    }
}

/// One row per job: id, video (its Douyin id, else its row id), status, attempts of the
/// allowed, worker, progress, due and finished times, and the last error on one line.
pub(crate) fn write_table(jobs: &[JobRecord], out: Out<'_>) -> Result<(), AdminError> {
    let mut t = Table::new([
        "JOB",
        "VIDEO",
        "STATUS",
        "ATTEMPTS",
        "WORKER",
        "PROGRESS",
        "SCHEDULED",
        "FINISHED",
        "LAST ERROR",
    ]);
    for j in jobs {
        t.row([
            j.id.to_string(),
            j.video_douyin_id
                .clone()
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| j.video_id.to_string()),
            j.status.clone(),
            format!("{}/{}", j.attempts, j.max_attempts),
            j.worker_id.clone().unwrap_or_else(|| NONE.into()),
            progress(j),
            table::time(j.scheduled_at),
            table::maybe_time(j.finished_at),
            table::trimmed(j.last_error.as_deref(), ERROR_WIDTH),
        ]);
    }
    t.write(out)?;
    Ok(())
}

/// `37% of 12.0 MiB`, `5.2 MiB` (total unknown), or `-`.
fn progress(j: &JobRecord) -> String {
    let done = j.progress_bytes.map(|b| b.max(0) as u64);
    let total = j.progress_total.filter(|t| *t > 0).map(|t| t as u64);
    match (done, total) {
        (Some(done), Some(total)) => format!(
            "{}% of {}",
            (u128::from(done) * 100 / u128::from(total)).min(100),
            table::bytes(total)
        ),
        (Some(done), None) => table::bytes(done),
        (None, _) => NONE.into(),
    }
}
