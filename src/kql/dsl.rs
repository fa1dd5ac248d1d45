//! [`Node`] → Elasticsearch Query DSL, clause for clause as Kibana's `@kbn/es-query` builds it for a
//! detection rule (`toElasticsearchQuery` of the `is`, `range`, `and`, `or`, `not` and `nested`
//! functions, with the rule's fields loaded from the mapping). The translation rules and their sources
//! are written down in `docs/kql.md`.

use super::ast::{Node, Term};
use crate::eql::mapping::{FieldType, Mapping};
use serde_json::{json, Map, Value};

/// The time zone Kibana's detection engine passes as `dateFormatTZ`.
pub const DATE_FORMAT_TZ: &str = "Zulu";

/// What the translation needs to know about a field: its type family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Mapped `keyword` (and only that): `term` / `wildcard` queries.
    Keyword,
    /// `date` / `date_nanos`: an exact value becomes a `range` with a time zone.
    Date,
    /// Any other or unknown type: `match` / `match_phrase` / `query_string`.
    Other,
}

/// The fields a query can name (Kibana loads them from the data view of the rule's indices).
pub trait Fields {
    /// The type family of `name`; `None` when the field is not known.
    fn kind(&self, name: &str) -> Option<FieldKind>;
    /// Known field names matching a wildcard field name (`None` pieces are `*`), sorted.
    fn matching(&self, pattern: &[Option<char>]) -> Vec<String>;
}

/// No field known: every field name is sent as written and values use `match` (Kibana before it loaded
/// a rule's fields, and Kibana for any field missing from the mapping).
pub struct NoFields;

impl Fields for NoFields {
    fn kind(&self, _: &str) -> Option<FieldKind> {
        None
    }
    fn matching(&self, _: &[Option<char>]) -> Vec<String> {
        Vec::new()
    }
}

impl Fields for Mapping {
    fn kind(&self, name: &str) -> Option<FieldKind> {
        let declared = self.resolve(name)?.declared?;
        Some(match declared {
            FieldType::Keyword => FieldKind::Keyword,
            FieldType::Date | FieldType::DateNanos => FieldKind::Date,
            _ => FieldKind::Other,
        })
    }
    fn matching(&self, pattern: &[Option<char>]) -> Vec<String> {
        self.paths()
            .filter(|p| !matches!(self.get(p).map(|f| &f.ty), Some(FieldType::Object)))
            .filter(|p| wildcard_matches(pattern, p))
            .map(str::to_string)
            .collect()
    }
}

