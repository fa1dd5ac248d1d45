//! Whole alert documents: event alerts (spec §5) and sequence building blocks + shell (§6), each the
//! copied source (§3, [`super::source`]) followed by the flat alert fields of §4.
//!
//! Times: Kibana stamps `@timestamp` with `new Date()` per alert, a few ms apart. esdetect gives every
//! alert built by one call the same `ctx.alert_time` (nothing keys on the difference, and it keeps
//! documents reproducible); a shell's `original_time` is therefore equal to its `@timestamp`.
//! Not implemented: risk-score / severity / rule-name overrides (`*_mapping`, `rule_name_override`;
//! the seed rules have none), `kibana.alert.url`, maintenance windows, entity enrichment.

use super::ids::{building_block_ids_from_ancestors, event_alert_id, shell_id_from_ancestors};
use super::intersect::intersect_all;
use super::reason::build_reason;
use super::source::copy_source;
use crate::eql::value::{format_date_ms, parse_date_ms};
use super::get_path;
use crate::event::Event;
use crate::rules::Rule;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// How an execution was started, with Kibana's names (`kibana.alert.rule.execution.type`, the ledger's
/// `execution_type`): by the schedule, or by hand (`esdetect run --once`, `esdetect backfill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionType {
    #[default]
    Scheduled,
    Manual,
}

impl ExecutionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionType::Scheduled => "scheduled",
            ExecutionType::Manual => "manual",
        }
    }
}

/// Everything about one rule execution that is not in the rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertContext {
    /// Kibana space (`default`): part of event-alert ids and `kibana.space_ids`.
    pub space_id: String,
    /// Rule saved-object id (Kibana's, or [`Rule::default_uuid`]); part of every id.
    pub rule_uuid: String,
    /// Written as `kibana.version`.
    pub kibana_version: String,
    pub execution_uuid: String,
    /// `@timestamp` of every alert built in one call (and `intended_timestamp` unless `intended_time`).
    pub alert_time: DateTime<Utc>,
    /// `kibana.alert.start`, `.last_detected`, `.rule.execution.timestamp`.
    pub persist_time: DateTime<Utc>,
    /// For manual runs/backfills: the time the run stands for. `None` → `alert_time`.
    pub intended_time: Option<DateTime<Utc>>,
    pub rule_created_at: DateTime<Utc>,
    pub rule_created_by: String,
    pub rule_updated_at: DateTime<Utc>,
    pub rule_updated_by: String,
    /// `kibana.alert.rule.revision` (edit counter of the rule object).
    pub rule_revision: u64,
    pub enabled: bool,
    /// `true` for Elastic prebuilt rules as Kibana installs them.
    pub immutable: bool,
    pub execution_type: ExecutionType,
}

impl AlertContext {
    /// A scheduled, enabled, non-prebuilt run with the rule audit fields set to `persist_time` / `elastic`.
    pub fn new(
        space_id: impl Into<String>,
        rule_uuid: impl Into<String>,
        kibana_version: impl Into<String>,
        execution_uuid: impl Into<String>,
        alert_time: DateTime<Utc>,
        persist_time: DateTime<Utc>,
    ) -> Self {
        AlertContext {
            space_id: space_id.into(),
            rule_uuid: rule_uuid.into(),
            kibana_version: kibana_version.into(),
            execution_uuid: execution_uuid.into(),
            alert_time,
            persist_time,
            intended_time: None,
            rule_created_at: persist_time,
            rule_created_by: "elastic".into(),
            rule_updated_at: persist_time,
            rule_updated_by: "elastic".into(),
            rule_revision: 0,
            enabled: true,
            immutable: false,
            execution_type: ExecutionType::Scheduled,
        }
    }
}

/// One document to write: `_id` and `_source`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertDoc {
    pub id: String,
    pub source: Value,
}

impl AlertDoc {
    /// What the document is: `"event"` (an event alert), `"sequence"` (a sequence's shell) or
    /// `"building block"` (one event of a sequence).
    pub fn kind(&self) -> &'static str {
        if self.source.get("kibana.alert.building_block_type").is_some() {
            "building block"
        } else if self.source.get("kibana.alert.group.id").is_some() {
            "sequence"
        } else {
            "event"
        }
    }
}

/// `YYYY-MM-DDTHH:mm:ss.sssZ`, JavaScript's `toISOString()`.
pub fn iso_ms(t: DateTime<Utc>) -> String {
    format_date_ms(t.timestamp_millis())
}

