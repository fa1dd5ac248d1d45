//! The scheduler's [`Executor`] on top of `detect`: a [`RunRequest`] (rule, window, sequence mode) becomes
//! one `detect::run_on_cluster` call, and its [`RunSummary`] becomes the [`RunOutcome`] the scheduler
//! records. The alerts alias of each rule is set up before its first run (and again after a failure).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Mutex;

use super::daemon::{Executor, RunOutcome, RunRequest, SequenceMode};
use super::metrics::Metrics;
use super::state::Counts;
use crate::config;
use crate::detect::{self, PreparedRule, RunOptions, RunSummary};
use crate::es::EsClient;

/// Converts the scheduler's sequence mode into the detect layer's.
pub fn detect_sequence_mode(mode: SequenceMode) -> config::SequenceMode {
    match mode {
        SequenceMode::Kibana => config::SequenceMode::Kibana,
        SequenceMode::Complete => config::SequenceMode::Complete,
    }
}

/// Converts the configured sequence mode into the scheduler's.
pub fn scheduler_sequence_mode(mode: config::SequenceMode) -> SequenceMode {
    match mode {
        config::SequenceMode::Kibana => SequenceMode::Kibana,
        config::SequenceMode::Complete => SequenceMode::Complete,
    }
}

/// What the scheduler records of a detect run.
pub fn outcome_of(summary: &RunSummary) -> RunOutcome {
    RunOutcome {
        counts: Counts {
            fetched: summary.fetched,
            matches: summary.kept,
            alerts_written: summary.alerts_written,
            duplicates: summary.duplicates,
        },
        warnings: summary.warnings.clone(),
        errors: summary.errors.clone(),
        search_duration_ms: summary.durations.search_ms,
        indexing_duration_ms: summary.durations.index_ms,
    }
}

/// Runs one window of a prepared rule against the cluster, as the scheduler asks.
pub async fn run_request(client: &EsClient, rule: &PreparedRule, req: &RunRequest, opts: &RunOptions) -> RunSummary {
    let mut prepared = rule.clone();
    prepared.sequence_mode = detect_sequence_mode(req.sequence_mode);
    let mut opts = opts.clone();
    opts.previous_window_end = req.previous_window_end;
    let window = detect::Window { from: req.window.from, to: req.window.to };
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
    pub async fn ensure(&self, client: &EsClient, alias: &str) -> Result<(), String> {
        let mut ready = self.ready.lock().await;
        if ready.contains(alias) {
            return Ok(());
        }
        let template = crate::alert::mapping::alerts_index_template(&[format!("{alias}-*")]);
        crate::sink::es::ensure_alerts_index(client, alias, template)
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
    detect_executor_with_shadow(client, rules, opts, metrics, None)
}

/// [`detect_executor`] where the rules named in `shadow` run in shadow mode ([`super::shadow`]): no
/// alerts written, each window compared with Kibana's alerts later.
pub fn detect_executor_with_shadow(
    client: EsClient,
    rules: Vec<PreparedRule>,
    opts: RunOptions,
    metrics: Option<Arc<Metrics>>,
    shadow: Option<(Arc<super::shadow::Shadow>, HashSet<String>)>,
) -> Executor {
    let shadow = shadow.map(Arc::new);
    let rules: Arc<HashMap<String, PreparedRule>> =
        Arc::new(rules.into_iter().map(|r| (r.rule.rule_id.clone(), r)).collect());
    let aliases = Arc::new(AliasGuard::default());
    let opts = Arc::new(opts);
    Arc::new(move |req: RunRequest| {
        let (client, rules, aliases, opts, metrics, shadow) =
            (client.clone(), rules.clone(), aliases.clone(), opts.clone(), metrics.clone(), shadow.clone());
        Box::pin(async move {
            let Some(rule) = rules.get(&req.rule_id) else {
                return RunOutcome::failed(format!("rule `{}` is not loaded in this replica", req.rule_id));
            };
            if let Some((shadow, _)) = shadow.as_deref().filter(|(_, ids)| ids.contains(&req.rule_id)) {
                let started = std::time::Instant::now();
                let mut prepared = rule.clone();
                prepared.sequence_mode = detect_sequence_mode(req.sequence_mode);
                let mut opts = (*opts).clone();
                opts.previous_window_end = req.previous_window_end;
                let window = detect::Window { from: req.window.from, to: req.window.to };
                let summary = shadow.run_window(&prepared, window, &opts).await;
                if let Some(m) = &metrics {
                    m.observe_run(&summary, started.elapsed());
                }
                return outcome_of(&summary);
            }
            if let Err(e) = aliases.ensure(&client, &rule.alias).await {
                return RunOutcome::failed(e);
            }
            let started = std::time::Instant::now();
            // The run future is `Send`, so the scheduler can time it out or drop it (cancelling the run;
            // ids are deterministic and writes create-only, so an abandoned run leaves nothing inconsistent).
            let summary = run_request(&client, &rule, &req, &opts).await;
            if let Some(m) = &metrics {
                m.observe_run(&summary, started.elapsed());
            }
            outcome_of(&summary)
        })
    })
}

