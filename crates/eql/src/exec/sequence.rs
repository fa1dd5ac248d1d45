//! The streaming sequence matcher: Elasticsearch's per-(join key, stage) state machine, fed one event at a
//! time in ordinal order.
//!
//! Elasticsearch (`SequenceMatcher` / `KeyToSequences` / `OrdinalGroup`) keeps, per key and stage, a list of
//! in-flight sequences and lets each stage-`s` event consume the *latest* strictly-earlier stage-`s-1`
//! sequence, removing it and everything older. When events arrive in ordinal order every in-flight sequence is
//! earlier than the current event, so that list collapses to one latest-wins slot (spec §8.4). Stages are
//! processed last-to-first for each event, so an event never consumes the slot it is about to fill.
//!
//! Rules reproduced here (`shared/spec/eql-semantics.md` §8):
//! - strict ordering: only sequences whose last event came *before* the current one are extended;
//! - `maxspan` is inclusive and measured from the first event, in milliseconds;
//!   a sequence rejected by `maxspan` is consumed (dropped), exactly like `trimBefore` + reject in ES;
//! - `until`: Elasticsearch drops a sequence when the nearest until-event strictly before the extending event
//!   is at or after the sequence's last event (`UntilGroup.before` + inclusive `Ordinal.between`). Streaming
//!   equivalent: after an event has been matched against the stages, an until-event clears every pending
//!   slot of its keys — including slots it has just filled itself;
//! - multi-valued keys: the plan returns several key tuples per event; each is matched independently, and all
//!   sequences completed by one event are returned, in the order of the plan's key tuples.
//!
//! Memory is bounded by the number of open slots (keys × stages), not by the number of events seen; with a
//! `maxspan`, slots that can no longer complete are pruned as time advances.
//!
//! Missing-event stages (`![...]`, spec §8.9) follow Elasticsearch's `TumblingWindow`: the positive stages are
//! matched exactly as without them, and each completed sequence is then checked against the missing stages,
//! with the same join key and on timestamps only (milliseconds, strict bounds):
//! - an *inner* missing stage (between positive stages `p-1` and `p`) discards the sequence when a matching
//!   event lies strictly between their timestamps. The sequence still occupies its slots until then (a
//!   doomed sequence consumes and replaces like any other), so the slot machine is unchanged;
//! - *leading* stages (before the first positive one) look for the latest matching event strictly before the
//!   sequence's first event, *trailing* stages for the earliest one strictly after its last event; the
//!   sequence is kept when none exists, or when it is more than `maxspan` away: from the sequence's last
//!   event (leading only), from its first event (trailing only), or from the leading one (both).
//!
//! A sequence that waits for trailing events is held until the stream has passed its deadline, and
//! sequences are released in completion order, so results stay ordered by their last event.

use crate::plan::{KeyValue, Plan};
use crate::EqlError;
use crate::event::{Event, FieldSet};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// One completed sequence as returned to callers: the join key and the events in stage order.
///
/// `events` holds only the events that exist: a missing-event stage has no document, so it is not part of
/// `events` (Kibana builds neither a building block nor the shell intersection from it). `missing` lists
/// where Elasticsearch's placeholders (`"missing": true`) sit in the full stage list, ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceMatch {
    pub join_keys: Vec<KeyValue>,
    pub events: Vec<Event>,
    pub missing: Vec<usize>,
}

/// A completed sequence inside the engine. Events are shared (`Arc`): an event that belongs to several
/// sequences or keys is stored once.
#[derive(Debug, Clone)]
pub struct Completed {
    pub join_keys: Vec<KeyValue>,
    pub events: Vec<Arc<Event>>,
    /// Placeholder positions of missing-event stages (see [`SequenceMatch::missing`]).
    pub missing: Vec<usize>,
}

impl Completed {
    /// Clones the events out, for results handed to callers.
    pub fn to_match(&self) -> SequenceMatch {
        SequenceMatch {
            join_keys: self.join_keys.clone(),
            events: self.events.iter().map(|e| (**e).clone()).collect(),
            missing: self.missing.clone(),
        }
    }
}

/// An in-flight sequence waiting in a slot.
#[derive(Debug, Clone)]
struct Pending {
    /// Timestamp (ms) of the first event: `maxspan` is measured from it.
    first_ts: i64,
    /// Timestamp (ms) of the latest event: an inner missing stage looks after it.
    last_ts: i64,
    /// Latest leading missing event strictly before the first event, if the query has leading stages.
    last_leading: Option<i64>,
    /// An inner missing event was found: the sequence keeps its slot but is dropped when it completes.
    doomed: bool,
    events: Vec<Arc<Event>>,
}

