//! Backoff between attempts: exponential with full jitter.

use std::time::Duration;

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
    pub fn delay_with(&self, attempt: i32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// A random delay for the next attempt after `attempt`, never below `at_least`.
    pub fn delay(&self, attempt: i32, at_least: Option<Duration>) -> Duration {
        let d = self.delay_with(attempt, rand::random::<f64>());
        at_least.map_or(d, |min| d.max(min))
    }

    /// Whether attempt `attempt` of a job allowing `job_max` was the last one.
    pub fn exhausted(&self, attempt: i32, job_max: i32) -> bool {
        attempt >= job_max.min(self.max_attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
