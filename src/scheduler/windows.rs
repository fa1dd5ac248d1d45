//! Which time windows one scheduled run must query.
//!
//! A rule with `from: now-9m` and `interval: 5m` normally queries one window `[tick − 9m, tick]`
//! per tick; consecutive windows overlap by 4 minutes so late-indexed events are still seen (the
//! deterministic alert ids make the overlap harmless). When runs were missed, the time between the last
//! successfully queried window end and the new window start — the *gap* — was never queried:
//!
//! * [`GapPolicy::Kibana`] reproduces Kibana (`SEC/rule_types/utils/utils.ts`, spec §12.1):
//!   `gap = (now − last_end) − lookback`, up to 4 extra catch-up windows stepping back by `interval`,
//!   and whatever is still uncovered is reported (the run's status becomes `failed` with Kibana's message).
//! * [`GapPolicy::Backfill`] fills the whole gap with windows of the same shape as scheduled ones
//!   (length `lookback`, ends `step` apart with `step = min(interval, lookback)`): exactly the windows the
//!   missed ticks would have queried, so the results (including the per-window `max_signals` cut) are
//!   the same as if nothing had been missed, and consecutive windows always touch or overlap, never
//!   leaving a hole. Only a gap longer than `max_backfill` is partly left unqueried: the *oldest* part,
//!   reported like Kibana's.
//!
//! Windows are returned oldest first; the last one always ends at the scheduled time.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Why a window is queried. Passed to the executor and recorded in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// The window of the scheduled tick itself (`[tick − lookback, tick]`).
    Scheduled,
    /// A Kibana-style catch-up window (at most 4 per run).
    CatchUp,
    /// A window filling a gap in backfill mode.
    Backfill,
    /// A window of an on-demand `esdetect backfill --from --to`.
    Manual,
}

/// The time range `[from, to]` that one EQL search covers (`@timestamp` `gte from`, `lte to`, as in
/// Kibana's request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    #[serde(flatten)]
    pub range: crate::detect::Window,
    pub kind: WindowKind,
}

impl Window {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>, kind: WindowKind) -> Window {
        Window { range: crate::detect::Window { from, to }, kind }
    }
}

/// What to do about time that was never queried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum GapPolicy {
    /// Kibana's behaviour: at most 4 catch-up windows, the rest reported as a gap.
    Kibana,
    /// Fill the whole gap, oldest first, but not more than `max_backfill` of it.
    Backfill {
        #[serde(with = "duration_ms")]
        max_backfill: Duration,
    },
}

/// Kibana's `MAX_RULE_GAP_RATIO`: at most this many catch-up windows per run.
pub const KIBANA_MAX_CATCHUP: i64 = 4;

/// A stretch of time that no window covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Gap {
    pub fn duration(&self) -> Duration {
        self.to - self.from
    }

    pub fn millis(&self) -> i64 {
        self.duration().num_milliseconds()
    }

    /// Kibana's `execution_gap_duration_s`: the gap in whole seconds, rounded.
    pub fn seconds_rounded(&self) -> i64 {
        js_round(self.millis() as f64 / 1000.0) as i64
    }

    /// Kibana's error message for an unfilled gap, word for word.
    pub fn message(&self) -> String {
        let ms = self.millis();
        format!(
            "{} ({}ms) were not queried between this rule execution and the last execution, so signals may have \
             been missed. Consider increasing your look behind time or adding more Kibana instances",
            humanize(Duration::milliseconds(ms)),
            ms
        )
    }
}

/// The windows one run must query, and what it leaves unqueried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPlan {
    /// Oldest first. Empty when the last window end is already at or past the tick (another replica ran
    /// this tick, or the state is ahead of this process's clock).
    pub windows: Vec<Window>,
    /// The whole gap before catch-up (`(now − last_end) − lookback`), zero when there is none.
    pub gap: Duration,
    /// The part of the gap no window covers; `Some` makes the run's status `failed`.
    pub unfilled: Option<Gap>,
}

/// Most windows one plan holds (the oldest ones; the rest are planned again by later executions).
pub const MAX_PLANNED_WINDOWS: i64 = 100_000;

