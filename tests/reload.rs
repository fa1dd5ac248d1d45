//! Hot reload of a running daemon against the real node: rules added, changed, broken (rejected, the
//! running set kept) and removed, through the rules-path watch and through SIGHUP, with the reload metrics
//! on `/metrics`. Bounded: every wait has a limit, the whole test takes about a minute.

mod common;

use common::daemon::{http_get, metric, wait_for, Daemon};

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use elasticsearch::http::Method;
use esdetect::es::{ConnectionConfig, EsClient};
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SMB: &str = "credential_access_machine_account_smb_relay.toml";
const SMB_ID: &str = "d84a11c0-eb12-4e7d-8a0a-718e38351e29";
const SMB_NAME: &str = "Potential Machine Account Relay Attack via SMB";
const KRB: &str = "privilege_escalation_krbrelayup_service_creation.toml";
const KRB_ID: &str = "e4e31051-ee01-4307-a6ee-b21b186958f4";

/// The test's indices on the shared node, deleted at the end (also on failure).
struct Indices {
    tag: String,
}

impl Indices {
    fn events(&self) -> String {
        format!("esdetect-test-reload-events-{}", self.tag)
    }
    fn alias(&self) -> String {
        format!("esdetect-test-reload-alerts-{}", self.tag)
    }
    fn ledger(&self) -> String {
        format!("esdetect-test-reload-ledger-{}", self.tag)
    }
    fn state(&self) -> String {
        format!("esdetect-test-reload-state-{}", self.tag)
    }
}

impl Drop for Indices {
    fn drop(&mut self) {
        let url = common::es_url();
        let names = format!("{},{}-*,{},{}", self.events(), self.alias(), self.ledger(), self.state());
        let template = format!("/_index_template/{}", esdetect::sink::es::template_name(&self.alias()));
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let client = EsClient::new(&ConnectionConfig::for_url(url)).unwrap();
                let _ = client.raw(Method::Delete, &format!("/{names}?ignore_unavailable=true"), &[], None).await;
                let _ = client.raw(Method::Delete, &template, &[], None).await;
            })
        })
        .join();
    }
}

struct Node {
    rt: tokio::runtime::Runtime,
    client: EsClient,
}

