//! Runs an analysed query over a stream of events and applies Elasticsearch's result selection.
//!
//! Events arrive in non-decreasing timestamp order (the source sorts by the timestamp field, e.g. an
//! Elasticsearch search sorted by `@timestamp`). The full ordinal is `(timestamp ms, tiebreaker, (_index,
//! _id))` (spec §8.1): a missing tiebreaker sorts last, and the `(_index, _id)` byte order stands in for
//! Elasticsearch's `_shard_doc`. Events of one millisecond are contiguous in such a stream, so the runner
//! buffers the current millisecond, sorts it by the rest of the ordinal when the timestamp advances, and only
//! then feeds the events to the evaluator — memory for ordering is one millisecond of events.
//!
//! Result selection (spec §8.6): results are ascending by ordinal (sequences by their *last* event; several
//! sequences ending on the same event keep the order of the plan's join-key tuples — ES's stable sort of its
//! match list; spec §12 U1). `head` keeps the first `count`, `tail` the last `count` in a ring buffer, so
//! memory is bounded by the limit, not by the number of matches. Every match is still counted
//! ([`EvalStats::total_results`]) and every event is still evaluated, so a query error anywhere in the window
//! fails the run, as the Elasticsearch search would.
//!
//! Events without a timestamp are skipped and counted: Elasticsearch's EQL never returns them.
//!
//! `sample` queries (`eql::sample`) ignore time: their events bypass the millisecond buffer and the timestamp
//! check, and the samples are built when the stream ends (returned as [`Results::Sequences`]).

use crate::plan::{compare_tiebreakers, KeyValue, Limit, Plan, Position};
use crate::sample::SampleCollector;
use crate::sequence::{Completed, SequenceMatch, SequenceMatcher};
use crate::EqlError;
use crate::event::Event;
use std::collections::VecDeque;
use std::sync::Arc;

/// The selected results of one run, ascending.
#[derive(Debug, Clone, PartialEq)]
pub enum Results {
    Events(Vec<Event>),
    Sequences(Vec<SequenceMatch>),
}

