//! One run of one rule: window → fetch → evaluate → alert documents → write, with a summary.
//!
//! The same evaluation path serves the cluster (`run_on_cluster`) and local files (`run_on_events`), so
//! `esdetect test` prints exactly the alerts a cluster run would write. This module never sleeps or
//! schedules: the scheduler (or the CLI's `--once`) decides when a window runs.

pub mod prepare;
pub mod summary;
pub mod window;

pub use prepare::{prepare_rules, query_options, PreparedRule};
pub use summary::{RunStatus, RunSummary};
pub use window::{Window, WindowFields};

use crate::alert::{self, AlertContext, AlertDoc};
use crate::config::SequenceMode;
use crate::eql::analyze::CompiledQuery;
use crate::eql::engine::{Results, RunOutput, Runner};
use crate::eql::mapping::{FieldType, Mapping};
use crate::eql::plan::Plan;
use crate::eql::EqlError;
use crate::es::EsClient;
use crate::event::Event;
use crate::sink::es::{write_alerts, WriteOptions};
use crate::source::es::{count_without_timestamp, fetch_mapping, stream_window, SourceError, WindowQuery};
use chrono::{DateTime, Utc};
use std::time::Instant;

/// Kibana's warning when a run returns `max_signals` results (spec alert-documents §11).
pub const MAX_SIGNALS_WARNING: &str =
    "This rule reached the maximum alert limit for the rule execution. Some alerts were not created.";

/// Settings of a run that do not come from the rule.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub page_size: usize,
    pub kibana_version: String,
    /// Whether the run was scheduled or started by hand (backfill): `kibana.alert.rule.execution.type`.
    pub manual: bool,
    /// Also ask the cluster for `_mapping` (merged over the built-in ECS table).
    pub mapping_from_cluster: bool,
    /// A mapping merged over the built-in table, under the cluster's.
    pub base_mapping: Mapping,
    /// Complete sequence mode only: end of the window completed before this one. Sequences whose last
    /// event is at or before it were already found by that window and are not emitted again (so
    /// overlapping windows do not report them twice). `None`: keep those ending at or after `from`.
    pub previous_window_end: Option<DateTime<Utc>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            page_size: 1000,
            kibana_version: "9.0.1".into(),
            manual: false,
            mapping_from_cluster: true,
            base_mapping: Mapping::builtin_ecs(),
            previous_window_end: None,
        }
    }
}

/// The evaluated results of one window, before alerts are written.
#[derive(Debug)]
pub struct Evaluation {
    pub output: RunOutput,
    /// Values the mapping could not index (treated as missing, as Elasticsearch would).
    pub malformed_values: u64,
}

/// Compiles a prepared rule against a mapping, with the request options Kibana would send.
pub fn compile(prepared: &PreparedRule, mapping: &Mapping) -> Result<CompiledQuery, EqlError> {
    CompiledQuery::compile(&prepared.query, mapping, &query_options(&prepared.rule))
}

/// Builds the alert documents for a run's results, grouped: one group per event alert, one group (shell
/// first, then building blocks) per sequence. Groups are written together or reported as partial.
pub fn alert_groups(prepared: &PreparedRule, ctx: &AlertContext, results: &Results) -> Vec<Vec<AlertDoc>> {
    match results {
        Results::Events(events) => {
            alert::event_alerts(&prepared.rule, ctx, events).into_iter().map(|doc| vec![doc]).collect()
        }
        Results::Sequences(sequences) => sequences
            .iter()
            .map(|s| alert::sequence_alerts(&prepared.rule, ctx, &s.events))
            .filter(|g| !g.is_empty())
            .collect(),
    }
}

/// The alert context of one execution.
pub fn alert_context(prepared: &PreparedRule, opts: &RunOptions, now: DateTime<Utc>) -> AlertContext {
    let mut ctx = AlertContext::new(
        prepared.space.clone(),
        prepared.rule_uuid.clone(),
        opts.kibana_version.clone(),
        uuid::Uuid::new_v4().to_string(),
        now,
        now,
    );
    if opts.manual {
        ctx.execution_type = alert::document::ExecutionType::Manual;
    }
    ctx
}

