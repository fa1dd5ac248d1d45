//! Rule exceptions with Kibana's semantics: which events a rule must never see.
//!
//! Kibana turns a rule's exception items into one query filter and puts it, negated, beside the time range
//! of the rule's `_eql/search` request, so an excepted event is invisible to the query: it never matches
//! and never enters a sequence. esdetect does the same in two places that must agree: as Query DSL in the
//! window query of a cluster run ([`RuleExceptions::query_clause`], added under `must_not`), and in memory
//! for offline runs ([`ExceptionMatcher::excludes`]). The exact translation, taken from Kibana's
//! exception filter builder, is written down in `docs/exceptions.md`.
//!
//! The model ([`ExceptionItem`], [`Entry`]) is the Kibana list item shape (`entries`, `os_types`,
//! `expire_time`) as found in rule exports and detection-rules exception files.

mod dsl;
mod matcher;

pub use matcher::ExceptionMatcher;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// `included`: the entry holds when the condition is true; `excluded`: when it is false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Included,
    Excluded,
}

/// One condition of an exception item (Kibana's entry types).
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// `match`: the field has this value (`match_phrase`).
    Match { field: String, value: String, operator: Operator },
    /// `match_any`: the field has one of these values.
    MatchAny { field: String, values: Vec<String>, operator: Operator },
    /// `exists`: the field has a value.
    Exists { field: String, operator: Operator },
    /// `wildcard`: a value of the field matches the pattern (`*`, `?`).
    Wildcard { field: String, value: String, operator: Operator },
    /// `nested`: every inner entry holds on the same object of the `nested` field `field`; inner fields
    /// are relative to it.
    Nested { field: String, entries: Vec<Entry> },
}

impl Entry {
    /// The field this entry is about (for `nested`, the parent path).
    pub fn field(&self) -> &str {
        match self {
            Entry::Match { field, .. }
            | Entry::MatchAny { field, .. }
            | Entry::Exists { field, .. }
            | Entry::Wildcard { field, .. }
            | Entry::Nested { field, .. } => field,
        }
    }
}

/// One exception item: its entries are AND-ed; the items of a rule are OR-ed.
#[derive(Debug, Clone, PartialEq)]
pub struct ExceptionItem {
    pub item_id: String,
    pub list_id: String,
    pub namespace_type: String,
    pub name: String,
    pub entries: Vec<Entry>,
    /// `windows`, `linux`, `macos`: when set, the item also requires `host.os.type` (or
    /// `host.os.name.caseless`) to be one of them.
    pub os_types: Vec<String>,
    /// Kibana stops applying an item once this time has passed.
    pub expire_time: Option<DateTime<Utc>>,
}

/// An exception list container (the list an item belongs to).
#[derive(Debug, Clone, PartialEq)]
pub struct ExceptionList {
    pub list_id: String,
    pub namespace_type: String,
    pub name: String,
    /// `detection`, `rule_default`, `endpoint`, …
    pub list_type: String,
}

/// The exception items that apply to one rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleExceptions {
    pub items: Vec<ExceptionItem>,
}

