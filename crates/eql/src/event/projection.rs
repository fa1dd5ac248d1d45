//! Parsing only the fields the loaded rules read: the one-pass data path's compact event form.
//!
//! A Windows Security event is ~2.6 KB of JSON, of which a rule reads a dozen values. Building the whole
//! `serde_json::Value` tree for every event and dropping it again was most of the CPU time of a run
//! (allocation and free of hundreds of nodes per event). A [`FieldSet`] is the union of the dotted field
//! paths every loaded rule reads (query fields, timestamp, tiebreaker, join keys, window fields);
//! [`project_str`] parses a document once, keeping exactly the subtrees those paths can reach and skipping
//! the rest. The full `_source` stays available as text for the few events that become alerts.
//!
//! Two readers give the same projection: a hand-written scan (the `scan` module, the fast path) and serde
//! with [`serde::de::IgnoredAny`] for the skipped values (here: the reference, and the reader of every
//! text the scan gives up on — escaped keys, control characters, errors).
//!
//! The projection is exact for every reader that walks dotted paths the way Elasticsearch does (nested
//! objects and dotted keys are the same field, arrays are flattened): a kept object keeps every key that
//! is, or is a dotted prefix of, a wanted path, in document order, with the same last-one-wins rule for
//! duplicate keys as `serde_json::Map`. A key that *is* a wanted path keeps its whole value.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::fmt;

/// How much of each `_source` a source parses.
#[derive(Debug, Clone)]
pub enum Projection {
    /// The whole document (`Event::source` is the `_source`).
    Full,
    /// Only these fields (`Event::source` is a projection; the text is kept for alerts).
    Fields(std::sync::Arc<FieldSet>),
}

impl Projection {
    /// The event of a hit: its `_source` text parsed whole or projected.
    pub fn event(&self, index: String, id: String, source: &str) -> Result<crate::event::Event, serde_json::Error> {
        use crate::event::Event;
        match self {
            Projection::Full => Ok(Event::new(index, id, serde_json::from_str(source)?)),
            Projection::Fields(fields) => Ok(Event::projected(index, id, project_str(fields, source)?, source.into())),
        }
    }
}

/// The dotted field paths to keep, compiled into a trie over key prefixes.
#[derive(Debug, Clone, Default)]
pub struct FieldSet {
    pub(super) root: Node,
}

/// One object level: for each key that can lead to a wanted path, what to keep below it.
#[derive(Debug, Clone, Default)]
pub(super) struct Node {
    /// Keyed by object key; looked up once per key of every parsed object, hence the fast hasher.
    pub(super) entries: FxHashMap<Box<str>, Entry>,
    /// For each key of `entries`, the bit of its length (63 for 63 bytes or more) and the bit of its
    /// first byte (modulo 64): the scan rejects most keys of an object with these, before hashing them.
    lengths: u64,
    firsts: u64,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Entry {
    /// The key is itself a wanted path: keep its whole value.
    pub(super) whole: bool,
    /// Wanted paths continue below the key (the key is a dotted prefix of them).
    pub(super) below: Option<Box<Node>>,
}

impl Node {
    fn build<'a>(paths: impl IntoIterator<Item = &'a str>) -> Node {
        let mut whole: FxHashMap<&str, bool> = FxHashMap::default();
        let mut rests: FxHashMap<&str, Vec<&str>> = FxHashMap::default();
        for path in paths {
            // Every dotted prefix of the path may be a key of this object (`a`, `a.b`, `a.b.c`).
            for (i, _) in path.match_indices('.') {
                rests.entry(&path[..i]).or_default().push(&path[i + 1..]);
            }
            *whole.entry(path).or_default() = true;
        }
        let mut entries: FxHashMap<Box<str>, Entry> = FxHashMap::default();
        for (key, _) in whole {
            entries.entry(key.into()).or_default().whole = true;
        }
        for (key, below) in rests {
            entries.entry(key.into()).or_default().below = Some(Box::new(Node::build(below)));
        }
        let (mut lengths, mut firsts) = (0, 0);
        for key in entries.keys() {
            let (length, first) = Node::key_bits(key);
            lengths |= length;
            firsts |= first;
        }
        Node { entries, lengths, firsts }
    }

    /// The entry of `key`, if it leads to a wanted path.
    #[inline]
    pub(super) fn get(&self, key: &str) -> Option<&Entry> {
        let (length, first) = Node::key_bits(key);
        if self.lengths & length == 0 || self.firsts & first == 0 {
            return None;
        }
        self.entries.get(key)
    }

    /// How many keys can lead to a wanted path (an upper bound of a projected object's size).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    fn key_bits(key: &str) -> (u64, u64) {
        (1 << key.len().min(63), 1 << (key.as_bytes().first().copied().unwrap_or(0) & 63))
    }
}

