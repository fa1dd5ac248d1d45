//! Threshold rules (`type = "threshold"`) against the cluster, as Kibana 8.19's threshold executor runs
//! them: the rule's query (KQL or Lucene) and filters, the window and a "signal history" filter go into
//! one aggregation search; each group of `threshold.field` values (0–3 fields) with at least
//! `threshold.value` events (and, with `threshold.cardinality`, that many distinct values of its field)
//! becomes one alert carrying `kibana.alert.threshold_result`. `docs/threshold.md` specifies the request,
//! the document and the ids.
//!
//! Signal history: events of a group that an earlier alert already counted (at or before that alert's
//! `original_time`, the group's latest event) are filtered out of the search, so overlapping windows do not
//! alert on the same events twice. Kibana keeps the history in its task state and rebuilds it from the
//! rule's alerts when the state is empty; esdetect always rebuilds it from the alerts index.

use super::prepare::PreparedRule;
use super::query_rule::QueryRule;
use super::scan::{AlertOutput, ClusterOutcome};
use super::summary::RunSummary;
use super::{alert_context, rule_mapping, write_plain_and_finish, RunOptions, Window, MAX_SIGNALS_WARNING};
use crate::alert::{self, AlertDoc};
use crate::eql::mapping::Mapping;
use crate::es::{EsClient, EsError};
use crate::event::Event;
use crate::rules::{Rule, RuleError};
use crate::source::es::{iso_ms, range_filter, WindowQuery};
use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Instant;

/// Kibana's namespace for threshold "event" ids (`calculateThresholdSignalUuid`).
pub const THRESHOLD_ID_NAMESPACE: &str = "0684ec03-7201-4ee0-8ee0-3a3f6b2479b2";

/// The rule's `threshold` object, normalised as Kibana does (`field` as a list, `""` → no field).
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdSpec {
    pub fields: Vec<String>,
    pub value: u64,
    /// `cardinality[0]`: distinct values of `field` a group needs (Kibana reads only the first entry).
    pub cardinality: Option<(String, u64)>,
}

/// Reads `threshold` from the rule (a `[rule.threshold]` table or an export's `threshold` object).
pub fn spec(rule: &Rule) -> Result<ThresholdSpec, RuleError> {
    let raw = match (rule.extra.get("threshold"), rule.export_extra.get("threshold")) {
        (Some(t), _) => crate::rules::toml_to_json(t),
        (None, Some(v)) => v.clone(),
        (None, None) => return Err(err(rule, "a threshold rule needs `threshold` (`[rule.threshold]` with `field` and `value`)")),
    };
    let fields: Vec<String> = match raw.get("field") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| err(rule, "`threshold.field` must be a list of field names")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(err(rule, "`threshold.field` must be a field name or a list of them")),
    };
    if fields.len() > 3 {
        return Err(err(rule, format!("`threshold.field` has {} fields; Kibana allows at most 3", fields.len())));
    }
    let value = raw
        .get("value")
        .and_then(|v| v.as_u64())
        .filter(|v| *v >= 1)
        .ok_or_else(|| err(rule, "`threshold.value` must be a whole number of at least 1"))?;
    let cardinality = match raw.get("cardinality").and_then(|c| c.as_array()).and_then(|c| c.first()) {
        None => None,
        Some(c) => {
            let field = c.get("field").and_then(|f| f.as_str()).ok_or_else(|| err(rule, "`threshold.cardinality` entries need `field`"))?;
            let n = c.get("value").and_then(|f| f.as_u64()).ok_or_else(|| err(rule, "`threshold.cardinality` entries need a whole-number `value`"))?;
            Some((field.to_string(), n))
        }
    };
    Ok(ThresholdSpec { fields, value, cardinality })
}

fn err(rule: &Rule, message: impl Into<String>) -> RuleError {
    let line = if rule.query_json.is_some() { rule.query_origin.0 } else { 1 };
    RuleError::new(&rule.path, (line, 1), Some("threshold"), message)
}

