//! Live-cluster tests of the client, the window fetch and the alert writer.
//! Need ESDETECT_TEST_ES_URL (they fail, not skip, without it). Every index is `esio-test-<random>-…`
//! and is deleted afterwards.

use crate::common;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use elasticsearch::http::Method;
use esdetect::es::{ConnectionConfig, EsClient, EsError, Flavour, PrivilegeCheck, RetryPolicy};
use esdetect::sink::es::{ensure_alerts_index, write_alerts, SinkError, WriteOptions};
use esdetect::source::es::{
    close_pit, fetch_mapping, fetch_window, open_pit, stream_window, SourceError, WindowQuery,
};
use esdetect::event::projection::Projection;
use esdetect::event::FieldSet;
use serde_json::{json, Value};
use std::sync::Arc;
use common::esio::*;

/// PIT tests compare the node's open search contexts before and after; run them one at a time.
static PIT_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn ids(events: &[esdetect::event::Event]) -> Vec<String> {
    let mut v: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    v.sort();
    v
}

async fn open_contexts(c: &EsClient) -> u64 {
    let (status, resp) = c.raw(Method::Get, "/_nodes/stats/indices/search", &[], None).await.unwrap();
    assert_eq!(status, 200, "{resp}");
    resp["nodes"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n["indices"]["search"]["open_contexts"].as_u64().unwrap_or(0))
        .sum()
}

fn event_mapping() -> Value {
    json!({"properties": {"@timestamp": {"type": "date"}, "event": {"properties": {"ingested": {"type": "date"}, "code": {"type": "keyword"}}}}})
}

#[tokio::test]
async fn window_filter_with_override_fallback_and_inclusive_bounds() {
    let _lock = PIT_LOCK.lock().await;
    let c = client().await;
    let index = unique("window");
    let _cleanup = Cleanup { prefix: index.clone() };
    create_index(&c, &index, event_mapping()).await;
    let from = "2026-05-20T10:00:00.000Z";
    let to = "2026-05-20T10:09:00.000Z";
    let docs = vec![
        // ingested inside, @timestamp outside → in (override window).
        ("ingested-in-ts-out", json!({"@timestamp": "2026-05-20T09:00:00.000Z", "event": {"ingested": "2026-05-20T10:05:00.000Z"}})),
        // no ingested, @timestamp inside → in (fallback).
        ("no-ingested-ts-in", json!({"@timestamp": "2026-05-20T10:01:00.000Z"})),
        // both outside → out.
        ("both-out", json!({"@timestamp": "2026-05-20T08:00:00.000Z", "event": {"ingested": "2026-05-20T08:00:00.000Z"}})),
        // ingested outside, @timestamp inside → out: the fallback only applies when ingested is missing.
        ("ingested-out-ts-in", json!({"@timestamp": "2026-05-20T10:02:00.000Z", "event": {"ingested": "2026-05-20T11:00:00.000Z"}})),
        // Boundaries, inclusive at millisecond precision.
        ("ingested-at-from", json!({"@timestamp": "2026-05-20T10:00:00.000Z", "event": {"ingested": from}})),
        ("ingested-at-to", json!({"@timestamp": "2026-05-20T10:00:00.000Z", "event": {"ingested": to}})),
        ("ingested-1ms-before", json!({"@timestamp": "2026-05-20T10:00:00.000Z", "event": {"ingested": "2026-05-20T09:59:59.999Z"}})),
        ("ingested-1ms-after", json!({"@timestamp": "2026-05-20T10:00:00.000Z", "event": {"ingested": "2026-05-20T10:09:00.001Z"}})),
        ("ts-at-to-no-ingested", json!({"@timestamp": to})),
        ("ts-1ms-after-no-ingested", json!({"@timestamp": "2026-05-20T10:09:00.001Z"})),
        // In the window by ingested but without @timestamp: EQL drops it (exists filter).
        ("no-timestamp", json!({"event": {"ingested": "2026-05-20T10:03:00.000Z"}})),
    ];
    let docs: Vec<(String, Value)> = docs.into_iter().map(|(i, d)| (i.to_string(), d)).collect();
    index_docs(&c, &index, &docs).await;

    let q = WindowQuery::new(vec![index.clone()], t(from), t(to)).with_override("event.ingested", true);
    let (events, stats) = fetch_window(&c, &q).await.unwrap();
    assert_eq!(
        ids(&events),
        vec!["ingested-at-from", "ingested-at-to", "ingested-in-ts-out", "no-ingested-ts-in", "ts-at-to-no-ingested"]
    );
    assert_eq!(stats.hits, 5);
    assert!(events.iter().all(|e| e.index == index));
    assert_eq!(events.iter().find(|e| e.id == "no-ingested-ts-in").unwrap().source, docs[1].1);

    // Fallback disabled: only events whose ingested is inside.
    let q2 = WindowQuery::new(vec![index.clone()], t(from), t(to)).with_override("event.ingested", false);
    let (events, _) = fetch_window(&c, &q2).await.unwrap();
    assert_eq!(ids(&events), vec!["ingested-at-from", "ingested-at-to", "ingested-in-ts-out"]);

    // Plain @timestamp window (rule 1 style).
    let q3 = WindowQuery::new(vec![index.clone()], t(from), t(to));
    let (events, _) = fetch_window(&c, &q3).await.unwrap();
    assert_eq!(
        ids(&events),
        vec![
            "ingested-1ms-after", "ingested-1ms-before", "ingested-at-from", "ingested-at-to",
            "ingested-out-ts-in", "no-ingested-ts-in", "ts-at-to-no-ingested"
        ]
    );

    // Pushdown narrows, extra filters AND in; missing patterns are ignored.
    let mut q4 = WindowQuery::new(vec![index.clone(), "esio-test-no-such-index".into(), "esio-none-*".into()], t(from), t(to));
    q4.pushdown = Some(json!({"ids": {"values": ["no-ingested-ts-in", "both-out", "ingested-at-to"]}}));
    let (events, _) = fetch_window(&c, &q4).await.unwrap();
    assert_eq!(ids(&events), vec!["ingested-at-to", "no-ingested-ts-in"]);
}

