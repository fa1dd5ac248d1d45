//! From rule files and configuration to rules ready to run: parsed queries, esdetect settings resolved,
//! exception lists attached, and every rule that will not run listed with the reason.
//!
//! A rule runs when it is an EQL rule, enabled (esdetect's config wins over the rule source), not
//! deprecated (unless the config asks for deprecated rules), and every exception list it references was
//! found — exceptions are never dropped silently.

use crate::config::{Config, SequenceMode};
use crate::eql::ast::Query;
use crate::eql::plan::{Position, QueryOptions};
use crate::exceptions::RuleExceptions;
use crate::rules::folder::{load_path, RuleSet};
use crate::rules::{Rule, RuleError};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A rule with its parsed query and the settings that decide alert ids and destination.
#[derive(Debug, Clone)]
pub struct PreparedRule {
    pub rule: Rule,
    pub query: Query,
    /// `kibana.alert.rule.uuid`: the configured uuid, else Kibana's saved-object id from an export, else a
    /// UUIDv5 of the rule_id.
    pub rule_uuid: String,
    pub space: String,
    /// Alerts alias this rule writes to.
    pub alias: String,
    pub enabled: bool,
    pub sequence_mode: SequenceMode,
    /// Exception items of the rule's `exceptions_list`; a run applies those unexpired at its window end
    /// (`RuleExceptions::active_at`).
    pub exceptions: RuleExceptions,
    /// EQL or custom query rule (for a query rule, `query` above is a placeholder).
    pub kind: super::query_rule::RuleKind,
}

impl PreparedRule {
    /// Copies the rule object's audit fields of a Kibana export (`created_at`/`_by`, `updated_at`/`_by`,
    /// `revision`, `immutable`) into an alert context, so alerts carry Kibana's values. TOML rules keep
    /// the context's defaults.
    pub fn apply_rule_audit(&self, ctx: &mut crate::alert::AlertContext) {
        let x = &self.rule.export_extra;
        let time = |k: &str| {
            x.get(k)
                .and_then(|v| v.as_str())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
        };
        let text = |k: &str| x.get(k).and_then(|v| v.as_str()).map(str::to_string);
        if let Some(t) = time("created_at") {
            ctx.rule_created_at = t;
        }
        if let Some(t) = time("updated_at") {
            ctx.rule_updated_at = t;
        }
        if let Some(by) = text("created_by") {
            ctx.rule_created_by = by;
        }
        if let Some(by) = text("updated_by") {
            ctx.rule_updated_by = by;
        }
        if let Some(n) = x.get("revision").and_then(|v| v.as_u64()) {
            ctx.rule_revision = n;
        }
        if let Some(b) = x.get("immutable").and_then(|v| v.as_bool()) {
            ctx.immutable = b;
        }
    }
}

/// The `_eql/search` options Kibana sends for a rule (spec eql-semantics §9): `size = max_signals`, no
/// `result_position` (tail), the rule's timestamp, category and tiebreaker fields.
pub fn query_options(rule: &Rule) -> QueryOptions {
    QueryOptions {
        timestamp_field: rule.timestamp_field.clone().unwrap_or_else(|| "@timestamp".into()),
        event_category_field: rule.event_category_override.clone().unwrap_or_else(|| "event.category".into()),
        tiebreaker_field: rule.tiebreaker_field.clone().filter(|t| !t.is_empty()),
        size: rule.max_signals as usize,
        position: Position::Tail,
        // Kibana's EQL request never sets it: Elasticsearch's default applies to every detection rule.
        max_samples_per_key: 1,
    }
}

/// Why a rule that was read will not run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    /// `enabled: false` in the export, or `enabled = false` in esdetect's config.
    Disabled,
    /// `metadata.maturity = "deprecated"` (run them with `include_deprecated = true` or per rule).
    Deprecated,
    /// Not an EQL rule: its `type` (query, threshold, esql, …).
    RuleType(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Disabled => write!(f, "disabled"),
            SkipReason::Deprecated => write!(f, "deprecated"),
            SkipReason::RuleType(t) => write!(f, "type {t}"),
        }
    }
}

/// One rule left out on purpose, with where it is and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub reason: SkipReason,
    pub rule_id: String,
    pub name: String,
    pub error: RuleError,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (skipped: {})", self.error, self.reason)
    }
}

/// What loading a rules path gave: rules (enabled or not), problems (file:line:col), rules skipped on
/// purpose, and warnings about settings that are read but not applied.
#[derive(Debug, Default)]
pub struct Prepared {
    pub rules: Vec<PreparedRule>,
    pub errors: Vec<RuleError>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<RuleError>,
}

