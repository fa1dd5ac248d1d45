//! The daemon rides out a cluster outage: the node is stopped for several rule intervals and started
//! again, and the daemon (the real binary, `esdetect run`) neither crashes nor loses time: it reports not
//! ready while the node is gone, recovers on its own, backfills the windows it missed, and every planted
//! detection ends up in the alerts alias exactly once.
//!
//! The test runs its OWN Elasticsearch node (`scripts/elasticsearch.sh` with `ESDETECT_ES_STATE` pointing
//! into a temporary directory), because it stops it; the shared test node is never touched. It does not
//! need `ESDETECT_TEST_ES_URL`, but it does need what `scripts/elasticsearch.sh start` needs (a JDK, and
//! Maven with the Elasticsearch artifacts cached unless this checkout's `.es/home` can be copied): without
//! them it fails, it never skips.
//!
//! Why a gate: the events that only a backfill can find (their `event.ingested` lies inside the outage)
//! can be indexed only once the node is back, and the daemon must not run the missed windows before they
//! are there, or the test would race. So the daemon reaches the node through a small TCP forwarder that
//! the test closes just before stopping the node and opens once those events are indexed. For the daemon
//! the outage is one stretch of refused connections (the node was really stopped and restarted meanwhile,
//! and may come back on another port, which the gate hides).
//!
//! Timing: the rule runs every 10 s over `now-20s` (seconds in `interval`/`from` are accepted by
//! `esdetect::rules`). The daemon's store backoff grows to 30-60 s during a long outage, which bounds the
//! wait after recovery; the whole test takes about 1.5-2 minutes.

#[path = "common/ids.rs"]
#[allow(dead_code)] // this binary needs only the event alert id
mod ids;
#[path = "common/daemon.rs"]
#[allow(dead_code)] // the daemon helpers without the node-facing ones of `common`
mod daemon;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use elasticsearch::http::Method;
use esdetect::es::{ConnectionConfig, EsClient};
use esdetect::scheduler::{LedgerEntry, RuleState, RunStatus, WindowKind};
use daemon::{http_get, wait_for, Daemon};
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const RULE_ID: &str = "d84a11c0-eb12-4e7d-8a0a-718e38351e29";
const RULE_UUID: &str = "0b7e2c55-7a43-4d1e-9c2f-3f4a5b6c7d8e";
const EVENTS: &str = "outage-events";
const ALIAS: &str = "outage-alerts-default";
/// How long the node stays stopped (several 10 s intervals).
const NODE_DOWN: StdDuration = StdDuration::from_secs(25);

// --- the private node ------------------------------------------------------------------------------------

/// A node of our own, in `state` (a directory inside the test's temporary directory). Dropping it stops
/// the node, also when the test panics.
struct PrivateNode {
    state: PathBuf,
}