#[tokio::test]
async fn pit_paging_returns_everything_in_order_and_closes_the_pit() {
    let _lock = PIT_LOCK.lock().await;
    let c = client().await;
    let a = unique("pit-a");
    let b = format!("{a}-b");
    let _cleanup = Cleanup { prefix: a.clone() };
    create_index(&c, &a, event_mapping()).await;
    create_index(&c, &b, event_mapping()).await;
    // 25 events over two indices; timestamps repeat (i / 3) so ties must be broken without loss.
    let base = Utc.with_ymd_and_hms(2026, 5, 20, 10, 0, 0).unwrap();
    let mut da = Vec::new();
    let mut db = Vec::new();
    for i in 0..25i64 {
        let ts = base + chrono::Duration::seconds(i / 3);
        let doc = json!({"@timestamp": ts.to_rfc3339(), "n": i});
        if i % 2 == 0 { da.push((format!("e{i:02}"), doc)) } else { db.push((format!("e{i:02}"), doc)) }
    }
    index_docs(&c, &a, &da).await;
    index_docs(&c, &b, &db).await;

    let before = open_contexts(&c).await;
    let mut q = WindowQuery::new(vec![format!("{a}*")], base, base + chrono::Duration::minutes(1));
    q.page_size = 4;
    let mut seen: Vec<(i64, String)> = Vec::new();
    // Only `n` is parsed from each `_source`; the whole document stays available for alerts.
    let projection = Projection::Fields(Arc::new(FieldSet::new(["n"])));
    let stats = stream_window(&c, &q, &projection, |e| {
        let n = e.source["n"].as_i64().unwrap();
        assert_eq!(e.source, json!({"n": n}), "the projection holds only the wanted field");
        assert_eq!(e.full_source()["@timestamp"].as_str().map(|s| !s.is_empty()), Some(true));
        assert_eq!(e.full_source()["n"], json!(n));
        seen.push((n / 3, e.id.clone()));
        Ok::<(), std::convert::Infallible>(())
    })
    .await
    .unwrap();
    assert_eq!(stats.hits, 25);
    assert!(stats.bytes > 25 * 20, "answer bytes are counted: {}", stats.bytes);
    assert_eq!(stats.pages, 7, "6 full pages of 4 and one of 1");
    let mut all: Vec<String> = seen.iter().map(|(_, id)| id.clone()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 25, "every event exactly once");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "not in @timestamp order: {seen:?}");
    assert_eq!(open_contexts(&c).await, before, "the PIT was not closed");

    // A consumer error stops the fetch and still closes the PIT.
    let mut n = 0;
    let err = stream_window(&c, &q, &Projection::Full, |_| {
        n += 1;
        if n == 6 { Err("stop here") } else { Ok(()) }
    })
    .await
    .unwrap_err();
    assert!(matches!(err, SourceError::Consumer(_)), "{err}");
    assert_eq!(n, 6);
    assert_eq!(open_contexts(&c).await, before, "the PIT was not closed after a consumer error");

    // A closed PIT cannot be searched any more.
    let flavour = c.info().await.unwrap().flavour;
    let id = open_pit(&c, flavour, std::slice::from_ref(&a)).await.unwrap();
    close_pit(&c, flavour, &id).await.unwrap();
    let (status, resp) = c
        .raw(Method::Post, "/_search", &[], Some(&json!({"pit": {"id": id, "keep_alive": "1m"}, "size": 1})))
        .await
        .unwrap();
    assert_eq!(status, 404, "search on a closed PIT should fail: {resp}");
}

