//! Alert suppression against the live node, across several runs of the SMB machine-account relay rule
//! (an event query windowed on `event.ingested`), each run with its own simulated clock so that
//! `kibana.alert.start` and the suppression window follow the test's time line.
//!
//! Expected values are written independently of the implementation: alert ids from the formula of spec
//! alert-documents §9.1, and `kibana.alert.instance.id`s computed by the `object-hash` npm package itself:
//!   node -e 'const oh=require("object-hash");
//!            console.log(oh([[{field:"source.ip",value:["10.0.0.99"]}],"5d0c1e1a-2b7f-4a39-8c4e-6f1b9d2a7e10","soc"]))'
//! Isolation: own tag, event index `logs-system.security-<tag>`, alerts alias `esdetect-test-<tag>`,
//! all deleted when the test ends. Needs ESDETECT_TEST_ES_URL (tests/common).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use esdetect::alert::mapping::alerts_index_template;
use esdetect::config::{Config, RuleSettings};
use esdetect::detect::{self, PreparedRule, RunOptions, RunStatus, RunSummary, Window};
use esdetect::es::{ConnectionConfig, EsClient};
use esdetect::simulate::templates::event_index_templates;
use esdetect::sink::es::{ensure_alerts_index, first_index_name, put_index_template_if_absent, template_name};
use serde_json::{json, Value};

const SMB_RULE: &str = "credential_access_machine_account_smb_relay.toml";
const SMB_RULE_ID: &str = "d84a11c0-eb12-4e7d-8a0a-718e38351e29";
const SMB_UUID: &str = "5d0c1e1a-2b7f-4a39-8c4e-6f1b9d2a7e10";
const KRB_RULE: &str = "privilege_escalation_krbrelayup_service_creation.toml";
const KRB_RULE_ID: &str = "e4e31051-ee01-4307-a6ee-b21b186958f4";
const KRB_UUID: &str = "7b1c2a9e-3f0d-4c55-9a11-0d6e2f4b8c01";
/// `objectHash([[{field: "winlog.computer_name", value: "ws01.corp.local"}], KRB_UUID, "soc"])` (npm
/// package): a shell's single value stays unwrapped.
const INSTANCE_WS01: &str = "bbf3f0550718c71591e576a38310ee5babf7eadc";
const SPACE: &str = "soc";
/// `objectHash([[{field: "source.ip", value: [ip]}], SMB_UUID, "soc"])` from the npm package (module doc).
const INSTANCE_99: &str = "3ddda404c168bcfa6c6141baa75d1fda9493c647";
const INSTANCE_98: &str = "48a5d351c5ab522bdb8179ed5cb764287ee0084e";
/// The same with `labels.team`: value `["red"]`, and `null` (field missing).
const INSTANCE_TEAM_RED: &str = "45f9e99ba1e33553f3239adfd1e82d6ce4fb0353";
const INSTANCE_TEAM_NULL: &str = "c60a0b00d5d417edeb8a48a69f6a7afaf5b1e33b";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("RFC 3339").with_timezone(&Utc)
}

