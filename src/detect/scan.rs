//! Rules over the cluster, sharing scans: rules whose windows read the same events (same indices, window,
//! timestamp fields and page size) are evaluated in one pass over one point-in-time scan whose filter is the
//! OR of the rules' pushdown filters, instead of one scan each. Each rule still gets its own evaluation,
//! alerts and summary, exactly as if it had run alone: the pushdown only pre-filters candidates (it never
//! drops an event its rule could match), so an event another rule's filter lets in cannot change this
//! rule's results — it matches none of its stages.
//!
//! With `[source] fetch = "filtered"` the scan asks only for the fields its rules read, and
//! each rule, once its results are selected, reads the whole `_source` of just the events that become its
//! alerts (`_mget`) before building them: fewer bytes over the wire, the same alert documents.

use super::pass::{field_paths, field_set, Member, MemberResult, Pass};
use super::summary::RunSummary;
use super::{
    alert_context, alert_groups, compile, fetch_window, settle_pass, window_query, PreparedRule, RunOptions,
    rule_mapping, write_and_notify, Window,
};
use crate::alert::AlertDoc;
use crate::eql::analyze::CompiledQuery;
use crate::eql::mapping::Mapping;
use crate::es::EsClient;
use crate::event::projection::Projection;
use crate::sink::es::{write_alerts, WriteOptions};
use crate::eql::engine::Results;
use crate::event::Event;
use crate::source::es::{count_without_timestamp, fetch_sources, stream_window, SourceError, SourceFetch, WindowQuery};
use futures_util::stream::{FuturesUnordered, StreamExt};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// A rule ready to scan: its compiled query, window and request.
struct Ready<'a> {
    at: usize,
    prepared: &'a PreparedRule,
    window: Window,
    plan: CompiledQuery,
    query: WindowQuery,
    mapping: Mapping,
}

/// What becomes of the alert documents a run builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOutput {
    /// Written to each rule's alias (dedup + bulk create).
    Write,
    /// Returned, nothing written (comparisons, dry runs).
    Return,
}

/// One rule's run against the cluster: its summary, and its alert documents when they were returned.
#[derive(Debug)]
pub struct ClusterOutcome {
    pub summary: RunSummary,
    /// Grouped as they would be written; empty when written ([`AlertOutput::Write`]).
    pub groups: Vec<Vec<AlertDoc>>,
}

/// How many cluster scans of one run are in flight at a time (each holds a point in time and one page).
const CONCURRENT_SCANS: usize = 4;

/// Runs each `(rule, window)` against the cluster and writes its alerts; one summary per rule, in order.
/// Never panics; every failure ends in its rule's summary.
pub async fn run_rules_on_cluster(
    client: &EsClient,
    rules: &[(&PreparedRule, Window)],
    opts: &RunOptions,
    now: &(dyn Fn() -> DateTime<Utc> + Sync),
) -> Vec<RunSummary> {
    evaluate_rules_on_cluster(client, rules, opts, now, AlertOutput::Write).await.into_iter().map(|o| o.summary).collect()
}

