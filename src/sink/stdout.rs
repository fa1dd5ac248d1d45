//! Writing alert documents as NDJSON, one `{"_index","_id","_source"}` object per line: the shape of a
//! search hit, so the output can be diffed against Kibana's alerts or bulk-loaded later.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;

use crate::alert::AlertDoc;

/// One output line: a search hit's shape, keys in this order.
#[derive(Serialize)]
struct Hit<'a> {
    _index: &'a str,
    _id: &'a str,
    _source: &'a Value,
}

/// Writes alert documents as hits of `index`, one per line; returns how many lines were written.
pub fn write_alert_docs<W: Write>(out: &mut W, index: &str, docs: &[AlertDoc]) -> io::Result<usize> {
    // Buffered here: a locked stdout is line-buffered and would search every small write for a newline.
    let mut buf = io::BufWriter::with_capacity(64 * 1024, &mut *out);
    for doc in docs {
        serde_json::to_writer(&mut buf, &Hit { _index: index, _id: &doc.id, _source: &doc.source })?;
        buf.write_all(b"\n")?;
    }
    buf.flush()?;
    drop(buf);
    out.flush()?;
    Ok(docs.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_hit_per_line() {
        let alerts = vec![
            AlertDoc { id: "a".to_string(), source: json!({"k": "x\ny"}) },
            AlertDoc { id: "b".to_string(), source: json!({}) },
        ];
        let mut buf = Vec::new();
        assert_eq!(write_alert_docs(&mut buf, "alerts", &alerts).unwrap(), 2);
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], json!({"_index": "alerts", "_id": "a", "_source": {"k": "x\ny"}}));
        assert_eq!(lines[1]["_id"], "b");
        assert!(text.ends_with('\n'));
        // A search hit's key order, compact, one document per line.
        assert_eq!(text, "{\"_index\":\"alerts\",\"_id\":\"a\",\"_source\":{\"k\":\"x\\ny\"}}\n{\"_index\":\"alerts\",\"_id\":\"b\",\"_source\":{}}\n");
    }
}
