//! Reading events from local files, streamed, for offline rule tests and replaying exported data.
//!
//! Accepted: NDJSON (one JSON object per line) or one JSON array, either optionally gzip-compressed
//! (recognised by the gzip magic bytes, not only by a `.gz` name); a UTF-8 byte-order mark is accepted.
//! Each item is either
//! - a search hit `{"_index": …, "_id": …, "_source": {…}}` (as exported from Elasticsearch) — kept as is
//!   (`_index` defaults to the configured default index when absent), or
//! - a bare event object, which gets `_index` = the default index (e.g. `"offline"`) and a synthetic,
//!   stable `_id`: the first 20 hex digits of SHA-256 over the item's compact JSON. The same event thus
//!   keeps its id across runs and edits elsewhere in the file — and so do the alert ids derived from it.
//!   A second identical event in the same file gets the suffix `-2`, a third `-3`, …, so ids stay unique.
//!
//! Items are handed to a callback one at a time, never collected: memory does not grow with the file.
//! With a [`Projection::Fields`] each `_source` is parsed once into only the fields the rules read
//! (`crate::event::projection`); the whole `_source` text is kept beside it for alert building.
//!
//! The path `-` is standard input (e.g. `esdetect simulate --stdout | esdetect test --events - …`): read
//! the same way, once, with each event's text kept in memory (it cannot be read back).
//!
//! A malformed line or item is skipped and counted with its line number (1-based; for a JSON array, the
//! item's 1-based position) and the reason; it never aborts the read. A gzip stream that ends early keeps
//! the events before the break and reports it. An unreadable file, a UTF-16 file, or a JSON array that
//! stops parsing is an error.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

pub use crate::event::projection::Projection;
use crate::event::projection::{read_document, Document};
use crate::event::{Event, FileRange};


/// How many skipped items keep their line number and reason (all of them are counted).
pub const SKIPPED_DETAILS: usize = 100;

/// What a read produced besides the events: counts and reasons for what was skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadReport {
    /// Events handed to the callback.
    pub events: u64,
    /// The first [`SKIPPED_DETAILS`] skipped items: `(line or item number, reason)`.
    pub skipped: Vec<(usize, String)>,
    /// Every skipped item, by kind of reason.
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// The compressed stream ended early: the message, after `events` events.
    pub truncated: Option<String>,
    /// The callback asked to stop before the end of the file.
    pub stopped: bool,
}

impl ReadReport {
    pub fn skipped_count(&self) -> u64 {
        self.skipped_by_reason.values().sum()
    }

    fn skip(&mut self, n: usize, kind: &str, reason: String) {
        *self.skipped_by_reason.entry(kind.to_string()).or_default() += 1;
        if self.skipped.len() < SKIPPED_DETAILS {
            self.skipped.push((n, reason));
        }
    }
}

/// What the callback wants after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

#[derive(Debug, Error)]
pub enum FileSourceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} starts with `[` but is not a valid JSON array: {reason}")]
    BadArray { path: PathBuf, reason: String },
    #[error("{path} is UTF-16 encoded; convert it to UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`)")]
    Utf16 { path: PathBuf },
    #[error(
        "the events on standard input are not in time order (rule {rule_id}): standard input cannot be read \
         twice to sort it; save the events to a file and pass its path to --events instead"
    )]
    StdinNotSorted { rule_id: String },
    #[error(
        "query, threshold and new terms rules read the events apart from the EQL rules, and standard input can \
         be read only once: save the events to a file and pass its path to --events instead"
    )]
    StdinReadTwice,
}

/// The `--events` path that means standard input (streamed; must be in time order).
pub const STDIN: &str = "-";

/// Whether `path` names standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == STDIN
}

/// Errors of [`read_events`], without a path.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not a valid JSON array: {0}")]
    BadArray(String),
    #[error("UTF-16 text")]
    Utf16,
}

/// Streams a file's events (see the module doc for formats) to `on_event`. `default_index` names the
/// `_index` of items that carry none.
pub fn read_events_file(
    path: &Path,
    default_index: &str,
    projection: &Projection,
    on_event: impl FnMut(Event) -> Flow,
) -> Result<ReadReport, FileSourceError> {
    let reader = open(path)?;
    // Standard input cannot be read back: its events keep their text in memory.
    let leave_text_in_file = matches!(projection, Projection::Fields(_)) && !is_stdin(path);
    read_items(reader, default_index, projection, leave_text_in_file, on_event).map_err(|e| match e {
        ReadError::Io(source) => FileSourceError::Io { path: path.to_path_buf(), source },
        ReadError::BadArray(reason) => FileSourceError::BadArray { path: path.to_path_buf(), reason },
        ReadError::Utf16 => FileSourceError::Utf16 { path: path.to_path_buf() },
    })
}

