//! Executions started by hand (Kibana's execution type `manual`): `run --once` (every rule once over the
//! window ending now, recorded in the ledger) and backfilling a past range. Both prepare alerts aliases
//! with the daemon executor's [`AliasGuard`] and add Kibana's "no index matching" warning as it does.
//!
//! A backfill runs each rule over `[from, to]` in windows shaped like its scheduled ones
//! ([`super::windows::backfill`]), one rule after another, window after window in time order, and records
//! one ledger entry per rule. It leaves the rule state (window end, lease) alone, so the daemon's schedule is
//! not disturbed, and never duplicates an alert (alert ids are deterministic and the sink deduplicates).

use chrono::{DateTime, Utc};

use super::daemon::WindowRequest;
use super::execution_log::ExecutionLog;
use super::executor::{self, AliasError, AliasGuard};
use super::store_es::EsStateStore;
use super::state::{Counts, ExecutionType, LedgerEntry, StateStore};
use super::windows::{self, Window, WindowKind};
use crate::detect::{PreparedRule, RunOptions, RunStatus, RunSummary, Window as Range};
use crate::es::EsClient;

/// `run --once`: every rule once over its window ending at `now` (`[now - from, now]`), rules reading the
/// same indices over the same window sharing one scan; each run recorded in the ledger (execution type
/// `manual`) as the daemon records its own. The alerts aliases are prepared first, so a missing privilege or
/// alias stops the run before anything is written (the error); a ledger that cannot be set up or written
/// is only logged: the runs themselves happened.
pub async fn run_once(
    client: &EsClient,
    store: &EsStateStore,
    owner: &str,
    rules: &[&PreparedRule],
    now: DateTime<Utc>,
    opts: &RunOptions,
) -> Result<Vec<RunSummary>, AliasError> {
    AliasGuard::default().ensure_all(client, rules).await?;
    let windows: Vec<(&PreparedRule, Range)> = rules.iter().map(|r| (*r, Range::ending_at(&r.rule, now))).collect();
    let started = Utc::now();
    let mut summaries = crate::detect::scan::run_rules_on_cluster(client, &windows, opts, &Utc::now).await;
    let ledger = store.ensure_indices().await;
    if let Err(e) = &ledger {
        tracing::warn!(error = %e, "could not set up the ledger; this run is not recorded in it");
    }
    for (rule, summary) in rules.iter().zip(summaries.iter_mut()) {
        executor::warn_if_no_index_matches(client, rule, summary).await;
        if ledger.is_ok() {
            record_run(store, owner, summary, started, Utc::now()).await;
        }
    }
    Ok(summaries)
}

/// Records a run made outside the schedule (`run --once`) in the ledger. A failure to write is logged, not
/// returned: the run itself already happened and its alerts are written.
async fn record_run(store: &dyn StateStore, owner: &str, summary: &RunSummary, started_at: DateTime<Utc>, finished_at: DateTime<Utc>) {
    let entry = run_entry(owner, summary, started_at, finished_at);
    if let Err(e) = store.append_ledger(&entry).await {
        tracing::warn!(rule = %entry.rule_id, error = %e, "could not record the run in the ledger");
    }
}

/// The ledger entry of one manual run.
fn run_entry(owner: &str, summary: &RunSummary, started_at: DateTime<Utc>, finished_at: DateTime<Utc>) -> LedgerEntry {
    let window = Window { range: summary.window, kind: WindowKind::Manual };
    let mut log = ExecutionLog::start(&summary.rule_id, owner, ExecutionType::Manual, started_at, started_at);
    let completed = u32::from(log.add(summary.clone().into()));
    log.finish(finished_at, vec![window], completed)
}

/// What a backfill of one rule did (also in its ledger entry).
#[derive(Debug, Clone)]
pub struct RuleBackfill {
    pub entry: LedgerEntry,
    /// Whether the ledger entry could be written (the alerts are written either way).
    pub recorded: Result<(), String>,
}

