//! Why the process is not ready, as its own parts know it: a small set of named reasons, each
//! set by the part that sees the trouble and cleared by it when the trouble is over, read by
//! `/readyz`. (`/readyz` also asks the queue and the store whether they answer; these reasons
//! are what the process learned while working, such as claims that keep failing, which a
//! schema check that still answers would not show.)

use std::collections::BTreeSet;
use std::sync::Mutex;

/// The worker's claims have failed several times in a row (the queue's table is damaged or
/// unreadable, the database is down): set by the dispatcher, cleared by its next claim that
/// works.
pub const CLAIMS_FAILING: &str = "claims_failing";

/// The reasons the process is not ready now, shared by the parts that set them and the HTTP
/// server that reports them.
#[derive(Debug, Default)]
pub struct Readiness {
    reasons: Mutex<BTreeSet<&'static str>>,
}

impl Readiness {
    /// Ready: no reason set.
    pub fn new() -> Self {
        Self::default()
    }

    fn reasons_mut(&self) -> std::sync::MutexGuard<'_, BTreeSet<&'static str>> {
        self.reasons.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets `reason`; whether it was not set before.
    pub fn set(&self, reason: &'static str) -> bool {
        self.reasons_mut().insert(reason)
    }

    /// Clears `reason`; whether it was set.
    pub fn clear(&self, reason: &'static str) -> bool {
        self.reasons_mut().remove(reason)
    }

    /// The reasons set, in name order; empty when ready.
    pub fn reasons(&self) -> Vec<&'static str> {
        self.reasons_mut().iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_set_and_cleared_by_name() {
        let r = Readiness::new();
        assert!(r.reasons().is_empty());
        assert!(r.set(CLAIMS_FAILING));
        assert!(!r.set(CLAIMS_FAILING), "set once");
        assert!(r.set("another"));
        assert_eq!(r.reasons(), ["another", CLAIMS_FAILING]);
        assert!(r.clear(CLAIMS_FAILING));
        assert!(!r.clear(CLAIMS_FAILING));
        assert_eq!(r.reasons(), ["another"]);
    }
}