/// Missing-event stages grouped by where they sit.
#[derive(Debug, Default)]
struct MissingStages {
    /// Stage ids (index into the plan's missing stages) before the first positive stage.
    leading: Vec<usize>,
    /// Stage ids after the last positive stage.
    trailing: Vec<usize>,
    /// `inner[s]`: stage ids between positive stages `s-1` and `s`.
    inner: Vec<Vec<usize>>,
    /// Placeholder positions in the full stage list.
    placeholders: Vec<usize>,
    /// Every missing stage id, for matching events.
    count: usize,
}

impl MissingStages {
    fn new(positions: &[usize], stages: usize) -> MissingStages {
        let mut m = MissingStages { inner: vec![Vec::new(); stages], count: positions.len(), ..Default::default() };
        for (id, &p) in positions.iter().enumerate() {
            m.placeholders.push(p + id);
            if p == 0 {
                m.leading.push(id);
            } else if p >= stages {
                m.trailing.push(id);
            } else {
                m.inner[p].push(id);
            }
        }
        m
    }
}

/// The latest two distinct timestamps of missing-stage events seen for one (stage, key): enough to answer
/// "the latest one strictly before `t`" for any `t` not earlier than the current event's.
#[derive(Debug, Clone, Copy)]
struct Seen {
    last: i64,
    before_last: Option<i64>,
}

impl Seen {
    fn record(&mut self, ts: i64) {
        if ts > self.last {
            self.before_last = Some(self.last);
            self.last = ts;
        }
    }

    fn latest_before(&self, t: i64) -> Option<i64> {
        if self.last < t {
            Some(self.last)
        } else {
            self.before_last.filter(|b| *b < t)
        }
    }
}

/// A completed sequence waiting for its trailing-missing-event verdict (or behind one that is).
#[derive(Debug)]
struct Held {
    done: Completed,
    /// Timestamp of the sequence's last event: trailing events must be strictly after it.
    end: i64,
    /// A trailing event at or before this timestamp discards the sequence; later ones do not matter.
    deadline: i64,
    rejected: bool,
}

/// What the slots hold of `event`, made on its first stage match and shared by the others (`held`).
fn hold(keep: &Option<FieldSet>, held: &mut Option<Arc<Event>>, event: &Arc<Event>) -> Arc<Event> {
    Arc::clone(held.get_or_insert_with(|| match keep {
        Some(keep) => Event::slim(event, keep),
        None => Arc::clone(event),
    }))
}

/// How many events to feed between two `maxspan` prunes of dead slots (a full scan of the slot map).
const PRUNE_EVERY: u64 = 4096;

/// The per-(key, stage) slot machine. Feed events with [`SequenceMatcher::push`] in ordinal order.
#[derive(Debug)]
pub struct SequenceMatcher {
    stages: usize,
    maxspan_ms: Option<i64>,
    /// `slots[key][s]` holds the latest sequence that has completed stage `s` (0 ≤ s < stages-1).
    slots: HashMap<Vec<KeyValue>, Vec<Option<Pending>>>,
    open_slots: usize,
    pushed: u64,
    last_ts: Option<i64>,
    missing: MissingStages,
    /// Missing-stage events seen, per key and missing stage id.
    seen: HashMap<Vec<KeyValue>, Vec<Option<Seen>>>,
    /// Completed sequences not yet released (only with trailing missing stages).
    held: VecDeque<Held>,
    /// The fields a held event keeps of its projection ([`Event::slim`]); `None`: events are held whole.
    keep: Option<FieldSet>,
}

impl SequenceMatcher {
    /// A matcher for a sequence of `stages` positive stages (after `runs=N` expansion).
    pub fn new(stages: usize, maxspan_ms: Option<i64>) -> SequenceMatcher {
        SequenceMatcher {
            stages,
            // ES: `maxspan > 0` enables the check; a zero or negative span means no limit.
            maxspan_ms: maxspan_ms.filter(|m| *m > 0),
            slots: HashMap::new(),
            open_slots: 0,
            pushed: 0,
            last_ts: None,
            missing: MissingStages::new(&[], stages),
            seen: HashMap::new(),
            held: VecDeque::new(),
            keep: None,
        }
    }