#[tokio::test]
async fn shard_failure_is_an_error_not_a_shorter_window() {
    let _lock = PIT_LOCK.lock().await;
    let c = client().await;
    let good = unique("shards");
    let bad = format!("{good}-long");
    let _cleanup = Cleanup { prefix: good.clone() };
    create_index(&c, &good, json!({"properties": {"@timestamp": {"type": "date"}, "v": {"type": "keyword"}}})).await;
    create_index(&c, &bad, json!({"properties": {"@timestamp": {"type": "date"}, "v": {"type": "long"}}})).await;
    index_docs(&c, &good, &[("g".into(), json!({"@timestamp": "2026-05-20T10:00:01Z", "v": "abc"}))]).await;
    index_docs(&c, &bad, &[("b".into(), json!({"@timestamp": "2026-05-20T10:00:02Z", "v": 1}))]).await;
    let before = open_contexts(&c).await;
    let mut q = WindowQuery::new(vec![format!("{good}*")], t("2026-05-20T10:00:00Z"), t("2026-05-20T10:05:00Z"));
    // "abc" cannot be a long: the shard of the `long` index fails, the other succeeds.
    q.pushdown = Some(json!({"term": {"v": "abc"}}));
    let err = fetch_window(&c, &q).await.unwrap_err();
    match &err {
        SourceError::ShardFailures { failed, .. } => assert_eq!(*failed, 1),
        other => panic!("expected ShardFailures, got {other}"),
    }
    assert!(err.to_string().contains("NOT fully"));
    assert_eq!(open_contexts(&c).await, before, "the PIT was not closed after a shard failure");
}

#[tokio::test]
async fn mapping_info_and_privileges() {
    let c = client().await;
    let index = unique("mapping");
    let _cleanup = Cleanup { prefix: index.clone() };
    create_index(&c, &index, event_mapping()).await;
    let m = fetch_mapping(&c, &[format!("{index}*"), "esio-test-missing".into()]).await.unwrap();
    assert_eq!(m[&index]["mappings"]["properties"]["@timestamp"]["type"], "date");
    assert_eq!(fetch_mapping(&c, &["esio-none-*".into()]).await.unwrap(), json!({}));

    let info = c.info().await.unwrap();
    assert!(info.major >= 2, "{info:?}");
    let p = c.check_privileges(&[format!("{index}*")], Some(&index)).await.unwrap();
    match info.flavour {
        Flavour::Elasticsearch => assert!(matches!(p, PrivilegeCheck::Granted | PrivilegeCheck::SecurityDisabled), "{p:?}"),
        Flavour::OpenSearch => assert!(matches!(p, PrivilegeCheck::NotChecked(_)), "{p:?}"),
    }
}

