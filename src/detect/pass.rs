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
use crate::eql::analyze::{CompiledQuery, Gate};
use crate::eql::eval::FieldAcc;
use crate::eql::value::Val;
use std::sync::atomic::AtomicU64;
use crate::eql::engine::{Evaluation, Runner};
use crate::eql::plan::Plan;
use crate::eql::EqlError;
use crate::event::{Event, FieldSet};
use crate::exceptions::ExceptionMatcher;
use rustc_hash::FxHashMap;
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
    FieldSet::new(field_paths(members))
}

/// The paths of [`field_set`], sorted and without duplicates (also the `_source` filter of a cluster scan).
pub fn field_paths<'a>(members: impl IntoIterator<Item = (&'a PreparedRule, &'a CompiledQuery)>) -> Vec<String> {
    let mut paths = Vec::new();
    for (prepared, plan) in members {
        paths.extend(plan.fields_read());
        let window = WindowFields::for_rule(&prepared.rule);
        paths.push(window.primary);
        paths.extend(window.fallback);
        paths.extend(prepared.exceptions.fields());
    }
    paths.retain(|p| !p.is_empty());
    paths.sort();
    paths.dedup();
    paths
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
    pub output: Result<Evaluation, EqlError>,
}

struct State<'a> {
    member: Member<'a>,
    /// The rule's cohort: the rules that take exactly the same events ([`Cohort`]).
    cohort: usize,
    runner: Runner<'a, CompiledQuery>,
    error: Option<EqlError>,
    /// The cohort's counts when the rule failed (it counts no further events).
    frozen: Option<Counts>,
}

/// What a cohort's rules were offered (see [`MemberResult`]).
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    offered: u64,
    outside_indices: u64,
    excepted: u64,
    span_ms: Option<(i64, i64)>,
}

/// Rules that take exactly the same events: the same index patterns, window and timestamp field, and no
/// exceptions (a rule with exceptions is a cohort of its own). Which events they are offered and the counts
/// of the summary are decided once per cohort, not once per rule; then each ungated member and each marked
/// gated member ([`Gates`]) gets the event.
struct Cohort {
    /// Index into the pass's distinct timestamp readers, index pattern sets and windows.
    clock: usize,
    indices: usize,
    window: Option<usize>,
    /// The member whose exceptions apply (only in a cohort of one).
    excepting: Option<usize>,
    members: Vec<usize>,
    /// Members without gates: offered every event of the cohort.
    ungated: Vec<usize>,
    /// Members that have not failed; a cohort with none is skipped.
    alive: usize,
    counts: Counts,
    /// This event: its timestamp when the cohort takes it (`None`: it does not).
    taken: Option<Option<i64>>,
}

/// Per-event work that rules share when their settings are the same: computed once per event for each
/// distinct setting, not once per rule.
struct Shared<'a> {
    /// Distinct timestamp fields, each read through the plan of the first rule that orders by it.
    clocks: Vec<(String, &'a CompiledQuery)>,
    /// Distinct index pattern sets, each with the answers for the `_index` values seen so far.
    index_sets: Vec<(Vec<String>, IndexPatterns, FxHashMap<String, bool>)>,
    /// Distinct windows with the fields that place an event in them.
    windows: Vec<(WindowFields, Window)>,
    /// This event's answers, filled lazily.
    ts_now: Vec<Option<Option<i64>>>,
    index_now: Vec<Option<bool>>,
    window_now: Vec<Option<bool>>,
}

impl<'a> Shared<'a> {
    fn timestamp(&mut self, k: usize, event: &Event) -> Option<i64> {
        *self.ts_now[k].get_or_insert_with(|| self.clocks[k].1.timestamp_ms(event))
    }

    fn in_indices(&mut self, k: usize, index: &str) -> bool {
        *self.index_now[k].get_or_insert_with(|| {
            let (_, patterns, seen) = &mut self.index_sets[k];
            match seen.get(index) {
                Some(m) => *m,
                None => {
                    let m = patterns.matches(index);
                    seen.insert(index.to_string(), m);
                    m
                }
            }
        })
    }

    fn in_window(&mut self, k: usize, event: &Event) -> bool {
        *self.window_now[k].get_or_insert_with(|| {
            let (fields, window) = &self.windows[k];
            event_in_window(fields, window, event)
        })
    }
}