/// In complete mode a sequence window is read from `from - maxspan`, and only sequences whose last event
/// falls inside the real window are kept: earlier ones belong to (and were found by) the previous window.
/// With `previous_end` (the end of the window completed before, inside this one when windows overlap),
/// only sequences whose last event is after it are new.
fn keep_new_sequences(plan: &CompiledQuery, window: &Window, previous_end: Option<DateTime<Utc>>, results: &mut Results) {
    let from = window.from.timestamp_millis();
    let is_new = |ts: i64| match previous_end {
        Some(p) if p >= window.from && p <= window.to => ts > p.timestamp_millis(),
        _ => ts >= from,
    };
    if let Results::Sequences(seqs) = results {
        seqs.retain(|s| s.events.last().and_then(|e| plan.timestamp_ms(e)).map(is_new).unwrap_or(false));
    }
}

fn mode_of(prepared: &PreparedRule, plan: &CompiledQuery) -> Option<i64> {
    match prepared.sequence_mode {
        SequenceMode::Complete if plan.is_sequence() => plan.maxspan_ms(),
        _ => None,
    }
}

/// Evaluates a rule over in-memory events, keeping only events inside `window` (when given) exactly as the
/// cluster's range filter would. Used by `esdetect test` and by tests.
pub fn run_on_events(
    prepared: &PreparedRule,
    mapping: &Mapping,
    events: &[Event],
    window: Option<&Window>,
) -> Result<Evaluation, EqlError> {
    let plan = compile(prepared, mapping)?;
    let fields = WindowFields::for_rule(&prepared.rule);
    let extend = mode_of(prepared, &plan);
    let fetch_window = window.map(|w| extend.map(|ms| w.extended_back(ms)).unwrap_or(*w));
    let selected = events.iter().filter(|e| match &fetch_window {
        None => true,
        Some(w) => window::event_in_window(&fields, w, e),
    });
    let mut output = crate::eql::engine::run(&plan, selected.cloned())?;
    if let (Some(w), Some(_)) = (window, extend) {
        keep_new_sequences(&plan, w, None, &mut output.results);
    }
    Ok(Evaluation { output, malformed_values: plan.malformed_values() })
}

/// The source request for a rule's window (also what `esdetect explain` prints).
/// With a mapping, the pushdown filter names each field the way Elasticsearch's EQL would query it (the
/// keyword sub-field of a `text` field) and leaves out fields it cannot query exactly.
pub fn window_query(prepared: &PreparedRule, window: &Window, page_size: usize, mapping: Option<&Mapping>) -> WindowQuery {
    let rule = &prepared.rule;
    let fields = WindowFields::for_rule(rule);
    let mut q = WindowQuery::new(rule.index.clone(), window.from, window.to);
    q.timestamp_field = rule.timestamp_field.clone().unwrap_or_else(|| "@timestamp".into());
    q.window_field = fields.primary.clone();
    q.fallback_to_timestamp = fields.fallback.is_some();
    q.page_size = page_size;
    let exact_field = |path: &str| -> Option<String> {
        match mapping.and_then(|m| m.get(path)).map(|f| &f.ty) {
            Some(FieldType::Text { keyword_subfield: Some(sub) }) => Some(format!("{path}.{sub}")),
            Some(FieldType::Text { keyword_subfield: None }) => None,
            _ => Some(path.to_string()),
        }
    };
    q.pushdown = crate::eql::pushdown::pushdown_filter_mapped(&prepared.query, &query_options(rule), &exact_field);
    if let Some(filters) = rule.filters.as_ref().and_then(|f| f.as_array()) {
        q.extra_filters.extend(filters.iter().cloned());
    }
    q
}

