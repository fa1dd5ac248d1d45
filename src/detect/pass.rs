//! One pass over a stream of events for every rule at once.
//!
//! Each event is parsed once (a projection holding the fields of [`field_set`]) and offered to every rule
//! it belongs to: its `_index` matches the rule's index patterns (when the source tells), and its window
//! field lies in the rule's window (Kibana's range filter, `window::event_in_window`). Rules share the
//! event through an `Arc`; no rule copies it. Each rule keeps its own [`Runner`] (ordering of the current
//! millisecond, sequence state, head/tail selection), so per-rule results are exactly what a run of that
//! rule alone would give.
//!
//! Events must arrive in non-decreasing order of each rule's timestamp field. A source that cannot promise
//! it (an arbitrary file) learns about the first violation from [`Pass::offer`] and starts again sorted.

use super::indices::IndexPatterns;
use super::window::{event_in_window, Window, WindowFields};
use super::PreparedRule;
use crate::eql::analyze::CompiledQuery;
use crate::eql::engine::{RunOutput, Runner};
use crate::eql::plan::Plan;
use crate::eql::EqlError;
use crate::event::{Event, FieldSet};
use crate::exceptions::ExceptionMatcher;
use std::sync::Arc;

/// One rule of a pass: its compiled query, the window of events it reads (`None`: every event) and its
/// exceptions (an excepted event is invisible to the query, as under Kibana's `must_not`).
pub struct Member<'a> {
    pub prepared: &'a PreparedRule,
    pub plan: &'a CompiledQuery,
    pub window: Option<Window>,
    pub exceptions: ExceptionMatcher,
}

/// Every `_source` path the members read: query fields, timestamp, tiebreaker, join keys, the fields that
/// place an event in a window and those its exceptions test.
pub fn field_set<'a>(members: impl IntoIterator<Item = (&'a PreparedRule, &'a CompiledQuery)>) -> FieldSet {
    let mut paths = Vec::new();
    for (prepared, plan) in members {
        paths.extend(plan.fields_read());
        let window = WindowFields::for_rule(&prepared.rule);
        paths.push(window.primary);
        paths.extend(window.fallback);
        paths.extend(prepared.exceptions.fields());
    }
    FieldSet::new(paths)
}

/// An event arrived earlier than one before it for this rule: the stream is not sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfOrder {
    pub rule_id: String,
}

/// What one member's pass produced.
#[derive(Debug)]
pub struct MemberResult {
    /// Events offered to the rule (inside its window and indices).
    pub offered: u64,
    /// Events not offered because their `_index` matches none of the rule's index patterns.
    pub outside_indices: u64,
    /// Events removed by the rule's exceptions.
    pub excepted: u64,
    /// Earliest and latest timestamp offered (epoch ms).
    pub span_ms: Option<(i64, i64)>,
    pub output: Result<RunOutput, EqlError>,
}

struct State<'a> {
    member: Member<'a>,
    window_fields: WindowFields,
    indices: IndexPatterns,
    runner: Runner<'a, CompiledQuery>,
    offered: u64,
    outside_indices: u64,
    excepted: u64,
    span_ms: Option<(i64, i64)>,
    error: Option<EqlError>,
    /// The last `_index` seen and whether it matched (hits of one index come in runs).
    index_cache: Option<(String, bool)>,
}

/// The rules of one pass and their running state.
pub struct Pass<'a> {
    states: Vec<State<'a>>,
    /// Offer events only to rules whose patterns match their `_index` (false: every event to every rule).
    filter_indices: bool,
    /// Events whose `_index` is this name carry no real index (offline items without `_index`).
    unindexed: Option<String>,
}

impl<'a> Pass<'a> {
    pub fn new(members: impl IntoIterator<Item = Member<'a>>) -> Pass<'a> {
        let states = members
            .into_iter()
            .map(|member| State {
                window_fields: WindowFields::for_rule(&member.prepared.rule),
                indices: IndexPatterns::new(&member.prepared.rule.index),
                runner: Runner::new(member.plan),
                offered: 0,
                outside_indices: 0,
                excepted: 0,
                span_ms: None,
                error: None,
                index_cache: None,
                member,
            })
            .collect();
        Pass { states, filter_indices: false, unindexed: None }
    }

    /// Offers each event only to the rules whose index patterns match its `_index`, except events whose
    /// `_index` is `unindexed` (the name a file source gives items without one).
    pub fn filter_by_index(mut self, unindexed: &str) -> Self {
        self.filter_indices = true;
        self.unindexed = Some(unindexed.to_string());
        self
    }

    /// Offers one event to every rule it belongs to.
    pub fn offer(&mut self, event: &Arc<Event>) -> Result<(), OutOfOrder> {
        let indexed = self.filter_indices && self.unindexed.as_deref() != Some(event.index.as_str());
        for s in &mut self.states {
            if s.error.is_some() {
                continue;
            }
            if indexed {
                let matches = match &s.index_cache {
                    Some((index, m)) if *index == event.index => *m,
                    _ => {
                        let m = s.indices.matches(&event.index);
                        s.index_cache = Some((event.index.clone(), m));
                        m
                    }
                };
                if !matches {
                    s.outside_indices += 1;
                    continue;
                }
            }
            if let Some(w) = &s.member.window {
                if !event_in_window(&s.window_fields, w, event) {
                    continue;
                }
            }
            if !s.member.exceptions.is_empty() && s.member.exceptions.excludes(event) {
                s.excepted += 1;
                continue;
            }
            if let Some(ts) = s.member.plan.timestamp_ms(event) {
                match s.span_ms {
                    Some((_, last)) if ts < last => return Err(OutOfOrder { rule_id: s.member.prepared.rule.rule_id.clone() }),
                    Some((first, _)) => s.span_ms = Some((first, ts)),
                    None => s.span_ms = Some((ts, ts)),
                }
            }
            s.offered += 1;
            if let Err(e) = s.runner.push_shared(Arc::clone(event)) {
                s.error = Some(e);
            }
        }
        Ok(())
    }

    /// Ends the pass: each member's results, in member order.
    pub fn finish(self) -> Vec<MemberResult> {
        self.states
            .into_iter()
            .map(|s| MemberResult {
                offered: s.offered,
                outside_indices: s.outside_indices,
                excepted: s.excepted,
                span_ms: s.span_ms,
                output: match s.error {
                    Some(e) => Err(e),
                    None => s.runner.finish(),
                },
            })
            .collect()
    }
}
