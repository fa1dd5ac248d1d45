use super::*;
use crate::eql::mapping::{FieldMapping, FieldType, Mapping};
use serde_json::json;

fn item(entries: Value, os_types: Value) -> ExceptionItem {
    parse_item(&json!({
        "item_id": "i1", "list_id": "l1", "namespace_type": "single", "name": "n", "type": "simple",
        "entries": entries, "os_types": os_types,
    }))
    .unwrap()
}

fn mapping() -> Mapping {
    let mut m = Mapping::builtin_ecs();
    m.insert("message", FieldMapping::new(FieldType::Text { keyword_subfield: None }));
    m.insert("process.pid", FieldMapping::new(FieldType::Long));
    m
}

fn ev(source: Value) -> crate::event::Event {
    crate::event::Event::new("idx", "1", source)
}

fn excludes(items: Vec<ExceptionItem>, source: Value) -> bool {
    RuleExceptions::new(items).matcher(&mapping()).excludes(&ev(source))
}

#[test]
fn match_on_keyword_is_exact_and_excluded_negates() {
    let i = item(json!([{"field": "user.name", "type": "match", "operator": "included", "value": "svc$"}]), json!([]));
    assert!(excludes(vec![i.clone()], json!({"user": {"name": "svc$"}})));
    assert!(!excludes(vec![i.clone()], json!({"user": {"name": "SVC$"}})), "keyword match is case-sensitive");
    assert!(!excludes(vec![i], json!({})));
    let x = item(json!([{"field": "user.name", "type": "match", "operator": "excluded", "value": "svc$"}]), json!([]));
    assert!(!excludes(vec![x.clone()], json!({"user": {"name": "svc$"}})));
    assert!(excludes(vec![x], json!({})), "excluded holds on a missing field (must_not)");
}

#[test]
fn match_is_typed_by_the_mapping() {
    let pid = item(json!([{"field": "process.pid", "type": "match", "operator": "included", "value": "4"}]), json!([]));
    assert!(excludes(vec![pid.clone()], json!({"process": {"pid": 4}})));
    assert!(excludes(vec![pid], json!({"process": {"pid": "4"}})), "a long field indexes \"4\" as 4");
    let ip = item(json!([{"field": "source.ip", "type": "match", "operator": "included", "value": "10.0.0.0/8"}]), json!([]));
    assert!(excludes(vec![ip.clone()], json!({"source": {"ip": "10.1.2.3"}})), "ip term accepts CIDR");
    assert!(!excludes(vec![ip], json!({"source": {"ip": "192.168.1.1"}})));
    let text = item(json!([{"field": "message", "type": "match", "operator": "included", "value": "Quick Brown"}]), json!([]));
    assert!(excludes(vec![text.clone()], json!({"message": "the quick brown fox"})), "text: analysed phrase");
    assert!(!excludes(vec![text], json!({"message": "brown quick"})));
}

#[test]
fn match_any_wildcard_exists() {
    let any = item(json!([{"field": "event.code", "type": "match_any", "operator": "included", "value": ["4624", "4625"]}]), json!([]));
    assert!(excludes(vec![any.clone()], json!({"event": {"code": "4625"}})));
    assert!(!excludes(vec![any], json!({"event": {"code": "4634"}})));
    let wc = item(json!([{"field": "process.executable", "type": "wildcard", "operator": "included", "value": "C:\\\\Windows\\\\*.exe"}]), json!([]));
    assert!(excludes(vec![wc.clone()], json!({"process": {"executable": "C:\\Windows\\notepad.exe"}})));
    assert!(!excludes(vec![wc], json!({"process": {"executable": "D:\\Windows\\notepad.exe"}})));
    let ex = item(json!([{"field": "source.ip", "type": "exists", "operator": "included"}]), json!([]));
    assert!(excludes(vec![ex.clone()], json!({"source": {"ip": "::1"}})));
    assert!(!excludes(vec![ex.clone()], json!({"source": {"ip": null}})));
    assert!(!excludes(vec![ex], json!({"source": {"ip": "not-an-ip"}})), "a malformed value is not indexed");
}

#[test]
fn entries_and_items_or_with_os_types() {
    let both = item(
        json!([
            {"field": "user.name", "type": "match", "operator": "included", "value": "a"},
            {"field": "event.code", "type": "match", "operator": "included", "value": "5145"},
        ]),
        json!(["windows"]),
    );
    let base = json!({"user": {"name": "a"}, "event": {"code": "5145"}, "host": {"os": {"type": "windows"}}});
    assert!(excludes(vec![both.clone()], base.clone()));
    assert!(!excludes(vec![both.clone()], json!({"user": {"name": "a"}, "event": {"code": "5145"}})), "os_types required");
    let endpoint = json!({"user": {"name": "a"}, "event": {"code": "5145"}, "host": {"os": {"name": {"caseless": "windows"}}}});
    assert!(!excludes(vec![both.clone()], endpoint.clone()), "unmapped field: the cluster has nothing indexed");
    let mut m = mapping();
    m.insert("host.os.name.caseless", FieldMapping::new(FieldType::Keyword));
    assert!(RuleExceptions::new(vec![both.clone()]).matcher(&m).excludes(&ev(endpoint)), "Endpoint's OS field");
    assert!(!excludes(vec![both.clone()], json!({"user": {"name": "b"}, "event": {"code": "5145"}, "host": {"os": {"type": "windows"}}})));
    let other = item(json!([{"field": "user.name", "type": "match", "operator": "included", "value": "b"}]), json!([]));
    assert!(excludes(vec![both, other], json!({"user": {"name": "b"}})), "items are OR-ed");
}

