//! `esdetect compare` against the live node: Kibana's alerts index created the way Kibana creates it
//! (spec alert-documents §1: index template over `.internal.alerts-security.alerts-<space>-*`, the
//! concrete index `…-000001` behind the write alias `.alerts-security.alerts-<space>`), filled with
//! Kibana-shaped alerts for several scheduled executions (the alert builder writes them with Kibana's rule
//! uuid, execution by execution, each execution's `execution.timestamp` at its window end, deduplicated
//! like Kibana), then tampered with: one result deleted, one foreign result added, one field changed.
//! `compare` (the real binary) must report exactly those, with reasons, and exit 1; untouched it exits 0.
//!
//! Isolation: every test has its own tag, used as the Kibana space and in the event index names; all is
//! deleted when the test ends, also on failure. Needs ESDETECT_TEST_ES_URL (tests/common).

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use esdetect::es::Refresh;
use esdetect::alert::mapping::alerts_index_template;
use esdetect::config::{Config, RuleSettings};
use esdetect::detect::scan::{evaluate_rules_on_cluster, AlertOutput};
use esdetect::detect::{self, PreparedRule, RunOptions, RunStatus, Window};
use esdetect::es::{ConnectionConfig, EsClient};
use esdetect::simulate::templates::event_index_templates;
use esdetect::sink::es::{put_index_template_if_absent, write_alerts, WriteOptions};
use serde_json::{json, Value};

const KRB_RULE: &str = "privilege_escalation_krbrelayup_service_creation.toml";
const SMB_RULE: &str = "credential_access_machine_account_smb_relay.toml";
const KRB_RULE_ID: &str = "e4e31051-ee01-4307-a6ee-b21b186958f4";
const SMB_RULE_ID: &str = "d84a11c0-eb12-4e7d-8a0a-718e38351e29";
/// Kibana's saved-object ids of the two rules (esdetect's config for `compare` does not name them).
const KRB_UUID: &str = "0f7e2a61-5b3c-4d8e-9a1f-2c4b6d8e0a13";
const SMB_UUID: &str = "9c1d3e5f-7a2b-4c6d-8e0f-1a3b5c7d9e21";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("test timestamps are RFC 3339").with_timezone(&Utc)
}

