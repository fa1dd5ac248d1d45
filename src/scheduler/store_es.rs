//! [`StateStore`] in Elasticsearch: the daemon's state and ledger live in the cluster it watches, so
//! every replica sees the same leases and `esdetect status` works from anywhere.
//!
//! * State index (`esdetect-state` by default): one document per rule, id = rule id. `create` uses
//!   `_create` (refused with 409 if the document exists) and `compare_and_set` uses `if_seq_no` +
//!   `if_primary_term` (refused with 409 if anyone wrote since): Elasticsearch's optimistic concurrency
//!   control, which is what makes the lease safe across replicas.
//! * Ledger index (`esdetect-ledger`): one document per execution, id = execution id, written with
//!   `_create` so a retried append never duplicates an entry.
//!
//! Both indices are created on first use with explicit mappings (idempotently: "already exists" is
//! fine, so replicas may race). Every failure to get an answer maps to [`StoreError::Unavailable`]
//! (the scheduler retries with backoff); a 409 maps to [`StoreError::Conflict`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use elasticsearch::http::Method;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::state::{LedgerEntry, RuleState, StateStore, StoreError, Versioned};
use crate::es::{EsClient, EsError};

/// Where the store keeps its documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreIndices {
    pub state_index: String,
    pub ledger_index: String,
    /// `number_of_replicas` when esdetect creates the indices; `None` leaves the cluster default
    /// (production clusters want replicas: losing the state index means re-running windows).
    pub replicas: Option<u32>,
}

impl Default for StoreIndices {
    fn default() -> Self {
        StoreIndices { state_index: "esdetect-state".into(), ledger_index: "esdetect-ledger".into(), replicas: None }
    }
}

/// `(seq_no, primary_term, lease_owner)` of the last version read of a state document.
type ReadVersion = (i64, i64, Option<String>);

/// The Elasticsearch-backed state store. Cheap to share behind an `Arc`.
pub struct EsStateStore {
    client: EsClient,
    indices: StoreIndices,
    ensured: OnceCell<()>,
    /// Per rule, the lease owner of the version last read: lets `compare_and_set` notice that a claim
    /// takes over another replica's (expired) lease, for the `lease takeovers` metric.
    last_read: Mutex<HashMap<String, ReadVersion>>,
    takeovers: AtomicU64,
    /// Per rule, a takeover write whose answer was an error (a conflict after a retried request, a reset):
    /// `(previous owner, new owner)`. If the next read shows the new owner, that write went through.
    pending_takeovers: Mutex<HashMap<String, (String, String)>>,
}

impl EsStateStore {
    pub fn new(client: EsClient, indices: StoreIndices) -> Self {
        EsStateStore {
            client,
            indices,
            ensured: OnceCell::new(),
            last_read: Mutex::new(HashMap::new()),
            takeovers: AtomicU64::new(0),
            pending_takeovers: Mutex::new(HashMap::new()),
        }
    }

    pub fn indices(&self) -> &StoreIndices {
        &self.indices
    }

    pub fn client(&self) -> &EsClient {
        &self.client
    }

    /// Claims through this store that took over a lease another owner had left (crashed or stalled).
    pub fn lease_takeovers(&self) -> u64 {
        self.takeovers.load(Ordering::Relaxed)
    }

    /// Creates the two indices if they are missing (once per store; retried on the next call after a
    /// failure).
    pub async fn ensure_indices(&self) -> Result<(), StoreError> {
        self.ensured
            .get_or_try_init(|| async {
                self.create_index(&self.indices.state_index, state_mappings()).await?;
                self.create_index(&self.indices.ledger_index, ledger_mappings()).await
            })
            .await
            .map(|_| ())
    }

