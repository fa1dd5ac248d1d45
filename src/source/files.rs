//! Reading events from local files, for offline rule tests and replaying exported data.
//!
//! Accepted: NDJSON (one JSON object per line) or one JSON array, either optionally gzip-compressed
//! (recognised by the gzip magic bytes, not only by a `.gz` name). Each item is either
//! - a search hit `{"_index": …, "_id": …, "_source": {…}}` (as exported from Elasticsearch) — kept as is
//!   (`_index` defaults to the configured default index when absent), or
//! - a bare event object, which gets `_index` = the default index (e.g. `"offline"`) and a synthetic,
//!   stable `_id`: the first 20 hex digits of SHA-256 over the item's compact JSON. The same event thus
//!   keeps its id across runs and edits elsewhere in the file — and so do the alert ids derived from it.
//!   A second identical event in the same file gets the suffix `-2`, a third `-3`, …, so ids stay unique.
//!
//! A malformed line or item is skipped and reported with its line number (1-based; for a JSON array,
//! the item's 1-based position) and the reason; it never aborts the read. An unreadable file, or a
//! JSON array that does not parse as a whole, is an error.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::event::Event;

/// The events read, and what was skipped: `(line or item number, reason)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileReadReport {
    pub events: Vec<Event>,
    pub skipped: Vec<(usize, String)>,
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
}

/// Reads a file (see the module doc for formats). `default_index` names the `_index` of bare events.
pub fn read_events_file(path: &Path, default_index: &str) -> Result<FileReadReport, FileSourceError> {
    let io_err = |source| FileSourceError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut reader = BufReader::new(file);
    let is_gzip = reader.fill_buf().map_err(io_err)?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead> = if is_gzip {
        Box::new(BufReader::new(MultiGzDecoder::new(reader)))
    } else {
        Box::new(reader)
    };
    read_events(reader, default_index).map_err(|e| match e {
        ReadError::Io(source) => FileSourceError::Io { path: path.to_path_buf(), source },
        ReadError::BadArray(reason) => FileSourceError::BadArray { path: path.to_path_buf(), reason },
    })
}

/// Errors of [`read_events`], without a path.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not a valid JSON array: {0}")]
    BadArray(String),
}

/// Reads NDJSON or a JSON array from any reader (already decompressed).
pub fn read_events(mut reader: impl BufRead, default_index: &str) -> Result<FileReadReport, ReadError> {
    let mut ids = IdAllocator::default();
    let mut report = FileReadReport::default();
    // Peek at the first non-blank byte to choose the format; count the newlines passed on the way so
    // that NDJSON line numbers stay right.
    let mut blank_lines = 0usize;
    let first = loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(report);
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let b = buf[i];
                blank_lines += buf[..i].iter().filter(|&&c| c == b'\n').count();
                reader.consume(i);
                break b;
            }
            None => {
                let n = buf.len();
                blank_lines += buf.iter().filter(|&&c| c == b'\n').count();
                reader.consume(n);
            }
        }
    };
    if first == b'[' {
        let mut text = String::new();
        reader.read_to_string(&mut text)?;
        let items: Vec<Value> = serde_json::from_str(&text).map_err(|e| ReadError::BadArray(e.to_string()))?;
        for (i, item) in items.into_iter().enumerate() {
            match item_to_event(item, default_index, &mut ids) {
                Ok(e) => report.events.push(e),
                Err(reason) => report.skipped.push((i + 1, reason)),
            }
        }
        return Ok(report);
    }
    let mut n = blank_lines;
    loop {
        // Read raw bytes so that one line of invalid UTF-8 is skipped instead of aborting the file.
        let mut bytes = Vec::new();
        if reader.read_until(b'\n', &mut bytes)? == 0 {
            break;
        }
        n += 1;
        let line = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(_) => {
                report.skipped.push((n, "not valid UTF-8".to_string()));
                continue;
            }
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(item) => match item_to_event(item, default_index, &mut ids) {
                Ok(e) => report.events.push(e),
                Err(reason) => report.skipped.push((n, reason)),
            },
            Err(e) => report.skipped.push((n, format!("invalid JSON: {e}"))),
        }
    }
    Ok(report)
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

