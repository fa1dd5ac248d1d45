//! Alert suppression for EQL rules (`alert_suppression`), as Kibana 8.19 applies it — the pure
//! part: the suppression fields of an alert, suppression within one execution, and the plan that merges
//! a run's alerts with the suppressed alerts already in the index. The I/O is in
//! [`crate::sink::suppressed`]; the specification is `docs/alert-suppression.md`.
//!
//! Kibana (`wrap_suppressed_alerts.ts`, `suppression_utils.ts`, `bulk_create_suppressed_alerts_in_memory.ts`
//! and the rule registry's `alertWithSuppression`) gives each alert `kibana.alert.suppression.terms`
//! (`[{field, value}]` per `group_by` field, the values sorted, `null` when missing),
//! `kibana.alert.instance.id` = `objectHash([terms, ruleUuid, spaceId])`, `suppression.start`/`.end` =
//! the event's time and `docs_count` = 0. Alerts of one instance id are then folded into the earliest one
//! (`docs_count` counts the others), and an alert whose instance already has an open alert inside the
//! suppression window updates that alert instead of being created.
//!
//! Sequences (and samples, which Kibana receives as sequences) are suppressed through their shell
//! (`buildShellAlertSuppressionTermsAndFields`): terms and time are read from the shell document itself
//! (values as they stand there, a single value not wrapped in a list; the time from the shell's own
//! fields, so `@timestamp` is the shell's creation time), and the building blocks are written only with a
//! shell that is created.

use super::object_hash::object_hash;
use super::AlertDoc;
use crate::rules::Rule;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

pub const INSTANCE_ID: &str = "kibana.alert.instance.id";
pub const TERMS: &str = "kibana.alert.suppression.terms";
pub const START: &str = "kibana.alert.suppression.start";
pub const END: &str = "kibana.alert.suppression.end";
pub const DOCS_COUNT: &str = "kibana.alert.suppression.docs_count";

/// Kibana's limit on `group_by` fields (`AlertSuppressionGroupBy`: 1 to 3 fields).
pub const MAX_GROUP_BY: usize = 3;

/// What to do with events that lack a `group_by` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingFields {
    /// Kibana's default: group them under `value: null`.
    Suppress,
    /// Raise an ordinary alert (no suppression fields) for each of them.
    DoNotSuppress,
}

/// A rule's `alert_suppression`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    pub group_by: Vec<String>,
    /// `duration` in milliseconds; `None`: per rule execution.
    pub duration_ms: Option<i64>,
    pub missing_fields: MissingFields,
}

impl Suppression {
    /// The rule's suppression settings; `Ok(None)` when it has none. Accepts the shape of Kibana exports
    /// and detection-rules TOML alike (`group_by`, `duration: {value, unit}`, `missing_fields_strategy`).
    pub fn from_rule(rule: &Rule) -> Result<Option<Suppression>, String> {
        match &rule.alert_suppression {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Suppression::parse(v).map(Some),
        }
    }

    pub fn parse(v: &Value) -> Result<Suppression, String> {
        let obj = v.as_object().ok_or("`alert_suppression` must be an object with `group_by`")?;
        for k in obj.keys() {
            if !["group_by", "duration", "missing_fields_strategy"].contains(&k.as_str()) {
                return Err(format!("unknown key `{k}` in `alert_suppression` (expected group_by, duration, missing_fields_strategy)"));
            }
        }
        let group_by: Vec<String> = match obj.get("group_by") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|f| f.as_str().map(str::to_string).ok_or_else(|| format!("`alert_suppression.group_by` holds a non-string: {f}")))
                .collect::<Result<_, _>>()?,
            _ => return Err("`alert_suppression.group_by` must be a list of 1 to 3 field names".into()),
        };
        if group_by.is_empty() || group_by.len() > MAX_GROUP_BY {
            return Err(format!("`alert_suppression.group_by` has {} field(s); Kibana allows 1 to {MAX_GROUP_BY}", group_by.len()));
        }
        let duration_ms = match obj.get("duration") {
            None | Some(Value::Null) => None,
            Some(d) => {
                let value = d.get("value").and_then(Value::as_i64).filter(|v| *v >= 1).ok_or_else(|| {
                    format!("`alert_suppression.duration.value` must be a positive integer, got {}", d.get("value").unwrap_or(&Value::Null))
                })?;
                let unit_ms = match d.get("unit").and_then(Value::as_str) {
                    Some("s") => 1_000,
                    Some("m") => 60_000,
                    Some("h") => 3_600_000,
                    other => return Err(format!("`alert_suppression.duration.unit` must be \"s\", \"m\" or \"h\", got {other:?}")),
                };
                let ms = value.checked_mul(unit_ms).filter(|ms| *ms <= crate::limits::max_duration().num_milliseconds());
                Some(ms.ok_or_else(|| format!("`alert_suppression.duration` {value}{} is too long", d["unit"].as_str().unwrap_or("")))?)
            }
        };
        let missing_fields = match obj.get("missing_fields_strategy").and_then(Value::as_str) {
            None | Some("suppress") => MissingFields::Suppress,
            Some("doNotSuppress") => MissingFields::DoNotSuppress,
            Some(other) => return Err(format!("`alert_suppression.missing_fields_strategy` must be \"suppress\" or \"doNotSuppress\", got \"{other}\"")),
        };
        Ok(Suppression { group_by, duration_ms, missing_fields })
    }

    pub fn per_execution(&self) -> bool {
        self.duration_ms.is_none()
    }
}