/// An event's `@timestamp` as `toISOString()` (ms precision, UTC); `None` if missing or unparseable.
fn original_time(source: &Value) -> Option<String> {
    let ms = match get_path(source, "@timestamp")? {
        Value::String(s) => parse_date_ms(s)?,
        Value::Number(n) => n.as_f64()? as i64,
        _ => return None,
    };
    DateTime::<Utc>::from_timestamp_millis(ms).map(iso_ms)
}

/// Whether an event is itself an alert of this rule (or descends from one). Kibana never alerts on
/// those: an event alert is skipped, a sequence containing one is skipped whole.
pub fn is_own_alert(event: &Event, rule_uuid: &str) -> bool {
    is_own_alert_source(&event.full_source(), rule_uuid)
}

fn is_own_alert_source(source: &Value, rule_uuid: &str) -> bool {
    if get_path(source, "kibana.alert.rule.uuid").and_then(Value::as_str) == Some(rule_uuid) {
        return true;
    }
    match get_path(source, "kibana.alert.ancestors") {
        Some(Value::Array(a)) => a.iter().any(|x| x.get("rule").and_then(Value::as_str) == Some(rule_uuid)),
        _ => false,
    }
}

/// Ancestors and depth of an alert built on `event`: a plain event gives
/// `[{id, type: "event", index, depth: 0}]` and depth 1; an event that is itself an alert extends its
/// own ancestors with `{…, type: "signal", depth: its depth, rule}`.
fn lineage(event: &Event, source: &Value) -> (Vec<Value>, i64) {
    if let Some(d) = get_path(source, "kibana.alert.depth").and_then(Value::as_i64) {
        let mut anc = match get_path(source, "kibana.alert.ancestors") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let mut parent = json!({"id": event.id, "type": "signal", "index": event.index, "depth": d});
        if let Some(r) = get_path(source, "kibana.alert.rule.uuid") {
            parent["rule"] = r.clone();
        }
        anc.push(parent);
        return (anc, d + 1);
    }
    (vec![json!({"id": event.id, "type": "event", "index": event.index, "depth": 0})], 1)
}

fn ancestor_pairs(ancestors: &[Value]) -> Vec<(&str, &str)> {
    ancestors
        .iter()
        .map(|a| {
            (
                a.get("id").and_then(Value::as_str).unwrap_or(""),
                a.get("index").and_then(Value::as_str).unwrap_or(""),
            )
        })
        .collect()
}

fn put(m: &mut Map<String, Value>, k: &str, v: Value) {
    m.insert(k.to_string(), v);
}

fn put_opt<T: Into<Value> + Clone>(m: &mut Map<String, Value>, k: &str, v: &Option<T>) {
    if let Some(v) = v {
        m.insert(k.to_string(), v.clone().into());
    }
}

/// `kibana.alert.rule.parameters`: Kibana's snake_case params object (spec §4.2), undefined ones left out.
pub fn rule_parameters(rule: &Rule, ctx: &AlertContext) -> Value {
    let mut p = Map::new();
    put(&mut p, "description", json!(rule.description));
    put(&mut p, "risk_score", json!(rule.risk_score));
    put(&mut p, "severity", json!(rule.severity));
    put_opt(&mut p, "building_block_type", &rule.building_block_type);
    put_opt(&mut p, "namespace", &rule.namespace);
    put_opt(&mut p, "note", &rule.note);
    put_opt(&mut p, "license", &rule.license);
    put_opt(&mut p, "timeline_id", &rule.timeline_id);
    put_opt(&mut p, "timeline_title", &rule.timeline_title);
    put_opt(&mut p, "rule_name_override", &rule.rule_name_override);
    put_opt(&mut p, "timestamp_override", &rule.timestamp_override);
    put_opt(&mut p, "timestamp_override_fallback_disabled", &rule.timestamp_override_fallback_disabled);
    put_opt(&mut p, "investigation_fields", &rule.investigation_fields);
    put(&mut p, "author", json!(rule.author));
    put(&mut p, "false_positives", json!(rule.false_positives));
    put(&mut p, "from", json!(rule.from));
    put(&mut p, "rule_id", json!(rule.rule_id));
    put(&mut p, "max_signals", json!(rule.max_signals));
    put(&mut p, "risk_score_mapping", rule.risk_score_mapping.clone());
    put(&mut p, "severity_mapping", rule.severity_mapping.clone());
    put(&mut p, "threat", rule.threat.clone());
    put(&mut p, "to", json!(rule.to));
    put(&mut p, "references", json!(rule.references));
    put_opt(&mut p, "version", &rule.version);
    put(&mut p, "exceptions_list", json!([]));
    put(&mut p, "immutable", json!(ctx.immutable));
    put(
        &mut p,
        "rule_source",
        if ctx.immutable { json!({"type": "external", "is_customized": false}) } else { json!({"type": "internal"}) },
    );
    put(&mut p, "related_integrations", rule.related_integrations.clone().unwrap_or_else(|| json!([])));
    put(&mut p, "required_fields", rule.required_fields.clone().unwrap_or_else(|| json!([])));
    put(&mut p, "setup", json!(rule.setup.clone().unwrap_or_default()));
    put(&mut p, "type", json!(rule.rule_type));
    put(&mut p, "language", json!(rule.language));
    put(&mut p, "index", json!(rule.index));
    put(&mut p, "query", json!(rule.query));
    put_opt(&mut p, "filters", &rule.filters);
    put_opt(&mut p, "event_category_override", &rule.event_category_override);
    put_opt(&mut p, "timestamp_field", &rule.timestamp_field);
    put_opt(&mut p, "tiebreaker_field", &rule.tiebreaker_field);
    Value::Object(p)
}

