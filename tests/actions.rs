//! Rule actions against real receivers: a local HTTP server (axum, 127.0.0.1) stands in for webhook,
//! Slack, Teams and PagerDuty endpoints and records every request; a real SMTP server (Python's
//! `aiosmtpd`, installed by `.ci/run`) receives email. The end-to-end tests run the real binary and
//! `actions::dispatch` against the live Elasticsearch node: one notification per new alert set, none on
//! a rerun, none twice when two replicas race for the same window, throttling kept in Elasticsearch.
//! Needs ESDETECT_TEST_ES_URL for the node tests (tests/common): without a node they fail.

use crate::common;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri};
use elasticsearch::http::Method;
use esdetect::actions::config::{ActionConfig, ActionsSettings, ConnectorConfig};
use esdetect::actions::connectors::{deliver, Connector, Delivery, Message};
use esdetect::actions::{dispatch, Actions};
use esdetect::alert::mapping::alerts_index_template;
use esdetect::config::{Config, RuleSettings};
use esdetect::detect::{self, RunSummary, Window};
use esdetect::es::retry::RetryPolicy;
use esdetect::es::{ConnectionConfig, EsClient};
use esdetect::sink::es::{ensure_alerts_index, first_index_name, put_index_template_if_absent, template_name};
use serde_json::{json, Value};

const SMB_RULE: &str = "credential_access_machine_account_smb_relay.toml";
const SMB_RULE_ID: &str = "d84a11c0-eb12-4e7d-8a0a-718e38351e29";
const NOW: &str = "2026-05-20T10:05:00Z";

// ---------------------------------------------------------------------------------------------------
// A recording HTTP receiver.

#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Statuses to answer, in order; 200 once empty.
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    /// Starts on 127.0.0.1 (a free port); answers `script` first. Returns the base URL.
    async fn start(script: &[u16]) -> (Receiver, String) {
        let r = Receiver::default();
        r.script.lock().unwrap().extend(script.iter().copied());
        let state = r.clone();
        let app = axum::Router::new().fallback(move |method: HttpMethod, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                state.got.lock().unwrap().push(Received {
                    method: method.to_string(),
                    path: uri.path().to_string(),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let status = state.script.lock().unwrap().pop_front().unwrap_or(200);
                (StatusCode::from_u16(status).unwrap(), "ok")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        (r, url)
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy { max_retries: 3, base_delay: Duration::from_millis(20), max_delay: Duration::from_millis(100) }
}

fn connector(toml_text: &str, env: &[(&str, &str)]) -> Connector {
    let config: ConnectorConfig = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"));
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Connector::resolve("test", &config, &|n| env.get(n).cloned()).unwrap_or_else(|e| panic!("{e}"))
}

fn message(text: &str, body: &str) -> Message {
    Message {
        text: text.into(),
        subject: format!("subject: {text}"),
        body: body.into(),
        dedup_key: "esdetect-r-a1".into(),
        severity: "error".into(),
        source: "esdetect rule r".into(),
    }
}

// ---------------------------------------------------------------------------------------------------
// Connectors against the local receiver (no cluster needed).

#[tokio::test]
async fn webhook_sends_method_headers_and_body_and_retries_5xx() {
    let (rx, url) = Receiver::start(&[503, 502]).await;
    let c = connector(
        &format!("type = \"webhook\"\nurl = \"{url}/hook\"\nmethod = \"put\"\nheaders = {{ \"X-Api-Key\" = {{ env = \"HOOK_KEY\" }}, \"X-Team\" = \"soc\" }}\n"),
        &[("HOOK_KEY", "s3cret")],
    );
    assert!(!format!("{c:?}").contains("s3cret"), "secrets never print: {c:?}");
    let http = reqwest::Client::new();
    let d = deliver(&http, &c, &message("x", r#"{"a": 1}"#), &fast_retries(), Duration::from_secs(5)).await;
    assert_eq!(d, Delivery::Sent { attempts: 3 });
    let got = rx.received();
    assert_eq!(got.len(), 3, "two 5xx answers, then success");
    for r in &got {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("PUT", "/hook"));
        assert_eq!(r.headers["x-api-key"], "s3cret");
        assert_eq!(r.headers["x-team"], "soc");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.json(), json!({"a": 1}));
    }
}

#[tokio::test]
async fn slack_and_teams_post_text_and_retry_429() {
    for kind in ["slack", "teams"] {
        let (rx, url) = Receiver::start(&[429]).await;
        let c = connector(&format!("type = \"{kind}\"\nurl = \"{url}/services/T0/B0/xyz\"\n"), &[]);
        let http = reqwest::Client::new();
        let d = deliver(&http, &c, &message("Rule *SMB* fired: 2 alerts", ""), &fast_retries(), Duration::from_secs(5)).await;
        assert_eq!(d, Delivery::Sent { attempts: 2 }, "{kind}");
        let got = rx.received();
        assert_eq!(got.len(), 2, "{kind}: a 429, then success");
        assert_eq!(got[1].method, "POST");
        assert_eq!(got[1].path, "/services/T0/B0/xyz");
        assert_eq!(got[1].json(), json!({"text": "Rule *SMB* fired: 2 alerts"}), "{kind}");
    }
}

#[tokio::test]
async fn pagerduty_triggers_an_event_and_does_not_retry_4xx() {
    let (rx, url) = Receiver::start(&[]).await;
    let c = connector(&format!("type = \"pagerduty\"\nrouting_key = {{ env = \"PD_KEY\" }}\napi_url = \"{url}/v2/enqueue\"\n"), &[("PD_KEY", "R0UT1NG")]);
    let http = reqwest::Client::new();
    assert_eq!(deliver(&http, &c, &message("SMB relay on fs01", ""), &fast_retries(), Duration::from_secs(5)).await, Delivery::Sent { attempts: 1 });
    let event = rx.received()[0].json();
    assert_eq!(event["routing_key"], "R0UT1NG");
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["dedup_key"], "esdetect-r-a1");
    assert_eq!(event["payload"], json!({"summary": "SMB relay on fs01", "source": "esdetect rule r", "severity": "error"}));

    let (rx, url) = Receiver::start(&[400, 400]).await;
    let c = connector(&format!("type = \"pagerduty\"\nrouting_key = \"k\"\napi_url = \"{url}/v2/enqueue\"\nseverity = \"critical\"\n"), &[]);
    match deliver(&http, &c, &message("x", ""), &fast_retries(), Duration::from_secs(5)).await {
        Delivery::Failed { attempts: 1, error } => assert!(error.contains("HTTP 400"), "{error}"),
        other => panic!("a 400 is final: {other:?}"),
    }
    assert_eq!(rx.received().len(), 1);
}

#[tokio::test]
async fn unreachable_endpoint_fails_after_the_retries_without_printing_the_url() {
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = connector(&format!("type = \"slack\"\nurl = \"http://127.0.0.1:{port}/services/SECRET-TOKEN\"\n"), &[]);
    let http = reqwest::Client::new();
    match deliver(&http, &c, &message("x", ""), &fast_retries(), Duration::from_secs(2)).await {
        Delivery::Failed { attempts: 4, error } => assert!(!error.contains("SECRET-TOKEN"), "{error}"),
        other => panic!("{other:?}"),
    }
}

/// A real SMTP server: `python3 -m aiosmtpd` writing every message into a maildir.
struct Smtp {
    child: std::process::Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Smtp {
    /// `tls`: (certificate, key) PEM files to offer STARTTLS with.
    fn start(tls: Option<(&Path, &Path)>) -> Smtp {
        let maildir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
        if let Some((cert, key)) = tls {
            cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
        }
        let child = cmd
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("box"))
            .spawn()
            .expect("python3 with aiosmtpd (installed by .ci/run: apt python3-aiosmtpd)");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "aiosmtpd did not start (is it installed? .ci/run installs it)");
            std::thread::sleep(Duration::from_millis(100));
        }
        Smtp { child, port, maildir }
    }

    fn messages(&self) -> Vec<String> {
        let dir = self.maildir.path().join("box").join("new");
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap()).collect())
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server() {
    let smtp = Smtp::start(None);
    let c = connector(
        &format!(
            "type = \"email\"\nhost = \"127.0.0.1\"\nport = {}\nsecure = \"none\"\nfrom = \"esdetect@corp.local\"\nto = [\"soc@corp.local\", \"oncall@corp.local\"]\n",
            smtp.port
        ),
        &[],
    );
    let http = reqwest::Client::new();
    let d = deliver(&http, &c, &message("SMB relay on fs01", ""), &fast_retries(), Duration::from_secs(10)).await;
    assert_eq!(d, Delivery::Sent { attempts: 1 });
    let got = smtp.messages();
    assert_eq!(got.len(), 1, "one message for both recipients");
    let m = &got[0];
    assert!(m.contains("Subject: subject: SMB relay on fs01"), "{m}");
    assert!(m.contains("From: esdetect@corp.local"), "{m}");
    assert!(m.contains("soc@corp.local") && m.contains("oncall@corp.local"), "{m}");
    assert!(m.contains("SMB relay on fs01"), "{m}");
}