impl FieldSet {
    /// The set of `paths` (duplicates and order do not matter).
    pub fn new<S: AsRef<str>>(paths: impl IntoIterator<Item = S>) -> FieldSet {
        let mut paths: Vec<String> = paths.into_iter().map(|p| p.as_ref().to_string()).filter(|p| !p.is_empty()).collect();
        paths.sort();
        paths.dedup();
        FieldSet { root: Node::build(paths.iter().map(String::as_str)) }
    }

    /// Keeps from a parsed document what [`project_str`] would keep from its text.
    pub fn prune(&self, doc: &Value) -> Value {
        match doc {
            Value::Object(map) => Value::Object(prune_map(&self.root, map)),
            _ => Value::Object(Map::new()),
        }
    }
}

fn prune_map(node: &Node, map: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in map {
        let Some(entry) = node.entries.get(k.as_str()) else { continue };
        if entry.whole {
            out.insert(k.clone(), v.clone());
        } else if let Some(below) = &entry.below {
            if let Some(p) = prune_value(below, v) {
                out.insert(k.clone(), p);
            }
        }
    }
    out
}

fn prune_value(node: &Node, v: &Value) -> Option<Value> {
    match v {
        Value::Object(map) => Some(Value::Object(prune_map(node, map))),
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(|it| prune_value(node, it)).collect())),
        // A scalar where an object was wanted: no path below it can be read.
        _ => None,
    }
}

/// Parses a JSON object's text keeping only the subtrees `fields` can reach. Errors are serde_json's
/// (the text is not valid JSON, or not an object).
pub fn project_str(fields: &FieldSet, json: &str) -> Result<Value, serde_json::Error> {
    match super::scan::project_str(&fields.root, json) {
        Some(map) => Ok(Value::Object(map)),
        None => project_str_serde(fields, json),
    }
}

/// [`project_str`] with serde alone: the reference the fast scan (the `scan` module) must agree with, and
/// what reads the texts the scan gives up on.
pub fn project_str_serde(fields: &FieldSet, json: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value = ObjectSeed(&fields.root).deserialize(&mut de)?;
    de.end()?;
    Ok(Value::Object(value))
}

/// Deserializes a map keeping the keys `node` wants.
struct ObjectSeed<'n>(&'n Node);

