//! The content of a sequence shell: the recursive intersection of its building blocks' sources
//! (spec §6.2, Kibana's `objectArrayIntersection`). A field survives only if every building block has
//! it with an equal value, so shared context (join keys, host, agent) stays and per-event detail goes.
//!
//! Rules: dotted and nested notation are the same path (output nested unless the key is dotted in
//! both documents); primitives compare with JavaScript `===` (number `5` ≠ string `"5"`); when either
//! side is an array the result is the element-wise intersection, kept even when empty; objects
//! recurse and are pruned when nothing is left.

use serde_json::{Map, Value};
use std::borrow::Cow;

/// Intersects all documents in order (`((d0 ∩ d1) ∩ d2) …`). One document → itself; none → `{}`.
pub fn intersect_all(docs: &[&Value]) -> Value {
    let mut iter = docs.iter();
    let Some(Value::Object(first)) = iter.next() else {
        return Value::Object(Map::new());
    };
    // The first intersection reads the first document in place: a shell's building blocks are whole
    // alert documents, and copying one only to intersect it away was most of the shell's cost.
    let mut acc: Option<Map<String, Value>> = None;
    for doc in iter {
        match doc {
            Value::Object(m) => acc = Some(intersect(acc.as_ref().unwrap_or(first), m)),
            _ => return Value::Object(Map::new()),
        }
    }
    Value::Object(acc.unwrap_or_else(|| first.clone()))
}

/// Intersection of two objects; key order follows `a`.
pub fn intersect(a: &Map<String, Value>, b: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, av) in a {
        let literal_in_b = b.contains_key(k);
        let Some(bv) = view(b, k) else { continue };
        if let Some(r) = combine(av, &bv) {
            if k.contains('.') && !literal_in_b {
                insert_nested(&mut out, k, r);
            } else {
                insert_merge(&mut out, k.clone(), r);
            }
        }
    }
    out
}

fn combine(a: &Value, b: &Value) -> Option<Value> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let r = intersect(x, y);
            (!r.is_empty()).then_some(Value::Object(r))
        }
        (Value::Array(_), _) | (_, Value::Array(_)) => {
            let ys = as_list(b);
            let kept = as_list(a).into_iter().filter(|x| ys.iter().any(|y| js_strict_eq(x, y))).cloned().collect();
            Some(Value::Array(kept))
        }
        _ => js_strict_eq(a, b).then(|| a.clone()),
    }
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// JavaScript `===` on parsed JSON: objects and arrays are distinct references, never equal.
fn js_strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => false,
    }
}

/// The value at `key` in `obj` seen through both notations: the literal key, merged with dotted
/// siblings `key.rest`, or — for a dotted key — a path through nested objects. Borrowed unless dotted
/// siblings have to be merged in (rare): a view is taken for every key at every level of a shell.
fn view<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<Cow<'a, Value>> {
    let literal = obj.get(key);
    let dotted_rest = |k: &'a String| k.strip_prefix(key).and_then(|r| r.strip_prefix('.'));
    let found = match literal {
        Some(Value::Object(_)) | None if obj.keys().any(|k| dotted_rest(k).is_some()) => {
            let mut merged = match literal {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            for (k, v) in obj {
                if let Some(rest) = dotted_rest(k) {
                    merged.entry(rest).or_insert_with(|| v.clone());
                }
            }
            Some(Cow::Owned(Value::Object(merged)))
        }
        other => other.map(Cow::Borrowed),
    };
    if found.is_none() {
        for (i, _) in key.match_indices('.') {
            if let Some(Value::Object(child)) = obj.get(&key[..i]) {
                if let Some(v) = view(child, &key[i + 1..]) {
                    return Some(v);
                }
            }
        }
    }
    found
}

fn insert_merge(out: &mut Map<String, Value>, key: String, v: Value) {
    match (out.get_mut(&key), v) {
        (Some(Value::Object(existing)), Value::Object(new)) => {
            for (k, v) in new {
                insert_merge(existing, k, v);
            }
        }
        (_, v) => {
            out.insert(key, v);
        }
    }
}

fn insert_nested(out: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => insert_merge(out, path.to_string(), v),
        Some((head, tail)) => {
            let slot = out.entry(head.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(m) = slot {
                insert_nested(m, tail, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_equal_drops_different_prunes_empty() {
        let a = json!({"host": {"name": "h", "id": "1"}, "event": {"code": "4624", "outcome": "success"},
                       "process": {"pid": 0}, "n": 5});
        let b = json!({"host": {"name": "h", "id": "2"}, "event": {"code": "4697", "outcome": "success"},
                       "process": {"pid": 792}, "n": "5"});
        assert_eq!(
            intersect_all(&[&a, &b]),
            json!({"host": {"name": "h"}, "event": {"outcome": "success"}})
        );
    }

    #[test]
    fn arrays_intersect_element_wise_and_stay_when_empty() {
        let a = json!({"c": ["authentication"], "t": ["a", "b"], "s": "x", "o": [{"k": 1}]});
        let b = json!({"c": ["iam", "configuration"], "t": ["b", "c"], "s": ["x", "y"], "o": [{"k": 1}]});
        assert_eq!(intersect_all(&[&a, &b]), json!({"c": [], "t": ["b"], "s": ["x"], "o": []}));
    }

    #[test]
    fn dotted_and_nested_are_one_path() {
        let a = json!({"winlog.computer_name": "ws01", "host.name": "h", "x": {"y": 1}});
        let b = json!({"winlog": {"computer_name": "ws01"}, "host.name": "h", "x.y": 1});
        // nested unless dotted in both
        assert_eq!(
            intersect_all(&[&a, &b]),
            json!({"winlog": {"computer_name": "ws01"}, "host.name": "h", "x": {"y": 1}})
        );
    }

    #[test]
    fn three_documents_fold() {
        let a = json!({"k": "v", "l": [1, 2, 3]});
        let b = json!({"k": "v", "l": [2, 3]});
        let c = json!({"k": "w", "l": [3.0]});
        assert_eq!(intersect_all(&[&a, &b, &c]), json!({"l": [3]}));
    }
}