#[test]
fn configuration_errors_name_the_action_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let load = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let config = Config::load(Some(&path), &|_| None).map_err(|e| e.to_string())?;
        config.rule_actions(&|_| None).map(|a| a.is_some()).map_err(|e| e.to_string())
    };
    let hook = "[connectors.hook]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\n";
    assert_eq!(load(hook), Ok(false), "connectors without actions: nothing to do");
    assert_eq!(load(&format!("{hook}[[rules.r1.actions]]\nconnector = \"hook\"\n")), Ok(true));
    let e = load(&format!("{hook}[[rules.r1.actions]]\nconnector = \"nope\"\n")).unwrap_err();
    assert!(e.contains("rules.\"r1\".actions[0]") && e.contains("no connector `nope`"), "{e}");
    let e = load(&format!("{hook}[[rules.r1.actions]]\nconnector = \"hook\"\nnotify_when = \"on_throttle_interval\"\n")).unwrap_err();
    assert!(e.contains("needs `throttle`"), "{e}");
    let e = load(&format!("{hook}[[rules.r1.actions]]\nconnector = \"hook\"\nmessage = \"{{{{#context.alerts}}}}x\"\n")).unwrap_err();
    assert!(e.contains("actions[0].message"), "{e}");
    let e = load("[connectors.s]\ntype = \"slack\"\nurl = { env = \"NOT_SET_ANYWHERE\" }\n[[rules.r1.actions]]\nconnector = \"s\"\n").unwrap_err();
    assert!(e.contains("NOT_SET_ANYWHERE"), "{e}");
    let e = load("[connectors.x]\ntype = \"fax\"\n").unwrap_err();
    assert!(e.contains("c.toml: 2:"), "unknown connector type names the line: {e}");
}

