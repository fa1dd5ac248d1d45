//! Reads Elastic detection-rules TOML files into [`Rule`]: everything Kibana needs to build the EQL
//! request and the alert documents, with Kibana's defaults filled in. [`kibana`] reads Kibana export
//! NDJSON into the same [`Rule`]; [`folder`] walks a rules path (plain folder, custom-rules layout).
//!
//! Errors point into the file (`file:line:col: message`): TOML syntax errors at the offending character,
//! a missing field at the `[rule]` header, a mistyped or invalid field at its value. The EQL query itself
//! is parsed elsewhere (`crate::eql`); [`Rule::query_position`] and [`map_query_error`] turn an error
//! position inside the query text into a position in the file.
//!
//! Defaults are Kibana's (not detection-rules'): `from = "now-6m"`, `to = "now"`, `interval = "5m"`,
//! `max_signals = 100` (alert-documents spec §11, §14.1).

mod duration;
mod error;
pub mod folder;
pub mod kibana;
pub mod index_pattern;

pub use duration::{parse_interval, parse_now_minus};
pub use error::{line_col, RuleError, RuleErrorKind};

use chrono::Duration;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Kibana's default look-back when a rule has no `from`.
pub const DEFAULT_FROM: &str = "now-6m";
pub const DEFAULT_TO: &str = "now";
/// Kibana's default schedule when a rule has no `interval`.
pub const DEFAULT_INTERVAL: &str = "5m";
/// Kibana's `DEFAULT_MAX_SIGNALS`.
pub const DEFAULT_MAX_SIGNALS: u32 = 100;

/// One detection rule as Kibana would hold it after installing the TOML.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The file it was read from.
    pub path: PathBuf,
    pub rule_id: String,
    pub name: String,
    pub description: String,
    /// 0–100.
    pub risk_score: i64,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// Index patterns queried.
    pub index: Vec<String>,
    pub language: String,
    /// The `type` field (`eql`; a Kibana export may also hold `query`, `threshold`, …, which are skipped).
    pub rule_type: String,
    /// The EQL query text exactly as in the file (TOML string value).
    pub query: String,
    /// Where the query text's first character sits in the file (1-based line, character column).
    pub query_origin: (u32, u32),
    /// Date math, e.g. `now-9m`.
    pub from: String,
    /// How far before the run time the window starts (`now-9m` → 9 minutes).
    pub lookback: Duration,
    pub to: String,
    /// Schedule, e.g. `5m`.
    pub interval: String,
    pub interval_duration: Duration,
    pub max_signals: u32,
    pub timestamp_override: Option<String>,
    pub timestamp_override_fallback_disabled: Option<bool>,
    /// EQL `timestamp_field` (omitted → Elasticsearch's `@timestamp`).
    pub timestamp_field: Option<String>,
    pub tiebreaker_field: Option<String>,
    pub event_category_override: Option<String>,
    /// MITRE mapping, a JSON array in Kibana's shape
    /// `{framework, tactic{id,name,reference}, technique[{id,name,reference,subtechnique[…]}]}`.
    pub threat: Value,
    pub tags: Vec<String>,
    pub author: Vec<String>,
    pub license: Option<String>,
    pub references: Vec<String>,
    pub false_positives: Vec<String>,
    pub note: Option<String>,
    pub setup: Option<String>,
    /// Rule content version; detection-rules keeps it outside the TOML, so usually `None` here.
    pub version: Option<i64>,
    pub building_block_type: Option<String>,
    pub rule_name_override: Option<String>,
    pub namespace: Option<String>,
    pub timeline_id: Option<String>,
    pub timeline_title: Option<String>,
    /// Query DSL filters (JSON array), rarely used by prebuilt rules.
    pub filters: Option<Value>,
    /// JSON array (`[]` when absent).
    pub risk_score_mapping: Value,
    /// JSON array (`[]` when absent).
    pub severity_mapping: Value,
    pub related_integrations: Option<Value>,
    pub required_fields: Option<Value>,
    /// `{field_names: [...]}` as in the file.
    pub investigation_fields: Option<Value>,
    /// The `[metadata]` table (creation/updated dates, integration, maturity), `{}` if absent.
    pub metadata: Value,
    /// Unknown `[rule]` keys, kept verbatim (not an error: newer detection-rules add fields).
    pub extra: toml::Table,
    /// Top-level tables other than `[metadata]` and `[rule]` (e.g. `[transform]`), kept verbatim.
    pub file_extra: toml::Table,
    /// Rules from a Kibana export: the raw JSON text of the line from just after the query's opening
    /// quote, so positions inside the (unescaped) query map back to columns of the line.
    pub query_json: Option<String>,
    /// Kibana's rule saved-object id (`id` in an export): the `kibana.alert.rule.uuid` Kibana uses.
    pub kibana_id: Option<String>,
    /// `enabled` as the rule source states it (Kibana exports); `None` for detection-rules files.
    pub enabled: Option<bool>,
    /// `exceptions_list`: references `[{id, list_id, namespace_type, type}]` to exception lists (`[]` if none).
    pub exceptions_list: Value,
    /// `alert_suppression` as written (not applied yet: a warning says so).
    pub alert_suppression: Option<Value>,
    /// `data_view_id`; `index` must then still be known (from the rule or a data view in the export).
    pub data_view_id: Option<String>,
    /// Kibana export: the keys of the rule object not read into fields above (`created_at`, `updated_by`,
    /// `revision`, `immutable`, `meta`, …), verbatim. Empty for TOML rules.
    pub export_extra: Map<String, Value>,
}

