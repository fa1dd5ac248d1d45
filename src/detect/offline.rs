//! Every rule over one event file in one pass: what `esdetect test` runs.
//!
//! The file is streamed once: each event is parsed into the projection the rules read and offered to every
//! rule ([`super::pass`]); memory holds open sequence state and the kept results, not the file. A file whose
//! events are not in time order (an export concatenated from several searches, say) is detected at its first
//! out-of-order event; the file is then read again into memory as projections (never whole documents),
//! sorted stably by timestamp — exactly what an Elasticsearch search sorted on the timestamp field returns —
//! and evaluated from the start. Each rule gets the same summary a cluster run gives.

use super::pass::{field_set, Member, MemberResult, Pass};
use super::summary::RunSummary;
use super::{alert_context, alert_groups, compile, keep_new_sequences, mode_of, PreparedRule, RunOptions, Window};
use crate::alert::AlertDoc;
use crate::eql::analyze::CompiledQuery;
use crate::eql::mapping::Mapping;
use crate::eql::plan::Plan;
use crate::event::Event;
use crate::source::files::{read_events_file, FileSourceError, Flow, Projection, ReadReport};
use chrono::{DateTime, Utc};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The `_index` given to file items that carry none: such items are offered to every rule.
pub const OFFLINE_INDEX: &str = "offline";

/// One rule's outcome over the file.
#[derive(Debug)]
pub struct RuleOutcome<'a> {
    pub prepared: &'a PreparedRule,
    pub summary: RunSummary,
    /// Alert documents, grouped as they would be written (one event alert, or a sequence's shell and
    /// building blocks).
    pub groups: Vec<Vec<AlertDoc>>,
}

/// What a file run did.
#[derive(Debug)]
pub struct FileRun<'a> {
    pub read: ReadReport,
    /// The file was not in time order and was evaluated from memory, sorted.
    pub sorted_in_memory: bool,
    pub rules: Vec<RuleOutcome<'a>>,
}

/// Runs `rules` over the events of `path`. With `now`, each rule sees only its own window
/// `[now - from, now]` (extended back by `maxspan` in complete sequence mode); without, the whole file is
/// one window. Fails only when the file cannot be read at all.
pub fn run_on_file<'a>(
    rules: &[&'a PreparedRule],
    mapping: &Mapping,
    path: &Path,
    now: Option<DateTime<Utc>>,
    opts: &RunOptions,
) -> Result<FileRun<'a>, FileSourceError> {
    let started = Instant::now();
    let compiled: Vec<Result<CompiledQuery, String>> =
        rules.iter().map(|p| compile(p, mapping).map_err(|e| format!("query rejected: {}", e.render(&p.rule.query)))).collect();
    let runnable: Vec<(usize, &CompiledQuery)> =
        compiled.iter().enumerate().filter_map(|(i, c)| c.as_ref().ok().map(|plan| (i, plan))).collect();
    let windows: Vec<Option<Window>> = rules.iter().map(|p| now.map(|t| Window::ending_at(&p.rule, t))).collect();
    let fetch_window = |i: usize, plan: &CompiledQuery| {
        windows[i].map(|w| mode_of(rules[i], plan).map(|ms| w.extended_back(ms)).unwrap_or(w))
    };
    let projection = Projection::Fields(Arc::new(field_set(runnable.iter().map(|(i, plan)| (rules[*i], *plan)))));

    // First try: stream the file as it is.
    let mut pass = Pass::new(runnable.iter().map(|(i, plan)| Member { prepared: rules[*i], plan, window: fetch_window(*i, plan) }))
        .filter_by_index(OFFLINE_INDEX);
    let mut out_of_order = false;
    let read = read_events_file(path, OFFLINE_INDEX, &projection, |event| match pass.offer(&Arc::new(event)) {
        Ok(()) => Flow::Continue,
        Err(_) => {
            out_of_order = true;
            Flow::Stop
        }
    })?;
    let (read, results, fresh_plans) = if out_of_order {
        drop(pass);
        // Fresh plans: the first try's counters (malformed values) must not count twice.
        let plans: Vec<CompiledQuery> = runnable.iter().map(|(i, _)| compile(rules[*i], mapping).expect("compiled before")).collect();
        let (read, results) = sorted_pass(rules, &runnable, &plans, path, &projection, &fetch_window)?;
        (read, results, Some(plans))
    } else {
        (read, pass.finish(), None)
    };

    let run_now = Utc::now();
    let mut results = results.into_iter();
    let mut outcomes = Vec::with_capacity(rules.len());
    let mut plan_at = 0usize;
    for (i, prepared) in rules.iter().enumerate() {
        let window_or_span = |span: Option<(i64, i64)>| {
            windows[i].unwrap_or_else(|| {
                let (from, to) = span.unwrap_or((0, 0));
                Window {
                    from: DateTime::from_timestamp_millis(from).unwrap_or_default(),
                    to: DateTime::from_timestamp_millis(to).unwrap_or_default(),
                }
            })
        };
        let plan = match &compiled[i] {
            Err(message) => {
                let summary = RunSummary::new(prepared, window_or_span(None)).fail(message.clone(), started);
                outcomes.push(RuleOutcome { prepared, summary, groups: Vec::new() });
                continue;
            }
            Ok(plan) => match &fresh_plans {
                Some(plans) => &plans[plan_at],
                None => plan,
            },
        };
        plan_at += 1;
        let MemberResult { offered, outside_indices, span_ms, output } = results.next().expect("one result per runnable rule");
        let mut summary = RunSummary::new(prepared, window_or_span(span_ms));
        summary.fetched = offered;
        if outside_indices > 0 {
            summary.skipped.insert("`_index` matches none of the rule's index patterns".into(), outside_indices);
        }
        record_read(&mut summary, &read);
        let mut output = match output {
            Ok(o) => o,
            Err(e) => {
                let summary = summary.fail(format!("query failed while evaluating: {}", e.render(&prepared.rule.query)), started);
                outcomes.push(RuleOutcome { prepared, summary, groups: Vec::new() });
                continue;
            }
        };
        if let (Some(w), Some(_)) = (windows[i], mode_of(prepared, plan)) {
            keep_new_sequences(plan, &w, None, &mut output.results);
        }
        summary.record_evaluation(&output, plan.malformed_values(), prepared.rule.max_signals);
        let groups = alert_groups(prepared, &alert_context(prepared, opts, run_now), &output.results);
        summary.alerts_built = groups.iter().map(|g| g.len() as u64).sum();
        outcomes.push(RuleOutcome { prepared, summary: summary.finish(started), groups });
    }
    Ok(FileRun { read, sorted_in_memory: out_of_order, rules: outcomes })
}