    /// A matcher configured from a plan (missing-event stages included).
    pub fn for_plan<P: Plan + ?Sized>(plan: &P) -> SequenceMatcher {
        let mut m = SequenceMatcher::new(plan.stage_count(), plan.maxspan_ms());
        m.missing = MissingStages::new(&plan.missing_positions(), plan.stage_count());
        m.keep = plan.retained_fields().map(FieldSet::new);
        m
    }

    /// Releases the sequences still held for a trailing-missing-event verdict (the stream has ended, so no
    /// trailing event can come). Call once after the last [`SequenceMatcher::push`].
    pub fn finish(&mut self, out: &mut Vec<Completed>) {
        for h in self.held.drain(..) {
            if !h.rejected {
                out.push(h.done);
            }
        }
    }

    /// The latest event of any of `stages` (missing stage ids) for `key` strictly before `ts`.
    fn latest_missing_before(&self, stages: &[usize], key: &[KeyValue], ts: i64) -> Option<i64> {
        let row = self.seen.get(key)?;
        stages.iter().filter_map(|&m| row.get(m).copied().flatten().and_then(|s| s.latest_before(ts))).max()
    }

    /// Records the event's matches of missing stages, and lets trailing ones reject held sequences.
    fn see_missing<P: Plan + ?Sized>(&mut self, plan: &P, event: &Event, ts: i64) -> Result<(), EqlError> {
        for m in 0..self.missing.count {
            if !plan.matches_missing(m, event)? {
                continue;
            }
            let trailing = self.missing.trailing.contains(&m);
            for key in plan.missing_keys(m, event) {
                if trailing {
                    for h in self.held.iter_mut() {
                        if h.done.join_keys == key && ts > h.end && ts <= h.deadline {
                            h.rejected = true;
                        }
                    }
                }
                let count = self.missing.count;
                let slot = &mut self.seen.entry(key).or_insert_with(|| vec![None; count])[m];
                match slot {
                    Some(seen) => seen.record(ts),
                    None => *slot = Some(Seen { last: ts, before_last: None }),
                }
            }
        }
        Ok(())
    }

    /// Decides a completed sequence against the leading and trailing missing stages (Elasticsearch's
    /// `doCheckMissingEvents`), queueing it when trailing events could still discard it.
    fn complete(&mut self, seq: Pending, key: Vec<KeyValue>, ts: i64, out: &mut Vec<Completed>) {
        if seq.doomed {
            return;
        }
        let done = Completed { join_keys: key, events: seq.events, missing: self.missing.placeholders.clone() };
        let span = self.maxspan_ms.unwrap_or(i64::MAX);
        let exceeds = |from: i64, to: i64| to.saturating_sub(from) > span;
        let has_leading = !self.missing.leading.is_empty();
        let has_trailing = !self.missing.trailing.is_empty();
        // `keep == false` drops it now; a deadline means a trailing event in (end, deadline] still can.
        let (keep, deadline) = match (has_leading, has_trailing) {
            (false, false) => (true, None),
            (true, false) => (seq.last_leading.is_none_or(|l| exceeds(l, ts)), None),
            (true, true) => match seq.last_leading {
                None => (true, None),
                Some(l) => (true, Some(l.saturating_add(span))),
            },
            (false, true) => (true, Some(seq.first_ts.saturating_add(span))),
        };
        if !keep {
            return;
        }
        match deadline {
            Some(d) if d > ts => self.held.push_back(Held { done, end: ts, deadline: d, rejected: false }),
            // Decided (no deadline, or an empty (end, deadline] range); it waits only behind held ones.
            _ if !self.held.is_empty() => {
                self.held.push_back(Held { done, end: ts, deadline: i64::MIN, rejected: false })
            }
            _ => out.push(done),
        }
    }

    /// Releases held sequences from the front whose deadline the stream (now at `ts`) has passed.
    fn release(&mut self, ts: i64, out: &mut Vec<Completed>) {
        while self.held.front().is_some_and(|h| h.deadline < ts) {
            if let Some(h) = self.held.pop_front() {
                if !h.rejected {
                    out.push(h.done);
                }
            }
        }
    }

    /// Number of pending (in-flight) sequences currently held.
    pub fn open_slots(&self) -> usize {
        self.open_slots
    }