fn ms(s: &str) -> String {
    t(s).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// §9.1: sha256(index + id + String(undefined) + space + ":" + rule uuid).
fn alert_id(hit: &Hit) -> String {
    common::ids::event_alert_id(&hit.index, &hit.id, SPACE, SMB_UUID)
}

/// §9.2 / §9.3: (shell id, building-block ids) of a sequence of events.
fn sequence_ids(events: &[&Hit]) -> (String, Vec<String>) {
    let pairs: Vec<(&str, &str)> = events.iter().map(|e| (e.index.as_str(), e.id.as_str())).collect();
    common::ids::sequence_ids(&pairs, KRB_UUID)
}

/// A loopback Kerberos network logon (4624) on ws01 creating `logon_id`.
fn logon_4624(at: &str, logon_id: &str) -> Value {
    json!({
        "@timestamp": ms(at),
        "event": {"code": "4624", "action": "logged-in", "category": ["authentication"], "outcome": "success", "kind": "event"},
        "winlog": {"computer_name": "ws01.corp.local", "logon": {"type": "Network"},
                   "event_data": {"TargetLogonId": logon_id, "AuthenticationPackageName": "Kerberos", "ElevatedToken": "%%1843"}},
        "process": {"pid": 0},
        "source": {"ip": "127.0.0.1"},
        "host": {"name": "ws01.corp.local", "os": {"type": "windows"}}
    })
}

/// A service install (4697) in the session `logon_id` on ws01.
fn service_4697(at: &str, logon_id: &str) -> Value {
    json!({
        "@timestamp": ms(at),
        "event": {"code": "4697", "action": "service-installed", "category": ["iam", "configuration"], "kind": "event"},
        "winlog": {"computer_name": "ws01.corp.local", "event_data": {"SubjectLogonId": logon_id, "ServiceName": "KrbSCM"}},
        "host": {"name": "ws01.corp.local", "os": {"type": "windows"}}
    })
}

/// A 5145 share access by the machine account FS01$ on fs01 from `source_ip`, ingested at `ingested`.
fn share_5145(source_ip: &str, ingested: &str, team: Option<&str>) -> Value {
    let mut doc = json!({
        "@timestamp": ms(ingested),
        "event": {
            "code": "5145", "action": "network-share-object-access-checked", "category": ["network", "file"],
            "type": ["info", "access"], "outcome": "success", "kind": "event",
            "provider": "Microsoft-Windows-Security-Auditing", "module": "system", "dataset": "system.security",
            "ingested": ms(ingested)
        },
        "winlog": {"channel": "Security", "computer_name": "fs01.corp.local", "event_id": "5145",
                   "event_data": {"SubjectUserName": "FS01$", "ShareName": "\\\\*\\IPC$", "RelativeTargetName": "spoolss"}},
        "source": {"ip": source_ip, "port": 49832},
        "user": {"name": "FS01$", "domain": "CORP"},
        "host": {"name": "fs01.corp.local", "ip": ["10.0.0.20"], "os": {"type": "windows", "family": "windows"}},
        "data_stream": {"type": "logs", "dataset": "system.security", "namespace": "default"}
    });
    if let Some(team) = team {
        doc["labels"] = json!({"team": team});
    }
    doc
}

#[derive(Debug, Clone)]
struct Hit {
    index: String,
    id: String,
}

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
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let client = EsClient::new(&ConnectionConfig::for_url(url)).ok()?;
                let path = format!("/{}?ignore_unavailable=true", indices.join(","));
                client.raw(Method::Delete, &path, &[], None).await.ok()?;
                for name in templates {
                    client.raw(Method::Delete, &format!("/_index_template/{name}"), &[], None).await.ok()?;
                }
                Some(())
            })
        })
        .join();
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
    async fn new() -> Lab {
        let client = EsClient::new(&ConnectionConfig::for_url(common::es_url())).expect("client");
        let tag = format!("s{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let alias = format!("esdetect-test-{tag}");
        let mut config = Config::default();
        config.alerts.space = SPACE.into();
        config.alerts.index = alias.clone();
        config.rules.insert(SMB_RULE_ID.into(), RuleSettings { uuid: Some(SMB_UUID.into()), ..Default::default() });
        config.rules.insert(KRB_RULE_ID.into(), RuleSettings { uuid: Some(KRB_UUID.into()), ..Default::default() });
        let lab = Lab { client, tag, alias, config, cleanup: Cleanup::default() };
        let (_, mut body) = event_index_templates().into_iter().next().expect("a template");
        body["index_patterns"] = json!([format!("{}*", lab.events())]);
        body["priority"] = json!(78);
        let name = format!("esdetect-test-ecs-{}", lab.tag);
        lab.cleanup.templates.lock().unwrap().insert(name.clone());
        put_index_template_if_absent(&lab.client, &name, &body).await.expect("event template");
        lab.cleanup.templates.lock().unwrap().insert(template_name(&lab.alias));
        lab.cleanup.indices.lock().unwrap().insert(first_index_name(&lab.alias));
        let template = alerts_index_template(&[format!("{}-*", lab.alias)]);
        ensure_alerts_index(&lab.client, &lab.alias, template).await.expect("alerts alias");
        lab
    }

    fn events(&self) -> String {
        format!("logs-system.security-{}", self.tag)
    }

    fn prepare(&self, suppression: Value) -> PreparedRule {
        self.prepare_file(SMB_RULE, suppression)
    }

    fn prepare_file(&self, file: &str, suppression: Value) -> PreparedRule {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(file);
        let rule = esdetect::rules::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut prepared = detect::prepare::prepare_rule(rule, &self.config).unwrap_or_else(|e| panic!("{e}"));
        prepared.rule.index = vec![format!("{}*", self.events())];
        prepared.rule.alert_suppression = Some(suppression);
        prepared
    }

    /// One run at the simulated time `now` (also the alerts' persist time).
    async fn run(&self, prepared: &PreparedRule, now: &str) -> RunSummary {
        let at = t(now);
        let window = Window::ending_at(&prepared.rule, at);
        let s = detect::run_on_cluster(&self.client, prepared, window, &RunOptions::default(), &move || at).await;
        assert_eq!(s.status, RunStatus::Succeeded, "{s:#?}");
        s
    }

    async fn index(&self, docs: Vec<Value>) -> Vec<Hit> {
        self.cleanup.indices.lock().unwrap().insert(self.events());
        let mut lines: Vec<Value> = Vec::new();
        for doc in &docs {
            lines.push(json!({"create": {"_index": self.events()}}));
            lines.push(doc.clone());
        }
        let body = common::bulk(None, lines).await;
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| {
                assert_eq!(i["create"]["status"], 201, "{i}");
                Hit { index: i["create"]["_index"].as_str().unwrap().into(), id: i["create"]["_id"].as_str().unwrap().into() }
            })
            .collect()
    }

    async fn alerts(&self) -> BTreeMap<String, Value> {
        let body = json!({"size": 1000, "query": {"match_all": {}}});
        let (status, resp) =
            self.client.raw(Method::Post, &format!("/{}/_search", self.alias), &[], Some(&body)).await.expect("search");
        assert_eq!(status, 200, "{resp}");
        resp["hits"]["hits"].as_array().unwrap().iter().map(|h| (h["_id"].as_str().unwrap().to_string(), h["_source"].clone())).collect()
    }
}