/// File-level problems go into every rule's summary: each rule's results depend on them.
fn record_read(summary: &mut RunSummary, read: &ReadReport) {
    for (reason, n) in &read.skipped_by_reason {
        summary.skipped.insert(format!("unreadable item: {reason}"), *n);
    }
    if let Some(why) = &read.truncated {
        summary.warnings.push(format!("the file ends early ({why}); {} event(s) before the break were evaluated", read.events));
    }
}

/// Reads the whole file as projections, sorts it by each rule's timestamp field (stable, so events of one
/// instant keep file order before the engine's own ordinal sort) and runs the rules over it.
fn sorted_pass<'a>(
    rules: &[&'a PreparedRule],
    runnable: &[(usize, &CompiledQuery)],
    plans: &'a [CompiledQuery],
    path: &Path,
    projection: &Projection,
    fetch_window: &dyn Fn(usize, &CompiledQuery) -> Option<Window>,
) -> Result<(ReadReport, Vec<MemberResult>), FileSourceError> {
    let mut events: Vec<Arc<Event>> = Vec::new();
    let read = read_events_file(path, OFFLINE_INDEX, projection, |e| {
        events.push(Arc::new(e));
        Flow::Continue
    })?;
    // Rules that order by the same field share one sort.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (k, (i, _)) in runnable.iter().enumerate() {
        let field = super::query_options(&rules[*i].rule).timestamp_field;
        match groups.iter_mut().find(|(f, _)| *f == field) {
            Some((_, members)) => members.push(k),
            None => groups.push((field, vec![k])),
        }
    }
    let mut results: Vec<Option<MemberResult>> = (0..runnable.len()).map(|_| None).collect();
    for (_, members) in groups {
        let order_plan = &plans[members[0]];
        let mut keyed: Vec<(Option<i64>, &Arc<Event>)> = events.iter().map(|e| (order_plan.timestamp_ms(e), e)).collect();
        keyed.sort_by_key(|(ts, _)| *ts);
        let mut pass = Pass::new(members.iter().map(|&k| {
            let i = runnable[k].0;
            Member { prepared: rules[i], plan: &plans[k], window: fetch_window(i, &plans[k]) }
        }))
        .filter_by_index(OFFLINE_INDEX);
        for (_, e) in keyed {
            // Cannot happen: the rules of a group order by the same field, and the events are sorted on it.
            if let Err(e) = pass.offer(e) {
                tracing::error!(rule_id = %e.rule_id, "sorted events arrived out of order; the rule's results stop here");
            }
        }
        for (k, r) in members.into_iter().zip(pass.finish()) {
            results[k] = Some(r);
        }
    }
    Ok((read, results.into_iter().map(|r| r.expect("every rule is in one group")).collect()))
}