/// Plans the windows for the tick `now` (the *scheduled* time, so windows sit on the schedule's grid).
///
/// `last_end` is the end of the last window that completed successfully (`None` for a rule that never
/// ran). `lookback` is the window length (`from: now-9m` → 9 minutes) and `interval` the rule interval.
pub fn plan(
    now: DateTime<Utc>,
    lookback: Duration,
    interval: Duration,
    last_end: Option<DateTime<Utc>>,
    policy: GapPolicy,
) -> WindowPlan {
    let one_ms = Duration::milliseconds(1);
    let lookback = lookback.max(one_ms);
    let interval = interval.max(one_ms);
    if matches!(last_end, Some(end) if end >= now) {
        return WindowPlan { windows: Vec::new(), gap: Duration::zero(), unfilled: None };
    }
    let gap = match last_end {
        Some(end) => crate::limits::between(now, end).checked_sub(&lookback).unwrap_or(Duration::zero()).max(Duration::zero()),
        None => Duration::zero(),
    };
    let gap_ms = gap.num_milliseconds();
    let (step, extra, kind) = match policy {
        GapPolicy::Kibana => {
            let step = interval.num_milliseconds();
            (step, ceil_div(gap_ms, step).min(KIBANA_MAX_CATCHUP), WindowKind::CatchUp)
        }
        GapPolicy::Backfill { max_backfill } => {
            let step = interval.min(lookback).num_milliseconds();
            let needed = ceil_div(gap_ms, step);
            // A gap within the bound is filled completely even if the last step reaches past the bound.
            let extra = if gap <= max_backfill { needed } else { max_backfill.num_milliseconds().max(0) / step };
            (step, extra, WindowKind::Backfill)
        }
    };
    // Only the oldest `MAX_PLANNED_WINDOWS` are materialised: executions run a dozen at a time and plan
    // again, so a years-long backfill of one-second windows never allocates gigabytes up front.
    let newest_planned = (extra - MAX_PLANNED_WINDOWS + 1).max(0);
    let windows = (newest_planned..=extra)
        .rev()
        .map(|k| {
            let to = crate::limits::earlier(now, Duration::milliseconds(k.saturating_mul(step)));
            Window::new(crate::limits::earlier(to, lookback), to, if k == 0 { WindowKind::Scheduled } else { kind })
        })
        .collect();
    let remaining = gap_ms.saturating_sub(extra.saturating_mul(step));
    let unfilled = match last_end {
        Some(end) if remaining > 0 => Some(Gap { from: end, to: crate::limits::later(end, Duration::milliseconds(remaining)) }),
        _ => None,
    };
    WindowPlan { windows, gap, unfilled }
}

/// Windows for an on-demand backfill of `[from, to]`: same shape as scheduled windows (length
/// `lookback`, ends `min(interval, lookback)` apart, the last ending at `to`), the oldest one clipped so
/// nothing before `from` is queried. Oldest first; empty when `to <= from`.
pub fn backfill(from: DateTime<Utc>, to: DateTime<Utc>, lookback: Duration, interval: Duration) -> Vec<Window> {
    if to <= from {
        return Vec::new();
    }
    let one_ms = Duration::milliseconds(1);
    let lookback = lookback.max(one_ms);
    let step = interval.max(one_ms).min(lookback).num_milliseconds();
    let beyond_first = crate::limits::between(to, from).checked_sub(&lookback).unwrap_or(Duration::zero()).max(Duration::zero()).num_milliseconds();
    let extra = ceil_div(beyond_first, step);
    (0..=extra)
        .rev()
        .map(|k| {
            let end = crate::limits::earlier(to, Duration::milliseconds(k.saturating_mul(step)));
            Window::new(crate::limits::earlier(end, lookback).max(from), end, WindowKind::Manual)
        })
        .collect()
}

fn ceil_div(a: i64, b: i64) -> i64 {
    if a <= 0 || b <= 0 {
        0
    } else {
        a / b + i64::from(a % b != 0)
    }
}

/// JavaScript's `Math.round`: halves round towards +∞.
fn js_round(x: f64) -> f64 {
    (x + 0.5).floor()
}

/// moment.js `duration.humanize()` in English with its default thresholds (no "weeks"), which is what
/// Kibana puts in its gap message: "a few seconds", "a minute", "12 minutes", "an hour", "2 hours",
/// "a day", "3 days", "a month", "2 months", "a year", "5 years".
pub fn humanize(d: Duration) -> String {
    let ms = d.num_milliseconds().abs() as f64;
    let days_exact = ms / 86_400_000.0;
    let seconds = js_round(ms / 1000.0);
    let minutes = js_round(ms / 60_000.0);
    let hours = js_round(ms / 3_600_000.0);
    let days = js_round(days_exact);
    let months_exact = days_exact * 4800.0 / 146_097.0;
    let months = js_round(months_exact);
    let years = js_round(months_exact / 12.0);
    let n = |x: f64| x as i64;
    if seconds <= 44.0 {
        "a few seconds".to_string()
    } else if seconds < 45.0 {
        format!("{} seconds", n(seconds))
    } else if minutes <= 1.0 {
        "a minute".to_string()
    } else if minutes < 45.0 {
        format!("{} minutes", n(minutes))
    } else if hours <= 1.0 {
        "an hour".to_string()
    } else if hours < 22.0 {
        format!("{} hours", n(hours))
    } else if days <= 1.0 {
        "a day".to_string()
    } else if days < 26.0 {
        format!("{} days", n(days))
    } else if months <= 1.0 {
        "a month".to_string()
    } else if months < 11.0 {
        format!("{} months", n(months))
    } else if years <= 1.0 {
        "a year".to_string()
    } else {
        format!("{} years", n(years))
    }
}

