//! An in-memory matcher for the small Query DSL subset that [`crate::pushdown`] emits.
//!
//! It is a test oracle: it lets tests check, without an Elasticsearch cluster, that a pushed-down
//! filter keeps every event the EQL evaluator would match. It models what Elasticsearch does for
//! these queries on the mapped field types of the seed rules (spec `eql-semantics.md` §4.2, §5):
//! any value of an array matches; a keyword field indexes numbers and booleans as their text and
//! ignores strings over 1024 characters (ECS `ignore_above`); a long field coerces numeric strings;
//! an ip field parses both the document value and the query value into one 128-bit space with IPv4
//! stored v4-mapped, and a `term`/`terms` value on an ip field may be a CIDR block.
//!
//! Supported: `bool` (`filter`, `must`, `should`, `must_not`, `minimum_should_match`), `term`
//! (+ `case_insensitive`), `terms`, `wildcard` (+ `case_insensitive`), `prefix` (+ `case_insensitive`),
//! `exists`, `match_all`. Anything else is reported by [`try_matches`] as an error.

use crate::event::Event;
use serde_json::Value;
use std::net::IpAddr;

/// How a field is mapped; decides how values are indexed and how query values are coerced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Keyword,
    Long,
    Ip,
    Date,
}

/// The mapping of the ECS fields the seed rules read (spec §5.3); everything else is a keyword.
pub fn ecs_field_type(path: &str) -> FieldType {
    match path {
        "@timestamp" | "event.ingested" | "event.created" => FieldType::Date,
        "process.pid" | "process.parent.pid" | "winlog.process.pid" | "source.port" | "destination.port"
        | "winlog.version" => FieldType::Long,
        "source.ip" | "destination.ip" | "host.ip" | "related.ip" | "client.ip" | "server.ip" => FieldType::Ip,
        _ => FieldType::Keyword,
    }
}

/// Whether `event` matches `filter` under the ECS mapping of [`ecs_field_type`]. An unsupported query
/// counts as no match (use [`try_matches`] to see why).
pub fn matches(filter: &Value, event: &Event) -> bool {
    try_matches(filter, event, &ecs_field_type).unwrap_or(false)
}

/// Whether `event` matches `filter`, with field types from `types`; `Err` names an unsupported query.
pub fn try_matches(filter: &Value, event: &Event, types: &dyn Fn(&str) -> FieldType) -> Result<bool, String> {
    let obj = filter.as_object().filter(|o| o.len() == 1).ok_or_else(|| format!("expected one query kind in {filter}"))?;
    let (kind, body) = obj.iter().next().ok_or("empty query")?;
    match kind.as_str() {
        "match_all" => Ok(true),
        "bool" => bool_query(body, event, types),
        "exists" => {
            let field = body.get("field").and_then(Value::as_str).ok_or("exists needs a field")?;
            let ty = types(field);
            Ok(event.field_values(field).into_iter().any(|v| Indexed::of(v, ty).is_some()))
        }
        "term" | "wildcard" | "prefix" => {
            let (field, spec) = single_field(body)?;
            // Short form `{"term": {"f": "v"}}` or long form `{"term": {"f": {"value": "v", ...}}}`.
            let (value, ci) = match spec {
                Value::Object(o) => (
                    o.get("value").ok_or("missing value")?,
                    o.get("case_insensitive").and_then(Value::as_bool).unwrap_or(false),
                ),
                v => (v, false),
            };
            let ty = types(field);
            let values = event.field_values(field);
            let indexed = values.into_iter().filter_map(|v| Indexed::of(v, ty));
            Ok(match kind.as_str() {
                "term" => {
                    let q = QueryValue::of(value, ty);
                    indexed.into_iter().any(|d| q.as_ref().is_some_and(|q| q.matches(&d, ci)))
                }
                // Wildcard and prefix only apply to text; Elasticsearch rejects them on numbers and ips.
                kind => {
                    let pattern = value.as_str().ok_or("pattern must be a string")?;
                    indexed.into_iter().any(|d| match d {
                        Indexed::Text(t) if kind == "prefix" => starts_with(&t, pattern, ci),
                        Indexed::Text(t) => wildcard_match(pattern, &t, ci),
                        _ => false,
                    })
                }
            })
        }
        "terms" => {
            let (field, list) = single_field(body)?;
            let list = list.as_array().ok_or("terms needs an array")?;
            let ty = types(field);
            let qs: Vec<QueryValue> = list.iter().filter_map(|v| QueryValue::of(v, ty)).collect();
            Ok(event
                .field_values(field)
                .into_iter()
                .filter_map(|v| Indexed::of(v, ty))
                .any(|d| qs.iter().any(|q| q.matches(&d, false))))
        }
        other => Err(format!("unsupported query kind {other}")),
    }
}