/// The namespace of esdetect's default rule uuids: UUIDv5(NAMESPACE_URL,
/// `"https://github.com/esdetect/esdetect/rule"`). Fixed forever: changing it changes every alert id.
pub fn rule_uuid_namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://github.com/esdetect/esdetect/rule")
}

impl Rule {
    /// esdetect's own stable rule uuid when the configuration gives none: UUIDv5 over
    /// [`rule_uuid_namespace`] of `rule_id`. Deliberately *not* Kibana's saved-object id, so alerts
    /// written beside Kibana's never collide with them (spec §2, mode B).
    pub fn default_uuid(&self) -> Uuid {
        Uuid::new_v5(&rule_uuid_namespace(), self.rule_id.as_bytes())
    }

    /// Position in the file of the query text's first character (see [`query_position_in_file`]).
    pub fn query_position(&self) -> (u32, u32) {
        self.query_origin
    }

    /// Converts a query parse error (1-based line/col relative to [`Rule::query`]) to a file error.
    pub fn query_error(&self, err_line: u32, err_col: u32, message: impl Into<String>) -> RuleError {
        match &self.query_json {
            // JSON escapes (`\n`, `\"`) make the line longer than the query: walk them.
            Some(raw) => {
                let col = self.query_origin.1 + json_escaped_offset(raw, err_line, err_col);
                RuleError::new(&self.path, (self.query_origin.0, col), Some("query"), message)
            }
            None => map_query_error(&self.path, self.query_origin, err_line, err_col, message),
        }
    }

    /// Maturity from the detection-rules `[metadata]` table (`production`, `development`, `deprecated`).
    pub fn maturity(&self) -> Option<&str> {
        self.metadata.get("maturity").and_then(|m| m.as_str())
    }

    /// Whether the EQL query is a sequence (its first word is `sequence`), which decides whether
    /// results become event alerts or building blocks + shell.
    pub fn is_sequence(&self) -> bool {
        self.query.trim_start().starts_with("sequence")
    }
}

/// Whether esdetect runs rules of this `type` and `language`: EQL rules, and custom query, threshold and
/// new terms rules in KQL (`kuery`) or Lucene.
pub fn runs_type(rule_type: &str, language: &str) -> bool {
    matches!((rule_type, language), ("eql", "eql") | ("query" | "threshold" | "new_terms", "kuery" | "lucene"))
}

/// Why a rule of a type esdetect does not run is skipped (for `validate` and the run's skip list).
pub fn unsupported_reason(rule_type: &str) -> &'static str {
    match rule_type {
        "esql" => "is not run: ES|QL rules need Elasticsearch's ES|QL engine and Kibana's ES|QL rule executor",
        "machine_learning" => "is not run: machine learning rules read the results of Kibana's ML anomaly jobs",
        "threat_match" => "is not run: indicator match rules are not supported yet",
        _ => "is not run: esdetect runs EQL, custom query, threshold and new terms rules (KQL, Lucene)",
    }
}

