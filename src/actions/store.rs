//! State of rule actions in Elasticsearch, in one small index:
//! - throttle documents, one per (rule uuid, action), holding when it last sent, so a restart or another
//!   replica honours the same throttle interval;
//! - outbox documents (`kind: pending`), one per rendered message, written before it is sent and deleted
//!   once it is delivered, so a message that failed or was cut off by a crash is sent by a later run.

use crate::es::{EsClient, EsError};
use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Why the actions state index could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Cluster(#[from] EsError),
    #[error("cannot encode the outbox message as JSON: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Stable document id of one action of one rule (its position and connector: changing either starts
/// a fresh throttle).
pub fn action_key(rule_uuid: &str, index: usize, connector: &str) -> String {
    hex::encode(Sha256::digest(format!("{rule_uuid}\u{0}{index}\u{0}{connector}").as_bytes()))
}

/// When the action last sent; `None` when it never did (or the index does not exist yet).
pub async fn last_sent(client: &EsClient, index: &str, key: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let (status, body) = client
        .raw(Method::Get, &format!("/{index}/_doc/{key}"), &[], None)
        .await?;
    match status {
        200 => Ok(body["_source"]["last_sent"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))),
        404 => Ok(None),
        s => Err(EsError::from_response(&format!("GET {index}/_doc"), s, &body).into()),
    }
}

/// Records a send at `at`.
pub async fn record_sent(client: &EsClient, index: &str, key: &str, rule_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
    let doc = json!({"rule_id": rule_id, "last_sent": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)});
    let (status, body) = client
        .raw(Method::Put, &format!("/{index}/_doc/{key}"), &[("refresh", "true".to_string())], Some(&doc))
        .await?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(EsError::from_response(&format!("PUT {index}/_doc"), status, &body).into())
    }
}

/// An outbox entry: a rendered message not yet delivered.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub rule_uuid: String,
    pub connector: String,
    pub message: super::connectors::Message,
    /// Runs that tried to deliver it.
    pub tries: u32,
}

/// Writes (or rewrites) an outbox entry.
pub async fn put_pending(client: &EsClient, index: &str, id: &str, p: &Pending) -> Result<(), StoreError> {
    let mut doc = serde_json::to_value(p).map_err(StoreError::Encode)?;
    doc["kind"] = json!("pending");
    let (status, body) = client
        .raw(Method::Put, &format!("/{index}/_doc/{id}"), &[("refresh", "true".to_string())], Some(&doc))
        .await?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(EsError::from_response(&format!("PUT {index}/_doc"), status, &body).into())
    }
}

/// Removes a delivered (or given up) outbox entry.
pub async fn delete_pending(client: &EsClient, index: &str, id: &str) -> Result<(), StoreError> {
    let (status, body) = client
        .raw(Method::Delete, &format!("/{index}/_doc/{id}"), &[("refresh", "true".to_string())], None)
        .await?;
    if (200..300).contains(&status) || status == 404 {
        Ok(())
    } else {
        Err(EsError::from_response(&format!("DELETE {index}/_doc"), status, &body).into())
    }
}

/// The rule's outbox entries left by earlier runs (at most 100 per run).
pub async fn pending_for(client: &EsClient, index: &str, rule_uuid: &str) -> Result<Vec<(String, Pending)>, StoreError> {
    let query = json!({"size": 100, "query": {"bool": {"filter": [
        {"term": {"kind.keyword": "pending"}}, {"term": {"rule_uuid.keyword": rule_uuid}}
    ]}}});
    let (status, body) = client
        .raw(Method::Post, &format!("/{index}/_search"), &[("ignore_unavailable", "true".to_string())], Some(&query))
        .await?;
    if status != 200 {
        return Err(EsError::from_response(&format!("search {index}"), status, &body).into());
    }
    let hits = body["hits"]["hits"].as_array().cloned().unwrap_or_default();
    Ok(hits
        .into_iter()
        .filter_map(|h| Some((h["_id"].as_str()?.to_string(), serde_json::from_value(h["_source"].clone()).ok()?)))
        .collect())
}
