//! Alert documents grouped into *results* (one event alert, or one sequence's shell and building blocks)
//! and keyed by their source events, so Kibana's and esdetect's alerts can be matched whatever their ids,
//! and the fields esdetect claims to reproduce compared document by document.

use crate::alert::get_path;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The fields esdetect claims to reproduce exactly (spec alert-documents §4–§9); a matched pair of
/// documents that differs in one of them is a divergence. Times of the run (`@timestamp`,
/// `kibana.alert.start`, a shell's `original_time`) are not compared.
pub const COMPARED_FIELDS: &[&str] = &[
    "kibana.alert.uuid",
    "kibana.alert.severity",
    "kibana.alert.risk_score",
    "kibana.alert.reason",
    "kibana.alert.rule.threat",
    "kibana.alert.original_time",
    "kibana.alert.group.id",
    "kibana.alert.group.index",
    "kibana.alert.building_block_type",
    "kibana.alert.depth",
    "kibana.alert.ancestors",
    "kibana.alert.rule.name",
    "kibana.alert.rule.rule_id",
];

/// A source event: `(_index, _id)`.
pub type EventRef = (String, String);

/// One result: the documents of one event alert or of one sequence (shell first, then building blocks
/// in sequence order), and the events they were built from, in order.
#[derive(Debug, Clone)]
pub struct AlertResult {
    /// `_id` of the event alert or of the sequence's shell.
    pub id: String,
    /// The document `_id`s with their sources: the event alert, or shell then building blocks.
    pub docs: Vec<(String, Value)>,
    /// Source events in order: what identifies a result on both sides.
    pub events: Vec<EventRef>,
}

impl AlertResult {
    pub fn kind(&self) -> &'static str {
        if self.docs.len() == 1 && get_path(&self.docs[0].1, "kibana.alert.group.id").is_none() {
            "event"
        } else {
            "sequence"
        }
    }

    /// A string field of the result's first document (`kibana.alert.rule.execution.uuid`, …).
    pub fn field_str(&self, path: &str) -> Option<&str> {
        self.docs.first().and_then(|(_, d)| get_path(d, path)).and_then(Value::as_str)
    }
}

/// The depth-0 event ancestors of one document, in order.
fn event_ancestors(doc: &Value) -> Vec<EventRef> {
    let Some(list) = get_path(doc, "kibana.alert.ancestors").and_then(Value::as_array) else { return Vec::new() };
    list.iter()
        .filter(|a| a.get("depth").and_then(Value::as_i64) == Some(0))
        .filter_map(|a| Some((a.get("index")?.as_str()?.to_string(), a.get("id")?.as_str()?.to_string())))
        .collect()
}

fn is_building_block(doc: &Value) -> bool {
    get_path(doc, "kibana.alert.building_block_type").is_some() && get_path(doc, "kibana.alert.group.id").is_some()
}

/// Groups alert documents (`_id`, `_source`) into results: a document without `kibana.alert.group.id` is
/// an event alert; documents sharing a group id are one sequence (shell = the one without
/// `building_block_type`). A sequence whose shell or some building blocks are missing is still one
/// result, keyed by the events its remaining documents name.
pub fn group_results(docs: impl IntoIterator<Item = (String, Value)>) -> Vec<AlertResult> {
    let mut out = Vec::new();
    let mut sequences: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for (id, doc) in docs {
        match get_path(&doc, "kibana.alert.group.id").and_then(Value::as_str) {
            Some(group) => sequences.entry(group.to_string()).or_default().push((id, doc)),
            None => {
                let events = event_ancestors(&doc);
                out.push(AlertResult { id: id.clone(), docs: vec![(id, doc)], events });
            }
        }
    }
    for (group, mut docs) in sequences {
        // Shell first, building blocks by their position in the sequence.
        docs.sort_by_key(|(_, d)| {
            (is_building_block(d), get_path(d, "kibana.alert.group.index").and_then(Value::as_i64).unwrap_or(-1))
        });
        let blocks: Vec<&Value> = docs.iter().map(|(_, d)| d).filter(|d| is_building_block(d)).collect();
        let events: Vec<EventRef> = if blocks.is_empty() {
            docs.first().map(|(_, d)| event_ancestors(d)).unwrap_or_default()
        } else {
            blocks.iter().flat_map(|d| event_ancestors(d)).collect()
        };
        out.push(AlertResult { id: group, docs, events });
    }
    out
}

/// One field that differs between Kibana's and esdetect's document of the same result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldDiff {
    /// `_id` of Kibana's document.
    pub doc: String,
    pub field: String,
    pub kibana: Option<Value>,
    pub esdetect: Option<Value>,
}

/// Equal as values, with numbers compared by value (`47` = `47.0`).
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The role of a document inside its result, to pair Kibana's with esdetect's.
fn role(doc: &Value) -> (bool, i64) {
    (is_building_block(doc), get_path(doc, "kibana.alert.group.index").and_then(Value::as_i64).unwrap_or(-1))
}

