//! Reading Kibana's side: the rule's alerts in a time range, and the execution windows they imply.
//!
//! Kibana records no window in an alert, so an execution's window is rebuilt from the fields every alert
//! of it carries: the end is the execution's earliest `kibana.alert.rule.execution.timestamp` (the
//! time its alerts were persisted — Kibana's search ran just before, so the real end can be a few
//! seconds earlier), shifted by `kibana.alert.rule.to` (`now`, or `now-<N>`), and the start lies
//! `kibana.alert.rule.from` (`now-9m`) before it. Executions that wrote no alert leave no trace here;
//! [`schedule_windows`] covers such stretches with windows of the rule's own schedule.

use super::results::{group_results, AlertResult};
use super::CompareError;
use crate::detect::Window;
use crate::es::EsClient;
use crate::rules::{parse_interval, parse_now_minus};
use chrono::{DateTime, Duration, Utc};
use elasticsearch::http::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Kibana alerts read per page (point in time + `search_after`, so any number of alerts is read).
pub const KIBANA_ALERTS_PAGE: usize = 5_000;

/// How the rule is recognised among Kibana's alerts.
#[derive(Debug, Clone)]
pub enum RuleMatch {
    RuleId(String),
    Uuid(String),
}

/// One Kibana execution that wrote alerts: its id, rebuilt window and results.
#[derive(Debug, Clone)]
pub struct Execution {
    pub uuid: String,
    pub window: Window,
    pub results: Vec<AlertResult>,
}

/// Reads the rule's alerts whose execution timestamp is in `[from, to]`, all of them, in pages of
/// [`KIBANA_ALERTS_PAGE`]. Errors are connection or request problems (the index missing included),
/// worded for the user.
pub async fn read_alerts(
    client: &EsClient,
    index: &str,
    rule: &RuleMatch,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(String, Value)>, CompareError> {
    read_alerts_paged(client, index, rule, from, to, KIBANA_ALERTS_PAGE).await
}

/// [`read_alerts`] with a chosen page size: one point in time over `index` (so pages are consistent
/// while Kibana keeps writing), sorted by `_shard_doc`, each page continuing with `search_after`.
pub async fn read_alerts_paged(
    client: &EsClient,
    index: &str,
    rule: &RuleMatch,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    page: usize,
) -> Result<Vec<(String, Value)>, CompareError> {
    let by_rule = match rule {
        RuleMatch::RuleId(id) => json!({"term": {"kibana.alert.rule.rule_id": id}}),
        RuleMatch::Uuid(uuid) => json!({"term": {"kibana.alert.rule.uuid": uuid}}),
    };
    let query = json!({"bool": {"filter": [by_rule, {"range": {"kibana.alert.rule.execution.timestamp": {
        "gte": from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "lte": to.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "format": "strict_date_optional_time"}}}]}});
    let (status, resp) = client
        .raw(Method::Post, &format!("/{index}/_pit"), &[("keep_alive", "2m".to_string())], None)
        .await
        .map_err(CompareError::es(format!("could not read Kibana's alerts from `{index}`")))?;
    if status == 404 {
        return Err(CompareError::Usage(format!("Kibana's alerts index `{index}` does not exist; name it with --kibana-alerts")));
    }
    let mut pit = match (status, resp.get("id").and_then(Value::as_str)) {
        (200, Some(id)) => id.to_string(),
        _ => return Err(CompareError::Answer(format!("opening a point in time on `{index}` failed with HTTP {status}: {resp}"))),
    };
    let mut out = Vec::new();
    let mut after: Option<Value> = None;
    let result = loop {
        let mut body = json!({
            "size": page.max(1),
            "track_total_hits": false,
            "query": query,
            "pit": {"id": pit, "keep_alive": "2m"},
            "sort": [{"_shard_doc": "asc"}]
        });
        if let Some(a) = &after {
            body["search_after"] = a.clone();
        }
        let (status, resp) = match client.raw(Method::Post, "/_search", &[], Some(&body)).await {
            Ok(r) => r,
            Err(e) => break Err(CompareError::es(format!("could not read Kibana's alerts from `{index}`"))(e)),
        };
        if status != 200 {
            break Err(CompareError::Answer(format!("reading Kibana's alerts from `{index}` failed with HTTP {status}: {resp}")));
        }
        if resp.pointer("/_shards/failed").and_then(Value::as_u64).unwrap_or(0) > 0 {
            break Err(CompareError::Answer(format!("reading Kibana's alerts from `{index}` had shard failures: {}", resp["_shards"])));
        }
        if let Some(id) = resp.get("pit_id").and_then(Value::as_str) {
            pit = id.to_string();
        }
        let hits = resp.pointer("/hits/hits").and_then(Value::as_array).cloned().unwrap_or_default();
        let n = hits.len();
        after = hits.last().and_then(|h| h.get("sort").cloned());
        out.extend(hits.into_iter().filter_map(|h| Some((h.get("_id")?.as_str()?.to_string(), h.get("_source")?.clone()))));
        if n < page.max(1) || after.is_none() {
            break Ok(out);
        }
    };
    // Closing is best effort: the point in time expires on its own.
    let _ = client.raw(Method::Delete, "/_pit", &[], Some(&json!({"id": pit}))).await;
    result
}

/// Which of `ids` exist in `index` (any execution, any time): results Kibana wrote outside the range.
pub async fn existing_ids(client: &EsClient, index: &str, ids: &[String]) -> Result<Vec<String>, CompareError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let body = json!({"size": ids.len(), "_source": false, "query": {"ids": {"values": ids}}});
    let (status, resp) = client
        .raw(Method::Post, &format!("/{index}/_search"), &[], Some(&body))
        .await
        .map_err(CompareError::es(format!("could not look up alert ids in `{index}`")))?;
    if status != 200 {
        return Err(CompareError::Answer(format!("looking up alert ids in `{index}` failed with HTTP {status}: {resp}")));
    }
    Ok(resp
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .map(|h| h.iter().filter_map(|h| h.get("_id")?.as_str().map(String::from)).collect())
        .unwrap_or_default())
}

