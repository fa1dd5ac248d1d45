//! Writing alerts to the cluster the way Kibana does (spec alert-documents §1, §10): through a write
//! alias, never twice.
//!
//! - [`ensure_alerts_index`] makes sure the alias exists: for esdetect's own alias it idempotently puts
//!   an index template and creates `<alias>-000001` as the write index; for Kibana's alias
//!   (`.alerts-security.alerts-*`) it only checks — creating anything there would block Kibana.
//! - [`write_alerts`] first asks the alias which candidate ids already exist (the alias, not the write
//!   index: after a rollover an old alert lives in an older backing index), then bulk-`create`s the rest.
//!   `create` never overwrites, so a race ends in a 409 that counts as a duplicate.
//!
//! Documents of one group (a sequence's shell and its building blocks) always travel in the same bulk
//! request, and a group that ends up only partly written is reported as such.

use std::collections::{HashMap, HashSet};

use crate::es::{Method, Refresh};
use serde_json::{json, Value};
use thiserror::Error;

use crate::es::retry::{is_retryable_status, RetryPolicy};
use crate::es::answer::{BulkAnswer, Hit, SearchAnswer, Terms};
use crate::es::{EsClient, EsError};

/// Prefix of Kibana's own alerts aliases.
pub const KIBANA_ALIAS_PREFIX: &str = ".alerts-security.alerts-";

/// Largest `ids` query / terms aggregation per lookup request (Kibana uses the same chunk size).
pub const LOOKUP_CHUNK: usize = 10_000;

#[derive(Debug, Error)]
pub enum SinkError {
    #[error(transparent)]
    Es(#[from] EsError),
    #[error(
        "Kibana's alerts alias `{alias}` does not exist. esdetect never creates a concrete index with \
         Kibana's alias name (that would block Kibana from creating its alias): let Kibana create it (open \
         the Security app once in that space, or enable any detection rule), or configure a separate alias"
    )]
    KibanaAliasMissing { alias: String },
    #[error(
        "`{alias}` exists as a concrete index or data stream, not as an alias; alerts need a write alias \
         (delete or rename that index, or configure another alias name)"
    )]
    NotAnAlias { alias: String },
    #[error("invalid alerts alias name `{0}`: use lower-case letters, digits, '-', '_' and '.', no '*' or ','")]
    InvalidAlias(String),
    #[error("index `{index}` exists but is not behind the alias `{alias}`; add the alias to it or remove it")]
    OrphanIndex { alias: String, index: String },
    #[error("unexpected answer while writing alerts: {0}")]
    Malformed(String),
}

/// What [`ensure_alerts_index`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasState {
    pub alias: String,
    /// The concrete index writes go to (the alias's `is_write_index`, or its only index).
    pub write_index: Option<String>,
    /// The index this call created, if any.
    pub created_index: Option<String>,
    /// Whether this call created the index template.
    pub created_template: bool,
    /// The alias is Kibana's (checked, never created).
    pub kibana_managed: bool,
}

/// Name of the index template esdetect manages for `alias`.
pub fn template_name(alias: &str) -> String {
    format!("esdetect-{}", alias.trim_start_matches('.'))
}

/// Name of the first backing index of `alias`.
pub fn first_index_name(alias: &str) -> String {
    format!("{alias}-000001")
}

fn check_alias_name(alias: &str) -> Result<(), SinkError> {
    let ok = !alias.is_empty()
        && alias != "."
        && alias != ".."
        && !alias.starts_with(['-', '_', '+'])
        && alias.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SinkError::InvalidAlias(alias.to_string()))
    }
}

/// Everything a rule's alerts need before its first run, done the same way by every entry point (`run
/// --once`, the daemon, backfill): the privileges to read `read_indices` and to write through `alias`
/// (an error naming what is missing, before anything is written), then the alerts index template and
/// alias ([`ensure_alerts_index`] with esdetect's alerts template).
pub async fn prepare_destination(client: &EsClient, alias: &str, read_indices: &[String]) -> Result<AliasState, SinkError> {
    client.check_privileges(read_indices, Some(alias)).await?;
    let template = crate::alert::mapping::alerts_index_template(&[format!("{alias}-*")]);
    ensure_alerts_index(client, alias, template).await
}