    /// Whether the cluster answers (`GET /_cluster/health`), for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let (status, body) = self.client.raw(Method::Get, "/_cluster/health", &[], None).await.map_err(unavailable)?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(unavailable(EsError::from_response("cluster health", status, &body)))
        }
    }

    /// The newest `limit` ledger entries, of one rule or of all, newest first.
    pub async fn recent_runs(&self, rule_id: Option<&str>, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        let query = match rule_id {
            Some(id) => json!({"term": {"rule_id": id}}),
            None => json!({"match_all": {}}),
        };
        // Shadow-mode results share the ledger (src/scheduler/shadow.rs) but are not executions.
        let query = json!({"bool": {"filter": [query], "must_not": [{"term": {"record": "shadow"}}]}});
        let body = json!({
            "size": limit.min(10_000),
            "query": query,
            "sort": [{"started_at": {"order": "desc"}}, {"finished_at": {"order": "desc"}}],
        });
        let path = format!("/{}/_search", enc(&self.indices.ledger_index));
        let query_params = [("ignore_unavailable", "true".to_string())];
        let (status, resp) =
            self.client.raw(Method::Post, &path, &query_params, Some(&body)).await.map_err(unavailable)?;
        if !(200..300).contains(&status) {
            return Err(unavailable(EsError::from_response("ledger search", status, &resp)));
        }
        let hits = resp["hits"]["hits"].as_array().cloned().unwrap_or_default();
        let mut out = Vec::with_capacity(hits.len());
        for hit in hits {
            match serde_json::from_value::<LedgerEntry>(hit["_source"].clone()) {
                Ok(e) => out.push(e),
                // A document written by another version: skip it rather than fail the whole listing.
                Err(e) => tracing::warn!(id = %hit["_id"], error = %e, "unreadable ledger document skipped"),
            }
        }
        Ok(out)
    }

    /// Every state document (at most 10 000 rules), for `esdetect status`.
    pub async fn all_states(&self) -> Result<Vec<RuleState>, StoreError> {
        let body = json!({"size": 10_000, "query": {"match_all": {}}, "sort": [{"rule_id": "asc"}]});
        let path = format!("/{}/_search", enc(&self.indices.state_index));
        let (status, resp) = self
            .client
            .raw(Method::Post, &path, &[("ignore_unavailable", "true".to_string())], Some(&body))
            .await
            .map_err(unavailable)?;
        if !(200..300).contains(&status) {
            return Err(unavailable(EsError::from_response("state search", status, &resp)));
        }
        Ok(resp["hits"]["hits"]
            .as_array()
            .map(|hits| hits.iter().filter_map(|h| serde_json::from_value(h["_source"].clone()).ok()).collect())
            .unwrap_or_default())
    }

    async fn create_index(&self, name: &str, mappings: Value) -> Result<(), StoreError> {
        let mut body = json!({"mappings": mappings});
        if let Some(n) = self.indices.replicas {
            body["settings"] = json!({"index": {"number_of_replicas": n}});
        }
        let (status, resp) =
            self.client.raw(Method::Put, &format!("/{}", enc(name)), &[], Some(&body)).await.map_err(unavailable)?;
        if (200..300).contains(&status) {
            tracing::info!(index = name, "created scheduler index");
            return Ok(());
        }
        let err = EsError::from_response(&format!("creating index {name}"), status, &resp);
        match err.error_type() {
            // Another replica (or an operator) was first: fine, use theirs.
            Some("resource_already_exists_exception") => Ok(()),
            _ => Err(unavailable(err)),
        }
    }

    fn doc_path(&self, index: &str, endpoint: &str, id: &str) -> String {
        format!("/{}/{endpoint}/{}", enc(index), enc(id))
    }

    fn count_takeover(&self, rule_id: &str, previous: &str, new: &str, how: &str) {
        self.takeovers.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(rule = %rule_id, %previous, %new, "took over an expired lease (its owner stopped renewing it){how}");
    }

    /// After a read: a takeover write that seemed to fail but whose new owner is now in the document did
    /// go through (its answer was lost and the retry met its own write as a conflict): count it now.
    fn settle_pending_takeover(&self, rule_id: &str, v: &Versioned<RuleState>) {
        let pending = self.pending_takeovers.lock().ok().and_then(|mut m| m.remove(rule_id));
        if let Some((previous, new)) = pending {
            if v.value.lease_owner.as_deref() == Some(new.as_str()) {
                self.count_takeover(rule_id, &previous, &new, "; the claim's answer was lost, the re-read shows it");
            }
        }
    }

    fn remember(&self, rule_id: &str, v: &Versioned<RuleState>) {
        if let Ok(mut m) = self.last_read.lock() {
            m.insert(rule_id.to_string(), (v.seq_no, v.primary_term, v.value.lease_owner.clone()));
        }
    }
}

fn unavailable(e: EsError) -> StoreError {
    StoreError::Unavailable(std::sync::Arc::new(e))
}

