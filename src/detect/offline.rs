//! Every rule over one event file (or a set of in-memory events) in one pass: what `esdetect test` runs.
//!
//! The file is streamed once: each event is parsed into the projection the rules read and offered to every
//! rule ([`super::pass`]); memory holds open sequence state and the kept results, not the file. A file whose
//! events are not in time order (an export concatenated from several searches, say) is detected at its first
//! out-of-order event; the file is then read again into memory as projections (never whole documents),
//! sorted stably by timestamp — exactly what an Elasticsearch search sorted on the timestamp field returns —
//! and evaluated from the start. Each rule gets the same summary a cluster run gives.

use super::pass::{field_set, Member, MemberResult, Pass};
use super::summary::RunSummary;
use super::{alert_context, alert_groups, compile, fetch_window, settle_pass, PreparedRule, RunOptions, Window};
use crate::alert::AlertDoc;
use crate::eql::analyze::CompiledQuery;
use crate::eql::mapping::Mapping;
use crate::eql::plan::Plan;
use crate::eql::engine::Results;
use crate::event::{Event, FileRange};
use crate::source::files::{is_stdin, read_events_file, read_ranges, FileSourceError, Flow, Projection, ReadReport};
use std::collections::HashMap;
use chrono::{DateTime, Utc};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The `_index` given to file items that carry none: such items are offered to every rule.
pub const OFFLINE_INDEX: &str = "offline";

/// One rule's outcome.
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
    pub rules: Vec<RuleOutcome<'a>>,
}

/// The rules of one offline run, compiled, with their windows.
struct Setup<'r, 'a> {
    rules: &'r [&'a PreparedRule],
    mapping: &'r Mapping,
    /// Per rule: the compiled query or why it was rejected.
    compiled: Vec<Result<CompiledQuery, String>>,
    /// Per rule: `[now - from, now]`, or `None` (every event).
    windows: Vec<Option<Window>>,
}

impl<'r, 'a> Setup<'r, 'a> {
    fn new(rules: &'r [&'a PreparedRule], mapping: &'r Mapping, now: Option<DateTime<Utc>>) -> Self {
        let compiled = rules
            .iter()
            .map(|p| match &p.kind {
                // Query, threshold and new terms rules have their own offline path (`offline_query`).
                k if !k.is_eql() => Err(format!("a `{}` rule is not evaluated by the EQL pass", p.rule.rule_type)),
                _ => compile(p, mapping).map_err(|e| format!("query rejected: {}", e.render_all(&p.rule.query))),
            })
            .collect();
        let windows = rules.iter().map(|p| now.map(|t| Window::ending_at(&p.rule, t))).collect();
        Setup { rules, mapping, compiled, windows }
    }

    /// Indices of the rules whose query compiled.
    fn runnable(&self) -> Vec<usize> {
        (0..self.rules.len()).filter(|&i| self.compiled[i].is_ok()).collect()
    }

    /// The projection every runnable rule's reads fit in.
    fn projection(&self) -> Projection {
        let members = self.runnable().into_iter().filter_map(|i| Some((self.rules[i], self.compiled[i].as_ref().ok()?)));
        Projection::Fields(Arc::new(field_set(members)))
    }

    /// Rule `i` as a member of a pass over `plan` (the rule's compiled query, or a fresh copy of it).
    fn member<'p>(&self, i: usize, plan: &'p CompiledQuery) -> Member<'p>
    where
        'r: 'p,
    {
        let window = self.windows[i].map(|w| fetch_window(self.rules[i], plan, w));
        let exceptions_at = self.windows[i].map(|w| w.to).unwrap_or_else(Utc::now);
        Member {
            prepared: self.rules[i],
            plan,
            window,
            exceptions: self.rules[i].exceptions.active_at(exceptions_at).matcher(self.mapping),
        }
    }

    /// Fresh compiled queries of the runnable rules: a second evaluation must not count malformed values
    /// twice.
    fn fresh_plans(&self) -> Vec<CompiledQuery> {
        self.runnable().into_iter().filter_map(|i| compile(self.rules[i], self.mapping).ok()).collect()
    }
}

