//! One detection run end to end against the live node: planted Windows Security events in ECS-mapped
//! indices → `detect::run_on_cluster` (and the real `esdetect run --once` binary) → alerts in a write
//! alias, checked by `_id`.
//!
//! Expected alert ids are computed here, independently of the implementation, from the formulas of
//! spec alert-documents §9 and the `_index`/`_id` the node assigned to each planted event.
//! Events are hand-made, modelled on the shapes of spec event-shapes §2–§4 (System integration, Windows
//! forwarded, Winlogbeat 8.x and 7.x) with the agent fields real documents carry (`host.ip`,
//! `host.os.type`, `event.ingested`, `data_stream.*`).
//!
//! Isolation: every test has its own tag; its event indices are `logs-system.security-<tag>…`,
//! `logs-windows.forwarded-<tag>…`, `winlogbeat-<tag>…` (mapped by a per-test copy of the ECS template
//! from `simulate::templates`), the rules' `index` is overridden with those patterns, and alerts go to
//! the alias `esdetect-test-<tag>`. Everything is deleted when the test ends, also on failure.
//! Needs ESDETECT_TEST_ES_URL: without a node every test fails (tests/common).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use elasticsearch::http::Method;
use esdetect::alert::mapping::alerts_index_template;
use esdetect::config::{Config, RuleSettings};
use esdetect::detect::{self, PreparedRule, RunOptions, RunStatus, RunSummary, Window};
use esdetect::es::{ConnectionConfig, EsClient};
use esdetect::simulate::templates::event_index_templates;
use esdetect::sink::es::{ensure_alerts_index, first_index_name, put_index_template_if_absent, template_name};
use serde_json::{json, Value};


const KRB_RULE: &str = "privilege_escalation_krbrelayup_service_creation.toml";
const SMB_RULE: &str = "credential_access_machine_account_smb_relay.toml";
const KRB_RULE_ID: &str = "e4e31051-ee01-4307-a6ee-b21b186958f4";
const SMB_RULE_ID: &str = "d84a11c0-eb12-4e7d-8a0a-718e38351e29";
/// Kibana saved-object ids configured for the two rules (spec §9.5's examples).
const KRB_UUID: &str = "7b1c2a9e-3f0d-4c55-9a11-0d6e2f4b8c01";
const SMB_UUID: &str = "5d0c1e1a-2b7f-4a39-8c4e-6f1b9d2a7e10";
/// A non-default space: event-alert ids include it, sequence ids do not.
const SPACE: &str = "soc";
/// Kibana's max_signals warning, verbatim (spec alert-documents §11).
const KIBANA_MAX_SIGNALS_WARNING: &str =
    "This rule reached the maximum alert limit for the rule execution. Some alerts were not created.";

/// Run time of most tests; both rules look back 9 minutes: window [09:56:00.000, 10:05:00.000].
const NOW: &str = "2026-05-20T10:05:00Z";

// ---------------------------------------------------------------------------------------------------
// Expected ids (spec alert-documents §9), written from the formulas.


/// §9.1 for a hit in [`SPACE`].
fn event_alert_id(hit: &Hit, rule_uuid: &str) -> String {
    common::ids::event_alert_id(&hit.index, &hit.id, SPACE, rule_uuid)
}

/// §9.2 / §9.3 for hits: (shell id, building-block ids in sequence order).
fn sequence_alert_ids(events: &[&Hit], rule_uuid: &str) -> (String, Vec<String>) {
    let pairs: Vec<(&str, &str)> = events.iter().map(|e| (e.index.as_str(), e.id.as_str())).collect();
    common::ids::sequence_ids(&pairs, rule_uuid)
}

// ---------------------------------------------------------------------------------------------------
// Event documents (derived from the fixture shapes; see module doc).

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("test timestamps are RFC 3339").with_timezone(&Utc)
}

fn ms(s: &str) -> String {
    t(s).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Sets a dotted path in a JSON object, creating objects on the way.
fn set(doc: &mut Value, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().expect("non-empty path");
    let mut cur = doc;
    for p in parts {
        if !cur.get(p).map(Value::is_object).unwrap_or(false) {
            cur[p] = json!({});
        }
        cur = &mut cur[p];
    }
    cur[last] = value;
}

fn remove(doc: &mut Value, path: &str) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().expect("non-empty path");
    let mut cur = doc;
    for p in parts {
        cur = &mut cur[p];
    }
    if let Some(o) = cur.as_object_mut() {
        o.remove(last);
    }
}

/// Agent / Fleet fields the ingest pipelines never set (event-shapes §1).
fn with_agent(mut doc: Value, host: &str, host_ips: Value, dataset: &str) -> Value {
    set(&mut doc, "host.name", json!(host));
    set(&mut doc, "host.hostname", json!(host.split('.').next().unwrap_or(host)));
    set(&mut doc, "host.ip", host_ips);
    set(&mut doc, "host.os.type", json!("windows"));
    set(&mut doc, "host.os.family", json!("windows"));
    set(&mut doc, "agent.type", json!("filebeat"));
    set(&mut doc, "agent.version", json!("8.19.0"));
    set(&mut doc, "data_stream.type", json!("logs"));
    set(&mut doc, "data_stream.dataset", json!(dataset));
    set(&mut doc, "data_stream.namespace", json!("default"));
    set(&mut doc, "ecs.version", json!("8.11.0"));
    doc
}

/// A loopback Kerberos network logon (4624 v2, ElevatedToken No) on `computer`, creating `logon_id`.
fn logon_4624(computer: &str, at: &str, logon_id: &str) -> Value {
    let doc = json!({
        "@timestamp": ms(at),
        "event": {
            "code": "4624", "action": "logged-in", "category": ["authentication"], "type": ["start"],
            "outcome": "success", "kind": "event", "provider": "Microsoft-Windows-Security-Auditing",
            "module": "system", "dataset": "system.security", "ingested": ms(at)
        },
        "winlog": {
            "channel": "Security", "computer_name": computer, "event_id": "4624", "record_id": "90211",
            "provider_name": "Microsoft-Windows-Security-Auditing", "version": 2, "outcome": "success",
            "logon": {"type": "Network", "id": "0x0"},
            "event_data": {
                "SubjectUserSid": "S-1-0-0", "SubjectLogonId": "0x0", "TargetUserName": "Administrator",
                "TargetDomainName": "CORP", "TargetLogonId": logon_id, "LogonType": "3",
                "LogonProcessName": "Kerberos", "AuthenticationPackageName": "Kerberos",
                "ElevatedToken": "%%1843", "ImpersonationLevel": "%%1833"
            },
            "process": {"pid": 516}
        },
        "process": {"pid": 0, "executable": "-", "name": "-"},
        "source": {"ip": "127.0.0.1", "port": 52013},
        "user": {"name": "Administrator", "domain": "CORP", "id": "S-1-5-21-1-2-3-500"},
        "related": {"user": ["Administrator"], "ip": ["127.0.0.1"]}
    });
    with_agent(doc, computer, json!(["10.0.0.21", "fe80::c1a0:5e11:2a0b:7d31"]), "system.security")
}