/// Loads the mapping a cluster run types fields with: built-in ECS table, the configured mapping, and the
/// cluster's `_mapping` of the rule's indices on top.
pub async fn cluster_mapping(client: &EsClient, indices: &[String], opts: &RunOptions) -> Result<Mapping, String> {
    let mut mapping = opts.base_mapping.clone();
    if opts.mapping_from_cluster {
        let json = fetch_mapping(client, indices).await.map_err(|e| e.to_string())?;
        let cluster = Mapping::from_es_mapping(&json).map_err(|e| e.to_string())?;
        if cluster.is_empty() {
            // No index exists yet: nothing to verify fields against; type unknown fields from their values.
            mapping.set_infer_unknown(true);
        }
        mapping.merge(&cluster);
    }
    Ok(mapping)
}

/// Runs one rule over one window against the cluster and writes its alerts to `prepared.alias` (which the
/// caller has set up with `sink::es::ensure_alerts_index`). Never panics; every failure ends in the summary.
#[tracing::instrument(name = "rule_run", skip_all, fields(rule_id = %prepared.rule.rule_id, from = %window.from, to = %window.to))]
pub async fn run_on_cluster(
    client: &EsClient,
    prepared: &PreparedRule,
    window: Window,
    opts: &RunOptions,
    now: &(dyn Fn() -> DateTime<Utc> + Sync),
) -> RunSummary {
    let started = Instant::now();
    let mut summary = RunSummary::new(prepared, window);

    let mapping = match cluster_mapping(client, &prepared.rule.index, opts).await {
        Ok(m) => m,
        Err(e) => return summary.fail(format!("could not read the field mapping of {:?}: {e}", prepared.rule.index), started),
    };
    let plan = match compile(prepared, &mapping) {
        Ok(p) => p,
        Err(e) => return summary.fail(format!("query rejected: {}", e.render(&prepared.rule.query)), started),
    };
    let extend = mode_of(prepared, &plan);
    let fetch_window = extend.map(|ms| window.extended_back(ms)).unwrap_or(window);
    let query = window_query(prepared, &fetch_window, opts.page_size, Some(&mapping));

    // Stream the window into the engine: memory holds one page plus the engine's bounded state.
    let search_started = Instant::now();
    let mut runner = Runner::new(&plan);
    let fetched = stream_window(client, &query, |event| runner.push(event)).await;
    summary.durations.search_ms = search_started.elapsed().as_millis() as u64;
    let fetch_stats = match fetched {
        Ok(stats) => stats,
        Err(SourceError::Consumer(e)) => return summary.fail(format!("query failed while evaluating: {e}"), started),
        Err(e) => return summary.fail(format!("could not read the window: {e}"), started),
    };
    summary.fetched = fetch_stats.hits as u64;
    let mut output = match runner.finish() {
        Ok(o) => o,
        Err(e) => return summary.fail(format!("query failed while evaluating: {e}"), started),
    };
    if extend.is_some() {
        keep_new_sequences(&plan, &window, opts.previous_window_end, &mut output.results);
    }
    summary.record_evaluation(&output, plan.malformed_values(), prepared.rule.max_signals);
    summary.record_limit_skips(plan.limit_skips());
    match count_without_timestamp(client, &query).await {
        Ok(0) => {}
        Ok(n) => {
            summary.skipped.insert(format!("no `{}` (Elasticsearch's EQL ignores such events)", query.timestamp_field), n);
        }
        Err(e) => tracing::warn!(error = %e, "could not count events without a timestamp"),
    }

    let ctx = alert_context(prepared, opts, now());
    let groups = alert_groups(prepared, &ctx, &output.results);
    summary.alerts_built = groups.iter().map(|g| g.len() as u64).sum();
    if groups.is_empty() {
        return summary.finish(started);
    }
    let index_started = Instant::now();
    let docs: Vec<Vec<(String, serde_json::Value)>> =
        groups.into_iter().map(|g| g.into_iter().map(|d| (d.id, d.source)).collect()).collect();
    let written = write_alerts(client, &prepared.alias, docs, &WriteOptions::default()).await;
    summary.durations.index_ms = index_started.elapsed().as_millis() as u64;
    match written {
        Ok(report) => summary.record_write(&report),
        Err(e) => return summary.fail(format!("could not write alerts to `{}`: {e}", prepared.alias), started),
    }
    summary.finish(started)
}