/// Position (1-based line, character column) of the first character of the query text in its file.
pub fn query_position_in_file(rule: &Rule) -> (u32, u32) {
    rule.query_origin
}

/// Character offset inside a JSON string literal's raw text (starting after its opening quote) of the
/// decoded character at 1-based (`line`, `col`): each escape counts as its raw length.
fn json_escaped_offset(raw: &str, line: u32, col: u32) -> u32 {
    let (mut cur_line, mut cur_col, mut offset) = (1u32, 1u32, 0u32);
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if (cur_line, cur_col) >= (line, col.max(1)) || c == '"' {
            break;
        }
        let (decoded, width) = if c == '\\' {
            match chars.next() {
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    (u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).unwrap_or('?'), 6)
                }
                Some('n') => ('\n', 2),
                Some(other) => (other, 2),
                None => break,
            }
        } else {
            (c, 1)
        };
        offset += width;
        if decoded == '\n' {
            cur_line += 1;
            cur_col = 1;
        } else {
            cur_col += 1;
        }
    }
    offset
}

/// Turns an error position relative to the query text into one in the rule file. Exact for literal
/// strings (`'''…'''`, what detection-rules uses); inside basic strings (`"""…"""`) escape sequences
/// can shift the column on their line.
pub fn map_query_error(
    rule_path: &Path,
    query_origin: (u32, u32),
    err_line: u32,
    err_col: u32,
    message: impl Into<String>,
) -> RuleError {
    let (line, col) = if err_line <= 1 {
        (query_origin.0, query_origin.1 + err_col.max(1) - 1)
    } else {
        (query_origin.0 + err_line - 1, err_col.max(1))
    };
    RuleError::new(rule_path, (line, col), Some("query"), message)
}

/// Loads one rule file. Non-EQL rules give an error of kind [`RuleErrorKind::Unsupported`].
pub fn load_file(path: impl AsRef<Path>) -> Result<Rule, RuleError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| {
        RuleError::new(path, (1, 1), None, format!("cannot read rule file: {e}"))
    })?;
    parse_rule(path, &text)
}

/// Loads every `*.toml` below `dir` (recursively, sorted by path). Returns the loaded rules and one
/// error per file that was not loaded (invalid, or skipped because it is not an EQL rule).
pub fn load_dir(dir: impl AsRef<Path>) -> (Vec<Rule>, Vec<RuleError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    collect_toml(dir.as_ref(), &mut files, &mut errors);
    files.sort();
    let mut rules = Vec::new();
    for f in files {
        match load_file(&f) {
            Ok(r) => rules.push(r),
            Err(e) => errors.push(e),
        }
    }
    (rules, errors)
}

fn collect_toml(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<RuleError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(RuleError::new(dir, (1, 1), None, format!("cannot read rules directory: {e}")));
            return;
        }
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            collect_toml(&p, files, errors);
        } else if p.extension().is_some_and(|e| e == "toml") {
            files.push(p);
        }
    }
}

/// The values of a parsed TOML table (what `toml::from_str` gives for the same text).
fn toml_table(table: &toml_edit::Table) -> toml::Table {
    table.iter().filter_map(|(k, item)| Some((k.to_string(), toml_item(item)?))).collect()
}

fn toml_item(item: &toml_edit::Item) -> Option<toml::Value> {
    match item {
        toml_edit::Item::None => None,
        toml_edit::Item::Value(v) => Some(toml_value(v)),
        toml_edit::Item::Table(t) => Some(toml::Value::Table(toml_table(t))),
        toml_edit::Item::ArrayOfTables(a) => Some(toml::Value::Array(a.iter().map(|t| toml::Value::Table(toml_table(t))).collect())),
    }
}

fn toml_value(v: &toml_edit::Value) -> toml::Value {
    use toml_edit::Value as V;
    match v {
        V::String(s) => toml::Value::String(s.value().clone()),
        V::Integer(i) => toml::Value::Integer(*i.value()),
        V::Float(f) => toml::Value::Float(*f.value()),
        V::Boolean(b) => toml::Value::Boolean(*b.value()),
        V::Datetime(d) => toml::Value::Datetime(*d.value()),
        V::Array(a) => toml::Value::Array(a.iter().map(toml_value).collect()),
        V::InlineTable(t) => toml::Value::Table(t.iter().map(|(k, v)| (k.to_string(), toml_value(v))).collect()),
    }
}