impl Results {
    pub fn len(&self) -> usize {
        match self {
            Results::Events(v) => v.len(),
            Results::Sequences(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counters of one run, for logs and for telling the user that results were cut.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvalStats {
    /// Every event pushed, including skipped ones.
    pub events_seen: u64,
    /// Events without a usable timestamp (never evaluated, never returned).
    pub events_skipped_no_timestamp: u64,
    /// Event query: matching events. Sequence query: (event, stage, key) matches.
    pub stage_matches: u64,
    /// Matching events / completed sequences before the head/tail cut.
    pub total_results: u64,
    /// True when `total_results` exceeded the limit and some results were dropped.
    pub truncated: bool,
}

/// What a finished run returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub results: Results,
    pub stats: EvalStats,
}

/// Keeps the first or the last `count` items pushed.
#[derive(Debug)]
struct Selector<T> {
    limit: Limit,
    items: VecDeque<T>,
}

impl<T> Selector<T> {
    fn new(limit: Limit) -> Self {
        Selector { limit, items: VecDeque::new() }
    }

    fn offer(&mut self, item: T) {
        if self.limit.count == 0 {
            return;
        }
        match self.limit.position {
            Position::Head => {
                if self.items.len() < self.limit.count {
                    self.items.push_back(item);
                }
            }
            Position::Tail => {
                if self.items.len() == self.limit.count {
                    self.items.pop_front();
                }
                self.items.push_back(item);
            }
        }
    }
}

#[derive(Debug)]
enum Collector {
    Events(Selector<Arc<Event>>),
    Sequences { matcher: SequenceMatcher, selected: Selector<Completed>, scratch: Vec<Completed> },
    /// `sample`: per-key candidates, turned into samples when the stream ends (results are `Sequences`).
    Samples { collector: SampleCollector, limit: Limit },
}

/// A buffered event of the current millisecond with the rest of its ordinal.
struct Buffered {
    tiebreaker: Option<KeyValue>,
    event: Arc<Event>,
}

/// Streams events through a [`Plan`]. Push events in non-decreasing timestamp order, then [`Runner::finish`].
/// After an error the runner is spent: every later call returns the same error.
pub struct Runner<'p, P: Plan + ?Sized> {
    plan: &'p P,
    collector: Collector,
    /// Timestamp of the events in `buffer`.
    current_ts: Option<i64>,
    buffer: Vec<Buffered>,
    stats: EvalStats,
    failed: Option<EqlError>,
}

impl<'p, P: Plan + ?Sized> Runner<'p, P> {
    pub fn new(plan: &'p P) -> Self {
        let limit = plan.limit();
        let collector = if plan.is_sample() {
            Collector::Samples { collector: SampleCollector::for_plan(plan), limit }
        } else if plan.is_sequence() {
            Collector::Sequences {
                matcher: SequenceMatcher::for_plan(plan),
                selected: Selector::new(limit),
                scratch: Vec::new(),
            }
        } else {
            Collector::Events(Selector::new(limit))
        };
        Runner { plan, collector, current_ts: None, buffer: Vec::new(), stats: EvalStats::default(), failed: None }
    }

    /// Counters so far (events of the current millisecond are not evaluated yet).
    pub fn stats(&self) -> &EvalStats {
        &self.stats
    }

    /// Adds the next event. Its timestamp must not be earlier than the previous event's: an out-of-order
    /// event is a bug in the source (it must sort by the timestamp field) and fails the run.
    pub fn push(&mut self, event: Event) -> Result<(), EqlError> {
        self.push_shared(Arc::new(event))
    }

    /// [`Runner::push`] for an event shared with other runners (one pass over a stream, many rules): the
    /// runner keeps a reference, never a copy.
    pub fn push_shared(&mut self, event: Arc<Event>) -> Result<(), EqlError> {
        let ts = match &self.collector {
            Collector::Samples { .. } => None,
            _ => self.plan.timestamp_ms(&event),
        };
        self.push_shared_at(event, ts)
    }

    /// [`Runner::push_shared`] with the event's timestamp already read (`Plan::timestamp_ms` of this plan,
    /// or of a plan with the same timestamp field and mapping): many rules over one stream read it once.
    pub fn push_shared_at(&mut self, event: Arc<Event>, ts: Option<i64>) -> Result<(), EqlError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.stats.events_seen += 1;
        if let Collector::Samples { collector, .. } = &mut self.collector {
            // A sample ignores time: every event counts, in arrival order, with or without a timestamp.
            return match collector.push(self.plan, event) {
                Ok(n) => {
                    self.stats.stage_matches += n;
                    Ok(())
                }
                Err(e) => {
                    self.failed = Some(e.clone());
                    Err(e)
                }
            };
        }
        let Some(ts) = ts else {
            self.stats.events_skipped_no_timestamp += 1;
            return Ok(());
        };
        match self.current_ts {
            Some(cur) if ts < cur => {
                let err = EqlError::query(
                    format!(
                        "internal error: event {}/{} (timestamp {ts} ms) arrived after an event at {cur} ms; \
                         the event source must deliver events sorted by the timestamp field",
                        event.index, event.id
                    ),
                    Default::default(),
                );
                self.failed = Some(err.clone());
                return Err(err);
            }
            Some(cur) if ts > cur => self.flush()?,
            _ => {}
        }
        self.current_ts = Some(ts);
        let tiebreaker = self.plan.tiebreaker(&event);
        self.buffer.push(Buffered { tiebreaker, event });
        Ok(())
    }

    /// Evaluates the remaining events and returns the selected results.
    pub fn finish(mut self) -> Result<Evaluation, EqlError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.flush()?;
        if let Collector::Sequences { matcher, selected, scratch } = &mut self.collector {
            // Sequences held back for a trailing missing-event verdict are decided now.
            matcher.finish(scratch);
            for done in scratch.drain(..) {
                self.stats.total_results += 1;
                selected.offer(done);
            }
        }
        let then_limits = self.plan.then_limits();
        let results = match self.collector {
            Collector::Events(sel) => {
                let mut items: Vec<Event> = sel.items.into_iter().map(Arc::unwrap_or_clone).collect();
                then_limits.iter().for_each(|l| l.apply(&mut items));
                Results::Events(items)
            }
            Collector::Sequences { selected, .. } => {
                let mut items: Vec<SequenceMatch> = selected.items.iter().map(Completed::to_match).collect();
                then_limits.iter().for_each(|l| l.apply(&mut items));
                Results::Sequences(items)
            }
            Collector::Samples { collector, limit } => {
                let (samples, total) = collector.finish(limit.count);
                self.stats.total_results = total;
                Results::Sequences(samples.iter().map(Completed::to_match).collect())
            }
        };
        self.stats.truncated = self.stats.total_results > results.len() as u64;
        Ok(Evaluation { results, stats: self.stats })
    }