    /// Feeds the next event in ordinal order (`ts` = its timestamp in ms). Sequences it completes are
    /// appended to `out`, in the order of the plan's key tuples. Returns how many (stage, key) matches the
    /// event produced (for statistics). A query error from the plan is returned as is; the matcher must then
    /// be discarded.
    pub fn push<P: Plan + ?Sized>(
        &mut self,
        plan: &P,
        event: &Arc<Event>,
        ts: i64,
        out: &mut Vec<Completed>,
    ) -> Result<u64, EqlError> {
        self.pushed += 1;
        self.last_ts = Some(ts);
        let mut stage_matches = 0u64;
        if self.stages == 0 {
            return Ok(0);
        }
        if self.missing.count > 0 {
            self.release(ts, out);
            self.see_missing(plan, event, ts)?;
        }
        let last = self.stages - 1;
        // What the slots hold of this event: made once, on its first stage match.
        let mut held: Option<Arc<Event>> = None;
        // Last stage first: the event must not consume a slot it fills at an earlier stage in this call.
        for s in (0..self.stages).rev() {
            if !plan.matches_stage(s, event)? {
                continue;
            }
            for key in plan.join_keys(s, event) {
                stage_matches += 1;
                if s == 0 {
                    let last_leading = if self.missing.leading.is_empty() {
                        None
                    } else {
                        self.latest_missing_before(&self.missing.leading, &key, ts)
                    };
                    let seq =
                        Pending { first_ts: ts, last_ts: ts, last_leading, doomed: false, events: vec![hold(&self.keep, &mut held, event)] };
                    if last == 0 {
                        self.complete(seq, key, ts, out);
                    } else {
                        self.put(key, 0, seq);
                    }
                    continue;
                }
                let Some(prev) = self.take(&key, s - 1) else { continue };
                if let Some(span) = self.maxspan_ms {
                    // Inclusive: a span equal to maxspan is accepted. The consumed sequence is dropped otherwise.
                    if ts.saturating_sub(prev.first_ts) > span {
                        continue;
                    }
                }
                let doomed = prev.doomed
                    || self.missing.inner.get(s).is_some_and(|inner| {
                        !inner.is_empty() && self.latest_missing_before(inner, &key, ts).is_some_and(|m| m > prev.last_ts)
                    });
                let mut events = prev.events;
                events.push(hold(&self.keep, &mut held, event));
                let next = Pending { first_ts: prev.first_ts, last_ts: ts, last_leading: prev.last_leading, doomed, events };
                if s == last {
                    self.complete(next, key, ts, out);
                } else {
                    self.put(key, s, next);
                }
            }
        }
        if plan.has_until() && plan.matches_until(event)? {
            for key in plan.until_keys(event) {
                if let Some(row) = self.slots.remove(&key) {
                    self.open_slots -= row.iter().filter(|p| p.is_some()).count();
                }
            }
        }
        if self.maxspan_ms.is_some() && self.pushed % PRUNE_EVERY == 0 {
            self.prune(ts);
        }
        Ok(stage_matches)
    }

    /// Drops pending sequences that can no longer complete: with a `maxspan`, every later event has a
    /// timestamp ≥ `now_ts`, so a sequence that started more than `maxspan` before it is dead.
    pub fn prune(&mut self, now_ts: i64) {
        let Some(span) = self.maxspan_ms else { return };
        // A missing-stage event older than a maxspan before now can no longer be inside any future sequence's
        // range, nor within maxspan of it.
        self.seen.retain(|_, row| {
            for slot in row.iter_mut() {
                if slot.is_some_and(|seen| now_ts.saturating_sub(seen.last) > span) {
                    *slot = None;
                }
            }
            row.iter().any(Option::is_some)
        });
        let mut removed = 0usize;
        self.slots.retain(|_, row| {
            for slot in row.iter_mut() {
                if slot.as_ref().is_some_and(|p| now_ts.saturating_sub(p.first_ts) > span) {
                    *slot = None;
                    removed += 1;
                }
            }
            row.iter().any(|p| p.is_some())
        });
        self.open_slots -= removed;
    }

    fn put(&mut self, key: Vec<KeyValue>, stage: usize, seq: Pending) {
        let width = self.stages - 1;
        let row = self.slots.entry(key).or_insert_with(|| vec![None; width]);
        if row[stage].replace(seq).is_none() {
            self.open_slots += 1;
        }
    }

    fn take(&mut self, key: &[KeyValue], stage: usize) -> Option<Pending> {
        let row = self.slots.get_mut(key)?;
        let taken = row[stage].take();
        if taken.is_some() {
            self.open_slots -= 1;
            if row.iter().all(|p| p.is_none()) {
                self.slots.remove(key);
            }
        }
        taken
    }
}