/// Makes sure `alias` can take alerts. `template_body` is a composable index template body (at least
/// `{"template": {"settings": …, "mappings": …}}`); its `index_patterns` are set to `<alias>-*` and a
/// `priority` of 100 + alias length is added if absent (see `ensure_template`). An existing template is left as it is (it may have been tuned).
/// Safe to call concurrently from several processes: "already exists" answers count as success.
pub async fn ensure_alerts_index(client: &EsClient, alias: &str, template_body: Value) -> Result<AliasState, SinkError> {
    check_alias_name(alias)?;
    if alias.starts_with(KIBANA_ALIAS_PREFIX) {
        return match get_alias(client, alias).await? {
            Some(write_index) => Ok(AliasState {
                alias: alias.to_string(),
                write_index,
                created_index: None,
                created_template: false,
                kibana_managed: true,
            }),
            None => Err(SinkError::KibanaAliasMissing { alias: alias.to_string() }),
        };
    }

    let created_template = ensure_template(client, alias, template_body).await?;

    if let Some(write_index) = get_alias(client, alias).await? {
        return Ok(AliasState { alias: alias.to_string(), write_index, created_index: None, created_template, kibana_managed: false });
    }
    // No alias of that name: a concrete index or data stream with the name would make creating the
    // alias impossible; say so instead of failing obscurely.
    let (status, _) = client.raw(Method::Head, &format!("/{}", crate::es::path::segment(alias)), &[], None).await?;
    if status == 200 {
        // HEAD also answers 200 for an alias another process created a moment ago.
        return match get_alias(client, alias).await? {
            Some(write_index) => Ok(AliasState { alias: alias.to_string(), write_index, created_index: None, created_template, kibana_managed: false }),
            None => Err(SinkError::NotAnAlias { alias: alias.to_string() }),
        };
    }

    let index = first_index_name(alias);
    let body = json!({"aliases": {alias: {"is_write_index": true}}});
    let (status, resp) = client.create_index("create alerts index", &index, &body).await?;
    let created_index = if (200..300).contains(&status) {
        Some(index.clone())
    } else if already_exists(status, &resp) {
        None // Another process won the race; check below that it left the alias in place.
    } else {
        return Err(EsError::from_response("create alerts index", status, &resp).into());
    };
    match get_alias(client, alias).await? {
        Some(write_index) => Ok(AliasState { alias: alias.to_string(), write_index, created_index, created_template, kibana_managed: false }),
        None => Err(SinkError::OrphanIndex { alias: alias.to_string(), index }),
    }
}

fn already_exists(status: u16, resp: &Value) -> bool {
    let ty = resp["error"]["type"].as_str().unwrap_or("");
    let reason = resp["error"]["reason"].as_str().unwrap_or("");
    (status == 400 || status == 409)
        && (ty == "resource_already_exists_exception" || reason.contains("already exists"))
}

/// Puts the template unless one of that name exists. Returns whether it was created by this call.
async fn ensure_template(client: &EsClient, alias: &str, mut body: Value) -> Result<bool, SinkError> {
    let name = template_name(alias);
    let path = format!("/_index_template/{}", crate::es::path::segment(&name));
    let (status, resp) = client.raw(Method::Get, &path, &[], None).await?;
    if status == 200 {
        return Ok(false);
    }
    if status != 404 {
        return Err(EsError::from_response("get index template", status, &resp).into());
    }
    let Some(obj) = body.as_object_mut() else {
        return Err(SinkError::Malformed("the alerts index template body must be a JSON object".into()));
    };
    obj.insert("index_patterns".into(), json!([format!("{alias}-*")]));
    // Templates with overlapping patterns must differ in priority (`x-*` and `x-prod-*` overlap).
    // Priority 100 + name length does it: equal lengths cannot overlap (the prefixes would be equal),
    // and the longer, more specific alias wins for its own indices.
    obj.entry("priority").or_insert(json!(100 + alias.len()));
    let (status, resp) = client.raw(Method::Put, &path, &[("create", "true".to_string())], Some(&body)).await?;
    if (200..300).contains(&status) {
        Ok(true)
    } else if already_exists(status, &resp) {
        Ok(false)
    } else {
        Err(EsError::from_response("put index template", status, &resp).into())
    }
}