/// Opens a file, decompressing it when it starts with the gzip magic bytes.
fn open(path: &Path) -> Result<Box<dyn BufRead>, FileSourceError> {
    if is_stdin(path) {
        let io_err = |source| FileSourceError::Io { path: path.to_path_buf(), source };
        let mut reader = BufReader::with_capacity(256 * 1024, std::io::stdin().lock());
        let is_gzip = reader.fill_buf().map_err(io_err)?.starts_with(&[0x1f, 0x8b]);
        return Ok(if is_gzip { Box::new(BufReader::with_capacity(256 * 1024, MultiGzDecoder::new(reader))) } else { Box::new(reader) });
    }
    let (reader, is_gzip) = open_file(path)?;
    Ok(if is_gzip { Box::new(BufReader::with_capacity(256 * 1024, MultiGzDecoder::new(reader))) } else { Box::new(reader) })
}

/// Opens a file as it is on disk, and tells whether it starts with the gzip magic bytes.
fn open_file(path: &Path) -> Result<(BufReader<std::fs::File>, bool), FileSourceError> {
    let io_err = |source| FileSourceError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let is_gzip = reader.fill_buf().map_err(io_err)?.starts_with(&[0x1f, 0x8b]);
    Ok((reader, is_gzip))
}

/// Reads back the texts at `ranges` of a file read by [`read_events_file`] (offsets into the decompressed
/// stream), in one forward pass. Used for the few events that become alerts.
pub fn read_ranges(path: &Path, ranges: &[FileRange]) -> Result<HashMap<FileRange, Arc<str>>, FileSourceError> {
    let io_err = |source| FileSourceError::Io { path: path.to_path_buf(), source };
    let mut wanted: Vec<FileRange> = ranges.to_vec();
    wanted.sort();
    wanted.dedup();
    let mut out = HashMap::with_capacity(wanted.len());
    let mut buf = Vec::new();
    // Reads the range the reader stands at.
    let mut take = |reader: &mut dyn Read, range: FileRange| -> Result<(), FileSourceError> {
        buf.resize(range.len as usize, 0);
        reader.read_exact(&mut buf).map_err(io_err)?;
        let text = std::str::from_utf8(&buf).map_err(|e| io_err(changed(e)))?;
        out.insert(range, Arc::from(text));
        Ok(())
    };
    let (file, is_gzip) = open_file(path)?;
    if !is_gzip {
        // A plain file: seek to each range and read just its bytes. Not through the `BufReader`, which
        // drops its buffer on every seek and would refill all 256 KiB of it to hand out one event's text.
        use std::io::{Seek, SeekFrom};
        let mut file = file.into_inner();
        for range in wanted {
            file.seek(SeekFrom::Start(range.offset)).map_err(io_err)?;
            take(&mut file, range)?;
        }
        return Ok(out);
    }
    // Compressed: one forward pass through the decompressed stream.
    let mut reader = BufReader::with_capacity(256 * 1024, MultiGzDecoder::new(file));
    let mut position = 0u64;
    for range in wanted {
        if range.offset < position {
            // Overlapping ranges cannot come from one read; skip rather than rewind.
            continue;
        }
        std::io::copy(&mut (&mut reader).take(range.offset - position), &mut std::io::sink()).map_err(io_err)?;
        take(&mut reader, range)?;
        position = range.offset + range.len as u64;
    }
    Ok(out)
}

fn changed(e: std::str::Utf8Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("the file changed while it was read: {e}"))
}

/// Reads a whole file into memory (tests and small files).
pub fn read_all_events(path: &Path, default_index: &str) -> Result<(Vec<Event>, ReadReport), FileSourceError> {
    let mut events = Vec::new();
    let report = read_events_file(path, default_index, &Projection::Full, |e| {
        events.push(e);
        Flow::Continue
    })?;
    Ok((events, report))
}

/// Whether an I/O error means a compressed stream ended before its end marker.
fn is_truncation(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData)
}