/// A service install (4697) in the session `logon_id` on `computer`.
fn service_4697(computer: &str, at: &str, logon_id: &str) -> Value {
    let doc = json!({
        "@timestamp": ms(at),
        "event": {
            "code": "4697", "action": "service-installed", "category": ["iam", "configuration"],
            "type": ["admin", "change"], "outcome": "success", "kind": "event",
            "provider": "Microsoft-Windows-Security-Auditing", "module": "system", "dataset": "system.security",
            "ingested": ms(at)
        },
        "winlog": {
            "channel": "Security", "computer_name": computer, "event_id": "4697", "record_id": "90212",
            "provider_name": "Microsoft-Windows-Security-Auditing", "outcome": "success",
            "logon": {"id": logon_id},
            "event_data": {
                "SubjectUserName": "WS01$", "SubjectDomainName": "CORP", "SubjectLogonId": logon_id,
                "ServiceName": "KrbSCM", "ServiceFileName": "C:\\Users\\Public\\KrbRelayUp.exe system",
                "ServiceAccount": "LocalSystem", "ServiceStartType": "3", "ServiceType": "0x10"
            }
        },
        "service": {"name": "KrbSCM", "type": "Win32 Own Process"},
        "user": {"name": "WS01$", "domain": "CORP"},
        "related": {"user": ["WS01$"]}
    });
    with_agent(doc, computer, json!(["10.0.0.21", "fe80::c1a0:5e11:2a0b:7d31"]), "system.security")
}

/// A machine account's share access (5145): `account` (`FS01$`) on `computer` from `source_ip`.
fn share_5145(computer: &str, account: &str, source_ip: &str, host_ips: Value, at: &str, ingested: &str) -> Value {
    let doc = json!({
        "@timestamp": ms(at),
        "event": {
            "code": "5145", "action": "network-share-object-access-checked", "category": ["network", "file"],
            "type": ["info", "access"], "outcome": "success", "kind": "event",
            "provider": "Microsoft-Windows-Security-Auditing", "module": "system", "dataset": "system.security",
            "ingested": ms(ingested)
        },
        "winlog": {
            "channel": "Security", "computer_name": computer, "event_id": "5145", "record_id": "771",
            "provider_name": "Microsoft-Windows-Security-Auditing", "outcome": "success",
            "logon": {"id": "0x2b7f1"},
            "event_data": {
                "SubjectUserName": account, "SubjectDomainName": "CORP", "SubjectLogonId": "0x2b7f1",
                "ShareName": "\\\\*\\IPC$", "RelativeTargetName": "spoolss", "AccessMask": ["0x3"]
            }
        },
        "source": {"ip": source_ip, "port": 49832},
        "user": {"name": account, "domain": "CORP"},
        "related": {"user": [account], "ip": [source_ip]}
    });
    with_agent(doc, computer, host_ips, "system.security")
}

fn fs01_ips() -> Value {
    json!(["10.0.0.20", "fe80::1234:5678:9abc:def0"])
}

// ---------------------------------------------------------------------------------------------------
// The lab: per-test indices, template, alias, cleanup.

#[derive(Debug, Clone, PartialEq)]
struct Hit {
    index: String,
    id: String,
}

/// Deletes what a test created (indices and templates by exact name), also when the test panics.
#[derive(Default)]
struct Cleanup {
    indices: Mutex<BTreeSet<String>>,
    templates: Mutex<BTreeSet<String>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let indices: Vec<String> = self.indices.lock().map(|s| s.iter().cloned().collect()).unwrap_or_default();
        let templates: Vec<String> = self.templates.lock().map(|s| s.iter().cloned().collect()).unwrap_or_default();
        let url = common::es_url();
        // Drop cannot await and the test runtime may be single-threaded: own thread, own runtime, own client.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let client = EsClient::new(&ConnectionConfig::for_url(url)).ok()?;
                for chunk in indices.chunks(20) {
                    let path = format!("/{}?ignore_unavailable=true", chunk.join(","));
                    client.raw(Method::Delete, &path, &[], None).await.ok()?;
                }
                for name in templates {
                    client.raw(Method::Delete, &format!("/_index_template/{name}"), &[], None).await.ok()?;
                }
                Some(())
            })
        })
        .join();
        if !matches!(done, Ok(Some(()))) {
            eprintln!("warning: detect_run cleanup did not finish; test indices may be left on the node");
        }
    }
}

struct Lab {
    client: EsClient,
    tag: String,
    alias: String,
    config: Config,
    cleanup: Cleanup,
}

impl Lab {
    /// Per-test template for the tag's event indices and the alerts alias, as `esdetect run` sets it up.
    async fn new() -> Lab {
        let url = common::es_url();
        let client = EsClient::new(&ConnectionConfig::for_url(url)).expect("client for the test node");
        let tag = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let alias = format!("esdetect-test-{tag}");
        let mut config = Config::default();
        config.alerts.space = SPACE.into();
        config.alerts.index = alias.clone();
        for (rule_id, uuid) in [(KRB_RULE_ID, KRB_UUID), (SMB_RULE_ID, SMB_UUID)] {
            config.rules.insert(rule_id.into(), RuleSettings { uuid: Some(uuid.into()), ..Default::default() });
        }
        let lab = Lab { client, tag, alias, config, cleanup: Cleanup::default() };

        // The simulator's ECS template, re-pointed at this test's indices. Priority above the shared
        // templates' 50 so the two never tie on overlapping patterns.
        let (_, mut body) = event_index_templates().into_iter().next().expect("at least one template");
        body["index_patterns"] = json!(lab.patterns());
        body["priority"] = json!(77);
        let name = format!("esdetect-test-ecs-{}", lab.tag);
        lab.cleanup.templates.lock().unwrap().insert(name.clone());
        let created = put_index_template_if_absent(&lab.client, &name, &body).await.expect("put event template");
        assert!(created, "a fresh template name must be created");

        lab.cleanup.templates.lock().unwrap().insert(template_name(&lab.alias));
        lab.cleanup.indices.lock().unwrap().insert(first_index_name(&lab.alias));
        let template = alerts_index_template(&[format!("{}-*", lab.alias)]);
        ensure_alerts_index(&lab.client, &lab.alias, template).await.expect("alerts alias");
        lab
    }

