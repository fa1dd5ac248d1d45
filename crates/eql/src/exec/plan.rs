//! The contract between the analysed query and the execution layer.
//!
//! `analyze` turns a syntax tree plus a field mapping into something that can answer per-event questions
//! (does this event satisfy stage N? what are its join keys? what is its ordinal?). `engine` and `sequence`
//! only ask those questions through [`Plan`], so the streaming machinery never looks at expressions or
//! mappings, and the evaluator never looks at ordering or state.

use crate::EqlError;
use crate::event::Event;
use std::cmp::Ordering;

/// Request-level settings of an EQL search (the parts of `_eql/search` that change results).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOptions {
    /// `timestamp_field` (default `@timestamp`): orders events and measures `maxspan`.
    pub timestamp_field: String,
    /// `event_category_field` (default `event.category`): what `<category> where` filters on.
    pub event_category_field: String,
    /// `tiebreaker_field`: orders events of the same millisecond before the stand-in `(_index, _id)`.
    pub tiebreaker_field: Option<String>,
    /// `size` (default 10; Kibana sends `max_signals`).
    pub size: usize,
    /// `result_position` when no pipe says otherwise (default tail).
    pub position: Position,
    /// `max_samples_per_key` of a `sample` query (Elasticsearch's default 1; Kibana never sends it).
    pub max_samples_per_key: usize,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            timestamp_field: "@timestamp".into(),
            event_category_field: "event.category".into(),
            tiebreaker_field: None,
            size: 10,
            position: Position::Tail,
            max_samples_per_key: 1,
        }
    }
}

/// Which end of the ordered results is kept when there are more than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Head,
    Tail,
}

/// The effective result limit: `size` and `result_position`, narrowed by `| head N` / `| tail N` pipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub position: Position,
    pub count: usize,
}

impl Limit {
    /// Applies this cut to results that are in ascending order.
    pub fn apply<T>(&self, items: &mut Vec<T>) {
        if items.len() > self.count {
            match self.position {
                Position::Head => items.truncate(self.count),
                Position::Tail => {
                    items.drain(..items.len() - self.count);
                }
            }
        }
    }
}

/// One part of a join key or a tiebreaker, compared exactly and type-aware like Elasticsearch's
/// `SequenceKey` (`Long 5` is not `String "5"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    Null,
    Bool(bool),
    Long(i64),
    /// A double, stored as its IEEE bits so the key stays hashable (normalised: -0.0 as 0.0).
    Double(u64),
    Str(String),
}

impl KeyValue {
    pub fn double(v: f64) -> KeyValue {
        KeyValue::Double(if v == 0.0 { 0.0f64.to_bits() } else { v.to_bits() })
    }

    /// The value as JSON, for `join_keys` in results and alert documents.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            KeyValue::Null => serde_json::Value::Null,
            KeyValue::Bool(b) => (*b).into(),
            KeyValue::Long(l) => (*l).into(),
            KeyValue::Double(bits) => serde_json::Number::from_f64(f64::from_bits(*bits))
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            KeyValue::Str(s) => s.clone().into(),
        }
    }
}

/// Compares two tiebreaker values the way Elasticsearch sorts them: numbers numerically, strings by code
/// point, and a missing tiebreaker after every present one.
pub fn compare_tiebreakers(a: &Option<KeyValue>, b: &Option<KeyValue>) -> Ordering {
    fn num(k: &KeyValue) -> Option<f64> {
        match k {
            KeyValue::Long(l) => Some(*l as f64),
            KeyValue::Double(bits) => Some(f64::from_bits(*bits)),
            _ => None,
        }
    }
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => match (x, y) {
            (KeyValue::Long(p), KeyValue::Long(q)) => p.cmp(q),
            _ => match (num(x), num(y)) {
                (Some(p), Some(q)) => p.partial_cmp(&q).unwrap_or(Ordering::Equal),
                _ => x.cmp(y),
            },
        },
    }
}