fn alerts_template() -> Value {
    json!({"template": {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {"dynamic": false, "properties": {
            "@timestamp": {"type": "date"},
            "kibana": {"properties": {"alert": {"properties": {"uuid": {"type": "keyword"}}}}}}}}})
}

fn alert(id: &str) -> (String, Value) {
    (id.to_string(), json!({"@timestamp": "2026-05-20T10:00:00.000Z", "kibana.alert.uuid": id}))
}

#[tokio::test]
async fn ensure_alerts_index_is_idempotent() {
    let c = client().await;
    let alias = unique("alerts");
    let _cleanup = Cleanup { prefix: alias.clone() };
    let s1 = ensure_alerts_index(&c, &alias, alerts_template()).await.unwrap();
    assert!(s1.created_template);
    assert_eq!(s1.created_index.as_deref(), Some(format!("{alias}-000001").as_str()));
    assert_eq!(s1.write_index.as_deref(), Some(format!("{alias}-000001").as_str()));
    let s2 = ensure_alerts_index(&c, &alias, alerts_template()).await.unwrap();
    assert!(!s2.created_template);
    assert_eq!(s2.created_index, None);
    assert_eq!(s2.write_index, s1.write_index);
    // The template's mapping reached the index.
    let m = fetch_mapping(&c, std::slice::from_ref(&alias)).await.unwrap();
    assert_eq!(m[format!("{alias}-000001")]["mappings"]["dynamic"], json!("false"));

    // Concurrent callers on a fresh alias: all succeed, one index.
    let alias2 = format!("{alias}-race");
    let (r1, r2, r3) = tokio::join!(
        ensure_alerts_index(&c, &alias2, alerts_template()),
        ensure_alerts_index(&c, &alias2, alerts_template()),
        ensure_alerts_index(&c, &alias2, alerts_template())
    );
    let states = [r1.unwrap(), r2.unwrap(), r3.unwrap()];
    assert_eq!(states.iter().filter(|s| s.created_index.is_some()).count(), 1);
    assert!(states.iter().all(|s| s.write_index.as_deref() == Some(format!("{alias2}-000001").as_str())));

    // A concrete index with the alias's name is refused with a clear error.
    let concrete = format!("{alias}-concrete");
    create_index(&c, &concrete, json!({})).await;
    let e = ensure_alerts_index(&c, &concrete, alerts_template()).await.unwrap_err();
    assert!(matches!(e, SinkError::NotAnAlias { .. }), "{e}");
}

#[tokio::test]
async fn kibana_alias_is_never_created() {
    let c = client().await;
    let space = unique("space");
    let alias = format!(".alerts-security.alerts-{space}");
    let e = ensure_alerts_index(&c, &alias, alerts_template()).await.unwrap_err();
    assert!(matches!(e, SinkError::KibanaAliasMissing { .. }), "{e}");
    assert!(e.to_string().contains("never creates"));
    assert!(!exists(&c, &format!("/{alias}")).await, "an index with Kibana's alias name was created");
    assert!(!exists(&c, &format!("/{alias}-000001")).await);
    let (status, _) = c.raw(Method::Get, &format!("/_index_template/esdetect-{}", alias.trim_start_matches('.')), &[], None).await.unwrap();
    assert_eq!(status, 404, "no template may be created for Kibana's alias");
}