/// The rules' gates (`CompiledQuery::gate_sets`) as an index from field values to rules: per event, the
/// values of the gate fields (`event.code`, `event.action`, `user.name`, …) are read once and mark the
/// rules that may care; a gated rule that is not marked skips the event — it could match none of its
/// stages. A stage's gate is met when the event meets every one of its conditions (each an equality test
/// of the stage's `and`); a rule is marked when one of its stages' gates is. This is what keeps a thousand
/// rules close to the cost of a few: rules that differ only in a constant are told apart by the index, not
/// by evaluating each of them.
///
/// Identical conditions of different rules (`host.os.type == "windows"` is in hundreds of them) are one
/// condition, met or not once per event. Each stage is then looked at only when its *anchor* is met: the
/// condition of the stage that the fewest stages share, so a common condition does not visit every stage
/// that has it.
#[derive(Default)]
struct Gates {
    /// Distinct gate fields, each read through the accessor of the first rule that gates on it.
    fields: Vec<FieldAcc>,
    /// Per field: exact value → conditions; ASCII-lower-case value → conditions (case-insensitive tests).
    exact: Vec<FxHashMap<String, Vec<u32>>>,
    folded: Vec<FxHashMap<String, Vec<u32>>>,
    /// Distinct conditions (field, case-insensitive, sorted values), to share them between stages.
    cond_keys: FxHashMap<(usize, bool, Vec<String>), u32>,
    /// Per condition: the event number that last met it, the number of stages that have it and the stages
    /// it anchors.
    cond_met: Vec<u64>,
    cond_uses: Vec<u32>,
    anchors: Vec<Vec<u32>>,
    /// The conditions met by this event.
    met: Vec<u32>,
    /// Per stage gate: its rule and its conditions.
    stage_rule: Vec<usize>,
    stage_conds: Vec<Vec<u32>>,
    /// Per rule: the event number that last marked it.
    marks: Vec<u64>,
    /// The rules marked for this event.
    marked: Vec<usize>,
    event_no: u64,
}

impl Gates {
    fn add(&mut self, rule: usize, stages: &[Vec<Gate>]) {
        for conditions in stages {
            let mut conds = Vec::with_capacity(conditions.len());
            for g in conditions {
                let f = match self.fields.iter().position(|a| a.source_path == g.field.source_path && a.kind == g.field.kind) {
                    Some(f) => f,
                    None => {
                        self.fields.push(g.field.clone());
                        self.exact.push(FxHashMap::default());
                        self.folded.push(FxHashMap::default());
                        self.fields.len() - 1
                    }
                };
                let mut values = g.values.clone();
                values.sort();
                values.dedup();
                let next = self.cond_met.len() as u32;
                let condition = *self.cond_keys.entry((f, g.ascii_ci, values)).or_insert(next);
                if condition == next {
                    self.cond_met.push(0);
                    self.cond_uses.push(0);
                    self.anchors.push(Vec::new());
                    let map = if g.ascii_ci { &mut self.folded[f] } else { &mut self.exact[f] };
                    for v in &g.values {
                        let list = map.entry(v.clone()).or_default();
                        if list.last() != Some(&condition) {
                            list.push(condition);
                        }
                    }
                }
                if !conds.contains(&condition) {
                    conds.push(condition);
                }
            }
            for &c in &conds {
                self.cond_uses[c as usize] += 1;
            }
            self.stage_rule.push(rule);
            self.stage_conds.push(conds);
        }
    }

    /// Chooses each stage's anchor, once every rule is added.
    fn seal(&mut self, rules: usize) {
        for (stage, conds) in self.stage_conds.iter().enumerate() {
            // Every stage has a condition (`gate_sets` gives none without).
            if let Some(&anchor) = conds.iter().min_by_key(|&&c| self.cond_uses[c as usize]) {
                self.anchors[anchor as usize].push(stage as u32);
            }
        }
        self.marks = vec![0; rules];
    }

