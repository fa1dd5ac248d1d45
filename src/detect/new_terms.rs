//! New terms rules (`type = "new_terms"`) against the cluster, as Kibana 8.19's aggregation approach runs
//! them: (1) a composite aggregation pages through the values of `new_terms_fields` (1–3 fields) seen in
//! the rule's window; (2) for each page, the same values are aggregated over `[history_window_start,
//! window end]` and only those first seen after the window start are new; (3) the oldest event of each new
//! value (combination) becomes an alert with `kibana.alert.new_terms`. `docs/new_terms.md` specifies the
//! requests, the document and the ids.
//!
//! Phases 2 and 3 are one composite aggregation (`first_seen` + the oldest document as `top_hits`) over the
//! page's values, which is what Kibana does for several fields; for one field Kibana sends two `terms`
//! aggregations with `include` — the same values and the same documents. Kibana's `bucket_selector`
//! (`first_seen > window start`) needs a script language, so the comparison is applied to the buckets here.

use super::prepare::PreparedRule;
use super::query_rule::QueryRule;
use super::scan::{AlertOutput, ClusterOutcome};
use super::summary::RunSummary;
use super::{alert_context, rule_mapping, write_plain_and_finish, RunOptions, Window, MAX_SIGNALS_WARNING};
use crate::alert::{self, AlertDoc};
use crate::es::{EsClient, EsError};
use crate::event::Event;
use crate::rules::{Rule, RuleError};
use crate::sink::es::existing_ids;
use crate::source::es::{range_filter, WindowQuery};
use chrono::{DateTime, Duration, Utc};
use elasticsearch::http::Method;
use serde_json::{json, Value};
use std::time::Instant;

/// The rule's new terms settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTermsSpec {
    pub fields: Vec<String>,
    /// `history_window_start` as written (`now-14d`).
    pub history_window_start: String,
    /// How far before the window end the history starts.
    pub history: Duration,
}

fn setting(rule: &Rule, key: &str) -> Option<Value> {
    rule.extra.get(key).map(crate::rules::toml_to_json).or_else(|| rule.export_extra.get(key).cloned())
}

fn err(rule: &Rule, key: &str, message: impl Into<String>) -> RuleError {
    let line = if rule.query_json.is_some() { rule.query_origin.0 } else { 1 };
    RuleError::new(&rule.path, (line, 1), Some(key), message)
}

/// Reads `new_terms_fields` and `history_window_start`.
pub fn spec(rule: &Rule) -> Result<NewTermsSpec, RuleError> {
    let fields: Vec<String> = match setting(rule, "new_terms_fields") {
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => return Err(err(rule, "new_terms_fields", "a new terms rule needs `new_terms_fields` (1 to 3 field names)")),
    };
    if fields.is_empty() || fields.len() > 3 {
        return Err(err(rule, "new_terms_fields", format!("`new_terms_fields` must list 1 to 3 fields, got {}", fields.len())));
    }
    let history_window_start = match setting(rule, "history_window_start") {
        Some(Value::String(s)) => s,
        _ => return Err(err(rule, "history_window_start", "a new terms rule needs `history_window_start` (e.g. \"now-14d\")")),
    };
    let history = crate::rules::parse_now_minus(&history_window_start)
        .map_err(|m| err(rule, "history_window_start", format!("invalid `history_window_start`: {m}")))?;
    if history <= rule.lookback {
        return Err(err(
            rule,
            "history_window_start",
            format!("`history_window_start` ({history_window_start}) must be earlier than `from` ({}), as Kibana requires", rule.from),
        ));
    }
    Ok(NewTermsSpec { fields, history_window_start, history })
}

/// Kibana's new terms alert id: `objectHash([_index, _id, String(_version), space + ":" + rule uuid,
/// newTerms])` — SHA-1 (hex) of the `object-hash` package's serialisation, `_version` being undefined.
pub fn alert_id(index: &str, id: &str, space: &str, rule_uuid: &str, new_terms: &[Value]) -> String {
    crate::alert::object_hash::object_hash(&json!([index, id, "undefined", format!("{space}:{rule_uuid}"), new_terms]))
}

fn time_field(rule: &Rule) -> String {
    rule.timestamp_override.clone().unwrap_or_else(|| "@timestamp".into())
}

fn sources(fields: &[String]) -> Vec<Value> {
    fields.iter().map(|f| json!({f.as_str(): {"terms": {"field": f}}})).collect()
}

/// Phase 1: the values seen in the window, one composite page.
pub fn recent_terms_body(query: &Value, wq: &WindowQuery, fields: &[String], after: Option<&Value>) -> Value {
    let mut composite = json!({"sources": sources(fields), "size": 10000});
    if let Some(a) = after {
        composite["after"] = a.clone();
    }
    json!({"size": 0, "query": {"bool": {"filter": [query, range_filter(wq)]}}, "aggs": {"new_terms": {"composite": composite}}})
}

