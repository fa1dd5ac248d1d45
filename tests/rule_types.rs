//! Custom query rules (KQL and Lucene) end to end against the live node: planted events and look-alikes
//! in an ECS-mapped index → `detect::run_on_cluster` (and the real `esdetect run --once`) → alerts in a
//! write alias, checked by `_id`.
//!
//! Expected alert ids are computed here from Kibana's formula (spec alert-documents §9.1, the same for
//! query rules as for EQL event alerts): sha256(_index + _id + "undefined" + space + ":" + rule uuid),
//! with the `_index`/`_id` the node assigned to each planted event — never by calling esdetect's code.
//! Needs ESDETECT_TEST_ES_URL: without a node every test fails (tests/common).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use esdetect::alert::mapping::alerts_index_template;
use esdetect::config::{Config, RuleSettings};
use esdetect::detect::{self, PreparedRule, RunOptions, RunStatus, RunSummary, Window};
use esdetect::es::{ConnectionConfig, EsClient};
use esdetect::sink::es::{ensure_alerts_index, first_index_name, template_name};
use serde_json::{json, Value};

const SHADOW_RULE: &str = "defense_evasion_shadow_copy_deletion.toml";
const SHADOW_RULE_ID: &str = "6b3f1c2e-0d9a-4b1e-9c55-2a7f0e4d8b11";
const LSASS_RULE: &str = "credential_access_lsass_dump_lucene.toml";
const LSASS_RULE_ID: &str = "0f3e2a6c-8b1d-4f7a-a2c9-5d6e7f8a9b10";
const SPRAY_RULE: &str = "credential_access_password_spraying_threshold.toml";
const SPRAY_RULE_ID: &str = "48b6edfc-079d-4907-b43c-baffa243270d";
const SPRAY_UUID: &str = "4f6e8d0c-2a1b-4c3d-8e5f-6a7b8c9d0e1f";
/// Kibana's namespace of threshold "event" ids (`calculateThresholdSignalUuid`).
const THRESHOLD_NS: &str = "0684ec03-7201-4ee0-8ee0-3a3f6b2479b2";
const SERVICE_RULE: &str = "persistence_first_time_seen_service.toml";
const SERVICE_RULE_ID: &str = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f";
const SERVICE_UUID: &str = "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d";
const SHADOW_UUID: &str = "9d1f7c3a-5e2b-4a6c-8d0e-1f2a3b4c5d6e";
const LSASS_UUID: &str = "2b4d6f8a-0c1e-4a3b-9d5f-7e8a9b0c1d2e";
const SPACE: &str = "soc";
const KIBANA_MAX_SIGNALS_WARNING: &str =
    "This rule reached the maximum alert limit for the rule execution. Some alerts were not created.";
/// Both rules look back 9 minutes: window [09:56:00, 10:05:00].
const NOW: &str = "2026-05-20T10:05:00Z";

#[derive(Debug, Clone)]
struct Hit {
    index: String,
    id: String,
}

/// Kibana's event alert id, written from the formula.
fn alert_id(hit: &Hit, rule_uuid: &str) -> String {
    common::ids::event_alert_id(&hit.index, &hit.id, SPACE, rule_uuid)
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rule_types")
}

/// A Windows process start as Elastic Defend / Sysmon integrations write it (ECS).
fn process(at: &str, ingested: &str, name: &str, args: &[&str], user: &str) -> Value {
    json!({
        "@timestamp": at,
        "event": {"category": ["process"], "type": ["start"], "kind": "event", "ingested": ingested, "dataset": "endpoint.events.process"},
        "host": {"name": "ws-042", "os": {"type": "windows"}},
        "process": {"name": name, "args": args, "command_line": args.join(" "), "pid": 4242, "parent": {"name": "cmd.exe"}},
        "user": {"name": user}
    })
}

struct Lab {
    client: EsClient,
    index: String,
    alias: String,
    config: Config,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let (url, index, alias) = (common::es_url(), self.index.clone(), self.alias.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let client = EsClient::new(&ConnectionConfig::for_url(url)).ok()?;
                let path = format!("/{index},{}?ignore_unavailable=true", first_index_name(&alias));
                client.raw(Method::Delete, &path, &[], None).await.ok()?;
                client.raw(Method::Delete, &format!("/_index_template/{}", template_name(&alias)), &[], None).await.ok()
            })
        })
        .join();
    }
}