    /// Marks the rules whose gates `event` meets.
    fn mark(&mut self, event: &Event) {
        self.event_no += 1;
        let unused = AtomicU64::new(0);
        self.marked.clear();
        self.met.clear();
        let now = self.event_no;
        let Gates { fields, exact, folded, cond_met, met, .. } = self;
        let mut meet = |conditions: &[u32]| {
            for &c in conditions {
                if cond_met[c as usize] != now {
                    cond_met[c as usize] = now;
                    met.push(c);
                }
            }
        };
        for (f, acc) in fields.iter().enumerate() {
            acc.any(&event.source, &unused, &mut |v| {
                if let Val::Ip(ip) = v {
                    // Ip gates hold the addresses' text (IPv6 form, as `Val::Ip` keeps them).
                    if let Some(conditions) = exact[f].get(ip.to_string().as_str()) {
                        meet(conditions);
                    }
                } else if let Val::Str(s) = v {
                    if let Some(conditions) = exact[f].get(s.as_ref()) {
                        meet(conditions);
                    }
                    if s.is_ascii() && !folded[f].is_empty() {
                        // Most values are lower case already: no copy for them.
                        let lower: std::borrow::Cow<str> = if s.bytes().any(|b| b.is_ascii_uppercase()) {
                            s.to_ascii_lowercase().into()
                        } else {
                            s.as_ref().into()
                        };
                        if let Some(conditions) = folded[f].get(lower.as_ref()) {
                            meet(conditions);
                        }
                    }
                }
                false
            });
        }
        for &c in &self.met {
            for &stage in &self.anchors[c as usize] {
                let stage = stage as usize;
                let rule = self.stage_rule[stage];
                if self.marks[rule] != now && self.stage_conds[stage].iter().all(|&d| self.cond_met[d as usize] == now) {
                    self.marks[rule] = now;
                    self.marked.push(rule);
                }
            }
        }
    }
}

/// The position of `key` in `list`, appended when new.
fn slot<K: PartialEq, V>(list: &mut Vec<V>, key: &K, key_of: impl Fn(&V) -> &K, make: impl FnOnce() -> V) -> usize {
    match list.iter().position(|v| key_of(v) == key) {
        Some(i) => i,
        None => {
            list.push(make());
            list.len() - 1
        }
    }
}

/// The rules of one pass and their running state.
pub struct Pass<'a> {
    states: Vec<State<'a>>,
    cohorts: Vec<Cohort>,
    shared: Shared<'a>,
    gates: Gates,
    /// Offer events only to rules whose patterns match their `_index` (false: every event to every rule).
    filter_indices: bool,
    /// Events whose `_index` is this name carry no real index (offline items without `_index`).
    unindexed: Option<String>,
}