// ---------------------------------------------------------------------------------------------------
// With the live node.

/// Per-test indices (events, alerts alias, action state), deleted at the end, also on failure.
struct Lab {
    client: EsClient,
    tag: String,
    alias: String,
}

impl Lab {
    async fn new() -> Lab {
        let client = EsClient::new(&ConnectionConfig::for_url(common::es_url())).expect("client");
        let tag = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let alias = format!("esdetect-test-{tag}");
        let lab = Lab { client, tag, alias };
        let (_, mut body) = esdetect::simulate::templates::event_index_templates().into_iter().next().unwrap();
        body["index_patterns"] = json!([format!("{}*", lab.events())]);
        body["priority"] = json!(78);
        assert!(put_index_template_if_absent(&lab.client, &lab.event_template(), &body).await.expect("event template"));
        ensure_alerts_index(&lab.client, &lab.alias, alerts_index_template(&[format!("{}-*", lab.alias)])).await.expect("alias");
        lab
    }
    fn events(&self) -> String {
        format!("logs-system.security-{}", self.tag)
    }
    fn event_template(&self) -> String {
        format!("esdetect-test-ecs-{}", self.tag)
    }
    fn state_index(&self) -> String {
        format!("esdetect-actions-{}", self.tag)
    }

    /// One SMB machine-account relay event (5145 by `FS01$` from a foreign address) at `at`.
    async fn plant_smb(&self, at: &str) {
        let doc = json!({
            "@timestamp": at,
            "event": {"code": "5145", "category": ["network", "file"], "type": ["info", "access"], "outcome": "success",
                      "kind": "event", "provider": "Microsoft-Windows-Security-Auditing", "module": "system",
                      "dataset": "system.security", "ingested": at, "action": "network-share-object-access-checked"},
            "winlog": {"channel": "Security", "computer_name": "fs01.corp.local", "event_id": "5145",
                       "event_data": {"SubjectUserName": "FS01$", "SubjectDomainName": "CORP", "ShareName": "\\\\*\\IPC$",
                                      "RelativeTargetName": "spoolss", "AccessMask": ["0x3"]}},
            "source": {"ip": "10.0.0.99", "port": 49832},
            "user": {"name": "FS01$", "domain": "CORP"},
            "host": {"name": "fs01.corp.local", "ip": ["10.0.0.20"], "os": {"type": "windows"}},
            "data_stream": {"type": "logs", "dataset": "system.security", "namespace": "default"}
        });
        let (status, body) = self
            .client
            .raw(Method::Post, &format!("/{}/_doc", self.events()), &[("refresh", "true".into())], Some(&doc))
            .await
            .expect("index event");
        assert_eq!(status, 201, "{body}");
    }

    /// Rules folder with the SMB seed rule reading this lab's index, and a config with `extra` appended.
    fn config(&self, dir: &Path, extra: &str) -> PathBuf {
        let rules = dir.join("rules");
        std::fs::create_dir_all(&rules).unwrap();
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(SMB_RULE)).unwrap();
        let upstream = r#"index = ["logs-system.security*", "logs-windows.forwarded*", "winlogbeat-*"]"#;
        assert!(text.contains(upstream), "index line changed upstream; update this test");
        std::fs::write(rules.join(SMB_RULE), text.replace(upstream, &format!("index = [\"{}*\"]", self.events()))).unwrap();
        let path = dir.join("esdetect.toml");
        std::fs::write(
            &path,
            format!(
                "rules_dir = {rules:?}\n\n[elasticsearch]\nurls = [{url:?}]\nmax_retries = 0\n\n[alerts]\nindex = {alias:?}\n\n\
                 [actions]\nstate_index = {state:?}\nretry_delay = \"20ms\"\n\n{extra}",
                rules = rules.display().to_string(),
                url = common::es_url(),
                alias = self.alias,
                state = self.state_index(),
            ),
        )
        .unwrap();
        path
    }

    async fn alert_ids(&self) -> Vec<String> {
        let body = json!({"size": 100, "query": {"match_all": {}}});
        let (status, resp) = self.client.raw(Method::Post, &format!("/{}/_search", self.alias), &[], Some(&body)).await.expect("search");
        assert_eq!(status, 200, "{resp}");
        let mut ids: Vec<String> = resp["hits"]["hits"].as_array().unwrap().iter().map(|h| h["_id"].as_str().unwrap().to_string()).collect();
        ids.sort();
        ids
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let (url, indices, templates) = (
            common::es_url(),
            format!("{},{},{}", first_index_name(&self.alias), self.events() + "*", self.state_index()),
            [self.event_template(), template_name(&self.alias)],
        );
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let client = EsClient::new(&ConnectionConfig::for_url(url)).unwrap();
                let _ = client.raw(Method::Delete, &format!("/{indices}?ignore_unavailable=true"), &[], None).await;
                for t in templates {
                    let _ = client.raw(Method::Delete, &format!("/_index_template/{t}"), &[], None).await;
                }
            })
        })
        .join();
    }
}

fn esdetect(config: &Path, args: &[&str]) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esdetect"));
    cmd.arg("--config").arg(config).args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("ESDETECT_") {
            cmd.env_remove(k);
        }
    }
    cmd.spawn().expect("running the esdetect binary")
}

fn summary_of(child: std::process::Child) -> Value {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().next().expect("one summary")).unwrap()
}

