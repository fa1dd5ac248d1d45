//! `sample` queries: sets of events that share join-key values, one event per filter, in any order.
//!
//! Elasticsearch (`SampleIterator`, `SampleQueryRequest`) finds the join-key values present in every filter
//! with composite aggregations (buckets in ascending key order; a null bucket only for optional `?` keys),
//! then, per key, asks each filter for its first `filters × max_samples_per_key` documents and picks distinct
//! documents by backtracking: the first document of filter 1, then the first one of filter 2 not already
//! taken, and so on, backing up when a filter runs out. Samples are returned in ascending key order and the
//! search stops at `size` samples. Timestamps play no part: the events of a sample are unordered in time and
//! a document without a timestamp can take part.
//!
//! In memory the same happens while streaming: per key and filter, the first `filters ×
//! max_samples_per_key` matching events are kept (memory is bounded by keys × filters × that cap), and the
//! samples are built when the stream ends. Which documents are "first" is where esdetect has to choose: ES
//! takes them in index order (unspecified), esdetect in the order events arrive (ascending by timestamp for a
//! rule window, file order for the conformance data).
//!
//! Key values are compared exactly as sequence keys are (type-aware), and multi-valued key fields expand to
//! one key per value combination, as composite aggregation buckets do.

use crate::plan::{compare_key_tuples, KeyValue, Plan};
use crate::sequence::Completed;
use crate::EqlError;
use crate::event::Event;
use std::collections::HashMap;
use std::sync::Arc;

/// Per filter, the candidate events of one key.
type Candidates = Vec<Vec<Arc<Event>>>;

/// Collects per-key candidates for a `sample` plan. Feed every event with [`SampleCollector::push`], then
/// [`SampleCollector::finish`].
#[derive(Debug)]
pub struct SampleCollector {
    filters: usize,
    per_key: usize,
    /// Candidates kept per filter and key.
    cap: usize,
    /// `candidates[key][f]`: the first `cap` events matching filter `f` with that key, in arrival order.
    candidates: HashMap<Vec<KeyValue>, Candidates>,
}

impl SampleCollector {
    pub fn for_plan<P: Plan + ?Sized>(plan: &P) -> SampleCollector {
        let filters = plan.stage_count();
        let per_key = plan.max_samples_per_key().max(1);
        SampleCollector { filters, per_key, cap: filters.saturating_mul(per_key), candidates: HashMap::new() }
    }

    /// Number of distinct join keys seen so far.
    pub fn keys(&self) -> usize {
        self.candidates.len()
    }

    /// Offers one event to every filter. Returns how many (filter, key) matches it produced.
    pub fn push<P: Plan + ?Sized>(&mut self, plan: &P, event: Arc<Event>) -> Result<u64, EqlError> {
        let mut matches = 0u64;
        for f in 0..self.filters {
            if !plan.matches_stage(f, &event)? {
                continue;
            }
            for key in plan.join_keys(f, &event) {
                matches += 1;
                let lists = self.candidates.entry(key).or_insert_with(|| vec![Vec::new(); self.filters]);
                if lists[f].len() < self.cap {
                    lists[f].push(Arc::clone(&event));
                }
            }
        }
        Ok(matches)
    }

    /// Builds the samples, ascending by key, at most `limit` of them. Also returns how many samples there
    /// were before the cut, so a caller can tell that `size` (`max_signals`) dropped some.
    pub fn finish(self, limit: usize) -> (Vec<Completed>, u64) {
        let mut keys: Vec<(Vec<KeyValue>, Candidates)> =
            self.candidates.into_iter().filter(|(_, lists)| lists.iter().all(|l| !l.is_empty())).collect();
        keys.sort_by(|a, b| compare_key_tuples(&a.0, &b.0));
        let mut out = Vec::new();
        let mut total = 0u64;
        for (key, lists) in keys {
            for events in pick(&lists, self.per_key) {
                total += 1;
                if out.len() < limit {
                    out.push(Completed { join_keys: key.clone(), events, missing: Vec::new() });
                }
            }
        }
        (out, total)
    }
}

