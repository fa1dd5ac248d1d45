//! Log lines during an outage: one line when the cluster becomes unreachable, one summary a minute while
//! it stays so, one when it is back — not one per rule per retry (which was about 115 lines a minute per
//! replica). Pure bookkeeping over an injected time, so it is tested without waiting.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// How often a summary line is written while the outage lasts.
pub const SUMMARY_EVERY_SECONDS: i64 = 60;

/// What to log for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The first failure after a good state: log it (WARN).
    Started,
    /// A periodic summary (WARN): down for this long, this many failures so far.
    StillDown { down_for: Duration, failures: u64 },
    /// Nothing to log (DEBUG at most).
    Quiet,
    /// The first success after an outage (INFO).
    Recovered { down_for: Duration, failures: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Down {
    since: DateTime<Utc>,
    failures: u64,
    last_report: DateTime<Utc>,
}

/// The state of one connection as far as logging is concerned. Shared by all rules of a replica.
#[derive(Debug, Default)]
pub struct OutageLog {
    down: Mutex<Option<Down>>,
}

impl OutageLog {
    /// Records a failure at `now`.
    pub fn failure(&self, now: DateTime<Utc>) -> Report {
        let Ok(mut guard) = self.down.lock() else { return Report::Started };
        match guard.as_mut() {
            None => {
                *guard = Some(Down { since: now, failures: 1, last_report: now });
                Report::Started
            }
            Some(d) => {
                d.failures += 1;
                if now - d.last_report >= Duration::seconds(SUMMARY_EVERY_SECONDS) {
                    d.last_report = now;
                    Report::StillDown { down_for: now - d.since, failures: d.failures }
                } else {
                    Report::Quiet
                }
            }
        }
    }

    /// Records a success at `now`.
    pub fn success(&self, now: DateTime<Utc>) -> Report {
        let Ok(mut guard) = self.down.lock() else { return Report::Quiet };
        match guard.take() {
            Some(d) => Report::Recovered { down_for: now - d.since, failures: d.failures },
            None => Report::Quiet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_change_and_one_summary_a_minute() {
        let log = OutageLog::default();
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(log.success(t0), Report::Quiet);
        assert_eq!(log.failure(t0), Report::Started);
        // 10 rules retrying every second for three minutes: three summaries, everything else quiet.
        let mut reports = Vec::new();
        for s in 1..=180 {
            for _ in 0..10 {
                let r = log.failure(t0 + Duration::seconds(s));
                if r != Report::Quiet {
                    reports.push(r);
                }
            }
        }
        assert_eq!(reports.len(), 3, "{reports:?}");
        assert_eq!(reports[0], Report::StillDown { down_for: Duration::seconds(60), failures: 592 });
        let back = log.success(t0 + Duration::seconds(181));
        assert_eq!(back, Report::Recovered { down_for: Duration::seconds(181), failures: 1801 });
        assert_eq!(log.success(t0 + Duration::seconds(182)), Report::Quiet);
        assert_eq!(log.failure(t0 + Duration::seconds(183)), Report::Started);
    }
}