impl Lab {
    async fn new() -> Lab {
        let client = EsClient::new(&ConnectionConfig::for_url(common::es_url())).expect("client for the test node");
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let index = format!("esdetect-test-rt-events-{tag}");
        let alias = format!("esdetect-test-rt-{tag}");
        let mut config = Config::default();
        config.alerts.space = SPACE.into();
        config.alerts.index = alias.clone();
        for (rule_id, uuid) in [(SHADOW_RULE_ID, SHADOW_UUID), (LSASS_RULE_ID, LSASS_UUID), (SPRAY_RULE_ID, SPRAY_UUID), (SERVICE_RULE_ID, SERVICE_UUID)] {
            config.rules.insert(rule_id.into(), RuleSettings { uuid: Some(uuid.into()), ..Default::default() });
        }
        let lab = Lab { client, index, alias, config };
        let keyword = json!({"type": "keyword"});
        let mapping = json!({"mappings": {"properties": {
            "@timestamp": {"type": "date"},
            "winlog": {"properties": {"event_data": {"properties": {"ServiceName": keyword}}}},
            "event": {"properties": {"code": keyword, "category": keyword, "type": keyword, "action": keyword, "outcome": keyword, "kind": keyword, "dataset": keyword, "ingested": {"type": "date"}}},
            "host": {"properties": {"name": keyword, "os": {"properties": {"type": keyword}}}},
            "process": {"properties": {"name": keyword, "args": keyword, "command_line": keyword, "pid": {"type": "long"},
                "parent": {"properties": {"name": keyword}}}},
            "user": {"properties": {"name": keyword}},
            "source": {"properties": {"ip": {"type": "ip"}}}
        }}});
        let (status, body) = lab.client.raw(Method::Put, &format!("/{}", lab.index), &[], Some(&mapping)).await.expect("create index");
        assert_eq!(status, 200, "{body}");
        ensure_alerts_index(&lab.client, &lab.alias, alerts_index_template(&[format!("{}-*", lab.alias)])).await.expect("alerts alias");
        lab
    }

    fn prepare(&self, file: &str) -> PreparedRule {
        let rule = esdetect::rules::load_file(fixtures().join(file)).unwrap_or_else(|e| panic!("{e}"));
        let mut prepared = detect::prepare::prepare_rule(rule, &self.config).unwrap_or_else(|e| panic!("{e}"));
        prepared.rule.index = vec![self.index.clone()];
        prepared
    }

    async fn run(&self, prepared: &PreparedRule) -> RunSummary {
        let window = Window::ending_at(&prepared.rule, t(NOW));
        detect::run_on_cluster(&self.client, prepared, window, &RunOptions::default(), &Utc::now).await
    }

    /// Indexes the documents one by one (refresh at the end) and returns their `_index`/`_id`.
    async fn index(&self, docs: &[Value]) -> Vec<Hit> {
        let mut hits = Vec::new();
        for doc in docs {
            let (status, body) = self.client.raw(Method::Post, &format!("/{}/_doc", self.index), &[], Some(doc)).await.expect("index");
            assert_eq!(status, 201, "{body}");
            hits.push(Hit { index: body["_index"].as_str().unwrap().into(), id: body["_id"].as_str().unwrap().into() });
        }
        let (status, _) = self.client.raw(Method::Post, &format!("/{}/_refresh", self.index), &[], None).await.expect("refresh");
        assert_eq!(status, 200);
        hits
    }

    async fn alerts(&self) -> BTreeMap<String, Value> {
        let body = json!({"size": 1000, "query": {"match_all": {}}});
        let (status, resp) = self.client.raw(Method::Post, &format!("/{}/_search", self.alias), &[], Some(&body)).await.expect("search");
        assert_eq!(status, 200, "{resp}");
        resp["hits"]["hits"].as_array().unwrap().iter().map(|h| (h["_id"].as_str().unwrap().to_string(), h["_source"].clone())).collect()
    }
}

fn ids(hits: &[&Hit], uuid: &str) -> BTreeSet<String> {
    hits.iter().map(|h| alert_id(h, uuid)).collect()
}

