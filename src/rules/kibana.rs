//! Reads a Kibana rule export (the NDJSON file the Detection rules page or `_export` writes) into rules and
//! exception lists.
//!
//! The file holds, one JSON object per line and in this order: rule objects (Kibana's rule response shape,
//! `id` being the rule's saved-object id), exception list containers and their items (when exported with
//! the rules), action connectors, and a last line of export details (`exported_count`,
//! `exported_rules_count`, `missing_rules`, `exported_exception_list_count`, …). The details are checked
//! against what was read, so a truncated or hand-edited export is an error instead of a smaller rule set.
//! Data view saved objects (`"type": "index-pattern"`) may be appended by hand to resolve `data_view_id`.
//! An exception list export (lists and items, then a details line with only the exception counts) is
//! read the same way: Kibana never exports the Endpoint exception list with rules.
//!
//! Positions are `file:line:col` with line = NDJSON line and col = the character where the offending
//! value starts on that line.

use super::{parse_interval, parse_now_minus, RuleError, DEFAULT_FROM, DEFAULT_INTERVAL, DEFAULT_MAX_SIGNALS, DEFAULT_TO};
use super::Rule;
use crate::exceptions::{self, ExceptionItem, ExceptionList};
use chrono::Duration;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Everything one export file holds that esdetect uses.
#[derive(Debug, Default)]
pub struct ExportFile {
    /// Rules of any type (the caller decides which can run).
    pub rules: Vec<Rule>,
    pub errors: Vec<RuleError>,
    pub lists: Vec<ExceptionList>,
    pub items: Vec<ExceptionItem>,
}

/// Whether `text` looks like a Kibana export: its first non-blank line is a JSON object.
pub fn looks_like_export(text: &str) -> bool {
    text.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| l.trim_start().starts_with('{'))
}

/// Reads an export file. Problems with single lines are collected; the other lines are still read.
pub fn load_export(path: &Path) -> ExportFile {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_export(path, &text),
        Err(e) => ExportFile {
            errors: vec![RuleError::new(path, (1, 1), None, format!("cannot read rule export: {e}"))],
            ..ExportFile::default()
        },
    }
}

/// The counts of the details line, and where it was.
struct Details {
    line: u32,
    value: Map<String, Value>,
}