fn ms(s: &str) -> String {
    t(s).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn agent(host: &str, ips: Value) -> Value {
    json!({
        "host": {"name": host, "hostname": host.split('.').next().unwrap(), "ip": ips, "os": {"type": "windows", "family": "windows"}},
        "agent": {"type": "filebeat", "version": "8.19.0"},
        "data_stream": {"type": "logs", "dataset": "system.security", "namespace": "default"},
        "ecs": {"version": "8.11.0"}
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    for (k, v) in b.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

/// A machine account's share access (5145, spec event-shapes §2): `FS01$` on fs01 from `source_ip`.
/// From fs01's own address it is local access, which the SMB relay rule excludes.
fn share_5145(source_ip: &str, at: &str) -> Value {
    merge(
        json!({
            "@timestamp": ms(at),
            "event": {"code": "5145", "action": "network-share-object-access-checked", "category": ["network", "file"],
                      "type": ["info", "access"], "outcome": "success", "kind": "event", "module": "system",
                      "dataset": "system.security", "provider": "Microsoft-Windows-Security-Auditing", "ingested": ms(at)},
            "winlog": {"channel": "Security", "computer_name": "fs01.corp.local", "event_id": "5145", "record_id": "771",
                       "logon": {"id": "0x2b7f1"},
                       "event_data": {"SubjectUserName": "FS01$", "SubjectDomainName": "CORP", "ShareName": "\\\\*\\IPC$",
                                      "RelativeTargetName": "spoolss", "AccessMask": ["0x3"]}},
            "source": {"ip": source_ip, "port": 49832},
            "user": {"name": "FS01$", "domain": "CORP"},
            "related": {"user": ["FS01$"], "ip": [source_ip]}
        }),
        agent("fs01.corp.local", json!(["10.0.0.20", "fe80::1234:5678:9abc:def0"])),
    )
}

/// A loopback Kerberos network logon (4624) on ws01 creating `logon_id`.
fn logon_4624(at: &str, logon_id: &str) -> Value {
    merge(
        json!({
            "@timestamp": ms(at),
            "event": {"code": "4624", "action": "logged-in", "category": ["authentication"], "type": ["start"],
                      "outcome": "success", "kind": "event", "module": "system", "dataset": "system.security",
                      "provider": "Microsoft-Windows-Security-Auditing", "ingested": ms(at)},
            "winlog": {"channel": "Security", "computer_name": "ws01.corp.local", "event_id": "4624", "record_id": "90211",
                       "logon": {"type": "Network", "id": "0x0"},
                       "event_data": {"TargetUserName": "Administrator", "TargetDomainName": "CORP", "TargetLogonId": logon_id,
                                      "LogonType": "3", "LogonProcessName": "Kerberos", "AuthenticationPackageName": "Kerberos",
                                      "ElevatedToken": "%%1843", "SubjectUserSid": "S-1-0-0", "SubjectLogonId": "0x0"}},
            "process": {"pid": 0, "executable": "-", "name": "-"},
            "source": {"ip": "127.0.0.1", "port": 52013},
            "user": {"name": "Administrator", "domain": "CORP", "id": "S-1-5-21-1-2-3-500"}
        }),
        agent("ws01.corp.local", json!(["10.0.0.21"])),
    )
}

/// A service install (4697) in session `logon_id` on ws01.
fn service_4697(at: &str, logon_id: &str) -> Value {
    merge(
        json!({
            "@timestamp": ms(at),
            "event": {"code": "4697", "action": "service-installed", "category": ["iam", "configuration"],
                      "type": ["admin", "change"], "outcome": "success", "kind": "event", "module": "system",
                      "dataset": "system.security", "provider": "Microsoft-Windows-Security-Auditing", "ingested": ms(at)},
            "winlog": {"channel": "Security", "computer_name": "ws01.corp.local", "event_id": "4697", "record_id": "90212",
                       "logon": {"id": logon_id},
                       "event_data": {"SubjectUserName": "WS01$", "SubjectDomainName": "CORP", "SubjectLogonId": logon_id,
                                      "ServiceName": "KrbSCM", "ServiceFileName": "C:\\Users\\Public\\KrbRelayUp.exe system",
                                      "ServiceAccount": "LocalSystem", "ServiceStartType": "3", "ServiceType": "0x10"}},
            "service": {"name": "KrbSCM"},
            "user": {"name": "WS01$", "domain": "CORP"}
        }),
        agent("ws01.corp.local", json!(["10.0.0.21"])),
    )
}

/// Deletes what a test created (by exact name), also when the test panics.
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
        // Drop cannot await: own thread, own runtime, own client.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let client = EsClient::new(&ConnectionConfig::for_url(url)).ok()?;
                for index in indices {
                    client.raw(Method::Delete, &format!("/{index}?ignore_unavailable=true"), &[], None).await.ok()?;
                }
                for name in templates {
                    client.raw(Method::Delete, &format!("/_index_template/{name}"), &[], None).await.ok()?;
                }
                Some(())
            })
        })
        .join();
        if !matches!(done, Ok(Some(()))) {
            eprintln!("warning: compare cleanup did not finish; test indices may be left on the node");
        }
    }
}

struct Lab {
    client: EsClient,
    /// Also the Kibana space.
    tag: String,
    /// Config with Kibana's rule uuids: only for writing "Kibana's" alerts.
    kibana_config: Config,
    cleanup: Cleanup,
}