/// Runs `rules` over the events of `path`. With `now`, each rule sees only its own window
/// `[now - from, now]` (extended back by `maxspan` in complete sequence mode); without, the whole file is
/// one window. Search hits are offered only to the rules whose index patterns match their `_index`. Fails
/// only when the file cannot be read at all (or, for standard input — `path` `-` — when its events are not in
/// time order: it cannot be read again to sort them).
pub fn run_on_file<'a>(
    rules: &[&'a PreparedRule],
    mapping: &Mapping,
    path: &Path,
    now: Option<DateTime<Utc>>,
    opts: &RunOptions,
) -> Result<FileRun<'a>, FileSourceError> {
    let started = Instant::now();
    let setup = Setup::new(rules, mapping, now);
    let projection = setup.projection();
    let runnable = setup.runnable();

    // First try: stream the file as it is.
    let plans: Vec<&CompiledQuery> = runnable.iter().filter_map(|&i| setup.compiled[i].as_ref().ok()).collect();
    let mut pass = Pass::new(runnable.iter().zip(&plans).map(|(&i, plan)| setup.member(i, plan))).filter_by_index(OFFLINE_INDEX);
    let mut out_of_order = None;
    let read = read_events_file(path, OFFLINE_INDEX, &projection, |event| match pass.offer(&Arc::new(event)) {
        Ok(()) => Flow::Continue,
        Err(e) => {
            out_of_order = Some(e.rule_id);
            Flow::Stop
        }
    })?;
    if let Some(rule_id) = out_of_order.clone().filter(|_| is_stdin(path)) {
        return Err(FileSourceError::StdinNotSorted { rule_id });
    }
    if out_of_order.is_none() {
        let results = pass.finish();
        let read_back = |ranges: &[FileRange]| read_ranges(path, ranges);
        let rules = outcomes(&setup, &plans, results, &read, opts, started, Some(&read_back));
        return Ok(FileRun { read, rules });
    }
    drop(pass);
    let mut events: Vec<Arc<Event>> = Vec::new();
    let read = read_events_file(path, OFFLINE_INDEX, &projection, |e| {
        events.push(Arc::new(e));
        Flow::Continue
    })?;
    let fresh = setup.fresh_plans();
    let fresh_refs: Vec<&CompiledQuery> = fresh.iter().collect();
    let results = sorted_pass(&setup, &fresh_refs, &events, true);
    let read_back = |ranges: &[FileRange]| read_ranges(path, ranges);
    let rules = outcomes(&setup, &fresh_refs, results, &read, opts, started, Some(&read_back));
    Ok(FileRun { read, rules })
}

/// Runs `rules` over in-memory events (any order; every event is offered to every rule, whatever its
/// `_index`), like [`run_on_file`].
pub fn run_on_events<'a>(
    rules: &[&'a PreparedRule],
    mapping: &Mapping,
    events: impl IntoIterator<Item = Event>,
    now: Option<DateTime<Utc>>,
    opts: &RunOptions,
) -> Vec<RuleOutcome<'a>> {
    let started = Instant::now();
    let setup = Setup::new(rules, mapping, now);
    let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
    let plans: Vec<&CompiledQuery> = setup.runnable().into_iter().filter_map(|i| setup.compiled[i].as_ref().ok()).collect();
    let results = sorted_pass(&setup, &plans, &events, false);
    outcomes(&setup, &plans, results, &ReadReport { events: events.len() as u64, ..ReadReport::default() }, opts, started, None)
}

/// Where the texts of events that stayed in their file are read back from.
type ReadBack<'f> = &'f dyn Fn(&[FileRange]) -> Result<HashMap<FileRange, Arc<str>>, FileSourceError>;