fn webhook_section(url: &str) -> String {
    format!(
        "[connectors.soc-hook]\ntype = \"webhook\"\nurl = \"{url}/esdetect\"\n\
         body = '{{\"rule\": \"{{{{context.rule.name}}}}\", \"count\": {{{{state.signals_count}}}}, \"ids\": [{{{{#context.alerts}}}}\"{{{{_id}}}}\",{{{{/context.alerts}}}}\"end\"], \"host\": \"{{{{#context.alerts}}}}{{{{host.name}}}}{{{{/context.alerts}}}}\"}}'\n\n\
         [[rules.\"{SMB_RULE_ID}\".actions]]\nconnector = \"soc-hook\"\n"
    )
}

// Multi-threaded: the receiver must answer while the test waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_notifies_exactly_once_and_a_rerun_sends_nothing() {
    let lab = Lab::new().await;
    lab.plant_smb("2026-05-20T10:01:00.000Z").await;
    let (rx, url) = Receiver::start(&[503]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = lab.config(dir.path(), &webhook_section(&url));

    let s = summary_of(esdetect(&config, &["run", "--once", "--now", NOW, "--format", "json"]));
    assert_eq!(s["alerts_written"], 1, "{s}");
    assert_eq!(s["actions"]["outcomes"]["soc-hook"], json!({"sent": 1}), "{s}");
    let ids = lab.alert_ids().await;
    let got = rx.received();
    assert_eq!(got.len(), 2, "one 503 retried, then delivered");
    let body = got[1].json();
    assert_eq!(body["rule"], "Potential Machine Account Relay Attack via SMB");
    assert_eq!(body["count"], 1);
    assert_eq!(body["ids"], json!([ids[0], "end"]), "the notified alert is the one written");
    assert_eq!(body["host"], "fs01.corp.local");

    // The same window again: the alert is a duplicate, nothing is notified.
    let s = summary_of(esdetect(&config, &["run", "--once", "--now", NOW, "--format", "json"]));
    assert_eq!((s["alerts_written"].as_u64(), s["duplicates"].as_u64()), (Some(0), Some(1)), "{s}");
    assert!(s.get("actions").is_none(), "no actions on a rerun: {s}");
    assert_eq!(rx.received().len(), 2);
}

// Multi-threaded: the receiver must answer while the test waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_for_one_window_notify_once() {
    let lab = Lab::new().await;
    lab.plant_smb("2026-05-20T10:02:00.000Z").await;
    let (rx, url) = Receiver::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = lab.config(dir.path(), &webhook_section(&url));
    let a = esdetect(&config, &["run", "--once", "--now", NOW, "--format", "json"]);
    let b = esdetect(&config, &["run", "--once", "--now", NOW, "--format", "json"]);
    let (sa, sb) = (summary_of(a), summary_of(b));
    let written = sa["alerts_written"].as_u64().unwrap() + sb["alerts_written"].as_u64().unwrap();
    assert_eq!(written, 1, "create-only writes: one replica creates the alert\n{sa}\n{sb}");
    assert_eq!(lab.alert_ids().await.len(), 1);
    assert_eq!(rx.received().len(), 1, "only the replica that created the alert notifies");
}