/// The values of a field as the fields API lists them: arrays flattened, `null`s dropped; `None` when
/// there is none. Read from an alert's copied source; `@timestamp` is the event's (`original_time`),
/// not the alert's.
fn field_values(doc: &Value, path: &str) -> Option<Vec<Value>> {
    let path = if path == "@timestamp" { "kibana.alert.original_time" } else { path };
    let mut found = Vec::new();
    crate::event::collect_path(doc, path, &mut found);
    let mut out = Vec::new();
    fn flatten(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Null => {}
            Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
            other => out.push(other.clone()),
        }
    }
    found.iter().for_each(|v| flatten(v, &mut out));
    (!out.is_empty()).then_some(out)
}

/// lodash `sortBy(values)`: ascending, numbers numerically, strings by UTF-16 code units, stable.
fn sort_values(values: &mut [Value]) {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Bool(_) => 0,
            Value::Number(_) => 1,
            Value::String(_) => 2,
            _ => 3,
        }
    }
    values.sort_by(|a, b| match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(std::cmp::Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.encode_utf16().cmp(y.encode_utf16()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    });
}

/// `kibana.alert.suppression.terms` of an alert: one `{field, value}` per `group_by` field, in order.
pub fn terms(s: &Suppression, doc: &Value) -> Vec<Value> {
    s.group_by
        .iter()
        .map(|field| {
            let value = match field_values(doc, field) {
                Some(mut v) => {
                    sort_values(&mut v);
                    Value::Array(v)
                }
                None => Value::Null,
            };
            json!({"field": field, "value": value})
        })
        .collect()
}

/// Shell terms: lodash `robustGet` on the shell document — the value as it stands (a list sorted, a
/// single value kept as it is), `null` when missing.
pub fn shell_terms(s: &Suppression, doc: &Value) -> Vec<Value> {
    s.group_by
        .iter()
        .map(|field| {
            let value = match super::get_path(doc, field) {
                None | Some(Value::Null) => Value::Null,
                Some(Value::Array(a)) => {
                    let mut v = a.clone();
                    sort_values(&mut v);
                    Value::Array(v)
                }
                Some(other) => other.clone(),
            };
            json!({"field": field, "value": value})
        })
        .collect()
}

/// `kibana.alert.instance.id`: `objectHash([terms, ruleUuid, spaceId])`.
pub fn instance_id(terms: &[Value], rule_uuid: &str, space: &str) -> String {
    object_hash(&json!([terms, rule_uuid, space]))
}