/// Parses export text (`path` only for messages and `Rule::path`).
pub fn parse_export(path: &Path, text: &str) -> ExportFile {
    let mut out = ExportFile::default();
    let mut details: Option<Details> = None;
    let (mut rule_lines, mut list_lines, mut item_lines, mut connector_lines) = (0u64, 0u64, 0u64, 0u64);
    let mut data_views: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut pending_rules: Vec<(u32, String, Map<String, Value>)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i as u32 + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                out.errors.push(RuleError::new(path, (line_no, e.column().max(1) as u32), None, format!("invalid JSON: {e}")));
                continue;
            }
        };
        let Value::Object(obj) = value else {
            out.errors.push(RuleError::new(path, (line_no, 1), None, "each line of a rule export must be a JSON object"));
            continue;
        };
        if let Some(d) = &details {
            out.errors.push(RuleError::new(
                path,
                (line_no, 1),
                None,
                format!("content after the export details line {}: the details line must be the last line", d.line),
            ));
        }
        let ty = obj.get("type").and_then(|t| t.as_str()).unwrap_or("");
        // Rule exports write `exported_count`; an exception list export (Kibana's Exceptions page) only the
        // exception counts.
        if obj.contains_key("exported_count") || obj.contains_key("exported_rules_count") || obj.contains_key("exported_exception_list_count") {
            details = Some(Details { line: line_no, value: obj });
        } else if obj.contains_key("rule_id") {
            rule_lines += 1;
            pending_rules.push((line_no, raw.to_string(), obj));
        } else if obj.contains_key("entries") && obj.contains_key("item_id") {
            item_lines += 1;
            match exceptions::parse_item(&Value::Object(obj)) {
                Ok(item) => out.items.push(item),
                Err(m) => out.errors.push(RuleError::new(path, (line_no, key_col(raw, "entries")), Some("entries"), m)),
            }
        } else if obj.contains_key("list_id") && !obj.contains_key("entries") {
            list_lines += 1;
            match exceptions::parse_list(&Value::Object(obj)) {
                Ok(list) => out.lists.push(list),
                Err(m) => out.errors.push(RuleError::new(path, (line_no, 1), None, m)),
            }
        } else if ty == "action" && obj.contains_key("attributes") {
            connector_lines += 1;
        } else if ty == "index-pattern" {
            let id = obj.get("id").and_then(|v| v.as_str()).unwrap_or("").to_string();
            let title = obj.get("attributes").and_then(|a| a.get("title")).and_then(|v| v.as_str()).unwrap_or("");
            let patterns: Vec<String> = title.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            if id.is_empty() || patterns.is_empty() {
                out.errors.push(RuleError::new(path, (line_no, 1), None, "data view object without `id` or `attributes.title`"));
            } else {
                data_views.insert(id, patterns);
            }
        } else {
            out.errors.push(RuleError::new(
                path,
                (line_no, 1),
                None,
                "not a rule, exception list, exception item, action connector, data view or export details line",
            ));
        }
    }
    for (line_no, raw, obj) in pending_rules {
        match rule_from_json(path, line_no, &raw, obj, &data_views) {
            Ok(rule) => out.rules.push(rule),
            Err(e) => out.errors.push(e),
        }
    }
    let last_line = text.lines().count().max(1) as u32;
    match details {
        None => out.errors.push(RuleError::new(
            path,
            (last_line, 1),
            None,
            "no export details line (`exported_count`, …): the export is incomplete or not a Kibana rule export",
        )),
        Some(d) => check_details(path, &d, [rule_lines, list_lines, item_lines, connector_lines], &mut out.errors),
    }
    out
}

/// Compares the details line with what the file holds; every difference is an error naming the file.
fn check_details(path: &Path, d: &Details, [rules, lists, items, connectors]: [u64; 4], errors: &mut Vec<RuleError>) {
    let count = |k: &str| d.value.get(k).and_then(|v| v.as_u64());
    let mut problems = Vec::new();
    let mut expect = |key: &str, read: u64, what: &str| {
        if let Some(n) = count(key) {
            if n != read {
                problems.push(format!("`{key}` is {n} but the file holds {read} {what}"));
            }
        }
    };
    expect("exported_rules_count", rules, "rule line(s)");
    expect("exported_exception_list_count", lists, "exception list line(s)");
    expect("exported_exception_list_item_count", items, "exception item line(s)");
    expect("exported_action_connector_count", connectors, "action connector line(s)");
    expect("exported_count", rules + lists + items + connectors, "exported object line(s)");
    for (key, id_key) in [("missing_rules", "rule_id"), ("missing_exception_lists", "list_id"), ("missing_exception_list_items", "item_id")] {
        if let Some(Value::Array(missing)) = d.value.get(key) {
            if !missing.is_empty() {
                let ids: Vec<&str> = missing.iter().filter_map(|m| m.get(id_key).and_then(|v| v.as_str())).collect();
                problems.push(format!("Kibana could not export {} object(s) listed in `{key}`: {}", missing.len(), ids.join(", ")));
            }
        }
    }
    for p in problems {
        errors.push(RuleError::new(path, (d.line, 1), None, format!("export details do not match the file: {p}")));
    }
}

/// The 1-based character column where the value of top-level key `key` starts on `line` (1 if absent).
pub(crate) fn key_col(line: &str, key: &str) -> u32 {
    top_level_value_offset(line, key).map(|off| line[..off].chars().count() as u32 + 1).unwrap_or(1)
}