impl Node {
    fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.rt.block_on(self.client.raw(method, path, &[], body)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// An SMB relay event (5145 by the machine account FS01$ from a remote address) at the current time.
    fn plant_relay(&self, index: &str, source_ip: &str) {
        let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let doc = json!({
            "@timestamp": at,
            "event": {"category": ["network", "file"], "code": "5145", "kind": "event", "ingested": at},
            "host": {"name": "fs01", "ip": "10.1.0.5", "os": {"type": "windows"}},
            "winlog": {"computer_name": "fs01.corp.local", "channel": "Security"},
            "user": {"name": "FS01$", "domain": "CORP"},
            "source": {"ip": source_ip, "port": 50123}
        });
        let (status, resp) = self.call(Method::Post, &format!("/{index}/_doc?refresh=true"), Some(&doc));
        assert_eq!(status, 201, "planting an event: {resp}");
    }

    /// Rule names of the alerts for events from `source_ip`.
    fn alert_rule_names(&self, alias: &str, source_ip: &str) -> Vec<String> {
        self.call(Method::Post, &format!("/{alias}/_refresh?ignore_unavailable=true&allow_no_indices=true"), None);
        let body = json!({"size": 100, "query": {"term": {"source.ip": source_ip}}});
        let (status, resp) =
            self.call(Method::Post, &format!("/{alias}/_search?ignore_unavailable=true&allow_no_indices=true"), Some(&body));
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "{resp}");
        resp["hits"]["hits"]
            .as_array()
            .map(|h| h.iter().filter_map(|h| h["_source"]["kibana.alert.rule.name"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    }

    /// Ledger entries of one rule.
    fn runs_of(&self, ledger: &str, rule_id: &str) -> usize {
        self.call(Method::Post, &format!("/{ledger}/_refresh?ignore_unavailable=true"), None);
        let body = json!({"query": {"term": {"rule_id": rule_id}}});
        let (status, resp) = self.call(Method::Post, &format!("/{ledger}/_count?ignore_unavailable=true"), Some(&body));
        assert_eq!(status, 200, "{resp}");
        resp["count"].as_u64().unwrap_or(0) as usize
    }
}

/// A seed rule reading `index`, every `interval` over the last 20 s.
fn rule_text(file: &str, index: &str, interval: &str) -> String {
    let original = std::fs::read_to_string(Path::new(ROOT).join("rules").join(file)).expect("the seed rule");
    let mut replaced = 0;
    let text = original
        .lines()
        .map(|line| {
            if line.starts_with("index = ") {
                replaced += 1;
                format!("index = [\"{index}\"]")
            } else if line.starts_with("from = ") {
                replaced += 1;
                format!("from = \"now-20s\"\ninterval = \"{interval}\"")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(replaced, 2, "{file} has one `index` and one `from` line");
    text + "\n"
}

#[test]
fn a_running_daemon_reloads_added_changed_broken_and_removed_rules() {
    let started = Instant::now();
    let ix = Indices { tag: uuid::Uuid::new_v4().simple().to_string()[..12].to_string() };
    let node = Node {
        rt: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
        client: EsClient::new(&ConnectionConfig::for_url(common::es_url())).unwrap(),
    };
    let mapping = json!({
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {"properties": {
            "@timestamp": {"type": "date"},
            "event": {"properties": {"category": {"type": "keyword"}, "code": {"type": "keyword"},
                                      "kind": {"type": "keyword"}, "ingested": {"type": "date"}}},
            "host": {"properties": {"name": {"type": "keyword"}, "ip": {"type": "ip"},
                                     "os": {"properties": {"type": {"type": "keyword"}}}}},
            "winlog": {"properties": {"computer_name": {"type": "keyword"}, "channel": {"type": "keyword"}}},
            "user": {"properties": {"name": {"type": "keyword"}, "domain": {"type": "keyword"}}},
            "source": {"properties": {"ip": {"type": "ip"}, "port": {"type": "long"}}}
        }}
    });
    let (status, resp) = node.call(Method::Put, &format!("/{}", ix.events()), Some(&mapping));
    assert_eq!(status, 200, "{resp}");

    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join(SMB), rule_text(SMB, &ix.events(), "2s")).unwrap();
    let listen = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let config = dir.path().join("esdetect.toml");
    let config_text = |extra: &str| {
        format!(
            "rules_dir = \"rules\"\n\
             [elasticsearch]\nurls = [\"{}\"]\n\
             [alerts]\nindex = \"{}\"\n\
             [scheduler]\nlisten = \"{listen}\"\nindex_replicas = 0\nstate_index = \"{}\"\nledger_index = \"{}\"\n\
             run_timeout = \"10s\"\nshutdown_grace = \"3s\"\nwatch_rules = true\n{extra}",
            common::es_url(),
            ix.alias(),
            ix.state(),
            ix.ledger()
        )
    };
    std::fs::write(&config, config_text("")).unwrap();
    let log = dir.path().join("daemon.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esdetect"));
    cmd.args(["--no-color", "run", "--config"]).arg(&config);
    for (k, _) in std::env::vars() {
        if k.starts_with("ESDETECT_") {
            cmd.env_remove(k);
        }
    }
    let daemon = Daemon {
        child: cmd
            .env("ESDETECT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting the daemon"),
        log,
    };
    let log_path = daemon.log.clone();
    let ctx = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let limit = Duration::from_secs(30);
    let loaded = |n: f64| metric(&listen, "esdetect_rules_loaded") == Some(n);
    let reloads = |outcome: &str| metric(&listen, &format!("esdetect_reload_total{{outcome=\"{outcome}\"}}")).unwrap_or(-1.0);
    wait_for(limit, "/readyz answers 200", ctx, || (http_get(&listen, "/readyz").map(|r| r.0) == Some(200)).then_some(()));
    assert!(loaded(1.0), "one rule at start");
    assert_eq!((reloads("success"), reloads("rejected")), (0.0, 0.0));

    // 1. The rule runs: a detection becomes an alert with the rule's name.
    node.plant_relay(&ix.events(), "10.9.9.1");
    let names = wait_for(limit, "the first detection is alerted", ctx, || {
        Some(node.alert_rule_names(&ix.alias(), "10.9.9.1")).filter(|n| !n.is_empty())
    });
    assert_eq!(names, vec![SMB_NAME.to_string()]);
    eprintln!("[{:>5.1}s] rule A alerts", started.elapsed().as_secs_f64());

    // 2. Add a rule (the watch): it starts on its schedule and runs.
    std::fs::write(rules.join(KRB), rule_text(KRB, &ix.events(), "2s")).unwrap();
    wait_for(limit, "the added rule is loaded", ctx, || loaded(2.0).then_some(()));
    assert!(reloads("success") >= 1.0);
    assert_eq!(metric(&listen, "esdetect_reload_last_success"), Some(1.0));
    assert!(metric(&listen, "esdetect_reload_last_timestamp_seconds").unwrap_or(0.0) >= (Utc::now().timestamp() - 60) as f64);
    wait_for(limit, "the added rule has run", ctx, || (node.runs_of(&ix.ledger(), KRB_ID) > 0).then_some(()));
    eprintln!("[{:>5.1}s] rule B added and running", started.elapsed().as_secs_f64());

    // 3. Change rule A (name and interval, the watch): its task is restarted with the new schedule and
    // the new name is on its next alerts; its state and ledger continue.
    let runs_before = node.runs_of(&ix.ledger(), SMB_ID);
    assert!(runs_before > 0);
    let changed = rule_text(SMB, &ix.events(), "3s").replace(&format!("name = \"{SMB_NAME}\""), "name = \"SMB relay v2\"");
    std::fs::write(rules.join(SMB), &changed).unwrap();
    wait_for(limit, "the changed rule is rescheduled", ctx, || {
        ctx().lines().any(|l| l.contains("reload applied") && l.contains("rescheduled") && l.contains(SMB_ID)).then_some(())
    });
    node.plant_relay(&ix.events(), "10.9.9.2");
    let names = wait_for(limit, "the changed rule alerts under its new name", ctx, || {
        Some(node.alert_rule_names(&ix.alias(), "10.9.9.2")).filter(|n| !n.is_empty())
    });
    assert_eq!(names, vec!["SMB relay v2".to_string()]);
    // The execution that wrote it records its ledger entry when it ends: the same ledger continues.
    wait_for(limit, "the changed rule's runs are in its ledger", ctx, || (node.runs_of(&ix.ledger(), SMB_ID) > runs_before).then_some(()));
    assert!(loaded(2.0));
    eprintln!("[{:>5.1}s] rule A changed", started.elapsed().as_secs_f64());

    // 4. Break rule A (the watch): the reload is rejected with the error, the running set is kept.
    let rejected_before = reloads("rejected");
    std::fs::write(rules.join(SMB), changed.replace("event.code == \"5145\"", "event.code = \"5145\"")).unwrap();
    wait_for(limit, "the broken reload is rejected", ctx, || (reloads("rejected") > rejected_before).then_some(()));
    assert_eq!(metric(&listen, "esdetect_reload_last_success"), Some(0.0));
    assert!(loaded(2.0), "the running set is kept");
    let log_text = daemon.log();
    let error_line = log_text.lines().find(|l| l.contains("reload:") && l.contains(SMB)).unwrap_or_else(|| panic!("no error naming the file:\n{log_text}"));
    assert!(error_line.contains("=="), "the error says what to write: {error_line}");
    assert!(log_text.contains("reload rejected"), "{log_text}");
    node.plant_relay(&ix.events(), "10.9.9.3");
    let names = wait_for(limit, "the kept rule still alerts", ctx, || {
        Some(node.alert_rule_names(&ix.alias(), "10.9.9.3")).filter(|n| !n.is_empty())
    });
    assert_eq!(names, vec!["SMB relay v2".to_string()], "the last valid version keeps running");
    eprintln!("[{:>5.1}s] broken rule rejected", started.elapsed().as_secs_f64());

    // 5. Fix it (the watch), then disable rule B in the config file — not watched — and send SIGHUP:
    // B stops, A runs on.
    std::fs::write(rules.join(SMB), &changed).unwrap();
    wait_for(limit, "the fixed rule set is accepted", ctx, || (metric(&listen, "esdetect_reload_last_success") == Some(1.0)).then_some(()));
    std::thread::sleep(Duration::from_secs(2)); // one save can be seen as two bursts: let them settle
    let applied = reloads("success");
    std::fs::write(&config, config_text(&format!("[rules.\"{KRB_ID}\"]\nenabled = false\n"))).unwrap();
    std::thread::sleep(Duration::from_secs(2)); // the config file is not watched: no reload yet
    assert_eq!((reloads("success"), loaded(2.0)), (applied, true), "editing the config alone does not reload");
    daemon.signal(libc::SIGHUP);
    wait_for(limit, "SIGHUP removes the disabled rule", ctx, || loaded(1.0).then_some(()));
    assert!(daemon.log().contains("trigger=Sighup"), "{}", daemon.log());
    // Its task stops: no new ledger entries after a moment to finish its current run.
    std::thread::sleep(Duration::from_secs(3));
    let krb_runs = node.runs_of(&ix.ledger(), KRB_ID);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(node.runs_of(&ix.ledger(), KRB_ID), krb_runs, "a removed rule does not run");
    let smb_runs = node.runs_of(&ix.ledger(), SMB_ID);
    wait_for(limit, "rule A keeps running", ctx, || (node.runs_of(&ix.ledger(), SMB_ID) > smb_runs).then_some(()));
    assert_eq!(http_get(&listen, "/readyz").map(|r| r.0), Some(200), "{}", daemon.log());
    eprintln!("[{:>5.1}s] rule B removed by SIGHUP", started.elapsed().as_secs_f64());

    // SIGTERM: a clean exit.
    daemon.signal(libc::SIGTERM);
    let mut daemon = daemon;
    let exit = wait_for(Duration::from_secs(20), "the daemon exits", ctx, || daemon.child.try_wait().unwrap());
    let log_text = daemon.log();
    assert!(exit.success(), "exit status {exit:?}; log:\n{log_text}");
    assert!(!log_text.contains("panicked"), "{log_text}");
}