#[tokio::test]
async fn write_alerts_twice_creates_once() {
    let c = client().await;
    let alias = unique("write");
    let _cleanup = Cleanup { prefix: alias.clone() };
    ensure_alerts_index(&c, &alias, alerts_template()).await.unwrap();
    let groups = vec![vec![alert("shell-1"), alert("bb-1-0"), alert("bb-1-1")], vec![alert("event-2")], vec![alert("event-3")]];
    let r1 = write_alerts(&c, &alias, groups.clone(), &WriteOptions::default()).await.unwrap();
    assert_eq!((r1.created, r1.duplicates, r1.failed.len()), (5, 0, 0), "{r1:?}");
    assert!(r1.partial_groups.is_empty());
    let r2 = write_alerts(&c, &alias, groups, &WriteOptions::default()).await.unwrap();
    assert_eq!((r2.created, r2.duplicates, r2.failed.len()), (0, 5, 0), "{r2:?}");
    assert_eq!(count(&c, &alias, json!({"match_all": {}})).await, 5);

    // The same id twice in one call is written once.
    let r3 = write_alerts(&c, &alias, vec![vec![alert("x")], vec![alert("x")]], &WriteOptions::default()).await.unwrap();
    assert_eq!((r3.created, r3.duplicates), (1, 1));

    // Small bulk batches never split a group, and everything still arrives.
    let opts = WriteOptions { max_docs_per_bulk: 2, ..Default::default() };
    let groups: Vec<Vec<(String, Value)>> = (0..4).map(|g| (0..3).map(|i| alert(&format!("g{g}-{i}"))).collect()).collect();
    let r4 = write_alerts(&c, &alias, groups, &opts).await.unwrap();
    assert_eq!((r4.created, r4.duplicates), (12, 0), "{r4:?}");
    assert_eq!(count(&c, &alias, json!({"match_all": {}})).await, 18);

    // A document the cluster rejects is reported with its reason, and its group as partial.
    let mut bad = alert("bad-doc");
    bad.1 = json!({"@timestamp": "not a date", "kibana.alert.uuid": "bad-doc"});
    let r5 = write_alerts(&c, &alias, vec![vec![alert("good-doc"), bad]], &WriteOptions::default()).await.unwrap();
    assert_eq!(r5.created, 1);
    assert_eq!(r5.failed.len(), 1);
    assert_eq!(r5.failed[0].0, "bad-doc");
    assert!(r5.failed[0].1.contains("400"), "{:?}", r5.failed);
    assert_eq!(r5.partial_groups, vec![0]);
}

#[tokio::test]
async fn duplicate_in_older_backing_index_is_detected() {
    let c = client().await;
    let alias = unique("rollover");
    let _cleanup = Cleanup { prefix: alias.clone() };
    ensure_alerts_index(&c, &alias, alerts_template()).await.unwrap();
    let r1 = write_alerts(&c, &alias, vec![vec![alert("old-alert")]], &WriteOptions::default()).await.unwrap();
    assert_eq!(r1.created, 1);
    let (status, resp) = c.raw(Method::Post, &format!("/{alias}/_rollover"), &[], None).await.unwrap();
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["new_index"], json!(format!("{alias}-000002")));

    let r2 = write_alerts(&c, &alias, vec![vec![alert("old-alert"), alert("new-alert")]], &WriteOptions::default())
        .await
        .unwrap();
    assert_eq!((r2.created, r2.duplicates), (1, 1), "{r2:?}");
    assert_eq!(count(&c, &alias, json!({"ids": {"values": ["old-alert"]}})).await, 1, "old alert written twice");
    assert_eq!(count(&c, &format!("{alias}-000002"), json!({"ids": {"values": ["new-alert"]}})).await, 1);
    assert_eq!(count(&c, &format!("{alias}-000002"), json!({"ids": {"values": ["old-alert"]}})).await, 0);
}