fn str_at<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    crate::alert::get_path(doc, path).and_then(Value::as_str)
}

/// Groups the alerts into results and those into executions (by `kibana.alert.rule.execution.uuid`),
/// each with its rebuilt window; `default_from`/`default_to` (the rule's own `from`/`to`) apply when an
/// alert lacks them. Ordered by window end.
pub fn executions(docs: Vec<(String, Value)>, default_from: &str, default_to: &str) -> Result<Vec<Execution>, CompareError> {
    let mut ends: BTreeMap<String, (DateTime<Utc>, String, String)> = BTreeMap::new();
    for (id, doc) in &docs {
        let uuid = str_at(doc, "kibana.alert.rule.execution.uuid")
            .ok_or_else(|| CompareError::Answer(format!("Kibana alert {id} has no kibana.alert.rule.execution.uuid")))?;
        let ts = str_at(doc, "kibana.alert.rule.execution.timestamp")
            .ok_or_else(|| CompareError::Answer(format!("Kibana alert {id} has no kibana.alert.rule.execution.timestamp")))?;
        let ts = DateTime::parse_from_rfc3339(ts)
            .map_err(|e| CompareError::Answer(format!("Kibana alert {id}: kibana.alert.rule.execution.timestamp `{ts}`: {e}")))?
            .with_timezone(&Utc);
        let from = str_at(doc, "kibana.alert.rule.from").unwrap_or(default_from).to_string();
        let to = str_at(doc, "kibana.alert.rule.to").unwrap_or(default_to).to_string();
        let e = ends.entry(uuid.to_string()).or_insert((ts, from, to));
        e.0 = e.0.min(ts);
    }
    let mut out = Vec::new();
    for (uuid, (ts, from, to)) in ends {
        let back = parse_now_minus(&from).map_err(|e| CompareError::Answer(format!("kibana.alert.rule.from of execution {uuid}: {e}")))?;
        let ahead = parse_now_minus(&to).map_err(|e| CompareError::Answer(format!("kibana.alert.rule.to of execution {uuid}: {e}")))?;
        out.push(Execution { uuid, window: Window { from: ts - back, to: ts - ahead }, results: Vec::new() });
    }
    for result in group_results(docs) {
        let uuid = result.field_str("kibana.alert.rule.execution.uuid").unwrap_or_default().to_string();
        if let Some(e) = out.iter_mut().find(|e| e.uuid == uuid) {
            e.results.push(result);
        }
    }
    out.sort_by_key(|e| e.window.to);
    Ok(out)
}