/// Puts the composable index template `name` unless one of that name exists (`PUT
/// _index_template/<name>?create=true`). Returns whether this call created it; an existing template is
/// left untouched (it may be the cluster's own, tuned one). Used for the event indices the simulator
/// writes (`simulate::templates`).
pub async fn put_index_template_if_absent(client: &EsClient, name: &str, body: &Value) -> Result<bool, SinkError> {
    if name.is_empty() || name.contains(['*', ',', '/', ' ']) {
        return Err(SinkError::Malformed(format!("invalid index template name `{name}`")));
    }
    let path = format!("/_index_template/{}", crate::es::path::segment(name));
    let (status, resp) = client.raw(Method::Put, &path, &[("create", "true".to_string())], Some(body)).await?;
    if (200..300).contains(&status) {
        Ok(true)
    } else if already_exists(status, &resp) {
        Ok(false)
    } else {
        Err(EsError::from_response(&format!("put index template {name}"), status, &resp).into())
    }
}

/// `Some(write index)` if `alias` is an alias (the write index may be unknown: `Some(None)`), `None` if not.
async fn get_alias(client: &EsClient, alias: &str) -> Result<Option<Option<String>>, SinkError> {
    let (status, resp) = client.raw(Method::Get, &format!("/_alias/{}", crate::es::path::segment(alias)), &[], None).await?;
    if status == 404 {
        return Ok(None);
    }
    if !(200..300).contains(&status) {
        return Err(EsError::from_response("get alias", status, &resp).into());
    }
    let Some(indices) = resp.as_object() else {
        return Err(SinkError::Malformed(format!("get alias answered {resp}")));
    };
    if indices.is_empty() {
        return Ok(None);
    }
    let write = indices
        .iter()
        .find(|(_, v)| v["aliases"][alias]["is_write_index"].as_bool() == Some(true))
        .map(|(k, _)| k.clone())
        .or_else(|| (indices.len() == 1).then(|| indices.keys().next().cloned()).flatten());
    Ok(Some(write))
}

/// Which of `ids` already exist behind `alias` (spec §10: `ids` query + terms aggregation on
/// `kibana.alert.uuid`, chunks of 10 000). Hits' `_id`s are taken too — `size` equals the chunk — so the
/// lookup also works when the alias's mapping lacks `kibana.alert.uuid` (for Kibana's alerts `_id` and
/// `kibana.alert.uuid` are the same).
pub async fn existing_ids(client: &EsClient, alias: &str, ids: &[String]) -> Result<HashSet<String>, SinkError> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let body = json!({
            "size": chunk.len(),
            "_source": false,
            "track_total_hits": false,
            "query": {"ids": {"values": chunk}},
            "aggs": {"uuids": {"terms": {"field": "kibana.alert.uuid", "size": LOOKUP_CHUNK}}}
        });
        let resp: SearchAnswer<Hit, IdAggs> = client.search("alert id lookup", alias, &body).await?;
        if resp.shards.failed > 0 {
            // A partial lookup could let a duplicate through; refuse instead.
            return Err(SinkError::Malformed(format!("alert id lookup had shard failures: {}", resp.shards)));
        }
        found.extend(resp.aggregations.into_iter().flat_map(|a| a.uuids.buckets).filter_map(|b| b.key.as_str().map(String::from)));
        found.extend(resp.hits.hits.into_iter().map(|h| h.id));
    }
    Ok(found)
}

/// The aggregation of [`existing_ids`]' lookup.
#[derive(Debug, serde::Deserialize)]
struct IdAggs {
    uuids: Terms,
}

/// Knobs of [`write_alerts`].
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Kibana writes with `refresh=true`, so the next run's lookup sees the alerts. `wait_for` is gentler
    /// on the cluster and equally safe for dedup; `false` risks duplicates from a quickly following run
    /// that starts before the refresh.
    pub refresh: Refresh,
    /// Bulk rounds for items rejected with 429/5xx (after the first).
    pub item_retries: RetryPolicy,
    /// Soft cap of documents per bulk request; a single larger group is still sent whole.
    pub max_docs_per_bulk: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { refresh: Refresh::True, item_retries: RetryPolicy::default(), max_docs_per_bulk: 1000 }
    }
}