/// Parses rule text (`path` is only used in errors and kept in the rule).
pub fn parse_rule(path: &Path, text: &str) -> Result<Rule, RuleError> {
    // Parsed once: the document keeps the byte spans of every item (for errors) and the values are read
    // from it. Parsing the text again for the values dominated loading 1,000 rules.
    let spans = toml_edit::ImDocument::parse(text).map_err(|e| {
        let pos = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        RuleError::new(path, pos, None, format!("invalid TOML: {}", e.message()))
    })?;
    let mut doc = toml_table(spans.as_table());
    let empty = toml_edit::Table::new();
    let rule_item = spans.as_table().get("rule");
    let rule_spans = rule_item.and_then(|i| i.as_table()).unwrap_or(&empty);
    let header = rule_item
        .and_then(|i| i.span())
        .map(|s| line_col(text, s.start))
        .unwrap_or((1, 1));

    let metadata = match doc.remove("metadata") {
        Some(v @ toml::Value::Table(_)) => toml_to_json(&v),
        None => json!({}),
        Some(_) => {
            let pos = span_pos(text, spans.as_table().get("metadata")).unwrap_or((1, 1));
            return Err(RuleError::new(path, pos, Some("metadata"), "`metadata` must be a table"));
        }
    };
    let table = match doc.remove("rule") {
        Some(toml::Value::Table(t)) => t,
        None => {
            return Err(RuleError::new(
                path,
                (1, 1),
                Some("rule"),
                "no [rule] table: this is not a detection-rules rule file",
            ))
        }
        Some(_) => return Err(RuleError::new(path, header, Some("rule"), "`rule` must be a table")),
    };
    let mut f = Fields { path, text, table, spans: rule_spans, header };

    let language = f.opt_str("language")?;
    let rule_type = f.req_str("type")?;
    let language = language.unwrap_or_default();
    if !runs_type(&rule_type, &language) {
        let pos = f.pos("type");
        return Err(RuleError::new(
            path,
            pos,
            Some("type"),
            format!("skipped: rule type `{rule_type}` (language `{language}`) {}", unsupported_reason(&rule_type)),
        )
        .unsupported());
    }

    let rule_id = f.req_str("rule_id")?;
    let name = f.req_str("name")?;
    let description = f.req_str("description")?;
    let risk_score = f.req_int("risk_score")?;
    if !(0..=100).contains(&risk_score) {
        return Err(f.err("risk_score", format!("`risk_score` must be between 0 and 100, got {risk_score}")));
    }
    let severity = f.req_str("severity")?;
    if !["low", "medium", "high", "critical"].contains(&severity.as_str()) {
        return Err(f.err("severity", format!("`severity` must be low, medium, high or critical, got `{severity}`")));
    }
    let data_view_id = f.opt_str("data_view_id")?;
    let index = match (f.opt_str_list("index")?, &data_view_id) {
        (Some(index), _) if !index.is_empty() => index,
        (_, Some(dv)) => {
            return Err(f.err(
                "data_view_id",
                format!("the rule reads data view `{dv}`, which esdetect cannot resolve without Kibana: add `index = [...]` with the data view's index patterns"),
            ))
        }
        (Some(_), None) => return Err(f.err("index", "`index` is empty: list the index patterns the rule reads")),
        (None, None) => return Err(f.missing("index")),
    };
    for (i, pattern) in index.iter().enumerate() {
        if let Err(m) = index_pattern::check(pattern) {
            let pos = f.element_pos("index", i);
            return Err(RuleError::new(path, pos, Some("index"), format!("invalid `index`: {m}")));
        }
    }
    let query_origin = f.query_origin();
    let query = f.req_str("query")?;

    let from = f.opt_str("from")?.unwrap_or_else(|| DEFAULT_FROM.to_string());
    let lookback = parse_now_minus(&from).map_err(|m| f.err("from", format!("invalid `from`: {m}")))?;
    let to = f.opt_str("to")?.unwrap_or_else(|| DEFAULT_TO.to_string());
    if to.trim() != "now" {
        return Err(f.err("to", format!("`to = \"{to}\"` is not supported: esdetect windows always end at \"now\"")));
    }
    let interval = f.opt_str("interval")?.unwrap_or_else(|| DEFAULT_INTERVAL.to_string());
    let interval_duration =
        parse_interval(&interval).map_err(|m| f.err("interval", format!("invalid `interval`: {m}")))?;
    if interval_duration <= Duration::zero() {
        return Err(f.err("interval", "`interval` must be longer than 0"));
    }
    let max_signals = match f.opt_int("max_signals")? {
        None => DEFAULT_MAX_SIGNALS,
        Some(n) if n >= 1 && n <= u32::MAX as i64 => n as u32,
        Some(n) => return Err(f.err("max_signals", format!("`max_signals` must be at least 1, got {n}"))),
    };

    let threat = match f.take("threat") {
        None => json!([]),
        Some(toml::Value::Array(items)) => {
            let mut out = Vec::new();
            for item in &items {
                match item {
                    toml::Value::Table(t) => out.push(threat_to_json(t)),
                    _ => return Err(f.err("threat", "each `[[rule.threat]]` entry must be a table")),
                }
            }
            Value::Array(out)
        }
        Some(_) => return Err(f.err("threat", "`threat` must be an array of tables ([[rule.threat]])")),
    };

    let rule = Rule {
        path: path.to_path_buf(),
        timestamp_override: f.opt_str("timestamp_override")?,
        timestamp_override_fallback_disabled: f.opt_bool("timestamp_override_fallback_disabled")?,
        timestamp_field: f.opt_str("timestamp_field")?,
        tiebreaker_field: f.opt_str("tiebreaker_field")?,
        event_category_override: f.opt_str("event_category_override")?,
        tags: f.str_list("tags")?,
        author: f.str_list("author")?,
        license: f.opt_str("license")?,
        references: f.str_list("references")?,
        false_positives: f.str_list("false_positives")?,
        note: f.opt_str("note")?,
        setup: f.opt_str("setup")?,
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
        investigation_fields: f.take("investigation_fields").map(|v| toml_to_json(&v)),
        exceptions_list: f.opt_array("exceptions_list")?.unwrap_or_else(|| json!([])),
        alert_suppression: f.take("alert_suppression").map(|v| toml_to_json(&v)),
        data_view_id,
        query_json: None,
        kibana_id: None,
        enabled: None,
        export_extra: Map::new(),
        rule_id,
        name,
        description,
        risk_score,
        severity,
        index,
        language,
        rule_type,
        query,
        query_origin,
        from,
        lookback,
        to,
        interval,
        interval_duration,
        max_signals,
        threat,
        metadata,
        extra: std::mem::take(&mut f.table),
        file_extra: doc,
    };
    Ok(rule)
}