#[test]
fn nested_entries_hold_on_one_object() {
    let mut m = mapping();
    m.insert("file.Ext.code_signature", FieldMapping::new(FieldType::Object));
    m.insert("file.Ext.code_signature.subject_name", FieldMapping::new(FieldType::Keyword));
    m.insert("file.Ext.code_signature.trusted", FieldMapping::new(FieldType::Boolean));
    let n = item(
        json!([{"field": "file.Ext.code_signature", "type": "nested", "entries": [
            {"field": "subject_name", "type": "match", "operator": "included", "value": "Microsoft"},
            {"field": "trusted", "type": "match", "operator": "included", "value": "true"},
        ]}]),
        json!([]),
    );
    let ex = RuleExceptions::new(vec![n]);
    let matcher = ex.matcher(&m);
    let same = json!({"file": {"Ext": {"code_signature": [{"subject_name": "Microsoft", "trusted": true}]}}});
    let split = json!({"file": {"Ext": {"code_signature": [{"subject_name": "Microsoft", "trusted": false}, {"subject_name": "Evil", "trusted": true}]}}});
    assert!(matcher.excludes(&ev(same)));
    assert!(!matcher.excludes(&ev(split)), "both conditions must hold on the same nested object");
    assert_eq!(
        ex.fields(),
        vec!["file.Ext.code_signature", "file.Ext.code_signature.subject_name", "file.Ext.code_signature.trusted"]
    );
}

#[test]
fn dsl_has_kibana_shapes() {
    let i = item(
        json!([
            {"field": "user.name", "type": "match", "operator": "excluded", "value": "a"},
            {"field": "source.ip", "type": "exists", "operator": "included"},
        ]),
        json!([]),
    );
    let q = RuleExceptions::new(vec![i]).query_clause().unwrap();
    assert_eq!(
        q,
        json!({"bool": {"should": [{"bool": {"filter": [
            {"bool": {"must_not": {"bool": {"minimum_should_match": 1, "should": [{"match_phrase": {"user.name": "a"}}]}}}},
            {"bool": {"minimum_should_match": 1, "should": [{"exists": {"field": "source.ip"}}]}},
        ]}}]}})
    );
    let os = item(json!([{"field": "process.name", "type": "wildcard", "operator": "included", "value": "x*"}]), json!(["windows"]));
    let q = RuleExceptions::new(vec![os]).query_clause().unwrap();
    let should = q["bool"]["should"].as_array().unwrap();
    assert_eq!(should.len(), 2, "one alternative per OS field");
    assert_eq!(should[1]["bool"]["filter"][0]["bool"]["should"][0], json!({"match_phrase": {"host.os.name.caseless": "windows"}}));
    assert_eq!(should[0]["bool"]["filter"][1], json!({"bool": {"filter": {"wildcard": {"process.name": "x*"}}}}));
    assert!(RuleExceptions::default().query_clause().is_none());
}

#[test]
fn bad_items_are_explained() {
    let list = parse_item(&json!({"item_id": "x", "list_id": "l", "entries": [
        {"field": "user.name", "type": "list", "operator": "included", "list": {"id": "bad-users", "type": "keyword"}}]}));
    assert!(list.unwrap_err().contains("value lists are not supported"));
    let op = parse_item(&json!({"item_id": "x", "list_id": "l", "entries": [{"field": "a", "type": "match", "operator": "is", "value": "1"}]}));
    assert!(op.unwrap_err().contains("`operator` must be"));
    let ty = parse_item(&json!({"item_id": "x", "list_id": "l", "entries": [{"field": "a", "type": "regex", "operator": "included", "value": "1"}]}));
    assert!(ty.unwrap_err().contains("unknown entry type `regex`"));
}

#[test]
fn expired_items_are_dropped() {
    let mut i = item(json!([{"field": "user.name", "type": "match", "operator": "included", "value": "a"}]), json!([]));
    i.expire_time = Some(chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc));
    let ex = RuleExceptions::new(vec![i]);
    let before = chrono::DateTime::parse_from_rfc3339("2025-12-31T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    assert_eq!(ex.active_at(before).items.len(), 1);
    assert!(ex.active_at(before + chrono::Duration::days(2)).is_empty());
}