/// A hand-written [`Plan`] over small JSON events, for the matcher, runner and conformance tests.
///
/// Events look like `{"ts": 5, "n": 1, "cat": "A", "k": "x"}`: `ts` is the timestamp (ms), `n` a numeric
/// id, `cat` the category, and the key fields are whatever the plan names (multi-valued arrays expand to a
/// cartesian product, nulls inside arrays are ignored, a missing or all-null key field means "never joins").
#[cfg(any(test, feature = "testing"))]
pub mod test_plan {
    use crate::plan::{KeyValue, Limit, Plan, Position};
    use crate::EqlError;
    use crate::event::Event;
    use serde_json::{json, Value};

    pub type Pred = Box<dyn Fn(&Event) -> Result<bool, EqlError>>;

    pub struct TestPlan {
        pub sequence: bool,
        pub stages: Vec<Pred>,
        pub keys: Vec<String>,
        pub until: Option<Pred>,
        pub maxspan_ms: Option<i64>,
        pub limit: Limit,
        pub tiebreaker_field: Option<String>,
        /// Missing-event stages: (number of positive stages before it, predicate).
        pub missing: Vec<(usize, Pred)>,
        pub sample: bool,
    }

    /// A predicate: the event's `cat` equals `c`.
    pub fn cat(c: &'static str) -> Pred {
        Box::new(move |e: &Event| Ok(e.source.get("cat").and_then(Value::as_str) == Some(c)))
    }

    /// A predicate: some value of `field` equals the string `value`.
    #[allow(dead_code)] // used by esdetect's conformance tests, not this crate's
    pub fn field_is(field: &'static str, value: &'static str) -> Pred {
        Box::new(move |e: &Event| Ok(e.field_values(field).iter().any(|v| v.as_str() == Some(value))))
    }

    /// A predicate from a plain closure.
    pub fn when(f: impl Fn(&Event) -> bool + 'static) -> Pred {
        Box::new(move |e: &Event| Ok(f(e)))
    }

    /// The event's numeric `n`.
    pub fn n(e: &Event) -> i64 {
        e.source.get("n").and_then(Value::as_i64).unwrap_or(-1)
    }

    /// An event with id `n` (also the `_id`, zero-padded so byte order equals numeric order).
    pub fn ev(n: i64, ts: i64, cat: &str, extra: Value) -> Event {
        let mut source = json!({"ts": ts, "n": n, "cat": cat});
        if let (Some(obj), Value::Object(more)) = (source.as_object_mut(), extra) {
            obj.extend(more);
        }
        Event::new("test-index", format!("{n:06}"), source)
    }

    impl TestPlan {
        /// A sequence of the given stage predicates, joined by `keys`, default limit tail 50.
        pub fn seq(stages: Vec<Pred>, keys: &[&str]) -> TestPlan {
            TestPlan {
                sequence: true,
                stages,
                keys: keys.iter().map(|k| k.to_string()).collect(),
                until: None,
                maxspan_ms: None,
                limit: Limit { position: Position::Tail, count: 50 },
                tiebreaker_field: None,
                missing: Vec::new(),
                sample: false,
            }
        }

        /// Adds a missing-event stage after `position` positive stages.
        pub fn missing(mut self, position: usize, pred: Pred) -> TestPlan {
            self.missing.push((position, pred));
            self
        }

        /// An event query.
        pub fn events(pred: Pred) -> TestPlan {
            TestPlan { sequence: false, ..TestPlan::seq(vec![pred], &[]) }
        }

        pub fn limit(mut self, position: Position, count: usize) -> TestPlan {
            self.limit = Limit { position, count };
            self
        }

        fn keys_of(&self, e: &Event) -> Vec<Vec<KeyValue>> {
            let mut combos: Vec<Vec<KeyValue>> = vec![vec![]];
            for field in &self.keys {
                let mut values: Vec<KeyValue> = Vec::new();
                for v in e.field_values(field) {
                    let kv = match v {
                        Value::String(s) => KeyValue::Str(s.clone()),
                        Value::Number(x) => match x.as_i64() {
                            Some(l) => KeyValue::Long(l),
                            None => KeyValue::double(x.as_f64().unwrap_or(0.0)),
                        },
                        Value::Bool(b) => KeyValue::Bool(*b),
                        _ => continue,
                    };
                    if !values.contains(&kv) {
                        values.push(kv);
                    }
                }
                if values.is_empty() {
                    return vec![];
                }
                combos = combos
                    .into_iter()
                    .flat_map(|c| {
                        values.iter().map(move |v| {
                            let mut c = c.clone();
                            c.push(v.clone());
                            c
                        })
                    })
                    .collect();
            }
            combos
        }
    }

