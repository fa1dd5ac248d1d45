//! `esdetect test` for custom query, threshold and new terms rules: the file's events evaluated in memory
//! with [`crate::kql::eval`], for the part of KQL whose Elasticsearch result is exact without Elasticsearch
//! (keyword terms, wildcards and exists, combined with and/or/not), grouped on keyword fields. A rule outside
//! that part gets an error in its summary saying which construct needs a cluster. Otherwise the same as a
//! cluster run: index patterns matched against `_index`, the window with `--now`, the exceptions, the same
//! alert documents and ids. Query rules keep the oldest hits up to `max_signals`; threshold rules group the
//! window's events (no earlier alerts offline: no signal history); new terms rules need `--now` and take the
//! history from the same file.

use super::indices::IndexPatterns;
use super::offline::{RuleOutcome, OFFLINE_INDEX};
use super::query_rule::RuleKind;
use super::summary::RunSummary;
use super::window::{event_in_window, WindowFields};
use super::{alert_context, PreparedRule, RunOptions, Window, MAX_SIGNALS_WARNING};
use crate::alert::{self, AlertDoc};
use crate::eql::mapping::Mapping;
use crate::event::Event;
use crate::kql::{eval, Node};
use crate::source::files::{is_stdin, read_events_file, FileSourceError, Flow, Projection};
use chrono::{DateTime, Utc};
use std::path::Path;
use std::time::Instant;

/// Whether `esdetect test` hands this rule to [`run_on_file`] (query, threshold, new terms) rather than to the EQL pass.
pub fn evaluated_apart(rule: &PreparedRule) -> bool {
    !rule.kind.is_eql()
}

/// Why a rule cannot be evaluated exactly in memory (`None`: it can).
fn refusal(p: &PreparedRule, mapping: &Mapping, now: Option<DateTime<Utc>>) -> Option<String> {
    let (q, group_fields): (&super::query_rule::QueryRule, Vec<&String>) = match &p.kind {
        RuleKind::Query(q) => (q, vec![]),
        RuleKind::Threshold(q, t) => (q, t.fields.iter().chain(t.cardinality.as_ref().map(|(f, _)| f)).collect()),
        RuleKind::NewTerms(q, t) => {
            if now.is_none() {
                return Some("a new terms rule needs `--now` on files (its window and history window end there)".into());
            }
            (q, t.fields.iter().collect())
        }
        RuleKind::Eql => return Some("not a custom query, threshold or new terms rule".into()),
    };
    let Some(node) = &q.kql else { return Some(super::query_rule::offline_refusal(q)) };
    let cluster = "; run it with `run --once` against a cluster holding the events";
    if let Err(why) = eval::check(node, mapping) {
        return Some(format!("not evaluated on files: the query uses {why}{cluster}"));
    }
    for f in group_fields {
        if crate::kql::Fields::kind(mapping, f) != Some(crate::kql::FieldKind::Keyword) {
            return Some(format!("not evaluated on files: it groups on `{f}`, which is not mapped as keyword{cluster}"));
        }
    }
    None
}

/// The keyword values of `field` in an event (as Elasticsearch indexes them).
fn values(e: &Event, field: &str, mapping: &Mapping) -> Vec<String> {
    eval::keyword_values(&e.source, field, mapping)
}

/// Every combination of the fields' values (a composite aggregation puts a document in each; none when a
/// field is missing).
fn combinations(e: &Event, fields: &[String], mapping: &Mapping) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = vec![Vec::new()];
    for f in fields {
        let mut vs = values(e, f, mapping);
        vs.sort();
        vs.dedup();
        out = out.iter().flat_map(|prefix| vs.iter().map(move |v| [prefix.clone(), vec![v.clone()]].concat())).collect();
    }
    out
}

struct State<'a> {
    prepared: &'a PreparedRule,
    query: Result<Node, String>,
    window: Option<Window>,
    /// The events read: the rule's window, or a new terms rule's history window.
    read_window: Option<Window>,
    fields: WindowFields,
    patterns: IndexPatterns,
    exceptions: Option<crate::exceptions::ExceptionMatcher>,
    hits: Vec<(i64, Event)>,
    offered: u64,
    outside: u64,
    excepted: u64,
    no_time: u64,
}

/// The first instant of the rule's window field (or its fallback) in the event.
fn instant(fields: &WindowFields, e: &Event) -> Option<i64> {
    let first = |f: &str| e.field_values(f).into_iter().find_map(|v| match v {
        serde_json::Value::String(s) => crate::eql::value::parse_date_ms(s),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    });
    first(&fields.primary).or_else(|| fields.fallback.as_deref().and_then(first))
}