fn suppression_of(a: &Value) -> (Value, Value, Value, Value) {
    (
        a["kibana.alert.instance.id"].clone(),
        a["kibana.alert.suppression.docs_count"].clone(),
        a["kibana.alert.suppression.start"].clone(),
        a["kibana.alert.suppression.end"].clone(),
    )
}

#[tokio::test]
async fn duration_suppresses_into_the_first_alert_then_starts_anew_after_the_duration() {
    let lab = Lab::new().await;
    let rule = lab.prepare(json!({"group_by": ["source.ip"], "duration": {"value": 30, "unit": "m"},
                                  "missing_fields_strategy": "suppress"}));
    let hits = lab
        .index(vec![
            share_5145("10.0.0.99", "2026-05-20T10:03:00Z", None), // 0: in-run, after 1
            share_5145("10.0.0.99", "2026-05-20T10:01:00Z", None), // 1: the earliest of .99 → kept
            share_5145("10.0.0.99", "2026-05-20T10:02:00Z", None), // 2
            share_5145("10.0.0.98", "2026-05-20T10:02:30Z", None), // 3: its own instance
        ])
        .await;

    // Run 1, window [09:56, 10:05]: one alert per source address; .99's counts the two others.
    let s1 = lab.run(&rule, "2026-05-20T10:05:00Z").await;
    assert_eq!((s1.alerts_written, s1.suppressed), (2, 2), "{s1:#?}");
    let alerts = lab.alerts().await;
    assert_eq!(alerts.keys().cloned().collect::<BTreeSet<_>>(), [alert_id(&hits[1]), alert_id(&hits[3])].into_iter().collect());
    let a99 = &alerts[&alert_id(&hits[1])];
    assert_eq!(
        suppression_of(a99),
        (json!(INSTANCE_99), json!(2), json!("2026-05-20T10:01:00.000Z"), json!("2026-05-20T10:03:00.000Z"))
    );
    assert_eq!(a99["kibana.alert.suppression.terms"], json!([{"field": "source.ip", "value": ["10.0.0.99"]}]));
    assert_eq!(suppression_of(&alerts[&alert_id(&hits[3])]).0, json!(INSTANCE_98));
    assert_eq!(a99["kibana.alert.last_detected"], json!("2026-05-20T10:05:00.000Z"));

    // Run 2 ten minutes later, window [10:06, 10:15]... overlapping nothing old; a new .99 event at 10:08
    // is merged into the existing alert (within 30 minutes): no new document.
    let late = lab.index(vec![share_5145("10.0.0.99", "2026-05-20T10:08:00Z", None)]).await;
    let s2 = lab.run(&rule, "2026-05-20T10:15:00Z").await;
    assert_eq!((s2.alerts_written, s2.suppressed), (0, 1), "{s2:#?}");
    let alerts = lab.alerts().await;
    assert_eq!(alerts.len(), 2);
    let a99 = &alerts[&alert_id(&hits[1])];
    assert_eq!(
        suppression_of(a99),
        (json!(INSTANCE_99), json!(3), json!("2026-05-20T10:01:00.000Z"), json!("2026-05-20T10:08:00.000Z"))
    );
    assert_eq!(a99["kibana.alert.last_detected"], json!("2026-05-20T10:15:00.000Z"));
    assert_eq!(a99["kibana.alert.start"], json!("2026-05-20T10:05:00.000Z"), "the alert's own start stays");

    // The same window again (a retried window): the 10:08 event is already counted.
    let again = lab.run(&rule, "2026-05-20T10:15:00Z").await;
    assert_eq!((again.alerts_written, again.suppressed, again.duplicates), (0, 0, 1), "{again:#?}");
    assert_eq!(lab.alerts().await[&alert_id(&hits[1])]["kibana.alert.suppression.docs_count"], json!(3));

    // Run 3 at 11:00: the existing alert started at 10:05, more than 30 minutes ago → a new alert.
    let after = lab.index(vec![share_5145("10.0.0.99", "2026-05-20T10:55:00Z", None)]).await;
    let s3 = lab.run(&rule, "2026-05-20T11:00:00Z").await;
    assert_eq!((s3.alerts_written, s3.suppressed), (1, 0), "{s3:#?}");
    let alerts = lab.alerts().await;
    assert_eq!(alerts.len(), 3);
    let fresh = &alerts[&alert_id(&after[0])];
    assert_eq!(
        suppression_of(fresh),
        (json!(INSTANCE_99), json!(0), json!("2026-05-20T10:55:00.000Z"), json!("2026-05-20T10:55:00.000Z"))
    );
    assert!(!alerts.contains_key(&alert_id(&late[0])));
}

