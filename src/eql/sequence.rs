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
//! Missing-event stages (`![...]`) are not implemented: [`Plan`] has no hook for them, and the analyser is
//! expected to reject them with an `unsupported:` error.

use super::plan::{KeyValue, Plan};
use super::EqlError;
use crate::event::Event;
use std::collections::HashMap;
use std::sync::Arc;

/// One completed sequence as returned to callers: the join key and the events in stage order.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceMatch {
    pub join_keys: Vec<KeyValue>,
    pub events: Vec<Event>,
}

/// A completed sequence inside the engine. Events are shared (`Arc`): an event that belongs to several
/// sequences or keys is stored once.
#[derive(Debug, Clone)]
pub struct Completed {
    pub join_keys: Vec<KeyValue>,
    pub events: Vec<Arc<Event>>,
}

impl Completed {
    /// Clones the events out, for results handed to callers.
    pub fn to_match(&self) -> SequenceMatch {
        SequenceMatch { join_keys: self.join_keys.clone(), events: self.events.iter().map(|e| (**e).clone()).collect() }
    }
}

/// An in-flight sequence waiting in a slot.
#[derive(Debug, Clone)]
struct Pending {
    /// Timestamp (ms) of the first event: `maxspan` is measured from it.
    first_ts: i64,
    events: Vec<Arc<Event>>,
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
        }
    }

    /// A matcher configured from a plan.
    pub fn for_plan<P: Plan + ?Sized>(plan: &P) -> SequenceMatcher {
        SequenceMatcher::new(plan.stage_count(), plan.maxspan_ms())
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
        let last = self.stages - 1;
        // Last stage first: the event must not consume a slot it fills at an earlier stage in this call.
        for s in (0..self.stages).rev() {
            if !plan.matches_stage(s, event)? {
                continue;
            }
            for key in plan.join_keys(s, event) {
                stage_matches += 1;
                if s == 0 {
                    let seq = Pending { first_ts: ts, events: vec![Arc::clone(event)] };
                    if last == 0 {
                        out.push(Completed { join_keys: key, events: seq.events });
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
                let mut events = prev.events;
                events.push(Arc::clone(event));
                if s == last {
                    out.push(Completed { join_keys: key, events });
                } else {
                    self.put(key, s, Pending { first_ts: prev.first_ts, events });
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
#[cfg(test)]
pub(crate) mod test_plan {
    use super::super::plan::{KeyValue, Limit, Plan, Position};
    use super::super::EqlError;
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
    }

    /// A predicate: the event's `cat` equals `c`.
    pub fn cat(c: &'static str) -> Pred {
        Box::new(move |e: &Event| Ok(e.source.get("cat").and_then(Value::as_str) == Some(c)))
    }

    /// A predicate: some value of `field` equals the string `value`.
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
            }
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
    }
}
