//! Writing the alerts of a rule with `alert_suppression` (event alerts, and sequence shells with their
//! building blocks): what the rule registry's
//! `alertWithSuppression` does in Kibana, on esdetect's create-only writer.
//!
//! 1. Ordinary groups (`doNotSuppress` with a field missing) are written as usual ([`write_alerts`]).
//! 2. Suppressible alerts whose `_id` already exists are dropped (duplicates, as for every write).
//! 3. The newest open (not `closed`) alert of each instance id whose `kibana.alert.start` is inside the
//!    suppression window (`now - duration`, or the execution's window start per execution) is read,
//!    collapsed on `kibana.alert.instance.id`.
//! 4. [`plan_merge`] decides: existing alerts get a bulk `update` (`last_detected`, suppression end,
//!    `docs_count`), the rest are created through [`write_alerts`].
//!
//! Idempotency is Kibana's: an alert whose suppression end is not after the existing alert's end is
//! taken as already counted, so a repeated window does not count its events twice. Kibana sends the
//! updates and creates in one bulk request; esdetect sends the updates first, then the creates.

use super::es::{existing_ids, write_alerts, SinkError, WriteOptions, WriteReport, KIBANA_ALIAS_PREFIX};
use crate::alert::suppression::{plan_merge, Existing, DOCS_COUNT, END, INSTANCE_ID, START, TERMS};
use crate::alert::AlertDoc;
use crate::es::answer::{BulkAnswer, SearchAnswer};
use crate::es::EsClient;
use crate::es::{Method, Refresh};
use serde_json::{json, Value};
use std::collections::HashMap;

/// What one suppressed write did.
#[derive(Debug, Default)]
pub struct SuppressedReport {
    /// The creates (ordinary and suppressible alerts together).
    pub write: WriteReport,
    /// Existing alerts updated with newly suppressed events.
    pub updated: usize,
    /// Alerts folded into another one (Kibana's suppressed count).
    pub suppressed: usize,
    /// Alerts an existing alert had already counted (a window run again).
    pub already_counted: usize,
}

/// One execution's alerts. `window_start`: start of the suppression window (ISO); `per_execution`: only
/// alerts of this execution are merged into; `now`: `kibana.alert.last_detected` of merged alerts.
pub struct SuppressedWrite<'a> {
    pub alias: &'a str,
    pub execution_uuid: &'a str,
    pub window_start: String,
    pub per_execution: bool,
    pub now: String,
}

/// The mapping the merge step searches and collapses on. Added to esdetect's own aliases when missing
/// (their template may predate suppression); Kibana's alias has these fields already.
fn suppression_properties() -> Value {
    json!({"properties": {
        INSTANCE_ID: {"type": "keyword"},
        TERMS: {"properties": {"field": {"type": "keyword"}, "value": {"type": "keyword"}}},
        START: {"type": "date"}, END: {"type": "date"}, DOCS_COUNT: {"type": "long"}
    }})
}

async fn ensure_mapping(client: &EsClient, alias: &str) -> Result<(), SinkError> {
    if alias.starts_with(KIBANA_ALIAS_PREFIX) {
        return Ok(());
    }
    let path = format!("/{}/_mapping", crate::es::path::segment(alias));
    let (status, resp) = client.raw(Method::Put, &path, &[], Some(&expand(suppression_properties()))).await?;
    if !(200..300).contains(&status) {
        return Err(crate::es::EsError::from_response("add the suppression fields to the alerts mapping", status, &resp).into());
    }
    Ok(())
}

/// Dotted property names into nested `properties` objects, as `_mapping` wants them.
fn expand(v: Value) -> Value {
    let mut root = serde_json::Map::new();
    if let Value::Object(props) = &v["properties"] {
        for (path, leaf) in props {
            let mut node = &mut root;
            let parts: Vec<&str> = path.split('.').collect();
            for (i, part) in parts.iter().enumerate() {
                if i + 1 == parts.len() {
                    node.insert(part.to_string(), leaf.clone());
                } else {
                    let entry = node.entry(part.to_string()).or_insert_with(|| json!({"properties": {}}));
                    node = entry["properties"].as_object_mut().expect("properties object");
                }
            }
        }
    }
    json!({"properties": root})
}

/// The newest open alert per instance id inside the suppression window.
async fn existing_alerts(client: &EsClient, w: &SuppressedWrite<'_>, alerts: &[AlertDoc]) -> Result<HashMap<String, Existing>, SinkError> {
    let instances: Vec<&str> =
        alerts.iter().filter_map(|a| a.source.get(INSTANCE_ID).and_then(Value::as_str)).collect();
    let body = json!({
        "size": alerts.len(),
        "query": {"bool": {"filter": [
            {"range": {"kibana.alert.start": {"gte": w.window_start}}},
            {"terms": {INSTANCE_ID: instances}},
            {"bool": {"must_not": {"term": {"kibana.alert.workflow_status": "closed"}}}}
        ]}},
        "collapse": {"field": INSTANCE_ID},
        "sort": [{"kibana.alert.start": {"order": "desc"}}]
    });
    let path = format!("/{}/_search", crate::es::path::segment(w.alias));
    let (status, resp) = client.raw(Method::Post, &path, &[], Some(&body)).await?;
    if !(200..300).contains(&status) {
        return Err(crate::es::EsError::from_response("search suppressed alerts", status, &resp).into());
    }
    let resp: SearchAnswer<Value> = serde_json::from_value(resp)
        .map_err(|e| crate::es::EsError::Decode { what: "search suppressed alerts".into(), detail: e.to_string() })?;
    if resp.shards.failed > 0 {
        return Err(SinkError::Malformed(format!("suppressed alert search had shard failures: {}", resp.shards)));
    }
    Ok(resp.hits.hits.iter().filter_map(Existing::from_hit).collect())
}