impl Prepared {
    /// How many rules were skipped, per reason.
    pub fn skipped_counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for s in &self.skipped {
            *out.entry(s.reason.to_string()).or_insert(0) += 1;
        }
        out
    }

    /// The rules that will run.
    pub fn runnable(&self) -> impl Iterator<Item = &PreparedRule> {
        self.rules.iter().filter(|r| r.enabled)
    }
}

/// Rules per type: how many were loaded and how many skipped, e.g. `eql 2 loaded, query 3 loaded,
/// esql 1 skipped` (`validate` prints it; a skipped rule's reason is on its own line).
pub fn type_counts(prepared: &Prepared) -> String {
    let mut counts: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for r in &prepared.rules {
        let state = if r.enabled { "loaded" } else { "loaded, not enabled" };
        *counts.entry((r.rule.rule_type.clone(), state)).or_insert(0) += 1;
    }
    for s in &prepared.skipped {
        if let SkipReason::RuleType(t) = &s.reason {
            *counts.entry((t.clone(), "skipped")).or_insert(0) += 1;
        }
    }
    if counts.is_empty() {
        return "none".into();
    }
    counts.iter().map(|((t, state), n)| format!("{t} {n} {state}")).collect::<Vec<_>>().join(", ")
}

/// Loads every rule under `dir` (detection-rules TOML, exception files, Kibana exports), parses its query
/// (errors point into the rule file), attaches its exceptions and resolves the per-rule settings from
/// `config`. Disabled and deprecated rules are returned with `enabled: false` and listed in `skipped`.
pub fn prepare_rules(dir: &Path, config: &Config) -> Prepared {
    let mut out = Prepared::default();
    if !dir.exists() {
        out.errors.push(RuleError::new(
            dir,
            (1, 1),
            None,
            "rules folder not found: pass --rules DIR or set `rules_dir` in the config",
        ));
        return out;
    }
    let set = load_path(dir);
    out.errors.extend(set.errors.iter().cloned());
    for o in &set.other_types {
        let message = format!("rule `{}` of type `{}` (language `{}`) {}", o.name, o.rule_type, o.language, crate::rules::unsupported_reason(&o.rule_type));
        out.skipped.push(Skipped {
            reason: SkipReason::RuleType(o.rule_type.clone()),
            rule_id: o.rule_id.clone(),
            name: o.name.clone(),
            error: RuleError::new(&o.error.file, (o.error.line, o.error.col), Some("type"), message),
        });
    }
    for rule in &set.rules {
        if !crate::rules::runs_type(&rule.rule_type, &rule.language) {
            out.skipped.push(skip(rule, SkipReason::RuleType(rule.rule_type.clone())));
            continue;
        }
        let exceptions = match rule_exceptions(rule, &set) {
            Ok(e) => e,
            Err(e) => {
                out.errors.push(e);
                continue;
            }
        };
        match prepare_rule(rule.clone(), config) {
            Ok(mut p) => {
                p.exceptions = exceptions;
                if let Some(reason) = not_running(&p, config) {
                    p.enabled = false;
                    out.skipped.push(skip(&p.rule, reason));
                } else if p.rule.alert_suppression.is_some() {
                    let pos = (p.rule.query_origin.0, 1);
                    if let Err(e) = crate::alert::suppression::Suppression::from_rule(&p.rule) {
                        out.errors.push(RuleError::new(&p.rule.path, pos, Some("alert_suppression"), e));
                        continue;
                    }
                }
                out.rules.push(p);
            }
            Err(e) => out.errors.push(e),
        }
    }
    let mut seen = std::collections::HashMap::new();
    for p in &out.rules {
        if let Some(first) = seen.insert(p.rule.rule_id.clone(), p.rule.path.clone()) {
            out.errors.push(RuleError::new(
                &p.rule.path,
                (1, 1),
                Some("rule_id"),
                format!("rule_id {} is also used by {}", p.rule.rule_id, first.display()),
            ));
        }
    }
    out
}