/// Whether `text` matches a wildcard pattern (`None` = any run of characters), anchored at both ends.
pub fn wildcard_matches(pattern: &[Option<char>], text: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    // Classic glob matching with one backtrack point for the last `*`.
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < t.len() {
        match pattern.get(p) {
            Some(Some(c)) if *c == t[i] => {
                p += 1;
                i += 1;
            }
            Some(None) => {
                star = Some((p, i));
                p += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| c.is_none())
}

/// Kibana's `wildcard.toQueryStringQuery`: query_string reserved characters escaped, `*` kept.
pub fn to_query_string(pattern: &[Option<char>]) -> String {
    let mut out = String::new();
    for piece in pattern {
        match piece {
            None => out.push('*'),
            Some(c) => {
                if "+-=&|><!(){}[]^\"~*?:\\/".contains(*c) {
                    out.push('\\');
                }
                out.push(*c);
            }
        }
    }
    out
}

/// The JSON value of a literal as Kibana passes it to Elasticsearch.
fn value_json(t: &Term) -> Value {
    match t {
        Term::Str(s) | Term::Quoted(s) => json!(s),
        Term::Bool(b) => json!(b),
        Term::Null => Value::Null,
        Term::Wildcard(p) => json!(p.iter().map(|c| c.unwrap_or('*')).collect::<String>()),
    }
}

/// Epoch values (digit-only strings) are absolute and get no time zone.
fn is_epoch(v: &Value) -> bool {
    v.is_number() || v.as_str().map(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).unwrap_or(false)
}

fn should(queries: Vec<Value>) -> Value {
    json!({"bool": {"should": queries, "minimum_should_match": 1}})
}

/// Translates a parsed query.
pub fn to_dsl(node: &Node, fields: &dyn Fields) -> Value {
    translate(node, fields, None)
}

fn translate(node: &Node, fields: &dyn Fields, nested: Option<&str>) -> Value {
    match node {
        Node::Or(children) => should(children.iter().map(|c| translate(c, fields, nested)).collect()),
        Node::And(children) => {
            json!({"bool": {"filter": children.iter().map(|c| translate(c, fields, nested)).collect::<Vec<_>>()}})
        }
        Node::Not(child) => json!({"bool": {"must_not": translate(child, fields, nested)}}),
        Node::Nested { path, query } => {
            let name = path.name();
            let full = match nested {
                Some(outer) => format!("{outer}.{name}"),
                None => name,
            };
            let query = translate(query, fields, Some(&full));
            json!({"nested": {"path": full, "query": query, "score_mode": "none"}})
        }
        Node::Is { field, value } => is_query(field, value, fields, nested),
        Node::Range { field, op, value } => {
            let v = value_json(value);
            let queries = field_names(field, fields, nested)
                .into_iter()
                .map(|(name, kind)| {
                    let mut params = Map::new();
                    params.insert(op.key().to_string(), v.clone());
                    if kind == Some(FieldKind::Date) && !is_epoch(&v) {
                        params.insert("time_zone".into(), json!(DATE_FORMAT_TZ));
                    }
                    json!({"range": {name: Value::Object(params)}})
                })
                .collect();
            should(queries)
        }
    }
}

/// The field a name stands for inside a `nested` query is prefixed with the nested path.
fn full_field(field: &Term, nested: Option<&str>) -> Term {
    let Some(path) = nested else { return field.clone() };
    match field {
        Term::Wildcard(p) => {
            let mut out: Vec<Option<char>> = format!("{path}.").chars().map(Some).collect();
            out.extend(p.iter().cloned());
            Term::Wildcard(out)
        }
        Term::Null => Term::Null,
        other => Term::Str(format!("{path}.{}", other.name())),
    }
}

/// Kibana's `getFields`, with the "unknown field: send the name as written" fallback.
fn field_names(field: &Term, fields: &dyn Fields, nested: Option<&str>) -> Vec<(String, Option<FieldKind>)> {
    let full = full_field(field, nested);
    let found: Vec<(String, Option<FieldKind>)> = match &full {
        Term::Wildcard(p) => fields.matching(p).into_iter().map(|n| {
            let k = fields.kind(&n);
            (n, k)
        }).collect(),
        other => {
            let n = other.name();
            match fields.kind(&n) {
                Some(k) => vec![(n, Some(k))],
                None => Vec::new(),
            }
        }
    };
    if found.is_empty() {
        vec![(full.name(), None)]
    } else {
        found
    }
}

fn is_query(field: &Term, value: &Term, fields: &dyn Fields, nested: Option<&str>) -> Value {
    let exists = value.is_lone_wildcard();
    if exists && field.is_lone_wildcard() {
        return json!({"match_all": {}});
    }
    let full = full_field(field, nested);
    if full == Term::Null {
        if let Term::Wildcard(p) = value {
            return json!({"query_string": {"query": to_query_string(p)}});
        }
        let kind = if matches!(value, Term::Quoted(_)) { "phrase" } else { "best_fields" };
        return json!({"multi_match": {"type": kind, "query": value_json(value), "lenient": true}});
    }
    let v = value_json(value);
    let queries = field_names(field, fields, nested)
        .into_iter()
        .map(|(name, kind)| {
            if exists {
                json!({"exists": {"field": name}})
            } else if let Term::Wildcard(p) = value {
                if kind == Some(FieldKind::Keyword) {
                    json!({"wildcard": {name: {"value": to_query_string(p)}}})
                } else {
                    json!({"query_string": {"fields": [name], "query": to_query_string(p)}})
                }
            } else if kind == Some(FieldKind::Date) {
                let mut params = Map::new();
                params.insert("gte".into(), v.clone());
                params.insert("lte".into(), v.clone());
                if !is_epoch(&v) {
                    params.insert("time_zone".into(), json!(DATE_FORMAT_TZ));
                }
                json!({"range": {name: Value::Object(params)}})
            } else if kind == Some(FieldKind::Keyword) {
                json!({"term": {name: {"value": v}}})
            } else if matches!(value, Term::Quoted(_)) {
                json!({"match_phrase": {name: v}})
            } else {
                json!({"match": {name: v}})
            }
        })
        .collect();
    should(queries)
}
