//! When a rule's runs are due: a fixed interval or a cron expression.
//!
//! Scheduled times are *points on a grid*, not "last run + interval": an interval schedule ticks at the
//! multiples of the interval since the Unix epoch, and the next tick is always the previous scheduled
//! tick plus the interval, however late the previous run started or however long it took. So schedules
//! never drift, and every replica of the daemon computes the same ticks (and so the same windows)
//! without talking to the others.
//!
//! Cron expressions are evaluated in UTC and accepted in three forms:
//! * 5 fields, the usual crontab `minute hour day-of-month month day-of-week`, with crontab's
//!   day-of-week numbers (0–7, 0 and 7 = Sunday). Restricting both day-of-month and day-of-week is
//!   refused: crontab fires when *either* matches, which the underlying `cron` crate cannot express.
//! * 6 fields `second minute hour day-of-month month day-of-week` and 7 fields (… `year`) exactly as the
//!   `cron` crate reads them: day-of-week numbers 1–7 with 1 = Sunday, and both day fields must match.
//! * the `cron` crate's shorthands `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
//!
//! Day names (`MON-FRI`) mean the same in every form.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};

/// Why a schedule could not be built. The message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the interval must be longer than zero, got {0}")]
    NonPositiveInterval(String),
    #[error(
        "cron expression `{expr}` has {fields} field(s); expected 5 (crontab: minute hour day-of-month month \
         day-of-week), 6 (second minute hour day-of-month month day-of-week) or 7 (… year), or a shorthand \
         such as @hourly"
    )]
    FieldCount { expr: String, fields: usize },
    #[error("cron expression `{expr}`: {reason}")]
    Invalid { expr: String, reason: String },
}

/// A rule's schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every `interval`, on the grid of multiples of the interval since the Unix epoch.
    Interval(Duration),
    /// At the times a cron expression names (UTC).
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// An interval schedule; the interval must be positive.
    pub fn interval(every: Duration) -> Result<Schedule, ScheduleError> {
        if every <= Duration::zero() {
            return Err(ScheduleError::NonPositiveInterval(format!("{every}")));
        }
        Ok(Schedule::Interval(every))
    }

    /// Parses a cron expression in any of the forms described in the module documentation.
    pub fn cron(expr: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = expr.trim();
        let invalid = |reason: String| ScheduleError::Invalid { expr: trimmed.to_string(), reason };
        let normalized = if trimmed.starts_with('@') {
            trimmed.to_string()
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            match fields.len() {
                5 => crontab_to_cron_crate(&fields).map_err(invalid)?,
                6 | 7 => fields.join(" "),
                n => return Err(ScheduleError::FieldCount { expr: trimmed.to_string(), fields: n }),
            }
        };
        let parsed = cron::Schedule::from_str(&normalized).map_err(|e| invalid(e.to_string()))?;
        Ok(Schedule::Cron(Box::new(parsed)))
    }

    /// The first scheduled time strictly after `prev` (normally the previous *scheduled* time, not
    /// when that run happened, so lateness never shifts later ticks). `None` when a cron expression has
    /// no further times (e.g. a past year).
    pub fn next_after(&self, prev: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval(every) => {
                let floor = self.latest_at_or_before(prev)?;
                floor.checked_add_signed(*every)
            }
            Schedule::Cron(s) => s.after(&prev).next(),
        }
    }

    /// The latest scheduled time at or before `t`: where a daemon starting at `t` picks up.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval(every) => {
                let step = every.num_milliseconds().max(1);
                let ms = t.timestamp_millis();
                let floored = ms.div_euclid(step) * step;
                DateTime::from_timestamp_millis(floored)
            }
            Schedule::Cron(s) => {
                if s.includes(t) && t.timestamp_subsec_nanos() == 0 {
                    return Some(t);
                }
                // `next_back` walks strictly backwards from its start; cron times are whole seconds,
                // so starting just past `t` finds a tick at `t` itself too.
                let start = t + Duration::nanoseconds(1);
                s.after(&start).next_back().filter(|p| *p <= t)
            }
        }
    }

    /// The scheduled times strictly after `after` and strictly before `before`, at most `limit` of them
    /// counted (used to report how many ticks a slow run made us skip).
    pub fn count_between(&self, after: DateTime<Utc>, before: DateTime<Utc>, limit: u64) -> u64 {
        match self {
            Schedule::Interval(every) => {
                let step = every.num_milliseconds().max(1);
                let (Some(a), Some(b)) = (self.latest_at_or_before(after), self.latest_at_or_before(before))
                else {
                    return 0;
                };
                let mut n = (b - a).num_milliseconds().div_euclid(step);
                if b == before {
                    n -= 1; // `before` itself is a tick and is excluded
                }
                (n.max(0) as u64).min(limit)
            }
            Schedule::Cron(s) => s.after(&after).take_while(|t| *t < before).take(limit as usize).count() as u64,
        }
    }
}

