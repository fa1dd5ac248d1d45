//! Retry policy: bounded attempts with jittered exponential backoff.
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
        let exp = self.base_delay.saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(random_unit())
    }
}

/// Whether an HTTP status is worth retrying.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// A random number in [0, 1). uuid's v4 generator is already a dependency and is good enough for
/// jitter; it avoids adding a random-number crate for one call.
fn random_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64 >> 11; // 53 random bits
    bits as f64 / (1u64 << 53) as f64
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
    fn retryable_statuses() {
        for s in [429, 502, 503, 504] {
            assert!(is_retryable_status(s));
        }
        for s in [200, 400, 401, 403, 404, 409, 500] {
            assert!(!is_retryable_status(s));
        }
    }
}
