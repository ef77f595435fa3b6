//! `retry`: failed jobs queued again, given by id or all at once (`--all-failed`).
//!
//! Each retried job gets a new pending job for its video; the failed row stays as history.
//! What happened to each job is printed; ids that match no job make the command exit 2 after
//! the others were retried.

use uuid::Uuid;

use super::table::{NONE, Table};
use super::{AdminError, Format, Out, write_json};
use crate::queue::{QueueAdmin, RetryOutcome, RetryResult, RetryTarget};

/// Parses a job id argument; the error names the bad value and what is expected.
pub(crate) fn parse_job_id(s: &str) -> Result<Uuid, String> {
    Uuid::parse_str(s.trim()).map_err(|_| {
        format!(
            "{s:?} is not a job id: expected a UUID such as \
             0190a4e2-7b1c-7d3e-8f00-2a4b6c8d0e1f (see `douyin-worker jobs`)"
        )
    })
}

/// Retries `target` and prints each outcome.
pub async fn run(
    queue: &dyn QueueAdmin,
    target: &RetryTarget,
    format: Format,
    out: Out<'_>,
) -> Result<(), AdminError> {
    let results = queue.retry(target).await?;
    match format {
        Format::Json => write_json(out, &results)?,
        Format::Table if results.is_empty() => writeln!(out, "no failed jobs to retry")?,
        Format::Table => write_table(&results, out)?,
    }
    let missing = results
        .iter()
        .filter(|r| r.outcome == RetryOutcome::NotFound)
        .count();
    if missing > 0 {
        return Err(AdminError::NotFound(format!(
            "{missing} of {} job ids match no job",
            results.len()
        )));
    }
    Ok(())
}

/// One row per job asked for: its outcome, the new (or already active) job, its video.
pub(crate) fn write_table(results: &[RetryResult], out: Out<'_>) -> Result<(), AdminError> {
    let mut t = Table::new(["JOB", "OUTCOME", "NEW JOB", "VIDEO"]);
    let cell = |id: Option<Uuid>| id.map_or_else(|| NONE.to_string(), |id| id.to_string());
    for r in results {
        t.row([
            r.job_id.to_string(),
            r.outcome.as_str().to_string(),
            cell(r.new_job_id),
            cell(r.video_id),
        ]);
    }
    t.write(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_job_id_is_named() {
        let e = parse_job_id("12345").unwrap_err();
        assert!(e.starts_with("\"12345\" is not a job id"), "{e}");
        let id = Uuid::new_v4();
        assert_eq!(parse_job_id(&format!(" {id} ")), Ok(id));
    }
}