    fn system(&self) -> String {
        format!("logs-system.security-{}", self.tag)
    }
    fn forwarded(&self) -> String {
        format!("logs-windows.forwarded-{}", self.tag)
    }
    fn winlogbeat(&self) -> String {
        format!("winlogbeat-{}", self.tag)
    }
    fn patterns(&self) -> Vec<String> {
        vec![format!("{}*", self.system()), format!("{}*", self.forwarded()), format!("{}*", self.winlogbeat())]
    }

    /// A seed rule from `rules/`, prepared with this lab's config and reading only this lab's indices.
    fn prepare(&self, file: &str) -> PreparedRule {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(file);
        let rule = esdetect::rules::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut prepared = detect::prepare::prepare_rule(rule, &self.config).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(prepared.alias, self.alias);
        prepared.rule.index = self.patterns();
        prepared
    }

    async fn run(&self, prepared: &PreparedRule, now: &str) -> RunSummary {
        let window = Window::ending_at(&prepared.rule, t(now));
        detect::run_on_cluster(&self.client, prepared, window, &RunOptions::default(), &Utc::now).await
    }

    /// Bulk-indexes `(index, doc)` pairs (ids chosen by the node), refreshes, returns each `_index`/`_id`.
    async fn index(&self, docs: Vec<(String, Value)>) -> Vec<Hit> {
        {
            let mut set = self.cleanup.indices.lock().unwrap();
            set.extend(docs.iter().map(|(i, _)| i.clone()));
        }
        let mut lines: Vec<Value> = Vec::new();
        for (index, doc) in &docs {
            lines.push(json!({"create": {"_index": index}}));
            lines.push(doc.clone());
        }
        let body = common::bulk(None, lines).await;
        let items = body["items"].as_array().expect("bulk items");
        assert_eq!(items.len(), docs.len());
        items
            .iter()
            .map(|item| {
                let c = &item["create"];
                assert_eq!(c["status"], 201, "event not indexed: {item}");
                Hit { index: c["_index"].as_str().unwrap().into(), id: c["_id"].as_str().unwrap().into() }
            })
            .collect()
    }

    /// Every alert document behind the alias: `_id` → `_source`.
    async fn alerts(&self) -> BTreeMap<String, Value> {
        let body = json!({"size": 1000, "query": {"match_all": {}}});
        let (status, resp) =
            self.client.raw(Method::Post, &format!("/{}/_search", self.alias), &[], Some(&body)).await.expect("search");
        assert_eq!(status, 200, "{resp}");
        resp["hits"]["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|h| (h["_id"].as_str().unwrap().to_string(), h["_source"].clone()))
            .collect()
    }
}

fn id_set<I: IntoIterator<Item = String>>(ids: I) -> BTreeSet<String> {
    ids.into_iter().collect()
}

fn assert_succeeded(s: &RunSummary) {
    assert_eq!(s.status, RunStatus::Succeeded, "run did not succeed: {s:#?}");
}

// ---------------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn krbrelayup_sequence_gives_shell_and_two_building_blocks_once() {
    let lab = Lab::new().await;
    let ws = "ws01.corp.local";
    let hits = lab
        .index(vec![
            (lab.system(), logon_4624(ws, "2026-05-20T10:00:00.250Z", "0x8f3a1")),
            // Another logon session on the same machine: no 4697 follows it.
            (lab.system(), { let mut d = logon_4624(ws, "2026-05-20T10:00:30Z", "0x8f3b7"); set(&mut d, "source.ip", json!("10.0.0.77")); d }),
            (lab.system(), service_4697(ws, "2026-05-20T10:02:10.500Z", "0x8f3a1")),
        ])
        .await;
    let (shell, bbs) = sequence_alert_ids(&[&hits[0], &hits[2]], KRB_UUID);

    let rule = lab.prepare(KRB_RULE);
    let summary = lab.run(&rule, NOW).await;
    assert_succeeded(&summary);
    assert_eq!((summary.kept, summary.alerts_written, summary.duplicates), (1, 3, 0), "{summary:#?}");

    let alerts = lab.alerts().await;
    assert_eq!(id_set(alerts.keys().cloned()), id_set([shell.clone(), bbs[0].clone(), bbs[1].clone()]));
    let s = &alerts[&shell];
    assert_eq!(s["kibana.alert.group.id"], json!(shell));
    assert_eq!(s["kibana.alert.uuid"], json!(shell));
    assert!(s.get("kibana.alert.building_block_type").is_none());
    assert!(s.get("kibana.alert.group.index").is_none());
    for (i, bb) in bbs.iter().enumerate() {
        let d = &alerts[bb];
        assert_eq!(d["kibana.alert.group.id"], json!(shell), "building block {i} shares the shell's group id");
        assert_eq!(d["kibana.alert.group.index"], json!(i));
        assert_eq!(d["kibana.alert.building_block_type"], json!("default"));
        let ancestor = &d["kibana.alert.ancestors"][0];
        let event = &hits[if i == 0 { 0 } else { 2 }];
        assert_eq!((ancestor["id"].as_str(), ancestor["index"].as_str()), (Some(event.id.as_str()), Some(event.index.as_str())));
    }

    // A later run whose window still holds both events finds the same sequence again.
    let again = lab.run(&rule, "2026-05-20T10:08:00Z").await;
    assert_succeeded(&again);
    assert_eq!((again.kept, again.alerts_written, again.duplicates), (1, 0, 3), "{again:#?}");
    assert_eq!(lab.alerts().await.len(), 3);
}