#[tokio::test]
async fn kql_rule_alerts_planted_events_only_and_never_twice() {
    let lab = Lab::new().await;
    let rule = lab.prepare(SHADOW_RULE);
    let docs = [
        // Planted: vssadmin and wmic deleting shadow copies.
        process("2026-05-20T09:58:00.000Z", "2026-05-20T09:58:01.000Z", "vssadmin.exe", &["vssadmin.exe", "delete", "shadows", "/all", "/quiet"], "alice"),
        process("2026-05-20T10:01:00.000Z", "2026-05-20T10:01:02.000Z", "wmic.exe", &["wmic.exe", "shadowcopy", "delete", "shadows"], "bob"),
        // Look-alikes: listing (not deleting), another case (keyword: exact), the backup account, Linux, an
        // end event, and a planted event ingested before the window (the rule windows on event.ingested).
        process("2026-05-20T09:59:00.000Z", "2026-05-20T09:59:01.000Z", "vssadmin.exe", &["vssadmin.exe", "list", "shadows"], "alice"),
        process("2026-05-20T09:59:10.000Z", "2026-05-20T09:59:11.000Z", "VSSADMIN.EXE", &["vssadmin.exe", "delete", "shadows"], "alice"),
        process("2026-05-20T09:59:20.000Z", "2026-05-20T09:59:21.000Z", "vssadmin.exe", &["vssadmin.exe", "delete", "shadows"], "svc-backup"),
        {
            let mut d = process("2026-05-20T09:59:30.000Z", "2026-05-20T09:59:31.000Z", "vssadmin.exe", &["vssadmin.exe", "delete", "shadows"], "alice");
            d["host"]["os"]["type"] = json!("linux");
            d
        },
        {
            let mut d = process("2026-05-20T09:59:40.000Z", "2026-05-20T09:59:41.000Z", "vssadmin.exe", &["vssadmin.exe", "delete", "shadows"], "alice");
            d["event"]["type"] = json!(["end"]);
            d
        },
        process("2026-05-20T09:57:00.000Z", "2026-05-20T09:50:00.000Z", "vssadmin.exe", &["vssadmin.exe", "delete", "shadows"], "carol"),
    ];
    let hits = lab.index(&docs).await;
    let expected = ids(&[&hits[0], &hits[1]], SHADOW_UUID);

    let first = lab.run(&rule).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:#?}");
    assert_eq!((first.fetched, first.alerts_written, first.duplicates), (2, 2, 0), "{first:#?}");
    let alerts = lab.alerts().await;
    assert_eq!(alerts.keys().cloned().collect::<BTreeSet<_>>(), expected);
    let a = &alerts[&alert_id(&hits[0], SHADOW_UUID)];
    assert_eq!(a["kibana.alert.rule.type"], "query");
    assert_eq!(a["kibana.alert.rule.rule_type_id"], "siem.queryRule");
    assert_eq!(a["kibana.alert.rule.uuid"], SHADOW_UUID);
    assert_eq!(a["kibana.alert.rule.parameters"]["language"], "kuery");
    assert_eq!(a["kibana.alert.original_time"], "2026-05-20T09:58:00.000Z");
    assert_eq!(a["kibana.space_ids"], json!([SPACE]));
    assert_eq!(a["kibana.alert.ancestors"][0]["id"], hits[0].id.as_str());

    // The next (overlapping) run finds the same two events: nothing new.
    let again = lab.run(&rule).await;
    assert_eq!((again.fetched, again.alerts_written, again.duplicates), (2, 0, 2), "{again:#?}");
    assert_eq!(lab.alerts().await.len(), 2);
}

#[tokio::test]
async fn max_signals_counts_created_alerts_oldest_first_like_kibana() {
    let lab = Lab::new().await;
    let mut rule = lab.prepare(SHADOW_RULE);
    rule.rule.max_signals = 2;
    let docs: Vec<Value> = ["09:57", "09:58", "09:59"]
        .iter()
        .map(|m| {
            let at = format!("2026-05-20T{m}:00.000Z");
            process(&at, &at, "vssadmin.exe", &["vssadmin.exe", "delete", "shadows"], "alice")
        })
        .collect();
    let hits = lab.index(&docs).await;

    let first = lab.run(&rule).await;
    assert_eq!(first.status, RunStatus::PartialFailure, "{first:#?}");
    assert_eq!(first.warnings, vec![KIBANA_MAX_SIGNALS_WARNING.to_string()]);
    assert_eq!((first.alerts_written, first.truncated), (2, true));
    // The oldest two (Kibana sorts ascending and stops at max_signals created alerts).
    assert_eq!(lab.alerts().await.keys().cloned().collect::<BTreeSet<_>>(), ids(&[&hits[0], &hits[1]], SHADOW_UUID));

    // Alerts already written do not count against the cap: the next run creates the third.
    let second = lab.run(&rule).await;
    assert_eq!((second.alerts_written, second.duplicates), (1, 2), "{second:#?}");
    assert_eq!(second.status, RunStatus::Succeeded, "{second:#?}");
    assert_eq!(lab.alerts().await.keys().cloned().collect::<BTreeSet<_>>(), ids(&[&hits[0], &hits[1], &hits[2]], SHADOW_UUID));
    let third = lab.run(&rule).await;
    assert_eq!((third.alerts_written, third.duplicates), (0, 3), "{third:#?}");
}

