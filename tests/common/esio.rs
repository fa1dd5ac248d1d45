//! Helpers for the live-cluster tests of `es`, `source::es` and `sink::es` (`tests/es_io.rs`): the
//! library's own client, unique names, indices and documents.
//!
//! The cluster comes from `ESDETECT_TEST_ES_URL`. Tests that need it FAIL (never skip) when it is unset
//! or does not answer, so a green run always means the cluster code was exercised.
#![allow(dead_code)]

use esdetect::es::{ConnectionConfig, EsClient, Method};
use serde_json::{json, Value};

/// The live node's URL; panics with instructions when there is none (see `tests/common`).
pub fn es_url() -> String {
    super::es_url()
}

/// A client for the test node, after checking that it answers.
pub async fn client() -> EsClient {
    let url = es_url();
    let c = EsClient::new(&ConnectionConfig::for_url(&url)).expect("client from ESDETECT_TEST_ES_URL");
    if let Err(e) = c.info().await {
        panic!("the test node at ESDETECT_TEST_ES_URL={url} does not answer: {e}");
    }
    c
}

/// A unique lower-case name `esio-test-<random>-<suffix>`.
pub fn unique(suffix: &str) -> String {
    let r = uuid::Uuid::new_v4().simple().to_string();
    format!("esio-test-{}-{suffix}", &r[..10])
}

/// Deletes every index (and index template) whose name starts with `prefix` when dropped, even if the
/// test panicked. Runs on its own thread and runtime because `Drop` cannot await.
pub struct Cleanup {
    pub prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let url = match std::env::var("ESDETECT_TEST_ES_URL") {
            Ok(u) => u,
            Err(_) => return,
        };
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let c = EsClient::new(&ConnectionConfig::for_url(url)).unwrap();
                // Wildcard index deletes are refused by default (action.destructive_requires_name): list first.
                let q = [("format", "json".to_string()), ("h", "index".to_string()), ("expand_wildcards", "all".to_string())];
                if let Ok((200, Value::Array(rows))) = c.raw(Method::Get, &format!("/_cat/indices/{prefix}*"), &q, None).await {
                    let names: Vec<&str> = rows.iter().filter_map(|r| r["index"].as_str()).collect();
                    if !names.is_empty() {
                        let _ = c.raw(Method::Delete, &format!("/{}", names.join(",")), &[], None).await;
                    }
                }
                for pat in [format!("esdetect-{prefix}*"), format!("{prefix}*")] {
                    if let Ok((200, t)) = c.raw(Method::Get, &format!("/_index_template/{pat}"), &[], None).await {
                        for tpl in t["index_templates"].as_array().into_iter().flatten() {
                            if let Some(n) = tpl["name"].as_str() {
                                let _ = c.raw(Method::Delete, &format!("/_index_template/{n}"), &[], None).await;
                            }
                        }
                    }
                }
            })
        })
        .join();
    }
}

/// Creates an index with one shard, no replicas and the given mappings.
pub async fn create_index(c: &EsClient, name: &str, mappings: Value) {
    let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": mappings});
    let (status, resp) = c.raw(Method::Put, &format!("/{name}"), &[], Some(&body)).await.unwrap();
    assert!((200..300).contains(&status), "create index {name}: {status} {resp}");
}

/// Indexes `(id, source)` documents and refreshes.
pub async fn index_docs(_c: &EsClient, index: &str, docs: &[(String, Value)]) {
    let mut lines = Vec::with_capacity(docs.len() * 2);
    for (id, d) in docs {
        lines.push(json!({"index": {"_id": id}}));
        lines.push(d.clone());
    }
    let resp = super::bulk(Some(index), lines).await;
    assert_eq!(resp["errors"], json!(false), "test bulk failed: {resp}");
}

/// `_count` of a query over `target`.
pub async fn count(c: &EsClient, target: &str, query: Value) -> u64 {
    let (status, resp) = c
        .raw(Method::Post, &format!("/{target}/_count"), &[], Some(&json!({"query": query})))
        .await
        .unwrap();
    assert_eq!(status, 200, "count {target}: {resp}");
    resp["count"].as_u64().unwrap()
}

pub async fn exists(c: &EsClient, path: &str) -> bool {
    let (status, _) = c.raw(Method::Head, path, &[], None).await.unwrap();
    status == 200
}