impl<'de, 'n> DeserializeSeed<'de> for ObjectSeed<'n> {
    type Value = Map<String, Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'n> Visitor<'de> for ObjectSeed<'n> {
    type Value = Map<String, Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = access.next_key_seed(KeySeed)? {
            match self.0.entries.get(key.as_ref()) {
                Some(Entry { whole: true, .. }) => {
                    let v: Value = access.next_value()?;
                    out.insert(key.into_owned(), v);
                }
                Some(Entry { below: Some(below), .. }) => {
                    if let Some(v) = access.next_value_seed(BelowSeed(below))? {
                        out.insert(key.into_owned(), v);
                    } else {
                        // A duplicate key replaces the earlier value, as in `serde_json::Map`.
                        out.shift_remove(key.as_ref());
                    }
                }
                _ => {
                    access.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A value below a wanted prefix: objects are projected, arrays element-wise, scalars dropped.
struct BelowSeed<'n>(&'n Node);

impl<'de, 'n> DeserializeSeed<'de> for BelowSeed<'n> {
    type Value = Option<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'n> Visitor<'de> for BelowSeed<'n> {
    type Value = Option<Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
        ObjectSeed(self.0).visit_map(access).map(|m| Some(Value::Object(m)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = access.next_element_seed(BelowSeed(self.0))? {
            if let Some(v) = item {
                items.push(v);
            }
        }
        Ok(Some(Value::Array(items)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// An object key, borrowed from the input when it has no escapes (no allocation for skipped keys).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// A search hit or a bare document, as found in an event file or a search response.
#[derive(Debug, PartialEq)]
pub enum Document {
    /// `{"_index": …, "_id": …, "_source": {…}, …}`: identity and the projection of `_source` (other keys
    /// are skipped).
    Hit { index: Option<Value>, id: Option<Value>, projection: Value },
    /// Any other JSON object: the whole object is the document.
    Bare,
}

/// Reads a JSON object in one pass: a hit when it has `_source` (then `_source` is projected to `fields`
/// on the way), else a bare document. Errors when the text is not a JSON object or `_source` is not one;
/// callers report those from a full parse, which gives the precise reason.
pub fn read_document(fields: &FieldSet, json: &str) -> Result<Document, serde_json::Error> {
    match super::scan::read_document(&fields.root, json) {
        Some(doc) => Ok(doc),
        None => read_document_serde(fields, json),
    }
}

/// [`read_document`] with serde alone: the reference the fast scan (the `scan` module) must agree with,
/// and what reads the texts the scan gives up on (so its errors are serde's).
pub fn read_document_serde(fields: &FieldSet, json: &str) -> Result<Document, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    let doc = de.deserialize_map(TopVisitor(&fields.root))?;
    de.end()?;
    Ok(doc)
}

struct TopVisitor<'n>(&'n Node);

impl<'de, 'n> Visitor<'de> for TopVisitor<'n> {
    type Value = Document;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let (mut index, mut id, mut projection) = (None, None, None);
        while let Some(key) = access.next_key_seed(KeySeed)? {
            match key.as_ref() {
                "_index" => index = Some(access.next_value::<Value>()?),
                "_id" => id = Some(access.next_value::<Value>()?),
                "_source" => projection = Some(access.next_value_seed(ObjectSeed(self.0))?),
                _ => {
                    access.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match projection {
            Some(p) => Document::Hit { index, id, projection: Value::Object(p) },
            None => Document::Bare,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "@timestamp": "2026-01-01T00:00:00Z",
            "event": {"code": "4624", "category": ["authentication"], "other": {"deep": 1}},
            "event.code": "x",
            "host": [{"ip": ["10.0.0.1"], "name": "a"}, {"ip": "fe80::1"}, 7],
            "winlog": {"event_data": {"LogonType": "3", "Big": "y".repeat(100)}},
            "unrelated": {"a": [1, 2, {"b": 3}]},
            "source.ip": null
        })
    }

    #[test]
    fn keeps_exactly_the_reachable_subtrees() {
        let fields = FieldSet::new(["event.code", "host.ip", "winlog.event_data.LogonType", "@timestamp", "source.ip"]);
        let text = doc().to_string();
        let p = project_str(&fields, &text).unwrap();
        assert_eq!(
            p,
            json!({
                "@timestamp": "2026-01-01T00:00:00Z",
                "event": {"code": "4624"},
                "event.code": "x",
                "host": [{"ip": ["10.0.0.1"]}, {"ip": "fe80::1"}],
                "winlog": {"event_data": {"LogonType": "3"}},
                "source.ip": null
            })
        );
        // Parsing the text and pruning the tree agree.
        assert_eq!(fields.prune(&doc()), p);
    }

    #[test]
    fn every_path_reader_sees_the_same_values() {
        let paths = ["event.code", "host.ip", "host.name", "event.category", "winlog.event_data.LogonType", "missing.x"];
        let fields = FieldSet::new(paths);
        let full = Event::new("i", "1", doc());
        let projected = Event::new("i", "1", project_str(&fields, &doc().to_string()).unwrap());
        for p in paths {
            assert_eq!(full.field_values(p), projected.field_values(p), "{p}");
        }
    }

    #[test]
    fn whole_value_when_a_key_is_a_wanted_path() {
        let fields = FieldSet::new(["event", "event.code"]);
        let p = project_str(&fields, &doc().to_string()).unwrap();
        assert_eq!(p["event"], doc()["event"]);
    }

    #[test]
    fn duplicate_keys_follow_serde_json() {
        let fields = FieldSet::new(["a.b"]);
        let text = r#"{"a":{"b":1},"x":0,"a":{"b":2}}"#;
        let full: Value = serde_json::from_str(text).unwrap();
        assert_eq!(project_str(&fields, text).unwrap(), fields.prune(&full));
        assert_eq!(project_str(&fields, text).unwrap(), json!({"a": {"b": 2}}));
    }

    #[test]
    fn escaped_keys_and_bad_input() {
        let fields = FieldSet::new(["a\"b"]);
        assert_eq!(project_str(&fields, r#"{"a\"b": 1, "c": 2}"#).unwrap(), json!({"a\"b": 1}));
        assert!(project_str(&fields, "{\"a\": ").is_err());
        assert!(project_str(&fields, "[1]").is_err());
        assert!(project_str(&fields, "{} x").is_err());
    }

    #[test]
    fn hits_and_bare_documents_in_one_pass() {
        let fields = FieldSet::new(["a"]);
        match read_document(&fields, r#"{"_index":"i","_score":1.0,"_id":"x","_source":{"a":1,"b":2},"sort":[1]}"#).unwrap() {
            Document::Hit { index, id, projection } => {
                assert_eq!(index, Some(json!("i")));
                assert_eq!(id, Some(json!("x")));
                assert_eq!(projection, json!({"a": 1}));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(read_document(&fields, r#"{"a":{"_source":1}}"#).unwrap(), Document::Bare));
        assert!(read_document(&fields, "42").is_err());
        assert!(read_document(&fields, r#"{"_source": 5}"#).is_err());
    }
}
