//! One execution's record, built in one place: every way a rule runs (a scheduled tick, a skipped tick,
//! a failed task, `run --once`, `backfill`) ends in a [`LedgerEntry`] made by an [`ExecutionLog`], so the
//! ledger's fields mean the same whoever wrote them.
//!
//! The log adds up the outcomes of the windows it ran (counts, durations, warnings, errors) and, when
//! finished, derives the status and message with Kibana's precedence ([`RunStatus::from_problems`]).

use chrono::{DateTime, Utc};

use super::daemon::WindowOutcome;
use super::state::{Counts, ExecutionType, LedgerEntry, RunStatus};
use super::windows::{Window, WindowPlan};

/// An execution in progress.
#[derive(Debug, Clone)]
pub struct ExecutionLog {
    entry: LedgerEntry,
}

impl ExecutionLog {
    /// Starts the record of an execution that was due at `scheduled_at` and started at `started_at`.
    pub fn start(
        rule_id: &str,
        owner: &str,
        execution_type: ExecutionType,
        scheduled_at: DateTime<Utc>,
        started_at: DateTime<Utc>,
    ) -> ExecutionLog {
        ExecutionLog {
            entry: LedgerEntry {
                rule_id: rule_id.to_string(),
                execution_id: uuid::Uuid::new_v4().to_string(),
                owner: owner.to_string(),
                scheduled_at,
                started_at,
                finished_at: started_at,
                window_from: None,
                window_to: None,
                windows: Vec::new(),
                windows_completed: 0,
                windows_remaining: 0,
                window_end: None,
                status: RunStatus::Succeeded,
                message: String::new(),
                counts: Counts::default(),
                warnings: Vec::new(),
                errors: Vec::new(),
                gap_ms: None,
                gap_from: None,
                gap_to: None,
                gap_filled_ms: None,
                search_duration_ms: 0,
                indexing_duration_ms: 0,
                duration_ms: 0,
                delay_ms: (started_at - scheduled_at).num_milliseconds(),
                skipped_tick: false,
                skipped_ticks: 0,
                execution_type,
            },
        }
    }

    /// The id every window run of this execution carries (Kibana's `execution.uuid`).
    pub fn execution_id(&self) -> &str {
        &self.entry.execution_id
    }

    /// Adds one window's outcome; returns whether the window succeeded (no error).
    pub fn add(&mut self, out: WindowOutcome) -> bool {
        let e = &mut self.entry;
        match out {
            WindowOutcome::Ran(summary) => {
                let summary = *summary;
                e.counts.add(&Counts::of(&summary));
                e.search_duration_ms += summary.durations.search_ms;
                e.indexing_duration_ms += summary.durations.index_ms;
                e.warnings.extend(summary.warnings);
                let ok = summary.errors.is_empty();
                e.errors.extend(summary.errors);
                ok
            }
            WindowOutcome::NotRun(error) => {
                e.errors.push(error);
                false
            }
        }
    }

    /// Records an error that belongs to no window's outcome (a gap, a timeout, a lost lease, …).
    pub fn error(&mut self, error: String) {
        self.entry.errors.push(error);
    }

    /// Records what the window plan left unqueried (an error) or filled by catching up.
    pub fn gap(&mut self, plan: &WindowPlan) {
        let e = &mut self.entry;
        if let Some(gap) = &plan.unfilled {
            e.errors.push(gap.message());
            e.gap_ms = Some(gap.millis());
            e.gap_from = Some(gap.from);
            e.gap_to = Some(gap.to);
        } else if plan.gap > chrono::Duration::zero() {
            e.gap_filled_ms = Some(plan.gap.num_milliseconds());
        }
    }

    /// Marks the record as `skipped_ticks` ticks not run (status `skipped`, with `message`).
    pub fn skipped(mut self, skipped_ticks: u32, message: String, now: DateTime<Utc>) -> LedgerEntry {
        self.entry.skipped_tick = true;
        self.entry.skipped_ticks = skipped_ticks;
        let mut entry = self.finish(now, Vec::new(), 0);
        entry.status = RunStatus::Skipped;
        entry.message = message;
        entry
    }

    /// The status and message the problems so far give (Kibana's precedence).
    pub fn status(&self) -> (RunStatus, String) {
        RunStatus::from_problems(&self.entry.errors, &self.entry.warnings)
    }