/// Up to `wanted` combinations of distinct events, one per filter, in backtracking order.
fn pick(lists: &[Vec<Arc<Event>>], wanted: usize) -> Vec<Vec<Arc<Event>>> {
    fn same(a: &Event, b: &Event) -> bool {
        a.index == b.index && a.id == b.id
    }
    fn go(f: usize, lists: &[Vec<Arc<Event>>], partial: &mut Vec<Arc<Event>>, out: &mut Vec<Vec<Arc<Event>>>, wanted: usize) {
        for e in &lists[f] {
            if partial.iter().any(|p| same(p, e)) {
                continue;
            }
            partial.push(Arc::clone(e));
            if f + 1 == lists.len() {
                out.push(partial.clone());
            } else {
                go(f + 1, lists, partial, out, wanted);
            }
            partial.pop();
            if out.len() >= wanted {
                return;
            }
        }
    }
    let mut out = Vec::new();
    if !lists.is_empty() && wanted > 0 {
        go(0, lists, &mut Vec::with_capacity(lists.len()), &mut out, wanted);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(n: i64) -> Arc<Event> {
        Arc::new(Event::new("i", n.to_string(), json!({ "n": n })))
    }

    fn ids(samples: &[Vec<Arc<Event>>]) -> Vec<Vec<String>> {
        samples.iter().map(|s| s.iter().map(|e| e.id.clone()).collect()).collect()
    }

    #[test]
    fn backtracking_picks_distinct_documents_like_elasticsearch() {
        // The example of ES's SampleIterator: [1,2,3] [4,5] [4,5,3] → [1,4,5].
        let lists = vec![vec![ev(1), ev(2), ev(3)], vec![ev(4), ev(5)], vec![ev(4), ev(5), ev(3)]];
        assert_eq!(ids(&pick(&lists, 1)), vec![vec!["1", "4", "5"]]);
        // [1,1] [1,1,1] [1,1,3]: one document cannot fill two filters → no sample.
        let lists = vec![vec![ev(1)], vec![ev(1)], vec![ev(1), ev(3)]];
        assert!(pick(&lists, 1).is_empty());
        // Several samples per key come in backtracking order.
        let lists = vec![vec![ev(1), ev(2)], vec![ev(1), ev(2), ev(3)]];
        assert_eq!(ids(&pick(&lists, 3)), vec![vec!["1", "2"], vec!["1", "3"], vec!["2", "1"]]);
    }
}

/// Samples through the whole runner, on a hand-written plan.
#[cfg(test)]
mod runner_tests {
    use crate::engine::{run, Results};
    use crate::plan::KeyValue;
    use crate::sequence::test_plan::{cat, n, TestPlan};
    use crate::event::Event;
    use serde_json::json;

    /// An event without a timestamp: samples do not need one.
    fn ev(id: i64, cat: &str, key: serde_json::Value) -> Event {
        Event::new("i", format!("{id:06}"), json!({"n": id, "cat": cat, "k": key}))
    }

    #[test]
    fn samples_are_ordered_by_key_cut_at_size_and_need_every_filter() {
        let mut plan = TestPlan::seq(vec![cat("A"), cat("B")], &["k"]).limit(crate::plan::Position::Tail, 2);
        plan.sequence = false;
        plan.sample = true;
        let events = vec![
            ev(1, "B", json!("z")),
            ev(2, "A", json!("z")),
            ev(3, "A", json!("m")),
            ev(4, "A", json!("a")),
            ev(5, "B", json!("m")),
            ev(6, "B", json!("a")),
            ev(7, "A", json!("only-a")),
            ev(8, "A", json!("a")),
        ];
        let out = run(&plan, events.clone()).unwrap();
        let Results::Sequences(s) = &out.results else { panic!("samples come back as sequences") };
        // Keys ascending (a < m < z), the first candidates in arrival order, `size` 2 keeps a and m.
        let got: Vec<(Vec<KeyValue>, Vec<i64>)> = s.iter().map(|m| (m.join_keys.clone(), m.events.iter().map(n).collect())).collect();
        assert_eq!(
            got,
            vec![(vec![KeyValue::Str("a".into())], vec![4, 6]), (vec![KeyValue::Str("m".into())], vec![3, 5])]
        );
        assert_eq!(out.stats.events_skipped_no_timestamp, 0);
        // Three samples existed (a, m, z); `size` kept two, and the run says so.
        assert_eq!((out.stats.total_results, out.stats.truncated), (3, true));
    }
}

/// Property: samples are exactly the keys for which distinct events can fill every filter (checked by brute
/// force over all matching events), ascending, each sample valid.
#[cfg(test)]
mod properties {
    use crate::engine::{run, Results};
    use crate::plan::{compare_key_tuples, KeyValue, Position};
    use crate::sequence::test_plan::{n, when, TestPlan};
    use crate::event::Event;
    use proptest::prelude::*;
    use serde_json::{json, Value};
    use std::cmp::Ordering;

    fn cat_in(e: &Event, cats: &[&str]) -> bool {
        e.source.get("cat").and_then(Value::as_str).is_some_and(|c| cats.contains(&c))
    }

    /// Overlapping filters, so one event can match several of them and distinctness matters.
    const FILTERS: [&[&str]; 3] = [&["A", "B"], &["B", "C"], &["A", "C"]];

    fn plan() -> TestPlan {
        let stages = FILTERS.iter().map(|cats| when(move |e: &Event| cat_in(e, cats))).collect();
        let mut p = TestPlan::seq(stages, &["k"]).limit(Position::Tail, 50);
        p.sequence = false;
        p.sample = true;
        p
    }

    /// Whether distinct events from `events` can fill every filter (any order of choice).
    fn fillable(events: &[&Event], f: usize, used: &mut Vec<i64>) -> bool {
        if f == FILTERS.len() {
            return true;
        }
        for e in events {
            if cat_in(e, FILTERS[f]) && !used.contains(&n(e)) {
                used.push(n(e));
                if fillable(events, f + 1, used) {
                    return true;
                }
                used.pop();
            }
        }
        false
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

        #[test]
        fn samples_are_the_fillable_keys_in_order(raw in proptest::collection::vec((0usize..3, 0usize..4), 0..14)) {
            let events: Vec<Event> = raw
                .iter()
                .enumerate()
                .map(|(i, (c, k))| {
                    let cat = ["A", "B", "C"][*c];
                    Event::new("i", format!("{i:04}"), json!({"n": i, "cat": cat, "k": format!("k{k}")}))
                })
                .collect();
            let out = run(&plan(), events.clone()).unwrap();
            let Results::Sequences(samples) = out.results else { panic!("samples come back as sequences") };
            let mut expected: Vec<String> = (0..4).map(|k| format!("k{k}")).filter(|key| {
                let of_key: Vec<&Event> = events.iter().filter(|e| e.source["k"] == json!(key)).collect();
                fillable(&of_key, 0, &mut Vec::new())
            }).collect();
            expected.sort();
            let got: Vec<String> = samples.iter().map(|s| match &s.join_keys[..] {
                [KeyValue::Str(k)] => k.clone(),
                other => panic!("unexpected key {other:?}"),
            }).collect();
            prop_assert_eq!(&got, &expected);
            for w in samples.windows(2) {
                prop_assert_eq!(compare_key_tuples(&w[0].join_keys, &w[1].join_keys), Ordering::Less);
            }
            for (s, key) in samples.iter().zip(&got) {
                let ids: Vec<i64> = s.events.iter().map(n).collect();
                for (f, e) in s.events.iter().enumerate() {
                    prop_assert!(cat_in(e, FILTERS[f]));
                    prop_assert_eq!(&e.source["k"], &json!(key));
                }
                let mut distinct = ids.clone();
                distinct.sort();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), ids.len(), "events of a sample are distinct: {:?}", ids);
            }
        }
    }
}