/// Phases 2–3: the page's values over the history window, with when each was first seen and its oldest event.
pub fn history_body(query: &Value, history_wq: &WindowQuery, fields: &[String], keys: &[Value], time_field: &str) -> Value {
    let should: Vec<Value> = keys
        .iter()
        .map(|k| json!({"bool": {"filter": fields.iter().map(|f| json!({"term": {f.as_str(): k[f]}})).collect::<Vec<_>>()}}))
        .collect();
    json!({
        "size": 0,
        "query": {"bool": {"filter": [query, range_filter(history_wq), {"bool": {"should": should, "minimum_should_match": 1}}]}},
        "aggs": {"new_terms": {
            "composite": {"sources": sources(fields), "size": 10000},
            "aggs": {
                "first_seen": {"min": {"field": time_field}},
                "docs": {"top_hits": {"size": 1, "sort": [{time_field: "asc"}]}}
            }
        }}
    })
}

/// The window search's query with the rule's filters and exceptions folded in.
fn rule_filter(prepared: &PreparedRule, q: &QueryRule, window: &Window, mapping: &crate::eql::mapping::Mapping) -> (WindowQuery, Value) {
    let mut wq = super::query_rule::window_query(prepared, q, window, 1, mapping);
    let mut query = wq.pushdown.take().unwrap_or_else(|| json!({"match_all": {}}));
    for extra in wq.extra_filters.drain(..) {
        if let Some(filter) = query["bool"]["filter"].as_array_mut() {
            filter.push(extra);
        }
    }
    (wq, query)
}

/// What `esdetect explain` prints for a new terms rule.
pub fn explain(prepared: &PreparedRule, q: &QueryRule, t: &NewTermsSpec, window: &Window, mapping: &crate::eql::mapping::Mapping) -> String {
    let (wq, query) = rule_filter(prepared, q, window, mapping);
    let mut hq = wq.clone();
    hq.from = window.to - t.history;
    let indices = crate::es::path::indices(&prepared.rule.index);
    let example: Vec<Value> = vec![json!(t.fields.iter().map(|f| (f.clone(), json!("<value>"))).collect::<serde_json::Map<_, _>>())];
    format!(
        "rule:      {} ({})\nfile:      {}\nindices:   {}\nrule uuid: {}   space: {}   alerts alias: {}\n\
         window:    [{}, {}]   history: [{}, {}] ({})\nnew terms: [{}]; max_signals {}\n\n\
         1. POST /{indices}/_search   (values seen in the window, repeated with `after`)\n{}\n\
         2. POST /{indices}/_search   (per page: the page's values over the history, first_seen and oldest event;\n   \
         values first seen after the window start are new)\n{}\n\
         3. POST /{}/_search   (dedup lookup), then POST /_bulk with `create`\n",
        prepared.rule.name,
        prepared.rule.rule_id,
        prepared.rule.path.display(),
        prepared.rule.index.join(" "),
        prepared.rule_uuid,
        prepared.space,
        prepared.alias,
        window.from.to_rfc3339(),
        window.to.to_rfc3339(),
        hq.from.to_rfc3339(),
        window.to.to_rfc3339(),
        t.history_window_start,
        t.fields.join(", "),
        prepared.rule.max_signals,
        serde_json::to_string_pretty(&recent_terms_body(&query, &wq, &t.fields, None)).unwrap_or_default(),
        serde_json::to_string_pretty(&history_body(&query, &hq, &t.fields, &example, &time_field(&prepared.rule))).unwrap_or_default(),
        prepared.alias,
    )
}