fn skip(rule: &Rule, reason: SkipReason) -> Skipped {
    let pos = if rule.query_json.is_some() { (rule.query_origin.0, 1) } else { (1, 1) };
    let message = match &reason {
        SkipReason::Disabled => format!("rule `{}` is disabled", rule.name),
        SkipReason::Deprecated => format!("rule `{}` is deprecated (set `include_deprecated = true` to run it)", rule.name),
        SkipReason::RuleType(t) => {
            format!("rule `{}` of type `{t}` (language `{}`) {}", rule.name, rule.language, crate::rules::unsupported_reason(t))
        }
    };
    Skipped { reason, rule_id: rule.rule_id.clone(), name: rule.name.clone(), error: RuleError::new(&rule.path, pos, None, message) }
}

/// Why an EQL rule will not run: esdetect's config decides first, then the rule source (`enabled` of an
/// export), then maturity.
fn not_running(p: &PreparedRule, config: &Config) -> Option<SkipReason> {
    match config.rule_settings(&p.rule.rule_id).enabled {
        Some(true) => return None,
        Some(false) => return Some(SkipReason::Disabled),
        None => {}
    }
    if p.rule.enabled == Some(false) {
        return Some(SkipReason::Disabled);
    }
    if p.rule.maturity() == Some("deprecated") && !config.include_deprecated {
        return Some(SkipReason::Deprecated);
    }
    None
}

/// The exception items of the lists a rule references (`exceptions_list`), matched on `list_id` and
/// `namespace_type` as Kibana does. A referenced list that is not in the rules path is an error: running
/// the rule without it would raise alerts Kibana suppresses.
fn rule_exceptions(rule: &Rule, set: &RuleSet) -> Result<RuleExceptions, RuleError> {
    let refs = match &rule.exceptions_list {
        serde_json::Value::Array(refs) => refs,
        serde_json::Value::Null => return Ok(RuleExceptions::default()),
        _ => return Err(list_error(rule, "`exceptions_list` must be an array of list references".into())),
    };
    let mut items = Vec::new();
    for r in refs {
        let list_id = r.get("list_id").and_then(|v| v.as_str()).unwrap_or("");
        let namespace = r.get("namespace_type").and_then(|v| v.as_str()).unwrap_or("single");
        if list_id.is_empty() {
            return Err(list_error(rule, format!("`exceptions_list` entry without `list_id`: {r}")));
        }
        let known = set.lists.iter().any(|l| l.list_id == list_id && l.namespace_type == namespace)
            || set.items.iter().any(|i| i.list_id == list_id && i.namespace_type == namespace);
        if !known {
            let how = if list_id == "endpoint_list" {
                "Kibana never exports the Endpoint exception list with rules: export it from the Exceptions page \
                 (Endpoint Security Exception List) and put that NDJSON file in the rules path"
            } else {
                "export the rule together with its exceptions, or put the list's export or detection-rules \
                 exception file in the rules path"
            };
            return Err(list_error(rule, format!("exception list `{list_id}` ({namespace}) is not in the rules path: {how}")));
        }
        for item in set.items.iter().filter(|i| i.list_id == list_id && i.namespace_type == namespace) {
            // The same list may come with several exports: each item once.
            if !items.iter().any(|i: &crate::exceptions::ExceptionItem| i.item_id == item.item_id && i.list_id == item.list_id && i.namespace_type == item.namespace_type) {
                items.push(item.clone());
            }
        }
    }
    Ok(RuleExceptions::new(items))
}

fn list_error(rule: &Rule, message: String) -> RuleError {
    // Export rules: the rule's own line; TOML rules: the file.
    let line = if rule.query_json.is_some() { rule.query_origin.0 } else { 1 };
    RuleError::new(&rule.path, (line, 1), Some("exceptions_list"), message)
}

/// Parses one rule's query and resolves its settings.
pub fn prepare_rule(rule: Rule, config: &Config) -> Result<PreparedRule, RuleError> {
    let kind = super::query_rule::rule_kind(&rule)?;
    let query = match kind {
        super::query_rule::RuleKind::Eql => crate::eql::parse(&rule.query),
        _ => crate::eql::parse("any where true"),
    }
    .map_err(|e| rule.query_error(e.span.line, e.span.col, e.message))?;
    let settings = config.rule_settings(&rule.rule_id);
    let rule_uuid = settings
        .uuid
        .clone()
        .or_else(|| rule.kibana_id.clone())
        .unwrap_or_else(|| rule.default_uuid().to_string());
    let space = settings.space.clone().unwrap_or_else(|| config.alerts.space.clone());
    let alias = config.alerts_alias(&settings);
    let sequence_mode = settings.sequence_mode.unwrap_or(config.run.sequence_mode);
    check_maxspan(&rule, &query, sequence_mode)?;
    Ok(PreparedRule {
        query,
        rule_uuid,
        space,
        alias,
        enabled: settings.enabled.or(rule.enabled).unwrap_or(true),
        sequence_mode,
        exceptions: RuleExceptions::default(),
        kind,
        rule,
    })
}