/// Kibana's `calculateThresholdSignalUuid`: UUIDv5 over rule_id + run start + fields + sorted values.
pub fn threshold_event_id(rule_id: &str, started_at: DateTime<Utc>, fields: &[String], key: &str) -> String {
    let ns = uuid::Uuid::parse_str(THRESHOLD_ID_NAMESPACE).expect("constant uuid");
    let base = format!("{rule_id}{}{}{key}", iso_ms(&started_at), fields.join(","));
    uuid::Uuid::new_v5(&ns, base.as_bytes()).to_string()
}

/// JavaScript's `String(value)` of a bucket key value.
fn js_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// The field Kibana aggregates times on: the override when there is one, else `@timestamp`.
pub(crate) fn time_field(rule: &Rule) -> String {
    rule.timestamp_override.clone().unwrap_or_else(|| "@timestamp".into())
}

/// One group already alerted on: its terms and the latest event time the alert covered.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub terms: Vec<(String, Value)>,
    pub last_ms: i64,
}

/// Kibana's `getThresholdBucketFilters`: leave out each alerted group's events up to its last signal.
pub fn bucket_filter(history: &[HistoryEntry], time_field: &str) -> Value {
    let filters: Vec<Value> = history
        .iter()
        .map(|h| {
            let at = DateTime::from_timestamp_millis(h.last_ms).unwrap_or_default();
            let mut f = vec![json!({"range": {time_field: {"lte": iso_ms(&at)}}})];
            f.extend(h.terms.iter().map(|(field, v)| json!({"term": {field.as_str(): js_string(v)}})));
            json!({"bool": {"filter": f}})
        })
        .collect();
    json!({"bool": {"must_not": filters}})
}

/// The search body of one aggregation page (also what `explain` prints). Kibana's request has
/// `bucket_selector`s for the count and cardinality checks; they need a script language, so esdetect
/// applies the same two comparisons to the returned buckets instead (same groups).
pub fn aggregation_body(query: &Value, wq: &WindowQuery, t: &ThresholdSpec, time_field: &str, after: Option<&Value>) -> Value {
    let mut leaf = Map::new();
    leaf.insert("max_timestamp".into(), json!({"max": {"field": time_field}}));
    leaf.insert("min_timestamp".into(), json!({"min": {"field": time_field}}));
    if let Some((field, _)) = &t.cardinality {
        leaf.insert("cardinality_count".into(), json!({"cardinality": {"field": field}}));
    }
    let aggs = if t.fields.is_empty() {
        Value::Object(leaf)
    } else {
        let sources: Vec<Value> = t.fields.iter().map(|f| json!({f.as_str(): {"terms": {"field": f}}})).collect();
        let mut composite = json!({"sources": sources, "size": 10000});
        if let Some(a) = after {
            composite["after"] = a.clone();
        }
        json!({"thresholdTerms": {"composite": composite, "aggs": Value::Object(leaf)}})
    };
    json!({
        "size": 0,
        "query": {"bool": {"filter": [query, range_filter(wq)]}},
        "aggs": aggs,
        "sort": [{time_field: {"order": "desc", "unmapped_type": "date"}}],
    })
}

/// A group over the threshold.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    pub key: Vec<(String, Value)>,
    pub count: u64,
    /// Latest and earliest event time (ISO, as Elasticsearch's `value_as_string`).
    pub max: Option<String>,
    pub min: Option<String>,
    pub cardinality: Option<u64>,
}

fn bucket_of(b: &Value, fields: &[String], count: u64) -> Bucket {
    Bucket {
        key: fields.iter().map(|f| (f.clone(), b["key"][f].clone())).collect(),
        count,
        max: b["max_timestamp"]["value_as_string"].as_str().map(str::to_string),
        min: b["min_timestamp"]["value_as_string"].as_str().map(str::to_string),
        cardinality: b["cardinality_count"]["value"].as_u64(),
    }
}

pub(crate) fn passes(b: &Bucket, t: &ThresholdSpec) -> bool {
    b.count >= t.value && t.cardinality.as_ref().map(|(_, n)| b.cardinality.unwrap_or(0) >= *n).unwrap_or(true)
}

