//! The claims' health. Every failed claim is counted (`douyin_claim_failures_total`, and the
//! run of failures in a row in `douyin_claim_consecutive_failures`); after
//! [`NOT_READY_AFTER`] in a row the process reports itself not ready
//! (`readiness::CLAIMS_FAILING`, so `/readyz` answers 503) and says in the log what to do
//! about the error; the first claim that works clears both and says so.

use std::sync::Arc;

use crate::queue::QueueError;
use crate::readiness::{CLAIMS_FAILING, Readiness};

/// Failed claims in a row before the process reports itself not ready (about 3 s of the
/// dispatcher's backoff: 0.2, 0.4, 0.8, 1.6 s).
pub const NOT_READY_AFTER: u32 = 5;

/// Consecutive claim failures of one dispatcher.
pub(super) struct ClaimHealth {
    failures: u32,
    readiness: Arc<Readiness>,
    backend: &'static str,
}

impl ClaimHealth {
    pub(super) fn new(readiness: Arc<Readiness>, backend: &'static str) -> Self {
        metrics::gauge!(crate::metrics::CLAIM_CONSECUTIVE_FAILURES).set(0.0);
        Self {
            failures: 0,
            readiness,
            backend,
        }
    }

    /// Records a failed claim; returns how many failed in a row.
    pub(super) fn failed(&mut self, e: &QueueError) -> u32 {
        self.failures += 1;
        metrics::counter!(crate::metrics::CLAIM_FAILURES, "error" => error_label(e)).increment(1);
        metrics::gauge!(crate::metrics::CLAIM_CONSECUTIVE_FAILURES).set(self.failures as f64);
        if self.failures >= NOT_READY_AFTER && self.readiness.set(CLAIMS_FAILING) {
            tracing::error!(
                failures = self.failures,
                backend = self.backend,
                error = %e,
                what_to_do = advice(e, self.backend),
                "claims keep failing: no job can start; /readyz answers 503 until a claim works"
            );
        }
        self.failures
    }

    /// Records a claim that worked.
    pub(super) fn succeeded(&mut self) {
        if self.failures == 0 {
            return;
        }
        if self.readiness.clear(CLAIMS_FAILING) {
            tracing::info!(failures = self.failures, "claims work again; ready");
        }
        self.failures = 0;
        metrics::gauge!(crate::metrics::CLAIM_CONSECUTIVE_FAILURES).set(0.0);
    }
}

/// The error's kind as a metric label.
fn error_label(e: &QueueError) -> &'static str {
    match e {
        QueueError::Unavailable(_) => "unavailable",
        QueueError::Database(_) => "database",
        QueueError::Schema(_) => "schema",
        QueueError::PermissionDenied(_) => "permission_denied",
        QueueError::Rejected(_) => "rejected",
    }
}

/// What an operator can do about a claim that keeps failing with `e`.
fn advice(e: &QueueError, backend: &str) -> &'static str {
    match e {
        QueueError::Database(m) if backend == "sqlite" && is_sqlite_damage(m) => {
            "the SQLite queue file (DATA_DIR/douyin-worker.db) is damaged: stop every worker, \
             check it with `sqlite3 FILE 'PRAGMA integrity_check'`, then restore it from a \
             backup, or save what is readable with `sqlite3 FILE .recover | sqlite3 NEW` and \
             use NEW, or move the file away (a new, empty queue is created at the next start)"
        }
        QueueError::Unavailable(_) if backend == "sqlite" => {
            "the SQLite queue file is locked or cannot be read: check DATA_DIR's disk and that \
             no other program holds the file's lock"
        }
        QueueError::Unavailable(_) => {
            "the database does not answer: check that it is running and reachable at \
             DATABASE_URL (or SUPABASE_URL), and its connection limit"
        }
        QueueError::Schema(_) => {
            "the queue's tables or functions are missing or outdated: run `douyin-worker \
             migrate`, or point the worker at the right database"
        }
        QueueError::PermissionDenied(_) => {
            "the database user may not use the queue's tables or functions: connect as the \
             user `douyin-worker migrate` set up, or grant it their privileges"
        }
        QueueError::Database(_) if backend == "sqlite" => {
            "the SQLite queue file refuses the claim: check it with `sqlite3 FILE 'PRAGMA \
             integrity_check'` and the disk it is on"
        }
        QueueError::Database(_) => {
            "the database refuses the claim: check the download_jobs table and the \
             database's log (a damaged table shows there), e.g. with `douyin-worker stats`"
        }
        QueueError::Rejected(_) => "the queue refuses the claim: check WORKER_ID",
    }
}

/// SQLite's words for a damaged file: `database disk image is malformed` (SQLITE_CORRUPT,
/// code 11) and `file is not a database` (SQLITE_NOTADB, code 26).
fn is_sqlite_damage(message: &str) -> bool {
    message.contains("malformed")
        || message.contains("not a database")
        || message.contains("(SQLite code 11)")
        || message.contains("(SQLite code 26)")
}
