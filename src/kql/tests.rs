//! Oracle cases written by hand from Kibana's grammar and `toElasticsearchQuery` functions (Kibana's
//! KQL package is not published on the npm registry, so it cannot run here as a differential oracle).

use super::*;
use crate::eql::mapping::{FieldMapping, FieldType, Mapping};
use serde_json::json;

fn kql(q: &str) -> Value {
    to_dsl(&parse(q).unwrap_or_else(|e| panic!("{q}: {e}")), &NoFields)
}

fn mapped(q: &str) -> Value {
    let mut m = Mapping::new();
    m.insert("process.name", FieldMapping::new(FieldType::Keyword));
    m.insert("process.pid", FieldMapping::new(FieldType::Long));
    m.insert("message", FieldMapping::new(FieldType::Text { keyword_subfield: None }));
    m.insert("@timestamp", FieldMapping::new(FieldType::Date));
    m.insert("process.args", FieldMapping::new(FieldType::Keyword));
    m.insert("process", FieldMapping::new(FieldType::Object));
    to_dsl(&parse(q).unwrap_or_else(|e| panic!("{q}: {e}")), &m)
}

fn is(field: &str, clause: &str, v: Value) -> Value {
    json!({"bool": {"should": [{clause: {field: v}}], "minimum_should_match": 1}})
}

fn m(field: &str, v: &str) -> Value {
    is(field, "match", json!(v))
}