/// The rule's earlier threshold alerts (its signal history) could not be read from its alerts alias.
#[derive(Debug, thiserror::Error)]
#[error("could not read the rule's earlier threshold alerts from `{alias}`: {source}")]
pub struct SignalHistoryError {
    pub alias: String,
    #[source]
    pub source: EsError,
}

/// Rebuilds the signal history from the rule's alerts whose `original_time` is in the window or later.
async fn signal_history(client: &EsClient, prepared: &PreparedRule, t: &ThresholdSpec, from: DateTime<Utc>) -> Result<Vec<HistoryEntry>, SignalHistoryError> {
    let body = json!({
        "size": 10000,
        "sort": [{"@timestamp": "desc"}],
        "query": {"bool": {"must": [
            {"term": {"kibana.alert.rule.uuid": prepared.rule_uuid}},
            {"range": {"kibana.alert.original_time": {"gte": iso_ms(&from), "format": "strict_date_optional_time"}}}
        ]}}
    });
    let path = format!("/{}/_search", crate::es::path::indices(std::slice::from_ref(&prepared.alias)));
    let failed = |source| SignalHistoryError { alias: prepared.alias.clone(), source };
    let (status, resp) =
        client.raw(Method::Post, &path, &[("ignore_unavailable", "true".into())], Some(&body)).await.map_err(failed)?;
    if status != 200 {
        return Err(failed(EsError::from_response(&format!("POST {path}"), status, &resp)));
    }
    let mut out: BTreeMap<String, HistoryEntry> = BTreeMap::new();
    for h in resp["hits"]["hits"].as_array().into_iter().flatten() {
        let src = &h["_source"];
        let terms: Vec<(String, Value)> =
            t.fields.iter().map(|f| (f.clone(), alert::get_path(src, f).cloned().unwrap_or(Value::Null))).collect();
        let Some(ot) = src["kibana.alert.original_time"].as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()) else { continue };
        let ms = ot.timestamp_millis();
        let mut sorted = terms.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let hash = sorted.iter().map(|(f, v)| format!("{f}:{}", js_string(v))).collect::<Vec<_>>().join(",");
        let e = out.entry(hash).or_insert(HistoryEntry { terms, last_ms: ms });
        e.last_ms = e.last_ms.max(ms);
    }
    Ok(out.into_values().collect())
}

/// The window search without aggregations (indices, range filter, exceptions), shared with `explain`.
pub fn window_query(prepared: &PreparedRule, q: &QueryRule, window: &Window, mapping: &Mapping, history: &[HistoryEntry]) -> (WindowQuery, Value) {
    let mut wq = super::query_rule::window_query(prepared, q, window, 1, mapping);
    let mut query = wq.pushdown.take().unwrap_or_else(|| json!({"match_all": {}}));
    // Kibana passes the history filter as one more rule filter, and the exceptions in the same query.
    if let Some(filter) = query["bool"]["filter"].as_array_mut() {
        filter.push(bucket_filter(history, &time_field(&prepared.rule)));
    }
    for extra in wq.extra_filters.drain(..) {
        if let Some(filter) = query["bool"]["filter"].as_array_mut() {
            filter.push(extra);
        }
    }
    (wq, query)
}

/// What `esdetect explain` prints for a threshold rule (the history filter shown empty).
pub fn explain(prepared: &PreparedRule, q: &QueryRule, t: &ThresholdSpec, window: &Window, mapping: &Mapping) -> String {
    let (wq, query) = window_query(prepared, q, window, mapping, &[]);
    let body = aggregation_body(&query, &wq, t, &time_field(&prepared.rule), None);
    let card = t.cardinality.as_ref().map(|(f, n)| format!(", at least {n} distinct `{f}`")).unwrap_or_default();
    format!(
        "rule:      {} ({})\nfile:      {}\nindices:   {}\nrule uuid: {}   space: {}   alerts alias: {}\n\
         window:    [{}, {}] on {}\nthreshold: groups of [{}] with at least {} event(s){card}; max_signals {}\n\n\
         1. POST /{}/_search   (signal history: this rule's alerts with original_time ≥ window start)\n\
         2. POST /{}/_search?ignore_unavailable=true&allow_no_indices=true   (repeated with `after` until the composite aggregation ends)\n{}\n\
         3. POST /_bulk with `create` to {}\n",
        prepared.rule.name,
        prepared.rule.rule_id,
        prepared.rule.path.display(),
        prepared.rule.index.join(" "),
        prepared.rule_uuid,
        prepared.space,
        prepared.alias,
        window.from.to_rfc3339(),
        window.to.to_rfc3339(),
        wq.window_field,
        t.fields.join(", "),
        t.value,
        prepared.rule.max_signals,
        prepared.alias,
        crate::es::path::indices(&prepared.rule.index),
        serde_json::to_string_pretty(&body).unwrap_or_default(),
        prepared.alias,
    )
}