fn single_field(body: &Value) -> Result<(&str, &Value), String> {
    match body.as_object() {
        Some(o) if o.len() == 1 => o.iter().next().map(|(k, v)| (k.as_str(), v)).ok_or_else(|| "empty".into()),
        _ => Err(format!("expected exactly one field in {body}")),
    }
}

fn bool_query(body: &Value, event: &Event, types: &dyn Fn(&str) -> FieldType) -> Result<bool, String> {
    let list = |name: &str| -> Vec<&Value> {
        match body.get(name) {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v) => vec![v],
            None => vec![],
        }
    };
    for q in list("filter").into_iter().chain(list("must")) {
        if !try_matches(q, event, types)? {
            return Ok(false);
        }
    }
    for q in list("must_not") {
        if try_matches(q, event, types)? {
            return Ok(false);
        }
    }
    let should = list("should");
    let positive = !list("filter").is_empty() || !list("must").is_empty();
    // Elasticsearch's default: 1 when a bool has only should clauses, else 0.
    let min = match body.get("minimum_should_match") {
        Some(Value::Number(n)) => n.as_u64().ok_or("bad minimum_should_match")? as usize,
        Some(Value::String(s)) => s.parse::<usize>().map_err(|_| format!("unsupported minimum_should_match {s}"))?,
        Some(other) => return Err(format!("bad minimum_should_match {other}")),
        None if !should.is_empty() && !positive => 1,
        None => 0,
    };
    let mut hits = 0;
    for q in should {
        if try_matches(q, event, types)? {
            hits += 1;
        }
    }
    Ok(hits >= min)
}

/// A document value as the field's mapping indexes it.
#[derive(Debug, Clone, PartialEq)]
enum Indexed {
    Text(String),
    Long(i64),
    /// IPv6 bits; IPv4 stored v4-mapped.
    Ip(u128),
    Date,
}

impl Indexed {
    /// `None` when the value is not indexed (null, object, over `ignore_above`, malformed).
    fn of(v: &Value, ty: FieldType) -> Option<Indexed> {
        match ty {
            FieldType::Keyword => keyword_text(v).filter(|s| s.chars().count() <= 1024).map(Indexed::Text),
            FieldType::Long => long_of(v).map(Indexed::Long),
            FieldType::Ip => v.as_str().and_then(ip_bits).map(Indexed::Ip),
            FieldType::Date => match v {
                Value::String(_) | Value::Number(_) => Some(Indexed::Date),
                _ => None,
            },
        }
    }
}

/// A term's value coerced by the field's mapping.
#[derive(Debug, Clone)]
enum QueryValue {
    Text(String),
    Long(i64),
    /// An address or CIDR block: (network bits, prefix length in the 128-bit space).
    Ip(u128, u8),
}

impl QueryValue {
    fn of(v: &Value, ty: FieldType) -> Option<QueryValue> {
        match ty {
            FieldType::Keyword => keyword_text(v).map(QueryValue::Text),
            // Elasticsearch would fail the search on a non-numeric value; the oracle just says no.
            FieldType::Long => long_of(v).map(QueryValue::Long),
            FieldType::Ip => {
                let s = v.as_str()?;
                match s.split_once('/') {
                    Some((addr, len)) => {
                        let addr: IpAddr = addr.parse().ok()?;
                        let len: u8 = len.parse().ok()?;
                        let len = match addr {
                            IpAddr::V4(_) if len <= 32 => len + 96,
                            IpAddr::V6(_) if len <= 128 => len,
                            _ => return None,
                        };
                        Some(QueryValue::Ip(to_bits(addr), len))
                    }
                    None => Some(QueryValue::Ip(ip_bits(s)?, 128)),
                }
            }
            FieldType::Date => None,
        }
    }