/// The `[rule]` table being consumed: fields are removed as they are read, so what is left is `extra`.
struct Fields<'a> {
    path: &'a Path,
    text: &'a str,
    table: toml::Table,
    spans: &'a toml_edit::Table,
    header: (u32, u32),
}

fn span_pos(text: &str, item: Option<&toml_edit::Item>) -> Option<(u32, u32)> {
    item.and_then(|i| i.span()).map(|s| line_col(text, s.start))
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

impl Fields<'_> {
    /// Position of a field's value, or of the `[rule]` header when the field is absent.
    fn pos(&self, key: &str) -> (u32, u32) {
        span_pos(self.text, self.spans.get(key)).unwrap_or(self.header)
    }

    /// Position of element `i` of an array field (the field's value when it cannot be found).
    fn element_pos(&self, key: &str, i: usize) -> (u32, u32) {
        let element = self.spans.get(key).and_then(|item| item.as_array()).and_then(|a| a.get(i)).and_then(|v| v.span());
        element.map(|s| line_col(self.text, s.start)).unwrap_or_else(|| self.pos(key))
    }

    fn err(&self, key: &str, message: impl Into<String>) -> RuleError {
        RuleError::new(self.path, self.pos(key), Some(key), message)
    }

    fn missing(&self, key: &str) -> RuleError {
        RuleError::new(self.path, self.header, Some(key), format!("[rule] is missing the required field `{key}`"))
    }

    fn wrong(&self, key: &str, want: &str, got: &toml::Value) -> RuleError {
        self.err(key, format!("`{key}` must be {want}, found {}", type_name(got)))
    }

    fn take(&mut self, key: &str) -> Option<toml::Value> {
        self.table.remove(key)
    }

    fn opt_str(&mut self, key: &str) -> Result<Option<String>, RuleError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "a string", &v)),
        }
    }

    fn req_str(&mut self, key: &str) -> Result<String, RuleError> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_int(&mut self, key: &str) -> Result<Option<i64>, RuleError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) => Ok(Some(n)),
            Some(v) => Err(self.wrong(key, "an integer", &v)),
        }
    }

    fn req_int(&mut self, key: &str) -> Result<i64, RuleError> {
        self.opt_int(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, RuleError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(b)),
            Some(v) => Err(self.wrong(key, "true or false", &v)),
        }
    }

    fn opt_str_list(&mut self, key: &str) -> Result<Option<Vec<String>>, RuleError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        toml::Value::String(s) => out.push(s),
                        other => return Err(self.wrong(key, "an array of strings", &other)),
                    }
                }
                Ok(Some(out))
            }
            Some(v) => Err(self.wrong(key, "an array of strings", &v)),
        }
    }

    fn str_list(&mut self, key: &str) -> Result<Vec<String>, RuleError> {
        Ok(self.opt_str_list(key)?.unwrap_or_default())
    }


    fn opt_array(&mut self, key: &str) -> Result<Option<Value>, RuleError> {
        match self.take(key) {
            None => Ok(None),
            Some(v @ toml::Value::Array(_)) => Ok(Some(toml_to_json(&v))),
            Some(v) => Err(self.wrong(key, "an array", &v)),
        }
    }

    /// Where the query's content starts: after the opening quotes and, for multi-line strings, after
    /// the newline that TOML trims right after them.
    fn query_origin(&self) -> (u32, u32) {
        let Some(span) = self.spans.get("query").and_then(|i| i.span()) else {
            return self.header;
        };
        let raw = self.text.get(span.start..).unwrap_or("");
        let (open, multiline) = if raw.starts_with("'''") || raw.starts_with("\"\"\"") { (3, true) } else { (1, false) };
        let mut off = span.start + open;
        if multiline {
            let rest = self.text.get(off..).unwrap_or("");
            if rest.starts_with("\r\n") {
                off += 2;
            } else if rest.starts_with('\n') {
                off += 1;
            }
        }
        line_col(self.text, off)
    }
}

