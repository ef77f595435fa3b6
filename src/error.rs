//! Job errors that know whether a retry can help.
//!
//! Every failure inside the pipeline is a [`JobError`]: a class (is a retry useful?), a
//! stable kebab-case code (stored in `download_jobs.last_error_code`, counted in metrics)
//! and a human message (stored in `last_error`). Call sites choose the class where they
//! know it, as pict-rs does with `.retry()` / `.abort()`.

use std::fmt;
use std::time::Duration;

/// The code of an attempt that stopped because its video row was merged into another row
/// that is stored or has a job of its own (the queue already ended the job: nothing to record).
pub(crate) const MERGED: &str = "merged";

/// The code of an attempt that stopped because its lease was taken over (nothing to record).
pub(crate) const LEASE_LOST: &str = "lease-lost";

/// Whether another attempt can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The network, a timeout, a 5xx, a captcha: the same job may work later.
    Transient,
    /// Bad input or a final answer (deleted video, unsupported link): retrying cannot help.
    Permanent,
    /// A page or API answered in a shape no parser knows. Retried with backoff like a
    /// transient error, but counted and logged apart: it means the code needs a fix.
    Drift,
}

impl ErrorClass {
    /// The value stored in `download_jobs.last_error_class`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Drift => "drift",
        }
    }

    /// Whether the queue should schedule another attempt (attempts permitting).
    pub(crate) fn is_retryable(self) -> bool {
        !matches!(self, ErrorClass::Permanent)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed job attempt.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    /// Whether a retry can help.
    pub class: ErrorClass,
    /// Stable kebab-case code, e.g. `unsupported-link`, `download-timeout`.
    pub code: &'static str,
    /// What went wrong, for people. Never contains secrets (the configured ones are scrubbed
    /// out when the error is made).
    pub message: String,
    /// A lower bound for the next attempt, when the other side said when to come back
    /// (e.g. HTTP 429 `Retry-After`).
    pub retry_after: Option<Duration>,
    /// The cached direct URL the attempt used, when the file it gave failed the size check
    /// or validation: the queue forgets it so that the next attempt extracts afresh.
    pub stale_direct_url: Option<String>,
}

impl JobError {
    /// A failure that may go away by itself.
    pub fn transient(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Transient, code, message)
    }

    /// A failure that no retry can fix.
    pub fn permanent(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, code, message)
    }

    /// An answer in a shape the parsers do not know.
    pub fn drift(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Drift, code, message)
    }

    /// A failure of the given class.
    pub fn new(class: ErrorClass, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            class,
            code,
            // Messages carry upstream text; it goes to the log and `last_error`.
            message: crate::redact::scrub_owned(message.into()),
            retry_after: None,
            stale_direct_url: None,
        }
    }

    /// Marks `url`, the cached direct URL the attempt used, as giving a bad file.
    pub(crate) fn with_stale_direct_url(mut self, url: impl Into<String>) -> Self {
        self.stale_direct_url = Some(url.into());
        self
    }

    /// Asks for the next attempt no sooner than `after`.
    pub(crate) fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_know_whether_to_retry() {
        assert!(ErrorClass::Transient.is_retryable());
        assert!(ErrorClass::Drift.is_retryable());
        assert!(!ErrorClass::Permanent.is_retryable());
    }
}