/// Windows of the rule's schedule (`interval`, looking back `lookback`) covering the parts of
/// `[from, to]` no Kibana execution window covers, so results in executions that wrote nothing are seen.
/// Each uncovered stretch `[a, b]` gets windows ending at `a + interval`, `a + 2·interval`, …, the last
/// one ending at `b`.
pub fn schedule_windows(covered: &[Window], from: DateTime<Utc>, to: DateTime<Utc>, interval: &str, lookback: Duration) -> Result<Vec<Window>, CompareError> {
    let step = parse_interval(interval).map_err(|e| CompareError::Usage(format!("the rule's interval: {e}")))?;
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = covered.iter().map(|w| (w.from, w.to)).collect();
    spans.sort();
    let mut gaps = Vec::new();
    let mut cursor = from;
    for (a, b) in spans {
        if a > cursor && cursor < to {
            gaps.push((cursor, a.min(to)));
        }
        cursor = cursor.max(b);
    }
    if cursor < to {
        gaps.push((cursor, to));
    }
    let mut out = Vec::new();
    for (a, b) in gaps {
        let mut end = a;
        loop {
            end = (end + step).min(b);
            out.push(Window { from: end - lookback, to: end });
            if end >= b {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn alert(exec: &str, ts: &str, event: &str) -> Value {
        json!({"kibana.alert.rule.execution.uuid": exec, "kibana.alert.rule.execution.timestamp": ts,
               "kibana.alert.rule.from": "now-9m", "kibana.alert.rule.to": "now",
               "kibana.alert.ancestors": [{"id": event, "index": "i", "type": "event", "depth": 0}]})
    }

    #[test]
    fn an_execution_window_ends_at_its_earliest_persistence_time() {
        let docs = vec![
            ("a".to_string(), alert("x", "2026-05-20T10:05:00.020Z", "e1")),
            ("b".to_string(), alert("x", "2026-05-20T10:05:00.010Z", "e2")),
            ("c".to_string(), alert("y", "2026-05-20T10:00:00.000Z", "e3")),
        ];
        let execs = executions(docs, "now-6m", "now").unwrap();
        assert_eq!(execs.iter().map(|e| e.uuid.as_str()).collect::<Vec<_>>(), ["y", "x"]);
        assert_eq!(execs[1].window.to, t("2026-05-20T10:05:00.010Z"));
        assert_eq!(execs[1].window.from, t("2026-05-20T09:56:00.010Z"));
        assert_eq!(execs[1].results.len(), 2);
    }

    #[test]
    fn schedule_windows_cover_only_the_gaps() {
        let covered = [Window { from: t("2026-05-20T10:00:00Z"), to: t("2026-05-20T10:09:00Z") }];
        let w = schedule_windows(&covered, t("2026-05-20T09:50:00Z"), t("2026-05-20T10:20:00Z"), "5m", Duration::minutes(9)).unwrap();
        let ends: Vec<_> = w.iter().map(|w| w.to).collect();
        assert_eq!(ends, [t("2026-05-20T09:55:00Z"), t("2026-05-20T10:00:00Z"), t("2026-05-20T10:14:00Z"), t("2026-05-20T10:19:00Z"), t("2026-05-20T10:20:00Z")]);
        assert_eq!(w[0].from, t("2026-05-20T09:46:00Z"));
        assert!(schedule_windows(&covered, t("2026-05-20T10:01:00Z"), t("2026-05-20T10:08:00Z"), "5m", Duration::minutes(9)).unwrap().is_empty());
    }
}