fn item_to_event(item: Value, default_index: &str, ids: &mut IdAllocator) -> Result<Event, String> {
    let Value::Object(map) = &item else {
        return Err(format!("expected a JSON object, found {}", type_name(&item)));
    };
    if let Some(source) = map.get("_source") {
        if !source.is_object() {
            return Err(format!("`_source` must be an object, found {}", type_name(source)));
        }
        let id = match map.get("_id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err("`_id` must be a non-empty string".to_string()),
            None => ids.id_for(source),
        };
        let index = match map.get("_index") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err("`_index` must be a non-empty string".to_string()),
            None => default_index.to_string(),
        };
        return Ok(Event::new(index, id, source.clone()));
    }
    let id = ids.id_for(&item);
    Ok(Event::new(default_index, id, item))
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
    use serde_json::json;
    use std::io::Write;

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
        let r = read_events(text.as_bytes(), "offline").unwrap();
        assert_eq!(r.events.len(), 3);
        assert_eq!((r.events[0].index.as_str(), r.events[0].id.as_str()), (".ds-logs-1", "abc"));
        assert_eq!(r.events[0].source, json!({"event":{"code":"4624"}}));
        assert_eq!(r.events[1].index, "offline");
        assert_eq!(r.events[1].id.len(), 20);
        assert_eq!((r.events[2].index.as_str(), r.events[2].id.as_str()), ("offline", "noindex"));
        let lines: Vec<usize> = r.skipped.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, vec![4, 5, 7]);
        assert!(r.skipped[0].1.contains("invalid JSON"));
        assert!(r.skipped[1].1.contains("a number"));
        assert!(r.skipped[2].1.contains("_id"));
    }

    #[test]
    fn synthetic_ids_are_stable_and_unique() {
        let a = read_events("{\"x\":1}\n{\"x\":2}\n{\"x\":1}\n".as_bytes(), "o").unwrap();
        let b = read_events("{\"y\":0}\n{\"x\":1}\n".as_bytes(), "o").unwrap();
        // Same content → same id, independent of the line it is on.
        assert_eq!(a.events[0].id, b.events[1].id);
        assert_ne!(a.events[0].id, a.events[1].id);
        assert_eq!(a.events[2].id, format!("{}-2", a.events[0].id));
        // Independently computed: sha256 of the compact JSON `{"x":1}`, first 10 bytes.
        let expect = hex::encode(&Sha256::digest(b"{\"x\":1}")[..10]);
        assert_eq!(a.events[0].id, expect);
    }

    #[test]
    fn json_array_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.json.gz");
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::default());
        gz.write_all(b"  [ {\"_index\":\"i\",\"_id\":\"1\",\"_source\":{\"a\":1}}, {\"b\":2}, \"oops\" ]").unwrap();
        gz.finish().unwrap();
        let r = read_events_file(&p, "offline").unwrap();
        assert_eq!(r.events.len(), 2);
        assert_eq!(r.events[1].source, json!({"b":2}));
        assert_eq!(r.skipped, vec![(3, "expected a JSON object, found a string".to_string())]);

        let p2 = dir.path().join("broken.json");
        std::fs::write(&p2, "[{\"a\":1},").unwrap();
        assert!(matches!(read_events_file(&p2, "o"), Err(FileSourceError::BadArray { .. })));
        assert!(matches!(read_events_file(&dir.path().join("missing"), "o"), Err(FileSourceError::Io { .. })));

        let p3 = dir.path().join("plain.ndjson");
        std::fs::write(&p3, b"\n \n{\"a\":1}\n\xff\xfe\n{\"a\":2}").unwrap();
        let r = read_events_file(&p3, "o").unwrap();
        assert_eq!(r.events.len(), 2);
        assert_eq!(r.skipped, vec![(4, "not valid UTF-8".to_string())]);
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "  \n").unwrap();
        assert_eq!(read_events_file(&empty, "o").unwrap(), FileReadReport::default());
    }
}
