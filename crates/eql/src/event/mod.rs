//! The unit of data that flows through esdetect: one source document with its identity.
//!
//! Sources (Elasticsearch hits, local files) produce `Event`s, the EQL engine matches them, and the alert
//! builder needs exactly these three things from each matched event: the concrete index, the document id
//! (both feed Kibana's deterministic alert ids) and the `_source` to copy.
//!
//! On the one-pass data path an event's `source` is a *projection*: only the fields the loaded rules read
//! ([`projection`]), with the whole `_source` kept as text and parsed again only for events that become
//! alerts ([`Event::full_source`]).

pub mod projection;
mod scan;
mod tokens;

pub use projection::FieldSet;

use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// One document as a search hit: where it lives and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Concrete index of the hit (a `.ds-…` backing index for data streams).
    pub index: String,
    /// Document `_id`.
    pub id: String,
    /// The document `_source`, or the projection of it that the loaded rules read.
    pub source: Value,
    /// Where the whole `_source` is when `source` is a projection.
    full_text: Option<FullText>,
}

/// The text the whole `_source` is parsed from when an event becomes an alert.
#[derive(Debug, Clone, PartialEq)]
enum FullText {
    /// The `_source` object itself.
    Source(Arc<str>),
    /// A whole search hit (`{"_index", "_id", "_source": {…}, …}`): its `_source` member.
    Hit(Arc<str>),
    /// Not in memory: bytes `[offset, offset + len)` of the source's (decompressed) file hold the item
    /// (a hit when `hit`), to be read back with [`Event::attach_text`] if the event becomes an alert.
    InFile { offset: u64, len: u32, hit: bool },
    /// Not read at all: the source asked the cluster only for the fields the rules read (`_source`
    /// filtering); the whole `_source` is read by id if the event becomes an alert ([`Event::attach_text`]).
    NotFetched,
}

/// Where an event's item lies in its file, for events that keep no text in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileRange {
    pub offset: u64,
    pub len: u32,
}

impl Event {
    /// An event whose `source` is the whole `_source`.
    pub fn new(index: impl Into<String>, id: impl Into<String>, source: Value) -> Self {
        Event { index: index.into(), id: id.into(), source, full_text: None }
    }

    /// An event whose `source` is a projection of `full_text` (the whole `_source`, a JSON object).
    pub fn projected(index: impl Into<String>, id: impl Into<String>, projection: Value, full_text: Arc<str>) -> Self {
        Event { index: index.into(), id: id.into(), source: projection, full_text: Some(FullText::Source(full_text)) }
    }

    /// An event whose `source` is a projection of the `_source` of the search hit `hit` (its JSON text).
    pub fn projected_hit(index: impl Into<String>, id: impl Into<String>, projection: Value, hit: Arc<str>) -> Self {
        Event { index: index.into(), id: id.into(), source: projection, full_text: Some(FullText::Hit(hit)) }
    }

    /// An event whose `source` is a projection of the item at `range` of its file (a search hit when `hit`,
    /// else a bare document): the text stays on disk until [`Event::attach_text`].
    pub fn projected_in_file(index: impl Into<String>, id: impl Into<String>, projection: Value, range: FileRange, hit: bool) -> Self {
        let full_text = Some(FullText::InFile { offset: range.offset, len: range.len, hit });
        Event { index: index.into(), id: id.into(), source: projection, full_text }
    }

    /// An event whose `source` is a projection and whose whole `_source` was not read (the cluster sent
    /// only the fields the rules read): [`Event::needs_text`] holds until [`Event::attach_text`].
    pub fn projected_unfetched(index: impl Into<String>, id: impl Into<String>, projection: Value) -> Self {
        Event { index: index.into(), id: id.into(), source: projection, full_text: Some(FullText::NotFetched) }
    }

    /// Whether the whole `_source` was never read ([`Event::projected_unfetched`]) and not attached since.
    pub fn needs_text(&self) -> bool {
        matches!(self.full_text, Some(FullText::NotFetched))
    }

    /// What a held event needs once it has matched a stage: its identity, the handle to its text and the
    /// fields of `keep` — not the rest of the projection. Open sequence state holds events for minutes
    /// (`maxspan`), so this is what bounds its memory. An event whose `source` is the whole document (no
    /// text kept elsewhere) is returned as it is.
    pub fn slim(event: &Arc<Event>, keep: &FieldSet) -> Arc<Event> {
        match &event.full_text {
            None => Arc::clone(event),
            Some(text) => Arc::new(Event {
                index: event.index.clone(),
                id: event.id.clone(),
                source: keep.prune(&event.source),
                full_text: Some(text.clone()),
            }),
        }
    }

    /// Where the item lies in its file, when its text was left there.
    pub fn file_range(&self) -> Option<FileRange> {
        match self.full_text {
            Some(FullText::InFile { offset, len, .. }) => Some(FileRange { offset, len }),
            _ => None,
        }
    }

