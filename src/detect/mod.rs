//! One run of one rule: window → fetch → evaluate → alert documents → write, with a summary.
//!
//! The same evaluation path serves the cluster (`run_on_cluster`) and local files (`run_on_events`), so
//! `esdetect test` prints exactly the alerts a cluster run would write. This module never sleeps or
//! schedules: the scheduler (or the CLI's `--once`) decides when a window runs.

pub mod indices;
pub mod new_terms;
pub mod offline;
pub mod offline_query;
pub mod pass;
pub mod prepare;
pub mod query_rule;
pub mod scan;
pub mod summary;
pub mod threshold;
pub mod window;

pub use prepare::{prepare_rules, query_options, PreparedRule};
pub use summary::{RunStatus, RunSummary};
pub use window::{Window, WindowFields};

use crate::alert::{self, AlertContext, AlertDoc};
use crate::config::SequenceMode;
use crate::eql::analyze::CompiledQuery;
use crate::eql::engine::{Results, Evaluation};
use crate::eql::mapping::{FieldType, Mapping};
use crate::eql::plan::Plan;
use crate::eql::EqlError;
use crate::es::EsClient;
use crate::source::es::{fetch_mapping, WindowQuery};
use chrono::{DateTime, Utc};

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
    /// Rule actions (notifications) run after a rule's alerts are written; `None`: no rule has any.
    pub actions: Option<std::sync::Arc<crate::actions::Actions>>,
    /// How much of each hit a detection scan reads (`[source] fetch`).
    pub source_fetch: crate::source::es::SourceFetch,
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
            actions: None,
            source_fetch: crate::source::es::SourceFetch::default(),
        }
    }
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
    prepared.apply_rule_audit(&mut ctx); // rules from a Kibana export: Kibana's audit fields
    ctx
}

/// The window a rule's events are read from: its own, extended back by `maxspan` for a sequence in
/// complete mode (see [`keep_new_sequences`]).
pub(crate) fn fetch_window(prepared: &PreparedRule, plan: &CompiledQuery, window: Window) -> Window {
    mode_of(prepared, plan).map(|ms| window.extended_back(ms)).unwrap_or(window)
}

/// What every run of a rule does once its pass is over, whatever the source: drop the sequences an
/// extended (complete mode) window found for the previous window, and record the engine's counters and
/// the per-event limit skips in the summary. `window`: the rule's own window (`None`: a whole file, never
/// extended).
pub(crate) fn settle_pass(
    summary: &mut RunSummary,
    prepared: &PreparedRule,
    plan: &CompiledQuery,
    window: Option<&Window>,
    previous_end: Option<DateTime<Utc>>,
    output: &mut Evaluation,
) {
    if let (Some(w), Some(_)) = (window, mode_of(prepared, plan)) {
        keep_new_sequences(plan, w, previous_end, &mut output.results);
    }
    summary.record_evaluation(output, plan.malformed_values(), prepared.rule.max_signals);
    summary.record_limit_skips(plan.limit_skips());
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
    // Exceptions (src/exceptions): Kibana's exception filter, negated beside the time range.
    if let Some(clause) = prepared.exceptions.active_at(window.to).query_clause() {
        q.extra_filters.push(serde_json::json!({"bool": {"must_not": [clause]}}));
    }
    q
}