/// One of the two searches of a new terms run failed; `stage` is `window` or `history`.
#[derive(Debug, thiserror::Error)]
pub enum NewTermsSearchError {
    #[error("the new terms search of the {stage} failed: {source}")]
    Cluster {
        stage: &'static str,
        #[source]
        source: EsError,
    },
    #[error("the new terms search of the {stage} failed: shard failures: {failures}")]
    ShardFailures { stage: &'static str, failures: Value },
}

async fn search(client: &EsClient, indices: &[String], body: &Value, stage: &'static str) -> Result<Value, NewTermsSearchError> {
    let path = format!("/{}/_search", crate::es::path::indices(indices));
    let params = [("ignore_unavailable", "true".to_string()), ("allow_no_indices", "true".to_string())];
    let failed = |source| NewTermsSearchError::Cluster { stage, source };
    let (status, resp) = client.raw(Method::Post, &path, &params, Some(body)).await.map_err(failed)?;
    if status != 200 {
        return Err(failed(EsError::from_response(&format!("POST {path}"), status, &resp)));
    }
    if resp["_shards"]["failed"].as_u64().unwrap_or(0) > 0 {
        return Err(NewTermsSearchError::ShardFailures { stage, failures: resp["_shards"]["failures"].clone() });
    }
    Ok(resp)
}

/// Runs one new terms rule over one window; writes (or returns) its alerts.
#[allow(clippy::too_many_arguments)]
pub async fn run_on_cluster(
    client: &EsClient,
    prepared: &PreparedRule,
    q: &QueryRule,
    t: &NewTermsSpec,
    window: Window,
    opts: &RunOptions,
    now: &(dyn Fn() -> DateTime<Utc> + Sync),
    output: AlertOutput,
) -> ClusterOutcome {
    let started = Instant::now();
    let done = |summary: RunSummary| ClusterOutcome { summary, groups: Vec::new() };
    let mut summary = RunSummary::new(prepared, window);
    let indices = &prepared.rule.index;
    let mapping = match rule_mapping(client, indices, opts).await {
        Ok(m) => m,
        Err(e) => return done(summary.fail(e, started)),
    };
    let (wq, query) = rule_filter(prepared, q, &window, &mapping);
    let mut hq = wq.clone();
    hq.from = window.to - t.history;
    let tf = time_field(&prepared.rule);
    let from_ms = window.from.timestamp_millis();
    let ctx = alert_context(prepared, opts, now());
    let max = prepared.rule.max_signals as usize;
    let mut new_docs: Vec<AlertDoc> = Vec::new();
    let mut after: Option<Value> = None;
    let search_started = Instant::now();
    'pages: loop {
        let page = match search(client, indices, &recent_terms_body(&query, &wq, &t.fields, after.as_ref()), "window").await {
            Ok(r) => r,
            Err(e) => return done(summary.fail(e, started)),
        };
        let agg = &page["aggregations"]["new_terms"];
        // No after_key: every value was seen (Kibana stops here too).
        let Some(next) = agg.get("after_key").filter(|k| !k.is_null()).cloned() else { break };
        let keys: Vec<Value> = agg["buckets"].as_array().into_iter().flatten().map(|b| b["key"].clone()).collect();
        summary.candidates += keys.len() as u64;
        for chunk in keys.chunks(1000) {
            let history = match search(client, indices, &history_body(&query, &hq, &t.fields, chunk, &tf), "history").await {
                Ok(r) => r,
                Err(e) => return done(summary.fail(e, started)),
            };
            let mut candidates = Vec::new();
            for b in history["aggregations"]["new_terms"]["buckets"].as_array().into_iter().flatten() {
                if b["first_seen"]["value"].as_f64().map(|v| v as i64 > from_ms) != Some(true) {
                    continue;
                }
                let Some(hit) = b["docs"]["hits"]["hits"].get(0) else { continue };
                let terms: Vec<Value> = t.fields.iter().map(|f| b["key"][f].clone()).collect();
                let event = Event::new(
                    hit["_index"].as_str().unwrap_or_default(),
                    hit["_id"].as_str().unwrap_or_default(),
                    hit["_source"].clone(),
                );
                let Some(mut doc) = alert::event_alerts(&prepared.rule, &ctx, std::slice::from_ref(&event)).pop() else { continue };
                let id = alert_id(&event.index, &event.id, &ctx.space_id, &ctx.rule_uuid, &terms);
                if let Some(obj) = doc.source.as_object_mut() {
                    obj.insert("kibana.alert.uuid".into(), json!(id));
                    obj.insert("kibana.alert.new_terms".into(), Value::Array(terms));
                }
                doc.id = id;
                candidates.push(doc);
            }
            summary.matches += candidates.len() as u64;
            // Kibana counts created alerts against max_signals: already written ones do not count.
            if output == AlertOutput::Write && !candidates.is_empty() {
                let ids: Vec<String> = candidates.iter().map(|d| d.id.clone()).collect();
                match existing_ids(client, &prepared.alias, &ids).await {
                    Ok(present) => {
                        summary.duplicates += candidates.iter().filter(|d| present.contains(&d.id)).count() as u64;
                        candidates.retain(|d| !present.contains(&d.id));
                    }
                    Err(e) => return done(summary.fail(format!("could not look up existing alerts in `{}`: {e}", prepared.alias), started)),
                }
            }
            for d in candidates {
                if new_docs.len() == max {
                    summary.truncated = true;
                    break 'pages;
                }
                new_docs.push(d);
            }
        }
        after = Some(next);
    }
    summary.durations.search_ms = search_started.elapsed().as_millis() as u64;
    summary.kept = new_docs.len() as u64;
    summary.alerts_built = new_docs.len() as u64;
    if summary.truncated {
        summary.warnings.push(MAX_SIGNALS_WARNING.to_string());
    }
    let groups: Vec<Vec<AlertDoc>> = new_docs.into_iter().map(|d| vec![d]).collect();
    if output == AlertOutput::Return {
        return ClusterOutcome { summary: summary.finish(started), groups };
    }
    write_plain_and_finish(client, prepared, opts, groups, summary, Instant::now(), started).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};

    #[test]
    fn alert_id_is_sha1_of_object_hash_serialisation() {
        // Written out by hand from object-hash's rules: arrays "array:<n>:", strings "string:<len>:<s>".
        let text = "array:5:string:5:idx-1string:3:abcstring:9:undefinedstring:9:default:uarray:2:string:3:ws1number:7";
        let want = hex::encode(Sha1::digest(text.as_bytes()));
        assert_eq!(alert_id("idx-1", "abc", "default", "u", &[json!("ws1"), json!(7)]), want);
    }
}