impl Lab {
    async fn new() -> Lab {
        let client = EsClient::new(&ConnectionConfig::for_url(common::es_url())).expect("client for the test node");
        let tag = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut kibana_config = Config::default();
        kibana_config.alerts.space = tag.clone();
        for (rule_id, uuid) in [(KRB_RULE_ID, KRB_UUID), (SMB_RULE_ID, SMB_UUID)] {
            kibana_config.rules.insert(rule_id.into(), RuleSettings { uuid: Some(uuid.into()), ..Default::default() });
        }
        let lab = Lab { client, tag, kibana_config, cleanup: Cleanup::default() };

        let (_, mut body) = event_index_templates().into_iter().next().expect("an event template");
        body["index_patterns"] = json!([lab.events_index()]);
        body["priority"] = json!(78);
        let name = format!("esdetect-test-compare-ecs-{}", lab.tag);
        lab.cleanup.templates.lock().unwrap().insert(name.clone());
        assert!(put_index_template_if_absent(&lab.client, &name, &body).await.expect("event template"));

        // Kibana's alerts index: template over the concrete indices, then `…-000001` with the write alias
        // and the legacy `.siem-signals-<space>` alias (spec §1).
        let concrete = format!(".internal.alerts-security.alerts-{}-000001", lab.tag);
        let template_name = format!(".alerts-security.alerts-{}-index-template", lab.tag);
        lab.cleanup.templates.lock().unwrap().insert(template_name.clone());
        lab.cleanup.indices.lock().unwrap().insert(concrete.clone());
        let template = alerts_index_template(&[format!(".internal.alerts-security.alerts-{}-*", lab.tag)]);
        let (status, resp) =
            lab.client.raw(Method::Put, &format!("/_index_template/{template_name}"), &[], Some(&template)).await.unwrap();
        assert_eq!(status, 200, "{resp}");
        let aliases = json!({"aliases": {
            lab.kibana_alias(): {"is_write_index": true},
            format!(".siem-signals-{}", lab.tag): {"is_write_index": false}
        }});
        let (status, resp) = lab.client.raw(Method::Put, &format!("/{concrete}"), &[], Some(&aliases)).await.unwrap();
        assert_eq!(status, 200, "{resp}");
        lab
    }

    fn kibana_alias(&self) -> String {
        format!(".alerts-security.alerts-{}", self.tag)
    }

    fn events_index(&self) -> String {
        format!("logs-system.security-{}", self.tag)
    }

    /// A seed rule prepared with Kibana's uuid, reading only this lab's events.
    fn kibana_rule(&self, file: &str) -> PreparedRule {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(file);
        let rule = esdetect::rules::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut prepared = detect::prepare::prepare_rule(rule, &self.kibana_config).unwrap_or_else(|e| panic!("{e}"));
        prepared.rule.index = vec![self.events_index()];
        prepared
    }

