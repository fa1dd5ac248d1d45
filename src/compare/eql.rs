//! `compare --against eql`: checks esdetect's engine against Elasticsearch's own `_eql/search` on the
//! user's data. Each window's query is sent as Kibana sends it (spec alert-documents §13: the rule's
//! query verbatim, the window and rule filters and exceptions as `filter`, `size = max_signals`,
//! `timestamp_field`, `event_category_field`, `tiebreaker_field`), and its hits or sequences are matched
//! with esdetect's results by their events. `fields` is not sent: it only changes what each hit carries.
//!
//! Responses are read with the shapes of Elasticsearch's EQL REST API tests (`hits.events[]._index/_id`,
//! `hits.sequences[].events[]`, `missing: true` placeholders); this path has not run against a live
//! `_eql` endpoint (the test node has none). A cluster without the endpoint is refused with a message.

use super::reasons::Explainer;
use super::results::{group_results, AlertResult, EventRef};
use super::{event_names, kibana, CompareError};
use crate::config::SequenceMode;
use crate::detect::scan::{evaluate_rules_on_cluster, AlertOutput};
use crate::detect::{cluster_mapping, PreparedRule, RunOptions, RunStatus, Window, WindowFields};
use crate::es::EsClient;
use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use serde::Serialize;
use serde_json::{json, Value};

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn range(field: &str, w: &Window) -> Value {
    json!({"range": {field: {"lte": iso(w.to), "gte": iso(w.from), "format": "strict_date_optional_time"}}})
}

/// The `_eql/search` body Kibana sends for `rule` over `window` (spec alert-documents §13).
pub fn request_body(prepared: &PreparedRule, window: &Window) -> Value {
    let rule = &prepared.rule;
    let fields = WindowFields::for_rule(rule);
    let range_filter = match &fields.fallback {
        None => range(&fields.primary, window),
        Some(fallback) => json!({"bool": {"minimum_should_match": 1, "should": [
            range(&fields.primary, window),
            {"bool": {"filter": [range(fallback, window), {"bool": {"must_not": {"exists": {"field": fields.primary}}}}]}}
        ]}}),
    };
    let rule_filters: Vec<Value> = rule.filters.as_ref().and_then(Value::as_array).cloned().unwrap_or_default();
    let exceptions: Vec<Value> = prepared.exceptions.active_at(window.to).query_clause().into_iter().collect();
    let es_filter = json!({"bool": {"must": [], "filter": rule_filters, "should": [], "must_not": exceptions}});
    let mut body = json!({
        "size": rule.max_signals,
        "query": rule.query,
        "filter": {"bool": {"filter": [range_filter, es_filter]}},
        "allow_partial_search_results": true,
    });
    if let Some(f) = &rule.timestamp_field {
        body["timestamp_field"] = json!(f);
    }
    if let Some(f) = &rule.event_category_override {
        body["event_category_field"] = json!(f);
    }
    if let Some(f) = rule.tiebreaker_field.as_ref().filter(|f| !f.is_empty()) {
        body["tiebreaker_field"] = json!(f);
    }
    body
}

/// Whether an answer says the cluster has no `_eql/search` endpoint (no x-pack EQL plugin).
pub fn is_missing_endpoint(status: u16, body: &Value) -> bool {
    let error = body.get("error").and_then(Value::as_str).unwrap_or_default();
    (status == 400 || status == 404 || status == 405) && error.starts_with("no handler found") && error.contains("_eql")
}

/// The results of an `_eql/search` answer: one event list per hit or sequence, in response order
/// (`missing` placeholders of missing-event stages left out).
pub fn parse_response(body: &Value) -> Result<Vec<Vec<EventRef>>, CompareError> {
    if body.get("is_partial") == Some(&Value::Bool(true)) || body.get("timed_out") == Some(&Value::Bool(true)) {
        return Err(CompareError::Answer(
            "the _eql/search answer is partial or timed out (shard failures?); its results cannot be compared".into(),
        ));
    }
    let hits = body.get("hits").ok_or_else(|| CompareError::Answer("the _eql/search answer has no `hits`".into()))?;
    let event = |e: &Value| -> Option<EventRef> {
        if e.get("missing") == Some(&Value::Bool(true)) {
            return None;
        }
        Some((e.get("_index")?.as_str()?.to_string(), e.get("_id")?.as_str()?.to_string()))
    };
    if let Some(sequences) = hits.get("sequences").and_then(Value::as_array) {
        return Ok(sequences
            .iter()
            .map(|s| s.get("events").and_then(Value::as_array).map(|es| es.iter().filter_map(event).collect()).unwrap_or_default())
            .collect());
    }
    if let Some(events) = hits.get("events").and_then(Value::as_array) {
        return Ok(events.iter().filter_map(event).map(|e| vec![e]).collect());
    }
    Err(CompareError::Answer("eql query response should have either `sequences` or `events` but had neither".into()))
}