/// Rewrites a 5-field crontab expression into the `cron` crate's 6-field form: a leading seconds field
/// of `0`, and crontab day-of-week numbers (0–7, Sunday = 0 or 7) mapped to the crate's (1–7, Sunday = 1).
fn crontab_to_cron_crate(fields: &[&str]) -> Result<String, String> {
    let (dom, dow) = (fields[2], fields[4]);
    let unrestricted = |f: &str| f == "*" || f == "?";
    if !unrestricted(dom) && !unrestricted(dow) {
        return Err(format!(
            "both day-of-month (`{dom}`) and day-of-week (`{dow}`) are restricted; crontab runs when either \
             matches, which this scheduler cannot express. Restrict one and set the other to `*`, or use the \
             6-field form where both must match"
        ));
    }
    let dow = if unrestricted(dow) { "*".to_string() } else { crontab_dow_to_cron_crate(dow)? };
    Ok(format!("0 {} {} {} {} {}", fields[0], fields[1], dom, fields[3], dow))
}

const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One crontab day-of-week value: a number 0–7 or a three-letter name; Sunday is 0.
fn crontab_day(s: &str) -> Result<u32, String> {
    if let Ok(n) = s.parse::<u32>() {
        return if n <= 7 { Ok(n % 7) } else { Err(format!("day-of-week `{s}` is not 0-7 (0 and 7 = Sunday)")) };
    }
    let lower = s.to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|d| *d == lower)
        .map(|p| p as u32)
        .ok_or_else(|| format!("day-of-week `{s}` is neither a number 0-7 nor a day name (SUN-SAT)"))
}

