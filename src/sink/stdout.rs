//! Writing alert documents as NDJSON, one `{"_index","_id","_source"}` object per line: the shape of a
//! search hit, so the output can be diffed against Kibana's alerts or bulk-loaded later.

use std::io::{self, Write};

use serde_json::{json, Value};

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
    }
}