/// The alert of one group (Kibana: `transformBucketIntoHit` then `wrapHits`).
pub(crate) fn bucket_alert(prepared: &PreparedRule, t: &ThresholdSpec, b: &Bucket, ctx: &alert::AlertContext, started_at: DateTime<Utc>, window: &Window) -> AlertDoc {
    let index = prepared.rule.index.join(",");
    let mut values: Vec<String> = b.key.iter().map(|(_, v)| js_string(v)).collect();
    values.sort();
    let id = threshold_event_id(&prepared.rule.rule_id, started_at, &t.fields, &values.join(","));
    let mut source = Map::new();
    source.insert("@timestamp".into(), b.max.clone().map(Value::String).unwrap_or(Value::Null));
    for (f, v) in &b.key {
        source.insert(f.clone(), v.clone());
    }
    let mut doc = alert::event_alert(&prepared.rule, ctx, &Event::new(index, id, Value::Object(source)));
    let from = b
        .min
        .as_deref()
        .and_then(|m| DateTime::parse_from_rfc3339(m).ok())
        .map(|d| iso_ms(&d.with_timezone(&Utc)))
        .unwrap_or_else(|| iso_ms(&window.from));
    let mut result = Map::new();
    if let Some((field, _)) = &t.cardinality {
        result.insert("cardinality".into(), json!([{"field": field, "value": b.cardinality}]));
    }
    result.insert("count".into(), json!(b.count));
    result.insert("from".into(), json!(from));
    result.insert("terms".into(), Value::Array(b.key.iter().map(|(f, v)| json!({"field": f, "value": v})).collect()));
    if let Some(obj) = doc.source.as_object_mut() {
        obj.insert("kibana.alert.threshold_result".into(), Value::Object(result));
        // The rule's normalised `threshold` parameter (Kibana reads `threshold.field` back for its history).
        if let Some(params) = obj.get_mut("kibana.alert.rule.parameters").and_then(|p| p.as_object_mut()) {
            let cardinality: Vec<Value> =
                t.cardinality.iter().map(|(f, n)| json!({"field": f, "value": n})).collect();
            params.insert("threshold".into(), json!({"field": t.fields, "value": t.value, "cardinality": cardinality}));
        }
    }
    doc
}