#[tokio::test]
async fn per_execution_suppresses_within_a_run_only() {
    let lab = Lab::new().await;
    let rule = lab.prepare(json!({"group_by": ["source.ip"]}));
    let hits = lab
        .index(vec![
            share_5145("10.0.0.99", "2026-05-20T10:01:00Z", None),
            share_5145("10.0.0.99", "2026-05-20T10:02:00Z", None),
        ])
        .await;
    let s1 = lab.run(&rule, "2026-05-20T10:05:00Z").await;
    assert_eq!((s1.alerts_written, s1.suppressed), (1, 1), "{s1:#?}");
    // The next, overlapping window: the old events are counted already; the new one opens a new alert
    // (per execution, alerts of another execution are never merged into).
    let next = lab.index(vec![share_5145("10.0.0.99", "2026-05-20T10:07:00Z", None)]).await;
    let s2 = lab.run(&rule, "2026-05-20T10:10:00Z").await;
    assert_eq!((s2.alerts_written, s2.suppressed), (1, 0), "{s2:#?}");
    let alerts = lab.alerts().await;
    assert_eq!(alerts.keys().cloned().collect::<BTreeSet<_>>(), [alert_id(&hits[0]), alert_id(&next[0])].into_iter().collect());
    assert_eq!(alerts[&alert_id(&hits[0])]["kibana.alert.suppression.docs_count"], json!(1));
    assert_eq!(alerts[&alert_id(&next[0])]["kibana.alert.suppression.docs_count"], json!(0));
}

