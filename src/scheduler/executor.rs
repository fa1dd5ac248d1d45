//! The scheduler's [`Executor`] on top of `detect`: a [`WindowRequest`] (rule, window, sequence mode) becomes
//! one `detect::run_on_cluster` call, and its [`RunSummary`] becomes the [`WindowOutcome`] the scheduler
//! records. The alerts alias of each rule is set up before its first run (and again after a failure).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Mutex;

use super::daemon::{Executor, WindowOutcome, WindowRequest};
use super::metrics::Metrics;
use super::state::Counts;
use crate::detect::{self, PreparedRule, RunOptions, RunSummary};
use crate::es::EsClient;

/// What the scheduler records of a detect run.
pub fn outcome_of(summary: &RunSummary) -> WindowOutcome {
    WindowOutcome {
        counts: Counts {
            fetched: summary.fetched,
            matches: summary.kept,
            alerts_written: summary.alerts_written,
            duplicates: summary.duplicates,
            bytes_search: summary.bytes_fetched,
            bytes_mget: summary.bytes_mget,
            actions: summary.actions.counts(),
            action_errors: summary.actions.errors.clone(),
        },
        warnings: summary.warnings.clone(),
        errors: summary.errors.clone(),
        search_duration_ms: summary.durations.search_ms,
        indexing_duration_ms: summary.durations.index_ms,
    }
}

/// Runs one window of a prepared rule against the cluster, as the scheduler asks.
pub async fn run_request(client: &EsClient, rule: &PreparedRule, req: &WindowRequest, opts: &RunOptions) -> RunSummary {
    let mut prepared = rule.clone();
    prepared.sequence_mode = req.sequence_mode;
    let mut opts = opts.clone();
    opts.previous_window_end = req.previous_window_end;
    let window = req.window.range;
    let mut summary = detect::run_on_cluster(client, &prepared, window, &opts, &Utc::now).await;
    warn_if_no_index_matches(client, &prepared, &mut summary).await;
    summary
}

/// Kibana's "no index matching" warning (a partial failure) when the rule's patterns match no index.
/// A failed check is only logged: it must not fail a run that itself went well.
pub async fn warn_if_no_index_matches(client: &EsClient, rule: &PreparedRule, summary: &mut RunSummary) {
    match client.matching_indices(&rule.rule.index).await {
        Ok(found) if found.is_empty() => {
            summary.add_warning(crate::detect::summary::no_matching_index_warning(&rule.rule.index));
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(rule = %rule.rule.rule_id, error = %e, "could not check which indices the rule's patterns match"),
    }
}

/// Makes sure a rule's alerts alias exists (once per alias while it keeps working).
#[derive(Default)]
pub struct AliasGuard {
    ready: Mutex<HashSet<String>>,
}

impl AliasGuard {
    /// Prepares the alias of `rule` (privileges, template, alias) unless that already worked once.
    pub async fn ensure(&self, client: &EsClient, rule: &PreparedRule) -> Result<(), String> {
        let alias = rule.alias.as_str();
        let mut ready = self.ready.lock().await;
        if ready.contains(alias) {
            return Ok(());
        }
        crate::sink::es::prepare_destination(client, alias, &rule.rule.index)
            .await
            .map_err(|e| format!("cannot prepare the alerts alias `{alias}`: {e}"))?;
        ready.insert(alias.to_string());
        Ok(())
    }
}

/// The production executor: looks the rule up, prepares its alerts alias, runs the window through
/// `detect`, and feeds the metrics. A rule id the executor does not know fails the window (with a
/// message), it never panics.
pub fn detect_executor(
    client: EsClient,
    rules: Vec<PreparedRule>,
    opts: RunOptions,
    metrics: Option<Arc<Metrics>>,
) -> Executor {
    live_executor(client, Arc::new(super::reload::LiveRules::new(rules, opts)), metrics, None)
}

/// Rules in shadow mode ([`super::shadow`]): no alerts written, each window compared with Kibana's alerts
/// later. The set is the one at start (a reload does not change which rules are shadowed).
pub type ShadowRules = (Arc<super::shadow::Shadow>, HashSet<String>);

/// [`detect_executor`] over rules a reload can swap (each window run reads the rule and options as they
/// are when it starts), with the rules named in `shadow` run in shadow mode.
pub fn live_executor(
    client: EsClient,
    live: Arc<super::reload::LiveRules>,
    metrics: Option<Arc<Metrics>>,
    shadow: Option<ShadowRules>,
) -> Executor {
    let shadow = shadow.map(Arc::new);
    let aliases = Arc::new(AliasGuard::default());
    Arc::new(move |req: WindowRequest| {
        let (client, aliases, metrics, shadow) = (client.clone(), aliases.clone(), metrics.clone(), shadow.clone());
        let (rules, opts) = live.snapshot();
        Box::pin(async move {
            let Some(rule) = rules.get(&req.rule_id) else {
                return WindowOutcome::failed(format!("rule `{}` is not loaded in this replica", req.rule_id));
            };
            if let Some((shadow, _)) = shadow.as_deref().filter(|(_, ids)| ids.contains(&req.rule_id)) {
                let started = std::time::Instant::now();
                let mut prepared = rule.clone();
                prepared.sequence_mode = req.sequence_mode;
                let mut opts = (*opts).clone();
                opts.previous_window_end = req.previous_window_end;
                let window = req.window.range;
                let summary = shadow.run_window(&prepared, window, &opts).await;
                if let Some(m) = &metrics {
                    m.observe_run(&summary, started.elapsed());
                }
                return outcome_of(&summary);
            }
            if let Err(e) = aliases.ensure(&client, rule).await {
                return WindowOutcome::failed(e);
            }
            let started = std::time::Instant::now();
            // The run future is `Send`, so the scheduler can time it out or drop it (cancelling the run;
            // ids are deterministic and writes create-only, so an abandoned run leaves nothing inconsistent).
            let summary = run_request(&client, rule, &req, &opts).await;
            if let Some(m) = &metrics {
                m.observe_run(&summary, started.elapsed());
            }
            outcome_of(&summary)
        })
    })
}
