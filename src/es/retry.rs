//! Retry policy: jittered exponential backoff, for bounded attempts ([`RetryPolicy`]: Elasticsearch
//! requests, bulk items, notifications) and for loops that retry until they succeed ([`Backoff`]: the
//! daemon's state store, a restarted rule task). One jitter rule for all of them, [`equal_jitter`].
//!
//! Retried: no HTTP answer at all (connection refused/reset, timeout), 429 (too many requests) and
//! 502/503/504 (a node or proxy in trouble). Everything else is answered deterministically and
//! retrying would only repeat it.

use std::time::Duration;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts in all).
    pub max_retries: u32,
    /// Backoff before the first retry (before jitter).
    pub base_delay: Duration,
    /// Upper bound of any single backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 3, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(10) }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (0-based): `min(max, base·2^retry)`, then "equal jitter" —
    /// half fixed, half random — so that many clients do not retry in lock-step yet never retry at once.
    pub fn delay(&self, retry: u32) -> Duration {
        equal_jitter(self.base_delay, self.max_delay, retry)
    }
}

/// `min(max, base·2^attempt)` with "equal jitter": half of it fixed, the other half uniformly random, so
/// clients (or replicas) that failed together do not retry in lock-step, yet none retries much sooner than
/// planned.
pub fn equal_jitter(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
    let capped = exp.min(max.max(base));
    let half = capped / 2;
    capped - half + half.mul_f64(fastrand::f64())
}

/// Failures in a row and the delay before the next attempt, for loops that retry until they succeed.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `base` (at least 1 ms), doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff { base: base.max(Duration::from_millis(1)), max, attempt: 0 }
    }

    /// After a success: the next failure waits `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let d = equal_jitter(self.base, self.max, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }
}

/// Whether an HTTP status is worth retrying.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let p = RetryPolicy { max_retries: 5, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        for _ in 0..50 {
            let d0 = p.delay(0);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100), "{d0:?}");
            let d2 = p.delay(2);
            assert!(d2 >= Duration::from_millis(200) && d2 <= Duration::from_millis(400), "{d2:?}");
            let d30 = p.delay(30);
            assert!(d30 >= Duration::from_millis(500) && d30 <= Duration::from_secs(1), "{d30:?}");
        }
        // Jitter: 50 draws are not all equal.
        let draws: std::collections::HashSet<_> = (0..50).map(|_| p.delay(3)).collect();
        assert!(draws.len() > 1);
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_and_starts_over_after_reset() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let ceilings = [1, 2, 4, 8, 16, 32, 60, 60];
        for secs in ceilings {
            let d = b.next_delay();
            let top = Duration::from_secs(secs);
            assert!(d >= top / 2 && d <= top, "{d:?} outside [{:?}, {top:?}]", top / 2);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn retryable_statuses() {
        for s in [429, 502, 503, 504] {
            assert!(is_retryable_status(s));
        }
        for s in [200, 400, 401, 403, 404, 409, 500] {
            assert!(!is_retryable_status(s));
        }
    }
}