    /// Indexes events (ids chosen by the node), returns `<_index>/<_id>` of each.
    async fn index(&self, docs: Vec<Value>) -> Vec<String> {
        self.cleanup.indices.lock().unwrap().insert(self.events_index());
        let mut lines: Vec<Value> = Vec::new();
        for doc in &docs {
            lines.push(json!({"create": {"_index": self.events_index()}}));
            lines.push(doc.clone());
        }
        let body = common::bulk(None, lines).await;
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| {
                assert_eq!(i["create"]["status"], 201, "{i}");
                format!("{}/{}", i["create"]["_index"].as_str().unwrap(), i["create"]["_id"].as_str().unwrap())
            })
            .collect()
    }

    /// Plays Kibana: one execution per run time, each over `[T - 9m, T]`, persisting at `T` into Kibana's
    /// alias; a result an earlier execution wrote is not written again (deterministic ids, create-only).
    async fn kibana_runs(&self, prepared: &PreparedRule, run_times: &[&str]) {
        for at in run_times {
            let at = t(at);
            let window = Window::ending_at(&prepared.rule, at);
            let now = move || at;
            let mut outcome = evaluate_rules_on_cluster(&self.client, &[(prepared, window)], &RunOptions::default(), &now, AlertOutput::Return).await;
            let outcome = outcome.pop().unwrap();
            assert_eq!(outcome.summary.status, RunStatus::Succeeded, "{:?}", outcome.summary);
            let groups = outcome.groups.into_iter().map(|g| g.into_iter().map(|d| (d.id, d.source)).collect()).collect();
            let opts = WriteOptions { refresh: Refresh::True, ..WriteOptions::default() };
            write_alerts(&self.client, &self.kibana_alias(), groups, &opts).await.expect("write Kibana's alerts");
        }
    }

    /// Kibana's alerts: `(_id, _source)`.
    async fn kibana_alerts(&self) -> Vec<(String, Value)> {
        let body = json!({"size": 1000, "query": {"match_all": {}}});
        let (status, resp) = self.client.raw(Method::Post, &format!("/{}/_search", self.kibana_alias()), &[], Some(&body)).await.unwrap();
        assert_eq!(status, 200, "{resp}");
        resp["hits"]["hits"].as_array().unwrap().iter().map(|h| (h["_id"].as_str().unwrap().into(), h["_source"].clone())).collect()
    }

    async fn delete_alert(&self, id: &str) {
        let path = format!("/{}/_doc/{id}?refresh=true", self.kibana_alias());
        let (status, resp) = self.client.raw(Method::Delete, &path, &[], None).await.unwrap();
        assert_eq!(status, 200, "{resp}");
    }

    async fn put_alert(&self, id: &str, doc: &Value) {
        let path = format!("/{}/_doc/{id}?refresh=true", self.kibana_alias());
        let (status, resp) = self.client.raw(Method::Put, &path, &[], Some(doc)).await.unwrap();
        assert!(status == 200 || status == 201, "{resp}");
    }

    /// A rules folder (seed rules reading this lab's events) and a config for the binary: Kibana's space,
    /// no rule uuids (compare must take Kibana's from its alerts).
    fn binary_config(&self, dir: &Path) -> PathBuf {
        let rules = dir.join("rules");
        std::fs::create_dir_all(&rules).unwrap();
        let upstream = r#"index = ["logs-system.security*", "logs-windows.forwarded*", "winlogbeat-*"]"#;
        for file in [KRB_RULE, SMB_RULE] {
            let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(file)).unwrap();
            assert!(text.contains(upstream), "{file}: index line changed upstream; update this test");
            std::fs::write(rules.join(file), text.replace(upstream, &format!("index = [{:?}]", self.events_index()))).unwrap();
        }
        let text = format!(
            "rules_dir = {:?}\n\n[elasticsearch]\nurls = [{:?}]\nmax_retries = 0\nrequest_timeout = \"10s\"\n\n[alerts]\nspace = {:?}\n",
            rules.display().to_string(),
            common::es_url(),
            self.tag
        );
        let path = dir.join("esdetect.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn esdetect(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esdetect"));
    cmd.arg("--config").arg(config).arg("--no-color").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("ESDETECT_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("running the esdetect binary");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// `compare --format json`: exit code and the report.
fn compare_json(config: &Path, rule_id: &str, from: &str, to: &str) -> (Option<i32>, Value) {
    let (code, stdout, stderr) = esdetect(config, &["compare", "--rule", rule_id, "--from", from, "--to", to, "--format", "json"]);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not a JSON report ({e}): {stdout}\nstderr: {stderr}"));
    (code, report)
}

/// Every entry of `windows[*].<list>` across windows.
fn all(report: &Value, list: &str) -> Vec<Value> {
    report["windows"].as_array().unwrap().iter().flat_map(|w| w[list].as_array().unwrap().clone()).collect()
}

fn source_of<'a>(alerts: &'a [(String, Value)], event: &str) -> &'a (String, Value) {
    let (index, id) = event.split_once('/').unwrap();
    alerts
        .iter()
        .find(|(_, d)| {
            d["kibana.alert.ancestors"].as_array().unwrap().iter().any(|a| a["id"] == id && a["index"] == index)
                && d.get("kibana.alert.building_block_type").is_none()
        })
        .unwrap_or_else(|| panic!("no Kibana alert for {event}"))
}

