//! Real rule sets: a Kibana rule export with an exception list, run offline (`esdetect test`), validated,
//! and run against the live node (`esdetect run --once`); and the exception filter checked on the node —
//! the Query DSL sent to Elasticsearch must exclude exactly the events the in-memory matcher excludes.
//!
//! The export fixture (`tests/fixtures/kibana_export/rules_export.ndjson`) is shaped like a Kibana 8.19
//! export: the two seed rules (saved-object ids = spec alert-documents §9.5's rule uuids), one exception
//! list with two items, and the export details line. Expected alert ids are computed here from the
//! formulas of spec alert-documents §9, never copied from the program's output.
//! The node tests need ESDETECT_TEST_ES_URL (tests/common): without a node they fail.

use crate::common;
use common::ids::event_alert_id;

use common::esdetect;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use elasticsearch::http::Method;
use esdetect::eql::mapping::Mapping;
use esdetect::es::{ConnectionConfig, EsClient};
use esdetect::event::Event;
use esdetect::exceptions::{parse_item, RuleExceptions};
use serde_json::{json, Value};


/// The export's rule `id`s (Kibana saved-object ids), hence the alerts' rule uuids.
const SMB_UUID: &str = "5d0c1e1a-2b7f-4a39-8c4e-6f1b9d2a7e10";
const KRB_UUID: &str = "7b1c2a9e-3f0d-4c55-9a11-0d6e2f4b8c01";
const UPSTREAM_INDEX: &str = r#""index":["logs-system.security*","logs-windows.forwarded*","winlogbeat-*"]"#;