/// What [`write_alerts`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteReport {
    /// Documents created (bulk item status 201).
    pub created: usize,
    /// Ids of the documents this call created (what rule actions notify about).
    pub created_ids: Vec<String>,
    /// Documents already present (found by the lookup, or answered 409 by `create`), or repeated in the input.
    pub duplicates: usize,
    /// Documents not written, with the reason.
    pub failed: Vec<(String, String)>,
    /// Indexes (into the input) of groups that are now only partly in the index: some documents present,
    /// some failed. A sequence alert missing its shell or a building block.
    pub partial_groups: Vec<usize>,
}

impl WriteReport {
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum DocState {
    Pending,
    Present,
    Failed,
}

/// Writes alert documents, grouped (a group = documents that must appear together), to `alias`.
/// See the module doc for the procedure. Errors before anything is written (cluster unreachable, alias
/// missing) are returned as `Err`; failures of individual documents are listed in the report.
pub async fn write_alerts(
    client: &EsClient,
    alias: &str,
    groups: Vec<Vec<(String, Value)>>,
    opts: &WriteOptions,
) -> Result<WriteReport, SinkError> {
    let mut report = WriteReport::default();
    // Input-level dedup: an id seen earlier in this call is a duplicate (same deterministic id = same alert).
    let mut seen = HashSet::new();
    let mut docs: Vec<(usize, String, Value)> = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        for (id, doc) in group {
            if seen.insert(id.clone()) {
                docs.push((g, id.clone(), doc.clone()));
            } else {
                report.duplicates += 1;
            }
        }
    }
    drop(groups);
    let ids: Vec<String> = docs.iter().map(|(_, id, _)| id.clone()).collect();
    let existing = existing_ids(client, alias, &ids).await?;

    let mut state: Vec<DocState> = docs
        .iter()
        .map(|(_, id, _)| if existing.contains(id) { DocState::Present } else { DocState::Pending })
        .collect();
    report.duplicates += state.iter().filter(|s| **s == DocState::Present).count();

    // Batches of whole groups: positions into `docs`.
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < docs.len() {
        let g = docs[i].0;
        let group: Vec<usize> = (i..docs.len()).take_while(|&j| docs[j].0 == g).collect();
        i += group.len();
        let pending: Vec<usize> = group.into_iter().filter(|&j| state[j] == DocState::Pending).collect();
        if !current.is_empty() && current.len() + pending.len() > opts.max_docs_per_bulk {
            batches.push(std::mem::take(&mut current));
        }
        current.extend(pending);
    }
    if !current.is_empty() {
        batches.push(current);
    }

    let mut conflicts: Vec<usize> = Vec::new();
    for batch in batches {
        let mut todo = batch;
        let mut round = 0u32;
        while !todo.is_empty() {
            let mut retry_next = Vec::new();
            match bulk_create(client, alias, &docs, &todo, opts.refresh).await {
                Ok(results) => {
                    for (pos, (status, reason)) in todo.iter().zip(results) {
                        match status {
                            200..=299 => {
                                report.created += 1;
                                report.created_ids.push(docs[*pos].1.clone());
                                state[*pos] = DocState::Present;
                            }
                            409 => {
                                // Already there: written before (a duplicate), or by this very call when a
                                // retried request met its own first attempt. Told apart below.
                                conflicts.push(*pos);
                                state[*pos] = DocState::Present;
                            }
                            s if (is_retryable_status(s) || s >= 500) && round < opts.item_retries.max_retries => {
                                retry_next.push(*pos)
                            }
                            _ => {
                                state[*pos] = DocState::Failed;
                                report.failed.push((docs[*pos].1.clone(), format!("HTTP {status}: {reason}")));
                            }
                        }
                    }
                }
                Err(e) => {
                    // The request as a whole failed after the client's own retries: nothing more to try
                    // for these documents in this run.
                    let why = e.to_string();
                    for pos in &todo {
                        state[*pos] = DocState::Failed;
                        report.failed.push((docs[*pos].1.clone(), why.clone()));
                    }
                }
            }
            if !retry_next.is_empty() {
                let delay = opts.item_retries.delay(round);
                tracing::warn!(items = retry_next.len(), ?delay, "bulk items rejected (429/5xx); retrying");
                tokio::time::sleep(delay).await;
                round += 1;
            }
            todo = retry_next;
        }
    }