#[tokio::test]
async fn event_rule_reports_exactly_the_deleted_foreign_and_changed_results() {
    let lab = Lab::new().await;
    // Four relayed accesses, and one from fs01's own address (local access: not a match).
    let events = lab
        .index(vec![
            share_5145("10.0.0.99", "2026-05-20T10:01:00Z"),
            share_5145("10.0.0.98", "2026-05-20T10:02:00Z"),
            share_5145("10.0.0.97", "2026-05-20T10:06:00Z"),
            share_5145("10.0.0.96", "2026-05-20T10:11:00Z"),
            share_5145("10.0.0.20", "2026-05-20T10:12:00Z"),
        ])
        .await;
    let (a, b, c, d, local) = (&events[0], &events[1], &events[2], &events[3], &events[4]);
    let rule = lab.kibana_rule(SMB_RULE);
    lab.kibana_runs(&rule, &["2026-05-20T10:05:00Z", "2026-05-20T10:10:00Z", "2026-05-20T10:15:00Z", "2026-05-20T10:20:00Z"]).await;
    let alerts = lab.kibana_alerts().await;
    assert_eq!(alerts.len(), 4, "one alert per relayed access, written once: {alerts:?}");

    let dir = tempfile::tempdir().unwrap();
    let config = lab.binary_config(dir.path());
    let (from, to) = ("2026-05-20T10:00:00Z", "2026-05-20T10:20:00Z");

    // Untouched: both sides agree.
    let (code, report) = compare_json(&config, SMB_RULE_ID, from, to);
    assert_eq!(report["totals"], json!({"both": 4, "both_outside_range": 0, "differing": 0, "kibana_only": 0, "esdetect_only": 0}), "{report:#}");
    assert_eq!(report["kibana_rule_uuid"], SMB_UUID, "Kibana's uuid is taken from its alerts");
    assert_eq!(code, Some(0), "{report:#}");

    // From 10:06 on, the 10:05 execution is outside the range, but the window of the 10:10 execution
    // ([10:01, 10:10]) finds A and B again: Kibana alerted on them once, earlier — agreement.
    let (code, report) = compare_json(&config, SMB_RULE_ID, "2026-05-20T10:06:00Z", to);
    assert_eq!(report["totals"], json!({"both": 2, "both_outside_range": 2, "differing": 0, "kibana_only": 0, "esdetect_only": 0}), "{report:#}");
    assert_eq!(code, Some(0), "{report:#}");

    // Delete B's alert, change C's severity, add a foreign alert on the local access (copied from D's).
    let (b_id, _) = source_of(&alerts, b);
    lab.delete_alert(b_id).await;
    let (c_id, c_doc) = source_of(&alerts, c);
    let mut changed = c_doc.clone();
    changed["kibana.alert.severity"] = json!("low");
    lab.put_alert(c_id, &changed).await;
    let (_, d_doc) = source_of(&alerts, d);
    let mut foreign = d_doc.clone();
    let (local_index, local_id) = local.split_once('/').unwrap();
    foreign["kibana.alert.ancestors"] = json!([{"id": local_id, "index": local_index, "type": "event", "depth": 0}]);
    foreign["kibana.alert.uuid"] = json!("foreign-alert-1");
    lab.put_alert("foreign-alert-1", &foreign).await;

    let (code, report) = compare_json(&config, SMB_RULE_ID, from, to);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["totals"], json!({"both": 2, "both_outside_range": 0, "differing": 1, "kibana_only": 1, "esdetect_only": 1}), "{report:#}");
    assert!(all(&report, "esdetect_only").iter().chain(&all(&report, "kibana_only")).all(|r| r["events"] != json!([a]) && r["events"] != json!([d])));

    let esdetect_only = all(&report, "esdetect_only");
    assert_eq!(esdetect_only[0]["id"], json!(b_id));
    assert_eq!(esdetect_only[0]["events"], json!([b]));
    let why = esdetect_only[0]["reason"].as_str().unwrap();
    assert!(why.starts_with("no reason found"), "B is in the window, matches, and Kibana's execution was not capped: {why}");

    let kibana_only = all(&report, "kibana_only");
    assert_eq!(kibana_only[0]["id"], "foreign-alert-1");
    assert_eq!(kibana_only[0]["events"], json!([local]));
    let why = kibana_only[0]["reason"].as_str().unwrap();
    assert!(why.starts_with(&format!("the rule's query does not match: event {local}: it fails `not endsWith(")), "{why}");

    let differing = all(&report, "differing");
    assert_eq!(differing[0]["id"], json!(c_id));
    assert_eq!(differing[0]["fields"], json!([{"doc": c_id, "field": "kibana.alert.severity", "kibana": "low", "esdetect": "high"}]));

    // The table says the same for people, with the reasons, and exits 1 too.
    let (code, table, stderr) = esdetect(&config, &["compare", "--rule", SMB_RULE_ID, "--from", from, "--to", to]);
    assert_eq!(code, Some(1), "{table}\n{stderr}");
    assert!(table.contains("kibana.alert.severity") && table.contains("the rule's query does not match"), "{table}");
    assert!(table.contains("DIFFER: 2 in both"), "{table}");
}