#[tokio::test]
async fn unreachable_cluster_is_a_typed_error() {
    // Port 1 on loopback: nothing listens there.
    let c = EsClient::new(&ConnectionConfig::for_url("http://127.0.0.1:1"))
        .unwrap()
        .with_retry(RetryPolicy { max_retries: 1, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) });
    let e = c.info().await.unwrap_err();
    assert!(matches!(e, EsError::Unreachable { .. }), "{e}");
    let q = WindowQuery::new(vec!["x".into()], t("2026-05-20T10:00:00Z"), t("2026-05-20T10:05:00Z"));
    assert!(matches!(fetch_window(&c, &q).await.unwrap_err(), SourceError::Es(EsError::Unreachable { .. })));
    let e = write_alerts(&c, "esio-test-unreachable", vec![vec![alert("a")]], &WriteOptions::default()).await.unwrap_err();
    assert!(matches!(e, SinkError::Es(EsError::Unreachable { .. })), "{e}");
    let e = ensure_alerts_index(&c, "esio-test-unreachable", alerts_template()).await.unwrap_err();
    assert!(matches!(e, SinkError::Es(EsError::Unreachable { .. })), "{e}");
}

/// A `create` answered 409 is told apart by the execution uuid the stored alert carries: this write's own
/// (an earlier attempt of a retried request whose answer was lost) counts as created, anything else as a
/// duplicate.
#[tokio::test]
async fn conflicts_with_own_writes_are_not_counted_as_duplicates() {
    let c = client().await;
    let alias = unique("own");
    let _cleanup = Cleanup { prefix: alias.clone() };
    ensure_alerts_index(&c, &alias, alerts_template()).await.unwrap();
    let doc = |id: &str, exec: &str| {
        (id.to_string(), json!({"@timestamp": "2026-05-20T10:00:00.000Z", "kibana.alert.uuid": id, "kibana.alert.rule.execution.uuid": exec}))
    };
    let stored = vec![vec![doc("a-1", "exec-1")], vec![doc("a-2", "exec-0")]];
    let r = write_alerts(&c, &alias, stored, &WriteOptions::default()).await.unwrap();
    assert_eq!(r.created, 2);
    // This run (exec-1) meets both as conflicts: a-1 it wrote itself, a-2 was there before.
    let docs = vec![(0, "a-1".to_string(), doc("a-1", "exec-1").1), (1, "a-2".to_string(), doc("a-2", "exec-1").1)];
    assert_eq!(esdetect::sink::es::own_writes(&c, &alias, &docs, &[0, 1]).await.unwrap(), 1);
    assert_eq!(esdetect::sink::es::own_writes(&c, &alias, &docs, &[1]).await.unwrap(), 0);
}