/// Runs the custom query rules among `rules` over the events of `path`.
pub fn run_on_file<'a>(
    rules: &[&'a PreparedRule],
    mapping: &Mapping,
    path: &Path,
    now: Option<DateTime<Utc>>,
    opts: &RunOptions,
) -> Result<Vec<RuleOutcome<'a>>, FileSourceError> {
    if is_stdin(path) {
        return Err(FileSourceError::StdinReadTwice);
    }
    let started = Instant::now();
    let mut states: Vec<State<'a>> = rules
        .iter()
        .map(|&p| {
            let query = match (refusal(p, mapping, now), &p.kind) {
                (Some(why), _) => Err(why),
                (None, RuleKind::Query(q) | RuleKind::Threshold(q, _) | RuleKind::NewTerms(q, _)) => {
                    Ok(q.kql.clone().expect("refusal checked it is KQL"))
                }
                (None, RuleKind::Eql) => Err("not a custom query rule".into()),
            };
            let window = now.map(|t| Window::ending_at(&p.rule, t));
            // New terms rules read their history window (which includes the rule's window).
            let read_window = match (&p.kind, window) {
                (RuleKind::NewTerms(_, t), Some(w)) => Some(Window { from: w.to - t.history, to: w.to }),
                _ => window,
            };
            State {
                read_window,
                prepared: p,
                query,
                exceptions: window.map(|w| p.exceptions.active_at(w.to)).or_else(|| Some(p.exceptions.active_at(Utc::now()))).map(|e| e.matcher(mapping)),
                window,
                fields: WindowFields::for_rule(&p.rule),
                patterns: IndexPatterns::new(&p.rule.index),
                hits: Vec::new(),
                offered: 0,
                outside: 0,
                excepted: 0,
                no_time: 0,
            }
        })
        .collect();
    let read = read_events_file(path, OFFLINE_INDEX, &Projection::Full, |e| {
        for s in states.iter_mut() {
            let Ok(query) = &s.query else { continue };
            if e.index != OFFLINE_INDEX && !s.patterns.matches(&e.index) {
                s.outside += 1;
                continue;
            }
            if let Some(w) = &s.read_window {
                if !event_in_window(&s.fields, w, &e) {
                    continue;
                }
            }
            s.offered += 1;
            let Some(ts) = instant(&s.fields, &e) else {
                s.no_time += 1;
                continue;
            };
            if !eval::matches(query, &e.source, mapping) {
                continue;
            }
            if s.exceptions.as_ref().is_some_and(|m| m.excludes(&e)) {
                s.excepted += 1;
                continue;
            }
            s.hits.push((ts, e.clone()));
        }
        Flow::Continue
    })?;
    let run_now = Utc::now();
    Ok(states
        .into_iter()
        .map(|mut s| {
            let span = || {
                let lo = s.hits.iter().map(|(t, _)| *t).min().unwrap_or(0);
                let hi = s.hits.iter().map(|(t, _)| *t).max().unwrap_or(0);
                Window { from: DateTime::from_timestamp_millis(lo).unwrap_or_default(), to: DateTime::from_timestamp_millis(hi).unwrap_or_default() }
            };
            let mut summary = RunSummary::new(s.prepared, s.window.unwrap_or_else(span));
            if let Err(why) = &s.query {
                summary.errors.push(why.clone());
                return RuleOutcome { prepared: s.prepared, summary: summary.finish(started), groups: Vec::new() };
            }
            summary.fetched = s.offered;
            summary.record_excepted(s.excepted);
            if s.outside > 0 {
                summary.skipped.insert("`_index` matches none of the rule's index patterns".into(), s.outside);
            }
            if s.no_time > 0 {
                summary.skipped.insert(format!("no `{}`", s.fields.primary), s.no_time);
            }
            for (reason, n) in &read.skipped_by_reason {
                summary.skipped.insert(format!("unreadable item: {reason}"), *n);
            }
            // Oldest first (stable for equal times: file order), as Kibana pages.
            s.hits.sort_by_key(|(t, _)| *t);
            let ctx = alert_context(s.prepared, opts, run_now);
            let window = summary.window;
            let mut docs: Vec<AlertDoc> = match &s.prepared.kind {
                RuleKind::Threshold(_, t) => threshold_alerts(s.prepared, t, &s.hits, mapping, &ctx, run_now, &window),
                RuleKind::NewTerms(_, t) => new_terms_alerts(s.prepared, t, &s.hits, mapping, &ctx, &window),
                _ => {
                    let events: Vec<Event> = s.hits.into_iter().map(|(_, e)| e).collect();
                    alert::event_alerts(&s.prepared.rule, &ctx, &events)
                }
            };
            summary.candidates = docs.len() as u64;
            summary.matches = docs.len() as u64;
            let cap = s.prepared.rule.max_signals as usize;
            if docs.len() > cap {
                docs.truncate(cap);
                summary.truncated = true;
            }
            let is_query = matches!(s.prepared.kind, RuleKind::Query(_));
            if (is_query && cap > 0 && docs.len() >= cap) || (!is_query && summary.truncated) {
                summary.warnings.push(MAX_SIGNALS_WARNING.to_string());
            }
            summary.kept = docs.len() as u64;
            summary.alerts_built = docs.len() as u64;
            let groups = docs.into_iter().map(|d| vec![d]).collect();
            RuleOutcome { prepared: s.prepared, summary: summary.finish(started), groups }
        })
        .collect())
}