/// Reads NDJSON or a JSON array from any reader (already decompressed).
pub fn read_events(
    reader: impl BufRead,
    default_index: &str,
    projection: &Projection,
    on_event: impl FnMut(Event) -> Flow,
) -> Result<ReadReport, ReadError> {
    read_items(reader, default_index, projection, false, on_event)
}

/// [`read_events`]; with `leave_text_in_file`, projected NDJSON items keep only their byte range
/// ([`Event::file_range`]) and [`read_ranges`] reads the texts back for the events that need them.
fn read_items(
    mut reader: impl BufRead,
    default_index: &str,
    projection: &Projection,
    leave_text_in_file: bool,
    mut on_event: impl FnMut(Event) -> Flow,
) -> Result<ReadReport, ReadError> {
    let mut items = ItemReader { default_index, projection, ids: IdAllocator::default(), keep_ranges: leave_text_in_file };
    let mut report = ReadReport::default();
    let mut consumed_before = 0usize;
    {
        let head = reader.fill_buf()?;
        if head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff]) {
            return Err(ReadError::Utf16);
        }
        if head.starts_with(&[0xef, 0xbb, 0xbf]) {
            reader.consume(3);
            consumed_before += 3;
        }
    }
    // Peek at the first non-blank byte to choose the format; count the newlines passed on the way so
    // that NDJSON line numbers stay right.
    let mut blank_lines = 0usize;
    let first = loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if is_truncation(&e) => {
                report.truncated = Some(e.to_string());
                return Ok(report);
            }
            Err(e) => return Err(e.into()),
        };
        if buf.is_empty() {
            return Ok(report);
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let b = buf[i];
                blank_lines += buf[..i].iter().filter(|&&c| c == b'\n').count();
                reader.consume(i);
                consumed_before += i;
                break b;
            }
            None => {
                let n = buf.len();
                blank_lines += buf.iter().filter(|&&c| c == b'\n').count();
                reader.consume(n);
                consumed_before += n;
            }
        }
    };
    if first == b'[' {
        read_array(reader, &mut items, &mut report, &mut on_event)?;
        return Ok(report);
    }
    let mut n = blank_lines;
    // Offset of the next line in the (decompressed) stream: what was consumed before the first item.
    let mut offset = consumed_before as u64;
    // Raw bytes, so that one line of invalid UTF-8 is skipped instead of aborting the file.
    let mut bytes = Vec::with_capacity(8 * 1024);
    loop {
        bytes.clear();
        let line_start = offset;
        match reader.read_until(b'\n', &mut bytes) {
            Ok(0) => break,
            Ok(read) => offset += read as u64,
            Err(e) if is_truncation(&e) => {
                report.truncated = Some(e.to_string());
                break;
            }
            Err(e) => return Err(e.into()),
        }
        n += 1;
        let Ok(line) = std::str::from_utf8(&bytes) else {
            report.skip(n, "not valid UTF-8", "not valid UTF-8".to_string());
            continue;
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let lead = line.len() - line.trim_start().len();
        let range = (items.keep_ranges && text.len() <= u32::MAX as usize)
            .then(|| FileRange { offset: line_start + lead as u64, len: text.len() as u32 });
        match items.event(text, range) {
            Ok(e) => {
                report.events += 1;
                if on_event(e) == Flow::Stop {
                    report.stopped = true;
                    break;
                }
            }
            Err((kind, reason)) => report.skip(n, kind, reason),
        }
    }
    Ok(report)
}

/// Streams the items of a JSON array (the reader is positioned at its `[`).
fn read_array(
    reader: impl Read,
    items: &mut ItemReader<'_>,
    report: &mut ReadReport,
    on_event: &mut dyn FnMut(Event) -> Flow,
) -> Result<(), ReadError> {
    struct Items<'r, 'a> {
        items: &'r mut ItemReader<'a>,
        report: &'r mut ReadReport,
        on_event: &'r mut dyn FnMut(Event) -> Flow,
    }
    impl<'de> Visitor<'de> for Items<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut n = 0usize;
            while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
                n += 1;
                match self.items.event(raw.get(), None) {
                    Ok(e) => {
                        self.report.events += 1;
                        if (self.on_event)(e) == Flow::Stop {
                            self.report.stopped = true;
                            return Err(serde::de::Error::custom(STOPPED));
                        }
                    }
                    Err((kind, reason)) => self.report.skip(n, kind, reason),
                }
            }
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for Items<'_, '_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    const STOPPED: &str = "esdetect: stopped by the consumer";
    let mut de = serde_json::Deserializer::from_reader(reader);
    match (Items { items, report, on_event }).deserialize(&mut de).and_then(|()| de.end()) {
        Ok(()) => Ok(()),
        Err(_) if report.stopped => Ok(()),
        Err(e) if e.is_io() => {
            report.truncated = Some(e.to_string());
            Ok(())
        }
        Err(e) => Err(ReadError::BadArray(e.to_string())),
    }
}