#[tokio::test]
async fn krbrelayup_near_misses_and_the_maxspan_boundary() {
    let lab = Lab::new().await;
    let start = "2026-05-20T09:57:00Z";
    let mut docs = Vec::new();
    // ws02: the logon comes from a remote address.
    let mut remote = logon_4624("ws02.corp.local", start, "0x1001");
    set(&mut remote, "source.ip", json!("10.0.0.5"));
    docs.push(remote);
    docs.push(service_4697("ws02.corp.local", "2026-05-20T09:58:00Z", "0x1001"));
    // ws03: elevated token (%%1842 = Yes).
    let mut elevated = logon_4624("ws03.corp.local", start, "0x1002");
    set(&mut elevated, "winlog.event_data.ElevatedToken", json!("%%1842"));
    docs.push(elevated);
    docs.push(service_4697("ws03.corp.local", "2026-05-20T09:58:00Z", "0x1002"));
    // ws04: the service install comes 300 001 ms after the logon — outside maxspan=5m.
    docs.push(logon_4624("ws04.corp.local", start, "0x1003"));
    docs.push(service_4697("ws04.corp.local", "2026-05-20T10:02:00.001Z", "0x1003"));
    // ws05: exactly 300 000 ms — maxspan is inclusive, this one matches.
    docs.push(logon_4624("ws05.corp.local", start, "0x1004"));
    docs.push(service_4697("ws05.corp.local", "2026-05-20T10:02:00Z", "0x1004"));
    // ws06: 4697 in another session (upper-case id does not join a lower-case one).
    docs.push(logon_4624("ws06.corp.local", start, "0x1005"));
    docs.push(service_4697("ws06.corp.local", "2026-05-20T09:58:00Z", "0X1005"));
    // ws07: the pid is not 0.
    let mut pid = logon_4624("ws07.corp.local", start, "0x1006");
    set(&mut pid, "process.pid", json!(448));
    docs.push(pid);
    docs.push(service_4697("ws07.corp.local", "2026-05-20T09:58:00Z", "0x1006"));
    let hits = lab.index(docs.into_iter().map(|d| (lab.system(), d)).collect()).await;

    let summary = lab.run(&lab.prepare(KRB_RULE), NOW).await;
    assert_succeeded(&summary);
    let (shell, bbs) = sequence_alert_ids(&[&hits[6], &hits[7]], KRB_UUID);
    let alerts = lab.alerts().await;
    assert_eq!(
        id_set(alerts.keys().cloned()),
        id_set([shell, bbs[0].clone(), bbs[1].clone()]),
        "only ws05's pair (exactly 5 minutes apart) may alert: {summary:#?}"
    );
    assert_eq!(alerts.values().filter(|a| a["winlog"]["computer_name"] != json!("ws05.corp.local")).count(), 0);
}

#[tokio::test]
async fn smb_machine_account_relay_windowed_on_event_ingested() {
    let lab = Lab::new().await;
    let fs = "fs01.corp.local";
    let docs = vec![
        // 0: plain attack, both times inside.
        share_5145(fs, "FS01$", "10.0.0.99", fs01_ips(), "2026-05-20T10:03:00Z", "2026-05-20T10:03:01Z"),
        // 1: ingested inside, @timestamp 1 ms before the window → still found (window on event.ingested).
        share_5145(fs, "FS01$", "10.0.0.98", fs01_ips(), "2026-05-20T09:55:59.999Z", "2026-05-20T09:56:00Z"),
        // 2: ingested 1 ms after the window end, @timestamp inside → not found.
        share_5145(fs, "FS01$", "10.0.0.97", fs01_ips(), "2026-05-20T10:04:00Z", "2026-05-20T10:05:00.001Z"),
        // 3: from the host's own address (a single host.ip).
        share_5145(fs, "FS01$", "10.0.0.20", json!("10.0.0.20"), "2026-05-20T10:03:00Z", "2026-05-20T10:03:01Z"),
        // 4: host.ip an IPv4+IPv6 array that contains the source address.
        share_5145(fs, "FS01$", "fe80::1234:5678:9abc:def0", fs01_ips(), "2026-05-20T10:03:00Z", "2026-05-20T10:03:01Z"),
        // 5: a different machine's account (dot boundary: FS01$ is not FS010).
        share_5145("fs010.corp.local", "FS01$", "10.0.0.99", fs01_ips(), "2026-05-20T10:03:00Z", "2026-05-20T10:03:01Z"),
        // 6: a user, not a machine account.
        share_5145(fs, "FS01", "10.0.0.99", fs01_ips(), "2026-05-20T10:03:00Z", "2026-05-20T10:03:01Z"),
        // 7: loopback.
        share_5145(fs, "FS01$", "127.0.0.1", fs01_ips(), "2026-05-20T10:03:00Z", "2026-05-20T10:03:01Z"),
    ];
    let mut docs: Vec<Value> = docs;
    // 8: no event.ingested at all → the window falls back to @timestamp (inside) → found.
    let mut no_ingested = share_5145(fs, "FS01$", "10.0.0.96", fs01_ips(), "2026-05-20T10:01:00Z", "2026-05-20T10:01:00Z");
    remove(&mut no_ingested, "event.ingested");
    docs.push(no_ingested);
    let hits = lab.index(docs.into_iter().map(|d| (lab.system(), d)).collect()).await;

    let rule = lab.prepare(SMB_RULE);
    let summary = lab.run(&rule, NOW).await;
    assert_succeeded(&summary);
    let expected = id_set([0, 1, 8].iter().map(|&i| event_alert_id(&hits[i], SMB_UUID)));
    assert_eq!(id_set(lab.alerts().await.keys().cloned()), expected, "{summary:#?}");
    assert_eq!((summary.alerts_written, summary.duplicates), (3, 0));
    // The alert of the plain attack, as spec alert-documents §4–§5 and §7 describe it.
    let alert = &lab.alerts().await[&event_alert_id(&hits[0], SMB_UUID)];
    assert_eq!(alert["kibana.alert.rule.uuid"], json!(SMB_UUID));
    assert_eq!(alert["kibana.space_ids"], json!([SPACE]));
    assert_eq!(alert["kibana.alert.original_time"], json!("2026-05-20T10:03:00.000Z"));
    assert_eq!(alert["kibana.alert.ancestors"][0]["id"], json!(hits[0].id));
    assert_eq!(alert["kibana.alert.ancestors"][0]["index"], json!(hits[0].index));
    assert_eq!(
        alert["kibana.alert.reason"],
        json!("network, file event with source 10.0.0.99 by FS01$ on fs01.corp.local created high alert Potential Machine Account Relay Attack via SMB.")
    );

    // The next, overlapping window [09:57, 10:06]: 0 and 8 again (duplicates, nothing rewritten); 1 has
    // left the window; 2 (ingested at 10:05:00.001) has entered it and is new.
    let again = lab.run(&rule, "2026-05-20T10:06:00Z").await;
    assert_succeeded(&again);
    assert_eq!((again.alerts_written, again.duplicates), (1, 2), "{again:#?}");
    let expected = id_set([0, 1, 2, 8].iter().map(|&i| event_alert_id(&hits[i], SMB_UUID)));
    assert_eq!(id_set(lab.alerts().await.keys().cloned()), expected);
}

