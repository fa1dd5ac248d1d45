//! From rule files and configuration to rules ready to run: parsed queries, esdetect settings resolved.

use crate::config::{Config, SequenceMode};
use crate::eql::ast::Query;
use crate::eql::plan::{Position, QueryOptions};
use crate::rules::{self, Rule, RuleError, RuleErrorKind};
use std::path::Path;

/// A rule with its parsed query and the settings that decide alert ids and destination.
#[derive(Debug, Clone)]
pub struct PreparedRule {
    pub rule: Rule,
    pub query: Query,
    /// `kibana.alert.rule.uuid`: Kibana's saved-object id when configured, else a UUIDv5 of the rule_id.
    pub rule_uuid: String,
    pub space: String,
    /// Alerts alias this rule writes to.
    pub alias: String,
    pub enabled: bool,
    pub sequence_mode: SequenceMode,
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
    }
}

/// What loading a rules folder gave: rules to run, problems (file:line:col), and files skipped on purpose.
#[derive(Debug, Default)]
pub struct Prepared {
    pub rules: Vec<PreparedRule>,
    pub errors: Vec<RuleError>,
    pub skipped: Vec<RuleError>,
}

/// Loads every rule under `dir`, parses its query (errors point into the rule file), and resolves the
/// per-rule settings from `config`. Disabled rules are returned with `enabled: false`.
pub fn prepare_rules(dir: &Path, config: &Config) -> Prepared {
    let mut out = Prepared::default();
    if !dir.is_dir() {
        out.errors.push(RuleError::new(
            dir,
            (1, 1),
            None,
            "rules folder not found: pass --rules DIR or set `rules_dir` in the config",
        ));
        return out;
    }
    let (loaded, errors) = rules::load_dir(dir);
    for e in errors {
        match e.kind {
            RuleErrorKind::Unsupported => out.skipped.push(e),
            RuleErrorKind::Invalid => out.errors.push(e),
        }
    }
    for rule in loaded {
        match prepare_rule(rule, config) {
            Ok(p) => out.rules.push(p),
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

/// Parses one rule's query and resolves its settings.
pub fn prepare_rule(rule: Rule, config: &Config) -> Result<PreparedRule, RuleError> {
    let query = crate::eql::parse(&rule.query).map_err(|e| rule.query_error(e.span.line, e.span.col, e.message))?;
    let settings = config.rule_settings(&rule.rule_id);
    let rule_uuid = settings.uuid.clone().unwrap_or_else(|| rule.default_uuid().to_string());
    let space = settings.space.clone().unwrap_or_else(|| config.alerts.space.clone());
    let alias = config.alerts_alias(&settings);
    Ok(PreparedRule {
        query,
        rule_uuid,
        space,
        alias,
        enabled: settings.enabled.unwrap_or(true),
        sequence_mode: settings.sequence_mode.unwrap_or(config.run.sequence_mode),
        rule,
    })
}