#[tokio::test]
async fn a_sequence_is_one_result_and_an_execution_without_alerts_is_covered_by_the_schedule() {
    let lab = Lab::new().await;
    let events = lab
        .index(vec![
            logon_4624("2026-05-20T10:00:00Z", "0x5e1"),
            service_4697("2026-05-20T10:00:05Z", "0x5e1"),
            logon_4624("2026-05-20T10:07:00Z", "0x7a2"),
            service_4697("2026-05-20T10:07:05Z", "0x7a2"),
            logon_4624("2026-05-20T10:07:01Z", "0x999"),
        ])
        .await;
    let rule = lab.kibana_rule(KRB_RULE);
    lab.kibana_runs(&rule, &["2026-05-20T10:05:00Z", "2026-05-20T10:10:00Z"]).await;
    let alerts = lab.kibana_alerts().await;
    assert_eq!(alerts.len(), 6, "two sequences, a shell and two building blocks each: {alerts:?}");

    let dir = tempfile::tempdir().unwrap();
    let config = lab.binary_config(dir.path());
    let (from, to) = ("2026-05-20T10:00:00Z", "2026-05-20T10:10:00Z");
    let (code, report) = compare_json(&config, KRB_RULE_ID, from, to);
    assert_eq!(report["totals"], json!({"both": 2, "both_outside_range": 0, "differing": 0, "kibana_only": 0, "esdetect_only": 0}), "{report:#}");
    assert_eq!(code, Some(0));

    // Delete the first sequence (shell and building blocks): its execution leaves no trace in the alerts.
    let (shell, _) = source_of(&alerts, &events[0]);
    let shell = shell.clone();
    for (id, doc) in &alerts {
        if doc["kibana.alert.group.id"] == json!(shell) {
            lab.delete_alert(id).await;
        }
    }
    // A foreign shell (no building blocks) over a logon of another session and the second service install.
    let (second, second_doc) = source_of(&alerts, &events[2]);
    let mut foreign = second_doc.clone();
    let ancestor = |event: &str| {
        let (index, id) = event.split_once('/').unwrap();
        json!({"id": id, "index": index, "type": "event", "depth": 0})
    };
    foreign["kibana.alert.ancestors"] = json!([ancestor(&events[4]), ancestor(&events[3])]);
    foreign["kibana.alert.group.id"] = json!("foreign-shell");
    lab.put_alert("foreign-shell", &foreign).await;
    assert_ne!(second, "foreign-shell");

    let (code, report) = compare_json(&config, KRB_RULE_ID, from, to);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["totals"], json!({"both": 1, "both_outside_range": 0, "differing": 0, "kibana_only": 1, "esdetect_only": 1}), "{report:#}");
    let foreign = &all(&report, "kibana_only")[0];
    assert_eq!(foreign["id"], "foreign-shell");
    assert_eq!(foreign["events"], json!([events[4], events[3]]));
    let why = foreign["reason"].as_str().unwrap();
    assert!(why.starts_with("the rule's query does not match: join key 2 differs") && why.contains("0x999"), "{why}");
    let only = all(&report, "esdetect_only");
    assert_eq!(only[0]["id"], json!(shell));
    assert_eq!(only[0]["kind"], "sequence");
    assert_eq!(only[0]["events"], json!([events[0], events[1]]));
    assert!(only[0]["reason"].as_str().unwrap().starts_with("no Kibana execution with alerts covers this window"), "{report:#}");
    let schedule = report["windows"].as_array().unwrap().iter().find(|w| w["source"] == "schedule").expect("a schedule window");
    assert_eq!(schedule["esdetect_only"].as_array().unwrap().len(), 1, "{report:#}");
}