/// Turns one item's text into an event.
struct ItemReader<'a> {
    default_index: &'a str,
    projection: &'a Projection,
    ids: IdAllocator,
    /// Leave each projected item's text in the file (only its range is kept).
    keep_ranges: bool,
}

impl ItemReader<'_> {
    /// The event of one item, or `(kind of reason, reason)`.
    /// `range`: where `text` lies in the file, to leave the text there instead of copying it.
    fn event(&mut self, text: &str, range: Option<FileRange>) -> Result<Event, (&'static str, String)> {
        if let Projection::Fields(fields) = self.projection {
            // Fast path, one scan of the text: a hit with a string `_id` (what Elasticsearch exports).
            if text.starts_with('{') {
                if let Ok(Document::Hit { index, id: Some(Value::String(id)), projection }) = read_document(fields, text) {
                    let index = match index {
                        None => Some(self.default_index.to_string()),
                        Some(Value::String(s)) if !s.is_empty() => Some(s),
                        Some(_) => None,
                    };
                    if let (Some(index), false) = (index, id.is_empty()) {
                        return Ok(match range {
                            Some(range) => Event::projected_in_file(index, id, projection, range, true),
                            None => Event::projected_hit(index, id, projection, Arc::from(text)),
                        });
                    }
                }
            }
        }
        // Everything else (bare events, hits without an `_id`, errors): parse the whole item.
        let item: Value = serde_json::from_str(text).map_err(|e| ("invalid JSON", format!("invalid JSON: {e}")))?;
        let bare = !matches!(&item, Value::Object(map) if map.contains_key("_source"));
        let event = item_to_event(item, self.default_index, &mut self.ids)?;
        Ok(match self.projection {
            // A bare item is its own `_source`: keep its text, evaluate the projection.
            Projection::Fields(fields) if bare => match range {
                Some(range) => Event::projected_in_file(event.index, event.id, fields.prune(&event.source), range, false),
                None => Event::projected(event.index, event.id, fields.prune(&event.source), Arc::from(text)),
            },
            _ => event,
        })
    }
}

/// An item parsed whole: a hit keeps its identity, a bare event gets the default index and a synthetic id.
fn item_to_event(item: Value, default_index: &str, ids: &mut IdAllocator) -> Result<Event, (&'static str, String)> {
    let Value::Object(map) = &item else {
        return Err(("not a JSON object", format!("expected a JSON object, found {}", type_name(&item))));
    };
    if let Some(source) = map.get("_source") {
        if !source.is_object() {
            return Err(("bad `_source`", format!("`_source` must be an object, found {}", type_name(source))));
        }
        let id = match map.get("_id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(("bad `_id`", "`_id` must be a non-empty string".to_string())),
            None => ids.id_for(source),
        };
        let index = match map.get("_index") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(("bad `_index`", "`_index` must be a non-empty string".to_string())),
            None => default_index.to_string(),
        };
        return Ok(Event::new(index, id, source.clone()));
    }
    let id = ids.id_for(&item);
    Ok(Event::new(default_index, id, item))
}

/// Hands out synthetic ids, suffixing repeats so that identical events stay distinct.
#[derive(Default)]
struct IdAllocator {
    seen: HashMap<String, usize>,
}