/// The progress a backfill reports as it goes, for a progress bar or a log.
pub trait BackfillProgress {
    /// A rule starts, with the number of its windows.
    fn rule_started(&mut self, rule: &PreparedRule, windows: usize);
    /// One window of the rule finished.
    fn window_done(&mut self, rule: &PreparedRule, window: &Window, summary: &RunSummary);
}

/// Plans the windows of every rule over `[from, to]`; the total is what a progress bar counts to.
pub fn plan(rules: &[PreparedRule], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Vec<Window>> {
    rules.iter().map(|r| windows::backfill(from, to, r.rule.lookback, r.rule.interval_duration)).collect()
}

/// Runs every rule over its planned windows (from [`plan`]) and records one ledger entry per rule.
pub async fn backfill(
    client: &EsClient,
    store: &dyn StateStore,
    owner: &str,
    rules: &[PreparedRule],
    plans: Vec<Vec<Window>>,
    opts: &RunOptions,
    progress: &mut dyn BackfillProgress,
) -> Vec<RuleBackfill> {
    let aliases = AliasGuard::default();
    let mut out = Vec::with_capacity(rules.len());
    for (rule, ws) in rules.iter().zip(plans) {
        progress.rule_started(rule, ws.len());
        let started_at = Utc::now();
        let mut log = ExecutionLog::start(&rule.rule.rule_id, owner, ExecutionType::Manual, started_at, started_at);
        let mut completed = 0u32;
        match aliases.ensure(client, rule).await {
            Err(e) => log.error(e.to_string()),
            Ok(()) => {
                let mut previous_end = None;
                for w in &ws {
                    let req = WindowRequest {
                        rule_id: rule.rule.rule_id.clone(),
                        execution_id: log.execution_id().to_string(),
                        window: *w,
                        previous_window_end: previous_end,
                        sequence_mode: rule.sequence_mode,
                        scheduled_at: started_at,
                    };
                    let summary = executor::run_request(client, rule, &req, opts).await;
                    let status = summary.status;
                    tracing::info!(rule = %rule.rule.rule_id, from = %w.range.from, to = %w.range.to, status = status.as_str(),
                        alerts = summary.alerts_written, "backfill window done");
                    progress.window_done(rule, w, &summary);
                    log.add(summary.into());
                    if status != RunStatus::Failed {
                        completed += 1;
                    }
                    previous_end = Some(w.range.to);
                }
            }
        }
        let entry = log.finish(Utc::now(), ws, completed);
        let recorded = store.append_ledger(&entry).await.map_err(|e| e.to_string());
        out.push(RuleBackfill { entry, recorded });
    }
    out
}

/// The sum of the counts of several backfilled rules.
pub fn totals(done: &[RuleBackfill]) -> Counts {
    let mut totals = Counts::default();
    for d in done {
        totals.add(&d.entry.counts);
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::RunStatus as Status;

    #[test]
    fn a_manual_run_is_recorded_with_its_window_and_status() {
        let t0: DateTime<Utc> = "2026-12-03T10:00:00Z".parse().unwrap();
        let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let prepared = crate::detect::prepare_rules(&rules, &crate::config::Config::default()).rules.remove(0);
        let mut summary = RunSummary::new(&prepared, Range { from: t0 - chrono::Duration::minutes(9), to: t0 });
        summary.fetched = 7;
        summary.alerts_written = 2;
        summary.warnings.push("careful".into());
        summary.status = Status::PartialFailure;
        let e = run_entry("me", &summary, t0, t0 + chrono::Duration::seconds(1));
        assert_eq!((e.execution_type, e.status, e.windows_completed), (ExecutionType::Manual, Status::PartialFailure, 1));
        assert_eq!((e.rule_id.as_str(), e.counts.fetched, e.counts.alerts_written, e.duration_ms), (prepared.rule.rule_id.as_str(), 7, 2, 1000));
        assert_eq!(e.windows, vec![Window::new(t0 - chrono::Duration::minutes(9), t0, WindowKind::Manual)]);
    }
}
