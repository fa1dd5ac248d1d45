//! Kibana Query Language (KQL) and Lucene rule queries → Elasticsearch Query DSL, the way Kibana's
//! detection engine builds the search of a custom query rule (`buildEsQuery` of `@kbn/es-query` with
//! the rule's fields loaded). Pure: text and a field table in, JSON out.
//!
//! Why here and not in Elasticsearch: Elasticsearch has no KQL endpoint; Kibana translates KQL itself,
//! and the alerts a query rule raises depend on that translation (phrase or not, `term` for keyword
//! fields, time zone of date values). [`parser`] follows Kibana's grammar, [`dsl`] its
//! `toElasticsearchQuery` functions; `docs/kql.md` lists the rules with their source.

pub mod ast;
pub mod dsl;
pub mod eval;
pub mod parser;
#[cfg(test)]
mod tests;

pub use ast::{Node, RangeOp, Term};
pub use dsl::{to_dsl, FieldKind, Fields, NoFields};
pub use parser::parse;

use serde_json::{json, Value};
use std::fmt;

/// A KQL syntax error at a 1-based line and column of the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KqlError {
    pub line: u32,
    pub col: u32,
    pub message: String,
}

impl fmt::Display for KqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

impl std::error::Error for KqlError {}

/// The query languages of a custom query rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Kuery,
    Lucene,
}

impl Language {
    /// `kuery` or `lucene` (the rule's `language`); anything else is not a query-rule language.
    pub fn from_rule(language: &str) -> Option<Language> {
        match language {
            "kuery" => Some(Language::Kuery),
            "lucene" => Some(Language::Lucene),
            _ => None,
        }
    }
}

/// Kibana's `luceneStringToDsl` + `decorateQuery`: a `query_string` with the detection engine's options
/// (`analyze_wildcard`, `time_zone`), or `match_all` for a blank query.
pub fn lucene_dsl(query: &str) -> Value {
    if query.trim().is_empty() {
        return json!({"match_all": {}});
    }
    json!({"query_string": {"query": query, "analyze_wildcard": true, "time_zone": dsl::DATE_FORMAT_TZ}})
}

/// The `query` Kibana's `buildEsQuery` gives a rule: the KQL (in `filter`) or Lucene (in `must`) query
/// plus the rule's `filters` (Kibana filter objects: `meta.disabled` ones dropped, `meta.negate` ones in
/// `must_not`). KQL syntax errors are returned (positions relative to `query`).
pub fn rule_query(language: Language, query: &str, filters: Option<&Value>, fields: &dyn Fields) -> Result<Value, KqlError> {
    let mut must = Vec::new();
    let mut filter = Vec::new();
    let mut must_not = Vec::new();
    match language {
        // `buildQueryFromKuery` wraps the query in an `and` of one: its bool `filter`.
        Language::Kuery => filter.push(to_dsl(&parse(query)?, fields)),
        Language::Lucene => must.push(lucene_dsl(query)),
    }
    for f in filters.and_then(|f| f.as_array()).into_iter().flatten() {
        let meta = f.get("meta");
        if meta.and_then(|m| m.get("disabled")).and_then(|d| d.as_bool()) == Some(true) {
            continue;
        }
        let clause = match f.get("query") {
            Some(q) => q.clone(),
            None => {
                let mut q = f.as_object().cloned().unwrap_or_default();
                q.remove("meta");
                q.remove("$state");
                Value::Object(q)
            }
        };
        if meta.and_then(|m| m.get("negate")).and_then(|d| d.as_bool()) == Some(true) {
            must_not.push(clause);
        } else {
            filter.push(clause);
        }
    }
    Ok(json!({"bool": {"must": must, "filter": filter, "should": [], "must_not": must_not}}))
}