#[tokio::test]
async fn lucene_rule_is_a_query_string_matched_by_elasticsearch() {
    let lab = Lab::new().await;
    let rule = lab.prepare(LSASS_RULE);
    let dump = ["rundll32.exe", r"C:\Windows\System32\comsvcs.dll,", "MiniDump", "624", r"C:\Temp\l.dmp", "full"];
    let docs = [
        process("2026-05-20T10:00:00.000Z", "2026-05-20T10:00:01.000Z", "rundll32.exe", &dump, "alice"),
        // comsvcs without MiniDump, and MiniDump through another binary: no alert.
        process("2026-05-20T10:00:10.000Z", "2026-05-20T10:00:11.000Z", "rundll32.exe", &["rundll32.exe", "comsvcs.dll,DllRegisterServer"], "alice"),
        process("2026-05-20T10:00:20.000Z", "2026-05-20T10:00:21.000Z", "procdump.exe", &["procdump.exe", "comsvcs.dll", "MiniDump"], "alice"),
        // Before the window.
        process("2026-05-20T09:40:00.000Z", "2026-05-20T09:40:01.000Z", "rundll32.exe", &dump, "alice"),
    ];
    let hits = lab.index(&docs).await;
    let s = lab.run(&rule).await;
    assert_eq!(s.status, RunStatus::Succeeded, "{s:#?}");
    assert_eq!(s.alerts_written, 1, "{s:#?}");
    let alerts = lab.alerts().await;
    assert_eq!(alerts.keys().cloned().collect::<BTreeSet<_>>(), ids(&[&hits[0]], LSASS_UUID));
    assert_eq!(alerts.values().next().unwrap()["kibana.alert.rule.parameters"]["language"], "lucene");
}