#[tokio::test]
async fn one_event_per_index_family() {
    let lab = Lab::new().await;
    let (at, ing) = ("2026-05-20T10:01:00Z", "2026-05-20T10:01:02Z");
    // System integration.
    let system = share_5145("fs01.corp.local", "FS01$", "10.0.0.99", fs01_ips(), at, ing);
    // Windows forwarded (WEC): host.* is the collector, here without host.ip → the local-access
    // exclusion cannot apply (spec eql-semantics §10.2), so it matches.
    let mut forwarded = share_5145("fs02.corp.local", "FS02$", "10.0.0.99", json!(null), at, ing);
    remove(&mut forwarded, "host.ip");
    set(&mut forwarded, "host.name", json!("wec01.corp.local"));
    set(&mut forwarded, "data_stream.dataset", json!("windows.forwarded"));
    set(&mut forwarded, "event.module", json!("windows"));
    set(&mut forwarded, "ecs.version", json!("8.17.0"));
    // Winlogbeat 8.x with the pipeline: @timestamp with 100-ns digits, numeric record_id.
    let mut wlb8 = share_5145("fs03.corp.local", "FS03$", "10.0.0.99", json!(["10.0.0.23"]), at, ing);
    set(&mut wlb8, "@timestamp", json!("2026-05-20T10:01:00.1234567Z"));
    set(&mut wlb8, "winlog.record_id", json!(771));
    set(&mut wlb8, "event.module", json!("security"));
    remove(&mut wlb8, "data_stream");
    // Winlogbeat 7.x (early): numeric event.code and winlog.event_id, a string category.
    let mut wlb7 = share_5145("fs04.corp.local", "FS04$", "10.0.0.99", json!(["10.0.0.24"]), at, ing);
    set(&mut wlb7, "event.code", json!(5145));
    set(&mut wlb7, "winlog.event_id", json!(5145));
    set(&mut wlb7, "event.category", json!("file"));
    set(&mut wlb7, "event.type", json!("access"));
    remove(&mut wlb7, "event.outcome");
    remove(&mut wlb7, "data_stream");
    // Winlogbeat 8.x raw (no pipeline): no category, no source.* → never matches, without error.
    let mut raw = share_5145("fs05.corp.local", "FS05$", "10.0.0.99", json!(["10.0.0.25"]), at, ing);
    remove(&mut raw, "event.category");
    remove(&mut raw, "event.type");
    remove(&mut raw, "source");
    set(&mut raw, "event.action", json!("Detailed File Share"));
    set(&mut raw, "winlog.event_data.IpAddress", json!("10.0.0.99"));
    // A KrbRelayUp pair as Winlogbeat 8.x stores it (100-ns timestamps) in the same index.
    let mut logon = logon_4624("ws09.corp.local", "2026-05-20T10:00:00Z", "0x77e1");
    set(&mut logon, "@timestamp", json!("2026-05-20T10:00:00.0000001Z"));
    let mut service = service_4697("ws09.corp.local", "2026-05-20T10:00:01Z", "0x77e1");
    set(&mut service, "@timestamp", json!("2026-05-20T10:00:01.0000009Z"));

    let hits = lab
        .index(vec![
            (lab.system(), system),
            (lab.forwarded(), forwarded),
            (format!("{}-8.19.0", lab.winlogbeat()), wlb8),
            (format!("{}-7.9.0", lab.winlogbeat()), wlb7),
            (format!("{}-8.19.0", lab.winlogbeat()), raw),
            (format!("{}-8.19.0", lab.winlogbeat()), logon),
            (format!("{}-8.19.0", lab.winlogbeat()), service),
        ])
        .await;

    let smb = lab.run(&lab.prepare(SMB_RULE), NOW).await;
    assert_succeeded(&smb);
    let krb = lab.run(&lab.prepare(KRB_RULE), NOW).await;
    assert_succeeded(&krb);
    let (shell, bbs) = sequence_alert_ids(&[&hits[5], &hits[6]], KRB_UUID);
    let mut expected = id_set((0..4).map(|i| event_alert_id(&hits[i], SMB_UUID)));
    expected.extend([shell, bbs[0].clone(), bbs[1].clone()]);
    assert_eq!(id_set(lab.alerts().await.keys().cloned()), expected, "smb: {smb:#?}\nkrb: {krb:#?}");
}

#[tokio::test]
async fn more_than_max_signals_keeps_the_most_recent_hundred() {
    let lab = Lab::new().await;
    let first = t("2026-05-20T09:57:00Z");
    // 150 matches one second apart by @timestamp; event.ingested runs the other way, and the indexing
    // order is shuffled, so only "most recent by @timestamp" picks the right hundred.
    let order: Vec<usize> = (0..150).map(|i| (i * 37) % 150).collect();
    let docs: Vec<(String, Value)> = order
        .iter()
        .map(|&i| {
            let at = (first + Duration::seconds(i as i64)).to_rfc3339();
            let ingested = (t("2026-05-20T10:04:00Z") - Duration::seconds(i as i64)).to_rfc3339();
            let ip = format!("10.1.{}.{}", i / 100, i % 100 + 1);
            (lab.system(), share_5145("fs01.corp.local", "FS01$", &ip, fs01_ips(), &at, &ingested))
        })
        .collect();
    let hits = lab.index(docs).await;
    let newest: BTreeSet<String> = order
        .iter()
        .zip(&hits)
        .filter(|(i, _)| **i >= 50)
        .map(|(_, h)| event_alert_id(h, SMB_UUID))
        .collect();
    assert_eq!(newest.len(), 100);

    let summary = lab.run(&lab.prepare(SMB_RULE), NOW).await;
    assert_eq!(summary.status, RunStatus::PartialFailure, "{summary:#?}");
    assert_eq!(summary.warnings, vec![KIBANA_MAX_SIGNALS_WARNING.to_string()]);
    assert!(summary.errors.is_empty(), "{summary:#?}");
    assert_eq!((summary.kept, summary.alerts_written), (100, 100));
    assert!(summary.truncated);
    assert_eq!(id_set(lab.alerts().await.keys().cloned()), newest);
}