/// §9.2 and §9.3: the shell id then the building-block ids of a sequence of `(index, id)` events.
fn sequence_ids(events: &[(&str, &str)], rule_uuid: &str) -> Vec<String> {
    let (shell, bbs) = common::ids::sequence_ids(events, rule_uuid);
    std::iter::once(shell).chain(bbs).collect()
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kibana_export/rules_export.ndjson")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// --- events (shaped as in spec event-shapes) ------------------------------------------------------------

fn smb_5145(ts: &str, source_ip: &str) -> Value {
    json!({
        "@timestamp": ts,
        "event": {"category": ["network", "file"], "code": "5145", "action": "network-share-object-access-checked", "kind": "event", "ingested": ts},
        "host": {"name": "fs01.corp.local", "ip": ["10.0.1.12", "fe80::1"], "os": {"type": "windows"}},
        "winlog": {"computer_name": "fs01.corp.local", "event_data": {"ShareName": "\\\\*\\IPC$", "SubjectLogonId": "0x3e7"}},
        "user": {"name": "FS01$", "domain": "CORP"},
        "source": {"ip": source_ip, "port": 49832}
    })
}

fn krb_4624(ts: &str, logon_id: &str) -> Value {
    json!({
        "@timestamp": ts,
        "event": {"category": ["authentication"], "code": "4624", "action": "logged-in", "outcome": "success", "ingested": ts},
        "host": {"name": "ws04.corp.local", "os": {"type": "windows"}},
        "process": {"pid": 0},
        "source": {"ip": "127.0.0.1"},
        "user": {"name": "frank"},
        "winlog": {
            "computer_name": "ws04.corp.local",
            "logon": {"type": "Network"},
            "event_data": {"AuthenticationPackageName": "Kerberos", "ElevatedToken": "%%1843", "TargetLogonId": logon_id}
        }
    })
}

fn krb_4697(ts: &str, logon_id: &str, service: &str) -> Value {
    json!({
        "@timestamp": ts,
        "event": {"category": ["iam", "configuration"], "code": "4697", "action": "service-installed", "ingested": ts},
        "host": {"name": "ws04.corp.local", "os": {"type": "windows"}},
        "user": {"name": "frank"},
        "winlog": {"computer_name": "ws04.corp.local", "event_data": {"SubjectLogonId": logon_id, "ServiceName": service}}
    })
}

/// The scenario both the offline and the cluster test run: which events alert, and which the exception
/// list removes before the query sees them.
fn scenario() -> Vec<Value> {
    vec![
        // 0: relay from a workstation → alert.
        smb_5145("2026-05-20T10:01:00.000Z", "10.0.80.80"),
        // 1: the lab scanner (item `lab-scanner`: source.ip, user.name FS*$, os windows) → excepted.
        smb_5145("2026-05-20T10:01:10.000Z", "10.0.80.99"),
        // 2, 3: loopback Kerberos logon then a KrbSCM service in the same session → sequence alert.
        krb_4624("2026-05-20T10:02:00.000Z", "0x1a"),
        krb_4697("2026-05-20T10:02:30.000Z", "0x1a", "KrbSCM"),
        // 4, 5: the same pattern for the lab agent (item `lab-agent-services`) → its 4697 is excepted, no alert.
        krb_4624("2026-05-20T10:03:00.000Z", "0x2b"),
        krb_4697("2026-05-20T10:03:10.000Z", "0x2b", "LabAgent"),
        // 6, 7, 8: a lab agent install, then a KrbSCM in the same session: the excepted event never enters the
        // sequence, so the sequence is 6 → 8 (without the exception it would be 6 → 7).
        krb_4624("2026-05-20T10:04:00.000Z", "0x3c"),
        krb_4697("2026-05-20T10:04:05.000Z", "0x3c", "LabUpdater"),
        krb_4697("2026-05-20T10:04:20.000Z", "0x3c", "KrbSCM"),
    ]
}

/// Alert ids the scenario must give, for events stored at `(index, id)` pairs, in space `space`.
fn expected_ids(at: &[(String, String)], space: &str) -> BTreeSet<String> {
    let p = |i: usize| (at[i].0.as_str(), at[i].1.as_str());
    let mut ids: BTreeSet<String> = [event_alert_id(&at[0].0, &at[0].1, space, SMB_UUID)].into();
    ids.extend(sequence_ids(&[p(2), p(3)], KRB_UUID));
    ids.extend(sequence_ids(&[p(6), p(8)], KRB_UUID));
    ids
}

// --- offline --------------------------------------------------------------------------------------------

#[test]
fn export_runs_offline_with_kibana_ids_and_exceptions_applied() {
    let dir = tempfile::tempdir().unwrap();
    let index = ".ds-logs-system.security-default-2026.05.20-000001";
    let at: Vec<(String, String)> = (0..scenario().len()).map(|i| (index.to_string(), format!("ev-{i}"))).collect();
    let lines: Vec<String> = scenario()
        .iter()
        .zip(&at)
        .map(|(doc, (index, id))| json!({"_index": index, "_id": id, "_source": doc}).to_string())
        .collect();
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();

    // No config at all: the uuids come from the export.
    let out = esdetect(
        dir.path(),
        &["--no-color", "--rules", fixture().to_str().unwrap(), "test", "--events", events.to_str().unwrap(), "--format", "ndjson"],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let alerts: Vec<Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: BTreeSet<String> = alerts.iter().map(|a| a["_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, expected_ids(&at, "default"));
    assert_eq!(alerts.len(), 7, "1 event alert + 2 × (shell + 2 building blocks)");
    for a in &alerts {
        let src = &a["_source"];
        let uuid = src["kibana.alert.rule.uuid"].as_str().unwrap();
        assert!(uuid == SMB_UUID || uuid == KRB_UUID, "{uuid}");
        // The rule object's audit fields, as Kibana writes them on its alerts.
        let created = if uuid == SMB_UUID { "2026-05-19T08:00:00.000Z" } else { "2026-05-19T08:00:01.000Z" };
        assert_eq!(src["kibana.alert.rule.created_at"], created);
        assert_eq!(src["kibana.alert.rule.revision"], 1);
        assert_eq!(src["kibana.alert.rule.immutable"], false);
    }
    // Nothing from an excepted event is in any alert.
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("10.0.80.99") && !stdout.contains("LabAgent") && !stdout.contains("LabUpdater"), "{stdout}");
}

/// When the second relay (same host as event 0, another source address) happens.
const SECOND_RELAY_AT: &str = "2026-05-20T10:01:20.000Z";

/// The export with Kibana's `alert_suppression` on the SMB rule: per execution (no `duration`), grouped
/// by `host.name`, as the rule editor writes it.
fn with_suppression(export: String) -> String {
    export
        .lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            if v["id"] == SMB_UUID {
                v["alert_suppression"] = json!({"group_by": ["host.name"], "missing_fields_strategy": "suppress"});
            }
            v.to_string() + "\n"
        })
        .collect()
}

/// The SMB alert carries the second relay as one suppressed document, from event 0 to the second relay.
fn assert_suppressed_once(src: &Value) {
    assert_eq!(src["kibana.alert.suppression.docs_count"], 1, "{src}");
    assert_eq!(src["kibana.alert.suppression.terms"][0]["field"], "host.name", "{src}");
    assert_eq!(src["kibana.alert.suppression.start"], "2026-05-20T10:01:00.000Z");
    assert_eq!(src["kibana.alert.suppression.end"], SECOND_RELAY_AT);
}

/// Issue 11's acceptance offline: export + exception list + `alert_suppression` gives Kibana's ids, the
/// exceptions applied and the suppressed relay counted.
#[test]
fn export_with_suppression_runs_offline_with_kibana_ids_and_the_relay_counted() {
    let dir = tempfile::tempdir().unwrap();
    let index = ".ds-logs-system.security-default-2026.05.20-000001";
    let mut docs = scenario();
    docs.push(smb_5145(SECOND_RELAY_AT, "10.0.80.81"));
    let at: Vec<(String, String)> = (0..docs.len()).map(|i| (index.to_string(), format!("ev-{i}"))).collect();
    let lines: Vec<String> =
        docs.iter().zip(&at).map(|(doc, (index, id))| json!({"_index": index, "_id": id, "_source": doc}).to_string()).collect();
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let export = dir.path().join("rules_export.ndjson");
    std::fs::write(&export, with_suppression(std::fs::read_to_string(fixture()).unwrap())).unwrap();

    let out = esdetect(
        dir.path(),
        &["--no-color", "--rules", export.to_str().unwrap(), "test", "--events", events.to_str().unwrap(), "--format", "ndjson"],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let alerts: Vec<Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: BTreeSet<String> = alerts.iter().map(|a| a["_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, expected_ids(&at, "default"), "the second relay raises no alert of its own");
    let smb = alerts.iter().find(|a| a["_source"]["kibana.alert.rule.uuid"] == SMB_UUID).unwrap();
    assert_suppressed_once(&smb["_source"]);
}

#[test]
fn validate_counts_skipped_rules_per_reason_and_refuses_an_empty_set() {
    let dir = tempfile::tempdir().unwrap();
    let export = std::fs::read_to_string(fixture()).unwrap();
    let lines: Vec<&str> = export.lines().collect();
    let disabled = lines[1].replacen("\"enabled\":true", "\"enabled\":false", 1);
    let query_rule = r#"{"id":"q1","rule_id":"esql-1","name":"An ES|QL rule","type":"esql","language":"esql","query":"FROM logs-* | LIMIT 1","enabled":true}"#;
    let details = lines[5].replace("\"exported_count\":5", "\"exported_count\":6").replace("\"exported_rules_count\":2", "\"exported_rules_count\":3");
    let body = [lines[0], &disabled, query_rule, lines[2], lines[3], lines[4], &details].join("\n") + "\n";
    std::fs::write(dir.path().join("export.ndjson"), body).unwrap();
    let out = esdetect(dir.path(), &["--no-color", "--rules", "export.ndjson", "validate"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("1 rule(s) valid, 0 error(s), 2 skipped (1 disabled, 1 type esql)"), "{stdout}");
    assert!(stdout.contains("by type: eql 1 loaded, eql 1 loaded, not enabled, esql 1 skipped"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("export.ndjson:2:1: rule `Service Creation via Local Kerberos Authentication` is disabled"), "{stderr}");
    assert!(stderr.contains("export.ndjson:3:1: rule `An ES|QL rule` of type `esql` (language `esql`) is not run: ES|QL rules need"), "{stderr}");

    // Only rules that cannot run: not a success.
    let only_query = format!("{query_rule}\n{}\n", r#"{"exported_count":1,"exported_rules_count":1,"missing_rules":[],"missing_rules_count":0}"#);
    std::fs::write(dir.path().join("export.ndjson"), only_query).unwrap();
    let out = esdetect(dir.path(), &["--no-color", "--rules", "export.ndjson", "validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("0 rule(s) valid, 0 error(s), 1 skipped"), "{}", text(&out.stdout));
    let out = esdetect(dir.path(), &["--no-color", "--rules", "export.ndjson", "test", "--events", "export.ndjson"]);
    assert_ne!(out.status.code(), Some(0), "`test` with nothing to run must fail: {}", text(&out.stderr));
}

// --- on the node ----------------------------------------------------------------------------------------

/// A test index with an explicit mapping covering every kind of field an exception entry treats
/// differently (keyword, long, ip, text, boolean inside a nested field), deleted when dropped.
const MAPPING: &str = r#"{"mappings": {"properties": {
    "user": {"properties": {"name": {"type": "keyword", "ignore_above": 16}}},
    "event": {"properties": {"code": {"type": "keyword"}}},
    "process": {"properties": {"pid": {"type": "long"}, "executable": {"type": "keyword"}}},
    "source": {"properties": {"ip": {"type": "ip"}}},
    "message": {"type": "text"},
    "host": {"properties": {"os": {"properties": {"type": {"type": "keyword"}}}}},
    "file": {"properties": {"Ext": {"properties": {"code_signature": {"type": "nested", "properties": {
        "subject_name": {"type": "keyword"}, "trusted": {"type": "boolean"}}}}}}}
}}}"#;

fn docs() -> Vec<Value> {
    vec![
        json!({"user": {"name": "svc$"}, "event": {"code": "5145"}, "source": {"ip": "10.0.80.99"}, "host": {"os": {"type": "windows"}}}),
        json!({"user": {"name": "SVC$"}, "event": {"code": 5145}, "source": {"ip": "10.1.2.3"}, "host": {"os": {"type": "linux"}}}),
        json!({"user": {"name": "alice"}, "event": {"code": "4624"}, "process": {"pid": 4, "executable": "C:\\Windows\\System32\\svchost.exe"}}),
        json!({"user": {"name": "a-very-long-user-name-over-16"}, "process": {"pid": "4"}, "message": "The quick brown fox"}),
        json!({"user": {"name": ["bob", "carol"]}, "message": "brown quick fox", "source": {"ip": "192.168.1.10"}}),
        json!({"event": {"code": "4625"}, "process": {"executable": "D:\\tools\\svchost.exe"}, "source": {"ip": "::1"}}),
        json!({"file": {"Ext": {"code_signature": [{"subject_name": "Microsoft", "trusted": true}]}}, "user": {"name": "dave"}}),
        json!({"file": {"Ext": {"code_signature": [{"subject_name": "Microsoft", "trusted": false}, {"subject_name": "Evil", "trusted": true}]}}}),
        json!({"message": "QUICK BROWN", "process": {"pid": 5}, "host": {"os": {"type": "windows"}}}),
        json!({}),
    ]
}

/// One exception item per case: every entry type, both operators, several entries, `os_types`, nested.
fn items() -> Vec<(&'static str, Value, Value)> {
    let m = |field: &str, op: &str, value: &str| json!({"field": field, "type": "match", "operator": op, "value": value});
    vec![
        ("match keyword", json!([m("user.name", "included", "svc$")]), json!([])),
        ("match keyword excluded", json!([m("user.name", "excluded", "svc$")]), json!([])),
        ("match over ignore_above", json!([m("user.name", "included", "a-very-long-user-name-over-16")]), json!([])),
        ("match long", json!([m("process.pid", "included", "4")]), json!([])),
        ("match ip cidr", json!([m("source.ip", "included", "10.0.0.0/8")]), json!([])),
        ("match ip v6", json!([m("source.ip", "included", "::1")]), json!([])),
        ("match text phrase", json!([m("message", "included", "quick brown")]), json!([])),
        ("match keyword number", json!([m("event.code", "included", "5145")]), json!([])),
        ("match unmapped", json!([m("not.mapped", "included", "x")]), json!([])),
        ("match_any", json!([{"field": "user.name", "type": "match_any", "operator": "included", "value": ["carol", "dave"]}]), json!([])),
        ("match_any excluded", json!([{"field": "event.code", "type": "match_any", "operator": "excluded", "value": ["5145", "4624"]}]), json!([])),
        ("exists", json!([{"field": "source.ip", "type": "exists", "operator": "included"}]), json!([])),
        ("exists excluded", json!([{"field": "message", "type": "exists", "operator": "excluded"}]), json!([])),
        ("exists over ignore_above", json!([{"field": "user.name", "type": "exists", "operator": "included"}]), json!([])),
        ("wildcard keyword", json!([{"field": "process.executable", "type": "wildcard", "operator": "included", "value": "C:\\\\Windows\\\\*.exe"}]), json!([])),
        ("wildcard keyword case", json!([{"field": "user.name", "type": "wildcard", "operator": "included", "value": "svc*"}]), json!([])),
        ("wildcard excluded", json!([{"field": "process.executable", "type": "wildcard", "operator": "excluded", "value": "*svchost.exe"}]), json!([])),
        ("wildcard text token", json!([{"field": "message", "type": "wildcard", "operator": "included", "value": "qu*k"}]), json!([])),
        ("two entries", json!([m("user.name", "included", "svc$"), {"field": "source.ip", "type": "exists", "operator": "included"}]), json!([])),
        ("os_types", json!([{"field": "process.pid", "type": "exists", "operator": "included"}]), json!(["windows"])),
        ("os_types two", json!([{"field": "event.code", "type": "exists", "operator": "included"}]), json!(["windows", "linux"])),
        (
            "nested both on one object",
            json!([{"field": "file.Ext.code_signature", "type": "nested", "entries": [m("subject_name", "included", "Microsoft"), m("trusted", "included", "true")]}]),
            json!([]),
        ),
        (
            "nested excluded inner",
            json!([{"field": "file.Ext.code_signature", "type": "nested", "entries": [m("subject_name", "excluded", "Microsoft")]}]),
            json!([]),
        ),
    ]
}

#[tokio::test]
async fn exception_dsl_excludes_on_the_node_exactly_what_the_matcher_excludes() {
    let es = common::client();
    let index = common::TestIndex::create(&es, "exceptions", serde_json::from_str(MAPPING).unwrap()).await;
    let client = EsClient::new(&ConnectionConfig::for_url(common::es_url())).unwrap();
    let mut lines = Vec::new();
    for (i, d) in docs().into_iter().enumerate() {
        lines.push(json!({"create": {"_index": index.name, "_id": format!("d{i}")}}));
        lines.push(d);
    }
    let resp = common::bulk(None, lines).await;
    assert_eq!(resp["errors"], false, "{resp}");
    let (_, mapping_json) = client.raw(Method::Get, &format!("/{}/_mapping", index.name), &[], None).await.unwrap();
    let mapping = Mapping::from_es_mapping(&mapping_json).unwrap();
    let events: Vec<Event> = docs().into_iter().enumerate().map(|(i, d)| Event::new(index.name.clone(), format!("d{i}"), d)).collect();

    let mut all = Vec::new();
    for (case, entries, os_types) in items() {
        let item = parse_item(&json!({"item_id": case, "list_id": "l", "entries": entries, "os_types": os_types})).unwrap();
        all.push(item.clone());
        check(&client, &index.name, &mapping, &events, case, RuleExceptions::new(vec![item])).await;
    }
    check(&client, &index.name, &mapping, &events, "all items OR-ed", RuleExceptions::new(all)).await;
}

/// Ids the cluster's exception filter selects (i.e. would remove) vs the ids the matcher excludes.
async fn check(client: &EsClient, index: &str, mapping: &Mapping, events: &[Event], case: &str, ex: RuleExceptions) {
    let clause = ex.query_clause().unwrap();
    let body = json!({"size": 100, "_source": false, "query": {"bool": {"filter": [clause]}}});
    let (status, resp) = client.raw(Method::Post, &format!("/{index}/_search"), &[], Some(&body)).await.unwrap();
    assert_eq!(status, 200, "{case}: {resp}");
    let on_node: BTreeSet<String> =
        resp["hits"]["hits"].as_array().unwrap().iter().map(|h| h["_id"].as_str().unwrap().to_string()).collect();
    let matcher = ex.matcher(mapping);
    let in_memory: BTreeSet<String> = events.iter().filter(|e| matcher.excludes(e)).map(|e| e.id.clone()).collect();
    assert_eq!(in_memory, on_node, "case `{case}`: in memory vs Elasticsearch");
    // The negated form the window query uses keeps exactly the others.
    let body = json!({"size": 100, "_source": false, "query": {"bool": {"filter": [{"bool": {"must_not": [ex.query_clause().unwrap()]}}]}}});
    let (_, resp) = client.raw(Method::Post, &format!("/{index}/_search"), &[], Some(&body)).await.unwrap();
    let kept = resp["hits"]["hits"].as_array().unwrap().len();
    assert_eq!(kept + on_node.len(), events.len(), "case `{case}`");
}

#[tokio::test]
async fn run_once_on_the_export_writes_kibanas_ids_with_exceptions_applied() {
    let (at, alerts) = run_once_on_export(scenario(), |export| export).await;
    let written: BTreeSet<String> = alerts.iter().map(|h| h["_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(written, expected_ids(&at, "default"));
}

/// Issue 11's acceptance on the node: the export with `alert_suppression` on the SMB rule (per execution,
/// by `host.name`) and a second relay from the same host gives the same Kibana ids, exceptions applied, and
/// the second relay counted on the first one's alert.
#[tokio::test]
async fn run_once_on_the_export_with_suppression_counts_the_suppressed_relay() {
    let mut docs = scenario();
    docs.push(smb_5145(SECOND_RELAY_AT, "10.0.80.81"));
    let (at, alerts) = run_once_on_export(docs, with_suppression).await;
    let written: BTreeSet<String> = alerts.iter().map(|h| h["_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(written, expected_ids(&at, "default"), "the second relay raises no alert of its own");
    let smb = alerts.iter().find(|h| h["_source"]["kibana.alert.rule.uuid"] == SMB_UUID).unwrap();
    assert_suppressed_once(&smb["_source"]);
}

/// Bulk-loads `docs` into a fresh data index, runs `run --once` on the export (re-pointed at that index and
/// passed through `edit`), and returns where each doc was stored plus every alert hit written.
async fn run_once_on_export(docs: Vec<Value>, edit: impl Fn(String) -> String) -> (Vec<(String, String)>, Vec<Value>) {
    use esdetect::simulate::templates::event_index_templates;
    use esdetect::sink::es::put_index_template_if_absent;
    let client = EsClient::new(&ConnectionConfig::for_url(common::es_url())).unwrap();
    let tag = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let data_index = format!("logs-system.security-{tag}");
    let alias = format!("esdetect-test-{tag}");
    let template_name = format!("esdetect-test-ecs-{tag}");
    let (_, mut template) = event_index_templates().into_iter().next().unwrap();
    template["index_patterns"] = json!([format!("{data_index}*")]);
    template["priority"] = json!(77);
    assert!(put_index_template_if_absent(&client, &template_name, &template).await.unwrap());
    let _cleanup = Cleanup { url: common::es_url(), indices: vec![data_index.clone(), format!("{alias}-000001")], templates: vec![template_name, esdetect::sink::es::template_name(&alias)] };

    let mut lines = Vec::new();
    for doc in docs {
        lines.push(json!({"create": {"_index": data_index}}));
        lines.push(doc);
    }
    let resp = common::bulk(None, lines).await;
    assert_eq!(resp["errors"], false, "{resp}");
    let at: Vec<(String, String)> = resp["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["create"]["_index"].as_str().unwrap().to_string(), i["create"]["_id"].as_str().unwrap().to_string()))
        .collect();

    // The export as Kibana wrote it, only re-pointed at this test's index.
    let dir = tempfile::tempdir().unwrap();
    let export = std::fs::read_to_string(fixture()).unwrap();
    assert_eq!(export.matches(UPSTREAM_INDEX).count(), 2, "fixture index changed; update this test");
    let export = edit(export.replace(UPSTREAM_INDEX, &format!(r#""index":["{data_index}*"]"#)));
    std::fs::write(dir.path().join("rules_export.ndjson"), export).unwrap();
    let config = dir.path().join("esdetect.toml");
    std::fs::write(
        &config,
        format!(
            "rules_dir = \"rules_export.ndjson\"\n[elasticsearch]\nurls = [{:?}]\nmax_retries = 0\n[alerts]\nindex = {alias:?}\n",
            common::es_url()
        ),
    )
    .unwrap();
    let out = esdetect(dir.path(), &["--config", config.to_str().unwrap(), "run", "--once", "--now", "2026-05-20T10:05:00Z", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));

    let body = json!({"size": 100, "query": {"match_all": {}}});
    let (status, resp) = client.raw(Method::Post, &format!("/{alias}/_search"), &[], Some(&body)).await.unwrap();
    assert_eq!(status, 200, "{resp}");
    (at, resp["hits"]["hits"].as_array().unwrap().clone())
}

/// `_bulk` with `refresh=true`; the node's answer.

/// Deletes the indices and templates of the `run --once` test, also when it fails.
struct Cleanup {
    url: String,
    indices: Vec<String>,
    templates: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, indices, templates) = (self.url.clone(), self.indices.clone(), self.templates.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let client = EsClient::new(&ConnectionConfig::for_url(url)).ok()?;
                let path = format!("/{}?ignore_unavailable=true", indices.join(","));
                client.raw(Method::Delete, &path, &[], None).await.ok()?;
                for t in templates {
                    client.raw(Method::Delete, &format!("/_index_template/{t}"), &[], None).await.ok()?;
                }
                Some(())
            })
        })
        .join();
    }
}

#[test]
fn explain_shows_the_exception_filter_in_the_window_query() {
    let dir = tempfile::tempdir().unwrap();
    let out = esdetect(
        dir.path(),
        &["--rules", fixture().to_str().unwrap(), "explain", "d84a11c0-eb12-4e7d-8a0a-718e38351e29", "--now", "2026-05-20T10:05:00Z"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains(&format!("rule uuid: {SMB_UUID}")), "{stdout}");
    assert!(stdout.contains("exceptions: 2 item(s) (lab-scanner, lab-agent-services)"), "{stdout}");
    // The request body: the negated exception filter, with the scanner's address as Kibana writes it.
    let body_start = stdout.find("\n{").expect("request body");
    let body_end = stdout.find("\n3. DELETE").expect("end of body");
    let body: Value = serde_json::from_str(&stdout[body_start..body_end]).unwrap();
    let negated: Vec<&Value> = body["query"]["bool"]["filter"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.pointer("/bool/must_not/0"))
        .collect();
    assert_eq!(negated.len(), 1, "{body}");
    assert!(negated[0].to_string().contains(r#"{"match_phrase":{"source.ip":"10.0.80.99"}}"#), "{}", negated[0]);
}

#[test]
fn an_exception_item_stops_applying_once_it_expires() {
    use esdetect::detect::offline::run_on_events;
    use esdetect::detect::{prepare_rules, RunOptions};
    let config = esdetect::config::Config::default();
    let mut prepared = prepare_rules(&fixture(), &config);
    assert!(prepared.errors.is_empty(), "{:?}", prepared.errors);
    let smb = prepared.rules.iter_mut().find(|r| r.rule_uuid == SMB_UUID).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339("2026-05-20T10:03:00Z").unwrap().with_timezone(&chrono::Utc);
    for item in smb.exceptions.items.iter_mut().filter(|i| i.item_id == "lab-scanner") {
        item.expire_time = Some(expires);
    }
    let events: Vec<Event> = scenario().into_iter().enumerate().map(|(i, d)| Event::new("idx", format!("ev-{i}"), d)).collect();
    let mut mapping = Mapping::builtin_ecs();
    mapping.set_infer_unknown(true);
    let sources_at = |now: &str| -> Vec<String> {
        let now = chrono::DateTime::parse_from_rfc3339(now).unwrap().with_timezone(&chrono::Utc);
        let outcomes = run_on_events(&[&*smb], &mapping, events.clone(), Some(now), &RunOptions::default());
        let alerts = outcomes[0].groups.iter().flatten();
        alerts.map(|a| a.source["source"]["ip"].as_str().unwrap().to_string()).collect()
    };
    // Both relay events (10:01:00 and 10:01:10) are inside both windows.
    assert_eq!(sources_at("2026-05-20T10:02:00Z"), ["10.0.80.80"], "before expiry the scanner is excepted");
    assert_eq!(sources_at("2026-05-20T10:05:00Z"), ["10.0.80.80", "10.0.80.99"], "after expiry it alerts");
}
