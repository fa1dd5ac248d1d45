//! Putting simulated events where a lab (or a test) reads them: data stream namespaces, the planted-attack
//! description, hits as NDJSON, and writing the events into Elasticsearch with ECS templates first.
//!
//! `esdetect simulate` is a thin shell over this module; tests that plant events call it directly.

use crate::es::Refresh;
use serde_json::{json, Value};

use super::{Planted, Simulator};
use crate::es::{EsClient, EsError};

/// Why events could not be written to the lab cluster.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Es(#[from] EsError),
    #[error("could not create the ECS index template {name}: {source}")]
    Template {
        name: String,
        #[source]
        source: crate::sink::es::SinkError,
    },
    #[error("event not indexed (status {status}): {reason}; check the index template and the cluster's logs")]
    Rejected { status: u64, reason: String },
    #[error("the bulk answer has no `items`; is the URL an Elasticsearch node?")]
    NoItems,
}

/// Data stream namespaces: lower case letters, digits and `_` (Elastic forbids `-` and upper case).
pub fn check_namespace(ns: &str) -> Result<(), String> {
    if ns.is_empty() || ns.len() > 100 || !ns.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(format!("--namespace `{ns}`: use 1 to 100 lower-case letters, digits or `_` (no `-`), e.g. `lab` or `test_42`"));
    }
    Ok(())
}

/// The simulator's index for namespace `ns`: `…-default` data streams get `-<ns>` instead; other indices
/// (Winlogbeat's `winlogbeat-8.19.0`) get `-<ns>` appended, so `winlogbeat-*` still matches them.
pub fn namespaced_index(index: &str, ns: &str) -> String {
    if ns == "default" {
        index.to_string()
    } else if let Some(base) = index.strip_suffix("-default") {
        format!("{base}-{ns}")
    } else {
        format!("{index}-{ns}")
    }
}

/// Moves generated `(index, document)` pairs into namespace `ns` (index names and `data_stream.namespace`).
pub fn apply_namespace(docs: &mut [(String, Value)], ns: &str) {
    for (index, doc) in docs.iter_mut() {
        *index = namespace_doc(index, doc, ns);
    }
}

/// Moves one document into namespace `ns` (its `data_stream.namespace`); returns its index there.
pub fn namespace_doc(index: &str, doc: &mut Value, ns: &str) -> String {
    if let Some(field) = doc.pointer_mut("/data_stream/namespace") {
        *field = Value::String(ns.to_string());
    }
    namespaced_index(index, ns)
}

