//! Waiting between tries: [`RetryPolicy`] for a failed job's next attempt (exponential with
//! full jitter, days apart at most), `Backoff` for the short in-process retry loops
//! (recording outcomes, claiming, LISTEN, uploads, TUS chunks, a busy SQLite file).

use std::time::Duration;

/// Exponential backoff for an in-process retry loop: `first`, then doubling, never above
/// `cap`. No jitter: each loop is one task's, not a crowd's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// The first wait.
    pub first: Duration,
    /// The longest wait.
    pub cap: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff from `first` up to `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap,
            failures: 0,
        }
    }

    /// The wait after the `failures`-th failure in a row (from 1): `min(cap, first *
    /// 2^(failures-1))`.
    pub fn after(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(32);
        self.first
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// Counts one more failure and returns the wait before the next try.
    pub(crate) fn next_wait(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.after(self.failures)
    }
}

/// How long a failed job waits before its next attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay ceiling after the first attempt.
    pub base: Duration,
    /// The largest delay ceiling.
    pub cap: Duration,
    /// Attempts before a job fails for good.
    pub max_attempts: i32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            cap: Duration::from_secs(3600),
            max_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// The ceiling after attempt `attempt` (from 1): `min(cap, base * 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: i32) -> Duration {
        let exp = attempt.saturating_sub(1).clamp(0, 62) as u32;
        let factor = 1u64.checked_shl(exp).unwrap_or(u64::MAX);
        let ms = (self.base.as_millis() as u64).saturating_mul(factor);
        Duration::from_millis(ms).min(self.cap)
    }

    /// Full jitter: a uniformly random delay in `[0, ceiling]`; `unit` is the random draw in `[0, 1)`.
    pub(crate) fn delay_with(&self, attempt: i32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// A random delay for the next attempt after `attempt`, never below `at_least`.
    pub fn delay(&self, attempt: i32, at_least: Option<Duration>) -> Duration {
        let d = self.delay_with(attempt, rand::random::<f64>());
        at_least.map_or(d, |min| d.max(min))
    }

    /// Whether attempt `attempt` of a job allowing `job_max` was the last one.
    pub(crate) fn exhausted(&self, attempt: i32, job_max: i32) -> bool {
        attempt >= job_max.min(self.max_attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_first_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<u128> = (0..6).map(|_| b.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.after(10_000), Duration::from_secs(1), "no overflow");
        assert_eq!(b.after(0), Duration::from_millis(100));
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_secs(30));
        assert_eq!(p.ceiling(2), Duration::from_secs(60));
        assert_eq!(p.ceiling(3), Duration::from_secs(120));
        assert_eq!(p.ceiling(8), Duration::from_secs(3600));
        assert_eq!(p.ceiling(1000), Duration::from_secs(3600));
        assert_eq!(p.ceiling(0), Duration::from_secs(30));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_with(3, 0.0), Duration::ZERO);
        assert_eq!(p.delay_with(3, 0.5), Duration::from_secs(60));
        for _ in 0..1000 {
            assert!(p.delay(4, None) <= Duration::from_secs(240));
        }
        assert!(p.delay(1, Some(Duration::from_secs(90))) >= Duration::from_secs(90));
    }

    #[test]
    fn the_lower_limit_wins() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..Default::default()
        };
        assert!(!p.exhausted(2, 5));
        assert!(p.exhausted(3, 5));
        assert!(p.exhausted(2, 2));
    }
}
