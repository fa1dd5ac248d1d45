//! The time window one execution looks at, and which field decides membership.
//!
//! Kibana queries `[now - from, now]` (both ends inclusive, millisecond precision) on the rule's
//! `timestamp_override` field, falling back to `@timestamp` for documents that lack the override (unless
//! `timestamp_override_fallback_disabled`). Ordering and `maxspan` always use the EQL timestamp field.

use crate::rules::Rule;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};

/// `[from, to]`, both inclusive: the one time range type (the scheduler's planned windows wrap it with
/// their kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    /// The window of a run of `rule` started at `now`: `[now - lookback, now]`, truncated to milliseconds as
    /// Kibana's `toISOString()` does. Rules bound `from` (see [`crate::limits`]); should the subtraction still
    /// leave the representable range, the window starts at the earliest representable instant.
    pub fn ending_at(rule: &Rule, now: DateTime<Utc>) -> Window {
        let to = now.duration_trunc(Duration::milliseconds(1)).unwrap_or(now);
        Window { from: to.checked_sub_signed(rule.lookback).unwrap_or(DateTime::<Utc>::MIN_UTC), to }
    }

    /// Whether an epoch-millisecond instant lies inside the window.
    pub fn contains_ms(&self, ms: i64) -> bool {
        self.from.timestamp_millis() <= ms && ms <= self.to.timestamp_millis()
    }

    /// The same window extended back by `ms` milliseconds (complete mode for sequences), by at most
    /// [`crate::limits::MAX_DURATION_DAYS`] (a larger `maxspan` is refused when the rule is loaded).
    pub fn extended_back(&self, ms: i64) -> Window {
        let by = Duration::try_milliseconds(ms.max(0)).unwrap_or(Duration::MAX).min(crate::limits::max_duration());
        Window { from: self.from.checked_sub_signed(by).unwrap_or(DateTime::<Utc>::MIN_UTC), to: self.to }
    }
}

/// Which document fields place an event in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowFields {
    /// `timestamp_override`, or the EQL timestamp field.
    pub primary: String,
    /// `@timestamp`, used when the primary field is missing (Kibana's fallback); `None` when disabled or
    /// when the primary already is the timestamp field.
    pub fallback: Option<String>,
}

impl WindowFields {
    pub fn for_rule(rule: &Rule) -> WindowFields {
        let timestamp = rule.timestamp_field.clone().unwrap_or_else(|| "@timestamp".to_string());
        match &rule.timestamp_override {
            Some(field) if *field != timestamp => WindowFields {
                primary: field.clone(),
                fallback: if rule.timestamp_override_fallback_disabled == Some(true) {
                    None
                } else {
                    Some("@timestamp".to_string())
                },
            },
            _ => WindowFields { primary: timestamp, fallback: None },
        }
    }
}

/// Whether `event` lies inside `window` by the same rule as Kibana's range filter: the primary field's
/// value in `[from, to]`, or — only when the primary field is missing and a fallback is set — the fallback
/// field's value. Any value of a multi-valued field counts (a `range` query matches any value).
pub fn event_in_window(fields: &WindowFields, window: &Window, event: &crate::event::Event) -> bool {
    let instants = |field: &str| -> Vec<i64> {
        event
            .field_values(field)
            .into_iter()
            .filter_map(|v| match v {
                serde_json::Value::String(s) => crate::eql::value::parse_date_ms(s),
                serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
                _ => None,
            })
            .collect()
    };
    let primary = instants(&fields.primary);
    if !primary.is_empty() {
        return primary.iter().any(|ms| window.contains_ms(*ms));
    }
    match &fields.fallback {
        Some(fallback) => instants(fallback).iter().any(|ms| window.contains_ms(*ms)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_extensions_never_panic() {
        let to = DateTime::parse_from_rfc3339("2026-05-20T10:00:00Z").unwrap().with_timezone(&Utc);
        let w = Window { from: to - Duration::minutes(9), to };
        let wide = w.extended_back(i64::MAX);
        assert_eq!(wide.from, w.from - crate::limits::max_duration());
        assert_eq!(w.extended_back(-5), w);
        let early = Window { from: DateTime::<Utc>::MIN_UTC, to };
        assert_eq!(early.extended_back(1_000).from, DateTime::<Utc>::MIN_UTC);
    }
}