#[tokio::test]
async fn missing_fields_suppress_under_null_or_stay_ordinary_alerts() {
    let lab = Lab::new().await;
    let hits = lab
        .index(vec![
            share_5145("10.0.0.91", "2026-05-20T10:01:00Z", Some("red")),
            share_5145("10.0.0.92", "2026-05-20T10:02:00Z", Some("red")),
            share_5145("10.0.0.93", "2026-05-20T10:03:00Z", None),
            share_5145("10.0.0.94", "2026-05-20T10:04:00Z", None),
        ])
        .await;
    // doNotSuppress: the two events without labels.team become ordinary alerts (no suppression fields).
    let rule = lab.prepare(json!({"group_by": ["labels.team"], "missing_fields_strategy": "doNotSuppress"}));
    let s = lab.run(&rule, "2026-05-20T10:05:00Z").await;
    assert_eq!((s.alerts_written, s.suppressed), (3, 1), "{s:#?}");
    let alerts = lab.alerts().await;
    let expected: BTreeSet<String> = [0, 2, 3].iter().map(|&i| alert_id(&hits[i])).collect();
    assert_eq!(alerts.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(suppression_of(&alerts[&alert_id(&hits[0])]).0, json!(INSTANCE_TEAM_RED));
    for i in [2, 3] {
        let a = &alerts[&alert_id(&hits[i])];
        assert!(a.get("kibana.alert.instance.id").is_none() && a.get("kibana.alert.suppression.terms").is_none(), "{a}");
    }

    // suppress (in a fresh alias): the two without the field are grouped under `value: null`.
    let lab2 = Lab::new().await;
    let hits2 = lab2
        .index(vec![
            share_5145("10.0.0.91", "2026-05-20T10:01:00Z", Some("red")),
            share_5145("10.0.0.93", "2026-05-20T10:03:00Z", None),
            share_5145("10.0.0.94", "2026-05-20T10:04:00Z", None),
        ])
        .await;
    let rule = lab2.prepare(json!({"group_by": ["labels.team"], "missing_fields_strategy": "suppress"}));
    let s = lab2.run(&rule, "2026-05-20T10:05:00Z").await;
    assert_eq!((s.alerts_written, s.suppressed), (2, 1), "{s:#?}");
    let alerts = lab2.alerts().await;
    let null_alert = &alerts[&alert_id(&hits2[1])];
    assert_eq!(suppression_of(null_alert).0, json!(INSTANCE_TEAM_NULL));
    assert_eq!(null_alert["kibana.alert.suppression.terms"], json!([{"field": "labels.team", "value": null}]));
    assert_eq!(null_alert["kibana.alert.suppression.docs_count"], json!(1));
}

/// Sequences are suppressed through their shell (Kibana 8.18+): in one run the second sequence of a host is
/// folded into the first (its building blocks are not written); a later run within the duration updates
/// the shell and writes nothing.
#[tokio::test]
async fn sequences_are_suppressed_by_their_shell() {
    let lab = Lab::new().await;
    let rule = lab.prepare_file(KRB_RULE, json!({"group_by": ["winlog.computer_name"], "duration": {"value": 30, "unit": "m"}}));
    let hits = lab
        .index(vec![
            logon_4624("2026-05-20T10:00:00Z", "0x1"),
            service_4697("2026-05-20T10:01:00Z", "0x1"),
            logon_4624("2026-05-20T10:02:00Z", "0x2"),
            service_4697("2026-05-20T10:03:00Z", "0x2"),
        ])
        .await;
    let (shell, bbs) = sequence_ids(&[&hits[0], &hits[1]]);
    let s1 = lab.run(&rule, "2026-05-20T10:05:00Z").await;
    assert_eq!((s1.kept, s1.alerts_written, s1.suppressed), (2, 3, 1), "{s1:#?}");
    let alerts = lab.alerts().await;
    assert_eq!(alerts.keys().cloned().collect::<BTreeSet<_>>(), [shell.clone(), bbs[0].clone(), bbs[1].clone()].into_iter().collect());
    let sh = &alerts[&shell];
    assert_eq!(
        suppression_of(sh),
        (json!(INSTANCE_WS01), json!(1), json!("2026-05-20T10:05:00.000Z"), json!("2026-05-20T10:05:00.000Z"))
    );
    assert_eq!(sh["kibana.alert.suppression.terms"], json!([{"field": "winlog.computer_name", "value": "ws01.corp.local"}]));
    assert!(alerts[&bbs[0]].get("kibana.alert.instance.id").is_none(), "building blocks carry no suppression fields");

    let later = lab.index(vec![logon_4624("2026-05-20T10:08:00Z", "0x3"), service_4697("2026-05-20T10:09:00Z", "0x3")]).await;
    let s2 = lab.run(&rule, "2026-05-20T10:15:00Z").await;
    assert_eq!((s2.kept, s2.alerts_written, s2.suppressed), (1, 0, 1), "{s2:#?}");
    let alerts = lab.alerts().await;
    assert_eq!(alerts.len(), 3);
    assert_eq!(
        suppression_of(&alerts[&shell]),
        (json!(INSTANCE_WS01), json!(2), json!("2026-05-20T10:05:00.000Z"), json!("2026-05-20T10:15:00.000Z"))
    );
    assert!(!alerts.contains_key(&sequence_ids(&[&later[0], &later[1]]).0));
}
