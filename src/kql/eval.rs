//! In-memory evaluation of the part of KQL whose Elasticsearch result is known without Elasticsearch, for
//! `esdetect test` on files. That part is: `and`/`or`/`not`, and `field: value` on fields mapped as
//! `keyword` (a `term` query: exact, case-sensitive, any value of the field, values longer than
//! `ignore_above` not indexed), `field: *` (exists) and wildcard values on them (`wildcard` query:
//! case-sensitive). Everything else (text fields and their analyzers, values without a field, ranges, dates,
//! numbers, nested, wildcard field names, Lucene) depends on Elasticsearch and is refused with the reason.

use super::ast::{Node, Term};
use super::dsl::{wildcard_matches, FieldKind, Fields};
use crate::eql::mapping::Mapping;
use serde_json::Value;

/// `Ok` when every part of the query can be evaluated exactly in memory; else why not.
pub fn check(node: &Node, mapping: &Mapping) -> Result<(), String> {
    match node {
        Node::And(c) | Node::Or(c) => c.iter().try_for_each(|n| check(n, mapping)),
        Node::Not(c) => check(c, mapping),
        Node::Nested { .. } => Err("nested queries (`field: { … }`)".into()),
        Node::Range { field, .. } => Err(format!("the range on `{}`", field.name())),
        Node::Is { field: Term::Null, .. } => Err("values without a field (searched in every field)".into()),
        Node::Is { field: Term::Wildcard(_), .. } => Err("wildcard field names".into()),
        Node::Is { field, value } => {
            let name = field.name();
            if mapping.kind(&name) != Some(FieldKind::Keyword) {
                return Err(format!("`{name}`, which is not mapped as keyword (on files esdetect evaluates keyword fields only: others depend on Elasticsearch's analysis and types)"));
            }
            if *value == Term::Null {
                return Err(format!("`{name}: null`"));
            }
            Ok(())
        }
    }
}

/// The indexed keyword values of `field` in a document: strings (and other scalars as their JSON text) not
/// longer than `ignore_above`.
pub fn keyword_values(source: &Value, field: &str, mapping: &Mapping) -> Vec<String> {
    let resolved = mapping.resolve(field);
    let path = resolved.as_ref().map(|r| r.source_path.clone()).unwrap_or_else(|| field.to_string());
    let limit = resolved.and_then(|r| r.ignore_above);
    let mut values = Vec::new();
    crate::event::collect_path(source, &path, &mut values);
    values
        .into_iter()
        .filter_map(|v| match v {
            Value::Null | Value::Object(_) | Value::Array(_) => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
        .filter(|s| limit.map(|l| s.encode_utf16().count() <= l).unwrap_or(true))
        .collect()
}

/// Whether a document's `_source` matches a query that passed [`check`].
pub fn matches(node: &Node, source: &Value, mapping: &Mapping) -> bool {
    match node {
        Node::And(c) => c.iter().all(|n| matches(n, source, mapping)),
        Node::Or(c) => c.iter().any(|n| matches(n, source, mapping)),
        Node::Not(c) => !matches(c, source, mapping),
        Node::Is { field, value } => {
            let values = keyword_values(source, &field.name(), mapping);
            match value {
                v if v.is_lone_wildcard() => !values.is_empty(),
                Term::Wildcard(p) => values.iter().any(|s| wildcard_matches(p, s)),
                Term::Str(s) | Term::Quoted(s) => values.iter().any(|x| x == s),
                Term::Bool(b) => values.iter().any(|x| *x == b.to_string()),
                Term::Null => false,
            }
        }
        Node::Range { .. } | Node::Nested { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eql::mapping::{FieldMapping, FieldType};
    use serde_json::json;

    fn mapping() -> Mapping {
        let mut m = Mapping::new();
        m.insert("process.name", FieldMapping { ignore_above: Some(10), ..FieldMapping::new(FieldType::Keyword) });
        m.insert("process.args", FieldMapping::new(FieldType::Keyword));
        m.insert("process.parent.name", FieldMapping::new(FieldType::Keyword));
        m.insert("message", FieldMapping::new(FieldType::Text { keyword_subfield: None }));
        m
    }

    fn eval(q: &str, doc: Value) -> bool {
        let n = super::super::parse(q).unwrap();
        check(&n, &mapping()).unwrap();
        matches(&n, &doc, &mapping())
    }

    #[test]
    fn keyword_terms_wildcards_exists_and_boolean_logic() {
        let doc = json!({"process": {"name": "cmd.exe", "args": ["cmd.exe", "/c", "whoami"]}});
        assert!(eval("process.name: cmd.exe", doc.clone()));
        assert!(!eval("process.name: CMD.EXE", doc.clone()), "term on keyword is case-sensitive");
        assert!(eval("process.args: (whoami and \"/c\")", doc.clone()));
        assert!(eval("process.name: cmd* and not process.args: net", doc.clone()));
        assert!(!eval("process.name: *.dll or process.args: x", doc.clone()));
        // A missing field: the term and exists fail, their negations hold (must_not matches documents without it).
        assert!(!eval("process.parent.name: x", doc.clone()));
        assert!(eval("not process.parent.name: x", doc.clone()));
        assert!(!eval("process.parent.name: *", doc.clone()));
        // Longer than ignore_above: not indexed, so neither matched nor existing.
        let long = json!({"process": {"name": "verylongname.exe"}});
        assert!(!eval("process.name: verylongname.exe", long.clone()));
        assert!(!eval("process.name: *", long));
    }

    #[test]
    fn what_depends_on_elasticsearch_is_refused() {
        let m = mapping();
        for q in ["message: hello", "mimikatz", "process.* : x", "a > 3", "a:{ b: c }", "unknown.field: x"] {
            assert!(check(&super::super::parse(q).unwrap(), &m).is_err(), "{q}");
        }
    }
}