/// [`run_rules_on_cluster`] with the choice of writing the alerts or returning them.
pub async fn evaluate_rules_on_cluster(
    client: &EsClient,
    rules: &[(&PreparedRule, Window)],
    opts: &RunOptions,
    now: &(dyn Fn() -> DateTime<Utc> + Sync),
    output: AlertOutput,
) -> Vec<ClusterOutcome> {
    let started = Instant::now();
    let mut summaries: Vec<Option<ClusterOutcome>> = (0..rules.len()).map(|_| None).collect();
    let failed = |summary: RunSummary| Some(ClusterOutcome { summary, groups: Vec::new() });
    let mut mappings: Vec<(Vec<String>, Mapping)> = Vec::new();
    let mut ready: Vec<Ready<'_>> = Vec::new();
    for (at, (prepared, window)) in rules.iter().enumerate() {
        // Custom query rules are matched by Elasticsearch: a search of their own, never a shared scan.
        match &prepared.kind {
            super::query_rule::RuleKind::Query(q) => {
                summaries[at] = Some(super::query_rule::run_on_cluster(client, prepared, q, *window, opts, now, output).await);
                continue;
            }
            super::query_rule::RuleKind::Threshold(q, t) => {
                summaries[at] = Some(super::threshold::run_on_cluster(client, prepared, q, t, *window, opts, now, output).await);
                continue;
            }
            super::query_rule::RuleKind::NewTerms(q, t) => {
                summaries[at] = Some(super::new_terms::run_on_cluster(client, prepared, q, t, *window, opts, now, output).await);
                continue;
            }
            super::query_rule::RuleKind::Eql => {}
        }
        let summary = RunSummary::new(prepared, *window);
        let indices = &prepared.rule.index;
        let mapping = match mappings.iter().find(|(i, _)| i == indices) {
            Some((_, m)) => m.clone(),
            None => match rule_mapping(client, indices, opts).await {
                Ok(m) => {
                    mappings.push((indices.clone(), m.clone()));
                    m
                }
                Err(e) => {
                    summaries[at] = failed(summary.fail(e, started));
                    continue;
                }
            },
        };
        let plan = match compile(prepared, &mapping) {
            Ok(p) => p,
            Err(e) => {
                summaries[at] = failed(summary.fail(format!("query rejected: {}", e.render_all(&prepared.rule.query)), started));
                continue;
            }
        };
        let query = scan_query(prepared, &plan, *window, opts, &mapping);
        ready.push(Ready { at, prepared, window: *window, plan, query, mapping });
    }

    // Rules whose requests differ only in their filters share a scan.
    let mut groups: Vec<Vec<Ready<'_>>> = Vec::new();
    for r in ready {
        match groups.iter_mut().find(|g| same_scan(&g[0].query, &r.query)) {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    // Scans run side by side, as the daemon runs its rules: while Elasticsearch serves one scan's next
    // page, esdetect evaluates another's. Bounded, so a thousand rules do not open a thousand PITs at once.
    let mut waiting = groups.iter();
    let mut scans = FuturesUnordered::new();
    loop {
        while scans.len() < CONCURRENT_SCANS {
            let Some(group) = waiting.next() else { break };
            scans.push(run_group(client, group, opts, now, started, output));
        }
        let Some(outcomes) = scans.next().await else { break };
        for (at, outcome) in outcomes {
            summaries[at] = Some(outcome);
        }
    }
    summaries.into_iter().map(|s| s.expect("every rule has a summary")).collect()
}

/// The request of one rule's scan run alone (what `esdetect explain` prints): its window query and, when
/// filtering, the `_source` fields it reads.
pub fn scan_query(prepared: &PreparedRule, plan: &CompiledQuery, window: Window, opts: &RunOptions, mapping: &Mapping) -> WindowQuery {
    let mut query = window_query(prepared, &fetch_window(prepared, plan, window), opts.page_size, Some(mapping));
    // `_mget` cannot read from a remote cluster: rules over `cluster:index` patterns read whole documents.
    let remote = prepared.rule.index.iter().any(|p| p.contains(':'));
    if opts.source_fetch == SourceFetch::Filtered && !remote {
        query.source_includes = Some(field_paths([(prepared, plan)]));
    }
    query
}

/// Whether two window requests read the same events before their filters.
fn same_scan(a: &WindowQuery, b: &WindowQuery) -> bool {
    a.indices == b.indices
        && a.timestamp_field == b.timestamp_field
        && a.window_field == b.window_field
        && a.fallback_to_timestamp == b.fallback_to_timestamp
        && a.from == b.from
        && a.to == b.to
        && a.page_size == b.page_size
}

/// The rule's own filters (pushdown and rule filters) as one clause; `None` when it reads every event.
fn own_filter(q: &WindowQuery) -> Option<Value> {
    let mut clauses: Vec<Value> = q.pushdown.iter().cloned().collect();
    clauses.extend(q.extra_filters.iter().cloned());
    match clauses.len() {
        0 => None,
        1 => clauses.pop(),
        _ => Some(json!({"bool": {"filter": clauses}})),
    }
}

/// The request of a shared scan: the group's common window with the OR of its rules' filters.
fn shared_query(group: &[Ready<'_>]) -> WindowQuery {
    if group.len() == 1 {
        return group[0].query.clone();
    }
    let mut q = group[0].query.clone();
    if q.source_includes.is_some() {
        q.source_includes = Some(field_paths(group.iter().map(|r| (r.prepared, &r.plan))));
    }
    let filters: Option<Vec<Value>> = group.iter().map(|r| own_filter(&r.query)).collect();
    q.pushdown = filters.map(|should| json!({"bool": {"should": should, "minimum_should_match": 1}}));
    q.extra_filters = Vec::new();
    q
}

async fn run_group(
    client: &EsClient,
    group: &[Ready<'_>],
    opts: &RunOptions,
    now: &(dyn Fn() -> DateTime<Utc> + Sync),
    started: Instant,
    output: AlertOutput,
) -> Vec<(usize, ClusterOutcome)> {
    let query = shared_query(group);
    let projection = Projection::Fields(Arc::new(field_set(group.iter().map(|r| (r.prepared, &r.plan)))));
    let search_started = Instant::now();
    // The scan already applied each rule's window: every event goes to every rule of the group.
    // Exceptions are in each rule's filter, but an event another rule's filter lets in must not reach an
    // excepting rule either: the same exceptions apply in memory.
    let mut pass = Pass::new(group.iter().map(|r| Member {
        prepared: r.prepared,
        plan: &r.plan,
        window: None,
        exceptions: r.prepared.exceptions.active_at(r.window.to).matcher(&r.mapping),
    }));
    let fetched = stream_window(client, &query, &projection, |event| {
        pass.offer(&Arc::new(event))
            .map_err(|o| format!("the cluster returned events out of timestamp order (rule {})", o.rule_id))
    })
    .await;
    let search_ms = search_started.elapsed().as_millis() as u64;
    let results = pass.finish();
    let failure = match &fetched {
        Ok(_) => None,
        Err(SourceError::Consumer(e)) => Some(format!("query failed while evaluating: {e}")),
        Err(e) => Some(format!("could not read the window: {e}")),
    };
    let mut out = Vec::with_capacity(group.len());
    for (r, result) in group.iter().zip(results) {
        let mut summary = RunSummary::new(r.prepared, r.window);
        summary.durations.search_ms = search_ms;
        if let Some(f) = &failure {
            out.push((r.at, ClusterOutcome { summary: summary.fail(f.clone(), started), groups: Vec::new() }));
            continue;
        }
        if let Ok(stats) = &fetched {
            summary.fetched = stats.hits as u64;
            summary.bytes_fetched = stats.bytes;
        }
        out.push((r.at, finish_rule(client, r, result, summary, opts, now, started, output).await));
    }
    out
}

/// Selection, alerts and the write of one rule after its scan.
async fn finish_rule(
    client: &EsClient,
    r: &Ready<'_>,
    result: MemberResult,
    mut summary: RunSummary,
    opts: &RunOptions,
    now: &(dyn Fn() -> DateTime<Utc> + Sync),
    started: Instant,
    output: AlertOutput,
) -> ClusterOutcome {
    let done = |summary: RunSummary| ClusterOutcome { summary, groups: Vec::new() };
    let prepared = r.prepared;
    summary.record_excepted(result.excepted);
    let mut evaluated = match result.output {
        Ok(o) => o,
        Err(e) => return done(summary.fail(format!("query failed while evaluating: {e}"), started)),
    };
    settle_pass(&mut summary, prepared, &r.plan, Some(&r.window), opts.previous_window_end, &mut evaluated);
    match count_without_timestamp(client, &r.query).await {
        Ok(0) => {}
        Ok(n) => {
            summary.skipped.insert(format!("no `{}` (Elasticsearch's EQL ignores such events)", r.query.timestamp_field), n);
        }
        Err(e) => tracing::warn!(error = %e, "could not count events without a timestamp"),
    }
    if let Err(e) = attach_sources(client, &mut evaluated.results, &mut summary).await {
        return done(summary.fail(format!("could not read the whole documents of the alerts' events: {e}"), started));
    }
    let ctx = alert_context(prepared, opts, now());
    let groups = alert_groups(prepared, &ctx, &evaluated.results);
    summary.alerts_built = groups.iter().map(|g| g.len() as u64).sum();
    if output == AlertOutput::Return {
        return ClusterOutcome { summary: summary.finish(started), groups };
    }
    // Alert suppression: merged with the alerts already in the index (src/sink/suppressed.rs).
    let suppression = crate::alert::suppression::Suppression::from_rule(&prepared.rule).ok().flatten();
    let mut suppressed = 0;
    let written = write_and_notify(client, prepared, opts, groups, &mut summary, Instant::now(), |docs| async {
        match &suppression {
            Some(s) => crate::sink::suppressed::write_rule_alerts(
                client, &prepared.alias, s, &prepared.rule, &ctx, r.window.from, docs, &WriteOptions::default(),
            )
            .await
            .map(|mut rep| {
                suppressed = rep.suppressed as u64;
                rep.write.duplicates += rep.already_counted; // a window run again: counted before
                rep.write
            }),
            None => write_alerts(client, &prepared.alias, docs, &WriteOptions::default()).await,
        }
    })
    .await;
    summary.suppressed = suppressed;
    if let Err(e) = written {
        return done(summary.fail(e, started));
    }
    done(summary.finish(started))
}

fn result_events_mut(results: &mut Results) -> Box<dyn Iterator<Item = &mut Event> + '_> {
    match results {
        Results::Events(events) => Box::new(events.iter_mut()),
        Results::Sequences(seqs) => Box::new(seqs.iter_mut().flat_map(|s| s.events.iter_mut())),
    }
}

/// Reads the whole `_source` of the result events the scan fetched filtered (every event of a sequence)
/// and attaches it. A document gone since the scan keeps what the scan read: its alert is still written
/// (never lose an alert), with a warning and [`RunSummary::sources_missing`].
pub async fn attach_sources(client: &EsClient, results: &mut Results, summary: &mut RunSummary) -> Result<(), SourceError> {
    let wanted: Vec<(String, String)> =
        result_events_mut(results).filter(|e| e.needs_text()).map(|e| (e.index.clone(), e.id.clone())).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let sources = fetch_sources(client, &wanted).await?;
    summary.bytes_mget += sources.bytes;
    summary.durations.mget_ms += started.elapsed().as_millis() as u64;
    for event in result_events_mut(results) {
        if let Some(text) = sources.found.get(&(event.index.clone(), event.id.clone())) {
            event.attach_text(Arc::clone(text));
        }
    }
    if !sources.missing.is_empty() {
        summary.sources_missing += sources.missing.len() as u64;
        let (index, id, reason) = &sources.missing[0];
        summary.warnings.push(format!(
            "{} event(s) that became alerts could not be read whole (first: {index}/{id}: {reason}); their alerts \
             were written with only the fields the rule reads. Set `[source] fetch = \"full\"` to read whole \
             documents during the scan",
            sources.missing.len()
        ));
    }
    Ok(())
}