/// What was planted, as the JSON `--planted-out` writes: one object per attack or look-alike.
pub fn planted_json(planted: &[Planted], ns: &str) -> Value {
    Value::Array(
        planted
            .iter()
            .map(|p| {
                json!({
                    "scenario": format!("{:?}", p.scenario),
                    "attack": p.is_attack(),
                    "lookalike": p.lookalike.map(|l| format!("{l:?}")),
                    "computer_name": p.computer_name,
                    "logon_id": p.logon_id,
                    "record_ids": p.record_ids,
                    "indices": p.indices.iter().map(|i| namespaced_index(i, ns)).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// The events as search hits (`_index`, `_id`, `_source`), one JSON line each, as `esdetect test` reads
/// them. Ids are `sim-<seed in hex>-<position>`, stable for a seed.
pub fn hits_ndjson(docs: &[(String, Value)], seed: u64, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    for (i, (index, doc)) in docs.iter().enumerate() {
        write_hit(out, index, &format!("sim-{seed:x}-{i:06}"), doc)?;
    }
    Ok(())
}

/// One search hit as a JSON line, `{"_index":…,"_id":…,"_source":…}`, serialised straight from the
/// document (no copy of it into a hit object).
pub fn write_hit(out: &mut dyn std::io::Write, index: &str, id: &str, doc: &Value) -> std::io::Result<()> {
    out.write_all(b"{\"_index\":")?;
    serde_json::to_writer(&mut *out, index)?;
    out.write_all(b",\"_id\":")?;
    serde_json::to_writer(&mut *out, id)?;
    out.write_all(b",\"_source\":")?;
    serde_json::to_writer(&mut *out, doc)?;
    out.write_all(b"}\n")
}

/// [`write_hit`] for a document already serialised as compact JSON.
pub fn write_raw_hit(out: &mut dyn std::io::Write, index: &str, id: &str, doc: &[u8]) -> std::io::Result<()> {
    out.write_all(b"{\"_index\":")?;
    serde_json::to_writer(&mut *out, index)?;
    out.write_all(b",\"_id\":")?;
    serde_json::to_writer(&mut *out, id)?;
    out.write_all(b",\"_source\":")?;
    out.write_all(doc)?;
    out.write_all(b"}\n")
}

/// A summary line of what a simulator planted: `(attacks, look-alikes)`.
pub fn planted_counts(sim: &Simulator) -> (usize, usize) {
    let attacks = sim.planted().iter().filter(|p| p.is_attack()).count();
    (attacks, sim.planted().len() - attacks)
}

/// Writes events into the cluster: first the ECS index templates where none exists (a bare cluster would
/// map strings as `text` and IPs as strings, and the rules would then fail; weak priority, so a real
/// cluster's own templates win), then the events in bulks of 1,000 with `create` (which data streams
/// require), refreshed so a following run sees them. `on_template` hears of each template created,
/// `progress` of the running count. Returns how many events were created.
pub async fn write_events(
    client: &EsClient,
    docs: &[(String, Value)],
    on_template: &mut dyn FnMut(&str),
    progress: &mut dyn FnMut(usize),
) -> Result<usize, LabError> {
    for (name, body) in super::templates::event_index_templates() {
        let created = crate::sink::es::put_index_template_if_absent(client, &name, &body)
            .await
            .map_err(|source| LabError::Template { name: name.clone(), source })?;
        if created {
            on_template(&name);
        }
    }
    let mut written = 0;
    for chunk in docs.chunks(1000) {
        written += index_events(client, chunk).await?;
        progress(written);
    }
    Ok(written)
}

/// Bulk-indexes source events with `create`, letting the cluster choose `_id`s; refreshes so a following
/// run sees them. Returns how many were created; any rejected event is an error.
pub async fn index_events(client: &EsClient, docs: &[(String, Value)]) -> Result<usize, LabError> {
    let mut created = 0;
    for chunk in docs.chunks(1000) {
        let mut lines: Vec<Value> = Vec::with_capacity(chunk.len() * 2);
        for (index, doc) in chunk {
            lines.push(json!({"create": {"_index": index}}));
            lines.push(doc.clone());
        }
        let response: Value = client.bulk("bulk-index events", None, &lines, Refresh::True).await?;
        let items = response.get("items").and_then(Value::as_array).ok_or(LabError::NoItems)?;
        for item in items {
            let status = item.pointer("/create/status").and_then(Value::as_u64).unwrap_or(0);
            if status != 201 {
                let reason = item.pointer("/create/error/reason").and_then(Value::as_str).unwrap_or("unknown error");
                return Err(LabError::Rejected { status, reason: reason.to_string() });
            }
            created += 1;
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_rename_data_streams_and_suffix_other_indices() {
        assert_eq!(namespaced_index("logs-system.security-default", "lab"), "logs-system.security-lab");
        assert_eq!(namespaced_index("winlogbeat-8.19.0", "lab"), "winlogbeat-8.19.0-lab");
        assert_eq!(namespaced_index("winlogbeat-8.19.0", "default"), "winlogbeat-8.19.0");
        let mut docs = vec![("logs-system.security-default".to_string(), json!({"data_stream": {"namespace": "default"}}))];
        apply_namespace(&mut docs, "t1");
        assert_eq!(docs[0].0, "logs-system.security-t1");
        assert_eq!(docs[0].1["data_stream"]["namespace"], "t1");
    }

    #[test]
    fn namespaces_follow_elastics_rules() {
        assert!(check_namespace("lab").is_ok() && check_namespace("test_42").is_ok());
        for bad in ["", "Lab", "a-b", &"x".repeat(101)] {
            assert!(check_namespace(bad).unwrap_err().contains("--namespace"), "{bad}");
        }
    }

    #[test]
    fn hits_carry_stable_ids_per_seed() {
        let docs = vec![("i".to_string(), json!({"a": 1})), ("j".to_string(), json!({"a": 2}))];
        let mut out = Vec::new();
        hits_ndjson(&docs, 255, &mut out).unwrap();
        let lines: Vec<Value> = String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!((lines[1]["_id"].as_str(), lines[1]["_index"].as_str()), (Some("sim-ff-000001"), Some("j")));
        assert_eq!(lines[0]["_source"], json!({"a": 1}));
    }
}