    impl Plan for TestPlan {
        fn is_sequence(&self) -> bool {
            self.sequence
        }
        fn stage_count(&self) -> usize {
            self.stages.len()
        }
        fn matches_stage(&self, stage: usize, event: &Event) -> Result<bool, EqlError> {
            (self.stages[stage])(event)
        }
        fn join_keys(&self, _stage: usize, event: &Event) -> Vec<Vec<KeyValue>> {
            self.keys_of(event)
        }
        fn has_until(&self) -> bool {
            self.until.is_some()
        }
        fn matches_until(&self, event: &Event) -> Result<bool, EqlError> {
            match &self.until {
                Some(p) => p(event),
                None => Ok(false),
            }
        }
        fn until_keys(&self, event: &Event) -> Vec<Vec<KeyValue>> {
            self.keys_of(event)
        }
        fn maxspan_ms(&self) -> Option<i64> {
            self.maxspan_ms
        }
        fn limit(&self) -> Limit {
            self.limit
        }
        fn timestamp_ms(&self, event: &Event) -> Option<i64> {
            // `ts` for hand-made events; `@timestamp` (number or epoch-ms string) for the QA data files.
            match event.source.get("ts").or_else(|| event.source.get("@timestamp"))? {
                Value::Number(x) => x.as_i64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }
        }
        fn tiebreaker(&self, event: &Event) -> Option<KeyValue> {
            let f = self.tiebreaker_field.as_ref()?;
            event.source.get(f).and_then(Value::as_i64).map(KeyValue::Long)
        }
        fn missing_positions(&self) -> Vec<usize> {
            self.missing.iter().map(|(p, _)| *p).collect()
        }
        fn matches_missing(&self, m: usize, event: &Event) -> Result<bool, EqlError> {
            (self.missing[m].1)(event)
        }
        fn missing_keys(&self, _m: usize, event: &Event) -> Vec<Vec<KeyValue>> {
            self.keys_of(event)
        }
        fn is_sample(&self) -> bool {
            self.sample
        }
    }
}

/// Missing-event stages through the whole runner, on a hand-written plan (the QA specs cover the rest).
#[cfg(test)]
mod missing_tests {
    use crate::engine::{run, Results, Evaluation};
    use super::test_plan::{cat, ev, n, TestPlan};
    use serde_json::json;

    fn seqs(out: &Evaluation) -> Vec<(Vec<i64>, Vec<usize>)> {
        match &out.results {
            Results::Sequences(s) => s.iter().map(|m| (m.events.iter().map(n).collect(), m.missing.clone())).collect(),
            Results::Events(_) => panic!("expected sequences"),
        }
    }

    fn k() -> serde_json::Value {
        json!({"k": "x"})
    }

    /// `[A] ![M] [B]` with maxspan 1s.
    fn a_not_m_b() -> TestPlan {
        let mut p = TestPlan::seq(vec![cat("A"), cat("B")], &["k"]).missing(1, cat("M"));
        p.maxspan_ms = Some(1000);
        p
    }

    #[test]
    fn inner_missing_event_discards_only_strictly_between_and_with_the_same_key() {
        let plan = a_not_m_b();
        let out = run(&plan, vec![ev(1, 10, "A", k()), ev(2, 20, "M", k()), ev(3, 30, "B", k())]).unwrap();
        assert!(seqs(&out).is_empty());
        // Another key's M does not count; the placeholder sits at position 1.
        let out = run(&plan, vec![ev(1, 10, "A", k()), ev(2, 20, "M", json!({"k": "y"})), ev(3, 30, "B", k())]).unwrap();
        assert_eq!(seqs(&out), vec![(vec![1, 3], vec![1])]);
        // Timestamps equal to a neighbour's are not "between" (ES: strict range on the timestamp).
        let out = run(&plan, vec![ev(1, 10, "A", k()), ev(2, 10, "M", k()), ev(3, 30, "B", k()), ev(4, 30, "M", k())]).unwrap();
        assert_eq!(seqs(&out), vec![(vec![1, 3], vec![1])]);
    }

    #[test]
    fn a_doomed_sequence_still_takes_its_slot() {
        // [A] ![M] [B] [C]: (A2, B2) has an M between, but it still replaces (A1, B1) in the slot and is
        // consumed by C, exactly like Elasticsearch, which checks missing events only on completed sequences.
        let mut plan = TestPlan::seq(vec![cat("A"), cat("B"), cat("C")], &["k"]).missing(1, cat("M"));
        plan.maxspan_ms = Some(1000);
        let events = vec![
            ev(1, 1, "A", k()),
            ev(2, 2, "B", k()),
            ev(3, 3, "A", k()),
            ev(4, 4, "M", k()),
            ev(5, 5, "B", k()),
            ev(6, 6, "C", k()),
        ];
        assert!(seqs(&run(&plan, events).unwrap()).is_empty());
    }