impl<'a> Pass<'a> {
    pub fn new(members: impl IntoIterator<Item = Member<'a>>) -> Pass<'a> {
        let mut shared = Shared {
            clocks: Vec::new(),
            index_sets: Vec::new(),
            windows: Vec::new(),
            ts_now: Vec::new(),
            index_now: Vec::new(),
            window_now: Vec::new(),
        };
        let mut gates = Gates::default();
        let mut cohorts: Vec<Cohort> = Vec::new();
        let states: Vec<State<'a>> = members
            .into_iter()
            .enumerate()
            .map(|(n, member)| {
                let rule_gates = member.plan.gate_sets();
                if let Some(g) = &rule_gates {
                    gates.add(n, g);
                }
                let rule = &member.prepared.rule;
                let field = super::query_options(rule).timestamp_field;
                let plan = member.plan;
                let clock = slot(&mut shared.clocks, &field, |(f, _)| f, || (field.clone(), plan));
                let indices = slot(&mut shared.index_sets, &rule.index, |(i, _, _)| i, || {
                    (rule.index.clone(), IndexPatterns::new(&rule.index), FxHashMap::default())
                });
                let window = member.window.map(|w| {
                    let key = (WindowFields::for_rule(rule), w);
                    slot(&mut shared.windows, &key, |k| k, || key.clone())
                });
                let excepting = (!member.exceptions.is_empty()).then_some(n);
                let same = |c: &Cohort| c.excepting.is_none() && excepting.is_none() && (c.clock, c.indices, c.window) == (clock, indices, window);
                let cohort = match cohorts.iter().position(same) {
                    Some(c) => c,
                    None => {
                        cohorts.push(Cohort {
                            clock,
                            indices,
                            window,
                            excepting,
                            members: Vec::new(),
                            ungated: Vec::new(),
                            alive: 0,
                            counts: Counts::default(),
                            taken: None,
                        });
                        cohorts.len() - 1
                    }
                };
                let c = &mut cohorts[cohort];
                c.members.push(n);
                c.alive += 1;
                if rule_gates.is_none() {
                    c.ungated.push(n);
                }
                State { cohort, runner: Runner::new(member.plan), error: None, frozen: None, member }
            })
            .collect();
        shared.ts_now = vec![None; shared.clocks.len()];
        shared.index_now = vec![None; shared.index_sets.len()];
        shared.window_now = vec![None; shared.windows.len()];
        gates.seal(states.len());
        Pass { states, cohorts, shared, gates, filter_indices: false, unindexed: None }
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
        let shared = &mut self.shared;
        shared.ts_now.iter_mut().for_each(|v| *v = None);
        shared.index_now.iter_mut().for_each(|v| *v = None);
        shared.window_now.iter_mut().for_each(|v| *v = None);
        if !self.gates.fields.is_empty() {
            self.gates.mark(event);
        }
        let states = &mut self.states;
        for cohort in self.cohorts.iter_mut() {
            cohort.taken = None;
            if cohort.alive == 0 {
                continue;
            }
            if indexed && !shared.in_indices(cohort.indices, &event.index) {
                cohort.counts.outside_indices += 1;
                continue;
            }
            if let Some(w) = cohort.window {
                if !shared.in_window(w, event) {
                    continue;
                }
            }
            if let Some(r) = cohort.excepting {
                if states[r].member.exceptions.excludes(event) {
                    cohort.counts.excepted += 1;
                    continue;
                }
            }
            let ts = shared.timestamp(cohort.clock, event);
            let counts = &mut cohort.counts;
            if let Some(ts) = ts {
                match counts.span_ms {
                    Some((_, last)) if ts < last => {
                        let first_alive = cohort.members.iter().find(|&&r| states[r].error.is_none()).copied().unwrap_or(cohort.members[0]);
                        return Err(OutOfOrder { rule_id: states[first_alive].member.prepared.rule.rule_id.clone() });
                    }
                    Some((first, _)) => counts.span_ms = Some((first, ts)),
                    None => counts.span_ms = Some((ts, ts)),
                }
            }
            counts.offered += 1;
            cohort.taken = Some(ts);
            for i in 0..cohort.ungated.len() {
                let r = cohort.ungated[i];
                push(&mut states[r], cohort, event, ts);
            }
        }
        for &r in &self.gates.marked {
            let cohort = &mut self.cohorts[states[r].cohort];
            if let Some(ts) = cohort.taken {
                push(&mut states[r], cohort, event, ts);
            }
        }
        Ok(())
    }

    /// Ends the pass: each member's results, in member order.
    pub fn finish(self) -> Vec<MemberResult> {
        let cohorts = self.cohorts;
        self.states
            .into_iter()
            .map(|s| {
                let counts = s.frozen.unwrap_or(cohorts[s.cohort].counts);
                MemberResult {
                    offered: counts.offered,
                    outside_indices: counts.outside_indices,
                    excepted: counts.excepted,
                    span_ms: counts.span_ms,
                    output: match s.error {
                        Some(e) => Err(e),
                        None => s.runner.finish(),
                    },
                }
            })
            .collect()
    }
}

/// Gives a rule of `cohort` the event the cohort takes; a rule that fails keeps the counts it had then.
fn push(state: &mut State<'_>, cohort: &mut Cohort, event: &Arc<Event>, ts: Option<i64>) {
    if state.error.is_some() {
        return;
    }
    if let Err(e) = state.runner.push_shared_at(Arc::clone(event), ts) {
        state.error = Some(e);
        state.frozen = Some(cohort.counts);
        cohort.alive -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eql::engine::{run, Results};
    use crate::eql::mapping::Mapping;
    use crate::eql::plan::{Position, QueryOptions};

    fn compile(query: &str) -> CompiledQuery {
        let q = crate::eql::parse(query).unwrap_or_else(|e| panic!("{query}: {e:?}"));
        let opts = QueryOptions { size: 1000, position: Position::Tail, ..QueryOptions::default() };
        CompiledQuery::compile(&q, &Mapping::builtin_ecs(), &opts).unwrap_or_else(|e| panic!("{query}: {e:?}"))
    }

    fn ids(results: &Results) -> Vec<Vec<String>> {
        match results {
            Results::Events(v) => v.iter().map(|e| vec![e.id.clone()]).collect(),
            Results::Sequences(v) => v.iter().map(|s| s.events.iter().map(|e| e.id.clone()).collect()).collect(),
        }
    }

    /// Gated or not, shared or not, every rule of a pass gets exactly the results it gets alone.
    #[test]
    fn a_pass_gives_each_rule_its_results_alone() {
        let queries = [
            r#"file where host.os.type == "windows" and event.code == "5145" and endswith(user.name, "$")"#,
            r#"sequence by winlog.computer_name with maxspan=5m
                 [authentication where event.action == "logged-in" and winlog.event_data.ElevatedToken == "%%1843"] by winlog.event_data.TargetLogonId
                 [any where event.action : "SERVICE-installed"] by winlog.event_data.SubjectLogonId"#,
            r#"any where event.code in ("4624", "4625") and source.ip != null"#,
            r#"authentication where event.outcome == "failure""#,
            r#"sequence with maxspan=1m [authentication where event.code == "4625"] by user.name [authentication where event.code == "4624"] by user.name until [any where event.code == "4634"] by user.name"#,
            r#"any where winlog.logon.type : "network*""#,
            // Several conditions per stage (all must be met), on multi-valued and case-insensitive fields.
            r#"process where event.code == "4688" and host.os.type == "windows""#,
            r#"authentication where event.category == "authentication" and event.outcome : "SUCCESS" and event.code == "4624""#,
            r#"any where event.code == "4624" and host.os.type == "linux""#,
        ];
        let events = crate::simulate::benchmark_events(6_000, 3);
        // An ip gate, with an address that the simulated logons have.
        let ip = events
            .iter()
            .filter(|e| e.source.pointer("/event/action").and_then(serde_json::Value::as_str) == Some("logged-in"))
            .find_map(|e| e.source.pointer("/source/ip").and_then(serde_json::Value::as_str))
            .expect("simulated logons carry source.ip");
        let ip_query = format!(r#"authentication where event.action == "logged-in" and source.ip == "{ip}""#);
        let queries: Vec<&str> = queries.iter().copied().chain([ip_query.as_str()]).collect();
        let plans: Vec<CompiledQuery> = queries.iter().map(|q| compile(q)).collect();
        // Which of them the index can gate (a wildcard, or a non-discriminating field, cannot be).
        let gated: Vec<bool> = plans.iter().map(|p| p.gate_sets().is_some()).collect();
        assert_eq!(gated, [true, true, true, true, true, false, true, true, true, true]);

        let config = crate::config::Config::default();
        let rule_text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/credential_access_machine_account_smb_relay.toml")).unwrap();
        let rule = crate::rules::parse_rule(std::path::Path::new("r.toml"), &rule_text).unwrap();
        let prepared = crate::detect::prepare::prepare_rule(rule, &config).unwrap();
        let mut pass = Pass::new(plans.iter().map(|plan| Member { prepared: &prepared, plan, window: None, exceptions: ExceptionMatcher::default() }));
        let mut sorted: Vec<Arc<Event>> = events.iter().cloned().map(Arc::new).collect();
        sorted.sort_by_key(|e| plans[0].timestamp_ms(e));
        for e in &sorted {
            pass.offer(e).unwrap();
        }
        let mut matched = 0;
        for ((query, plan), result) in queries.iter().zip(&plans).zip(pass.finish()) {
            let alone = run(plan, events.iter().cloned()).unwrap();
            assert_eq!(result.offered, sorted.len() as u64, "{query}: every event is offered (no window, no index)");
            let together = result.output.unwrap();
            assert_eq!(ids(&together.results), ids(&alone.results), "{query}");
            assert_eq!(together.stats.total_results, alone.stats.total_results, "{query}");
            matched += alone.stats.total_results;
            if *query == ip_query {
                assert!(alone.stats.total_results > 0, "the ip gate's address is in the events");
            }
        }
        assert!(matched > 0, "the simulated events must match some of the queries");
    }
}