#[tokio::test]
async fn a_missing_kibana_index_is_a_usage_error() {
    let lab = Lab::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = lab.binary_config(dir.path());
    let (code, stdout, stderr) = esdetect(
        &config,
        &["compare", "--rule", SMB_RULE_ID, "--from", "2026-05-20T10:00:00Z", "--to", "2026-05-20T10:20:00Z", "--kibana-alerts", "no-such-alerts-index"],
    );
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("`no-such-alerts-index` does not exist") && stderr.contains("--kibana-alerts"), "{stderr}");
}

#[tokio::test]
async fn against_eql_is_refused_clearly_without_the_endpoint() {
    let lab = Lab::new().await;
    lab.index(vec![share_5145("10.0.0.99", "2026-05-20T10:01:00Z")]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = lab.binary_config(dir.path());
    let (code, stdout, stderr) = esdetect(
        &config,
        &["compare", "--rule", SMB_RULE_ID, "--from", "2026-05-20T10:00:00Z", "--to", "2026-05-20T10:10:00Z", "--against", "eql"],
    );
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("no `_eql/search` endpoint"), "{stderr}");
    assert!(stdout.is_empty(), "no report when nothing could be compared: {stdout}");
}

/// Kibana's alerts are read in pages (point in time + `search_after`), so a range holding more alerts
/// than one page (here 23 with pages of 5; in production 5 000) is read whole, each alert once, and
/// only the rule's alerts inside the range.
#[tokio::test]
async fn kibana_alerts_beyond_one_page_are_all_read_once() {
    let lab = Lab::new().await;
    let mut lines: Vec<Value> = Vec::new();
    let mut push = |id: String, rule_id: &str, at: &str| {
        lines.push(json!({"create": {"_id": id}}));
        lines.push(json!({"kibana.alert.rule.rule_id": rule_id, "kibana.alert.rule.execution.timestamp": at}));
    };
    for i in 0..23 {
        push(format!("in-{i:02}"), SMB_RULE_ID, &format!("2026-05-20T10:{:02}:00.000Z", 10 + i));
    }
    push("other-rule".into(), KRB_RULE_ID, "2026-05-20T10:15:00.000Z");
    push("before-range".into(), SMB_RULE_ID, "2026-05-20T09:00:00.000Z");
    let body = common::bulk(Some(&lab.kibana_alias()), lines).await;
    assert_eq!(body["errors"], json!(false), "{body}");

    let rule = esdetect::compare::kibana::RuleMatch::RuleId(SMB_RULE_ID.into());
    let read = esdetect::compare::kibana::read_alerts_paged(
        &lab.client, &lab.kibana_alias(), &rule, t("2026-05-20T10:00:00Z"), t("2026-05-20T11:00:00Z"), 5,
    )
    .await
    .expect("paged read");
    let ids: Vec<String> = read.iter().map(|(id, _)| id.clone()).collect();
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), 23, "{ids:?}");
    assert_eq!(distinct, (0..23).map(|i| format!("in-{i:02}")).collect::<BTreeSet<_>>());
}