#[tokio::test]
async fn binary_runs_query_rules_once_and_explains_them() {
    let lab = Lab::new().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let text = std::fs::read_to_string(fixtures().join(SHADOW_RULE)).unwrap();
    let original = "index = [\"logs-endpoint.events.process-*\", \"logs-windows.sysmon_operational-*\", \"winlogbeat-*\"]";
    assert!(text.contains(original));
    std::fs::write(rules.join("shadow.toml"), text.replacen(original, &format!("index = [\"{}\"]", lab.index), 1)).unwrap();
    let config = dir.path().join("esdetect.toml");
    std::fs::write(
        &config,
        format!(
            "rules_dir = \"rules\"\n[elasticsearch]\nurls = [\"{}\"]\n[alerts]\nspace = \"{SPACE}\"\nindex = \"{}\"\n\
             [rules.\"{SHADOW_RULE_ID}\"]\nuuid = \"{SHADOW_UUID}\"\n",
            common::es_url(),
            lab.alias
        ),
    )
    .unwrap();
    let hits = lab
        .index(&[process("2026-05-20T10:02:00.000Z", "2026-05-20T10:02:00.000Z", "vssadmin.exe", &["vssadmin.exe", "delete", "shadows"], "eve")])
        .await;
    let c = config.to_str().unwrap();
    let out = common::esdetect(dir.path(), &["--no-color", "--config", c, "run", "--once", "--now", NOW, "--format", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(summary["alerts_written"], 1, "{summary}");
    assert_eq!(lab.alerts().await.keys().cloned().collect::<BTreeSet<_>>(), ids(&[&hits[0]], SHADOW_UUID));

    let out = common::esdetect(dir.path(), &["--no-color", "--config", c, "explain", SHADOW_RULE_ID, "--now", NOW]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("query (KQL, matched by Elasticsearch)"), "{text}");
    assert!(text.contains("\"process.name\": {\n") || text.contains("\"process.name\""), "{text}");
    assert!(text.contains("window:    [2026-05-20T09:56:00+00:00, 2026-05-20T10:05:00+00:00] on event.ingested"), "{text}");
}

/// A Windows 4625 (failed logon) as the System integration writes it.
fn failed_logon(at: &str, source_ip: &str, user: &str, outcome: &str) -> Value {
    json!({
        "@timestamp": at,
        "event": {"category": ["authentication"], "action": "logon-failed", "outcome": outcome, "kind": "event", "ingested": at},
        "host": {"name": "dc-01", "os": {"type": "windows"}},
        "source": {"ip": source_ip},
        "user": {"name": user}
    })
}

/// Threshold alert id from Kibana's formulas: the bucket's "event" id is UUIDv5(rule_id + run start +
/// fields + sorted values), the alert id the event-alert hash over it and the rule's index patterns.
fn threshold_alert_id(index: &str, started: &str, fields: &str, values: &str) -> String {
    let ns = uuid::Uuid::parse_str(THRESHOLD_NS).unwrap();
    let event_id = uuid::Uuid::new_v5(&ns, format!("{SPRAY_RULE_ID}{started}{fields}{values}").as_bytes()).to_string();
    alert_id(&Hit { index: index.into(), id: event_id }, SPRAY_UUID)
}

#[tokio::test]
async fn threshold_rule_alerts_each_group_once_with_kibanas_result_and_ids() {
    let lab = Lab::new().await;
    let rule = lab.prepare(SPRAY_RULE);
    let users = ["alice", "bob", "carol", "dave"];
    let mut docs = Vec::new();
    // Sprayer: 12 failures over 4 accounts (09:57:00 … 09:59:45) → one alert.
    for i in 0..12 {
        let at = format!("2026-05-20T09:{:02}:{:02}.000Z", 57 + i / 4, (i % 4) * 15);
        docs.push(failed_logon(&at, "10.0.0.5", users[i % 4], "failure"));
    }
    // Brute force of one account (cardinality 1 < 3), too few failures (5 < 10), successes, loopback.
    for i in 0..12 {
        docs.push(failed_logon(&format!("2026-05-20T09:58:{:02}.000Z", i * 2), "10.0.0.6", "alice", "failure"));
    }
    for (i, u) in ["u1", "u2", "u3", "u4", "u5"].iter().enumerate() {
        docs.push(failed_logon(&format!("2026-05-20T09:59:{:02}.000Z", i), "10.0.0.7", u, "failure"));
    }
    for i in 0..12 {
        docs.push(failed_logon(&format!("2026-05-20T09:58:{:02}.500Z", i * 3), "10.0.0.8", users[i % 4], "success"));
        docs.push(failed_logon(&format!("2026-05-20T09:58:{:02}.250Z", i * 3), "127.0.0.1", users[i % 4], "failure"));
    }
    lab.index(&docs).await;

    let run = |started: &'static str| {
        let rule = &rule;
        let lab = &lab;
        async move {
            let window = Window::ending_at(&rule.rule, t(NOW));
            detect::run_on_cluster(&lab.client, rule, window, &RunOptions::default(), &move || t(started)).await
        }
    };
    let first = run("2026-05-20T10:05:00.250Z").await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:#?}");
    assert_eq!(first.alerts_written, 1, "{first:#?}");
    let alerts = lab.alerts().await;
    let id = threshold_alert_id(&lab.index, "2026-05-20T10:05:00.250Z", "source.ip", "10.0.0.5");
    assert_eq!(alerts.keys().cloned().collect::<Vec<_>>(), vec![id.clone()]);
    let a = &alerts[&id];
    assert_eq!(
        a["kibana.alert.threshold_result"],
        json!({"cardinality": [{"field": "user.name", "value": 4}], "count": 12, "from": "2026-05-20T09:57:00.000Z",
               "terms": [{"field": "source.ip", "value": "10.0.0.5"}]})
    );
    assert_eq!(a["kibana.alert.original_time"], "2026-05-20T09:59:45.000Z");
    assert_eq!(a["kibana.alert.rule.type"], "threshold");
    assert_eq!(a["kibana.alert.rule.rule_type_id"], "siem.thresholdRule");
    assert_eq!(a["source.ip"], "10.0.0.5");
    assert_eq!(
        a["kibana.alert.rule.parameters"]["threshold"],
        json!({"field": ["source.ip"], "value": 10, "cardinality": [{"field": "user.name", "value": 3}]})
    );

    // The next run overlaps the window: the group's events are already counted (signal history).
    let second = run("2026-05-20T10:10:00.000Z").await;
    assert_eq!((second.status, second.alerts_written), (RunStatus::Succeeded, 0), "{second:#?}");

    // Ten new failures over three accounts after the alert: a new alert counting only them.
    let more: Vec<Value> = (0..10).map(|i| failed_logon(&format!("2026-05-20T10:03:{:02}.000Z", i * 5), "10.0.0.5", users[i % 3], "failure")).collect();
    lab.index(&more).await;
    let third = run("2026-05-20T10:15:00.000Z").await;
    assert_eq!(third.alerts_written, 1, "{third:#?}");
    let id3 = threshold_alert_id(&lab.index, "2026-05-20T10:15:00.000Z", "source.ip", "10.0.0.5");
    let alerts = lab.alerts().await;
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[&id3]["kibana.alert.threshold_result"]["count"], 10);
    assert_eq!(alerts[&id3]["kibana.alert.threshold_result"]["from"], "2026-05-20T10:03:00.000Z");
}