/// The event time of an alert: the rule's timestamp field (`timestamp_override`, else `@timestamp`),
/// then the fallback (`@timestamp`), then the alert's own `@timestamp`, as an ISO string with ms.
fn suppression_time(rule: &Rule, doc: &Value, shell: bool) -> Option<String> {
    let fields = crate::detect::WindowFields::for_rule(rule);
    let first = |path: &str| -> Option<i64> {
        let v = if shell {
            match super::get_path(doc, path)? {
                Value::Array(a) => a.first()?.clone(),
                other => other.clone(),
            }
        } else {
            field_values(doc, path)?.into_iter().next()?
        };
        match v {
            Value::String(s) => crate::eql::value::parse_date_ms(&s),
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    };
    let ms = first(&fields.primary)
        .or_else(|| fields.fallback.as_deref().and_then(first))
        .or_else(|| doc.get("@timestamp").and_then(Value::as_str).and_then(crate::eql::value::parse_date_ms))?;
    chrono::DateTime::from_timestamp_millis(ms).map(super::document::iso_ms)
}

/// Adds the suppression fields to an event alert. Returns `false`, leaving the alert as it is, when
/// `doNotSuppress` applies (a `group_by` field is missing): Kibana then writes an ordinary alert.
pub fn annotate(s: &Suppression, rule: &Rule, rule_uuid: &str, space: &str, doc: &mut AlertDoc) -> bool {
    annotate_as(s, rule, rule_uuid, space, doc, false)
}

/// [`annotate`] for an event alert (`shell = false`) or a sequence's shell (`shell = true`).
pub fn annotate_as(s: &Suppression, rule: &Rule, rule_uuid: &str, space: &str, doc: &mut AlertDoc, shell: bool) -> bool {
    let terms = if shell { shell_terms(s, &doc.source) } else { terms(s, &doc.source) };
    if s.missing_fields == MissingFields::DoNotSuppress && terms.iter().any(|t| t["value"].is_null()) {
        return false;
    }
    let id = instance_id(&terms, rule_uuid, space);
    let time = suppression_time(rule, &doc.source, shell);
    if let Value::Object(m) = &mut doc.source {
        m.insert(INSTANCE_ID.into(), json!(id));
        m.insert(TERMS.into(), Value::Array(terms));
        m.insert(START.into(), json!(time));
        m.insert(END.into(), json!(time));
        m.insert(DOCS_COUNT.into(), json!(0));
    }
    true
}

fn str_field<'a>(doc: &'a Value, key: &str) -> &'a str {
    doc.get(key).and_then(Value::as_str).unwrap_or("")
}

fn count_field(doc: &Value) -> i64 {
    doc.get(DOCS_COUNT).and_then(Value::as_i64).unwrap_or(0)
}

/// Suppression within one execution: alerts ordered by suppression start; the first of each instance id
/// is kept and counts the others (`docs_count += theirs + 1`), its end moving to the latest end.
/// Returns (kept, suppressed).
pub fn suppress_in_memory(mut alerts: Vec<AlertDoc>) -> (Vec<AlertDoc>, Vec<AlertDoc>) {
    alerts.sort_by(|a, b| str_field(&a.source, START).cmp(str_field(&b.source, START)));
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut kept: Vec<AlertDoc> = Vec::new();
    let mut suppressed = Vec::new();
    for alert in alerts {
        let instance = str_field(&alert.source, INSTANCE_ID).to_string();
        match first.get(&instance) {
            Some(&i) => {
                let add = count_field(&alert.source) + 1;
                let end = str_field(&alert.source, END).to_string();
                let k = &mut kept[i].source;
                k[DOCS_COUNT] = json!(count_field(k) + add);
                if end.as_str() > str_field(k, END) {
                    k[END] = json!(end);
                }
                suppressed.push(alert);
            }
            None => {
                first.insert(instance, kept.len());
                kept.push(alert);
            }
        }
    }
    (kept, suppressed)
}

/// A suppressed alert already in the index: the newest open one of its instance id inside the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    pub id: String,
    pub index: String,
    pub execution_uuid: String,
    pub start: String,
    pub end: String,
    pub docs_count: i64,
}

impl Existing {
    /// Kibana's `isExistingDateGtEqThanAlert` on the end: the existing alert already reaches `end`
    /// (ISO strings compared as strings, as Kibana does).
    fn counts_up_to(&self, end: &str) -> bool {
        !self.end.is_empty() && self.end.as_str() >= end
    }

    /// From a search hit (`_id`, `_index`, `_source`).
    pub fn from_hit(hit: &Value) -> Option<(String, Existing)> {
        let src = &hit["_source"];
        let instance = src.get(INSTANCE_ID)?.as_str()?.to_string();
        Some((
            instance,
            Existing {
                id: hit["_id"].as_str()?.to_string(),
                index: hit["_index"].as_str().unwrap_or_default().to_string(),
                execution_uuid: str_field(src, "kibana.alert.rule.execution.uuid").to_string(),
                start: str_field(src, START).to_string(),
                end: str_field(src, END).to_string(),
                docs_count: count_field(src),
            },
        ))
    }
}

/// What to send for one execution's suppressible alerts.
#[derive(Debug, Default)]
pub struct MergePlan {
    /// Partial updates of existing alerts: (`_id`, `_index`, `doc`).
    pub updates: Vec<(String, String, Value)>,
    /// Alerts to create.
    pub creates: Vec<AlertDoc>,
    /// Alerts folded into another one (in memory, or into an existing alert): Kibana's suppressed count.
    pub suppressed: usize,
    /// Alerts an existing alert already counts (a repeated window): dropped without a trace.
    pub already_counted: usize,
}