impl RuleExceptions {
    pub fn new(items: Vec<ExceptionItem>) -> Self {
        RuleExceptions { items }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops items whose `expire_time` is at or before `now` (Kibana only fetches unexpired items).
    pub fn active_at(&self, now: DateTime<Utc>) -> RuleExceptions {
        RuleExceptions {
            items: self.items.iter().filter(|i| i.expire_time.is_none_or(|t| t > now)).cloned().collect(),
        }
    }

    /// The filter Kibana builds from the items (a `bool.should` of one clause per item), to be placed under
    /// `must_not` of the search. `None` when there is no item.
    pub fn query_clause(&self) -> Option<Value> {
        dsl::exception_filter(&self.items)
    }

    /// Every field path the exceptions read (`host.os.type` and `host.os.name.caseless` when an item has
    /// `os_types`; a `nested` parent and the full paths below it). Sorted, without duplicates.
    pub fn fields(&self) -> Vec<String> {
        fn walk(prefix: Option<&str>, entries: &[Entry], out: &mut Vec<String>) {
            for e in entries {
                let full = match prefix {
                    Some(p) => format!("{p}.{}", e.field()),
                    None => e.field().to_string(),
                };
                match e {
                    // The whole parent too: a nested match reads each of its objects together.
                    Entry::Nested { entries, .. } => {
                        out.push(full.clone());
                        walk(Some(&full), entries, out)
                    }
                    _ => out.push(full),
                }
            }
        }
        let mut out = Vec::new();
        for item in &self.items {
            walk(None, &item.entries, &mut out);
            if !item.os_types.is_empty() {
                out.push("host.os.type".into());
                out.push("host.os.name.caseless".into());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The in-memory matcher, typing fields with `mapping` the way the cluster indexes them.
    pub fn matcher(&self, mapping: &crate::eql::mapping::Mapping) -> ExceptionMatcher {
        ExceptionMatcher::new(&self.items, mapping)
    }
}

/// Reads an exception list container (`type` other than `simple`) from its JSON object.
pub fn parse_list(v: &Value) -> Result<ExceptionList, String> {
    let obj = v.as_object().ok_or("an exception list must be a JSON object")?;
    Ok(ExceptionList {
        list_id: req_str(obj, "list_id", "exception list")?,
        namespace_type: opt_str(obj, "namespace_type", "exception list")?.unwrap_or_else(|| "single".into()),
        name: opt_str(obj, "name", "exception list")?.unwrap_or_default(),
        list_type: req_str(obj, "type", "exception list")?,
    })
}

/// Reads an exception item (`type: "simple"`) from its JSON object. Value-list (`list`) entries are an
/// error: their values live in Kibana's list indices, which an export does not carry.
pub fn parse_item(v: &Value) -> Result<ExceptionItem, String> {
    let obj = v.as_object().ok_or("an exception item must be a JSON object")?;
    let item_id = opt_str(obj, "item_id", "exception item")?.unwrap_or_default();
    let what = format!("exception item `{item_id}`");
    let entries = match obj.get("entries") {
        Some(Value::Array(a)) if !a.is_empty() => a.iter().enumerate().map(|(i, e)| parse_entry(e, &what, i, false)).collect::<Result<Vec<_>, _>>()?,
        Some(Value::Array(_)) => return Err(format!("{what}: `entries` is empty (Kibana requires at least one entry)")),
        Some(_) => return Err(format!("{what}: `entries` must be an array")),
        None => return Err(format!("{what}: `entries` is missing")),
    };
    let os_types = match obj.get("os_types") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|o| match o.as_str() {
                Some(s @ ("windows" | "linux" | "macos")) => Ok(s.to_string()),
                _ => Err(format!("{what}: `os_types` values must be \"windows\", \"linux\" or \"macos\", found {o}")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("{what}: `os_types` must be an array")),
    };
    let expire_time = match obj.get("expire_time") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|e| format!("{what}: `expire_time` `{s}` is not an ISO-8601 time ({e})"))?
                .with_timezone(&Utc),
        ),
        Some(_) => return Err(format!("{what}: `expire_time` must be a string")),
    };
    Ok(ExceptionItem {
        list_id: req_str(obj, "list_id", &what)?,
        namespace_type: opt_str(obj, "namespace_type", &what)?.unwrap_or_else(|| "single".into()),
        name: opt_str(obj, "name", &what)?.unwrap_or_default(),
        item_id,
        entries,
        os_types,
        expire_time,
    })
}

fn parse_entry(v: &Value, what: &str, index: usize, inside_nested: bool) -> Result<Entry, String> {
    let at = format!("{what}, entry {}", index + 1);
    let obj = v.as_object().ok_or_else(|| format!("{at}: must be a JSON object"))?;
    let field = req_str(obj, "field", &at)?;
    if field.trim().is_empty() {
        return Err(format!("{at}: `field` is empty"));
    }
    let ty = req_str(obj, "type", &at)?;
    let operator = || -> Result<Operator, String> {
        match obj.get("operator").and_then(|o| o.as_str()) {
            Some("included") => Ok(Operator::Included),
            Some("excluded") => Ok(Operator::Excluded),
            Some(o) => Err(format!("{at}: `operator` must be \"included\" or \"excluded\", found \"{o}\"")),
            None => Err(format!("{at}: `operator` is missing (\"included\" or \"excluded\")")),
        }
    };
    let string_value = || -> Result<String, String> {
        match obj.get("value") {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(format!("{at}: `value` is empty")),
            _ => Err(format!("{at}: `{ty}` needs a string `value`")),
        }
    };
    Ok(match ty.as_str() {
        "match" => Entry::Match { value: string_value()?, operator: operator()?, field },
        "wildcard" => Entry::Wildcard { value: string_value()?, operator: operator()?, field },
        "match_any" => {
            let values = match obj.get("value") {
                Some(Value::Array(a)) if !a.is_empty() => a
                    .iter()
                    .map(|x| x.as_str().map(str::to_string).ok_or_else(|| format!("{at}: `match_any` values must be strings")))
                    .collect::<Result<Vec<_>, _>>()?,
                _ => return Err(format!("{at}: `match_any` needs a non-empty array of strings as `value`")),
            };
            Entry::MatchAny { values, operator: operator()?, field }
        }
        "exists" => Entry::Exists { operator: operator()?, field },
        "nested" if inside_nested => return Err(format!("{at}: a `nested` entry cannot hold another `nested` entry")),
        "nested" => {
            let entries = match obj.get("entries") {
                Some(Value::Array(a)) if !a.is_empty() => a
                    .iter()
                    .enumerate()
                    .map(|(i, e)| parse_entry(e, &at, i, true))
                    .collect::<Result<Vec<_>, _>>()?,
                _ => return Err(format!("{at}: `nested` needs a non-empty `entries` array")),
            };
            Entry::Nested { field, entries }
        }
        "list" => {
            let list = obj.get("list").and_then(|l| l.as_object());
            let get = |k: &str| list.and_then(|l| l.get(k)).and_then(|x| x.as_str()).unwrap_or("").to_string();
            let (list_id, list_type) = (get("id"), get("type"));
            let _ = operator()?;
            return Err(format!(
                "{at}: value lists are not supported (entry on `{field}` uses list `{list_id}` of type `{list_type}`): \
                 their values live in Kibana's list indices, not in the export; replace the entry with `match_any`"
            ));
        }
        other => {
            return Err(format!(
                "{at}: unknown entry type `{other}` (expected match, match_any, exists, wildcard, nested or list)"
            ))
        }
    })
}

fn req_str(obj: &serde_json::Map<String, Value>, key: &str, what: &str) -> Result<String, String> {
    opt_str(obj, key, what)?.ok_or_else(|| format!("{what}: `{key}` is missing"))
}

fn opt_str(obj: &serde_json::Map<String, Value>, key: &str, what: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{what}: `{key}` must be a string, found {other}")),
    }
}

#[cfg(test)]
mod tests;