/// In complete mode a run reads an extra `maxspan` before its window, so the maxspan is a duration
/// esdetect computes with: it must stay within [`crate::limits::MAX_DURATION_DAYS`] (Kibana mode only
/// compares it with event times and accepts any value, as Elasticsearch does).
fn check_maxspan(rule: &Rule, query: &Query, mode: SequenceMode) -> Result<(), RuleError> {
    let crate::eql::ast::QueryBody::Sequence(seq) = &query.body else { return Ok(()) };
    let Some(ms) = seq.maxspan_ms else { return Ok(()) };
    if mode != SequenceMode::Complete || ms <= crate::limits::max_duration().num_milliseconds() {
        return Ok(());
    }
    // Point at `maxspan` in the query text (the sequence keyword if it cannot be found).
    let at = rule.query.find("maxspan").unwrap_or(seq.span.start);
    let before = &rule.query[..at];
    let line = before.matches('\n').count() as u32 + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) as u32 + 1;
    Err(rule.query_error(
        line,
        col,
        format!(
            "maxspan of {ms} ms is longer than the maximum of {} days that sequence_mode = \"complete\" can read back; \
             use a shorter maxspan or sequence_mode = \"kibana\" for this rule",
            crate::limits::MAX_DURATION_DAYS
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn export_fixture() -> PathBuf {
        root().join("tests/fixtures/kibana_export/rules_export.ndjson")
    }

    fn seed(name: &str) -> String {
        std::fs::read_to_string(root().join("rules").join(name)).unwrap()
    }

    const SMB: &str = "credential_access_machine_account_smb_relay.toml";
    const KRB: &str = "privilege_escalation_krbrelayup_service_creation.toml";

    #[test]
    fn export_rules_take_kibanas_id_and_their_exceptions() {
        let p = prepare_rules(&export_fixture(), &Config::default());
        assert!(p.errors.is_empty() && p.skipped.is_empty() && p.warnings.is_empty(), "{p:?}");
        let uuids: Vec<&str> = p.rules.iter().map(|r| r.rule_uuid.as_str()).collect();
        assert_eq!(uuids, ["5d0c1e1a-2b7f-4a39-8c4e-6f1b9d2a7e10", "7b1c2a9e-3f0d-4c55-9a11-0d6e2f4b8c01"]);
        for r in &p.rules {
            assert!(r.enabled);
            let ids: Vec<&str> = r.exceptions.items.iter().map(|i| i.item_id.as_str()).collect();
            assert_eq!(ids, ["lab-scanner", "lab-agent-services"]);
        }
        // The config's uuid still wins.
        let mut config = Config::default();
        config.rules.insert(
            "d84a11c0-eb12-4e7d-8a0a-718e38351e29".into(),
            crate::config::RuleSettings { uuid: Some("cfg-uuid".into()), ..Default::default() },
        );
        assert_eq!(prepare_rules(&export_fixture(), &config).rules[0].rule_uuid, "cfg-uuid");
    }

    #[test]
    fn disabled_deprecated_and_other_types_are_skipped_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("deprecated.toml"), seed(SMB).replacen("maturity = \"production\"", "maturity = \"deprecated\"", 1)).unwrap();
        std::fs::write(dir.path().join("krb.toml"), seed(KRB)).unwrap();
        let kql = seed(SMB)
            .replacen("language = \"eql\"", "language = \"esql\"", 1)
            .replacen("type = \"eql\"", "type = \"esql\"", 1)
            .replacen("d84a11c0-eb12-4e7d-8a0a-718e38351e29", "toml-kql", 1);
        std::fs::write(dir.path().join("kql.toml"), kql).unwrap();
        let export = r#"{"id":"a","rule_id":"off","name":"Off","type":"eql","language":"eql","index":["x"],"query":"any where true","enabled":false}
{"id":"b","rule_id":"kql","name":"ML","type":"machine_learning","enabled":true}
{"id":"c","rule_id":"thr","name":"Indicator match","type":"threat_match","language":"kuery","query":"a: b","enabled":true}
{"exported_count":3,"exported_rules_count":3,"missing_rules":[],"missing_rules_count":0}
"#;
        std::fs::write(dir.path().join("export.ndjson"), export).unwrap();
        let p = prepare_rules(dir.path(), &Config::default());
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let counts: Vec<(String, usize)> = p.skipped_counts().into_iter().collect();
        assert_eq!(
            counts,
            [
                ("deprecated".to_string(), 1),
                ("disabled".to_string(), 1),
                ("type esql".to_string(), 1),
                ("type machine_learning".to_string(), 1),
                ("type threat_match".to_string(), 1)
            ]
        );
        let runnable: Vec<&str> = p.runnable().map(|r| r.rule.rule_id.as_str()).collect();
        assert_eq!(runnable, ["e4e31051-ee01-4307-a6ee-b21b186958f4"]);
        let disabled = p.skipped.iter().find(|s| s.rule_id == "off").unwrap();
        assert!(disabled.to_string().contains("export.ndjson:1:1: rule `Off` is disabled"), "{disabled}");
        let toml_kql = p.skipped.iter().find(|s| s.rule_id == "toml-kql").unwrap();
        assert!(toml_kql.error.file.ends_with("kql.toml") && toml_kql.error.line > 1, "points at `type`: {toml_kql}");

        // The config turns them on: deprecated ones globally, a disabled one by its rule_id.
        let mut config = Config { include_deprecated: true, ..Config::default() };
        config.rules.insert("off".into(), crate::config::RuleSettings { enabled: Some(true), ..Default::default() });
        let p = prepare_rules(dir.path(), &config);
        assert_eq!(p.runnable().count(), 3);
        assert_eq!(p.skipped.len(), 3, "only the three non-EQL rules");
    }

    #[test]
    fn a_missing_exception_list_is_an_error_not_a_silent_drop() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(export_fixture()).unwrap();
        // Keep the rules and the details line only (with the counts fixed), as an export without exceptions.
        let lines: Vec<&str> = text.lines().collect();
        let details = lines[5].replace("\"exported_count\":5", "\"exported_count\":2").replace("\"exported_exception_list_count\":1", "\"exported_exception_list_count\":0").replace("\"exported_exception_list_item_count\":2", "\"exported_exception_list_item_count\":0");
        std::fs::write(dir.path().join("e.ndjson"), format!("{}\n{}\n{details}\n", lines[0], lines[1])).unwrap();
        let p = prepare_rules(dir.path(), &Config::default());
        assert_eq!(p.rules.len(), 0);
        assert_eq!(p.errors.len(), 2, "{:?}", p.errors);
        assert!(p.errors[0].to_string().contains("e.ndjson:1:1: exception list `esdetect-lab-exceptions` (single) is not in the rules path"), "{}", p.errors[0]);
    }

    #[test]
    fn custom_rules_layout_with_exception_files_and_suppression_warning() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("rules")).unwrap();
        std::fs::create_dir_all(d.join("exceptions")).unwrap();
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(d.join("_config.yaml"), "rule_dirs:\n  - rules\ndirectories:\n  exception_dir: exceptions\n").unwrap();
        // Not in a rule folder: never read, even though it is not a rule.
        std::fs::write(d.join("etc/packages.toml"), "x = 1\n").unwrap();
        // Sub-tables of `[rule]` may follow the rule's other tables.
        let smb = format!(
            "{}\n[[rule.exceptions_list]]\nid = \"x\"\nlist_id = \"lab\"\nnamespace_type = \"single\"\ntype = \"detection\"\n\n\
             [rule.alert_suppression]\ngroup_by = [\"source.ip\"]\n",
            seed(SMB)
        );
        std::fs::write(d.join("rules/smb.toml"), smb).unwrap();
        std::fs::write(
            d.join("exceptions/lab_exceptions.toml"),
            r#"[metadata]
creation_date = "2026/05/19"
list_name = "Lab"
rule_ids = ["x"]
rule_names = ["Potential Machine Account Relay Attack via SMB"]
updated_date = "2026/05/19"

[[exceptions]]
[exceptions.container]
description = "lab"
list_id = "lab"
name = "Lab"
namespace_type = "single"
type = "detection"

[[exceptions.items]]
comments = []
description = "scanner"
list_id = "lab"
item_id = "scanner"
name = "Scanner"
namespace_type = "single"
type = "simple"
entries = [{ field = "source.ip", type = "match", operator = "included", value = "10.0.80.99" }]
"#,
        )
        .unwrap();
        let p = prepare_rules(d, &Config::default());
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].exceptions.items.len(), 1);
        assert_eq!(p.rules[0].exceptions.items[0].item_id, "scanner");
        // An event query: suppression applies, no warning.
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }
}