/// TOML → JSON (datetimes become their TOML text).
pub fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(n) => json!(n),
        toml::Value::Float(x) => serde_json::Number::from_f64(*x).map(Value::Number).unwrap_or(Value::Null),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}

/// One `[[rule.threat]]` block in Kibana's key order: framework, tactic, technique (each technique:
/// id, name, reference, subtechnique). Unknown keys are kept after the known ones.
fn threat_to_json(t: &toml::Table) -> Value {
    fn ordered(t: &toml::Table, order: &[&str], nested: &dyn Fn(&str, &toml::Value) -> Option<Value>) -> Value {
        let mut out = Map::new();
        for k in order {
            if let Some(v) = t.get(*k) {
                out.insert(k.to_string(), nested(k, v).unwrap_or_else(|| toml_to_json(v)));
            }
        }
        for (k, v) in t {
            if !order.contains(&k.as_str()) {
                out.insert(k.clone(), toml_to_json(v));
            }
        }
        Value::Object(out)
    }
    fn leaf(_: &str, _: &toml::Value) -> Option<Value> {
        None
    }
    fn list_of(v: &toml::Value, f: &dyn Fn(&toml::Table) -> Value) -> Option<Value> {
        match v {
            toml::Value::Array(items) => Some(Value::Array(
                items
                    .iter()
                    .map(|i| match i {
                        toml::Value::Table(t) => f(t),
                        other => toml_to_json(other),
                    })
                    .collect(),
            )),
            _ => None,
        }
    }
    let ref_order = ["id", "name", "reference"];
    let sub = |t: &toml::Table| ordered(t, &ref_order, &leaf);
    let technique = |t: &toml::Table| {
        ordered(t, &["id", "name", "reference", "subtechnique"], &|k, v| {
            if k == "subtechnique" { list_of(v, &sub) } else { None }
        })
    };
    ordered(t, &["framework", "tactic", "technique"], &|k, v| match (k, v) {
        ("tactic", toml::Value::Table(tt)) => Some(ordered(tt, &ref_order, &leaf)),
        ("technique", _) => list_of(v, &technique),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