/// The merge of `alerts` (new to the index by `_id`) with `existing` (by instance id), as the rule
/// registry's `alertWithSuppression` does it. `last_detected`: the update time written on merged alerts.
pub fn plan_merge(
    alerts: Vec<AlertDoc>,
    existing: &HashMap<String, Existing>,
    execution_uuid: &str,
    per_execution: bool,
    last_detected: &str,
) -> MergePlan {
    let mut plan = MergePlan::default();
    let before = alerts.len();
    // An alert whose end is not after its existing alert's end was counted by an earlier execution.
    let fresh: Vec<AlertDoc> = alerts
        .into_iter()
        .filter(|a| match existing.get(str_field(&a.source, INSTANCE_ID)) {
            None => true,
            Some(e) if e.execution_uuid == execution_uuid => true,
            Some(e) => !e.counts_up_to(str_field(&a.source, END)),
        })
        .collect();
    plan.already_counted = before - fresh.len();
    let (candidates, in_memory) = suppress_in_memory(fresh);
    plan.suppressed = in_memory.len();
    for alert in candidates {
        let e = existing.get(str_field(&alert.source, INSTANCE_ID));
        let merge_into = match e {
            Some(e) if per_execution => (e.execution_uuid == execution_uuid).then_some(e),
            other => other,
        };
        let Some(e) = merge_into else {
            plan.creates.push(alert);
            continue;
        };
        let mut doc = Map::new();
        let a_end = str_field(&alert.source, END);
        if !e.counts_up_to(a_end) {
            doc.insert(END.into(), json!(a_end));
        }
        let a_start = str_field(&alert.source, START);
        if e.execution_uuid == execution_uuid && !e.start.is_empty() && e.start.as_str() >= a_start {
            doc.insert(START.into(), json!(a_start));
        }
        doc.insert("kibana.alert.last_detected".into(), json!(last_detected));
        doc.insert(DOCS_COUNT.into(), json!(e.docs_count + count_field(&alert.source) + 1));
        plan.updates.push((e.id.clone(), e.index.clone(), Value::Object(doc)));
        plan.suppressed += 1;
    }
    plan
}

/// Offline (`esdetect test`): the in-execution part only — annotates the suppressible alerts (event
/// alerts, sequence shells) and folds each instance into its first alert; a folded shell's building
/// blocks are dropped with it. Returns the groups to print and how many alerts were suppressed.
pub fn apply_offline(
    s: &Suppression,
    rule: &Rule,
    rule_uuid: &str,
    space: &str,
    groups: Vec<Vec<AlertDoc>>,
) -> (Vec<Vec<AlertDoc>>, usize) {
    let Split { suppressible, mut blocks, mut plain } = split(s, rule, rule_uuid, space, groups);
    let (kept, suppressed) = suppress_in_memory(suppressible);
    plain.extend(kept.into_iter().map(|d| {
        let mut group = vec![];
        let bbs = blocks.remove(&d.id).unwrap_or_default();
        group.push(d);
        group.extend(bbs);
        group
    }));
    (plain, suppressed.len())
}

/// A run's alert groups, split for suppression.
#[derive(Debug, Default)]
pub struct Split {
    /// Annotated event alerts and sequence shells.
    pub suppressible: Vec<AlertDoc>,
    /// The building blocks of each suppressible shell, by shell id: written only with a created shell.
    pub blocks: HashMap<String, Vec<AlertDoc>>,
    /// Groups that stay ordinary (`doNotSuppress` with a field missing).
    pub plain: Vec<Vec<AlertDoc>>,
}