/// A result only one side has.
#[derive(Debug, Clone, Serialize)]
pub struct EqlOneSided {
    pub events: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EqlWindow {
    pub window: Window,
    pub eql_results: usize,
    pub esdetect_results: usize,
    pub both: usize,
    pub eql_only: Vec<EqlOneSided>,
    pub esdetect_only: Vec<EqlOneSided>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EqlReport {
    pub rule_id: String,
    pub rule_name: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub windows: Vec<EqlWindow>,
}

impl EqlReport {
    pub fn agrees(&self) -> bool {
        self.windows.iter().all(|w| w.eql_only.is_empty() && w.esdetect_only.is_empty())
    }
}

/// Sends one window's search; a missing endpoint or an error answer is a usage/connection problem.
async fn search(client: &EsClient, prepared: &PreparedRule, window: &Window) -> Result<Vec<Vec<EventRef>>, CompareError> {
    let path = format!("/{}/_eql/search", prepared.rule.index.join(","));
    let query = [("allow_no_indices", "true".to_string())];
    let (status, body) = client
        .raw(Method::Post, &path, &query, Some(&request_body(prepared, window)))
        .await
        .map_err(CompareError::es("could not send the EQL search"))?;
    if is_missing_endpoint(status, &body) {
        return Err(CompareError::Usage(
            "this cluster has no `_eql/search` endpoint (EQL is part of Elasticsearch's default distribution, \
             not of a bare server); `--against eql` needs it — compare against Kibana's alerts instead"
                .into(),
        ));
    }
    if status != 200 {
        return Err(CompareError::Answer(format!("the EQL search failed with HTTP {status}: {body}")));
    }
    parse_response(&body)
}

/// Runs the rule's schedule windows over `[from, to]` through both `_eql/search` and esdetect.
pub async fn compare_with_eql(
    client: &EsClient,
    rule: &PreparedRule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    opts: &RunOptions,
) -> Result<EqlReport, CompareError> {
    if from >= to {
        return Err(CompareError::Usage(format!("--from ({from}) must be before --to ({to})")));
    }
    let mut prepared = rule.clone();
    prepared.sequence_mode = SequenceMode::Kibana;
    let windows = kibana::schedule_windows(&[], from, to, &rule.rule.interval, rule.rule.lookback)?;
    let mut eql = Vec::with_capacity(windows.len());
    for w in &windows {
        eql.push(search(client, &prepared, w).await?);
    }
    let runs: Vec<(&PreparedRule, Window)> = windows.iter().map(|w| (&prepared, *w)).collect();
    let outcomes = evaluate_rules_on_cluster(client, &runs, opts, &Utc::now, AlertOutput::Return).await;
    if let Some(failed) = outcomes.iter().find(|o| o.summary.status == RunStatus::Failed) {
        return Err(CompareError::Run(format!("a window: {}", failed.summary.errors.join("; "))));
    }
    let mapping = cluster_mapping(client, &prepared.rule.index, opts).await.map_err(CompareError::Mapping)?;
    let explainer = Explainer { client, prepared: &prepared, mapping: &mapping, opts };
    let mut reports = Vec::new();
    for ((window, theirs), outcome) in windows.iter().zip(&eql).zip(&outcomes) {
        let mine: Vec<AlertResult> =
            outcome.groups.iter().flat_map(|g| group_results(g.iter().map(|d| (d.id.clone(), d.source.clone())))).collect();
        let mut report = EqlWindow {
            window: *window,
            eql_results: theirs.len(),
            esdetect_results: mine.len(),
            both: 0,
            eql_only: Vec::new(),
            esdetect_only: Vec::new(),
        };
        for events in theirs {
            if mine.iter().any(|m| &m.events == events) {
                report.both += 1;
                continue;
            }
            let as_result = AlertResult { id: String::new(), docs: Vec::new(), events: events.clone() };
            let reason = explainer.why_not_esdetect(&as_result, window, &outcome.summary).await?;
            report.eql_only.push(EqlOneSided { events: event_names(events), reason });
        }
        for m in &mine {
            if !theirs.contains(&m.events) {
                let reason = if theirs.len() as u64 >= prepared.rule.max_signals as u64 {
                    format!("the _eql/search answer reached size = max_signals ({})", theirs.len())
                } else {
                    "no reason found: Elasticsearch's EQL does not return these events for this window".to_string()
                };
                report.esdetect_only.push(EqlOneSided { events: event_names(&m.events), reason });
            }
        }
        reports.push(report);
    }
    Ok(EqlReport { rule_id: prepared.rule.rule_id.clone(), rule_name: prepared.rule.name.clone(), from, to, windows: reports })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_sequences_in_the_shapes_of_the_rest_tests() {
        // `hits.events.N._id` / `hits.sequences.N.join_keys` / `hits.sequences.N.events.M._id`.
        let events = json!({"timed_out": false, "hits": {"total": {"value": 2, "relation": "eq"}, "events": [
            {"_index": "eql_test", "_id": "1", "_source": {"user": "SYSTEM"}},
            {"_index": "eql_test", "_id": "2", "_source": {"user": "SYSTEM"}}]}});
        let r = parse_response(&events).unwrap();
        assert_eq!(r, vec![vec![("eql_test".to_string(), "1".to_string())], vec![("eql_test".to_string(), "2".to_string())]]);
        let sequences = json!({"timed_out": false, "hits": {"total": {"value": 1, "relation": "eq"}, "sequences": [
            {"join_keys": ["SYSTEM"], "events": [{"_index": "eql_test", "_id": "1", "_source": {}}, {"_index": "eql_test", "_id": "2", "_source": {}}]},
            {"join_keys": [true], "events": [{"_index": "", "_id": "", "missing": true}, {"_index": "eql_test", "_id": "3", "_source": {}}]}]}});
        let r = parse_response(&sequences).unwrap();
        assert_eq!(r[0].len(), 2);
        assert_eq!(r[1], vec![("eql_test".to_string(), "3".to_string())], "missing placeholders are left out");
    }

    #[test]
    fn neither_events_nor_sequences_nor_a_partial_answer_is_compared() {
        assert!(parse_response(&json!({"hits": {"total": {"value": 0}}})).unwrap_err().to_string().contains("neither"));
        assert!(parse_response(&json!({"is_partial": true, "hits": {"events": []}})).is_err());
    }

    #[test]
    fn a_bare_server_has_no_eql_endpoint() {
        let body = json!({"error": "no handler found for uri [/logs-*/_eql/search?allow_no_indices=true] and method [POST]"});
        assert!(is_missing_endpoint(400, &body));
        assert!(!is_missing_endpoint(400, &json!({"error": {"type": "verification_exception"}})));
    }

    #[test]
    fn the_request_is_kibanas() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/credential_access_machine_account_smb_relay.toml");
        let rule = crate::rules::load_file(&path).unwrap();
        let prepared = crate::detect::prepare::prepare_rule(rule, &crate::config::Config::default()).unwrap();
        let w = Window { from: "2026-05-20T09:56:00Z".parse().unwrap(), to: "2026-05-20T10:05:00Z".parse().unwrap() };
        let body = request_body(&prepared, &w);
        assert_eq!(body["size"], 100);
        assert_eq!(body["query"], json!(prepared.rule.query));
        let range = &body["filter"]["bool"]["filter"][0]["bool"];
        assert_eq!(range["should"][0]["range"]["event.ingested"]["gte"], "2026-05-20T09:56:00.000Z");
        assert_eq!(range["should"][1]["bool"]["filter"][1], json!({"bool": {"must_not": {"exists": {"field": "event.ingested"}}}}));
        assert_eq!(body["filter"]["bool"]["filter"][1], json!({"bool": {"must": [], "filter": [], "should": [], "must_not": []}}));
        assert!(body.get("tiebreaker_field").is_none() && body.get("timestamp_field").is_none());
    }
}
