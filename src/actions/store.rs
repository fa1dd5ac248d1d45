//! Throttle state of rule actions in Elasticsearch: one small document per (rule uuid, action) holding
//! when it last sent, so a restart or another replica honours the same throttle interval.

use crate::es::EsClient;
use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Stable document id of one action of one rule (its position and connector: changing either starts
/// a fresh throttle).
pub fn action_key(rule_uuid: &str, index: usize, connector: &str) -> String {
    hex::encode(Sha256::digest(format!("{rule_uuid}\u{0}{index}\u{0}{connector}").as_bytes()))
}

/// When the action last sent; `None` when it never did (or the index does not exist yet).
pub async fn last_sent(client: &EsClient, index: &str, key: &str) -> Result<Option<DateTime<Utc>>, String> {
    let (status, body) = client
        .raw(Method::Get, &format!("/{index}/_doc/{key}"), &[], None)
        .await
        .map_err(|e| e.to_string())?;
    match status {
        200 => Ok(body["_source"]["last_sent"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))),
        404 => Ok(None),
        s => Err(format!("GET {index}/_doc: HTTP {s}: {body}")),
    }
}

/// Records a send at `at`.
pub async fn record_sent(client: &EsClient, index: &str, key: &str, rule_id: &str, at: DateTime<Utc>) -> Result<(), String> {
    let doc = json!({"rule_id": rule_id, "last_sent": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)});
    let (status, body) = client
        .raw(Method::Put, &format!("/{index}/_doc/{key}"), &[("refresh", "true".to_string())], Some(&doc))
        .await
        .map_err(|e| e.to_string())?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("PUT {index}/_doc: HTTP {status}: {body}"))
    }
}
