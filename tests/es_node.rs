//! Checks the live test node supports what esdetect relies on, through the same `elasticsearch` crate the
//! product uses: explicit mappings (keyword, long, ip, date, keyword arrays), `_bulk` with refresh,
//! point-in-time + `search_after` paging sorted by `@timestamp` then `_shard_doc`, `ip` term semantics,
//! `ids` + terms aggregation, and closing the PIT. It also prints the node's version into the test output.

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;

use elasticsearch::http::request::JsonBody;
use elasticsearch::params::Refresh;
use elasticsearch::{BulkParts, OpenPointInTimeParts, SearchParts};
use serde_json::{json, Value};

async fn json_ok(response: elasticsearch::http::response::Response, what: &str) -> Value {
    let status = response.status_code();
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("{what}: response is not JSON: {e}"));
    assert!(status.is_success(), "{what}: HTTP {status}: {body}");
    body
}

fn hit_ids(body: &Value) -> Vec<String> {
    body["hits"]["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits array in {body}"))
        .iter()
        .map(|h| h["_id"].as_str().expect("hit without _id").to_string())
        .collect()
}

#[tokio::test]
async fn node_supports_mapping_bulk_pit_paging_and_ip_terms() {
    let client = common::client();

    let info = json_ok(client.info().send().await.expect("GET /"), "GET /").await;
    // Written to stderr directly, not with eprintln!: libtest captures the print macros of passing tests,
    // and the node version belongs in every CI log.
    let _ = writeln!(
        std::io::stderr(),
        "test node: Elasticsearch {} (build flavor {}, Lucene {}) at {}",
        info["version"]["number"].as_str().unwrap_or("?"),
        info["version"]["build_flavor"].as_str().unwrap_or("?"),
        info["version"]["lucene_version"].as_str().unwrap_or("?"),
        common::es_url()
    );
    assert!(info["version"]["number"].is_string(), "GET / has no version.number: {info}");

    // Two shards so that `_shard_doc` and search_after really have to merge across shards.
    let index = common::TestIndex::create(
        &client,
        "node",
        json!({
            "settings": { "number_of_shards": 2, "number_of_replicas": 0 },
            "mappings": { "properties": {
                "@timestamp": { "type": "date" },
                "event": { "properties": {
                    "category": { "type": "keyword" },
                    "code": { "type": "keyword" }
                }},
                "process": { "properties": { "pid": { "type": "long" } } },
                "source": { "properties": { "ip": { "type": "ip" } } },
                "user": { "properties": { "name": { "type": "keyword" } } }
            }}
        }),
    )
    .await;

    // Indexed out of time order on purpose; every timestamp is distinct, so the expected order is known.
    let docs = [
        ("d3", "2024-05-01T10:00:03.000Z", vec!["authentication"], "4625", "127.0.0.1", 300),
        ("d1", "2024-05-01T10:00:01.000Z", vec!["process"], "4688", "::ffff:127.0.0.1", 100),
        ("d5", "2024-05-01T10:00:05.000Z", vec!["iam"], "4720", "10.1.2.3", 500),
        ("d2", "2024-05-01T10:00:02.000Z", vec!["authentication", "iam"], "4624", "2001:db8::1", 200),
        ("d4", "2024-05-01T10:00:04.000Z", vec!["process", "authentication"], "4689", "::1", 400),
    ];
    let expected_order = ["d1", "d2", "d3", "d4", "d5"];

    let mut body: Vec<JsonBody<Value>> = Vec::new();
    for (id, ts, categories, code, ip, pid) in &docs {
        body.push(json!({ "index": { "_id": id } }).into());
        body.push(
            json!({
                "@timestamp": ts,
                "event": { "category": categories, "code": code },
                "source": { "ip": ip },
                "process": { "pid": pid },
                "user": { "name": "alice" }
            })
            .into(),
        );
    }
    let bulk = json_ok(
        client
            .bulk(BulkParts::Index(&index.name))
            .refresh(Refresh::True)
            .body(body)
            .send()
            .await
            .expect("_bulk"),
        "_bulk",
    )
    .await;
    assert_eq!(bulk["errors"], json!(false), "bulk reported item errors: {bulk}");

    // PIT + search_after, page size 2.
    let pit = json_ok(
        client
            .open_point_in_time(OpenPointInTimeParts::Index(&[&index.name]))
            .keep_alive("1m")
            .send()
            .await
            .expect("open PIT"),
        "open PIT",
    )
    .await;
    let mut pit_id = pit["id"].as_str().unwrap_or_else(|| panic!("no PIT id in {pit}")).to_string();

    let mut seen: Vec<String> = Vec::new();
    let mut search_after: Option<Value> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 10, "PIT paging did not terminate; ids so far: {seen:?}");
        let mut request = json!({
            "size": 2,
            "pit": { "id": pit_id, "keep_alive": "1m" },
            "sort": [ { "@timestamp": "asc" }, { "_shard_doc": "asc" } ],
            "track_total_hits": false
        });
        if let Some(after) = &search_after {
            request["search_after"] = after.clone();
        }
        let page = json_ok(
            client.search(SearchParts::None).body(request).send().await.expect("PIT search"),
            "PIT search",
        )
        .await;
        // The PIT id may change between responses: always continue with the newest one.
        if let Some(id) = page["pit_id"].as_str() {
            pit_id = id.to_string();
        }
        let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
        assert!(hits.len() <= 2, "page larger than size 2: {page}");
        if hits.is_empty() {
            break;
        }
        seen.extend(hit_ids(&page));
        search_after = hits.last().map(|h| h["sort"].clone());
    }
    assert_eq!(seen, expected_order, "PIT + search_after must return every document once, in @timestamp order");
    assert_eq!(pages, 4, "5 documents at 2 per page: 3 pages with hits, then an empty one");

    // An IPv4 address and its IPv4-mapped IPv6 form are the same `ip` value: both queries match d1 and d3.
    for query_ip in ["127.0.0.1", "::ffff:127.0.0.1"] {
        let found = json_ok(
            client
                .search(SearchParts::Index(&[&index.name]))
                .body(json!({ "query": { "term": { "source.ip": query_ip } }, "sort": ["@timestamp"] }))
                .send()
                .await
                .expect("ip term search"),
            "ip term search",
        )
        .await;
        assert_eq!(hit_ids(&found), ["d1", "d3"], "term source.ip={query_ip}");
    }

    // ids query + terms aggregation over a keyword array: d2 has [authentication, iam], d4 [process, authentication].
    let agg = json_ok(
        client
            .search(SearchParts::Index(&[&index.name]))
            .body(json!({
                "size": 0,
                "query": { "ids": { "values": ["d2", "d4"] } },
                "aggs": { "cat": { "terms": { "field": "event.category" } } }
            }))
            .send()
            .await
            .expect("terms aggregation"),
        "terms aggregation",
    )
    .await;
    let buckets: BTreeMap<String, u64> = agg["aggregations"]["cat"]["buckets"]
        .as_array()
        .unwrap_or_else(|| panic!("no buckets in {agg}"))
        .iter()
        .map(|b| (b["key"].as_str().unwrap_or("?").to_string(), b["doc_count"].as_u64().unwrap_or(0)))
        .collect();
    let expected: BTreeMap<String, u64> =
        [("authentication".to_string(), 2), ("iam".to_string(), 1), ("process".to_string(), 1)].into();
    assert_eq!(buckets, expected);

    let closed = json_ok(
        client
            .close_point_in_time()
            .body(json!({ "id": pit_id }))
            .send()
            .await
            .expect("close PIT"),
        "close PIT",
    )
    .await;
    assert_eq!(closed["succeeded"], json!(true), "closing the PIT: {closed}");
}