/// Per-alert values that differ between event alerts, building blocks and shells.
struct Specific<'a> {
    id: &'a str,
    ancestors: Vec<Value>,
    depth: i64,
    original_time: Option<String>,
    reason: String,
}

/// Appends the flat alert fields (§4.1, §4.2) to `doc`; they overwrite same-named source keys.
fn add_alert_fields(doc: &mut Map<String, Value>, rule: &Rule, ctx: &AlertContext, s: Specific<'_>) {
    let t = iso_ms(ctx.alert_time);
    let persisted = iso_ms(ctx.persist_time);
    put(doc, "@timestamp", json!(t));
    put(doc, "event.kind", json!("signal"));
    put(doc, "kibana.space_ids", json!([ctx.space_id]));
    put(doc, "kibana.version", json!(ctx.kibana_version));
    put(doc, "kibana.alert.uuid", json!(s.id));
    put(doc, "kibana.alert.status", json!("active"));
    put(doc, "kibana.alert.workflow_status", json!("open"));
    put(doc, "kibana.alert.workflow_tags", json!([]));
    put(doc, "kibana.alert.workflow_assignee_ids", json!([]));
    put(doc, "kibana.alert.depth", json!(s.depth));
    put(doc, "kibana.alert.ancestors", Value::Array(s.ancestors));
    match s.original_time {
        Some(ot) => put(doc, "kibana.alert.original_time", json!(ot)),
        None => {
            doc.remove("kibana.alert.original_time");
        }
    }
    put(doc, "kibana.alert.reason", json!(s.reason));
    put(doc, "kibana.alert.severity", json!(rule.severity));
    put(doc, "kibana.alert.risk_score", json!(rule.risk_score));
    put_opt(doc, "kibana.alert.building_block_type", &rule.building_block_type);
    put(doc, "kibana.alert.intended_timestamp", json!(iso_ms(ctx.intended_time.unwrap_or(ctx.alert_time))));
    put(doc, "kibana.alert.start", json!(persisted));
    put(doc, "kibana.alert.last_detected", json!(persisted));

    put(doc, "kibana.alert.rule.parameters", rule_parameters(rule, ctx));
    put(doc, "kibana.alert.rule.uuid", json!(ctx.rule_uuid));
    put(doc, "kibana.alert.rule.rule_id", json!(rule.rule_id));
    put(doc, "kibana.alert.rule.name", json!(rule.name));
    put(doc, "kibana.alert.rule.type", json!(rule.rule_type));
    let (type_id, category) = rule_type_names(&rule.rule_type);
    put(doc, "kibana.alert.rule.rule_type_id", json!(type_id));
    put(doc, "kibana.alert.rule.category", json!(category));
    put(doc, "kibana.alert.rule.consumer", json!("siem"));
    put(doc, "kibana.alert.rule.producer", json!("siem"));
    put(doc, "kibana.alert.rule.revision", json!(ctx.rule_revision));
    put_opt(doc, "kibana.alert.rule.version", &rule.version);
    put(doc, "kibana.alert.rule.execution.uuid", json!(ctx.execution_uuid));
    put(doc, "kibana.alert.rule.execution.timestamp", json!(persisted));
    put(doc, "kibana.alert.rule.execution.type", json!(ctx.execution_type.as_str()));
    put(doc, "kibana.alert.rule.from", json!(rule.from));
    put(doc, "kibana.alert.rule.to", json!(rule.to));
    put(doc, "kibana.alert.rule.interval", json!(rule.interval));
    put(doc, "kibana.alert.rule.max_signals", json!(rule.max_signals));
    put(doc, "kibana.alert.rule.indices", json!(rule.index));
    put_opt(doc, "kibana.alert.rule.timestamp_override", &rule.timestamp_override);
    put(doc, "kibana.alert.rule.risk_score", json!(rule.risk_score));
    put(doc, "kibana.alert.rule.severity", json!(rule.severity));
    put(doc, "kibana.alert.rule.risk_score_mapping", rule.risk_score_mapping.clone());
    put(doc, "kibana.alert.rule.severity_mapping", rule.severity_mapping.clone());
    put(doc, "kibana.alert.rule.threat", rule.threat.clone());
    put(doc, "kibana.alert.rule.tags", json!(rule.tags));
    put(doc, "kibana.alert.rule.author", json!(rule.author));
    put_opt(doc, "kibana.alert.rule.license", &rule.license);
    put(doc, "kibana.alert.rule.description", json!(rule.description));
    put_opt(doc, "kibana.alert.rule.note", &rule.note);
    put(doc, "kibana.alert.rule.references", json!(rule.references));
    put(doc, "kibana.alert.rule.false_positives", json!(rule.false_positives));
    put(doc, "kibana.alert.rule.enabled", json!(ctx.enabled));
    put(doc, "kibana.alert.rule.immutable", json!(ctx.immutable));
    put(doc, "kibana.alert.rule.created_at", json!(iso_ms(ctx.rule_created_at)));
    put(doc, "kibana.alert.rule.created_by", json!(ctx.rule_created_by));
    put(doc, "kibana.alert.rule.updated_at", json!(iso_ms(ctx.rule_updated_at)));
    put(doc, "kibana.alert.rule.updated_by", json!(ctx.rule_updated_by));
    put(doc, "kibana.alert.rule.actions", json!([]));
    put(doc, "kibana.alert.rule.exceptions_list", json!([]));
    put_opt(doc, "kibana.alert.rule.namespace", &rule.namespace);
    put_opt(doc, "kibana.alert.rule.rule_name_override", &rule.rule_name_override);
    put_opt(doc, "kibana.alert.rule.timeline_id", &rule.timeline_id);
    put_opt(doc, "kibana.alert.rule.timeline_title", &rule.timeline_title);
    put_opt(doc, "kibana.alert.rule.building_block_type", &rule.building_block_type);
}