#[test]
fn field_value_is_a_match_in_a_should_of_one() {
    assert_eq!(kql("process.name: cmd.exe"), m("process.name", "cmd.exe"));
    assert_eq!(kql("  process.name  :   cmd.exe  "), m("process.name", "cmd.exe"));
    // Quoted: a phrase; escapes inside quotes.
    assert_eq!(kql(r#"message: "a \"b\" c""#), is("message", "match_phrase", json!("a \"b\" c")));
    // Unquoted values may hold spaces; they end at a spaced keyword.
    assert_eq!(kql("message: hello world"), m("message", "hello world"));
    // Unquoted numbers stay strings; true/false/null are literals.
    assert_eq!(kql("process.pid: 4"), m("process.pid", "4"));
    assert_eq!(kql("x: true"), is("x", "match", json!(true)));
    assert_eq!(kql("x: null"), is("x", "match", Value::Null));
}

#[test]
fn precedence_or_below_and_below_not() {
    let a = m("a", "1");
    let b = m("b", "2");
    let c = m("c", "3");
    assert_eq!(
        kql("a:1 or b:2 and c:3"),
        json!({"bool": {"should": [a, {"bool": {"filter": [b, c]}}], "minimum_should_match": 1}})
    );
    assert_eq!(
        kql("(a:1 OR b:2) AND not c:3"),
        json!({"bool": {"filter": [
            {"bool": {"should": [a, b], "minimum_should_match": 1}},
            {"bool": {"must_not": c}}
        ]}})
    );
    assert_eq!(kql("NOT a:1"), json!({"bool": {"must_not": a}}));
    // Keywords are case-insensitive and need spaces around them.
    assert_eq!(kql("a:1 AnD b:2"), json!({"bool": {"filter": [m("a", "1"), m("b", "2")]}}));
    assert_eq!(kql("a:sand"), m("a", "sand"));
}

#[test]
fn value_lists_spread_the_field() {
    assert_eq!(
        kql("event.action: (start or \"end\" and not stop)"),
        json!({"bool": {"should": [
            m("event.action", "start"),
            {"bool": {"filter": [
                is("event.action", "match_phrase", json!("end")),
                {"bool": {"must_not": m("event.action", "stop")}}
            ]}}
        ], "minimum_should_match": 1}})
    );
}

#[test]
fn wildcards_exists_and_match_all() {
    assert_eq!(
        kql("process.name: *.exe"),
        json!({"bool": {"should": [{"query_string": {"fields": ["process.name"], "query": "*.exe"}}], "minimum_should_match": 1}})
    );
    // Reserved query_string characters around the wildcard are escaped.
    assert_eq!(
        kql(r"file.path: C\:\\Windows\\*"),
        json!({"bool": {"should": [{"query_string": {"fields": ["file.path"], "query": "C\\:\\\\Windows\\\\*"}}], "minimum_should_match": 1}})
    );
    // An escaped star is a character, not a wildcard.
    assert_eq!(kql(r"a: x\*"), m("a", "x*"));
    assert_eq!(kql("user.name: *"), json!({"bool": {"should": [{"exists": {"field": "user.name"}}], "minimum_should_match": 1}}));
    assert_eq!(kql("*:*"), json!({"match_all": {}}));
    assert_eq!(kql(""), json!({"match_all": {}}));
    assert_eq!(kql("   "), json!({"match_all": {}}));
}

#[test]
fn values_without_a_field_search_every_field() {
    assert_eq!(kql("mimikatz"), json!({"multi_match": {"type": "best_fields", "query": "mimikatz", "lenient": true}}));
    assert_eq!(kql("\"sekurlsa logonpasswords\""), json!({"multi_match": {"type": "phrase", "query": "sekurlsa logonpasswords", "lenient": true}}));
    assert_eq!(kql("mimi*"), json!({"query_string": {"query": "mimi*"}}));
}

#[test]
fn ranges() {
    assert_eq!(
        kql("bytes >= 100"),
        json!({"bool": {"should": [{"range": {"bytes": {"gte": "100"}}}], "minimum_should_match": 1}})
    );
    assert_eq!(kql("a<b"), json!({"bool": {"should": [{"range": {"a": {"lt": "b"}}}], "minimum_should_match": 1}}));
    // A date field gets Kibana's time zone unless the value is an epoch.
    assert_eq!(
        mapped("@timestamp > \"2026-01-01\""),
        json!({"bool": {"should": [{"range": {"@timestamp": {"gt": "2026-01-01", "time_zone": "Zulu"}}}], "minimum_should_match": 1}})
    );
    assert_eq!(
        mapped("@timestamp <= 1700000000000"),
        json!({"bool": {"should": [{"range": {"@timestamp": {"lte": "1700000000000"}}}], "minimum_should_match": 1}})
    );
}

#[test]
fn field_types_choose_term_wildcard_range_or_match() {
    assert_eq!(mapped("process.name: cmd.exe"), is("process.name", "term", json!({"value": "cmd.exe"})));
    assert_eq!(mapped("process.name: \"cmd.exe\""), is("process.name", "term", json!({"value": "cmd.exe"})));
    assert_eq!(mapped("process.name: cmd*"), is("process.name", "wildcard", json!({"value": "cmd*"})));
    assert_eq!(mapped("message: cmd*"), json!({"bool": {"should": [{"query_string": {"fields": ["message"], "query": "cmd*"}}], "minimum_should_match": 1}}));
    assert_eq!(mapped("message: \"a b\""), is("message", "match_phrase", json!("a b")));
    assert_eq!(mapped("process.pid: 4"), m("process.pid", "4"));
    assert_eq!(
        mapped("@timestamp: \"2026-01-01T00:00:00Z\""),
        is("@timestamp", "range", json!({"gte": "2026-01-01T00:00:00Z", "lte": "2026-01-01T00:00:00Z", "time_zone": "Zulu"}))
    );
    // A wildcard field name expands to the known fields it matches (objects left out), in order.
    assert_eq!(
        mapped("process.*: cmd.exe"),
        json!({"bool": {"should": [
            {"term": {"process.args": {"value": "cmd.exe"}}},
            {"term": {"process.name": {"value": "cmd.exe"}}},
            {"match": {"process.pid": "cmd.exe"}}
        ], "minimum_should_match": 1}})
    );
    // An unknown wildcard field is sent as written.
    assert_eq!(mapped("nope.*: x"), m("nope.*", "x"));
}

#[test]
fn nested_queries_prefix_their_path() {
    assert_eq!(
        kql("items:{ name: a and value > 3 }"),
        json!({"nested": {"path": "items", "score_mode": "none", "query": {"bool": {"filter": [
            m("items.name", "a"),
            {"bool": {"should": [{"range": {"items.value": {"gt": "3"}}}], "minimum_should_match": 1}}
        ]}}}})
    );
    assert_eq!(
        kql("a:{ b:{ c: x } }"),
        json!({"nested": {"path": "a", "score_mode": "none", "query":
            {"nested": {"path": "a.b", "score_mode": "none", "query": m("a.b.c", "x")}}}})
    );
}

#[test]
fn escapes_in_unquoted_values() {
    assert_eq!(kql(r"a: \(x\)"), m("a", "(x)"));
    // A backslash before anything else is not an escape: a syntax error, as in Kibana.
    assert!(parse(r"a: x\ y").is_err());
    assert_eq!(kql(r"a: \or"), m("a", "or"));
    assert_eq!(kql(r"a: \u0041b"), m("a", "Ab"));
    assert_eq!(kql(r"a: x\ty"), m("a", "x\ty"));
    assert_eq!(kql(r#""my field": v"#), m("my field", "v"));
}

#[test]
fn syntax_errors_point_at_the_offending_character() {
    let e = parse("process.name: (a or b").unwrap_err();
    assert_eq!((e.line, e.col), (1, 22), "{e}");
    let e = parse("a: b and\n  c: C:\\x").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    assert!(e.message.contains("KQL syntax error"), "{e}");
    let e = parse("a: b)").unwrap_err();
    assert_eq!((e.line, e.col), (1, 5), "{e}");
    assert!(parse("a:").is_err());
    assert!(parse("a:{ b: c").is_err());
    // Keywords need spaces around them: these are values.
    assert_eq!(kql("and"), json!({"multi_match": {"type": "best_fields", "query": "and", "lenient": true}}));
    assert_eq!(kql("a: b and"), m("a", "b and"));
}

#[test]
fn rule_query_wraps_like_build_es_query() {
    let filters = json!([
        {"meta": {"negate": false}, "query": {"term": {"host.os.type": "windows"}}},
        {"meta": {"negate": true}, "query": {"term": {"user.name": "svc"}}},
        {"meta": {"disabled": true}, "query": {"term": {"x": "y"}}}
    ]);
    let q = rule_query(Language::Kuery, "a: 1", Some(&filters), &NoFields).unwrap();
    assert_eq!(
        q,
        json!({"bool": {"must": [], "filter": [m("a", "1"), {"term": {"host.os.type": "windows"}}], "should": [],
            "must_not": [{"term": {"user.name": "svc"}}]}})
    );
    let q = rule_query(Language::Lucene, "process.name:cmd.exe AND NOT user.name:svc*", None, &NoFields).unwrap();
    assert_eq!(
        q,
        json!({"bool": {"must": [{"query_string": {"query": "process.name:cmd.exe AND NOT user.name:svc*", "analyze_wildcard": true, "time_zone": "Zulu"}}],
            "filter": [], "should": [], "must_not": []}})
    );
    assert_eq!(lucene_dsl("  "), json!({"match_all": {}}));
}