/// Elasticsearch's `_source` filter keeps, for every shape a field can take in a document (nested
/// objects, dotted keys, a dotted key below an object, arrays of objects, mixed), at least what the
/// projection keeps from the whole document: a filtered scan sees each event exactly as a full one.
/// Then `_mget` gives back the whole documents, and reports one that is gone.
#[tokio::test]
async fn source_filter_keeps_what_the_projection_reads_and_mget_reads_the_rest() {
    let _lock = PIT_LOCK.lock().await;
    let c = client().await;
    let index = unique("srcfilter");
    let _cleanup = Cleanup { prefix: index.clone() };
    create_index(&c, &index, json!({"properties": {"@timestamp": {"type": "date"}}})).await;
    let ts = "2026-05-20T10:00:01Z";
    let docs: Vec<(String, Value)> = vec![
        ("nested".into(), json!({"@timestamp": ts, "user": {"name": "a", "id": "S-1"}, "process": {"parent": {"name": "p"}, "pid": 4}, "big": "x"})),
        ("dotted".into(), json!({"@timestamp": ts, "user.name": "b", "process.parent.name": "q", "other.field": 1})),
        ("mixed".into(), json!({"@timestamp": ts, "process": {"parent.name": "r", "args": ["-a"]}, "user": {"name": ["c", "d"]}})),
        ("arrays".into(), json!({"@timestamp": ts, "user": [{"name": "e", "x": 1}, {"name": ["f"], "y": 2}], "process": [{"parent": {"name": "s"}}, {"parent": [{"name": "t"}]}]})),
        ("empty".into(), json!({"@timestamp": ts, "unrelated": {"deep": {"x": 1}}})),
    ];
    index_docs(&c, &index, &docs).await;
    // A scalar where the paths expect objects: its own index (the mapping of the first one forbids it).
    let scalar = format!("{index}-scalar");
    create_index(&c, &scalar, json!({"properties": {"@timestamp": {"type": "date"}}})).await;
    let scalar_doc = ("scalar".to_string(), json!({"@timestamp": ts, "user": "not-an-object", "process": {"parent": "flat"}}));
    index_docs(&c, &scalar, std::slice::from_ref(&scalar_doc)).await;
    let docs: Vec<(String, Value)> = docs.into_iter().chain([scalar_doc]).collect();
    let paths = ["@timestamp", "user.name", "process.parent.name"];
    let projection = Projection::Fields(Arc::new(FieldSet::new(paths)));
    let q = WindowQuery::new(vec![format!("{index}*")], t("2026-05-20T10:00:00Z"), t("2026-05-20T10:01:00Z"));
    let mut filtered_q = q.clone();
    filtered_q.source_includes = Some(paths.iter().map(|p| p.to_string()).collect());

    let read = |q: WindowQuery| {
        let (c, projection) = (c.clone(), projection.clone());
        async move {
            let mut events = Vec::new();
            let stats = stream_window(&c, &q, &projection, |e| {
                events.push(e);
                Ok::<(), std::convert::Infallible>(())
            })
            .await
            .unwrap();
            events.sort_by(|a, b| a.id.cmp(&b.id));
            (events, stats)
        }
    };
    let (full, full_stats) = read(q).await;
    let (filtered, filtered_stats) = read(filtered_q).await;
    assert_eq!(full.len(), docs.len());
    for (f, w) in filtered.iter().zip(&full) {
        assert_eq!((&f.index, &f.id), (&w.index, &w.id));
        // Every wanted path reads the same values (an object left empty by the projection, where the
        // filter drops it, holds nothing a reader could see).
        for path in ["@timestamp", "user.name", "process.parent.name"] {
            assert_eq!(f.field_values(path), w.field_values(path), "document {}, field {path}", f.id);
        }
        if f.id != "scalar" {
            assert_eq!(f.source, w.source, "document {}: the filtered hit projects differently", f.id);
        }
        assert!(f.needs_text() && !w.needs_text());
    }
    assert!(filtered_stats.bytes < full_stats.bytes, "{} vs {}", filtered_stats.bytes, full_stats.bytes);

    // The whole documents by `_mget`; one deleted meanwhile is reported, not an error.
    let (status, resp) = c.raw(Method::Delete, &format!("/{index}/_doc/empty"), &[("refresh", "true".into())], None).await.unwrap();
    assert_eq!(status, 200, "{resp}");
    // So is one whose index is gone.
    let gone_index = format!("{index}-deleted");
    let keys: Vec<(String, String)> = filtered
        .iter()
        .map(|e| (e.index.clone(), e.id.clone()))
        .chain([(index.clone(), "nested".into()), (gone_index.clone(), "x".into())])
        .collect();
    let sources = esdetect::source::es::fetch_sources(&c, &keys).await.unwrap();
    assert_eq!(sources.requests, 1);
    assert!(sources.bytes > 0);
    let mut missing: Vec<(&str, &str)> = sources.missing.iter().map(|(i, id, _)| (i.as_str(), id.as_str())).collect();
    missing.sort();
    assert_eq!(missing, [(index.as_str(), "empty"), (gone_index.as_str(), "x")], "{:?}", sources.missing);
    assert_eq!(sources.found.len(), docs.len() - 1, "duplicates are read once");
    for mut e in filtered.into_iter().filter(|e| e.id != "empty") {
        let text = sources.found[&(e.index.clone(), e.id.clone())].clone();
        e.attach_text(text);
        let want = &docs.iter().find(|(id, _)| *id == e.id).unwrap().1;
        assert_eq!(&*e.full_source(), want, "document {}", e.id);
        assert!(!e.needs_text());
    }
}