    #[test]
    fn leading_missing_event_counts_only_within_maxspan_of_the_last_event() {
        let mut plan = TestPlan::seq(vec![cat("A"), cat("B")], &["k"]).missing(0, cat("M"));
        plan.maxspan_ms = Some(100);
        let near = run(&plan, vec![ev(1, 0, "M", k()), ev(2, 10, "A", k()), ev(3, 20, "B", k())]).unwrap();
        assert!(seqs(&near).is_empty());
        // Exactly maxspan away still counts (inclusive); one more millisecond does not.
        let edge = run(&plan, vec![ev(1, 0, "M", k()), ev(2, 50, "A", k()), ev(3, 100, "B", k())]).unwrap();
        assert!(seqs(&edge).is_empty());
        let far = run(&plan, vec![ev(1, 0, "M", k()), ev(2, 60, "A", k()), ev(3, 101, "B", k())]).unwrap();
        assert_eq!(seqs(&far), vec![(vec![2, 3], vec![0])]);
    }

    #[test]
    fn trailing_missing_event_holds_the_sequence_until_maxspan_after_its_start() {
        let mut plan = TestPlan::seq(vec![cat("A"), cat("B")], &["k"]).missing(2, cat("M"));
        plan.maxspan_ms = Some(100);
        // M at start + maxspan discards; M one millisecond later does not; no M at all keeps it.
        let hit = run(&plan, vec![ev(1, 0, "A", k()), ev(2, 10, "B", k()), ev(3, 100, "M", k())]).unwrap();
        assert!(seqs(&hit).is_empty());
        let late = run(&plan, vec![ev(1, 0, "A", k()), ev(2, 10, "B", k()), ev(3, 101, "M", k())]).unwrap();
        assert_eq!(seqs(&late), vec![(vec![1, 2], vec![2])]);
        let none = run(&plan, vec![ev(1, 0, "A", k()), ev(2, 10, "B", k())]).unwrap();
        assert_eq!(seqs(&none), vec![(vec![1, 2], vec![2])]);
        // A held sequence keeps its place: results stay ordered by their last event.
        let y = json!({"k": "y"});
        let order = run(
            &plan,
            vec![ev(1, 0, "A", k()), ev(2, 10, "B", k()), ev(3, 200, "A", y.clone()), ev(4, 210, "B", y), ev(5, 400, "X", k())],
        )
        .unwrap();
        assert_eq!(seqs(&order), vec![(vec![1, 2], vec![2]), (vec![3, 4], vec![2])]);
    }

    #[test]
    fn pruning_old_missing_events_changes_nothing() {
        // [A] ![M] [B] plus a leading ![M]; enough filler events to trigger several prunes.
        let mut plan = TestPlan::seq(vec![cat("A"), cat("B")], &["k"]).missing(0, cat("M")).missing(1, cat("M"));
        plan.maxspan_ms = Some(100);
        let mut events = vec![ev(1, 0, "M", k())];
        events.extend((0..10_000).map(|i| ev(100 + i, 1 + i / 2, "X", k())));
        events.extend([
            ev(20_001, 6_000, "A", k()),
            ev(20_002, 6_010, "B", k()),
            ev(20_003, 7_000, "A", k()),
            ev(20_004, 7_010, "M", k()),
            ev(20_005, 7_020, "B", k()),
        ]);
        // The old leading M is far away (kept); the second pair has an M between (discarded).
        assert_eq!(seqs(&run(&plan, events).unwrap()), vec![(vec![20_001, 20_002], vec![0, 2])]);
    }

    #[test]
    fn leading_and_trailing_compare_the_two_missing_events() {
        let mut plan = TestPlan::seq(vec![cat("A")], &["k"]).missing(0, cat("M")).missing(1, cat("M"));
        plan.maxspan_ms = Some(100);
        // M(0) A(50) M(150): the two M are 150 apart > maxspan → kept. M(0) A(50) M(90) → discarded.
        let far = run(&plan, vec![ev(1, 0, "M", k()), ev(2, 50, "A", k()), ev(3, 150, "M", k())]).unwrap();
        assert_eq!(seqs(&far), vec![(vec![2], vec![0, 2])]);
        let near = run(&plan, vec![ev(1, 0, "M", k()), ev(2, 50, "A", k()), ev(3, 90, "M", k())]).unwrap();
        assert!(seqs(&near).is_empty());
        // No leading event: kept whatever follows.
        let no_lead = run(&plan, vec![ev(2, 50, "A", k()), ev(3, 60, "M", k())]).unwrap();
        assert_eq!(seqs(&no_lead), vec![(vec![2], vec![0, 2])]);
    }
}