    if !conflicts.is_empty() {
        let own = match own_writes(client, alias, &docs, &conflicts).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "could not tell own writes from duplicates; counting them as duplicates");
                0
            }
        };
        report.created += own;
        report.duplicates += conflicts.len() - own;
    }

    let mut g_start = 0;
    while g_start < docs.len() {
        let g = docs[g_start].0;
        let members: Vec<usize> = (g_start..docs.len()).take_while(|&j| docs[j].0 == g).collect();
        g_start += members.len();
        let failed = members.iter().any(|&j| state[j] == DocState::Failed);
        let present = members.iter().any(|&j| state[j] == DocState::Present);
        if failed && present {
            tracing::error!(group = g, "alert group only partly written");
            report.partial_groups.push(g);
        }
    }
    Ok(report)
}

/// The execution uuid an alert document carries (flat key as written, or nested).
fn execution_uuid(doc: &Value) -> Option<&str> {
    doc.get("kibana.alert.rule.execution.uuid")
        .or_else(|| doc.pointer("/kibana/alert/rule/execution/uuid"))
        .and_then(Value::as_str)
}

/// Of the documents at `positions` that `create` answered 409 for, how many carry this write's own
/// execution uuid in the index: those were written by this call (an earlier attempt of a retried request
/// whose answer was lost), not before it, and count as created rather than as duplicates.
pub async fn own_writes(
    client: &EsClient,
    alias: &str,
    docs: &[(usize, String, Value)],
    positions: &[usize],
) -> Result<usize, SinkError> {
    let mut own = 0;
    for chunk in positions.chunks(LOOKUP_CHUNK) {
        let ids: Vec<&str> = chunk.iter().map(|&p| docs[p].1.as_str()).collect();
        let body = json!({
            "size": ids.len(),
            "_source": ["kibana.alert.rule.execution.uuid"],
            "query": {"ids": {"values": ids}},
        });
        let resp: SearchAnswer<Hit<Value>> = client.search("alert write check", alias, &body).await?;
        let stored: HashMap<&str, &str> = resp
            .hits
            .hits
            .iter()
            .filter_map(|h| Some((h.id.as_str(), execution_uuid(h.source.as_ref()?)?)))
            .collect();
        own += chunk
            .iter()
            .filter(|&&p| {
                let (_, id, doc) = &docs[p];
                matches!((stored.get(id.as_str()), execution_uuid(doc)), (Some(a), Some(b)) if a == &b)
            })
            .count();
    }
    Ok(own)
}

/// One bulk `create` request for `todo` (positions into `docs`); returns each item's status and reason.
async fn bulk_create(
    client: &EsClient,
    alias: &str,
    docs: &[(usize, String, Value)],
    todo: &[usize],
    refresh: Refresh,
) -> Result<Vec<(u16, String)>, SinkError> {
    let mut lines: Vec<Value> = Vec::with_capacity(todo.len() * 2);
    for &pos in todo {
        let (_, id, doc) = &docs[pos];
        lines.push(json!({"create": {"_id": id}}));
        lines.push(doc.clone());
    }
    let resp: BulkAnswer = client.bulk("bulk create alerts", Some(alias), &lines, refresh).await?;
    if resp.items.len() != todo.len() {
        return Err(SinkError::Malformed(format!("bulk answered {} items for {} documents", resp.items.len(), todo.len())));
    }
    Ok(resp
        .items
        .iter()
        .map(|item| match item.result("create") {
            Some(r) => (r.status, r.error.as_ref().map(ToString::to_string).unwrap_or_default()),
            None => (0, String::new()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(template_name(".alerts-esdetect-default"), "esdetect-alerts-esdetect-default");
        assert_eq!(first_index_name("esdetect-alerts"), "esdetect-alerts-000001");
        assert!(check_alias_name("esdetect-alerts-default").is_ok());
        assert!(check_alias_name(".alerts-security.alerts-default").is_ok());
        for bad in ["", "Upper", "a*", "a,b", "-x", "a b"] {
            assert!(check_alias_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn already_exists_answers() {
        let r = json!({"error":{"type":"resource_already_exists_exception","reason":"index [a-000001/xyz] already exists"}});
        assert!(already_exists(400, &r));
        assert!(!already_exists(400, &json!({"error":{"type":"illegal_argument_exception","reason":"bad"}})));
    }
}
