//! Exception items → Query DSL, clause for clause as Kibana's exception filter builder writes them, so the
//! cluster excludes exactly the events Kibana would (docs/exceptions.md lists every shape).

use super::{Entry, ExceptionItem, Operator};
use serde_json::{json, Value};

/// `{"bool": {"should": [one or more clauses per item]}}`, or `None` without items. The caller negates it.
pub fn exception_filter(items: &[ExceptionItem]) -> Option<Value> {
    if items.is_empty() {
        return None;
    }
    let should: Vec<Value> = items.iter().flat_map(item_clauses).collect();
    Some(json!({"bool": {"should": should}}))
}

/// One item: a single entry stands alone, several are AND-ed in `bool.filter`. With `os_types`, one
/// alternative per OS on `host.os.type` and one per OS on `host.os.name.caseless` (Endpoint's field).
fn item_clauses(item: &ExceptionItem) -> Vec<Value> {
    let clauses: Vec<Value> = item.entries.iter().map(|e| entry_clause(e, None)).collect();
    if item.os_types.is_empty() {
        return if clauses.len() == 1 { clauses } else { vec![json!({"bool": {"filter": clauses}})] };
    }
    let mut out = Vec::new();
    for os_field in ["host.os.type", "host.os.name.caseless"] {
        for os in &item.os_types {
            let mut all = vec![match_clause(os_field, os, Operator::Included)];
            all.extend(clauses.iter().cloned());
            out.push(json!({"bool": {"filter": all}}));
        }
    }
    out
}

fn negate(clause: Value, operator: Operator) -> Value {
    match operator {
        Operator::Included => clause,
        Operator::Excluded => json!({"bool": {"must_not": clause}}),
    }
}

fn phrase(field: &str, value: &str) -> Value {
    json!({"bool": {"minimum_should_match": 1, "should": [{"match_phrase": {field: value}}]}})
}

fn match_clause(field: &str, value: &str, operator: Operator) -> Value {
    negate(phrase(field, value), operator)
}

fn entry_clause(entry: &Entry, parent: Option<&str>) -> Value {
    let full = |field: &str| match parent {
        Some(p) => format!("{p}.{field}"),
        None => field.to_string(),
    };
    match entry {
        Entry::Match { field, value, operator } => match_clause(&full(field), value, *operator),
        Entry::MatchAny { field, values, operator } => {
            let field = full(field);
            let clause = if values.len() == 1 {
                phrase(&field, &values[0])
            } else {
                let should: Vec<Value> = values.iter().map(|v| phrase(&field, v)).collect();
                json!({"bool": {"minimum_should_match": 1, "should": should}})
            };
            negate(clause, *operator)
        }
        Entry::Exists { field, operator } => negate(
            json!({"bool": {"minimum_should_match": 1, "should": [{"exists": {"field": full(field)}}]}}),
            *operator,
        ),
        Entry::Wildcard { field, value, operator } => {
            negate(json!({"bool": {"filter": {"wildcard": {full(field): value}}}}), *operator)
        }
        Entry::Nested { field, entries } => {
            let path = full(field);
            let query = if entries.len() == 1 {
                entry_clause(&entries[0], Some(&path))
            } else {
                let inner: Vec<Value> = entries.iter().map(|e| entry_clause(e, Some(&path))).collect();
                json!({"bool": {"filter": inner}})
            };
            json!({"nested": {"path": path, "query": query, "score_mode": "none"}})
        }
    }
}
