//! The in-process wake-up between the queue's backends and an idle worker.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Wakes an idle worker when a job becomes claimable.
///
/// Backends call `JobSignal::job_due_at` when they learn of a claimable job (a NOTIFY, or
/// an in-process write); the worker waits on [`JobSignal::wait`]. A signal that arrives while
/// the worker is busy is kept, so it is never lost between a claim and the next wait.
#[derive(Debug, Default)]
pub struct JobSignal {
    /// A job is claimable now.
    due_now: Notify,
    /// The earliest known future due time changed: recompute the sleep.
    rearm: Notify,
    earliest_future: Mutex<Option<DateTime<Utc>>>,
}

impl JobSignal {
    /// A new signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// A job is, or will be at `due`, claimable.
    pub(crate) fn job_due_at(&self, due: DateTime<Utc>) {
        if due <= Utc::now() + chrono::Duration::milliseconds(5) {
            self.due_now.notify_one();
            return;
        }
        let mut earliest = self
            .earliest_future
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if earliest.is_none_or(|e| due < e) {
            *earliest = Some(due);
            drop(earliest);
            self.rearm.notify_one();
        }
    }

    /// A job is claimable now.
    pub(crate) fn job_due_now(&self) {
        self.due_now.notify_one();
    }

    /// Takes the earliest known future due time if it has passed; else returns it.
    fn passed_or_next(&self) -> Result<(), Option<DateTime<Utc>>> {
        let mut earliest = self
            .earliest_future
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match *earliest {
            Some(at) if at <= Utc::now() => {
                *earliest = None;
                Ok(())
            }
            other => Err(other),
        }
    }

    /// Waits until a job may be claimable: a signal, a known due time passing, `max`
    /// elapsing, or `cancel`. Returns at once if a signal arrived since the last wait.
    pub async fn wait(&self, max: Duration, cancel: &CancellationToken) {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let next = match self.passed_or_next() {
                Ok(()) => return,
                Err(next) => next,
            };
            let until = match next {
                Some(at) => {
                    let ms = (at - Utc::now()).num_milliseconds().max(0) as u64 + 1;
                    deadline.min(tokio::time::Instant::now() + Duration::from_millis(ms))
                }
                None => deadline,
            };
            tokio::select! {
                _ = self.due_now.notified() => return,
                _ = self.rearm.notified() => continue,
                _ = tokio::time::sleep_until(until) => {
                    if until >= deadline {
                        return;
                    }
                }
                _ = cancel.cancelled() => return,
            }
        }
    }
}