/// `dispatch` directly: per-alert messages, building blocks left out, throttling kept in Elasticsearch.
#[tokio::test]
async fn per_alert_messages_and_throttle_state_in_elasticsearch() {
    let lab = Lab::new().await;
    let (rx, url) = Receiver::start(&[]).await;
    let mut config = Config::default();
    config.alerts.index = lab.alias.clone();
    config.actions = ActionsSettings { state_index: lab.state_index(), retry_delay: Duration::from_millis(20), ..Default::default() };
    config.connectors.insert("chat".into(), toml::from_str(&format!("type = \"slack\"\nurl = \"{url}/chat\"\n")).unwrap());
    let per_alert: ActionConfig =
        toml::from_str("connector = \"chat\"\nsummary = false\nmessage = \"{{alert.id}} on {{context.rule.name}}: {{state.signals_count}}\"\n").unwrap();
    let throttled: ActionConfig =
        toml::from_str("connector = \"chat\"\nnotify_when = \"on_throttle_interval\"\nthrottle = \"1h\"\nmessage = \"digest {{state.signals_count}}\"\n").unwrap();
    config.rules.insert(SMB_RULE_ID.into(), RuleSettings { actions: vec![per_alert, throttled], ..Default::default() });
    let actions: Actions = config.rule_actions(&|_| None).unwrap().expect("the rule has actions");

    let rule = esdetect::rules::load_file(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(SMB_RULE)).unwrap();
    let prepared = detect::prepare::prepare_rule(rule, &config).unwrap();
    let summary = RunSummary::new(&prepared, Window::ending_at(&prepared.rule, chrono::Utc::now()));
    let doc = |n: &str| json!({"kibana.alert.rule.name": prepared.rule.name, "host.name": n});
    let bb = json!({"kibana.alert.building_block_type": "default"});
    let written = vec![("a1".to_string(), doc("h1")), ("a2".to_string(), doc("h2")), ("bb".to_string(), bb)];

    let report = dispatch(&lab.client, &actions, &prepared, &summary, &written).await;
    assert_eq!(report.outcomes["chat"], BTreeMap::from([("sent".to_string(), 3)]), "{report:?}");
    let texts: Vec<Value> = rx.received().iter().map(|r| r.json()["text"].clone()).collect();
    let name = &prepared.rule.name;
    assert_eq!(texts, vec![json!(format!("a1 on {name}: 1")), json!(format!("a2 on {name}: 1")), json!("digest 2")]);

    // A second run within the hour (a restart: fresh Actions, state read back from Elasticsearch).
    let actions = config.rule_actions(&|_| None).unwrap().unwrap();
    let report = dispatch(&lab.client, &actions, &prepared, &summary, &written[..1]).await;
    assert_eq!(report.outcomes["chat"], BTreeMap::from([("sent".to_string(), 1), ("throttled".to_string(), 1)]), "{report:?}");
    assert_eq!(rx.received().len(), 4);
    // The /metrics counter (one process-wide family; this is the only test using connector "chat").
    let counter = |outcome: &str| esdetect::actions::ACTIONS_TOTAL.with_label_values(&["chat", outcome]).get();
    assert_eq!((counter("sent"), counter("throttled")), (4, 1));
    let (status, state) = lab.client.raw(Method::Post, &format!("/{}/_search", lab.state_index()), &[], None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(state["hits"]["total"]["value"], 1, "one throttle document: {state}");
}

/// A Kibana export's rule `actions` (8.x shape, and the legacy rule-wide `throttle`) mapped onto
/// configured connectors by `kibana_id`; unsupported types and unmapped connectors are reported.
#[test]
fn kibana_export_actions_map_onto_configured_connectors() {
    let mut config = Config::default();
    config.connectors.insert(
        "soc-slack".into(),
        toml::from_str("type = \"slack\"\nkibana_id = \"c-slack\"\nurl = \"http://127.0.0.1:9/x\"\n").unwrap(),
    );
    config.connectors.insert("pd".into(), toml::from_str("type = \"pagerduty\"\nkibana_id = \"c-pd\"\nrouting_key = \"k\"\n").unwrap());
    let actions = config.rule_actions(&|_| None).unwrap().expect("kibana_id connectors enable export actions");
    let mut rule = esdetect::rules::load_file(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(SMB_RULE)).unwrap();
    rule.export_extra.insert(
        "actions".into(),
        json!([
            {"group": "default", "id": "c-slack", "action_type_id": ".slack",
             "params": {"message": "Rule {{context.rule.name}}: {{state.signals_count}}"},
             "frequency": {"summary": true, "notifyWhen": "onThrottleInterval", "throttle": "1h"}},
            {"group": "default", "id": "c-pd", "action_type_id": ".pagerduty",
             "params": {"summary": "{{context.rule.name}}", "eventAction": "trigger"},
             "frequency": {"summary": false, "notifyWhen": "onActiveAlert", "throttle": null}},
            {"group": "default", "id": "c-jira", "action_type_id": ".jira", "params": {}},
            {"group": "default", "id": "c-other", "action_type_id": ".slack", "params": {"message": "x"}},
            {"group": "default", "id": "c-pd", "action_type_id": ".webhook", "params": {"body": "{}"}}
        ]),
    );
    let prepared = detect::prepare::prepare_rule(rule, &config).unwrap();
    assert!(actions.applies_to(&prepared));
    let (mapped, problems) = actions.actions_for(&prepared);
    assert_eq!(mapped.len(), 2, "{mapped:?}");
    assert_eq!(mapped[0].connector, "soc-slack");
    assert_eq!(mapped[0].throttle, Some(Duration::from_secs(3600)));
    assert_eq!(mapped[0].message.as_deref(), Some("Rule {{context.rule.name}}: {{state.signals_count}}"));
    assert_eq!((mapped[1].connector.as_str(), mapped[1].summary, mapped[1].throttle), ("pd", false, None));
    assert_eq!(mapped[1].message.as_deref(), Some("{{context.rule.name}}"));
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("`.jira` is not supported"), "{problems:?}");
    assert!(problems[1].contains("kibana_id = \"c-other\""), "{problems:?}");
    assert!(problems[2].contains("is a pagerduty connector"), "{problems:?}");

    // Legacy rule-wide throttle (before 8.8): "1d" on the rule, no per-action frequency.
    let mut rule = esdetect::rules::load_file(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(SMB_RULE)).unwrap();
    rule.export_extra.insert("throttle".into(), json!("1d"));
    rule.export_extra.insert("actions".into(), json!([{"group": "default", "id": "c-slack", "action_type_id": ".slack", "params": {"message": "m"}}]));
    let (mapped, problems) = actions.actions_for(&detect::prepare::prepare_rule(rule, &config).unwrap());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(mapped[0].throttle, Some(Duration::from_secs(86_400)));
}