impl PrivateNode {
    /// Runs `scripts/elasticsearch.sh <cmd>` on this node's state directory; panics with its output on failure.
    fn script(&self, cmd: &str) -> String {
        let out = Command::new("bash")
            .arg(Path::new(ROOT).join("scripts/elasticsearch.sh"))
            .arg(cmd)
            .env("ESDETECT_ES_STATE", &self.state)
            .env("ESDETECT_ES_HEAP", "512m")
            // Never the shared node's 9200: if that node is restarted while this one runs, it must get 9200 back.
            .env("ESDETECT_ES_PORTS", "9250-9299")
            .env("ESDETECT_ES_START_TIMEOUT", "180")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/elasticsearch.sh {cmd}: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "`ESDETECT_ES_STATE={} scripts/elasticsearch.sh {cmd}` failed ({}): this test needs its own \
             Elasticsearch node (a JDK 17+, and Maven with the Elasticsearch artifacts).\n{stderr}",
            self.state.display(),
            out.status
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Starts the node (data kept from a previous start) and returns its URL.
    fn start(&self) -> String {
        let printed = self.script("start");
        let url = std::fs::read_to_string(self.state.join("url")).expect("the script records the node's URL");
        assert_eq!(printed.lines().last(), Some(url.trim()), "start prints the URL it records");
        url.trim().to_string()
    }

    fn stop(&self) {
        self.script("stop");
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        // Best effort and quiet: the test may already have stopped it.
        let _ = Command::new("bash")
            .arg(Path::new(ROOT).join("scripts/elasticsearch.sh"))
            .arg("stop")
            .env("ESDETECT_ES_STATE", &self.state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Copies the Elasticsearch home this checkout already assembled (jars, config, plugins) into `home`, so
/// the private node does not run Maven again. Skipped when there is none; the script then assembles it
/// (and re-assembles it anyway if the copy was built from other inputs).
fn seed_home(home: &Path) {
    let assembled = Path::new(ROOT).join(".es/home");
    if !assembled.join(".stamp").is_file() {
        return;
    }
    fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let target = to.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                copy_dir(&entry.path(), &target)?;
            } else {
                std::fs::copy(entry.path(), &target)?;
            }
        }
        Ok(())
    }
    let copied = ["lib", "modules", "plugins", "config"].iter().try_for_each(|d| copy_dir(&assembled.join(d), &home.join(d)));
    if copied.is_ok() {
        let _ = std::fs::copy(assembled.join(".stamp"), home.join(".stamp"));
    } else {
        // A partial copy without a stamp is simply assembled again by the script.
        let _ = std::fs::remove_file(home.join(".stamp"));
    }
}

// --- the gate between the daemon and the node ------------------------------------------------------------

/// A TCP forwarder on 127.0.0.1: connections go to `upstream` while it is set; while it is `None` they are
/// closed at once (the client sees a failed connection, as with a stopped node).
struct Gate {
    addr: SocketAddr,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Gate {
    fn start(upstream: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the gate");
        listener.set_nonblocking(true).expect("non-blocking gate listener");
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(Some(upstream)));
        let stop = Arc::new(AtomicBool::new(false));
        let (up, st) = (upstream.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((down, _)) => {
                        let target = *up.lock().unwrap();
                        match target {
                            Some(target) => {
                                std::thread::spawn(move || forward(down, target));
                            }
                            None => drop(down),
                        }
                    }
                    Err(_) => std::thread::sleep(StdDuration::from_millis(10)),
                }
            }
        });
        Gate { addr, upstream, stop, thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, upstream: Option<SocketAddr>) {
        *self.upstream.lock().unwrap() = upstream;
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies bytes both ways until either side closes.
fn forward(down: TcpStream, target: SocketAddr) {
    let _ = down.set_nonblocking(false);
    let Ok(up) = TcpStream::connect_timeout(&target, StdDuration::from_secs(2)) else { return };
    let (Ok(mut down_r), Ok(mut up_w)) = (down.try_clone(), up.try_clone()) else { return };
    let to_node = std::thread::spawn(move || {
        let _ = std::io::copy(&mut down_r, &mut up_w);
        let _ = up_w.shutdown(std::net::Shutdown::Write);
    });
    let (mut up_r, mut down_w) = (up, down);
    let _ = std::io::copy(&mut up_r, &mut down_w);
    let _ = down_w.shutdown(std::net::Shutdown::Both);
    let _ = up_r.shutdown(std::net::Shutdown::Both);
    let _ = to_node.join();
}

fn socket_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap_or_else(|e| panic!("node URL {url}: {e}"))
}

// --- the daemon ----------------------------------------------------------------------------------------

// --- events, alerts, ledger ------------------------------------------------------------------------------

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A 5145 share access on fs01 by its own machine account FS01$, from a remote address: the SMB relay
/// pattern the rule looks for. `at` is both `@timestamp` and `event.ingested` (the rule's time field).
fn relay_event(at: DateTime<Utc>, source_ip: &str) -> Value {
    json!({
        "@timestamp": ts(at),
        "event": {"category": ["network", "file"], "code": "5145", "kind": "event", "ingested": ts(at)},
        "host": {"name": "fs01", "ip": "10.1.0.5", "os": {"type": "windows"}},
        "winlog": {"computer_name": "fs01.corp.local", "channel": "Security",
                   "event_data": {"ShareName": "\\\\*\\IPC$", "RelativeTargetName": "spoolss"}},
        "user": {"name": "FS01$", "domain": "CORP"},
        "source": {"ip": source_ip, "port": 50123},
        "process": {"pid": 4}
    })
}