/// A 7045 (service installed) as the System integration writes it.
fn service_installed(at: &str, host: &str, service: &str) -> Value {
    json!({
        "@timestamp": at,
        "event": {"code": "7045", "kind": "event", "ingested": at},
        "host": {"name": host, "os": {"type": "windows"}},
        "winlog": {"event_data": {"ServiceName": service}}
    })
}

/// New terms alert id from Kibana's formula: `objectHash([_index, _id, String(_version), space:uuid,
/// newTerms])` = SHA-1 (hex) of object-hash's serialisation ("array:<n>:", "string:<length>:<text>").
fn new_terms_alert_id(hit: &Hit, terms: &[&str]) -> String {
    let s = |t: &str| format!("string:{}:{t}", t.encode_utf16().count());
    let mut text = format!("array:5:{}{}{}{}", s(&hit.index), s(&hit.id), s("undefined"), s(&format!("{SPACE}:{SERVICE_UUID}")));
    text.push_str(&format!("array:{}:", terms.len()));
    for t in terms {
        text.push_str(&s(t));
    }
    use sha1::Digest as _;
    hex::encode(sha1::Sha1::digest(text.as_bytes()))
}

#[tokio::test]
async fn new_terms_rule_alerts_first_seen_combinations_on_their_oldest_event() {
    let lab = Lab::new().await;
    let rule = lab.prepare(SERVICE_RULE);
    let docs = [
        // History (within 14 days before the window end): Spooler on dc-01, EvilSvc2 on dc-01 at 09:50.
        service_installed("2026-05-19T08:00:00.000Z", "dc-01", "Spooler"),
        service_installed("2026-05-20T09:50:00.000Z", "dc-01", "EvilSvc2"),
        // Older than the history window: does not make OldSvc known.
        service_installed("2026-04-30T08:00:00.000Z", "dc-01", "OldSvc"),
        // The window [09:56, 10:05].
        service_installed("2026-05-20T09:57:00.000Z", "dc-01", "Spooler"),   // known
        service_installed("2026-05-20T09:58:00.000Z", "dc-01", "EvilSvc"),   // new: this event
        service_installed("2026-05-20T10:01:00.000Z", "dc-01", "EvilSvc"),   // same value, later
        service_installed("2026-05-20T10:00:00.000Z", "ws-042", "EvilSvc"),  // new combination
        service_installed("2026-05-20T09:59:00.000Z", "dc-01", "EvilSvc2"),  // seen at 09:50
        service_installed("2026-05-20T09:59:30.000Z", "dc-01", "MpKsl1a2b"), // excluded by the query
        service_installed("2026-05-20T10:02:00.000Z", "dc-01", "OldSvc"),    // new within the history
    ];
    let hits = lab.index(&docs).await;
    let expected: BTreeSet<String> = [
        new_terms_alert_id(&hits[4], &["dc-01", "EvilSvc"]),
        new_terms_alert_id(&hits[6], &["ws-042", "EvilSvc"]),
        new_terms_alert_id(&hits[9], &["dc-01", "OldSvc"]),
    ]
    .into_iter()
    .collect();
    let first = lab.run(&rule).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:#?}");
    assert_eq!(first.alerts_written, 3, "{first:#?}");
    let alerts = lab.alerts().await;
    assert_eq!(alerts.keys().cloned().collect::<BTreeSet<_>>(), expected);
    let a = &alerts[&new_terms_alert_id(&hits[4], &["dc-01", "EvilSvc"])];
    assert_eq!(a["kibana.alert.new_terms"], json!(["dc-01", "EvilSvc"]));
    assert_eq!(a["kibana.alert.rule.rule_type_id"], "siem.newTermsRule");
    assert_eq!(a["kibana.alert.original_time"], "2026-05-20T09:58:00.000Z");
    assert_eq!(a["kibana.alert.uuid"], new_terms_alert_id(&hits[4], &["dc-01", "EvilSvc"]));

    let again = lab.run(&rule).await;
    assert_eq!((again.alerts_written, again.duplicates), (0, 3), "{again:#?}");
}