/// Serde helper: a `chrono::Duration` as integer milliseconds.
pub mod duration_ms {
    use chrono::Duration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.num_milliseconds())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::milliseconds(i64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn tick() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }
    fn m(n: i64) -> Duration {
        Duration::minutes(n)
    }
    fn ends(p: &[Window]) -> Vec<DateTime<Utc>> {
        p.iter().map(|w| w.range.to).collect()
    }

    /// Every instant in `[start, end]` lies in some window (windows sorted oldest first).
    fn covers(ws: &[Window], start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        let mut reached = start;
        for w in ws {
            if w.range.from > reached {
                return false;
            }
            reached = reached.max(w.range.to);
        }
        reached >= end
    }

    #[test]
    fn extreme_durations_never_panic() {
        let far = DateTime::<Utc>::MIN_UTC;
        for policy in [GapPolicy::Kibana, GapPolicy::Backfill { max_backfill: Duration::MAX }] {
            let p = plan(tick(), Duration::MAX, Duration::MAX, Some(far), policy);
            assert_eq!(p.windows.last().unwrap().range.to, tick());
        }
        for policy in [GapPolicy::Kibana, GapPolicy::Backfill { max_backfill: Duration::hours(24) }] {
            let p = plan(tick(), m(9), m(5), Some(far), policy);
            assert!(p.windows.len() <= 24 * 12 + 1, "bounded by max_backfill");
            assert!(p.unfilled.is_some());
        }
        assert!(!backfill(far, tick(), Duration::MAX, Duration::MAX).is_empty());
        // Ten years of one-second windows: only the oldest MAX_PLANNED_WINDOWS are planned.
        let ten_years = Duration::days(3650);
        let p = plan(tick(), Duration::seconds(1), Duration::seconds(1), Some(tick() - ten_years), GapPolicy::Backfill { max_backfill: ten_years });
        assert_eq!(p.windows.len() as i64, MAX_PLANNED_WINDOWS);
        assert!(p.windows[0].range.from <= tick() - ten_years + Duration::seconds(1), "oldest first");
        assert_eq!(ceil_div(i64::MAX, 2), i64::MAX / 2 + 1);
    }

    #[test]
    fn no_gap_means_one_window_of_lookback_length() {
        let p = plan(tick(), m(9), m(5), Some(tick() - m(5)), GapPolicy::Kibana);
        assert_eq!(p.windows, vec![Window::new(tick() - m(9), tick(), WindowKind::Scheduled)]);
        assert_eq!((p.gap, p.unfilled), (Duration::zero(), None));
        // Exactly 9 minutes since the last end: still no gap.
        let p = plan(tick(), m(9), m(5), Some(tick() - m(9)), GapPolicy::Kibana);
        assert_eq!(p.windows.len(), 1);
        // First run ever.
        assert_eq!(plan(tick(), m(9), m(5), None, GapPolicy::Kibana).windows.len(), 1);
        // Already done (another replica, or state ahead).
        assert!(plan(tick(), m(9), m(5), Some(tick()), GapPolicy::Kibana).windows.is_empty());
    }

    #[test]
    fn kibana_twenty_minute_gap_is_caught_up_silently() {
        // gap = 20m - 9m = 11m; catch-up = ceil(11/5) = 3 windows stepping back 5 minutes.
        let p = plan(tick(), m(9), m(5), Some(tick() - m(20)), GapPolicy::Kibana);
        assert_eq!(p.gap, m(11));
        assert_eq!(ends(&p.windows), vec![tick() - m(15), tick() - m(10), tick() - m(5), tick()]);
        assert!(p.windows.iter().all(|w| w.range.to - w.range.from == m(9)));
        assert_eq!(p.windows.iter().filter(|w| w.kind == WindowKind::CatchUp).count(), 3);
        assert_eq!(p.unfilled, None);
        assert!(covers(&p.windows, tick() - m(20), tick()));
    }

    #[test]
    fn kibana_two_hour_gap_runs_four_catchups_and_reports_the_rest() {
        let last = tick() - m(120);
        let p = plan(tick(), m(9), m(5), Some(last), GapPolicy::Kibana);
        // gap = 111m, 4 catch-ups cover 20m, 91m remain: [last, last + 91m].
        assert_eq!(p.windows.len(), 5);
        assert_eq!(p.windows[0], Window::new(tick() - m(29), tick() - m(20), WindowKind::CatchUp));
        let gap = p.unfilled.unwrap();
        assert_eq!((gap.from, gap.to), (last, last + m(91)));
        assert_eq!(gap.millis(), 91 * 60_000);
        assert_eq!(gap.seconds_rounded(), 5460);
        // The unfilled gap ends exactly where the oldest window starts.
        assert_eq!(gap.to, p.windows[0].range.from);
        assert_eq!(
            gap.message(),
            "2 hours (5460000ms) were not queried between this rule execution and the last execution, so signals \
             may have been missed. Consider increasing your look behind time or adding more Kibana instances"
        );
    }

    #[test]
    fn backfill_covers_the_whole_gap_with_scheduled_shaped_windows() {
        let last = tick() - m(120);
        let p = plan(tick(), m(9), m(5), Some(last), GapPolicy::Backfill { max_backfill: Duration::hours(24) });
        // ceil(111/5) = 23 extra windows, ends every 5 minutes, like the ticks that were missed.
        assert_eq!(p.windows.len(), 24);
        assert_eq!(p.windows[0].range.to, tick() - m(115));
        assert!(p.windows.windows(2).all(|w| w[1].range.to - w[0].range.to == m(5)));
        assert!(p.windows.iter().all(|w| w.range.to - w.range.from == m(9)));
        assert!(covers(&p.windows, last, tick()));
        assert_eq!(p.unfilled, None);
        assert_eq!(p.windows.last().unwrap().kind, WindowKind::Scheduled);
        assert!(p.windows[..23].iter().all(|w| w.kind == WindowKind::Backfill));
    }

    #[test]
    fn backfill_is_bounded_and_reports_the_oldest_part() {
        let last = tick() - Duration::hours(30);
        let p = plan(tick(), m(9), m(5), Some(last), GapPolicy::Backfill { max_backfill: Duration::hours(24) });
        assert_eq!(p.windows.len(), 24 * 12 + 1);
        let gap = p.unfilled.unwrap();
        // 30h − 9m − 24h = 5h51m left, the oldest part.
        assert_eq!((gap.from, gap.to), (last, last + m(351)));
        assert_eq!(gap.to, p.windows[0].range.from);
        assert!(gap.message().starts_with("6 hours (21060000ms) were not queried"));
        assert!(covers(&p.windows, gap.to, tick()));
    }

    #[test]
    fn backfill_never_leaves_holes_when_lookback_is_shorter_than_interval() {
        // from now-1m every 5m: Kibana itself would leave 4 minutes out of every 5 unqueried.
        let last = tick() - m(30);
        let p = plan(tick(), m(1), m(5), Some(last), GapPolicy::Backfill { max_backfill: Duration::hours(1) });
        assert!(covers(&p.windows, last, tick()));
        assert!(p.windows.windows(2).all(|w| w[1].range.from <= w[0].range.to));
    }

    #[test]
    fn on_demand_backfill_is_clipped_to_the_requested_range() {
        let from = tick() - Duration::hours(1);
        let ws = backfill(from, tick(), m(9), m(5));
        assert!(covers(&ws, from, tick()));
        assert_eq!(ws.first().unwrap().range.from, from);
        assert_eq!(ws.last().unwrap().range.to, tick());
        assert!(ws.iter().all(|w| w.range.from >= from && w.range.to - w.range.from <= m(9) && w.kind == WindowKind::Manual));
        // 60m: the last window covers 9m, the remaining 51m need ceil(51/5) = 11 more.
        assert_eq!(ws.len(), 12);
        assert_eq!(backfill(tick(), tick() - m(1), m(9), m(5)), vec![]);
        assert_eq!(backfill(tick() - m(3), tick(), m(9), m(5)).len(), 1);
    }

    #[test]
    fn humanize_follows_moment_thresholds() {
        let cases = [
            (Duration::seconds(10), "a few seconds"),
            (Duration::seconds(44), "a few seconds"),
            (Duration::seconds(45), "a minute"),
            (Duration::seconds(89), "a minute"),
            (Duration::seconds(90), "2 minutes"),
            (m(44), "44 minutes"),
            (m(45), "an hour"),
            (m(89), "an hour"),
            (m(90), "2 hours"),
            (Duration::hours(21), "21 hours"),
            (Duration::hours(22), "a day"),
            (Duration::hours(36), "2 days"),
            (Duration::days(25), "25 days"),
            (Duration::days(26), "a month"),
            (Duration::days(45), "a month"),
            (Duration::days(46), "2 months"),
            (Duration::days(300), "10 months"),
            (Duration::days(345), "a year"),
            (Duration::days(548), "2 years"),
        ];
        for (d, want) in cases {
            assert_eq!(humanize(d), want, "{d}");
        }
    }
}
