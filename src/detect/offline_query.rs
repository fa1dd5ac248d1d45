//! `esdetect test` for custom KQL query rules: the file's events evaluated in memory with [`crate::kql::eval`],
//! for the part of KQL whose Elasticsearch result is exact without Elasticsearch (keyword terms, wildcards
//! and exists, combined with and/or/not). A rule outside that part gets an error in its summary saying
//! which construct needs a cluster. Otherwise the same as a cluster run: index patterns matched against
//! `_index`, the window with `--now`, the exceptions, oldest hits first up to `max_signals`, the same alert
//! documents and ids.

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
use crate::source::files::{read_events_file, FileSourceError, Flow, Projection};
use chrono::{DateTime, Utc};
use std::path::Path;
use std::time::Instant;

/// Whether `esdetect test` hands this rule to [`run_on_file`] (custom query rules) rather than to the EQL pass.
pub fn is_query_rule(rule: &PreparedRule) -> bool {
    matches!(rule.kind, RuleKind::Query(_))
}

struct State<'a> {
    prepared: &'a PreparedRule,
    query: Result<Node, String>,
    window: Option<Window>,
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
    let started = Instant::now();
    let mut states: Vec<State<'a>> = rules
        .iter()
        .map(|&p| {
            let query = match &p.kind {
                RuleKind::Query(q) => match &q.kql {
                    Some(n) => eval::check(n, mapping).map(|_| n.clone()).map_err(|why| {
                        format!("not evaluated on files: the query uses {why}; run it with `run --once` against a cluster holding the events")
                    }),
                    None => Err(super::query_rule::offline_refusal(q)),
                },
                _ => Err("not a custom query rule".into()),
            };
            let window = now.map(|t| Window::ending_at(&p.rule, t));
            State {
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
            if let Some(w) = &s.window {
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
            // Kibana pages oldest first (stable for equal times: file order).
            s.hits.sort_by_key(|(t, _)| *t);
            let events: Vec<Event> = s.hits.into_iter().map(|(_, e)| e).collect();
            let ctx = alert_context(s.prepared, opts, run_now);
            let mut docs: Vec<AlertDoc> = alert::event_alerts(&s.prepared.rule, &ctx, &events);
            summary.candidates = docs.len() as u64;
            summary.matches = docs.len() as u64;
            let cap = s.prepared.rule.max_signals as usize;
            if docs.len() > cap {
                docs.truncate(cap);
                summary.truncated = true;
            }
            if cap > 0 && docs.len() >= cap {
                summary.warnings.push(MAX_SIGNALS_WARNING.to_string());
            }
            summary.kept = docs.len() as u64;
            summary.alerts_built = docs.len() as u64;
            let groups = docs.into_iter().map(|d| vec![d]).collect();
            RuleOutcome { prepared: s.prepared, summary: summary.finish(started), groups }
        })
        .collect())
}