    fn matches(&self, d: &Indexed, ci: bool) -> bool {
        match (self, d) {
            (QueryValue::Text(q), Indexed::Text(t)) => {
                if ci {
                    eq_case_insensitive(t, q)
                } else {
                    t == q
                }
            }
            (QueryValue::Long(q), Indexed::Long(l)) => q == l,
            (QueryValue::Ip(net, len), Indexed::Ip(a)) => {
                let shift = 128 - u32::from(*len);
                shift >= 128 || (net ^ a) >> shift == 0
            }
            _ => false,
        }
    }
}

fn keyword_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A long field's coercion: integral numbers and numeric strings; fractions truncated.
fn long_of(v: &Value) -> Option<i64> {
    let truncate = |f: f64| f.is_finite().then(|| f.trunc() as i64);
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(truncate)),
        Value::String(s) => s.parse::<i64>().ok().or_else(|| s.parse::<f64>().ok().and_then(truncate)),
        _ => None,
    }
}

fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn ip_bits(s: &str) -> Option<u128> {
    s.parse::<IpAddr>().ok().map(to_bits)
}

/// Lucene's case-insensitive term: each query character also accepts its lower- and upper-case form
/// (simple, one-character mappings only; no multi-character folding).
fn char_matches_ci(doc: char, query: char) -> bool {
    fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
        let c = it.next()?;
        it.next().is_none().then_some(c)
    }
    doc == query || Some(doc) == single(query.to_lowercase()) || Some(doc) == single(query.to_uppercase())
}

fn eq_case_insensitive(doc: &str, query: &str) -> bool {
    doc.chars().count() == query.chars().count() && doc.chars().zip(query.chars()).all(|(d, q)| char_matches_ci(d, q))
}

fn starts_with(doc: &str, prefix: &str, ci: bool) -> bool {
    let mut d = doc.chars();
    prefix.chars().all(|p| match d.next() {
        Some(c) => if ci { char_matches_ci(c, p) } else { c == p },
        None => false,
    })
}

#[derive(Debug, Clone, Copy)]
enum Tok {
    Star,
    One,
    Lit(char),
}