/// What the execution layer needs to know about an analysed query. Implemented by
/// `analyze::CompiledQuery`; tests may implement it by hand.
///
/// Stages are numbered after expanding `with runs=N` (a stage with runs=3 is three consecutive stages).
/// An event query has exactly one stage, 0.
pub trait Plan {
    /// True for `sequence` queries.
    fn is_sequence(&self) -> bool;
    /// Number of (expanded) positive stages; 1 for an event query; the number of filters for a sample.
    fn stage_count(&self) -> usize;
    /// Whether `event` satisfies stage `stage` (category filter included). `Err` is a query error that fails
    /// the whole search, as it would in Elasticsearch (e.g. a non-numeric string against a `long` field).
    fn matches_stage(&self, stage: usize, event: &Event) -> Result<bool, EqlError>;
    /// The join keys of `event` for `stage`: one entry per combination of multi-valued key fields (cartesian
    /// product, duplicates collapsed, null elements ignored). Empty when a non-optional key is null/missing,
    /// i.e. the event never joins at this stage. For an event query or a sequence without keys: one empty key.
    fn join_keys(&self, stage: usize, event: &Event) -> Vec<Vec<KeyValue>>;
    /// True when the sequence has an `until` stage.
    fn has_until(&self) -> bool;
    /// Whether `event` satisfies the `until` stage.
    fn matches_until(&self, event: &Event) -> Result<bool, EqlError>;
    /// Join keys of `event` for the `until` stage.
    fn until_keys(&self, event: &Event) -> Vec<Vec<KeyValue>>;
    /// Inclusive maximum span in milliseconds.
    fn maxspan_ms(&self) -> Option<i64>;
    /// The effective limit (request size and position, narrowed by pipes).
    fn limit(&self) -> Limit;
    /// Further cuts applied, in order, to what `limit` selected (from the second and later pipes, e.g.
    /// `| head 4 | tail 2`). Empty by default.
    fn then_limits(&self) -> Vec<Limit> {
        Vec::new()
    }
    /// The event's timestamp in epoch milliseconds (`timestamp_field`, ms resolution), or `None` when it is
    /// missing or unparseable (such events are never returned by Elasticsearch's EQL).
    fn timestamp_ms(&self, event: &Event) -> Option<i64>;
    /// The event's tiebreaker value, if a tiebreaker field is configured and present.
    fn tiebreaker(&self, event: &Event) -> Option<KeyValue>;
    /// Every `_source` path the plan reads, when it can tell: an event projected to these fields gives the
    /// same answers as the whole document. `None`: unknown (keep whole documents).
    fn fields_read(&self) -> Option<Vec<String>> {
        None
    }
    /// The `_source` paths still read from an event after it matched a stage (the timestamp of a result is
    /// read again when results are settled against the window). A sequence's open state keeps only these
    /// of a projected event; `None`: keep the event whole.
    fn retained_fields(&self) -> Option<Vec<String>> {
        None
    }

    /// Where the sequence's missing-event stages (`![...]`, after `runs=N` expansion) sit: entry `m` is the
    /// number of positive stages written before missing stage `m` (0 = leading, `stage_count()` = trailing).
    /// Empty for queries without missing events.
    fn missing_positions(&self) -> Vec<usize> {
        Vec::new()
    }
    /// Whether `event` satisfies missing-event stage `m` (category filter included).
    fn matches_missing(&self, _m: usize, _event: &Event) -> Result<bool, EqlError> {
        Ok(false)
    }
    /// Join keys of `event` for missing-event stage `m` (same shape as [`Plan::join_keys`]).
    fn missing_keys(&self, _m: usize, _event: &Event) -> Vec<Vec<KeyValue>> {
        Vec::new()
    }

    /// True for `sample` queries: stages are the sample's filters and [`Plan::join_keys`] its keys.
    fn is_sample(&self) -> bool {
        false
    }
    /// `max_samples_per_key` of the request (Elasticsearch's default: 1).
    fn max_samples_per_key(&self) -> usize {
        1
    }
}

/// Orders two join-key tuples the way an ascending composite aggregation orders its buckets (the order of
/// `sample` results): position by position, a null key (the `missing_bucket` of an optional key) first,
/// numbers numerically, strings by code point, `false` before `true`.
pub fn compare_key_tuples(a: &[KeyValue], b: &[KeyValue]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (KeyValue::Null, KeyValue::Null) => Ordering::Equal,
            (KeyValue::Null, _) => Ordering::Less,
            (_, KeyValue::Null) => Ordering::Greater,
            _ => compare_tiebreakers(&Some(x.clone()), &Some(y.clone())),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}
