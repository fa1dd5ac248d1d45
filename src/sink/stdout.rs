//! Writing alert documents as NDJSON, one `{"_index","_id","_source"}` object per line: the shape of a
//! search hit, so the output can be diffed against Kibana's alerts or bulk-loaded later.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::{json, Value};

use crate::alert::AlertDoc;

/// One output line: a search hit's shape, keys in this order.
#[derive(Serialize)]
struct Hit<'a> {
    _index: &'a str,
    _id: &'a str,
    _source: &'a Value,
}

/// Writes alert documents as hits of `index` (the same bytes as [`write_ndjson`]).
pub fn write_alert_docs<W: Write>(out: &mut W, index: &str, docs: &[AlertDoc]) -> io::Result<usize> {
    for doc in docs {
        serde_json::to_writer(&mut *out, &Hit { _index: index, _id: &doc.id, _source: &doc.source })?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(docs.len())
}

/// Writes `docs` (id, source) as hits of `index`; returns how many lines were written.
pub fn write_ndjson<W: Write>(out: &mut W, index: &str, docs: &[(String, Value)]) -> io::Result<usize> {
    for (id, source) in docs {
        serde_json::to_writer(&mut *out, &json!({"_index": index, "_id": id, "_source": source}))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(docs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hit_per_line() {
        let mut buf = Vec::new();
        let docs = vec![("a".to_string(), json!({"k": "x\ny"})), ("b".to_string(), json!({}))];
        assert_eq!(write_ndjson(&mut buf, "alerts", &docs).unwrap(), 2);
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], json!({"_index": "alerts", "_id": "a", "_source": {"k": "x\ny"}}));
        assert_eq!(lines[1]["_id"], "b");
        assert!(text.ends_with('\n'));
        let alerts: Vec<AlertDoc> = docs.into_iter().map(|(id, source)| AlertDoc { id, source }).collect();
        let mut again = Vec::new();
        write_alert_docs(&mut again, "alerts", &alerts).unwrap();
        assert_eq!(String::from_utf8(again).unwrap(), text);
    }
}