#[tokio::test]
async fn garbage_documents_are_skipped_and_valid_events_still_alert() {
    let lab = Lab::new().await;
    // An index that keeps malformed ip/long/date values in _source but leaves them unindexed.
    let garbage = format!("{}-garbage", lab.system());
    lab.cleanup.indices.lock().unwrap().insert(garbage.clone());
    let body = json!({"settings": {"index.mapping.ignore_malformed": true, "number_of_replicas": 0}});
    let (status, resp) = lab.client.raw(Method::Put, &format!("/{garbage}"), &[], Some(&body)).await.unwrap();
    assert_eq!(status, 200, "{resp}");

    let fs = "fs01.corp.local";
    let (at, ing) = ("2026-05-20T10:01:00Z", "2026-05-20T10:01:02Z");
    let valid = share_5145(fs, "FS01$", "10.0.0.99", fs01_ips(), at, ing);
    // source.ip not an address: unindexed → missing → `source.ip != null` is false → no alert.
    let bad_source = share_5145(fs, "FS01$", "not-an-ip", fs01_ips(), at, ing);
    // host.ip not an address: missing for EQL, so the local-access exclusion does not apply → alert
    // (what Elasticsearch does), and the malformed value is counted.
    let bad_host = share_5145(fs, "FS01$", "10.0.0.98", json!("garbage"), at, ing);
    // No @timestamp (window still placed by event.ingested): EQL drops events without its timestamp
    // field; the window query's `exists` filter already leaves them out (not fetched, not alerted).
    let mut no_ts = share_5145(fs, "FS01$", "10.0.0.97", fs01_ips(), at, ing);
    remove(&mut no_ts, "@timestamp");
    // An unparseable @timestamp (unindexed under ignore_malformed): same.
    let mut bad_ts = share_5145(fs, "FS01$", "10.0.0.96", fs01_ips(), at, ing);
    set(&mut bad_ts, "@timestamp", json!("yesterday"));
    // JSON types other than the usual ones that the mapping coerces: a numeric code, a string port.
    let mut odd = share_5145(fs, "FS01$", "10.0.0.95", fs01_ips(), at, ing);
    set(&mut odd, "source.port", json!("49832"));
    set(&mut odd, "event.code", json!(5145));

    // @timestamp as epoch milliseconds (a `date` field accepts it; so does EQL) → alert.
    let mut epoch = share_5145(fs, "FS01$", "10.0.0.94", fs01_ips(), at, ing);
    set(&mut epoch, "@timestamp", json!(t(at).timestamp_millis()));

    let hits = lab
        .index(vec![
            (lab.system(), valid),
            (lab.system(), epoch),
            (garbage.clone(), bad_source),
            (garbage.clone(), bad_host),
            (garbage.clone(), no_ts),
            (garbage.clone(), bad_ts),
            (garbage.clone(), odd),
        ])
        .await;

    let summary = lab.run(&lab.prepare(SMB_RULE), NOW).await;
    assert_succeeded(&summary);
    let expected = id_set([0, 1, 3, 6].iter().map(|&i| event_alert_id(&hits[i], SMB_UUID)));
    assert_eq!(id_set(lab.alerts().await.keys().cloned()), expected, "{summary:#?}");
    // Not-an-ip source and the two timestamp-less documents never reach the engine.
    assert_eq!(summary.fetched, 4, "{summary:#?}");
    assert!(summary.skipped.get("malformed values treated as missing").copied().unwrap_or(0) >= 1, "{summary:#?}");
    // ...but they are counted: in the window by event.ingested, without a usable @timestamp.
    assert_eq!(
        summary.skipped.get("no `@timestamp` (Elasticsearch's EQL ignores such events)").copied(),
        Some(2),
        "{summary:#?}"
    );
}

#[tokio::test]
async fn put_index_template_if_absent_creates_once_and_maps_ecs_types() {
    let lab = Lab::new().await;
    // Lab::new created the template; a second put of the same name leaves it alone.
    let name = format!("esdetect-test-ecs-{}", lab.tag);
    let created = put_index_template_if_absent(&lab.client, &name, &json!({"index_patterns": ["x"]})).await.unwrap();
    assert!(!created);
    lab.index(vec![(lab.winlogbeat(), share_5145("a", "A$", "10.0.0.1", fs01_ips(), NOW, NOW))]).await;
    let (status, m) = lab.client.raw(Method::Get, &format!("/{}/_mapping", lab.winlogbeat()), &[], None).await.unwrap();
    assert_eq!(status, 200);
    let props = &m[lab.winlogbeat()]["mappings"]["properties"];
    assert_eq!(props["source"]["properties"]["ip"]["type"], "ip");
    assert_eq!(props["host"]["properties"]["ip"]["type"], "ip");
    assert_eq!(props["event"]["properties"]["category"]["type"], "keyword");
    // Not in the ECS table: keyword through the dynamic template, not text.
    assert_eq!(props["winlog"]["properties"]["event_data"]["properties"]["ShareName"]["type"], "keyword");
}

// ---------------------------------------------------------------------------------------------------
// The real binary.

/// A rules folder with the seed rules, their `index` patched to `patterns`.
fn rules_dir(dir: &Path, patterns: &[String]) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let upstream = r#"index = ["logs-system.security*", "logs-windows.forwarded*", "winlogbeat-*"]"#;
    let quoted: Vec<String> = patterns.iter().map(|p| format!("{p:?}")).collect();
    for file in [KRB_RULE, SMB_RULE] {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(file)).unwrap();
        assert!(text.contains(upstream), "{file}: index line changed upstream; update this test");
        std::fs::write(rules.join(file), text.replace(upstream, &format!("index = [{}]", quoted.join(", ")))).unwrap();
    }
    rules
}