    /// Gives an event whose text was left in its file ([`Event::file_range`]) or not fetched
    /// ([`Event::needs_text`]) that text, read back (a `_source` object for a fetched one).
    pub fn attach_text(&mut self, text: Arc<str>) {
        match self.full_text {
            Some(FullText::InFile { hit, .. }) => {
                self.full_text = Some(if hit { FullText::Hit(text) } else { FullText::Source(text) });
            }
            Some(FullText::NotFetched) => self.full_text = Some(FullText::Source(text)),
            _ => {}
        }
    }

    /// The whole `_source`, for building alert documents. Parses the kept text when `source` is a
    /// projection (the text parsed once already, so this cannot fail short of a bug; the projection is
    /// returned then, which loses copied fields but never an alert).
    pub fn full_source(&self) -> Cow<'_, Value> {
        let parsed = match &self.full_text {
            None => return Cow::Borrowed(&self.source),
            Some(FullText::Source(text)) => serde_json::from_str(text),
            Some(FullText::Hit(text)) => serde_json::from_str::<Value>(text).map(|mut hit| hit["_source"].take()),
            Some(FullText::InFile { offset, .. }) => {
                tracing::error!(index = %self.index, id = %self.id, offset, "the event's text was not read back from its file");
                return Cow::Borrowed(&self.source);
            }
            // The document was gone when its `_source` was read by id: what the rules read is all there is
            // (the source's caller warned about it).
            Some(FullText::NotFetched) => return Cow::Borrowed(&self.source),
        };
        match parsed {
            Ok(v) => Cow::Owned(v),
            Err(e) => {
                tracing::error!(index = %self.index, id = %self.id, error = %e, "kept _source text does not parse again");
                Cow::Borrowed(&self.source)
            }
        }
    }

    /// Looks up a dotted field path in `_source`, accepting both nested objects and dotted keys
    /// (`{"event":{"code":..}}` and `{"event.code": ..}` are the same field to Elasticsearch).
    /// Returns every value found (arrays are flattened one level, as Elasticsearch indexes them).
    pub fn field_values(&self, path: &str) -> Vec<&Value> {
        let mut out = Vec::new();
        collect_path(&self.source, path, &mut out);
        out
    }
}

/// Collects the values at `path` below `node`, trying every split of the dotted path into nested keys
/// and flattening arrays of objects along the way.
pub fn collect_path<'a>(node: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    match node {
        Value::Array(items) => {
            for item in items {
                collect_path(item, path, out);
            }
        }
        Value::Object(map) => {
            if let Some(v) = map.get(path) {
                push_flat(v, out);
            }
            // Try every prefix that is a key followed by a dot.
            for (i, _) in path.match_indices('.') {
                let (head, tail) = (&path[..i], &path[i + 1..]);
                if let Some(child) = map.get(head) {
                    collect_path(child, tail, out);
                }
            }
        }
        _ => {}
    }
}

fn push_flat<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => {
            for item in items {
                push_flat(item, out);
            }
        }
        other => out.push(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_dotted_and_arrays_are_one_field() {
        let e = Event::new(
            "i",
            "1",
            json!({"host": {"ip": ["10.0.0.1", "fe80::1"]}, "host.ip": "10.0.0.2", "a": [{"b": 1}, {"b": [2, null]}]}),
        );
        let ips: Vec<_> = e.field_values("host.ip").into_iter().cloned().collect();
        assert_eq!(ips, vec![json!("10.0.0.2"), json!("10.0.0.1"), json!("fe80::1")]);
        let bs: Vec<_> = e.field_values("a.b").into_iter().cloned().collect();
        assert_eq!(bs, vec![json!(1), json!(2), json!(null)]);
        assert!(e.field_values("missing.field").is_empty());
    }

    #[test]
    fn a_slim_event_keeps_identity_text_and_the_kept_fields_only() {
        let doc = json!({"@timestamp": "2026-01-01T00:00:00Z", "event": {"code": "4624"}, "user": {"name": "a"}});
        let read = FieldSet::new(["@timestamp", "event.code", "user.name"]);
        let text: Arc<str> = doc.to_string().into();
        let projected = Arc::new(Event::projected("i", "1", read.prune(&doc), Arc::clone(&text)));
        let slim = Event::slim(&projected, &FieldSet::new(["@timestamp"]));
        assert_eq!((slim.index.as_str(), slim.id.as_str()), ("i", "1"));
        assert_eq!(slim.source, json!({"@timestamp": "2026-01-01T00:00:00Z"}));
        assert_eq!(*slim.full_source(), doc, "the whole _source is still there for the alert");
        assert!(slim.field_values("event.code").is_empty());
        // A whole document is the only copy of its fields: it is held as it is.
        let whole = Arc::new(Event::new("i", "2", doc.clone()));
        assert!(Arc::ptr_eq(&Event::slim(&whole, &FieldSet::new(["@timestamp"])), &whole));
    }
}