/// Kibana's rule type id and category name of a security rule type.
fn rule_type_names(rule_type: &str) -> (&'static str, &'static str) {
    match rule_type {
        "query" => ("siem.queryRule", "Custom Query Rule"),
        "threshold" => ("siem.thresholdRule", "Threshold Rule"),
        "new_terms" => ("siem.newTermsRule", "New Terms Rule"),
        _ => ("siem.eqlRule", "Event Correlation Rule"),
    }
}

/// Kibana's reason text for an alert document under construction (the document is lent, not copied).
fn reason_for(doc: Map<String, Value>, rule: &Rule) -> (Map<String, Value>, String) {
    let doc = Value::Object(doc);
    let reason = build_reason(&doc, &rule.severity, &rule.name);
    match doc {
        Value::Object(m) => (m, reason),
        _ => (Map::new(), reason),
    }
}

/// Source copy of `event` with its flat original_event / original_data_stream keys.
fn copied(source: &Value) -> Map<String, Value> {
    let c = copy_source(source);
    let mut doc = c.source;
    for (k, v) in c.flat {
        doc.insert(k, v);
    }
    doc
}

/// The alert for one matched event of an event query (spec §5). The caller skips events for which
/// [`is_own_alert`] holds (or uses [`event_alerts`]).
pub fn event_alert(rule: &Rule, ctx: &AlertContext, event: &Event) -> AlertDoc {
    event_alert_from(rule, ctx, event, &event.full_source())
}