/// Expands a crontab day-of-week field (`1-5`, `0,6`, `MON-FRI`, `*/2`, `5-7`…) to the set of days it
/// names and writes that set in the `cron` crate's numbering.
fn crontab_dow_to_cron_crate(field: &str) -> Result<String, String> {
    let mut days = BTreeSet::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("day-of-week step `{s}` is not a positive number"))?;
                if step == 0 {
                    return Err("day-of-week step must be at least 1".to_string());
                }
                (r, step)
            }
            None => (part, 1),
        };
        // Keep 7 distinct from 0 while expanding a range, so `5-7` means Fri, Sat, Sun.
        let raw = |s: &str| -> Result<u32, String> {
            match s.parse::<u32>() {
                Ok(7) => Ok(7),
                _ => crontab_day(s),
            }
        };
        let (lo, hi) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (raw(a)?, raw(b)?)
        } else {
            let d = raw(range)?;
            (d, if step > 1 { 6 } else { d })
        };
        if lo > hi {
            return Err(format!("day-of-week range `{range}` runs backwards; write it as two ranges"));
        }
        let mut d = lo;
        while d <= hi {
            days.insert(d % 7);
            d += step;
        }
    }
    if days.len() == 7 {
        return Ok("*".to_string());
    }
    Ok(days.iter().map(|d| (d + 1).to_string()).collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, h, m, s).unwrap() // a Wednesday
    }

    #[test]
    fn interval_ticks_sit_on_the_epoch_grid_and_do_not_drift() {
        let s = Schedule::interval(Duration::minutes(5)).unwrap();
        assert_eq!(s.latest_at_or_before(at(12, 7, 31)), Some(at(12, 5, 0)));
        assert_eq!(s.latest_at_or_before(at(12, 5, 0)), Some(at(12, 5, 0)));
        // Next tick from the scheduled time, whatever the lateness of the run.
        let mut t = at(12, 5, 0);
        for i in 1..=1000 {
            t = s.next_after(t).unwrap();
            assert_eq!(t, at(12, 5, 0) + Duration::minutes(5 * i));
        }
        // A start time off the grid is snapped back onto it.
        assert_eq!(s.next_after(at(12, 7, 31)), Some(at(12, 10, 0)));
        assert_eq!(s.count_between(at(12, 0, 0), at(12, 15, 0), 100), 2);
        assert_eq!(s.count_between(at(12, 0, 0), at(12, 14, 0), 100), 2);
        assert_eq!(s.count_between(at(12, 0, 0), at(12, 5, 0), 100), 0);
        assert!(Schedule::interval(Duration::zero()).is_err());
    }

    #[test]
    fn five_field_crontab_gets_seconds_and_crontab_weekday_numbers() {
        // "at 09:30 on Monday" in crontab numbering (1 = Monday).
        let s = Schedule::cron("30 9 * * 1").unwrap();
        let next = s.next_after(at(12, 0, 0)).unwrap();
        assert_eq!(next.weekday(), Weekday::Mon);
        assert_eq!((next.hour(), next.minute(), next.second()), (9, 30, 0));
        // 0 and 7 are both Sunday; 5-7 is Fri, Sat, Sun.
        for expr in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN"] {
            assert_eq!(Schedule::cron(expr).unwrap().next_after(at(12, 0, 0)).unwrap().weekday(), Weekday::Sun, "{expr}");
        }
        let s = Schedule::cron("0 0 * * 5-7").unwrap();
        let days: Vec<Weekday> = {
            let mut t = at(12, 0, 0);
            (0..3).map(|_| { t = s.next_after(t).unwrap(); t.weekday() }).collect()
        };
        assert_eq!(days, vec![Weekday::Fri, Weekday::Sat, Weekday::Sun]);
        // Every 5 minutes.
        let s = Schedule::cron("*/5 * * * *").unwrap();
        assert_eq!(s.next_after(at(12, 7, 31)), Some(at(12, 10, 0)));
        assert_eq!(s.latest_at_or_before(at(12, 7, 31)), Some(at(12, 5, 0)));
        assert_eq!(s.latest_at_or_before(at(12, 10, 0)), Some(at(12, 10, 0)));
        assert_eq!(s.count_between(at(12, 0, 0), at(12, 15, 0), 100), 2);
    }

    #[test]
    fn six_and_seven_field_forms_use_the_cron_crate_as_is() {
        let s = Schedule::cron("15 */10 * * * *").unwrap();
        assert_eq!(s.next_after(at(12, 0, 0)), Some(at(12, 0, 15)));
        // In the 6-field form day 2 is Monday (1 = Sunday).
        let s = Schedule::cron("0 0 0 * * 2").unwrap();
        assert_eq!(s.next_after(at(12, 0, 0)).unwrap().weekday(), Weekday::Mon);
        let s = Schedule::cron("0 0 0 1 1 * 2020").unwrap();
        assert_eq!(s.next_after(at(12, 0, 0)), None, "a past year has no further ticks");
        assert!(Schedule::cron("@hourly").unwrap().next_after(at(12, 0, 1)) == Some(at(13, 0, 0)));
    }

    #[test]
    fn bad_expressions_say_what_is_expected() {
        let e = Schedule::cron("* * *").unwrap_err().to_string();
        assert!(e.contains("3 field(s)") && e.contains("expected 5"), "{e}");
        let e = Schedule::cron("0 0 1 * MON").unwrap_err().to_string();
        assert!(e.contains("either"), "{e}");
        assert!(Schedule::cron("0 0 * * 8").unwrap_err().to_string().contains("0-7"));
        assert!(Schedule::cron("0 25 * * *").is_err());
        assert!(Schedule::cron("0 0 * * FRI-MON").unwrap_err().to_string().contains("backwards"));
    }
}