/// Turns each runnable rule's pass result (in runnable order, evaluated with `plans`) into its outcome.
/// Result events whose text stayed in the file get it back first, in one read for every rule.
fn outcomes<'a>(
    setup: &Setup<'_, 'a>,
    plans: &[&CompiledQuery],
    results: Vec<MemberResult>,
    read: &ReadReport,
    opts: &RunOptions,
    started: Instant,
    read_back: Option<ReadBack<'_>>,
) -> Vec<RuleOutcome<'a>> {
    // Phase 1: each rule's selected results and summary.
    let mut results = results.into_iter().zip(plans);
    let mut evaluated: Vec<(RunSummary, Option<Results>)> = Vec::with_capacity(setup.rules.len());
    for (i, &prepared) in setup.rules.iter().enumerate() {
        let window_or_span = |span: Option<(i64, i64)>| {
            setup.windows[i].unwrap_or_else(|| {
                let (from, to) = span.unwrap_or((0, 0));
                Window {
                    from: DateTime::from_timestamp_millis(from).unwrap_or_default(),
                    to: DateTime::from_timestamp_millis(to).unwrap_or_default(),
                }
            })
        };
        if let Err(message) = &setup.compiled[i] {
            let mut summary = RunSummary::new(prepared, window_or_span(None));
            summary.errors.push(message.clone());
            evaluated.push((summary, None));
            continue;
        }
        let (MemberResult { offered, outside_indices, excepted, span_ms, output }, plan) =
            results.next().expect("one result per runnable rule");
        let mut summary = RunSummary::new(prepared, window_or_span(span_ms));
        summary.fetched = offered;
        summary.record_excepted(excepted);
        if outside_indices > 0 {
            summary.skipped.insert("`_index` matches none of the rule's index patterns".into(), outside_indices);
        }
        record_read(&mut summary, read);
        let mut output = match output {
            Ok(o) => o,
            Err(e) => {
                summary.errors.push(format!("query failed while evaluating: {}", e.render(&prepared.rule.query)));
                evaluated.push((summary, None));
                continue;
            }
        };
        settle_pass(&mut summary, prepared, plan, setup.windows[i].as_ref(), None, &mut output);
        evaluated.push((summary, Some(output.results)));
    }

    // Phase 2: the texts of the result events that stayed in the file, in one read.
    if let Some(read_back) = read_back {
        let ranges: Vec<FileRange> =
            evaluated.iter().filter_map(|(_, r)| r.as_ref()).flat_map(result_events).filter_map(Event::file_range).collect();
        if !ranges.is_empty() {
            match read_back(&ranges) {
                Ok(texts) => {
                    for (_, results) in &mut evaluated {
                        for event in results.iter_mut().flat_map(result_events_mut) {
                            if let Some(text) = event.file_range().and_then(|r| texts.get(&r)) {
                                event.attach_text(Arc::clone(text));
                            }
                        }
                    }
                }
                Err(e) => {
                    for (summary, results) in &mut evaluated {
                        if results.take().is_some() {
                            summary.errors.push(format!("could not read the matched events back from the file: {e}"));
                        }
                    }
                }
            }
        }
    }

    // Phase 3: alert documents.
    let run_now = Utc::now();
    setup
        .rules
        .iter()
        .zip(evaluated)
        .map(|(&prepared, (mut summary, results))| {
            let groups = match results {
                Some(results) => {
                    let ctx = alert_context(prepared, opts, run_now);
                    let groups = alert_groups(prepared, &ctx, &results);
                    // Alert suppression offline: only its in-run part (no alerts index to merge with).
                    match crate::alert::suppression::Suppression::from_rule(&prepared.rule).ok().flatten() {
                        Some(s) => {
                            let (groups, suppressed) =
                                crate::alert::suppression::apply_offline(&s, &prepared.rule, &ctx.rule_uuid, &ctx.space_id, groups);
                            summary.suppressed = suppressed as u64;
                            groups
                        }
                        None => groups,
                    }
                }
                None => Vec::new(),
            };
            summary.alerts_built = groups.iter().map(|g| g.len() as u64).sum();
            RuleOutcome { prepared, summary: summary.finish(started), groups }
        })
        .collect()
}

fn result_events(results: &Results) -> Box<dyn Iterator<Item = &Event> + '_> {
    match results {
        Results::Events(events) => Box::new(events.iter()),
        Results::Sequences(seqs) => Box::new(seqs.iter().flat_map(|s| s.events.iter())),
    }
}

fn result_events_mut(results: &mut Results) -> Box<dyn Iterator<Item = &mut Event> + '_> {
    match results {
        Results::Events(events) => Box::new(events.iter_mut()),
        Results::Sequences(seqs) => Box::new(seqs.iter_mut().flat_map(|s| s.events.iter_mut())),
    }
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

/// Sorts `events` by each rule's timestamp field (stable, so events of one instant keep their order before
/// the engine's own ordinal sort) and runs the runnable rules over them; results in runnable order.
fn sorted_pass(setup: &Setup<'_, '_>, plans: &[&CompiledQuery], events: &[Arc<Event>], filter_index: bool) -> Vec<MemberResult> {
    let runnable = setup.runnable();
    // Rules that order by the same field share one sort.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (k, &i) in runnable.iter().enumerate() {
        let field = super::query_options(&setup.rules[i].rule).timestamp_field;
        match groups.iter_mut().find(|(f, _)| *f == field) {
            Some((_, members)) => members.push(k),
            None => groups.push((field, vec![k])),
        }
    }
    let mut results: Vec<Option<MemberResult>> = (0..runnable.len()).map(|_| None).collect();
    for (_, members) in groups {
        let order_plan = plans[members[0]];
        let mut keyed: Vec<(Option<i64>, &Arc<Event>)> = events.iter().map(|e| (order_plan.timestamp_ms(e), e)).collect();
        keyed.sort_by_key(|(ts, _)| *ts);
        let mut pass = Pass::new(members.iter().map(|&k| setup.member(runnable[k], plans[k])));
        if filter_index {
            pass = pass.filter_by_index(OFFLINE_INDEX);
        }
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
    results.into_iter().map(|r| r.expect("every rule is in one group")).collect()
}