/// [`event_alert`] with the event's whole `_source` already at hand.
fn event_alert_from(rule: &Rule, ctx: &AlertContext, event: &Event, source: &Value) -> AlertDoc {
    let doc = copied(source);
    let (ancestors, depth) = lineage(event, source);
    let id = event_alert_id(&event.index, &event.id, &ctx.space_id, &ctx.rule_uuid);
    let (mut doc, reason) = reason_for(doc, rule);
    let spec = Specific { id: &id, ancestors, depth, original_time: original_time(source), reason };
    add_alert_fields(&mut doc, rule, ctx, spec);
    AlertDoc { id, source: Value::Object(doc) }
}

/// Alerts for the events of an event query, skipping events that are this rule's own alerts.
pub fn event_alerts(rule: &Rule, ctx: &AlertContext, events: &[Event]) -> Vec<AlertDoc> {
    events
        .iter()
        .filter_map(|e| {
            let source = e.full_source();
            (!is_own_alert_source(&source, &ctx.rule_uuid)).then(|| event_alert_from(rule, ctx, e, &source))
        })
        .collect()
}

/// The documents for one matched sequence (its non-missing events in order): the shell first, then one
/// building block per event (spec §6). Empty when `events` is empty or when any event is this rule's
/// own alert (Kibana skips the whole sequence).
pub fn sequence_alerts(rule: &Rule, ctx: &AlertContext, events: &[Event]) -> Vec<AlertDoc> {
    let sources: Vec<_> = events.iter().map(Event::full_source).collect();
    if events.is_empty() || sources.iter().any(|s| is_own_alert_source(s, &ctx.rule_uuid)) {
        return Vec::new();
    }
    let lineages: Vec<(Vec<Value>, i64)> = events.iter().zip(&sources).map(|(e, s)| lineage(e, s)).collect();
    let pair_lists: Vec<Vec<(&str, &str)>> = lineages.iter().map(|(a, _)| ancestor_pairs(a)).collect();
    let bb_ids = building_block_ids_from_ancestors(&pair_lists, &ctx.rule_uuid);

    // Shell ancestors: each building block's ancestors, then the building block itself.
    let mut shell_ancestors = Vec::new();
    for ((anc, depth), bb_id) in lineages.iter().zip(&bb_ids) {
        shell_ancestors.extend(anc.iter().cloned());
        shell_ancestors.push(json!({"id": bb_id, "type": "signal", "index": "", "depth": depth, "rule": ctx.rule_uuid}));
    }
    let shell_id = shell_id_from_ancestors(&ancestor_pairs(&shell_ancestors), &ctx.rule_uuid);

    // Building blocks as Kibana builds them before the group fields are added (these feed the shell).
    let mut blocks: Vec<Map<String, Value>> = Vec::with_capacity(events.len());
    for ((source, (anc, depth)), bb_id) in sources.iter().zip(&lineages).zip(&bb_ids) {
        let (mut doc, reason) = reason_for(copied(source), rule);
        let spec = Specific { id: bb_id, ancestors: anc.clone(), depth: *depth, original_time: original_time(source), reason };
        add_alert_fields(&mut doc, rule, ctx, spec);
        blocks.push(doc);
    }

    // Wrapped as values for the intersection, and unwrapped again: no copy of the blocks.
    let block_values: Vec<Value> = blocks.into_iter().map(Value::Object).collect();
    let refs: Vec<&Value> = block_values.iter().collect();
    let shell = match intersect_all(&refs) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let blocks: Vec<Map<String, Value>> =
        block_values.into_iter().map(|v| if let Value::Object(m) = v { m } else { Map::new() }).collect();
    let (mut shell, reason) = reason_for(shell, rule);
    let max_depth = lineages.iter().map(|(_, d)| *d).max().unwrap_or(1);
    let first_bb_time = blocks[0].get("@timestamp").and_then(Value::as_str).map(str::to_string);
    let spec = Specific { id: &shell_id, ancestors: shell_ancestors, depth: max_depth + 1, original_time: first_bb_time, reason };
    add_alert_fields(&mut shell, rule, ctx, spec);
    put(&mut shell, "kibana.alert.group.id", json!(shell_id));

    let mut out = Vec::with_capacity(events.len() + 1);
    out.push(AlertDoc { id: shell_id.clone(), source: Value::Object(shell) });
    for (i, (mut doc, bb_id)) in blocks.into_iter().zip(bb_ids).enumerate() {
        put(&mut doc, "kibana.alert.building_block_type", json!("default"));
        put(&mut doc, "kibana.alert.group.id", json!(shell_id));
        put(&mut doc, "kibana.alert.group.index", json!(i));
        out.push(AlertDoc { id: bb_id, source: Value::Object(doc) });
    }
    out
}