    /// The totals so far.
    pub fn counts(&self) -> &Counts {
        &self.entry.counts
    }

    /// Ends the record: the windows it covered (`completed` of them succeeded), the status and message.
    /// `windows_remaining` and `window_end` are the caller's to set on the entry (only the daemon has them).
    pub fn finish(self, finished_at: DateTime<Utc>, windows: Vec<Window>, completed: u32) -> LedgerEntry {
        let (status, message) = self.status();
        let mut entry = self.entry;
        entry.finished_at = finished_at;
        entry.duration_ms = (finished_at - entry.started_at).num_milliseconds().max(0) as u64;
        entry.window_from = windows.first().map(|w| w.range.from);
        entry.window_to = windows.last().map(|w| w.range.to);
        entry.windows = windows;
        entry.windows_completed = completed;
        entry.status = status;
        entry.message = message;
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::windows::{self, GapPolicy, WindowKind};
    use chrono::Duration;

    fn t0() -> DateTime<Utc> {
        "2026-12-03T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn outcomes_add_up_and_the_status_follows_kibanas_precedence() {
        let mut log = ExecutionLog::start("r", "me", ExecutionType::Scheduled, t0(), t0() + Duration::seconds(2));
        let w = Window::new(t0() - Duration::minutes(9), t0(), WindowKind::Scheduled);
        let req = crate::scheduler::WindowRequest {
            rule_id: "r".into(),
            execution_id: log.execution_id().into(),
            window: w,
            previous_window_end: None,
            sequence_mode: Default::default(),
            scheduled_at: t0(),
        };
        let WindowOutcome::Ran(mut summary) = WindowOutcome::succeeded(&req, 10) else { unreachable!() };
        (summary.kept, summary.alerts_written, summary.duplicates) = (2, 1, 1);
        summary.warnings.push("w".into());
        (summary.durations.search_ms, summary.durations.index_ms) = (5, 7);
        let ok = log.add(WindowOutcome::Ran(summary));
        assert!(ok);
        assert!(!log.add(WindowOutcome::failed("boom")));
        let e = log.finish(t0() + Duration::seconds(3), vec![w], 1);
        assert_eq!((e.status, e.message.as_str()), (RunStatus::Failed, "boom"));
        assert_eq!((e.counts.fetched, e.counts.alerts_written, e.search_duration_ms, e.indexing_duration_ms), (10, 1, 5, 7));
        assert_eq!((e.delay_ms, e.duration_ms, e.windows_completed), (2000, 1000, 1));
        assert_eq!((e.window_from, e.window_to), (Some(w.range.from), Some(w.range.to)));
    }

    #[test]
    fn an_unfilled_gap_is_an_error_and_a_filled_one_is_recorded() {
        let nine = Duration::minutes(9);
        let five = Duration::minutes(5);
        let far = windows::plan(t0(), nine, five, Some(t0() - Duration::hours(6)), GapPolicy::Kibana);
        let mut log = ExecutionLog::start("r", "me", ExecutionType::Scheduled, t0(), t0());
        log.gap(&far);
        let e = log.finish(t0(), far.windows.clone(), 0);
        assert_eq!(e.status, RunStatus::Failed);
        assert_eq!(e.gap_ms, far.unfilled.map(|g| g.millis()));
        let near = windows::plan(t0(), nine, five, Some(t0() - Duration::minutes(15)), GapPolicy::Kibana);
        let mut log = ExecutionLog::start("r", "me", ExecutionType::Scheduled, t0(), t0());
        log.gap(&near);
        let e = log.finish(t0(), near.windows.clone(), 2);
        assert_eq!((e.status, e.gap_ms, e.gap_filled_ms), (RunStatus::Succeeded, None, Some(near.gap.num_milliseconds())));
    }

    #[test]
    fn skipped_ticks_are_recorded_as_skipped() {
        let log = ExecutionLog::start("r", "me", ExecutionType::Scheduled, t0(), t0() + Duration::minutes(11));
        let e = log.skipped(2, "2 ticks skipped".into(), t0() + Duration::minutes(11));
        assert_eq!((e.status, e.skipped_tick, e.skipped_ticks, e.delay_ms), (RunStatus::Skipped, true, 2, 660_000));
    }
}