/// Threshold groups of the window's matching events, in composite (key) order.
fn threshold_alerts(
    p: &PreparedRule,
    t: &super::threshold::ThresholdSpec,
    hits: &[(i64, Event)],
    mapping: &Mapping,
    ctx: &alert::AlertContext,
    started_at: DateTime<Utc>,
    window: &Window,
) -> Vec<AlertDoc> {
    use std::collections::{BTreeMap, BTreeSet};
    // key → (count, min, max, distinct cardinality values)
    let mut groups: BTreeMap<Vec<String>, (u64, i64, i64, BTreeSet<String>)> = BTreeMap::new();
    for (ts, e) in hits {
        for key in combinations(e, &t.fields, mapping) {
            let g = groups.entry(key).or_insert((0, i64::MAX, i64::MIN, BTreeSet::new()));
            g.0 += 1;
            g.1 = g.1.min(*ts);
            g.2 = g.2.max(*ts);
            if let Some((f, _)) = &t.cardinality {
                g.3.extend(values(e, f, mapping));
            }
        }
    }
    let iso = |ms: i64| DateTime::from_timestamp_millis(ms).map(|d| crate::source::es::iso_ms(&d));
    groups
        .into_iter()
        .map(|(key, (count, min, max, distinct))| super::threshold::Bucket {
            key: t.fields.iter().cloned().zip(key.into_iter().map(serde_json::Value::String)).collect(),
            count,
            max: iso(max),
            min: iso(min),
            cardinality: t.cardinality.as_ref().map(|_| distinct.len() as u64),
        })
        .filter(|b| super::threshold::passes(b, t))
        .map(|b| super::threshold::bucket_alert(p, t, &b, ctx, started_at, window))
        .collect()
}

/// New terms: value combinations of the history window first seen after the rule's window start, each on
/// its oldest event, in composite (key) order.
fn new_terms_alerts(
    p: &PreparedRule,
    t: &super::new_terms::NewTermsSpec,
    hits: &[(i64, Event)],
    mapping: &Mapping,
    ctx: &alert::AlertContext,
    window: &Window,
) -> Vec<AlertDoc> {
    use std::collections::BTreeMap;
    // hits are oldest first: the first event seen for a key is its first_seen and its oldest document.
    let mut first: BTreeMap<Vec<String>, (i64, &Event)> = BTreeMap::new();
    for (ts, e) in hits {
        for key in combinations(e, &t.fields, mapping) {
            first.entry(key).or_insert((*ts, e));
        }
    }
    let from = window.from.timestamp_millis();
    first
        .into_iter()
        .filter(|(_, (ts, _))| *ts > from)
        .filter_map(|(key, (_, e))| {
            let mut doc = alert::event_alerts(&p.rule, ctx, std::slice::from_ref(e)).pop()?;
            let terms: Vec<serde_json::Value> = key.into_iter().map(serde_json::Value::String).collect();
            let id = super::new_terms::alert_id(&e.index, &e.id, &ctx.space_id, &ctx.rule_uuid, &terms);
            if let Some(obj) = doc.source.as_object_mut() {
                obj.insert("kibana.alert.uuid".into(), serde_json::json!(id));
                obj.insert("kibana.alert.new_terms".into(), serde_json::Value::Array(terms));
            }
            doc.id = id;
            Some(doc)
        })
        .collect()
}