/// Lucene wildcard syntax over the whole value: `*` any run, `?` one character, `\` escapes the next.
fn wildcard_match(pattern: &str, text: &str, ci: bool) -> bool {
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // reachable[j]: the tokens consumed so far can match text[..j].
    let mut reachable = vec![false; text.len() + 1];
    reachable[0] = true;
    for tok in toks {
        let mut next = vec![false; text.len() + 1];
        match tok {
            Tok::Star => {
                let mut any = false;
                for j in 0..=text.len() {
                    any |= reachable[j];
                    next[j] = any;
                }
            }
            Tok::One | Tok::Lit(_) => {
                for j in 0..text.len() {
                    if reachable[j] {
                        next[j + 1] = match tok {
                            Tok::Lit(p) => if ci { char_matches_ci(text[j], p) } else { text[j] == p },
                            _ => true,
                        };
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[text.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(source: Value) -> Event {
        Event::new("i", "1", source)
    }

    #[test]
    fn term_any_value_and_keyword_coercion() {
        let e = ev(json!({"event": {"category": ["network", "file"], "code": 5145}, "user": {"name": "FS01$"}}));
        assert!(matches(&json!({"term": {"event.category": {"value": "file"}}}), &e));
        assert!(!matches(&json!({"term": {"event.category": {"value": "File"}}}), &e));
        assert!(matches(&json!({"term": {"event.category": {"value": "File", "case_insensitive": true}}}), &e));
        // A number in a keyword field is indexed as its text; a numeric term value likewise.
        assert!(matches(&json!({"term": {"event.code": {"value": "5145"}}}), &e));
        assert!(matches(&json!({"term": {"event.code": 5145}}), &e));
        assert!(!matches(&json!({"term": {"missing": {"value": "x"}}}), &e));
        let long = "a".repeat(1025);
        assert!(!matches(&json!({"exists": {"field": "x"}}), &ev(json!({"x": long}))));
        assert!(!matches(&json!({"exists": {"field": "x"}}), &ev(json!({"x": [null]}))));
        assert!(!matches(&json!({"exists": {"field": "x"}}), &ev(json!({"x": []}))));
        assert!(matches(&json!({"exists": {"field": "x"}}), &ev(json!({"x": [null, "a"]}))));
    }

    #[test]
    fn long_field_coerces_numeric_strings() {
        let q = json!({"term": {"process.pid": {"value": 0}}});
        assert!(matches(&q, &ev(json!({"process": {"pid": 0}}))));
        assert!(matches(&q, &ev(json!({"process": {"pid": "0"}}))));
        assert!(!matches(&q, &ev(json!({"process": {"pid": 448}}))));
        assert!(!matches(&q, &ev(json!({"process": {"pid": "0x0"}}))));
        assert!(!matches(&q, &ev(json!({"process": {}}))));
        assert!(matches(&json!({"term": {"process.pid": {"value": "448"}}}), &ev(json!({"process.pid": 448}))));
    }

    #[test]
    fn ip_terms_with_cidr_and_v4_mapped() {
        let q = json!({"terms": {"source.ip": ["127.0.0.0/8", "::1"]}});
        for ip in ["127.0.0.1", "127.9.8.7", "::ffff:127.0.0.1", "::1", "0:0:0:0:0:0:0:1"] {
            assert!(matches(&q, &ev(json!({"source": {"ip": ip}}))), "{ip}");
        }
        for ip in ["10.0.0.1", "::2", "fe80::1", "not-an-ip"] {
            assert!(!matches(&q, &ev(json!({"source": {"ip": ip}}))), "{ip}");
        }
        assert!(matches(&json!({"term": {"host.ip": {"value": "10.0.0.1"}}}), &ev(json!({"host": {"ip": ["fe80::1", "10.0.0.1"]}}))));
        assert!(matches(&json!({"terms": {"host.ip": ["0.0.0.0/0"]}}), &ev(json!({"host": {"ip": "1.2.3.4"}}))));
    }

    #[test]
    fn wildcard_and_prefix() {
        assert!(wildcard_match("*$", "FS01$", false));
        assert!(!wildcard_match("*$", "FS01", false));
        assert!(wildcard_match("b?d", "bad", false));
        assert!(!wildcard_match("b?d", "bd", false));
        assert!(wildcard_match("C:\\\\x*", "C:\\xyz", false));
        assert!(wildcard_match("a\\*", "a*", false));
        assert!(!wildcard_match("a\\*", "ab", false));
        assert!(wildcard_match("SERVICE-*", "service-installed", true));
        assert!(!wildcard_match("SERVICE-*", "service-installed", false));
        assert!(starts_with("Abc", "aB", true) && !starts_with("Abc", "aB", false) && !starts_with("A", "Ab", true));
        let e = ev(json!({"process": {"pid": 5}}));
        assert!(!matches(&json!({"prefix": {"process.pid": {"value": "5"}}}), &e));
    }

    #[test]
    fn bool_semantics() {
        let e = ev(json!({"a": "x", "b": "y"}));
        let t = |f: &str, v: &str| json!({"term": {f: {"value": v}}});
        assert!(matches(&json!({"bool": {"filter": [t("a", "x"), t("b", "y")]}}), &e));
        assert!(!matches(&json!({"bool": {"filter": [t("a", "x"), t("b", "z")]}}), &e));
        assert!(matches(&json!({"bool": {"should": [t("a", "z"), t("b", "y")]}}), &e));
        assert!(!matches(&json!({"bool": {"should": [t("a", "z"), t("b", "z")]}}), &e));
        assert!(matches(&json!({"bool": {"filter": [t("a", "x")], "should": [t("a", "z")]}}), &e));
        assert!(!matches(&json!({"bool": {"should": [t("a", "x")], "minimum_should_match": 2}}), &e));
        assert!(!matches(&json!({"bool": {"must_not": [t("a", "x")]}}), &e));
        assert!(try_matches(&json!({"regexp": {"a": "x"}}), &e, &ecs_field_type).is_err());
    }

    #[test]
    fn case_insensitive_is_per_character_simple_mapping() {
        assert!(eq_case_insensitive("KERBEROS", "Kerberos"));
        assert!(eq_case_insensitive("kerberos", "Kerberos"));
        assert!(!eq_case_insensitive("kerberos ", "Kerberos"));
        assert!(!eq_case_insensitive("ss", "ß"));
        assert!(eq_case_insensitive("Ä", "ä"));
    }
}