/// Property: the streaming missing-event checks equal Elasticsearch's formulation — match the positive stages
/// alone, then test each completed sequence against all events (`TumblingWindow.doCheckMissingEvents`).
#[cfg(test)]
mod missing_properties {
    use crate::engine::{run, Results};
    use crate::plan::Position;
    use super::test_plan::{cat, ev, n, TestPlan};
    use crate::event::Event;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    const SPAN: i64 = 10;

    fn ts(e: &Event) -> i64 {
        e.source["ts"].as_i64().unwrap_or_default()
    }
    fn is(e: &Event, c: &str) -> bool {
        e.source.get("cat").and_then(Value::as_str) == Some(c)
    }

    /// `[A] [B]` with missing stages: 0 = leading `![M]`, 1 = inner `![N]`, 2 = trailing `![M]`.
    fn plan(layout: &[usize]) -> TestPlan {
        let mut p = TestPlan::seq(vec![cat("A"), cat("B")], &["k"]).limit(Position::Tail, 10_000);
        p.maxspan_ms = Some(SPAN);
        for &m in layout {
            p = match m {
                0 => p.missing(0, cat("M")),
                1 => p.missing(1, cat("N")),
                _ => p.missing(2, cat("M")),
            };
        }
        p
    }

    /// Elasticsearch's verdict for one completed `[a, b]` sequence of key `k`.
    fn es_keeps(layout: &[usize], events: &[Event], a: &Event, b: &Event, k: &Value) -> bool {
        let same = |e: &&Event| &e.source["k"] == k;
        if layout.contains(&1) && events.iter().filter(same).any(|e| is(e, "N") && ts(e) > ts(a) && ts(e) < ts(b)) {
            return false;
        }
        let leading = layout.contains(&0);
        let trailing = layout.contains(&2);
        let last_leading =
            if leading { events.iter().filter(same).filter(|e| is(e, "M") && ts(e) < ts(a)).map(ts).max() } else { None };
        let first_trailing =
            if trailing { events.iter().filter(same).filter(|e| is(e, "M") && ts(e) > ts(b)).map(ts).min() } else { None };
        let bigger = |f: Option<i64>, t: Option<i64>| match (f, t) {
            (Some(f), Some(t)) => t - f > SPAN,
            _ => true,
        };
        (first_trailing.is_none() && last_leading.is_none())
            || (last_leading.is_none() && leading)
            || (first_trailing.is_none() && trailing)
            || (leading && trailing && bigger(last_leading, first_trailing))
            || (leading && !trailing && bigger(last_leading, Some(ts(b))))
            || (!leading && trailing && bigger(Some(ts(a)), first_trailing))
    }

    fn pairs(out: Results) -> Vec<Vec<i64>> {
        match out {
            Results::Sequences(s) => s.iter().map(|m| m.events.iter().map(n).collect()).collect(),
            Results::Events(_) => panic!("expected sequences"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

        #[test]
        fn streaming_checks_equal_the_post_filter(
            raw in proptest::collection::vec((0usize..4, 0usize..2, 0i64..4), 0..30),
            layout in prop::sample::select(vec![vec![0], vec![1], vec![2], vec![0, 1], vec![1, 2], vec![0, 2], vec![0, 1, 2]]),
        ) {
            let mut t = 0;
            let events: Vec<Event> = raw
                .iter()
                .enumerate()
                .map(|(i, (c, k, dt))| {
                    t += dt;
                    let key = ["x", "y"][*k];
                    ev(i as i64, t, ["A", "B", "M", "N"][*c], json!({ "k": key }))
                })
                .collect();
            let positive = pairs(run(&plan(&[]), events.clone()).unwrap().results);
            let expected: Vec<Vec<i64>> = positive
                .into_iter()
                .filter(|ids| {
                    let a = &events[ids[0] as usize];
                    let b = &events[ids[1] as usize];
                    es_keeps(&layout, &events, a, b, &a.source["k"])
                })
                .collect();
            let got = pairs(run(&plan(&layout), events.clone()).unwrap().results);
            prop_assert_eq!(got, expected);
        }
    }
}