    /// Orders the buffered millisecond by (tiebreaker, _index, _id) and evaluates it.
    fn flush(&mut self) -> Result<(), EqlError> {
        let Some(ts) = self.current_ts else { return Ok(()) };
        let mut batch = std::mem::take(&mut self.buffer);
        batch.sort_by(|a, b| {
            compare_tiebreakers(&a.tiebreaker, &b.tiebreaker)
                .then_with(|| a.event.index.as_bytes().cmp(b.event.index.as_bytes()))
                .then_with(|| a.event.id.as_bytes().cmp(b.event.id.as_bytes()))
        });
        let result = self.evaluate(ts, batch);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn evaluate(&mut self, ts: i64, batch: Vec<Buffered>) -> Result<(), EqlError> {
        let plan = self.plan;
        match &mut self.collector {
            Collector::Events(sel) => {
                for b in batch {
                    if plan.matches_stage(0, &b.event)? {
                        self.stats.stage_matches += 1;
                        self.stats.total_results += 1;
                        sel.offer(b.event);
                    }
                }
            }
            Collector::Sequences { matcher, selected, scratch } => {
                for b in batch {
                    let event = b.event;
                    self.stats.stage_matches += matcher.push(plan, &event, ts, scratch)?;
                    for done in scratch.drain(..) {
                        self.stats.total_results += 1;
                        selected.offer(done);
                    }
                }
            }
            // Samples never buffer: `push` hands their events over directly.
            Collector::Samples { .. } => {}
        }
        Ok(())
    }
}

/// Runs `plan` over events in any order (offline files, tests): sorts them by timestamp first (stable), then
/// streams them through a [`Runner`].
pub fn run<P: Plan + ?Sized>(plan: &P, events: impl IntoIterator<Item = Event>) -> Result<Evaluation, EqlError> {
    let mut keyed: Vec<(Option<i64>, Event)> = events.into_iter().map(|e| (plan.timestamp_ms(&e), e)).collect();
    // Events without a timestamp go first; the runner skips and counts them.
    keyed.sort_by_key(|(ts, _)| *ts);
    let mut runner = Runner::new(plan);
    for (_, e) in keyed {
        runner.push(e)?;
    }
    runner.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::test_plan::{cat, ev, n, when, TestPlan};
    use serde_json::json;

    /// The `n` ids of each returned sequence.
    fn seqs(out: &Evaluation) -> Vec<Vec<i64>> {
        match &out.results {
            Results::Sequences(s) => s.iter().map(|m| m.events.iter().map(n).collect()).collect(),
            Results::Events(_) => panic!("expected sequences"),
        }
    }

    fn evs(out: &Evaluation) -> Vec<i64> {
        match &out.results {
            Results::Events(v) => v.iter().map(n).collect(),
            Results::Sequences(_) => panic!("expected events"),
        }
    }

    fn ab() -> TestPlan {
        TestPlan::seq(vec![cat("A"), cat("B")], &["k"])
    }

    fn k(v: serde_json::Value) -> serde_json::Value {
        json!({ "k": v })
    }

    // §13.15: same millisecond, the stand-in (_index, _id) decides; B first in stand-in order → no sequence.
    #[test]
    fn same_millisecond_order_is_the_stand_in() {
        let plan = ab();
        // A has id 000002, B has id 000001: B sorts first although A was pushed first.
        let out = run(&plan, vec![ev(2, 100, "A", k(json!("x"))), ev(1, 100, "B", k(json!("x")))]).unwrap();
        assert!(seqs(&out).is_empty());
        // Swap the ids: A before B in the same millisecond forms a sequence.
        let out = run(&plan, vec![ev(2, 100, "B", k(json!("x"))), ev(1, 100, "A", k(json!("x")))]).unwrap();
        assert_eq!(seqs(&out), vec![vec![1, 2]]);
    }

    #[test]
    fn tiebreaker_comes_before_the_stand_in_and_null_sorts_last() {
        let mut plan = ab();
        plan.tiebreaker_field = Some("tb".into());
        // Stand-in says B(1) < A(2), but the tiebreaker puts A first.
        let a = ev(2, 100, "A", json!({"k": "x", "tb": 1}));
        let b = ev(1, 100, "B", json!({"k": "x", "tb": 2}));
        assert_eq!(seqs(&run(&plan, vec![b.clone(), a.clone()]).unwrap()), vec![vec![2, 1]]);
        // A missing tiebreaker sorts after a present one: A without tb comes after B with tb.
        let a_null = ev(0, 100, "A", json!({"k": "x"}));
        assert!(seqs(&run(&plan, vec![a_null, b]).unwrap()).is_empty());
    }

    // §13.16 / §8.5: inclusive maxspan measured from the first event.
    #[test]
    fn maxspan_is_inclusive() {
        let mut plan = ab();
        plan.maxspan_ms = Some(300_000);
        let hit = run(&plan, vec![ev(1, 0, "A", k(json!("x"))), ev(2, 300_000, "B", k(json!("x")))]).unwrap();
        assert_eq!(seqs(&hit), vec![vec![1, 2]]);
        let miss = run(&plan, vec![ev(1, 0, "A", k(json!("x"))), ev(2, 300_001, "B", k(json!("x")))]).unwrap();
        assert!(seqs(&miss).is_empty());
    }

    #[test]
    fn maxspan_counts_from_the_first_event_and_a_rejection_consumes_the_sequence() {
        let mut plan = TestPlan::seq(vec![cat("A"), cat("B"), cat("C")], &["k"]);
        plan.maxspan_ms = Some(100);
        // A(0) B(60) C(101): 101 ms from the first event → rejected although B→C is 41 ms.
        let out = run(&plan, vec![ev(1, 0, "A", k(json!("x"))), ev(2, 60, "B", k(json!("x"))), ev(3, 101, "C", k(json!("x")))])
            .unwrap();
        assert!(seqs(&out).is_empty());
        // Two stages: B(150) is rejected but consumes A(0); only the later A(160) → B(170) pair matches.
        let mut plan = ab();
        plan.maxspan_ms = Some(100);
        let a2_in_time = run(
            &plan,
            vec![ev(1, 0, "A", k(json!("x"))), ev(2, 150, "B", k(json!("x"))), ev(3, 160, "A", k(json!("x"))), ev(4, 170, "B", k(json!("x")))],
        )
        .unwrap();
        assert_eq!(seqs(&a2_in_time), vec![vec![3, 4]]);
    }

    // §13.17: a newer first-stage event supersedes the older one.
    #[test]
    fn latest_first_stage_wins() {
        let out = run(&ab(), vec![ev(1, 1, "A", k(json!("x"))), ev(2, 2, "A", k(json!("x"))), ev(3, 3, "B", k(json!("x")))]).unwrap();
        assert_eq!(seqs(&out), vec![vec![2, 3]]);
    }

    // §13.18: a pending sequence is consumed once.
    #[test]
    fn one_b_consumes_its_a() {
        let out = run(&ab(), vec![ev(1, 1, "A", k(json!("x"))), ev(2, 2, "B", k(json!("x"))), ev(3, 3, "B", k(json!("x")))]).unwrap();
        assert_eq!(seqs(&out), vec![vec![1, 2]]);
    }

    // §13.19: a null or missing key never joins (the plan returns no key tuple).
    #[test]
    fn null_keys_never_join() {
        let out = run(
            &ab(),
            vec![
                ev(1, 1, "A", k(json!(null))),
                ev(2, 2, "B", k(json!(null))),
                ev(3, 3, "A", json!({})),
                ev(4, 4, "B", json!({})),
                ev(5, 5, "A", k(json!([null]))),
                ev(6, 6, "B", k(json!([null]))),
            ],
        )
        .unwrap();
        assert!(seqs(&out).is_empty());
        assert_eq!(out.stats.stage_matches, 0);
    }

    // §13.20: keys are exact and case-sensitive; Long 5 is not String "5".
    #[test]
    fn keys_are_exact() {
        let out = run(&ab(), vec![ev(1, 1, "A", k(json!("0x129F1"))), ev(2, 2, "B", k(json!("0x129f1")))]).unwrap();
        assert!(seqs(&out).is_empty());
        let out = run(&ab(), vec![ev(1, 1, "A", k(json!(5))), ev(2, 2, "B", k(json!("5")))]).unwrap();
        assert!(seqs(&out).is_empty());
    }

    // §13.21 + QA sequenceWithMultivalue_ManyToMany: each key value matches independently, all sequences
    // ending on one event are returned, in the order of that event's key tuples.
    #[test]
    fn multi_valued_keys_match_independently() {
        let plan = TestPlan::seq(vec![cat("REQUEST"), cat("file")], &["tags"]);
        let out = run(
            &plan,
            vec![
                ev(1, 1, "REQUEST", json!({"tags": ["tag1", "tag2"]})),
                ev(4, 10, "REQUEST", json!({"tags": ["tag3", "tag4"]})),
                ev(23, 12, "file", json!({"tags": ["tag1", "tag3", null, "tag4"]})),
            ],
        )
        .unwrap();
        assert_eq!(seqs(&out), vec![vec![1, 23], vec![4, 23], vec![4, 23]]);
        let Results::Sequences(s) = &out.results else { unreachable!() };
        let keys: Vec<_> = s.iter().map(|m| m.join_keys.clone()).collect();
        assert_eq!(
            keys,
            vec![vec![KeyValue::Str("tag1".into())], vec![KeyValue::Str("tag3".into())], vec![KeyValue::Str("tag4".into())]]
        );
    }

    #[test]
    fn two_multi_valued_fields_give_a_cartesian_product() {
        let plan = TestPlan::seq(vec![cat("A"), cat("B")], &["t", "i"]);
        let out = run(
            &plan,
            vec![
                ev(1, 1, "A", json!({"t": ["a", "b"], "i": ["1", "2", "3"]})),
                ev(2, 2, "B", json!({"t": ["b", "a", "c"], "i": ["2", "1", "2"]})),
            ],
        )
        .unwrap();
        // B's tuples: (b,2),(b,1),(a,2),(a,1),(c,*) → four joins with A, in B's tuple order.
        let Results::Sequences(s) = &out.results else { unreachable!() };
        let keys: Vec<Vec<String>> = s
            .iter()
            .map(|m| m.join_keys.iter().map(|k| match k { KeyValue::Str(s) => s.clone(), _ => "?".into() }).collect())
            .collect();
        assert_eq!(keys, vec![vec!["b", "2"], vec!["b", "1"], vec!["a", "2"], vec!["a", "1"]]);
    }

    // §13.22: only the events pushed (the window) exist; an A before the window cannot start a sequence.
    #[test]
    fn only_events_in_the_window_count() {
        let all = vec![ev(1, 1_000, "A", k(json!("x"))), ev(2, 5_000, "B", k(json!("x")))];
        let from = 2_000;
        let window: Vec<Event> = all.iter().filter(|e| e.source["ts"].as_i64().unwrap() >= from).cloned().collect();
        assert_eq!(seqs(&run(&ab(), all).unwrap()).len(), 1);
        assert!(seqs(&run(&ab(), window).unwrap()).is_empty());
    }

    /// Keys p and q: [A_q,B_q] ends at ts 3, [A_p,B_p] at ts 4, [A_r,B_r] at ts 6 although A_r is earliest.
    fn crossing() -> Vec<Event> {
        vec![
            ev(1, 0, "A", k(json!("r"))),
            ev(2, 1, "A", k(json!("p"))),
            ev(3, 2, "A", k(json!("q"))),
            ev(4, 3, "B", k(json!("q"))),
            ev(5, 4, "B", k(json!("p"))),
            ev(6, 6, "B", k(json!("r"))),
        ]
    }

    // §13.23 / §8.6: ordered by the last event; tail keeps the latest; head the earliest; output ascending.
    #[test]
    fn sequences_are_ordered_by_last_event_and_cut() {
        let out = run(&ab(), crossing()).unwrap();
        assert_eq!(seqs(&out), vec![vec![3, 4], vec![2, 5], vec![1, 6]]);
        assert!(!out.stats.truncated);

        let tail = run(&ab().limit(Position::Tail, 2), crossing()).unwrap();
        assert_eq!(seqs(&tail), vec![vec![2, 5], vec![1, 6]]);
        assert_eq!(tail.stats.total_results, 3);
        assert!(tail.stats.truncated);

        let head = run(&ab().limit(Position::Head, 2), crossing()).unwrap();
        assert_eq!(seqs(&head), vec![vec![3, 4], vec![2, 5]]);
        assert!(head.stats.truncated);
    }

    // QA doubleSameSequence: one event can be stage 1 of one sequence and stage 0 of the next.
    #[test]
    fn qa_double_same_sequence() {
        let lt5 = || when(|e| n(e) < 5);
        let plan = TestPlan::seq(vec![lt5(), lt5()], &[]);
        let events: Vec<Event> = (1..=7).map(|i| ev(i, i * 10, "process", json!({}))).collect();
        assert_eq!(seqs(&run(&plan, events).unwrap()), vec![vec![1, 2], vec![2, 3], vec![3, 4]]);
    }

    // QA sequenceConditionManyMany: [serial <= 3] [true] [true].
    #[test]
    fn qa_sequence_condition_many_many() {
        let plan = TestPlan::seq(vec![when(|e| n(e) <= 3), when(|_| true), when(|_| true)], &[]);
        let events: Vec<Event> = (1..=8).map(|i| ev(i, i, "process", json!({}))).collect();
        assert_eq!(seqs(&run(&plan, events).unwrap()), vec![vec![1, 2, 3], vec![2, 3, 4], vec![3, 4, 5]]);
    }

    #[test]
    fn until_clears_pending_sequences_of_its_key_only() {
        let mut plan = ab();
        plan.until = Some(cat("U"));
        let out = run(
            &plan,
            vec![
                ev(1, 1, "A", k(json!("x"))),
                ev(2, 2, "A", k(json!("y"))),
                ev(3, 3, "U", k(json!("x"))),
                ev(4, 4, "B", k(json!("x"))),
                ev(5, 5, "B", k(json!("y"))),
                ev(6, 6, "A", k(json!("x"))),
                ev(7, 7, "B", k(json!("x"))),
            ],
        )
        .unwrap();
        assert_eq!(seqs(&out), vec![vec![2, 5], vec![6, 7]]);
    }

    // ES: until-events strictly before the extending event and at or after the pending sequence's last event
    // drop it (`UntilGroup.before` is strict, `Ordinal.between` inclusive).
    #[test]
    fn until_on_the_same_event_as_a_stage() {
        let mut plan = ab();
        plan.until = Some(when(|e| e.source.get("u").is_some()));
        // The A event is also an until-event: its own sequence is dropped.
        let out = run(&plan, vec![ev(1, 1, "A", json!({"k": "x", "u": 1})), ev(2, 2, "B", k(json!("x")))]).unwrap();
        assert!(seqs(&out).is_empty());
        // The completing B event is also an until-event: the sequence completes.
        let out = run(&plan, vec![ev(1, 1, "A", k(json!("x"))), ev(2, 2, "B", json!({"k": "x", "u": 1}))]).unwrap();
        assert_eq!(seqs(&out), vec![vec![1, 2]]);
    }

    #[test]
    fn event_query_head_and_tail() {
        let events = || (1..=6).map(|i| ev(i, 100 - i, if i % 3 == 0 { "B" } else { "A" }, json!({}))).collect::<Vec<_>>();
        // A events: 1,2,4,5 with timestamps 99,98,96,95 → ascending order 5,4,2,1.
        let all = run(&TestPlan::events(cat("A")), events()).unwrap();
        assert_eq!(evs(&all), vec![5, 4, 2, 1]);
        let tail = run(&TestPlan::events(cat("A")).limit(Position::Tail, 3), events()).unwrap();
        assert_eq!(evs(&tail), vec![4, 2, 1]);
        assert_eq!((tail.stats.total_results, tail.stats.truncated), (4, true));
        let head = run(&TestPlan::events(cat("A")).limit(Position::Head, 3), events()).unwrap();
        assert_eq!(evs(&head), vec![5, 4, 2]);
        let none = run(&TestPlan::events(cat("A")).limit(Position::Tail, 0), events()).unwrap();
        assert!(none.results.is_empty());
    }

    #[test]
    fn events_without_timestamp_are_skipped_and_counted() {
        let mut no_ts = ev(9, 0, "A", json!({}));
        no_ts.source.as_object_mut().unwrap().remove("ts");
        let out = run(&TestPlan::events(cat("A")), vec![ev(1, 1, "A", json!({})), no_ts]).unwrap();
        assert_eq!(evs(&out), vec![1]);
        assert_eq!((out.stats.events_seen, out.stats.events_skipped_no_timestamp), (2, 1));
    }

    #[test]
    fn runner_rejects_out_of_order_timestamps() {
        let plan = TestPlan::events(cat("A"));
        let mut r = Runner::new(&plan);
        r.push(ev(1, 10, "A", json!({}))).unwrap();
        r.push(ev(2, 10, "A", json!({}))).unwrap();
        let err = r.push(ev(3, 9, "A", json!({}))).unwrap_err();
        assert!(err.message.contains("sorted by the timestamp"), "{}", err.message);
        assert!(r.push(ev(4, 11, "A", json!({}))).is_err());
        assert!(r.finish().is_err());
    }

    #[test]
    fn streaming_runner_equals_offline_run() {
        let plan = ab();
        let events = crossing();
        let mut r = Runner::new(&plan);
        for e in events.clone() {
            r.push(e).unwrap();
        }
        assert_eq!(r.finish().unwrap(), run(&plan, events).unwrap());
    }

    #[test]
    fn a_query_error_aborts_the_run() {
        let mut plan = ab();
        plan.stages[1] = Box::new(|e: &Event| {
            if n(e) == 3 {
                Err(EqlError::query("boom", Default::default()))
            } else {
                Ok(e.source["cat"] == "B")
            }
        });
        let err = run(&plan, vec![ev(1, 1, "A", k(json!("x"))), ev(2, 2, "B", k(json!("x"))), ev(3, 3, "B", k(json!("x")))])
            .unwrap_err();
        assert_eq!(err.message, "boom");
    }

    #[test]
    fn pending_state_is_bounded_by_keys_not_events() {
        let mut plan = ab();
        plan.maxspan_ms = Some(10);
        let plan_ref = &plan;
        let mut m = SequenceMatcher::for_plan(plan_ref);
        let mut out = Vec::new();
        // 20 000 A events over 10 keys: at most 10 open slots.
        for i in 0..20_000i64 {
            let e = Arc::new(ev(i, i, "A", k(json!(format!("key{}", i % 10)))));
            m.push(plan_ref, &e, i, &mut out).unwrap();
            assert!(m.open_slots() <= 10);
        }
        // Prune: all slots started more than 10 ms before t = 200 000.
        m.prune(200_000);
        assert_eq!(m.open_slots(), 0);
    }
}
