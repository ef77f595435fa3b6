//! The operator commands over the queue and the store: `stats`, `jobs`, `retry` and `gc`.
//!
//! Each command takes the opened queue (and, for `gc`, the object store), writes a human table
//! or, with `--json`, JSON to the writer it is given, and fails with an [`AdminError`] that
//! the CLI maps to an exit code. The queue methods they use exist on every backend.
//!
//! - [`enqueue`]: links, ids and pasted text queued once, short links resolved first.
//! - [`stats`]: the `get_worker_stats()` figures, due jobs, the oldest due job's wait, and
//!   running jobs per worker.
//! - [`jobs`]: jobs newest first, by status.
//! - [`retry`]: failed jobs queued again, by id or all at once.
//! - [`gc`]: stored objects no video wants any more, listed, or deleted with `--apply`.
//! - [`table`]: the aligned table every command (and `enqueue`) prints, and cell formats.

pub mod enqueue;
pub mod gc;
pub mod jobs;
pub mod retry;
pub mod stats;
pub mod table;

use std::io::Write;

use serde::Serialize;

use crate::exit;
use crate::queue::QueueError;
use crate::storage::StorageError;

/// How a command prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// Pretty-printed JSON for scripts.
    Json,
}

impl Format {
    /// `--json` or not.
    pub(crate) fn from_json_flag(json: bool) -> Self {
        if json { Format::Json } else { Format::Table }
    }
}

/// The writer commands print to (`Send`, so the commands' futures are).
pub type Out<'a> = &'a mut (dyn Write + Send);

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bad input: the command cannot do what was asked.
    #[error("{0}")]
    Usage(String),
    /// Some of the items asked for do not exist (the rest were done).
    #[error("{0}")]
    NotFound(String),
    /// Some of the work failed (the rest was done and reported).
    #[error("{0}")]
    Incomplete(String),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The object store failed.
    #[error("object store: {0}")]
    Storage(#[from] StorageError),
    /// The result could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl AdminError {
    /// The process exit code: 2 for bad input (including ids that do not exist and a schema
    /// that needs `migrate`), 1 for failures at run time.
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::Usage(_)
            | AdminError::NotFound(_)
            | AdminError::Queue(QueueError::Schema(_) | QueueError::Rejected(_)) => exit::USAGE,
            AdminError::Queue(_)
            | AdminError::Storage(_)
            | AdminError::Incomplete(_)
            | AdminError::Output(_) => exit::FAILURE,
        }
    }
}

/// Writes `value` as pretty JSON and a newline.
pub(crate) fn write_json(out: Out<'_>, value: &impl Serialize) -> Result<(), AdminError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}