/// A receiver that keeps failing cannot hold the run: the actions budget cuts delivery short, the
/// message counts as failed, and `dispatch` returns.
#[tokio::test]
async fn the_actions_budget_bounds_a_run_against_a_failing_receiver() {
    let (rx, url) = Receiver::start(&[503; 50]).await;
    let mut config = Config::default();
    config.actions = ActionsSettings {
        max_retries: 40,
        retry_delay: Duration::from_millis(100),
        budget: Duration::from_millis(700),
        ..Default::default()
    };
    config.connectors.insert("hook".into(), toml::from_str(&format!("type = \"webhook\"\nurl = \"{url}/h\"\n")).unwrap());
    config.rules.insert(SMB_RULE_ID.into(), RuleSettings { actions: vec![toml::from_str("connector = \"hook\"").unwrap()], ..Default::default() });
    let actions = config.rule_actions(&|_| None).unwrap().unwrap();
    let rule = esdetect::rules::load_file(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(SMB_RULE)).unwrap();
    let prepared = detect::prepare::prepare_rule(rule, &config).unwrap();
    let summary = RunSummary::new(&prepared, Window::ending_at(&prepared.rule, chrono::Utc::now()));
    // No cluster: the outbox cannot be written (logged), delivery goes on regardless.
    let client = EsClient::new(&ConnectionConfig::for_url("http://127.0.0.1:1"))
        .unwrap()
        .with_retry(RetryPolicy { max_retries: 0, ..RetryPolicy::default() });
    let started = std::time::Instant::now();
    let report = dispatch(&client, &actions, &prepared, &summary, &[("a1".to_string(), json!({"host.name": "h"}))]).await;
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(report.outcomes["hook"], BTreeMap::from([("failed".to_string(), 1)]));
    assert!(report.errors[0].contains("budget"), "{:?}", report.errors);
    assert!(rx.received().len() >= 2, "it did retry before the budget ran out");
}

/// A message that could not be delivered stays in the outbox (Elasticsearch) and a later run of the rule —
/// here one with no new alerts, as after a restart — sends it; then the outbox is empty.
#[tokio::test]
async fn undelivered_messages_wait_in_the_outbox_and_a_later_run_sends_them() {
    let lab = Lab::new().await;
    let (rx, url) = Receiver::start(&[400]).await;
    let mut config = Config::default();
    config.alerts.index = lab.alias.clone();
    config.actions = ActionsSettings { state_index: lab.state_index(), retry_delay: Duration::from_millis(20), ..Default::default() };
    config.connectors.insert("teams".into(), toml::from_str(&format!("type = \"teams\"\nurl = \"{url}/t\"\n")).unwrap());
    let action: ActionConfig = toml::from_str("connector = \"teams\"\nmessage = \"{{#context.alerts}}{{_id}}{{/context.alerts}}\"").unwrap();
    config.rules.insert(SMB_RULE_ID.into(), RuleSettings { actions: vec![action], ..Default::default() });
    let rule = esdetect::rules::load_file(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(SMB_RULE)).unwrap();
    let prepared = detect::prepare::prepare_rule(rule, &config).unwrap();
    let summary = RunSummary::new(&prepared, Window::ending_at(&prepared.rule, chrono::Utc::now()));

    let actions = config.rule_actions(&|_| None).unwrap().unwrap();
    let report = dispatch(&lab.client, &actions, &prepared, &summary, &[("a7".to_string(), json!({}))]).await;
    assert_eq!(report.outcomes["teams"], BTreeMap::from([("failed".to_string(), 1)]), "{report:?}");
    assert!(report.errors[0].contains("HTTP 400") && report.errors[0].contains("kept for the next run"), "{report:?}");

    // A restarted process, a run with nothing new: the kept message goes out, once.
    let actions = config.rule_actions(&|_| None).unwrap().unwrap();
    let report = dispatch(&lab.client, &actions, &prepared, &summary, &[]).await;
    assert_eq!(report.outcomes["teams"], BTreeMap::from([("redelivered".to_string(), 1)]), "{report:?}");
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].json(), json!({"text": "a7"}));
    assert_eq!(got[1].json(), got[0].json(), "the same message");
    let report = dispatch(&lab.client, &actions, &prepared, &summary, &[]).await;
    assert!(report.is_empty(), "outbox drained: {report:?}");
    assert_eq!(rx.received().len(), 2);
}

/// STARTTLS against the real SMTP server with a self-signed certificate (made by `openssl` here), trusted
/// through the connector's `ca_cert`; without it the certificate is refused and nothing is sent.
#[tokio::test]
async fn email_over_starttls_trusts_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    std::fs::write(p("leaf.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    // A test CA, and a server certificate for 127.0.0.1 signed by it.
    let steps: [Vec<std::ffi::OsString>; 3] = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=esdetect test CA", "-keyout"]
            .iter().map(Into::into).chain([p("ca.key").into(), "-out".into(), p("ca.pem").into()]).collect(),
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout"]
            .iter().map(Into::into).chain([p("key.pem").into(), "-out".into(), p("leaf.csr").into()]).collect(),
        ["x509", "-req", "-days", "1", "-CAcreateserial", "-in"]
            .iter().map(Into::into)
            .chain([p("leaf.csr").into(), "-CA".into(), p("ca.pem").into(), "-CAkey".into(), p("ca.key").into()])
            .chain(["-extfile".into(), p("leaf.ext").into(), "-out".into(), p("cert.pem").into()])
            .collect(),
    ];
    for args in steps {
        let made = Command::new("openssl").args(&args).output().expect("openssl (installed by .ci/run)");
        assert!(made.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&made.stderr));
    }
    let (cert, key) = (p("cert.pem"), p("key.pem"));
    let smtp = Smtp::start(Some((&cert, &key)));
    let settings = |ca: &str| {
        format!(
            "type = \"email\"\nhost = \"127.0.0.1\"\nport = {}\nsecure = \"starttls\"\nfrom = \"esdetect@corp.local\"\nto = [\"soc@corp.local\"]\n{ca}",
            smtp.port
        )
    };
    let http = reqwest::Client::new();
    let untrusted = connector(&settings(""), &[]);
    match deliver(&http, &untrusted, &message("nope", ""), &fast_retries(), Duration::from_secs(10)).await {
        Delivery::Failed { error, .. } => assert!(error.to_lowercase().contains("certificate") || error.contains("tls") || error.contains("TLS"), "{error}"),
        other => panic!("an untrusted certificate must be refused: {other:?}"),
    }
    assert!(smtp.messages().is_empty());
    let trusted = connector(&settings(&format!("ca_cert = {:?}\n", p("ca.pem").display().to_string())), &[]);
    let d = deliver(&http, &trusted, &message("over TLS", ""), &fast_retries(), Duration::from_secs(10)).await;
    assert_eq!(d, Delivery::Sent { attempts: 1 });
    let got = smtp.messages();
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("Subject: subject: over TLS"), "{}", got[0]);
}

