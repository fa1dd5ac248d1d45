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
    let sequence_mode = settings.sequence_mode.unwrap_or(config.run.sequence_mode);
    check_maxspan(&rule, &query, sequence_mode)?;
    Ok(PreparedRule { query, rule_uuid, space, alias, enabled: settings.enabled.unwrap_or(true), sequence_mode, rule })
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
