//! Bounds on values that come from rules, configuration and events, in one place so they are documented
//! together (README, "Limits").
//!
//! Elasticsearch bounds what one request may cost (`indices.query.bool.max_clause_count`, script loop
//! limits, circuit breakers) and fails the request cleanly rather than running for minutes; these are
//! esdetect's equivalents. Durations are bounded so that every time computation (`now - from`, a lease
//! expiry, a window extended by `maxspan`) stays far inside the representable range: nothing a rule or a
//! configuration says can make the arithmetic overflow.

use chrono::{DateTime, Duration, Utc};

/// Longest duration a rule (`from`, `interval`, a `maxspan` that widens a query in complete mode) or the
/// configuration (`run_timeout`, `max_backfill`, …) may give: 10 years (3650 days).
pub const MAX_DURATION_DAYS: i64 = 3650;

// Per-event bounds of the EQL engine live with it (`esdetect_eql::limits`) and are re-exported here so
// this stays the one list of esdetect's limits.
pub use esdetect_eql::limits::{MAX_JOIN_KEY_COMBINATIONS, MAX_PREDICATE_COMBINATIONS};

/// [`MAX_DURATION_DAYS`] as a chrono duration.
pub fn max_duration() -> Duration {
    Duration::days(MAX_DURATION_DAYS)
}

/// The same bound in seconds, for `std::time::Duration` settings.
pub const MAX_DURATION_SECS: u64 = MAX_DURATION_DAYS as u64 * 86_400;

/// The message of a duration over the bound, naming what to do.
pub fn too_long(text: &str) -> String {
    format!("`{text}` is longer than the maximum of {MAX_DURATION_DAYS} days (10 years); use a shorter duration")
}

/// `t + d`, or the latest representable instant instead of overflowing.
pub fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(if d < Duration::zero() { DateTime::<Utc>::MIN_UTC } else { DateTime::<Utc>::MAX_UTC })
}

/// `t - d`, or the earliest representable instant instead of overflowing.
pub fn earlier(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(if d < Duration::zero() { DateTime::<Utc>::MAX_UTC } else { DateTime::<Utc>::MIN_UTC })
}

/// `a - b` between two instants, saturating at the largest representable durations.
pub fn between(a: DateTime<Utc>, b: DateTime<Utc>) -> Duration {
    let (a, b) = (a.timestamp_millis(), b.timestamp_millis());
    Duration::try_milliseconds(a.saturating_sub(b)).unwrap_or(if a > b { Duration::MAX } else { Duration::MIN })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_arithmetic_saturates() {
        let now = Utc::now();
        assert_eq!(later(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(earlier(now, Duration::MAX), DateTime::<Utc>::MIN_UTC);
        assert_eq!(later(now, Duration::MIN), DateTime::<Utc>::MIN_UTC);
        assert_eq!(earlier(now, Duration::minutes(1)), now - Duration::minutes(1));
        assert!(between(DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC) > Duration::zero());
        assert_eq!(between(now, now - Duration::seconds(3)), Duration::seconds(3));
    }
}