/// Deletes the per-test ledger and state indices of the scheduler at the end, also on failure.
struct SchedulerIndices(Vec<String>);

impl Drop for SchedulerIndices {
    fn drop(&mut self) {
        let (url, indices) = (common::es_url(), self.0.join(","));
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let client = EsClient::new(&ConnectionConfig::for_url(url)).unwrap();
                let _ = client.raw(Method::Delete, &format!("/{indices}?ignore_unavailable=true"), &[], None).await;
            })
        })
        .join();
    }
}

/// `esdetect status` output (`--format json` lines, or the table) for this config.
fn status_output(config: &Path, json_lines: bool) -> String {
    let cfg = config.to_str().unwrap();
    let mut args = vec!["--no-color", "--config", cfg, "status"];
    if json_lines {
        args.extend(["--format", "json"]);
    }
    let out = common::esdetect(config.parent().unwrap(), &args);
    assert!(out.status.success(), "esdetect status: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ledger entries `esdetect status --format json` prints, oldest first.
fn ledger_runs(config: &Path) -> Vec<Value> {
    let mut runs: Vec<Value> = status_output(config, true)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("run").cloned())
        .collect();
    runs.sort_by_key(|r| r["started_at"].as_str().unwrap_or_default().to_string());
    runs
}

/// Each delivery's outcome — failed after the retries, sent, throttled, redelivered from the outbox — is
/// recorded in the run's ledger entry in Elasticsearch and shown by `esdetect status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_outcomes_are_recorded_in_the_ledger_and_shown_by_status() {
    let lab = Lab::new().await;
    let (ledger, state) = (format!("esdetect-ledger-{}", lab.tag), format!("esdetect-state-{}", lab.tag));
    let _cleanup = SchedulerIndices(vec![ledger.clone(), state.clone()]);
    lab.plant_smb("2026-05-20T10:01:00.000Z").await;
    lab.plant_smb("2026-05-20T10:11:00.000Z").await;
    // Four 500s: the first action's message fails after its 1 + 3 retries; everything after is accepted.
    let (rx, url) = Receiver::start(&[500, 500, 500, 500]).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[scheduler]\nledger_index = {ledger:?}\nstate_index = {state:?}\nindex_replicas = 0\n\n{}\n\
         [[rules.\"{SMB_RULE_ID}\".actions]]\nconnector = \"soc-hook\"\nnotify_when = \"on_throttle_interval\"\nthrottle = \"1h\"\n",
        webhook_section(&url)
    );
    let config = lab.config(dir.path(), &extra);
    // Ledger writes are not refreshed (searches see them within a second): refresh before reading.
    let refresh = || async {
        let (status, body) = lab.client.raw(Method::Post, &format!("/{ledger}/_refresh"), &[], None).await.expect("refresh");
        assert_eq!(status, 200, "{body}");
    };

    // Run 1 (window 09:56–10:05, the first event): action 0 fails after the retries, action 1 is sent.
    let s = summary_of(esdetect(&config, &["run", "--once", "--now", NOW, "--format", "json"]));
    assert_eq!(s["alerts_written"], 1, "{s}");
    assert_eq!(rx.received().len(), 5, "4 attempts of action 0, 1 of action 1");
    refresh().await;
    let runs = ledger_runs(&config);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let counts = &runs[0]["counts"];
    assert_eq!(
        counts["actions"],
        json!([{"connector": "soc-hook", "outcome": "failed", "count": 1}, {"connector": "soc-hook", "outcome": "sent", "count": 1}]),
        "{counts}"
    );
    let errors = counts["action_errors"].as_array().expect("the delivery error is recorded");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = errors[0].as_str().unwrap();
    assert!(error.contains("action 0 (soc-hook): not delivered after 4 attempt(s)") && error.contains("500"), "{error}");
    assert_eq!(runs[0]["status"], "succeeded", "a failed notification never fails the run");

    // Run 2 (window 10:06–10:15, the second event): the kept message is redelivered, action 0 sends the
    // new alert, action 1 is throttled (it sent less than an hour ago).
    let now2 = "2026-05-20T10:15:00Z";
    let s = summary_of(esdetect(&config, &["run", "--once", "--now", now2, "--format", "json"]));
    assert_eq!(s["alerts_written"], 1, "{s}");
    assert_eq!(rx.received().len(), 7, "the redelivery and action 0's new message");
    refresh().await;
    let runs = ledger_runs(&config);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        runs[1]["counts"]["actions"],
        json!([
            {"connector": "soc-hook", "outcome": "redelivered", "count": 1},
            {"connector": "soc-hook", "outcome": "sent", "count": 1},
            {"connector": "soc-hook", "outcome": "throttled", "count": 1}
        ]),
        "{}",
        runs[1]
    );
    assert!(runs[1]["counts"].get("action_errors").is_none(), "{}", runs[1]);

    // The table: an `actions` column per run, and the failed delivery's reason in the message.
    let table = status_output(&config, false);
    assert!(table.contains("soc-hook: 1 failed, 1 sent"), "{table}");
    assert!(table.contains("soc-hook: 1 redelivered, 1 sent, 1 throttled"), "{table}");
    assert!(table.contains("actions: action 0 (soc-hook): not delivered after 4 attempt(s)"), "{table}");
}

