//! The parts of Elasticsearch's `_search` and `_bulk` answers that esdetect reads, as small serde
//! structs: a missing or mistyped field becomes one decode error naming the request, instead of a
//! silently empty walk over `serde_json::Value`. Only the fields read are declared; the rest is ignored.

use serde::de::IgnoredAny;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A `_search` answer with hits of type `H` and aggregations of type `A`.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "H: Deserialize<'de>, A: Deserialize<'de>"))]
pub struct SearchAnswer<H, A = IgnoredAny> {
    #[serde(rename = "_shards", default)]
    pub shards: Shards,
    #[serde(default)]
    pub hits: Hits<H>,
    #[serde(default = "none")]
    pub aggregations: Option<A>,
}

fn none<A>() -> Option<A> {
    None
}

/// How many shards answered. A lookup that must not miss a document refuses `failed > 0`.
#[derive(Debug, Default, Deserialize)]
pub struct Shards {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub failed: u64,
}

impl std::fmt::Display for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {} shards failed", self.failed, self.total)
    }
}

#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "H: Deserialize<'de>"))]
pub struct Hits<H> {
    #[serde(default = "Vec::new")]
    pub hits: Vec<H>,
}

impl<H> Default for Hits<H> {
    fn default() -> Self {
        Hits { hits: Vec::new() }
    }
}

/// One hit: its id, and its `_source` as `S` (absent with `"_source": false`).
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
pub struct Hit<S = IgnoredAny> {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_source", default = "none")]
    pub source: Option<S>,
}

/// A `terms` aggregation's buckets (keys as text).
#[derive(Debug, Deserialize)]
pub struct Terms {
    #[serde(default)]
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Deserialize)]
pub struct Bucket {
    pub key: serde_json::Value,
}

/// A `_bulk` answer: one item per action, in request order.
#[derive(Debug, Deserialize)]
pub struct BulkAnswer {
    pub items: Vec<BulkItem>,
}

/// One item: `{"<action>": {…}}`.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct BulkItem(BTreeMap<String, BulkItemResult>);

impl BulkItem {
    /// The result of `action` (`create`, `update`, …), or of whatever single action the item holds.
    pub fn result(&self, action: &str) -> Option<&BulkItemResult> {
        self.0.get(action).or_else(|| self.0.values().next())
    }
}

#[derive(Debug, Deserialize)]
pub struct BulkItemResult {
    #[serde(rename = "_id", default)]
    pub id: Option<String>,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub error: Option<BulkItemError>,
}

impl BulkItemResult {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why one bulk item failed.
#[derive(Debug, Deserialize)]
pub struct BulkItemError {
    #[serde(rename = "type", default = "error_type")]
    pub kind: String,
    #[serde(default)]
    pub reason: String,
}

fn error_type() -> String {
    "error".into()
}

impl std::fmt::Display for BulkItemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn search_answer_reads_hits_shards_and_terms() {
        let a: SearchAnswer<Hit, BTreeMap<String, Terms>> = serde_json::from_value(json!({
            "_shards": {"total": 2, "successful": 1, "failed": 1},
            "hits": {"hits": [{"_id": "a", "_index": "i"}, {"_id": "b", "_source": {"x": 1}}]},
            "aggregations": {"uuids": {"buckets": [{"key": "u1", "doc_count": 1}]}}
        }))
        .unwrap();
        assert_eq!(a.shards.failed, 1);
        assert_eq!(a.shards.to_string(), "1 of 2 shards failed");
        assert_eq!(a.hits.hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(a.aggregations.unwrap()["uuids"].buckets[0].key, "u1");
        // An answer without hits or aggregations (size 0, nothing matched) is empty, not an error.
        let empty: SearchAnswer<Hit> = serde_json::from_value(json!({"_shards": {"total": 1, "failed": 0}})).unwrap();
        assert!(empty.hits.hits.is_empty() && empty.aggregations.is_none());
        // A hit without `_id` is not a search hit: a decode error, not a silently dropped document.
        assert!(serde_json::from_value::<SearchAnswer<Hit>>(json!({"hits": {"hits": [{"_index": "i"}]}})).is_err());
    }

    #[test]
    fn bulk_answer_reads_each_items_status_and_error() {
        let a: BulkAnswer = serde_json::from_value(json!({"errors": true, "items": [
            {"create": {"_id": "1", "status": 201}},
            {"create": {"_id": "2", "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}},
            {"update": {"_id": "3", "status": 429, "error": {"reason": "busy"}}}
        ]}))
        .unwrap();
        let r: Vec<&BulkItemResult> = a.items.iter().map(|i| i.result("create").unwrap()).collect();
        assert!(r[0].is_success() && r[0].error.is_none());
        assert_eq!((r[1].status, r[1].error.as_ref().unwrap().to_string()), (409, "version_conflict_engine_exception: exists".into()));
        assert_eq!((r[2].id.as_deref(), r[2].error.as_ref().unwrap().to_string()), (Some("3"), "error: busy".into()));
        assert!(serde_json::from_value::<BulkAnswer>(json!({"errors": false})).is_err());
    }
}