async fn bulk_update(client: &EsClient, updates: &[(String, String, Value)]) -> Result<usize, SinkError> {
    if updates.is_empty() {
        return Ok(0);
    }
    let mut lines = Vec::with_capacity(updates.len() * 2);
    for (id, index, doc) in updates {
        lines.push(json!({"update": {"_id": id, "_index": index}}));
        lines.push(json!({"doc": doc}));
    }
    let resp: BulkAnswer = client.bulk("bulk update suppressed alerts", None, &lines, Refresh::True).await?;
    let mut ok = 0;
    let mut failed = Vec::new();
    for r in resp.items.iter().filter_map(|item| item.result("update")) {
        match &r.error {
            None if r.is_success() => ok += 1,
            error => failed.push(format!(
                "{}: {}",
                r.id.as_deref().unwrap_or("?"),
                error.as_ref().map(ToString::to_string).unwrap_or_else(|| format!("status {}", r.status))
            )),
        }
    }
    if !failed.is_empty() {
        return Err(SinkError::Malformed(format!("{} suppressed alert update(s) failed: {}", failed.len(), failed.join("; "))));
    }
    Ok(ok)
}

/// Writes one execution's alerts with suppression. `suppressible`: annotated event alerts; `plain`:
/// groups written as ordinary alerts.
pub async fn write_suppressed(
    client: &EsClient,
    w: &SuppressedWrite<'_>,
    suppressible: Vec<AlertDoc>,
    mut blocks: HashMap<String, Vec<AlertDoc>>,
    plain: Vec<Vec<(String, Value)>>,
    opts: &WriteOptions,
) -> Result<SuppressedReport, SinkError> {
    let mut report = SuppressedReport::default();
    if !plain.is_empty() {
        report.write = write_alerts(client, w.alias, plain, opts).await?;
    }
    if suppressible.is_empty() {
        return Ok(report);
    }
    ensure_mapping(client, w.alias).await?;
    let ids: Vec<String> = suppressible.iter().map(|a| a.id.clone()).collect();
    let present = existing_ids(client, w.alias, &ids).await?;
    let (dups, fresh): (Vec<AlertDoc>, Vec<AlertDoc>) = suppressible.into_iter().partition(|a| present.contains(&a.id));
    report.write.duplicates += dups.len();
    if fresh.is_empty() {
        return Ok(report);
    }
    let existing = existing_alerts(client, w, &fresh).await?;
    let plan = plan_merge(fresh, &existing, w.execution_uuid, w.per_execution, &w.now);
    report.suppressed = plan.suppressed;
    report.already_counted = plan.already_counted;
    report.updated = bulk_update(client, &plan.updates).await?;
    if !plan.creates.is_empty() {
        // A created shell takes its building blocks along (one group: written together).
        let groups = plan
            .creates
            .into_iter()
            .map(|d| {
                let bbs = blocks.remove(&d.id).unwrap_or_default();
                std::iter::once(d).chain(bbs).map(|d| (d.id, d.source)).collect()
            })
            .collect();
        let created = write_alerts(client, w.alias, groups, opts).await?;
        report.write.created += created.created;
        report.write.created_ids.extend(created.created_ids);
        report.write.duplicates += created.duplicates;
        report.write.failed.extend(created.failed);
    }
    Ok(report)
}

/// A rule run's alert groups written with the rule's suppression: annotates the event alerts
/// ([`crate::alert::suppression::split`]) and writes them with [`write_suppressed`]. The suppression
/// window starts `duration` before the run's persist time, or at the run's window start per execution.
pub async fn write_rule_alerts(
    client: &EsClient,
    alias: &str,
    s: &crate::alert::suppression::Suppression,
    rule: &crate::rules::Rule,
    ctx: &crate::alert::AlertContext,
    window_from: chrono::DateTime<chrono::Utc>,
    groups: Vec<Vec<(String, Value)>>,
    opts: &WriteOptions,
) -> Result<SuppressedReport, SinkError> {
    let groups: Vec<Vec<AlertDoc>> =
        groups.into_iter().map(|g| g.into_iter().map(|(id, source)| AlertDoc { id, source }).collect()).collect();
    let crate::alert::suppression::Split { suppressible, blocks, plain } =
        crate::alert::suppression::split(s, rule, &ctx.rule_uuid, &ctx.space_id, groups);
    let plain = plain.into_iter().map(|g| g.into_iter().map(|d| (d.id, d.source)).collect()).collect();
    let start = match s.duration_ms {
        Some(ms) => ctx.persist_time - chrono::Duration::milliseconds(ms),
        None => window_from,
    };
    let w = SuppressedWrite {
        alias,
        execution_uuid: &ctx.execution_uuid,
        window_start: crate::alert::document::iso_ms(start),
        per_execution: s.per_execution(),
        now: crate::alert::document::iso_ms(ctx.persist_time),
    };
    write_suppressed(client, &w, suppressible, blocks, plain, opts).await
}
