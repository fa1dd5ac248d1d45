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
//! ([`RunStats::total_results`]) and every event is still evaluated, so a query error anywhere in the window
//! fails the run, as the Elasticsearch search would.
//!
//! Events without a timestamp are skipped and counted: Elasticsearch's EQL never returns them.

use super::plan::{compare_tiebreakers, KeyValue, Limit, Plan, Position};
use super::sequence::{Completed, SequenceMatch, SequenceMatcher};
use super::EqlError;
use crate::event::Event;
use std::collections::VecDeque;
use std::rc::Rc;

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
pub struct RunStats {
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
pub struct RunOutput {
    pub results: Results,
    pub stats: RunStats,
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
    Events(Selector<Event>),
    Sequences { matcher: SequenceMatcher, selected: Selector<Completed>, scratch: Vec<Completed> },
}

/// A buffered event of the current millisecond with the rest of its ordinal.
struct Buffered {
    tiebreaker: Option<KeyValue>,
    event: Event,
}

/// Streams events through a [`Plan`]. Push events in non-decreasing timestamp order, then [`Runner::finish`].
/// After an error the runner is spent: every later call returns the same error.
pub struct Runner<'p, P: Plan + ?Sized> {
    plan: &'p P,
    collector: Collector,
    /// Timestamp of the events in `buffer`.
    current_ts: Option<i64>,
    buffer: Vec<Buffered>,
    stats: RunStats,
    failed: Option<EqlError>,
}

impl<'p, P: Plan + ?Sized> Runner<'p, P> {
    pub fn new(plan: &'p P) -> Self {
        let limit = plan.limit();
        let collector = if plan.is_sequence() {
            Collector::Sequences {
                matcher: SequenceMatcher::for_plan(plan),
                selected: Selector::new(limit),
                scratch: Vec::new(),
            }
        } else {
            Collector::Events(Selector::new(limit))
        };
        Runner { plan, collector, current_ts: None, buffer: Vec::new(), stats: RunStats::default(), failed: None }
    }

    /// Counters so far (events of the current millisecond are not evaluated yet).
    pub fn stats(&self) -> &RunStats {
        &self.stats
    }

    /// Adds the next event. Its timestamp must not be earlier than the previous event's: an out-of-order
    /// event is a bug in the source (it must sort by the timestamp field) and fails the run.
    pub fn push(&mut self, event: Event) -> Result<(), EqlError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.stats.events_seen += 1;
        let Some(ts) = self.plan.timestamp_ms(&event) else {
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
    pub fn finish(mut self) -> Result<RunOutput, EqlError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.flush()?;
        let results = match self.collector {
            Collector::Events(sel) => Results::Events(sel.items.into_iter().collect()),
            Collector::Sequences { selected, .. } => {
                Results::Sequences(selected.items.iter().map(Completed::to_match).collect())
            }
        };
        self.stats.truncated = self.stats.total_results > results.len() as u64;
        Ok(RunOutput { results, stats: self.stats })
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
                    let event = Rc::new(b.event);
                    self.stats.stage_matches += matcher.push(plan, &event, ts, scratch)?;
                    for done in scratch.drain(..) {
                        self.stats.total_results += 1;
                        selected.offer(done);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Runs `plan` over events in any order (offline files, tests): sorts them by timestamp first (stable), then
/// streams them through a [`Runner`].
pub fn run<P: Plan + ?Sized>(plan: &P, events: impl IntoIterator<Item = Event>) -> Result<RunOutput, EqlError> {
    let mut keyed: Vec<(Option<i64>, Event)> = events.into_iter().map(|e| (plan.timestamp_ms(&e), e)).collect();
    // Events without a timestamp go first; the runner skips and counts them.
    keyed.sort_by_key(|(ts, _)| *ts);
    let mut runner = Runner::new(plan);
    for (_, e) in keyed {
        runner.push(e)?;
    }
    runner.finish()
}