fn config_file(dir: &Path, url: &str, alias: &str, rules: &Path) -> PathBuf {
    let text = format!(
        "rules_dir = {rules:?}\n\n[elasticsearch]\nurls = [{url:?}]\nmax_retries = 0\nrequest_timeout = \"10s\"\n\n\
         [alerts]\nspace = {SPACE:?}\nindex = {alias:?}\n\n\
         [rules.\"{KRB_RULE_ID}\"]\nuuid = {KRB_UUID:?}\n\n[rules.\"{SMB_RULE_ID}\"]\nuuid = {SMB_UUID:?}\n",
        rules = rules.display().to_string()
    );
    let path = dir.join("esdetect.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn esdetect(config: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esdetect"));
    cmd.arg("--config").arg(config).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("ESDETECT_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("running the esdetect binary")
}

#[tokio::test]
async fn binary_run_once_writes_alerts_and_prints_json_summaries() {
    let lab = Lab::new().await;
    let hits = lab
        .index(vec![
            (lab.system(), share_5145("fs01.corp.local", "FS01$", "10.0.0.99", fs01_ips(), "2026-05-20T10:01:00Z", "2026-05-20T10:01:01Z")),
            (lab.forwarded(), logon_4624("ws01.corp.local", "2026-05-20T10:00:00Z", "0x5e1")),
            (lab.forwarded(), service_4697("ws01.corp.local", "2026-05-20T10:00:05Z", "0x5e1")),
        ])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_dir(dir.path(), &lab.patterns());
    let config = config_file(dir.path(), &common::es_url(), &lab.alias, &rules);

    let out = esdetect(&config, &["run", "--once", "--now", NOW, "--format", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let summaries: BTreeMap<String, Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .map(|v| (v["rule_id"].as_str().unwrap().to_string(), v))
        .collect();
    assert_eq!(summaries.len(), 2, "{stdout}");
    for s in summaries.values() {
        assert_eq!(s["status"], "succeeded", "{s}");
    }
    assert_eq!(summaries[SMB_RULE_ID]["alerts_written"], 1);
    assert_eq!(summaries[KRB_RULE_ID]["alerts_written"], 3);
    assert_eq!(summaries[SMB_RULE_ID]["window"]["to"], json!("2026-05-20T10:05:00Z"));

    let (shell, bbs) = sequence_alert_ids(&[&hits[1], &hits[2]], KRB_UUID);
    let expected = id_set([event_alert_id(&hits[0], SMB_UUID), shell, bbs[0].clone(), bbs[1].clone()]);
    assert_eq!(id_set(lab.alerts().await.keys().cloned()), expected);

    // A second run a minute later: nothing new.
    let out = esdetect(&config, &["run", "--once", "--now", "2026-05-20T10:06:00Z", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let dupes: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["duplicates"].as_u64().unwrap())
        .sum();
    assert_eq!(dupes, 4);
    assert_eq!(lab.alerts().await.len(), 4);
}

#[tokio::test]
async fn binary_unreachable_cluster_exits_2_and_writes_nothing() {
    let lab = Lab::new().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_dir(dir.path(), &lab.patterns());
    let other_alias = format!("{}-unreachable", lab.alias);
    let config = config_file(dir.path(), "http://127.0.0.1:1", &other_alias, &rules);
    let started = std::time::Instant::now();
    let out = esdetect(&config, &["run", "--once", "--now", NOW, "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "no summary when nothing ran: {}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("127.0.0.1:1"), "the message must name the cluster: {stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "gave up too slowly");
    let (status, _) = lab.client.raw(Method::Head, &format!("/{other_alias}"), &[], None).await.unwrap();
    assert_eq!(status, 404, "nothing may be created anywhere");
}

/// Index names go into request paths percent-encoded: an index whose (legal) name contains `%41` is read as
/// itself, not as the `A` a raw path would decode it to (which would match nothing).
#[tokio::test]
async fn index_names_reach_the_cluster_percent_encoded() {
    let lab = Lab::new().await;
    let index = format!("{}-q%41", lab.system());
    let fs = "fs01.corp.local";
    let doc = share_5145(fs, "FS01$", "10.0.0.99", fs01_ips(), "2026-05-20T10:03:00Z", "2026-05-20T10:03:01Z");
    let hits = lab.index(vec![(index.clone(), doc)]).await;
    assert_eq!(hits[0].index, index, "the node keeps the name as given");

    let mut rule = lab.prepare(SMB_RULE);
    rule.rule.index = vec![format!("{index}*")];
    let summary = lab.run(&rule, NOW).await;
    // The cleanup deletes by raw path; delete this one with its name encoded.
    let path = format!("/{}", esdetect::es::path::segment(&index));
    let (status, _) = lab.client.raw(Method::Delete, &path, &[], None).await.expect("delete");
    assert_eq!(status, 200);
    assert_succeeded(&summary);
    assert_eq!(summary.fetched, 1, "{summary:#?}");
    let expected = id_set([event_alert_id(&hits[0], SMB_UUID)]);
    assert_eq!(id_set(lab.alerts().await.keys().cloned()), expected);
}

// ---------------------------------------------------------------------------------------------------
// `_source` filtering (`[source] fetch`): the scan reads only the rules' fields, the alerts' events are
// read whole afterwards with `_mget`.

/// Both seed rules over one window, alert documents returned (nothing written), with `fetch`.
async fn returned_alerts(
    lab: &Lab,
    rules: &[&PreparedRule],
    fetch: esdetect::source::es::SourceFetch,
) -> Vec<(RunSummary, Vec<Vec<esdetect::alert::AlertDoc>>)> {
    let opts = RunOptions { source_fetch: fetch, ..RunOptions::default() };
    let now = t(NOW);
    let windows: Vec<(&PreparedRule, Window)> = rules.iter().map(|r| (*r, Window::ending_at(&r.rule, now))).collect();
    // One clock for both runs, so that only the execution uuid differs between them.
    let clock = move || t("2026-05-20T10:05:07.123Z");
    detect::scan::evaluate_rules_on_cluster(&lab.client, &windows, &opts, &clock, detect::scan::AlertOutput::Return)
        .await
        .into_iter()
        .map(|o| (o.summary, o.groups))
        .collect()
}

/// `_id` → `_source` without the execution uuid (the one value that differs per run).
fn comparable(groups: &[Vec<esdetect::alert::AlertDoc>]) -> BTreeMap<String, Value> {
    groups
        .iter()
        .flatten()
        .map(|d| {
            let mut source = d.source.clone();
            source.as_object_mut().expect("alert source is an object").remove("kibana.alert.rule.execution.uuid");
            (d.id.clone(), source)
        })
        .collect()
}

#[tokio::test]
async fn filtered_scan_gives_the_same_alert_documents_as_a_full_one() {
    use esdetect::source::es::SourceFetch;
    let lab = Lab::new().await;
    let ws = "ws01.corp.local";
    let hits = lab
        .index(vec![
            (lab.system(), logon_4624(ws, "2026-05-20T10:00:00.250Z", "0x8f3a1")),
            (lab.system(), service_4697(ws, "2026-05-20T10:02:10.500Z", "0x8f3a1")),
            (lab.system(), share_5145("fs01.corp.local", "FS01$", "10.0.0.99", fs01_ips(), "2026-05-20T10:01:00Z", "2026-05-20T10:01:02Z")),
            // A dotted key in the document (not a nested object): the filter must keep it alike.
            (lab.forwarded(), {
                let mut d = share_5145("fs02.corp.local", "FS02$", "10.0.0.98", json!(["10.0.0.30"]), "2026-05-20T10:03:00Z", "2026-05-20T10:03:01Z");
                let code = d["event"].as_object_mut().unwrap().remove("code").unwrap();
                d.as_object_mut().unwrap().insert("event.code".into(), code);
                d
            }),
        ])
        .await;
    let (krb, smb) = (lab.prepare(KRB_RULE), lab.prepare(SMB_RULE));
    let filtered = returned_alerts(&lab, &[&krb, &smb], SourceFetch::Filtered).await;
    let full = returned_alerts(&lab, &[&krb, &smb], SourceFetch::Full).await;

    let (shell, bbs) = sequence_alert_ids(&[&hits[0], &hits[1]], KRB_UUID);
    let expected = [
        id_set([shell, bbs[0].clone(), bbs[1].clone()]),
        id_set([event_alert_id(&hits[2], SMB_UUID), event_alert_id(&hits[3], SMB_UUID)]),
    ];
    for (((fs, fg), (ws_, wg)), want) in filtered.iter().zip(&full).zip(&expected) {
        assert_succeeded(fs);
        assert_succeeded(ws_);
        let (f, w) = (comparable(fg), comparable(wg));
        assert_eq!(id_set(f.keys().cloned()), *want, "{fs:#?}");
        assert_eq!(f, w, "rule {}: filtered and full scans built different alert documents", fs.rule_id);
        // The filtered scan read fewer bytes of pages, then the alerts' events by `_mget`.
        assert!(fs.bytes_fetched > 0 && fs.bytes_fetched < ws_.bytes_fetched, "{} vs {}", fs.bytes_fetched, ws_.bytes_fetched);
        assert!(fs.bytes_mget > 0, "{fs:#?}");
        assert_eq!(ws_.bytes_mget, 0, "a full scan reads no document again");
        assert_eq!(fs.sources_missing, 0);
    }
    // The alerts carry fields no rule reads (copied from the whole `_source`, read by `_mget`).
    let smb_alert = &comparable(&filtered[1].1)[&event_alert_id(&hits[2], SMB_UUID)];
    assert_eq!(smb_alert["winlog"]["record_id"], json!("771"), "{smb_alert:#}");
    assert_eq!(smb_alert["agent"]["version"], json!("8.19.0"));
}

#[tokio::test]
async fn an_event_deleted_before_its_mget_still_gives_its_alert_with_a_warning() {
    use esdetect::event::projection::Projection;
    use esdetect::source::es::{stream_window, SourceFetch};
    let lab = Lab::new().await;
    let hits = lab
        .index(vec![
            (lab.system(), share_5145("fs01.corp.local", "FS01$", "10.0.0.99", fs01_ips(), "2026-05-20T10:01:00Z", "2026-05-20T10:01:02Z")),
            (lab.system(), share_5145("fs01.corp.local", "FS01$", "10.0.0.97", fs01_ips(), "2026-05-20T10:02:00Z", "2026-05-20T10:02:02Z")),
        ])
        .await;
    let smb = lab.prepare(SMB_RULE);
    let mapping = esdetect::eql::mapping::Mapping::builtin_ecs();
    let plan = detect::compile(&smb, &mapping).expect("seed rule compiles");
    let opts = RunOptions { source_fetch: SourceFetch::Filtered, ..RunOptions::default() };
    let query = detect::scan::scan_query(&smb, &plan, Window::ending_at(&smb.rule, t(NOW)), &opts, &mapping);
    assert!(query.source_includes.is_some());
    let projection = Projection::Fields(std::sync::Arc::new(detect::pass::field_set([(&smb, &plan)])));
    let mut events = Vec::new();
    stream_window(&lab.client, &query, &projection, |e| {
        events.push(e);
        Ok::<(), std::convert::Infallible>(())
    })
    .await
    .expect("scan");
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.needs_text()));

    // The first event is deleted between the scan and the read of its whole document.
    let (status, resp) = lab
        .client
        .raw(Method::Delete, &format!("/{}/_doc/{}", hits[0].index, hits[0].id), &[("refresh", "true".into())], None)
        .await
        .expect("delete");
    assert_eq!(status, 200, "{resp}");

    let mut summary = RunSummary::new(&smb, Window::ending_at(&smb.rule, t(NOW)));
    let mut results = esdetect::eql::engine::Results::Events(events);
    detect::scan::attach_sources(&lab.client, &mut results, &mut summary).await.expect("mget");
    assert_eq!(summary.sources_missing, 1);
    assert!(summary.bytes_mget > 0);
    assert_eq!(summary.warnings.len(), 1, "{summary:#?}");
    assert!(summary.warnings[0].contains(&hits[0].id), "{}", summary.warnings[0]);

    let ctx = detect::alert_context(&smb, &opts, t(NOW));
    let groups = detect::alert_groups(&smb, &ctx, &results);
    let alerts = comparable(&groups);
    assert_eq!(id_set(alerts.keys().cloned()), id_set(hits.iter().map(|h| event_alert_id(h, SMB_UUID))));
    // The gone document's alert holds what the scan read; the other one its whole document.
    let gone = &alerts[&event_alert_id(&hits[0], SMB_UUID)];
    assert_eq!(gone["source"]["ip"], json!("10.0.0.99"));
    assert!(gone.get("agent").is_none(), "{gone:#}");
    let whole = &alerts[&event_alert_id(&hits[1], SMB_UUID)];
    assert_eq!(whole["agent"]["version"], json!("8.19.0"));
}