/// Kibana's event alert id (alert-documents spec §9), computed independently of `esdetect::alert`.
fn alert_id(index: &str, id: &str) -> String {
    ids::event_alert_id(index, id, "default", RULE_UUID)
}

struct Node {
    rt: tokio::runtime::Runtime,
    client: EsClient,
}

impl Node {
    fn new(url: &str) -> Node {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut cfg = ConnectionConfig::for_url(url);
        cfg.request_timeout = StdDuration::from_secs(30);
        Node { rt, client: EsClient::new(&cfg).expect("client for the private node") }
    }

    fn call(&self, method: Method, path: &str, query: &[(&str, String)], body: Option<&Value>) -> (u16, Value) {
        self.rt
            .block_on(self.client.raw(method, path, query, body))
            .unwrap_or_else(|e| panic!("{path} on the private node: {e}"))
    }

    /// Indexes one event (refreshed) and returns the `_id` the node gave it.
    fn plant(&self, doc: &Value) -> String {
        let (status, resp) = self.call(Method::Post, &format!("/{EVENTS}/_doc"), &[("refresh", "true".into())], Some(doc));
        assert_eq!(status, 201, "planting an event: {resp}");
        resp["_id"].as_str().expect("_id of the planted event").to_string()
    }

    /// Alert `_id`s in the alias, duplicates kept (none while the alias does not exist yet).
    fn alert_ids(&self) -> Vec<String> {
        let q = [("ignore_unavailable", "true".to_string()), ("allow_no_indices", "true".to_string())];
        self.call(Method::Post, &format!("/{ALIAS}/_refresh"), &q, None);
        let body = json!({"size": 1000, "query": {"match_all": {}}});
        let (status, resp) = self.call(Method::Post, &format!("/{ALIAS}/_search"), &q, Some(&body));
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "searching the alerts: {resp}");
        resp["hits"]["hits"].as_array().map(|hits| hits.iter().filter_map(|h| h["_id"].as_str().map(String::from)).collect()).unwrap_or_default()
    }
}

/// `esdetect status --format json`: the rule's state and its ledger entries (newest first).
fn esdetect_status(config: &Path) -> (Option<RuleState>, Vec<LedgerEntry>) {
    let out = Command::new(env!("CARGO_BIN_EXE_esdetect"))
        .args(["status", "--format", "json", "--limit", "500", "--config"])
        .arg(config)
        .env_remove("ESDETECT_ES_URL")
        .output()
        .expect("running esdetect status");
    assert!(out.status.success(), "esdetect status failed: {}", String::from_utf8_lossy(&out.stderr));
    let (mut state, mut runs) = (None, Vec::new());
    for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("status line {line}: {e}"));
        if let Some(s) = v.get("state") {
            state = Some(serde_json::from_value(s.clone()).expect("a state document"));
        } else if let Some(r) = v.get("run") {
            runs.push(serde_json::from_value(r.clone()).expect("a ledger entry"));
        }
    }
    (state, runs)
}