/// Runs one threshold rule over one window; writes (or returns) its alerts.
#[allow(clippy::too_many_arguments)]
pub async fn run_on_cluster(
    client: &EsClient,
    prepared: &PreparedRule,
    q: &QueryRule,
    t: &ThresholdSpec,
    window: Window,
    opts: &RunOptions,
    now: &(dyn Fn() -> DateTime<Utc> + Sync),
    output: AlertOutput,
) -> ClusterOutcome {
    let started = Instant::now();
    let done = |summary: RunSummary| ClusterOutcome { summary, groups: Vec::new() };
    let mut summary = RunSummary::new(prepared, window);
    let started_at = now();
    let indices = &prepared.rule.index;
    let mapping = match rule_mapping(client, indices, opts).await {
        Ok(m) => m,
        Err(e) => return done(summary.fail(e, started)),
    };
    let history = match signal_history(client, prepared, t, window.from).await {
        Ok(h) => h,
        Err(e) => return done(summary.fail(e, started)),
    };
    let (wq, query) = window_query(prepared, q, &window, &mapping, &history);
    let tf = time_field(&prepared.rule);
    let path = format!("/{}/_search", crate::es::path::indices(indices));
    let params = [("ignore_unavailable", "true".to_string()), ("allow_no_indices", "true".to_string())];
    let max = prepared.rule.max_signals as usize;
    let mut buckets: Vec<Bucket> = Vec::new();
    let mut after: Option<Value> = None;
    let search_started = Instant::now();
    loop {
        let body = aggregation_body(&query, &wq, t, &tf, after.as_ref());
        let (status, resp) = match client.raw(Method::Post, &path, &params, Some(&body)).await {
            Ok(r) => r,
            Err(e) => return done(summary.fail(format!("could not search the window: {e}"), started)),
        };
        if status != 200 {
            return done(summary.fail(format!("the threshold search failed: HTTP {status}: {resp}"), started));
        }
        if resp["_shards"]["failed"].as_u64().unwrap_or(0) > 0 {
            return done(summary.fail(format!("shard failures while searching the window: {}", resp["_shards"]["failures"]), started));
        }
        if t.fields.is_empty() {
            let count = resp["hits"]["total"]["value"].as_u64().unwrap_or(0);
            summary.fetched = count;
            let b = bucket_of(&resp["aggregations"], &[], count);
            if passes(&b, t) {
                buckets.push(b);
            }
            break;
        }
        let agg = &resp["aggregations"]["thresholdTerms"];
        for b in agg["buckets"].as_array().into_iter().flatten() {
            let count = b["doc_count"].as_u64().unwrap_or(0);
            summary.fetched += count;
            let b = bucket_of(b, &t.fields, count);
            if passes(&b, t) {
                buckets.push(b);
            }
        }
        match agg.get("after_key") {
            Some(k) if !k.is_null() && buckets.len() <= max && agg["buckets"].as_array().map(|a| !a.is_empty()).unwrap_or(false) => {
                after = Some(k.clone())
            }
            _ => break,
        }
    }
    summary.durations.search_ms = search_started.elapsed().as_millis() as u64;
    summary.candidates = buckets.len() as u64;
    summary.matches = buckets.len() as u64;
    if buckets.len() > max {
        buckets.truncate(max);
        summary.truncated = true;
        summary.warnings.push(MAX_SIGNALS_WARNING.to_string());
    }
    summary.kept = buckets.len() as u64;
    let ctx = alert_context(prepared, opts, started_at);
    let groups: Vec<Vec<AlertDoc>> = buckets.iter().map(|b| vec![bucket_alert(prepared, t, b, &ctx, started_at, &window)]).collect();
    summary.alerts_built = groups.len() as u64;
    if output == AlertOutput::Return {
        return ClusterOutcome { summary: summary.finish(started), groups };
    }
    write_plain_and_finish(client, prepared, opts, groups, summary, Instant::now(), started).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_event_id_follows_kibanas_formula() {
        let at = DateTime::parse_from_rfc3339("2026-05-20T10:05:00.123Z").unwrap().with_timezone(&Utc);
        let ns = uuid::Uuid::parse_str("0684ec03-7201-4ee0-8ee0-3a3f6b2479b2").unwrap();
        let want = uuid::Uuid::new_v5(&ns, b"r-12026-05-20T10:05:00.123Zsource.ip,user.name10.0.0.5,bob").to_string();
        assert_eq!(threshold_event_id("r-1", at, &["source.ip".into(), "user.name".into()], "10.0.0.5,bob"), want);
    }

    #[test]
    fn bucket_filter_excludes_alerted_groups_up_to_their_last_event() {
        let h = [HistoryEntry { terms: vec![("source.ip".into(), json!("10.0.0.5")), ("port".into(), json!(445))], last_ms: 1_779_271_200_000 }];
        assert_eq!(
            bucket_filter(&h, "@timestamp"),
            json!({"bool": {"must_not": [{"bool": {"filter": [
                {"range": {"@timestamp": {"lte": "2026-05-20T10:00:00.000Z"}}},
                {"term": {"source.ip": "10.0.0.5"}},
                {"term": {"port": "445"}}
            ]}}]}})
        );
    }
}