/// Percent-encodes a path segment (ids and index names are user data).
fn enc(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `(seq_no, primary_term)` of a write or get answer.
fn tokens(body: &Value, what: &str) -> Result<(i64, i64), StoreError> {
    match (body["_seq_no"].as_i64(), body["_primary_term"].as_i64()) {
        (Some(s), Some(p)) => Ok((s, p)),
        _ => Err(StoreError::Unusable(format!("{what}: the answer has no _seq_no/_primary_term: {body}"))),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, StoreError> {
    serde_json::to_value(v).map_err(|e| StoreError::Unusable(format!("cannot serialise a scheduler document: {e}")))
}

#[async_trait]
impl StateStore for EsStateStore {
    async fn get(&self, rule_id: &str) -> Result<Option<Versioned<RuleState>>, StoreError> {
        self.ensure_indices().await?;
        let path = self.doc_path(&self.indices.state_index, "_doc", rule_id);
        let (status, body) = self.client.raw(Method::Get, &path, &[], None).await.map_err(unavailable)?;
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(unavailable(EsError::from_response("reading rule state", status, &body)));
        }
        let (seq_no, primary_term) = tokens(&body, "reading rule state")?;
        let value: RuleState = serde_json::from_value(body["_source"].clone()).map_err(|e| {
            StoreError::Unusable(format!(
                "the state document of rule `{rule_id}` in {} cannot be read ({e}); delete it to start the rule afresh",
                self.indices.state_index
            ))
        })?;
        let v = Versioned { value, seq_no, primary_term };
        self.settle_pending_takeover(rule_id, &v);
        self.remember(rule_id, &v);
        Ok(Some(v))
    }

    async fn create(&self, state: &RuleState) -> Result<Versioned<RuleState>, StoreError> {
        self.ensure_indices().await?;
        let path = self.doc_path(&self.indices.state_index, "_create", &state.rule_id);
        let doc = to_json(state)?;
        let (status, body) = self.client.raw(Method::Put, &path, &[], Some(&doc)).await.map_err(unavailable)?;
        match status {
            200..=299 => {
                let (seq_no, primary_term) = tokens(&body, "creating rule state")?;
                Ok(Versioned { value: state.clone(), seq_no, primary_term })
            }
            409 => Err(StoreError::Conflict { rule_id: state.rule_id.clone() }),
            _ => Err(unavailable(EsError::from_response("creating rule state", status, &body))),
        }
    }

    async fn compare_and_set(
        &self,
        state: &RuleState,
        seq_no: i64,
        primary_term: i64,
    ) -> Result<Versioned<RuleState>, StoreError> {
        self.ensure_indices().await?;
        let path = self.doc_path(&self.indices.state_index, "_doc", &state.rule_id);
        let doc = to_json(state)?;
        let params = [("if_seq_no", seq_no.to_string()), ("if_primary_term", primary_term.to_string())];
        let prior = self.last_read.lock().ok().and_then(|m| m.get(&state.rule_id).cloned());
        // Whether this write moves the lease from another owner (read at exactly this version) to us.
        let takeover = match (prior, &state.lease_owner) {
            (Some((ps, pp, Some(prev_owner))), Some(new_owner)) if ps == seq_no && pp == primary_term && prev_owner != *new_owner => {
                Some((prev_owner, new_owner.clone()))
            }
            _ => None,
        };
        let answer = self.client.raw(Method::Put, &path, &params, Some(&doc)).await;
        let (status, body) = match answer {
            Ok(a) => a,
            Err(e) => {
                if let (Some(t), Ok(mut m)) = (takeover, self.pending_takeovers.lock()) {
                    m.insert(state.rule_id.clone(), t);
                }
                return Err(unavailable(e));
            }
        };
        match status {
            200..=299 => {
                let (s, p) = tokens(&body, "updating rule state")?;
                if let Some((previous, new)) = takeover {
                    if let Ok(mut m) = self.pending_takeovers.lock() {
                        m.remove(&state.rule_id);
                    }
                    self.count_takeover(&state.rule_id, &previous, &new, "");
                }
                Ok(Versioned { value: state.clone(), seq_no: s, primary_term: p })
            }
            // Both a version conflict and a missing document (if_seq_no on a deleted doc) are 409. After a
            // retried request the conflict may be with our own first attempt: the next read tells.
            409 | 404 => {
                if let (Some(t), Ok(mut m)) = (takeover, self.pending_takeovers.lock()) {
                    m.insert(state.rule_id.clone(), t);
                }
                Err(StoreError::Conflict { rule_id: state.rule_id.clone() })
            }
            _ => Err(unavailable(EsError::from_response("updating rule state", status, &body))),
        }
    }

    async fn append_ledger(&self, entry: &LedgerEntry) -> Result<(), StoreError> {
        self.ensure_indices().await?;
        let path = self.doc_path(&self.indices.ledger_index, "_create", &entry.execution_id);
        let doc = to_json(entry)?;
        // Refreshed at once (one small document per execution), so `esdetect status` right after a run sees it.
        let refresh = [("refresh", "true".to_string())];
        let (status, body) = self.client.raw(Method::Put, &path, &refresh, Some(&doc)).await.map_err(unavailable)?;
        match status {
            200..=299 => Ok(()),
            // Already there: an earlier attempt whose answer was lost got through.
            409 => Ok(()),
            _ => Err(unavailable(EsError::from_response("writing the ledger", status, &body))),
        }
    }

    async fn recent_ledger(&self, rule_id: &str, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        self.recent_runs(Some(rule_id), limit).await
    }
}

/// Mapping of the state index. `dynamic: false` keeps fields added by later versions in `_source`
/// without failing writes from this one.
pub fn state_mappings() -> Value {
    json!({
        "dynamic": false,
        "properties": {
            "rule_id": {"type": "keyword"},
            "last_window_end": {"type": "date"},
            "last_status": {"type": "keyword"},
            "last_message": {"type": "text"},
            "last_execution_id": {"type": "keyword"},
            "last_run_at": {"type": "date"},
            "consecutive_failures": {"type": "integer"},
            "failed_window_end": {"type": "date"},
            "failed_window_attempts": {"type": "integer"},
            "lease_owner": {"type": "keyword"},
            "lease_expires": {"type": "date"},
            "updated_at": {"type": "date"}
        }
    })
}

/// Mapping of the ledger index.
pub fn ledger_mappings() -> Value {
    json!({
        "dynamic": false,
        "properties": {
            "rule_id": {"type": "keyword"},
            "execution_id": {"type": "keyword"},
            "execution_type": {"type": "keyword"},
            "gap_filled_ms": {"type": "long"},
            "owner": {"type": "keyword"},
            "scheduled_at": {"type": "date"},
            "started_at": {"type": "date"},
            "finished_at": {"type": "date"},
            "window_from": {"type": "date"},
            "window_to": {"type": "date"},
            "windows": {"properties": {
                "from": {"type": "date"}, "to": {"type": "date"}, "kind": {"type": "keyword"}
            }},
            "windows_completed": {"type": "integer"},
            "windows_remaining": {"type": "integer"},
            "window_end": {"type": "date"},
            "status": {"type": "keyword"},
            "message": {"type": "text"},
            "counts": {"properties": {
                "fetched": {"type": "long"}, "matches": {"type": "long"},
                "alerts_written": {"type": "long"}, "duplicates": {"type": "long"},
                "bytes_search": {"type": "long"}, "bytes_mget": {"type": "long"},
                "actions": {"properties": {
                    "connector": {"type": "keyword"}, "outcome": {"type": "keyword"}, "count": {"type": "long"}
                }},
                "action_errors": {"type": "text"}
            }},
            "warnings": {"type": "text"},
            "errors": {"type": "text"},
            "gap_ms": {"type": "long"},
            "gap_from": {"type": "date"},
            "gap_to": {"type": "date"},
            "search_duration_ms": {"type": "long"},
            "indexing_duration_ms": {"type": "long"},
            "duration_ms": {"type": "long"},
            "delay_ms": {"type": "long"},
            "skipped_tick": {"type": "boolean"},
            "skipped_ticks": {"type": "integer"},
            "record": {"type": "keyword"},
            "compared_at": {"type": "date"},
            "both": {"type": "long"}, "kibana_only": {"type": "long"}, "esdetect_only": {"type": "long"},
            "differing": {"type": "long"}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(enc("d84a11c0-eb12"), "d84a11c0-eb12");
        assert_eq!(enc("a/b c?#"), "a%2Fb%20c%3F%23");
        assert_eq!(enc("é"), "%C3%A9");
    }

    #[test]
    fn unreachable_store_is_unavailable_not_a_panic() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut cfg = crate::es::ConnectionConfig::for_url("http://127.0.0.1:1");
        cfg.max_retries = 0;
        let store = EsStateStore::new(EsClient::new(&cfg).unwrap(), StoreIndices::default());
        let r = rt.block_on(store.get("r"));
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(matches!(rt.block_on(store.ping()), Err(StoreError::Unavailable(_))));
    }
}