/// Field differences between two results with the same events: documents are paired by role (event
/// alert, shell, building block i); a document only one side has is reported as field `_id`.
pub fn differences(kibana: &AlertResult, esdetect: &AlertResult) -> Vec<FieldDiff> {
    let mut diffs = Vec::new();
    for (kid, kdoc) in &kibana.docs {
        let Some((eid, edoc)) = esdetect.docs.iter().find(|(_, d)| role(d) == role(kdoc)) else {
            diffs.push(FieldDiff { doc: kid.clone(), field: "_id".into(), kibana: Some(Value::String(kid.clone())), esdetect: None });
            continue;
        };
        if kid != eid {
            diffs.push(FieldDiff {
                doc: kid.clone(),
                field: "_id".into(),
                kibana: Some(Value::String(kid.clone())),
                esdetect: Some(Value::String(eid.clone())),
            });
        }
        let shell = get_path(kdoc, "kibana.alert.group.id").is_some() && !is_building_block(kdoc);
        for field in COMPARED_FIELDS {
            // A shell's original_time is its first building block's `@timestamp`, the time that block was
            // built (spec alert-documents §6.2, §8): a property of the run, not of the events.
            if shell && *field == "kibana.alert.original_time" {
                continue;
            }
            let (k, e) = (get_path(kdoc, field), get_path(edoc, field));
            if !same(k, e) {
                diffs.push(FieldDiff { doc: kid.clone(), field: field.to_string(), kibana: k.cloned(), esdetect: e.cloned() });
            }
        }
    }
    for (eid, edoc) in &esdetect.docs {
        if !kibana.docs.iter().any(|(_, d)| role(d) == role(edoc)) {
            diffs.push(FieldDiff { doc: eid.clone(), field: "_id".into(), kibana: None, esdetect: Some(Value::String(eid.clone())) });
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ancestor(index: &str, id: &str) -> Value {
        json!({"id": id, "type": "event", "index": index, "depth": 0})
    }

    fn sequence_docs() -> Vec<(String, Value)> {
        vec![
            ("bb1".into(), json!({"kibana.alert.group.id": "s", "kibana.alert.group.index": 1,
                "kibana.alert.building_block_type": "default", "kibana.alert.ancestors": [ancestor("i", "e2")]})),
            ("s".into(), json!({"kibana.alert.group.id": "s", "kibana.alert.severity": "high",
                "kibana.alert.ancestors": [ancestor("i", "e1"), {"id": "bb0", "type": "signal", "index": "", "depth": 1},
                    ancestor("i", "e2"), {"id": "bb1", "type": "signal", "index": "", "depth": 1}]})),
            ("bb0".into(), json!({"kibana.alert.group.id": "s", "kibana.alert.group.index": 0,
                "kibana.alert.building_block_type": "default", "kibana.alert.ancestors": [ancestor("i", "e1")]})),
        ]
    }

    #[test]
    fn groups_event_alerts_and_sequences_keyed_by_events_in_order() {
        let mut docs = sequence_docs();
        docs.push(("a".into(), json!({"kibana.alert.ancestors": [ancestor("j", "x")]})));
        let results = group_results(docs);
        assert_eq!(results.len(), 2);
        let event = results.iter().find(|r| r.id == "a").unwrap();
        assert_eq!(event.kind(), "event");
        assert_eq!(event.events, vec![("j".to_string(), "x".to_string())]);
        let seq = results.iter().find(|r| r.id == "s").unwrap();
        assert_eq!(seq.kind(), "sequence");
        assert_eq!(seq.docs.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["s", "bb0", "bb1"]);
        assert_eq!(seq.events, vec![("i".to_string(), "e1".to_string()), ("i".to_string(), "e2".to_string())]);
    }

    #[test]
    fn a_sequence_without_building_blocks_is_keyed_by_the_shell_events() {
        let docs: Vec<_> = sequence_docs().into_iter().filter(|(id, _)| id == "s").collect();
        let results = group_results(docs);
        assert_eq!(results[0].events.len(), 2);
    }

    #[test]
    fn differences_name_the_field_and_document() {
        let kibana = group_results(sequence_docs()).pop().unwrap();
        let mut changed = sequence_docs();
        changed[1].1["kibana.alert.severity"] = json!("low");
        changed[1].1["kibana.alert.original_time"] = json!("2026-05-20T10:05:00.000Z"); // a shell's: the run's time
        changed.retain(|(id, _)| id != "bb1");
        let esdetect = group_results(changed).pop().unwrap();
        let diffs = differences(&kibana, &esdetect);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert_eq!((diffs[0].doc.as_str(), diffs[0].field.as_str()), ("s", "kibana.alert.severity"));
        assert_eq!(diffs[0].esdetect, Some(json!("low")));
        assert_eq!((diffs[1].doc.as_str(), diffs[1].field.as_str(), &diffs[1].esdetect), ("bb1", "_id", &None));
        assert!(differences(&kibana, &kibana).is_empty());
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(same(Some(&json!(47)), Some(&json!(47.0))));
        assert!(!same(Some(&json!(47)), Some(&json!("47"))));
    }
}