impl IdAllocator {
    fn id_for(&mut self, item: &Value) -> String {
        let digest = Sha256::digest(item.to_string().as_bytes());
        let base = hex::encode(&digest[..10]);
        let count = self.seen.entry(base.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            base
        } else {
            format!("{base}-{count}")
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FieldSet;
    use serde_json::json;
    use std::io::Write;

    fn read_all(text: &[u8]) -> (Vec<Event>, ReadReport) {
        let mut events = Vec::new();
        let report = read_events(text, "offline", &Projection::Full, |e| {
            events.push(e);
            Flow::Continue
        })
        .unwrap();
        (events, report)
    }

    #[test]
    fn ndjson_mixes_hits_bare_events_and_bad_lines() {
        let text = concat!(
            "{\"_index\":\".ds-logs-1\",\"_id\":\"abc\",\"_source\":{\"event\":{\"code\":\"4624\"}}}\n",
            "\n",
            "{\"event\":{\"code\":\"4697\"}}\n",
            "{not json\n",
            "42\n",
            "{\"_id\":\"noindex\",\"_source\":{\"a\":1}}\n",
            "{\"_index\":\"i\",\"_id\":7,\"_source\":{}}\n",
        );
        let (events, r) = read_all(text.as_bytes());
        assert_eq!(events.len(), 3);
        assert_eq!(r.events, 3);
        assert_eq!((events[0].index.as_str(), events[0].id.as_str()), (".ds-logs-1", "abc"));
        assert_eq!(events[0].source, json!({"event":{"code":"4624"}}));
        assert_eq!(events[1].index, "offline");
        assert_eq!(events[1].id.len(), 20);
        assert_eq!((events[2].index.as_str(), events[2].id.as_str()), ("offline", "noindex"));
        let lines: Vec<usize> = r.skipped.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, vec![4, 5, 7]);
        assert!(r.skipped[0].1.contains("invalid JSON"));
        assert!(r.skipped[1].1.contains("a number"));
        assert!(r.skipped[2].1.contains("_id"));
        assert_eq!(r.skipped_count(), 3);
        assert_eq!(r.skipped_by_reason.get("invalid JSON"), Some(&1));
    }

    #[test]
    fn synthetic_ids_are_stable_and_unique() {
        let (a, _) = read_all(b"{\"x\":1}\n{\"x\":2}\n{\"x\":1}\n");
        let (b, _) = read_all(b"{\"y\":0}\n{\"x\":1}\n");
        // Same content → same id, independent of the line it is on.
        assert_eq!(a[0].id, b[1].id);
        assert_ne!(a[0].id, a[1].id);
        assert_eq!(a[2].id, format!("{}-2", a[0].id));
        // Independently computed: sha256 of the compact JSON `{"x":1}`, first 10 bytes.
        let expect = hex::encode(&Sha256::digest(b"{\"x\":1}")[..10]);
        assert_eq!(a[0].id, expect);
    }

    #[test]
    fn projection_keeps_the_fields_and_the_whole_text() {
        let fields = Arc::new(FieldSet::new(["event.code"]));
        let text = b"{\"_index\":\"i\",\"_id\":\"1\",\"_source\":{\"event\":{\"code\":\"5145\",\"x\":1},\"big\":[1,2,3]}}\n{\"event\":{\"code\":\"1\"},\"y\":2}\n";
        let mut events = Vec::new();
        read_events(&text[..], "offline", &Projection::Fields(fields), |e| {
            events.push(e);
            Flow::Continue
        })
        .unwrap();
        assert_eq!(events[0].source, json!({"event": {"code": "5145"}}));
        assert_eq!(*events[0].full_source(), json!({"event": {"code": "5145", "x": 1}, "big": [1, 2, 3]}));
        assert_eq!(events[1].source, json!({"event": {"code": "1"}}));
        assert_eq!(*events[1].full_source(), json!({"event": {"code": "1"}, "y": 2}));
        // The synthetic id is the same as without projection.
        let (full, _) = read_all(&text[..]);
        assert_eq!(events[1].id, full[1].id);
    }

    #[test]
    fn any_read_buffer_size_gives_the_same_lines() {
        // Whether lines cross the end of the reader's buffer or not, the same events, byte ranges, line
        // numbers and skips.
        let mut text = Vec::new();
        for i in 0..60 {
            let pad = "x".repeat(i * 7 % 53);
            match i % 10 {
                3 => text.extend_from_slice(b"{broken\n"),
                5 => text.extend_from_slice(b"\n  \n"),
                7 => text.extend_from_slice(b"\xff\xfe\n"),
                _ => text.extend_from_slice(format!("  {{\"_index\":\"i\",\"_id\":\"{i}\",\"_source\":{{\"a\":{i},\"p\":\"{pad}\"}}}}\n").as_bytes()),
            }
        }
        text.extend_from_slice(b"{\"a\":\"last line, no newline\"}");
        let fields = Projection::Fields(Arc::new(FieldSet::new(["a"])));
        let read = |reader: &mut dyn BufRead| {
            let mut events = Vec::new();
            let report = read_items(reader, "o", &fields, true, |e| {
                events.push(e);
                Flow::Continue
            })
            .unwrap();
            (events, report)
        };
        let (whole, whole_report) = read(&mut &text[..]);
        assert_eq!(whole.len(), 43, "{whole_report:?}");
        assert_eq!(whole_report.skipped_count(), 12);
        for capacity in [1, 7, 64, 300] {
            let (events, report) = read(&mut BufReader::with_capacity(capacity, &text[..]));
            assert_eq!(events, whole, "buffer of {capacity} bytes");
            assert_eq!(report, whole_report, "buffer of {capacity} bytes");
        }
        let range = whole[0].file_range().unwrap();
        let at = range.offset as usize;
        assert_eq!(&text[at..at + range.len as usize], br#"{"_index":"i","_id":"0","_source":{"a":0,"p":""}}"#);
    }

    #[test]
    fn stopping_early() {
        let mut seen = 0;
        let r = read_events(&b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"[..], "o", &Projection::Full, |_| {
            seen += 1;
            if seen == 2 {
                Flow::Stop
            } else {
                Flow::Continue
            }
        })
        .unwrap();
        assert!(r.stopped);
        assert_eq!(r.events, 2);
        let mut seen = 0;
        let r = read_events(&b"[{\"a\":1},{\"a\":2},{\"a\":3}]"[..], "o", &Projection::Full, |_| {
            seen += 1;
            Flow::Stop
        })
        .unwrap();
        assert!(r.stopped);
        assert_eq!(seen, 1);
    }

    #[test]
    fn byte_order_marks() {
        let (events, r) = read_all(b"\xef\xbb\xbf{\"a\":1}\n{\"a\":2}\n");
        assert_eq!(events.len(), 2, "{r:?}");
        let (events, _) = read_all(b"\xef\xbb\xbf [{\"a\":1}]");
        assert_eq!(events.len(), 1);
        let utf16: Vec<u8> = b"\xff\xfe".iter().copied().chain("{\"a\":1}".encode_utf16().flat_map(|u| u.to_le_bytes())).collect();
        assert!(matches!(read_events(&utf16[..], "o", &Projection::Full, |_| Flow::Continue), Err(ReadError::Utf16)));
    }

    #[test]
    fn truncated_gzip_keeps_what_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.ndjson.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for i in 0..2000 {
            writeln!(gz, "{{\"_index\":\"i\",\"_id\":\"{i}\",\"_source\":{{\"n\":{i},\"pad\":\"{}\"}}}}", "x".repeat(i % 97)).unwrap();
        }
        let bytes = gz.finish().unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let (events, r) = read_all_events(&p, "o").unwrap();
        assert!(r.truncated.is_some(), "{r:?}");
        assert!(events.len() > 100 && events.len() < 2000, "{} events", events.len());
        // Every event read before the break is whole and in order.
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.id, i.to_string());
        }
    }

    #[test]
    fn json_array_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.json.gz");
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::default());
        gz.write_all(b"  [ {\"_index\":\"i\",\"_id\":\"1\",\"_source\":{\"a\":1}}, {\"b\":2}, \"oops\" ]").unwrap();
        gz.finish().unwrap();
        let (events, r) = read_all_events(&p, "offline").unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].source, json!({"b":2}));
        assert_eq!(r.skipped, vec![(3, "expected a JSON object, found a string".to_string())]);

        let p2 = dir.path().join("broken.json");
        std::fs::write(&p2, "[{\"a\":1},").unwrap();
        assert!(matches!(read_all_events(&p2, "o"), Err(FileSourceError::BadArray { .. })));
        assert!(matches!(read_all_events(&dir.path().join("missing"), "o"), Err(FileSourceError::Io { .. })));

        let p3 = dir.path().join("plain.ndjson");
        std::fs::write(&p3, b"\n \n{\"a\":1}\n\xff\xfe\n{\"a\":2}").unwrap();
        let (events, r) = read_all_events(&p3, "o").unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(r.skipped, vec![(4, "not valid UTF-8".to_string())]);
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "  \n").unwrap();
        assert_eq!(read_all_events(&empty, "o").unwrap().1, ReadReport::default());
    }
}