/// No node needed: `esdetect test` evaluates the keyword part of KQL in memory, with the same ids, and
/// refuses (in the rule's summary) what only Elasticsearch can decide.
#[test]
fn offline_test_evaluates_keyword_kql_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::copy(fixtures().join(SHADOW_RULE), rules.join("shadow.toml")).unwrap();
    let text_rule = std::fs::read_to_string(fixtures().join(SHADOW_RULE))
        .unwrap()
        .replacen(SHADOW_RULE_ID, "text-rule", 1)
        .replacen("event.category:process and", "message:\"vssadmin delete\" and", 1);
    std::fs::write(rules.join("text.toml"), text_rule).unwrap();
    let config = dir.path().join("esdetect.toml");
    std::fs::write(&config, format!("rules_dir = \"rules\"\n[alerts]\nspace = \"{SPACE}\"\n[rules.\"{SHADOW_RULE_ID}\"]\nuuid = \"{SHADOW_UUID}\"\n")).unwrap();
    let hit = |id: &str, index: &str, at: &str, args: &[&str], user: &str| {
        json!({"_index": index, "_id": id, "_source": process(at, at, "vssadmin.exe", args, user)}).to_string()
    };
    let events = [
        hit("e1", "winlogbeat-8.19.0", "2026-05-20T09:59:00.000Z", &["vssadmin.exe", "delete", "shadows"], "alice"),
        hit("e2", "winlogbeat-8.19.0", "2026-05-20T09:58:00.000Z", &["wmic.exe", "delete", "shadows"], "bob"),
        hit("e3", "winlogbeat-8.19.0", "2026-05-20T09:58:30.000Z", &["vssadmin.exe", "list", "shadows"], "alice"),
        hit("e4", "winlogbeat-8.19.0", "2026-05-20T09:58:40.000Z", &["vssadmin.exe", "delete", "shadows"], "svc-backup"),
        hit("e5", "other-index", "2026-05-20T09:58:50.000Z", &["vssadmin.exe", "delete", "shadows"], "carol"),
        hit("e6", "winlogbeat-8.19.0", "2026-05-20T09:40:00.000Z", &["vssadmin.exe", "delete", "shadows"], "dave"),
    ];
    std::fs::write(dir.path().join("events.ndjson"), events.join("\n") + "\n").unwrap();
    let c = config.to_str().unwrap();
    let out = common::esdetect(dir.path(), &["--no-color", "--config", c, "test", "--events", "events.ndjson", "--now", NOW, "--format", "ndjson"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    // The text-field rule is refused: a failed rule, exit 1, with the reason.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not evaluated on files: the query uses `message`, which is not mapped as keyword"), "{stderr}");
    let alerts: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: Vec<String> = alerts.iter().map(|a| a["_id"].as_str().unwrap().to_string()).collect();
    // Both planted events (oldest first), with the ids a cluster run gives them.
    let want: Vec<String> = ["e2", "e1"]
        .iter()
        .map(|id| alert_id(&Hit { index: "winlogbeat-8.19.0".into(), id: id.to_string() }, SHADOW_UUID))
        .collect();
    assert_eq!(got, want, "{stderr}");
}

/// No node needed: threshold and new terms rules on a file (keyword fields), with Kibana's documents and ids;
/// grouping on a non-keyword field is refused.
#[test]
fn offline_test_groups_threshold_and_new_terms_rules_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let spray = std::fs::read_to_string(fixtures().join(SPRAY_RULE)).unwrap();
    // The same rule grouping by host (keyword) with a keyword-only query; the original groups by source.ip.
    let by_host = spray
        .replacen(SPRAY_RULE_ID, "thr-host", 1)
        .replacen("field = [\"source.ip\"]", "field = [\"host.name\"]", 1)
        .replacen("source.ip:* and not source.ip:(\"127.0.0.1\" or \"::1\")", "user.name:*", 1);
    std::fs::write(rules.join("spray.toml"), &spray).unwrap();
    std::fs::write(rules.join("by_host.toml"), &by_host).unwrap();
    std::fs::copy(fixtures().join(SERVICE_RULE), rules.join("service.toml")).unwrap();
    let config = dir.path().join("esdetect.toml");
    std::fs::write(
        &config,
        format!("rules_dir = \"rules\"\n[alerts]\nspace = \"{SPACE}\"\n[rules.\"thr-host\"]\nuuid = \"{SPRAY_UUID}\"\n[rules.\"{SERVICE_RULE_ID}\"]\nuuid = \"{SERVICE_UUID}\"\n"),
    )
    .unwrap();
    let users = ["alice", "bob", "carol", "dave"];
    let mut lines: Vec<String> = Vec::new();
    let mut hit = |id: String, doc: Value| lines.push(json!({"_index": "logs-system.security-default", "_id": id, "_source": doc}).to_string());
    for i in 0..12 {
        hit(format!("f{i}"), failed_logon(&format!("2026-05-20T09:{:02}:{:02}.000Z", 57 + i / 4, (i % 4) * 15), "10.0.0.5", users[i % 4], "failure"));
    }
    for i in 0..3 {
        let mut d = failed_logon(&format!("2026-05-20T09:58:{:02}.000Z", i), "10.0.0.6", "alice", "failure");
        d["host"]["name"] = json!("ws-1");
        hit(format!("g{i}"), d);
    }
    let mut svc = |id: &str, at: &str, host: &str, name: &str| {
        lines.push(json!({"_index": "logs-system.system-default", "_id": id, "_source": service_installed(at, host, name)}).to_string())
    };
    svc("s1", "2026-05-19T08:00:00.000Z", "dc-01", "Spooler");
    svc("s2", "2026-05-20T09:57:00.000Z", "dc-01", "Spooler");
    svc("s3", "2026-05-20T09:58:00.000Z", "dc-01", "EvilSvc");
    svc("s4", "2026-05-20T10:01:00.000Z", "dc-01", "EvilSvc");
    std::fs::write(dir.path().join("events.ndjson"), lines.join("\n") + "\n").unwrap();
    let c = config.to_str().unwrap();
    let out = common::esdetect(dir.path(), &["--no-color", "--config", c, "test", "--events", "events.ndjson", "--now", NOW, "--format", "ndjson"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "the source.ip rule is refused: {stderr}");
    assert!(stderr.contains("the query uses `source.ip`, which is not mapped as keyword"), "{stderr}");
    let alerts: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let thr = alerts.iter().find(|a| a["_source"]["kibana.alert.rule.rule_id"] == "thr-host").unwrap();
    assert_eq!(
        thr["_source"]["kibana.alert.threshold_result"],
        json!({"cardinality": [{"field": "user.name", "value": 4}], "count": 12, "from": "2026-05-20T09:57:00.000Z",
               "terms": [{"field": "host.name", "value": "dc-01"}]})
    );
    // The id from Kibana's formulas, with the run's start as the alert records it.
    let started = thr["_source"]["kibana.alert.rule.execution.timestamp"].as_str().unwrap();
    let ns = uuid::Uuid::parse_str(THRESHOLD_NS).unwrap();
    let event_id = uuid::Uuid::new_v5(&ns, format!("thr-host{started}host.namedc-01").as_bytes()).to_string();
    let index = "logs-system.security*,logs-windows.forwarded*,winlogbeat-*";
    assert_eq!(thr["_id"].as_str().unwrap(), alert_id(&Hit { index: index.into(), id: event_id }, SPRAY_UUID));
    let nt = alerts.iter().find(|a| a["_source"]["kibana.alert.rule.rule_id"] == SERVICE_RULE_ID).unwrap();
    let s3 = Hit { index: "logs-system.system-default".into(), id: "s3".into() };
    assert_eq!(nt["_id"].as_str().unwrap(), new_terms_alert_id(&s3, &["dc-01", "EvilSvc"]));
    assert_eq!(nt["_source"]["kibana.alert.new_terms"], json!(["dc-01", "EvilSvc"]));
}

/// No node needed: the fixtures of every type load, and `validate` counts them per type.
#[test]
fn validate_counts_rules_per_type_with_skip_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::esdetect(dir.path(), &["--no-color", "--rules", fixtures().to_str().unwrap(), "validate"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("8 rule(s) valid, 0 error(s), 1 skipped (1 type esql)"), "{stdout}");
    assert!(stdout.contains("by type: esql 1 skipped, new_terms 2 loaded, query 4 loaded, threshold 2 loaded"), "{stdout}");
    assert!(stderr.contains("other_types_export.ndjson:4:1: rule `ES|QL rule (export)` of type `esql`"), "{stderr}");

    // Every loaded fixture explains, with the request of its type.
    for (rule_id, expect) in [
        (SHADOW_RULE_ID, "query (KQL, matched by Elasticsearch)"),
        (LSASS_RULE_ID, "\"query_string\""),
        ("a1c2e3f4-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "query (KQL, matched by Elasticsearch)"),
        ("c5a1d2e3-kql-export", "\"must_not\""),
        (SPRAY_RULE_ID, "\"thresholdTerms\""),
        ("c5a1d2e3-thr-export", "groups of [source.ip] with at least 20 event(s)"),
        (SERVICE_RULE_ID, "\"first_seen\""),
        ("c5a1d2e3-nt-export", "new terms: [host.name, winlog.event_data.ServiceName]"),
    ] {
        let out = common::esdetect(dir.path(), &["--no-color", "--rules", fixtures().to_str().unwrap(), "explain", rule_id, "--now", NOW]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(out.status.code(), Some(0), "{rule_id}: {text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(expect), "{rule_id}: {text}");
    }
}