/// Annotates the event alerts and sequence shells of `groups` (a group is one event alert, or a shell
/// followed by its building blocks) and splits them.
pub fn split(s: &Suppression, rule: &Rule, rule_uuid: &str, space: &str, groups: Vec<Vec<AlertDoc>>) -> Split {
    let mut out = Split::default();
    for group in groups {
        let mut docs = group.into_iter();
        let Some(mut head) = docs.next() else { continue };
        let rest: Vec<AlertDoc> = docs.collect();
        let shell = !rest.is_empty();
        if annotate_as(s, rule, rule_uuid, space, &mut head, shell) {
            if shell {
                out.blocks.insert(head.id.clone(), rest);
            }
            out.suppressible.push(head);
        } else {
            let mut g = vec![head];
            g.extend(rest);
            out.plain.push(g);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str, instance: &str, start: &str, count: i64) -> AlertDoc {
        AlertDoc {
            id: id.into(),
            source: json!({INSTANCE_ID: instance, START: start, END: start, DOCS_COUNT: count, "kibana.alert.rule.execution.uuid": "x"}),
        }
    }

    #[test]
    fn parses_kibana_and_toml_shapes() {
        let s = Suppression::parse(&json!({"group_by": ["source.ip"], "duration": {"value": 5, "unit": "m"},
                                            "missing_fields_strategy": "doNotSuppress"})).unwrap();
        assert_eq!(s.duration_ms, Some(300_000));
        assert_eq!(s.missing_fields, MissingFields::DoNotSuppress);
        let s = Suppression::parse(&json!({"group_by": ["a", "b"]})).unwrap();
        assert!(s.per_execution());
        assert_eq!(s.missing_fields, MissingFields::Suppress);
        for bad in [json!({"group_by": []}), json!({"group_by": ["a","b","c","d"]}), json!({"group_by": ["a"], "duration": {"value": 5, "unit": "d"}}),
                    json!({"group_by": ["a"], "missing_fields_strategy": "x"}), json!({"group_by": ["a"], "oops": 1}), json!("a")] {
            assert!(Suppression::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn terms_sort_values_and_use_null_when_missing() {
        let s = Suppression::parse(&json!({"group_by": ["user.name", "host.name", "@timestamp"]})).unwrap();
        let doc = json!({"user": {"name": ["zed", "alice"]}, "kibana.alert.original_time": "2026-05-20T10:00:00.000Z", "@timestamp": "alert time"});
        let t = terms(&s, &doc);
        assert_eq!(t, vec![json!({"field": "user.name", "value": ["alice", "zed"]}), json!({"field": "host.name", "value": null}),
                           json!({"field": "@timestamp", "value": ["2026-05-20T10:00:00.000Z"]})]);
    }

    #[test]
    fn shell_terms_keep_single_values_and_sort_lists() {
        let s = Suppression::parse(&json!({"group_by": ["host.name", "related.user", "user.id"]})).unwrap();
        let shell = json!({"host": {"name": "ws01"}, "related.user": ["b", "a"]});
        assert_eq!(shell_terms(&s, &shell), vec![json!({"field": "host.name", "value": "ws01"}),
            json!({"field": "related.user", "value": ["a", "b"]}), json!({"field": "user.id", "value": null})]);
    }

    #[test]
    fn in_memory_keeps_the_earliest_and_counts_the_rest() {
        let (kept, suppressed) = suppress_in_memory(vec![
            alert("b", "i1", "2026-01-01T00:02:00.000Z", 0),
            alert("a", "i1", "2026-01-01T00:01:00.000Z", 0),
            alert("c", "i2", "2026-01-01T00:03:00.000Z", 0),
            alert("d", "i1", "2026-01-01T00:05:00.000Z", 0),
        ]);
        assert_eq!(kept.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(kept[0].source[DOCS_COUNT], 2);
        assert_eq!(kept[0].source[END], "2026-01-01T00:05:00.000Z");
        assert_eq!(suppressed.len(), 2);
    }

    #[test]
    fn merge_updates_existing_drops_counted_and_respects_per_execution() {
        let existing: HashMap<String, Existing> = [(
            "i1".to_string(),
            Existing { id: "old".into(), index: "idx".into(), execution_uuid: "prev".into(),
                       start: "2026-01-01T00:00:00.000Z".into(), end: "2026-01-01T00:02:00.000Z".into(), docs_count: 3 },
        )].into();
        let alerts = vec![alert("a", "i1", "2026-01-01T00:01:00.000Z", 0), alert("b", "i1", "2026-01-01T00:04:00.000Z", 0),
                          alert("c", "i2", "2026-01-01T00:04:00.000Z", 0)];
        let plan = plan_merge(alerts.clone(), &existing, "now-exec", false, "T");
        assert_eq!(plan.already_counted, 1); // a ends before the existing end
        assert_eq!(plan.updates.len(), 1);
        let (id, index, doc) = &plan.updates[0];
        assert_eq!((id.as_str(), index.as_str()), ("old", "idx"));
        assert_eq!(doc[DOCS_COUNT], 4);
        assert_eq!(doc[END], "2026-01-01T00:04:00.000Z");
        assert!(doc.get(START).is_none());
        assert_eq!(plan.creates.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["c"]);
        // Per execution: an alert of another execution is never merged into.
        let plan = plan_merge(alerts, &existing, "now-exec", true, "T");
        assert!(plan.updates.is_empty());
        assert_eq!(plan.creates.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    }
}