/// Byte offset of the value of a top-level `key` in a one-line JSON object.
fn top_level_value_offset(line: &str, key: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let (mut depth, mut i) = (0i32, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if depth == 1 && line.get(start + 1..i) == Some(key) {
                    let mut j = i + 1;
                    while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
                        j += 1;
                    }
                    if bytes.get(j) == Some(&b':') {
                        j += 1;
                        while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
                            j += 1;
                        }
                        return Some(j);
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The raw text of the JSON string whose opening quote is character `quote_col` (1-based) of `line`,
/// without the quotes (escapes kept): what query positions are mapped through.
fn json_string_literal(line: &str, quote_col: usize) -> String {
    let mut out = String::new();
    let mut chars = line.chars().skip(quote_col);
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// A rule object being consumed, with its line for error positions.
struct JsonFields<'a> {
    path: &'a Path,
    line_no: u32,
    raw: &'a str,
    obj: Map<String, Value>,
}

impl JsonFields<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> RuleError {
        RuleError::new(self.path, (self.line_no, key_col(self.raw, key)), Some(key), message)
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        match self.obj.remove(key) {
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        }
    }

    fn opt_str(&mut self, key: &str) -> Result<Option<String>, RuleError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(key, format!("`{key}` must be a string, found {}", kind(&v)))),
        }
    }

    fn req_str(&mut self, key: &str) -> Result<String, RuleError> {
        self.opt_str(key)?.ok_or_else(|| {
            RuleError::new(self.path, (self.line_no, 1), Some(key), format!("the rule object is missing `{key}`"))
        })
    }

    fn opt_int(&mut self, key: &str) -> Result<Option<i64>, RuleError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
            Some(v) => Err(self.err(key, format!("`{key}` must be an integer, found {}", kind(&v)))),
        }
    }

    fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, RuleError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(v) => Err(self.err(key, format!("`{key}` must be true or false, found {}", kind(&v)))),
        }
    }

    fn opt_str_list(&mut self, key: &str) -> Result<Option<Vec<String>>, RuleError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    other => Err(self.err(key, format!("`{key}` must be an array of strings, found {}", kind(&other)))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.err(key, format!("`{key}` must be an array of strings, found {}", kind(&v)))),
        }
    }

    fn opt_array(&mut self, key: &str) -> Result<Option<Value>, RuleError> {
        match self.take(key) {
            None => Ok(None),
            Some(v @ Value::Array(_)) => Ok(Some(v)),
            Some(v) => Err(self.err(key, format!("`{key}` must be an array, found {}", kind(&v)))),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One rule object → [`Rule`], with Kibana's defaults for absent settings.
fn rule_from_json(
    path: &Path,
    line_no: u32,
    raw: &str,
    obj: Map<String, Value>,
    data_views: &BTreeMap<String, Vec<String>>,
) -> Result<Rule, RuleError> {
    let mut f = JsonFields { path, line_no, raw, obj };
    let rule_type = f.req_str("type")?;
    let language = f.opt_str("language")?.unwrap_or_default();
    let rule_id = f.req_str("rule_id")?;
    let kibana_id = f.opt_str("id")?;
    let name = f.req_str("name")?;
    let description = f.opt_str("description")?.unwrap_or_default();
    let risk_score = f.opt_int("risk_score")?.unwrap_or(21);
    if !(0..=100).contains(&risk_score) {
        return Err(f.err("risk_score", format!("`risk_score` must be between 0 and 100, got {risk_score}")));
    }
    let severity = f.opt_str("severity")?.unwrap_or_else(|| "low".into());
    if !["low", "medium", "high", "critical"].contains(&severity.as_str()) {
        return Err(f.err("severity", format!("`severity` must be low, medium, high or critical, got `{severity}`")));
    }
    let data_view_id = f.opt_str("data_view_id")?;
    let index = match (f.opt_str_list("index")?, &data_view_id) {
        (Some(index), _) if !index.is_empty() => index,
        (_, Some(dv)) => match data_views.get(dv) {
            Some(patterns) => patterns.clone(),
            None => Vec::new(),
        },
        _ => Vec::new(),
    };
    let query_col = key_col(raw, "query");
    let query = f.opt_str("query")?.unwrap_or_default();
    let from = f.opt_str("from")?.unwrap_or_else(|| DEFAULT_FROM.to_string());
    let to = f.opt_str("to")?.unwrap_or_else(|| DEFAULT_TO.to_string());
    let interval = f.opt_str("interval")?.unwrap_or_else(|| DEFAULT_INTERVAL.to_string());
    let max_signals = f.opt_int("max_signals")?;
    let enabled = f.opt_bool("enabled")?;
    let exceptions_list = f.opt_array("exceptions_list")?.unwrap_or_else(|| json!([]));
    let alert_suppression = f.take("alert_suppression");
    let is_eql = super::runs_type(&rule_type, &language);
    // Settings are only checked for rules that can run; other types are skipped with their type.
    let (lookback, interval_duration, max_signals) = if is_eql {
        if index.is_empty() {
            let msg = match &data_view_id {
                Some(dv) => format!(
                    "the rule reads data view `{dv}`, which esdetect cannot resolve without Kibana: add `\"index\": [...]` \
                     with the data view's index patterns, or append the data view's saved object \
                     (`{{\"type\":\"index-pattern\",\"id\":\"{dv}\",\"attributes\":{{\"title\":\"logs-*,…\"}}}}`) to the export"
                ),
                None => "`index` is empty and there is no `data_view_id`: list the index patterns the rule reads".into(),
            };
            return Err(f.err(if data_view_id.is_some() { "data_view_id" } else { "index" }, msg));
        }
        for pattern in &index {
            if let Err(m) = super::index_pattern::check(pattern) {
                return Err(f.err(if data_view_id.is_some() { "data_view_id" } else { "index" }, format!("invalid `index`: {m}")));
            }
        }
        if query.trim().is_empty() && rule_type == "eql" {
            return Err(f.err("query", "`query` is empty"));
        }
        let lookback = parse_now_minus(&from).map_err(|m| f.err("from", format!("invalid `from`: {m}")))?;
        if to.trim() != "now" {
            return Err(f.err("to", format!("`to = \"{to}\"` is not supported: esdetect windows always end at \"now\"")));
        }
        let interval_duration = parse_interval(&interval).map_err(|m| f.err("interval", format!("invalid `interval`: {m}")))?;
        if interval_duration <= Duration::zero() {
            return Err(f.err("interval", "`interval` must be longer than 0"));
        }
        let max_signals = match max_signals {
            None => DEFAULT_MAX_SIGNALS,
            Some(n) if n >= 1 && n <= u32::MAX as i64 => n as u32,
            Some(n) => return Err(f.err("max_signals", format!("`max_signals` must be at least 1, got {n}"))),
        };
        (lookback, interval_duration, max_signals)
    } else {
        let lookback = parse_now_minus(&from).unwrap_or(Duration::minutes(6));
        let interval_duration = parse_interval(&interval).unwrap_or(Duration::minutes(5));
        (lookback, interval_duration, max_signals.map(|n| n.clamp(1, u32::MAX as i64) as u32).unwrap_or(DEFAULT_MAX_SIGNALS))
    };
    let rule = Rule {
        path: path.to_path_buf(),
        timestamp_override: f.opt_str("timestamp_override")?,
        timestamp_override_fallback_disabled: f.opt_bool("timestamp_override_fallback_disabled")?,
        timestamp_field: f.opt_str("timestamp_field")?,
        tiebreaker_field: f.opt_str("tiebreaker_field")?,
        event_category_override: f.opt_str("event_category_override")?,
        threat: f.opt_array("threat")?.unwrap_or_else(|| json!([])),
        tags: f.opt_str_list("tags")?.unwrap_or_default(),
        author: f.opt_str_list("author")?.unwrap_or_default(),
        license: f.opt_str("license")?,
        references: f.opt_str_list("references")?.unwrap_or_default(),
        false_positives: f.opt_str_list("false_positives")?.unwrap_or_default(),
        note: f.opt_str("note")?,
        setup: f.opt_str("setup")?.filter(|s| !s.is_empty()),
        version: f.opt_int("version")?,
        building_block_type: f.opt_str("building_block_type")?,
        rule_name_override: f.opt_str("rule_name_override")?,
        namespace: f.opt_str("namespace")?,
        timeline_id: f.opt_str("timeline_id")?,
        timeline_title: f.opt_str("timeline_title")?,
        filters: f.opt_array("filters")?,
        risk_score_mapping: f.opt_array("risk_score_mapping")?.unwrap_or_else(|| json!([])),
        severity_mapping: f.opt_array("severity_mapping")?.unwrap_or_else(|| json!([])),
        related_integrations: f.opt_array("related_integrations")?,
        required_fields: f.opt_array("required_fields")?,
        investigation_fields: f.take("investigation_fields"),
        metadata: json!({}),
        extra: toml::Table::new(),
        file_extra: toml::Table::new(),
        query_origin: (line_no, query_col + 1),
        query_json: Some(json_string_literal(raw, query_col as usize)),
        rule_id,
        name,
        description,
        risk_score,
        severity,
        index,
        language,
        rule_type,
        query,
        from,
        lookback,
        to,
        interval,
        interval_duration,
        max_signals,
        kibana_id,
        enabled,
        exceptions_list,
        alert_suppression,
        data_view_id,
        export_extra: std::mem::take(&mut f.obj),
    };
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> String {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kibana_export/rules_export.ndjson");
        std::fs::read_to_string(p).unwrap()
    }

    /// A minimal EQL rule line (compact JSON, as Kibana writes it) with `extra` fields merged in.
    fn rule_line(extra: Value) -> String {
        let mut r = json!({"id": "11111111-2222-4333-8444-555555555555", "rule_id": "r1", "name": "N", "description": "D",
            "risk_score": 21, "severity": "low", "type": "eql", "language": "eql", "index": ["logs-*"],
            "query": "any where true", "enabled": true});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                r.as_object_mut().unwrap().remove(k);
            } else {
                r[k] = v.clone();
            }
        }
        serde_json::to_string(&r).unwrap()
    }

    fn details(rules: u64) -> String {
        format!(r#"{{"exported_count":{rules},"exported_rules_count":{rules},"missing_rules":[],"missing_rules_count":0}}"#)
    }

    #[test]
    fn key_col_finds_top_level_keys_only() {
        let line = r#"{"a":{"query":"x"},"query": "sequence","b":"\"query\":"}"#;
        assert_eq!(key_col(line, "query"), 29);
        assert_eq!(key_col(line, "missing"), 1);
    }

    #[test]
    fn the_export_fixture_reads_completely() {
        let f = parse_export(Path::new("rules_export.ndjson"), &fixture());
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(f.rules.len(), 2);
        assert_eq!(f.lists.len(), 1);
        assert_eq!(f.items.len(), 2);
        let smb = &f.rules[0];
        assert_eq!(smb.rule_id, "d84a11c0-eb12-4e7d-8a0a-718e38351e29");
        assert_eq!(smb.kibana_id.as_deref(), Some("5d0c1e1a-2b7f-4a39-8c4e-6f1b9d2a7e10"));
        assert_eq!(smb.enabled, Some(true));
        assert_eq!(smb.timestamp_override.as_deref(), Some("event.ingested"));
        assert_eq!(smb.lookback, Duration::minutes(9));
        assert_eq!(smb.exceptions_list[0]["list_id"], "esdetect-lab-exceptions");
        assert_eq!(smb.version, Some(1));
        assert_eq!(smb.threat.as_array().map(Vec::len), Some(2));
        assert!(f.rules[1].is_sequence());
        assert_eq!(f.items[0].os_types, ["windows"]);
    }

    #[test]
    fn details_are_checked_against_the_lines() {
        let text = fixture();
        // Drop the second exception item: the details line still counts it.
        let lines: Vec<&str> = text.lines().collect();
        let cut = [&lines[..4], &lines[5..]].concat().join("\n");
        let f = parse_export(Path::new("x.ndjson"), &cut);
        let msgs: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
        assert!(msgs.iter().any(|m| m.starts_with("x.ndjson:5:1: ") && m.contains("`exported_exception_list_item_count` is 2 but the file holds 1")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("`exported_count` is 5 but the file holds 4")), "{msgs:?}");
        // No details line at all.
        let f = parse_export(Path::new("x.ndjson"), &lines[..5].join("\n"));
        assert!(f.errors.iter().any(|e| e.message.contains("no export details line")), "{:?}", f.errors);
        // Missing rules reported by Kibana.
        let missing = format!("{}\n{}", rule_line(json!({})), r#"{"exported_count":1,"exported_rules_count":1,"missing_rules":[{"rule_id":"gone-1"}],"missing_rules_count":1}"#);
        let f = parse_export(Path::new("x.ndjson"), &missing);
        assert!(f.errors.iter().any(|e| e.message.contains("gone-1")), "{:?}", f.errors);
    }

    #[test]
    fn bad_lines_name_line_and_column() {
        let bad_type = rule_line(json!({"max_signals": "100"}));
        let text = format!("{}\n{bad_type}\nnot json\n{}", rule_line(json!({"rule_id": "ok"})), details(2));
        let f = parse_export(Path::new("e.ndjson"), &text);
        let col = bad_type.find("\"100\"").unwrap() + 1;
        let msgs: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
        assert!(msgs.contains(&format!("e.ndjson:2:{col}: `max_signals` must be an integer, found a string")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.starts_with("e.ndjson:3:") && m.contains("invalid JSON")), "{msgs:?}");
        assert_eq!(f.rules.len(), 1);
    }

    #[test]
    fn query_errors_point_into_the_json_line() {
        // Line 2 of the query, after JSON escapes `\n` and `\"` on the line.
        let line = rule_line(json!({"query": "sequence\n  [process where name == \"a\"]\n  [any where x = 1]"}));
        let f = parse_export(Path::new("q.ndjson"), &format!("{line}\n{}", details(1)));
        let rule = &f.rules[0];
        let err = crate::eql::parse(&rule.query).unwrap_err();
        let mapped = rule.query_error(err.span.line, err.span.col, err.message);
        let want = line.find("x = 1").unwrap() + "x ".len() + 1;
        assert_eq!((mapped.line, mapped.col), (1, want as u32), "{mapped}");
    }

    #[test]
    fn data_views_need_index_or_a_data_view_line() {
        let dv = rule_line(json!({"index": null, "data_view_id": "security-solution-default"}));
        let f = parse_export(Path::new("d.ndjson"), &format!("{dv}\n{}", details(1)));
        let e = &f.errors[0];
        assert_eq!((e.line, e.col), (1, dv.find("\"security-solution-default\"").unwrap() as u32 + 1));
        assert!(e.message.contains("cannot resolve"), "{e}");
        let view = r#"{"type":"index-pattern","id":"security-solution-default","attributes":{"title":"logs-*, winlogbeat-*"}}"#;
        let f = parse_export(Path::new("d.ndjson"), &format!("{dv}\n{view}\n{}", details(1)));
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(f.rules[0].index, ["logs-*", "winlogbeat-*"]);
    }

    #[test]
    fn an_exception_list_export_reads_without_rules() {
        let text = fixture();
        let lines: Vec<&str> = text.lines().collect();
        let details = r#"{"exported_exception_list_count":1,"exported_exception_list_item_count":2,"missing_exception_list_item_count":0,"missing_exception_list_items":[],"missing_exception_lists":[],"missing_exception_lists_count":0}"#;
        let f = parse_export(Path::new("l.ndjson"), &[lines[2], lines[3], lines[4], details].join("\n"));
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!((f.rules.len(), f.lists.len(), f.items.len()), (0, 1, 2));
        let f = parse_export(Path::new("l.ndjson"), &[lines[2], lines[3], details].join("\n"));
        assert!(f.errors[0].message.contains("`exported_exception_list_item_count` is 2 but the file holds 1"), "{:?}", f.errors);
    }

    #[test]
    fn other_rule_types_are_read_not_checked() {
        let q = rule_line(json!({"type": "machine_learning", "language": null, "query": null, "index": null, "to": "now-1m"}));
        let f = parse_export(Path::new("t.ndjson"), &format!("{q}\n{}", details(1)));
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(f.rules[0].rule_type, "machine_learning");
    }
}