/// `esdetect validate` checks connectors and actions, all problems at once, each naming the config file
/// and the connector or the rule (id, name, file); a connector missing its URL is a config error at its line.
#[test]
fn validate_reports_every_connector_and_action_problem_with_file_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let config = dir.path().join("esdetect.toml");
    std::fs::write(
        &config,
        format!(
            "rules_dir = {rules:?}\n\n\
             [connectors.hook]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\nbody = '{{\"x\": \"{{{{#context.alerts}}}}\"}}'\n\n\
             [connectors.slack]\ntype = \"slack\"\nurl = {{ env = \"VALIDATE_TEST_UNSET_SLACK_URL\" }}\n\n\
             [connectors.pd]\ntype = \"pagerduty\"\nrouting_key = {{ file = \"/nonexistent/esdetect/pd-key\" }}\n\n\
             [[rules.\"{SMB_RULE_ID}\".actions]]\nconnector = \"nope\"\n\
             [[rules.\"{SMB_RULE_ID}\".actions]]\nconnector = \"slack\"\n\
             [[rules.\"{SMB_RULE_ID}\".actions]]\nconnector = \"hook\"\nmessage = \"{{{{#context.alerts}}}}x\"\n\
             [[rules.\"{SMB_RULE_ID}\".actions]]\nconnector = \"hook\"\nnotify_when = \"on_throttle_interval\"\n\
             [[rules.\"not-a-rule-here\".actions]]\nconnector = \"hook\"\n",
            rules = rules.display().to_string()
        ),
    )
    .unwrap();
    let out = common::esdetect(dir.path(), &["--config", config.to_str().unwrap(), "validate"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    let cfg = config.display().to_string();
    let rule = format!(
        "rules.\"{SMB_RULE_ID}\".actions[{{}}] (rule \"Potential Machine Account Relay Attack via SMB\", {})",
        rules.join(SMB_RULE).display()
    );
    let at = |i: usize| format!("{cfg}: {}", rule.replace("{}", &i.to_string()));
    let expected = [
        format!("{cfg}: template connectors.hook.body:"),
        format!("{cfg}: connectors.slack.url: environment variable VALIDATE_TEST_UNSET_SLACK_URL is not set"),
        format!("{cfg}: connectors.pd.routing_key: cannot read /nonexistent/esdetect/pd-key"),
        format!("{}: no connector `nope`", at(0)),
        format!("{}: connector `slack` cannot be used", at(1)),
        format!("{}: template message:", at(2)),
        format!("{}: notify_when = \"on_throttle_interval\" needs `throttle`", at(3)),
        format!("warning: {cfg}: [rules.\"not-a-rule-here\"] has actions but no rule with that rule_id is in"),
    ];
    for e in &expected {
        assert!(stderr.lines().any(|l| l.starts_with(e.as_str())), "missing `{e}` in:\n{stderr}");
    }
    assert!(stdout.contains("2 rule(s) valid, 7 error(s)"), "{stdout}");

    // A connector without its URL: the config does not load, the error names the file and line.
    std::fs::write(&config, format!("rules_dir = {:?}\n[connectors.s]\ntype = \"slack\"\n", rules.display().to_string())).unwrap();
    let out = common::esdetect(dir.path(), &["--config", config.to_str().unwrap(), "validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{cfg}: 2:1:")) && stderr.contains("missing field `url`"), "{stderr}");
}

/// The actions of a Kibana export: an unconfigured connector is a warning (a run skips that action), a
/// template that does not parse is an error naming the rule's file and name.
#[test]
fn validate_checks_the_actions_of_exported_rules() {
    let mut config = Config::default();
    config.connectors.insert(
        "soc-slack".into(),
        toml::from_str("type = \"slack\"\nkibana_id = \"c-slack\"\nurl = \"http://127.0.0.1:9/x\"\n").unwrap(),
    );
    let mut rule = esdetect::rules::load_file(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(SMB_RULE)).unwrap();
    rule.export_extra.insert(
        "actions".into(),
        json!([
            {"group": "default", "id": "c-slack", "action_type_id": ".slack", "params": {"message": "{{#context.alerts}}"}},
            {"group": "default", "id": "c-gone", "action_type_id": ".slack", "params": {"message": "x"}}
        ]),
    );
    let prepared = detect::prepare::prepare_rule(rule, &config).unwrap();
    let found = esdetect::actions::check::check(&config, &[prepared], &|_| None);
    let whose = format!(
        "{}: rule \"Potential Machine Account Relay Attack via SMB\" ({SMB_RULE_ID})",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(SMB_RULE).display()
    );
    assert_eq!(found.errors.len(), 1, "{found:?}");
    assert!(found.errors[0].starts_with(&format!("{whose}: the export's action for connector `soc-slack`: template message:")), "{found:?}");
    assert_eq!(found.warnings.len(), 1, "{found:?}");
    assert!(found.warnings[0].starts_with(&format!("{whose}: rule {SMB_RULE_ID} action 1: Kibana connector `c-gone`")), "{found:?}");
}