fn describe(runs: &[LedgerEntry]) -> String {
    let mut sorted: Vec<&LedgerEntry> = runs.iter().collect();
    sorted.sort_by_key(|e| e.started_at);
    sorted
        .iter()
        .map(|e| {
            format!(
                "  {} {:>16} skipped={} windows={}/{} {} → {} kinds={:?} alerts={} dups={} gap_ms={:?} {}",
                e.started_at.format("%H:%M:%S%.3f"),
                e.status.to_string(),
                e.skipped_ticks,
                e.windows_completed,
                e.windows.len(),
                e.window_from.map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_default(),
                e.window_to.map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_default(),
                e.windows.iter().map(|w| w.kind).collect::<Vec<_>>(),
                e.counts.alerts_written,
                e.counts.duplicates,
                e.gap_ms,
                e.message.chars().take(120).collect::<String>(),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// --- the test --------------------------------------------------------------------------------------------

#[test]
fn daemon_recovers_from_a_node_outage_and_backfills_the_missed_windows() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temporary directory");
    let node = PrivateNode { state: dir.path().join("es") };
    seed_home(&node.state.join("home"));
    let url = node.start();
    eprintln!("[{:>5.1}s] private node at {url}", started.elapsed().as_secs_f64());
    let es = Node::new(&url);
    assert_ne!(url, "http://127.0.0.1:9200", "the private node must not be the shared one");

    // ECS-typed events index.
    let mapping = json!({
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {"properties": {
            "@timestamp": {"type": "date"},
            "event": {"properties": {"category": {"type": "keyword"}, "code": {"type": "keyword"},
                                      "kind": {"type": "keyword"}, "ingested": {"type": "date"}}},
            "host": {"properties": {"name": {"type": "keyword"}, "ip": {"type": "ip"},
                                     "os": {"properties": {"type": {"type": "keyword"}}}}},
            "winlog": {"properties": {"computer_name": {"type": "keyword"}, "channel": {"type": "keyword"},
                                       "event_data": {"properties": {"ShareName": {"type": "keyword"},
                                                                      "RelativeTargetName": {"type": "keyword"}}}}},
            "user": {"properties": {"name": {"type": "keyword"}, "domain": {"type": "keyword"}}},
            "source": {"properties": {"ip": {"type": "ip"}, "port": {"type": "long"}}},
            "process": {"properties": {"pid": {"type": "long"}}}
        }}
    });
    let (status, resp) = es.call(Method::Put, &format!("/{EVENTS}"), &[], Some(&mapping));
    assert_eq!(status, 200, "creating {EVENTS}: {resp}");

    // The SMB relay rule, on the test index, every 10 s over the last 20 s.
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let original = std::fs::read_to_string(Path::new(ROOT).join("rules/credential_access_machine_account_smb_relay.toml"))
        .expect("the seed rule");
    let mut replaced = (0, 0);
    let text: String = original
        .lines()
        .map(|line| {
            if line.starts_with("index = ") {
                replaced.0 += 1;
                format!("index = [\"{EVENTS}\"]")
            } else if line.starts_with("from = ") {
                replaced.1 += 1;
                "from = \"now-20s\"\ninterval = \"10s\"".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(replaced, (1, 1), "the seed rule has one `index` and one `from` line");
    assert!(!original.contains("\ninterval ="), "the seed rule sets no interval of its own");
    std::fs::write(rules.join("smb_relay.toml"), text).unwrap();

    // The daemon reaches the node through the gate.
    let gate = Gate::start(socket_addr(&url));
    let listen = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let config = dir.path().join("esdetect.toml");
    std::fs::write(
        &config,
        format!(
            "rules_dir = \"rules\"\n\
             [elasticsearch]\nurls = [\"{}\"]\nrequest_timeout = \"3s\"\nmax_retries = 1\n\
             [alerts]\nindex = \"outage-alerts-{{space}}\"\n\
             [scheduler]\nlisten = \"{listen}\"\nindex_replicas = 0\nbackfill_gaps = true\nrun_timeout = \"5s\"\n\
             lease_margin = \"2s\"\nshutdown_grace = \"3s\"\n\
             [rules.\"{RULE_ID}\"]\nuuid = \"{RULE_UUID}\"\n",
            gate.url()
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = Daemon {
        child: Command::new(env!("CARGO_BIN_EXE_esdetect"))
            .args(["run", "--config"])
            .arg(&config)
            .env("ESDETECT_LOG", "info")
            .env_remove("ESDETECT_ES_URL")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting the daemon"),
        log,
    };
    let readyz = |code: u16| http_get(&listen, "/readyz").map(|r| r.0) == Some(code);
    wait_for(StdDuration::from_secs(30), "/readyz answers 200", || daemon.log(), || readyz(200).then_some(()));

    // Before the outage: one detection, found by a scheduled window.
    let mut expected = Vec::new();
    let before_id = es.plant(&relay_event(Utc::now(), "10.9.9.1"));
    expected.push(alert_id(EVENTS, &before_id));
    wait_for(StdDuration::from_secs(40), "the pre-outage detection is alerted", || daemon.log(), || {
        es.alert_ids().contains(&expected[0]).then_some(())
    });
    eprintln!("[{:>5.1}s] pre-outage alert written", started.elapsed().as_secs_f64());

    // The outage: the gate closes and the node stops.
    gate.set(None);
    node.stop();
    let outage_start = Utc::now();
    wait_for(StdDuration::from_secs(30), "/readyz reports 503 (not ready)", || daemon.log(), || readyz(503).then_some(()));
    let (_, why) = http_get(&listen, "/readyz").unwrap_or_default();
    eprintln!("[{:>5.1}s] node stopped; /readyz: {}", started.elapsed().as_secs_f64(), why.trim());
    let down_until = outage_start + Duration::from_std(NODE_DOWN).unwrap();
    while Utc::now() < down_until {
        std::thread::sleep(StdDuration::from_millis(250));
        assert!(matches!(daemon.child.try_wait(), Ok(None)), "the daemon exited during the outage; log:\n{}", daemon.log());
    }
    assert_eq!(http_get(&listen, "/healthz").map(|r| r.0), Some(200), "the process stays healthy while the cluster is gone");
    assert!(readyz(503), "still not ready while the node is down");

    // The node returns (data kept). Before the daemon can see it, plant detections whose time lies inside
    // the outage: only a backfill over the missed windows can find them.
    let url2 = node.start();
    let es = Node::new(&url2);
    let outage_ids: Vec<String> = [3, 11, 19]
        .iter()
        .enumerate()
        .map(|(i, s)| es.plant(&relay_event(outage_start + Duration::seconds(*s), &format!("10.9.9.{}", i + 2))))
        .collect();
    expected.extend(outage_ids.iter().map(|id| alert_id(EVENTS, id)));
    assert_eq!(es.alert_ids(), vec![expected[0].clone()], "nothing reached the daemon while the gate was closed");
    gate.set(Some(socket_addr(&url2)));
    let outage_end = Utc::now();
    eprintln!(
        "[{:>5.1}s] node back at {url2}; gate open after {:.1}s of outage",
        started.elapsed().as_secs_f64(),
        (outage_end - outage_start).num_milliseconds() as f64 / 1000.0
    );
    wait_for(StdDuration::from_secs(30), "/readyz answers 200 again", || daemon.log(), || readyz(200).then_some(()));

    // Recovery: the daemon's backoff after a long outage is up to 60 s, plus the backfill itself.
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    let ids = wait_for(StdDuration::from_secs(90), "every planted detection is alerted", || daemon.log(), || {
        let mut ids = es.alert_ids();
        ids.sort();
        (ids == expected_sorted || ids.len() > expected.len()).then_some(ids)
    });
    eprintln!("[{:>5.1}s] all {} alerts present", started.elapsed().as_secs_f64(), ids.len());
    let metrics = http_get(&listen, "/metrics").map(|r| r.1).unwrap_or_default();
    // Let the catch-up finish (the ledger is written after the last window of an execution).
    wait_for(StdDuration::from_secs(30), "the rule's windows reach past the outage", || daemon.log(), || {
        let (state, _) = esdetect_status(&config);
        state.and_then(|s| s.last_window_end).filter(|end| *end >= outage_end).map(|_| ())
    });

    // SIGTERM → exit 0.
    // SAFETY: sending a signal to our own child process; no memory is involved.
    assert_eq!(unsafe { libc::kill(daemon.child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + StdDuration::from_secs(15);
    let exit = loop {
        if let Some(s) = daemon.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon did not exit within 15 s of SIGTERM; log:\n{}", daemon.log());
        std::thread::sleep(StdDuration::from_millis(100));
    };
    let log = daemon.log();
    assert!(exit.success(), "exit status {exit:?}; log:\n{log}");
    assert!(!log.contains("panicked"), "the daemon panicked; log:\n{log}");

    // 1. Every planted detection exactly once: distinct ids == documents == planted.
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (4, 4), "alerts: {ids:?}");
    assert_eq!(ids, expected_sorted, "the alerts are exactly the planted detections");

    // 2. The ledger: completed windows cover the time from before the outage to after it without a hole.
    es.call(Method::Post, "/_refresh", &[], None);
    let (state, runs) = esdetect_status(&config);
    let state = state.expect("the rule has a state document");
    let table = describe(&runs);
    eprintln!("ledger:\n{table}");
    assert_eq!(state.lease_owner, None, "lease released at shutdown");
    let mut windows: Vec<_> = runs
        .iter()
        .filter(|e| !e.skipped_tick && matches!(e.status, RunStatus::Succeeded | RunStatus::PartialFailure))
        .inspect(|e| assert_eq!(e.windows_completed as usize, e.windows.len(), "{e:?}"))
        .flat_map(|e| e.windows.iter().copied())
        .collect();
    windows.sort_by_key(|w| (w.range.from, w.range.to));
    let last_before = windows.iter().filter(|w| w.range.to <= outage_start).map(|w| w.range.to).max().expect("a window ran before the outage");
    let first_after = windows.iter().filter(|w| w.range.to >= outage_end).map(|w| w.range.to).min().expect("a window ran after the outage");
    let mut covered_to = windows[0].range.to;
    for w in &windows {
        assert!(w.range.from <= covered_to, "hole in the queried time from {covered_to} to {}:\n{table}", w.range.from);
        covered_to = covered_to.max(w.range.to);
    }
    assert!(windows[0].range.to <= last_before && covered_to >= first_after, "coverage {} → {covered_to}:\n{table}", windows[0].range.from);
    // The missed windows were run after the recovery, as a backfill (several windows in one execution),
    // and those windows hold every event of the outage.
    let recovery: Vec<_> = runs
        .iter()
        .filter(|e| !e.skipped_tick && e.started_at >= outage_end && e.status == RunStatus::Succeeded)
        .collect();
    assert!(
        recovery.iter().any(|e| e.windows.len() > 1 && e.windows.iter().any(|w| w.kind == WindowKind::Backfill)),
        "no backfill execution after the outage:\n{table}"
    );
    for s in [3, 11, 19] {
        let t = outage_start + Duration::seconds(s);
        assert!(
            recovery.iter().flat_map(|e| &e.windows).any(|w| w.range.from <= t && t <= w.range.to),
            "no window run after the outage holds the event at {t}:\n{table}"
        );
    }
    assert!(runs.iter().all(|e| e.gap_ms.unwrap_or(0) == 0), "a gap was reported:\n{table}");

    // 3. What the outage left in the record: no execution could even claim the rule while the store was
    //    unreachable, so there is no failed run for the outage (only if the node died in the middle of
    //    one, which the table above would show); the ticks that passed meanwhile are recorded as skipped
    //    once the store answers again, and the store errors are counted.
    let skipped: Vec<_> = runs.iter().filter(|e| e.skipped_tick).collect();
    assert_eq!(skipped.len(), 1, "one record of the ticks skipped during the outage:\n{table}");
    assert_eq!(skipped[0].status, RunStatus::Skipped);
    assert!(skipped[0].skipped_ticks >= 2, "a {NODE_DOWN:?}+ outage spans several 10 s ticks:\n{table}");
    assert!(skipped[0].message.contains("unreachable"), "{}", skipped[0].message);
    assert!(skipped[0].scheduled_at >= outage_start - Duration::seconds(10) && skipped[0].scheduled_at <= outage_end, "{table}");
    let store_errors = metrics
        .lines()
        .find_map(|l| l.strip_prefix("esdetect_state_store_errors_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no store error counter in /metrics:\n{metrics}"));
    assert!(store_errors >= 1.0, "store errors during the outage are counted: {store_errors}");
    assert!(log.contains("cannot reach the state store"), "the outage is logged; log:\n{log}");
    // One line per change plus a summary a minute, not one per rule per retry (about 115 a minute before).
    let warn_lines = log.lines().filter(|l| l.contains("WARN")).count();
    assert!(warn_lines <= 30, "{warn_lines} WARN lines for a one-to-two-minute outage; log:\n{log}");

    node.stop();
    drop(gate);
    eprintln!("[{:>5.1}s] done", started.elapsed().as_secs_f64());
}