/// Why the cluster's field mapping could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MappingFetchError {
    #[error(transparent)]
    Fetch(#[from] crate::es::EsError),
    #[error("the cluster's `_mapping` answer cannot be read: {0}")]
    Parse(#[from] crate::eql::mapping::MappingError),
}

/// [`cluster_mapping`] failed for a rule's indices: the run summary's wording, naming the indices.
#[derive(Debug, thiserror::Error)]
#[error("could not read the field mapping of {indices:?}: {source}")]
pub struct RuleMappingError {
    pub indices: Vec<String>,
    #[source]
    pub source: MappingFetchError,
}

/// The end of a run whose alerts are written without suppression (query, threshold and new terms rules):
/// [`write_and_notify`] with the plain writer, then the summary finished, or failed with the write's error.
pub(crate) async fn write_plain_and_finish(
    client: &EsClient,
    prepared: &PreparedRule,
    opts: &RunOptions,
    groups: Vec<Vec<AlertDoc>>,
    mut summary: RunSummary,
    index_started: std::time::Instant,
    started: std::time::Instant,
) -> scan::ClusterOutcome {
    let write = |docs| async move {
        crate::sink::es::write_alerts(client, &prepared.alias, docs, &crate::sink::es::WriteOptions::default()).await
    };
    let summary = match write_and_notify(client, prepared, opts, groups, &mut summary, index_started, write).await {
        Ok(()) => summary.finish(started),
        Err(e) => summary.fail(e, started),
    };
    scan::ClusterOutcome { summary, groups: Vec::new() }
}

/// [`write_and_notify`] could not write a rule's alerts: the run summary's wording, naming the alias.
#[derive(Debug, thiserror::Error)]
#[error("could not write alerts to `{alias}`: {source}")]
pub struct AlertWriteError {
    pub alias: String,
    #[source]
    pub source: crate::sink::es::SinkError,
}

/// [`cluster_mapping`] for one rule's indices.
pub(crate) async fn rule_mapping(client: &EsClient, indices: &[String], opts: &RunOptions) -> Result<Mapping, RuleMappingError> {
    cluster_mapping(client, indices, opts).await.map_err(|source| RuleMappingError { indices: indices.to_vec(), source })
}

/// The end of every cluster run that writes alerts: the groups go to the rule's alias through `write`
/// (each group together; plain `sink::es::write_alerts`, or the suppression-aware writer), the write is
/// recorded in `summary` (duplicates an earlier lookup found stay counted), `index_ms` is measured from
/// `index_started`, and the rule's actions are sent for the alerts the write actually created. With no
/// group nothing is written, but the actions still run: messages of earlier runs may wait in the outbox.
/// The error names the alerts index and keeps the sink's error as its source.
pub(crate) async fn write_and_notify<F, Fut>(
    client: &EsClient,
    prepared: &PreparedRule,
    opts: &RunOptions,
    groups: Vec<Vec<AlertDoc>>,
    summary: &mut RunSummary,
    index_started: std::time::Instant,
    write: F,
) -> Result<(), AlertWriteError>
where
    F: FnOnce(Vec<Vec<(String, serde_json::Value)>>) -> Fut,
    Fut: std::future::Future<Output = Result<crate::sink::es::WriteReport, crate::sink::es::SinkError>>,
{
    let actions = opts.actions.as_deref().filter(|a| a.applies_to(prepared));
    if groups.is_empty() {
        if let Some(actions) = actions {
            summary.actions = crate::actions::dispatch(client, actions, prepared, summary, &[]).await;
        }
        return Ok(());
    }
    let docs: Vec<Vec<(String, serde_json::Value)>> =
        groups.into_iter().map(|g| g.into_iter().map(|d| (d.id, d.source)).collect()).collect();
    // Actions need the created documents after the write; copied only when the rule has actions.
    let for_actions: Vec<(String, serde_json::Value)> =
        if actions.is_some() { docs.iter().flatten().cloned().collect() } else { Vec::new() };
    let written = write(docs).await;
    summary.durations.index_ms = index_started.elapsed().as_millis() as u64;
    let report = written.map_err(|source| AlertWriteError { alias: prepared.alias.clone(), source })?;
    let looked_up = summary.duplicates;
    summary.record_write(&report);
    summary.duplicates += looked_up;
    if let Some(actions) = actions {
        let created: std::collections::HashSet<&String> = report.created_ids.iter().collect();
        let new: Vec<(String, serde_json::Value)> = for_actions.into_iter().filter(|(id, _)| created.contains(id)).collect();
        summary.actions = crate::actions::dispatch(client, actions, prepared, summary, &new).await;
    }
    Ok(())
}

/// Loads the mapping a cluster run types fields with: built-in ECS table, the configured mapping, and the
/// cluster's `_mapping` of the rule's indices on top.
pub async fn cluster_mapping(client: &EsClient, indices: &[String], opts: &RunOptions) -> Result<Mapping, MappingFetchError> {
    let mut mapping = opts.base_mapping.clone();
    if opts.mapping_from_cluster {
        let json = fetch_mapping(client, indices).await?;
        let cluster = Mapping::from_es_mapping(&json)?;
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
    let mut summaries = scan::run_rules_on_cluster(client, &[(prepared, window)], opts, now).await;
    summaries.pop().expect("one summary per rule")
}
