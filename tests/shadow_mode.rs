//! Shadow mode against the live node: the scheduler runs a shadow-mode rule over four scheduled windows
//! (driven by a `ManualClock`, windows in the past), writes no alerts, and compares each window with
//! Kibana's alerts for it. Kibana's alerts index is filled the way Kibana would fill it — the alert
//! builder's documents for each window, with Kibana's execution timestamp just after the window end —
//! then tampered with: one result deleted (window 1), one foreign result added (window 2), one field
//! changed (window 3). The ledger's shadow documents, `esdetect status`'s source, and the
//! `esdetect_shadow_results_total` metric must show exactly: 7 both (one of them differing), 1
//! kibana_only, 1 esdetect_only.
//!
//! Isolation: private events, Kibana alerts, state and ledger indices, deleted at the end.
//! Needs ESDETECT_TEST_ES_URL (tests/common).

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, DurationRound, Utc};
use elasticsearch::http::Method;
use esdetect::config::{Config, ShadowSettings};
use esdetect::detect::scan::{evaluate_rules_on_cluster, AlertOutput};
use esdetect::detect::{prepare::prepare_rule, PreparedRule, RunOptions, Window as DetectWindow};
use esdetect::es::{ConnectionConfig, EsClient};
use esdetect::scheduler::executor::live_executor;
use esdetect::scheduler::reload::LiveRules;
use esdetect::scheduler::metrics::Metrics;
use esdetect::scheduler::shadow::{agreement, Shadow};
use esdetect::scheduler::{EsStateStore, GapPolicy, ManualClock, RuleSpec, RunStatus, Scheduler, SchedulerConfig, StateStore, StoreIndices};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const RULE_ID: &str = "shadow-test-rule";

fn client() -> EsClient {
    EsClient::new(&ConnectionConfig::for_url(common::es_url())).expect("client for the test node")
}

struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let indices = std::mem::take(&mut self.0);
        let url = common::es_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let c = EsClient::new(&ConnectionConfig::for_url(url)).ok()?;
                for i in indices {
                    let _ = c.raw(Method::Delete, &format!("/{i}"), &[("ignore_unavailable", "true".into())], None).await;
                }
                Some(())
            })
        })
        .join();
    }
}

fn ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn put(c: &EsClient, path: &str, body: &Value) -> Value {
    let (status, resp) = c.raw(Method::Put, path, &[], Some(body)).await.unwrap();
    assert!((200..300).contains(&status), "PUT {path}: {resp}");
    resp
}

async fn wait_until<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + StdDuration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shadow_windows_count_deleted_foreign_and_changed_kibana_alerts() {
    let c = client();
    let events = common::unique_index_name("shadow-events");
    let kibana = common::unique_index_name("shadow-kibana-alerts");
    let state = common::unique_index_name("shadow-state");
    let ledger = common::unique_index_name("shadow-ledger");
    let alias = common::unique_index_name("shadow-own-alerts");
    let _cleanup = Cleanup(vec![events.clone(), kibana.clone(), state.clone(), ledger.clone(), alias.clone()]);

    put(&c, &format!("/{events}"), &json!({"mappings": {"properties": {
        "@timestamp": {"type": "date"},
        "event": {"properties": {"category": {"type": "keyword"}}},
        "host": {"properties": {"name": {"type": "keyword"}}},
        "process": {"properties": {"name": {"type": "keyword"}}}
    }}}))
    .await;
    let template = esdetect::alert::mapping::alerts_index_template(&[kibana.clone()]);
    put(&c, &format!("/{kibana}"), &json!({"mappings": template["template"]["mappings"]})).await;

    // Four one-minute windows ending at base + k minutes (k = 0..=3), two matching events in each.
    let base = Utc::now().duration_trunc(Duration::minutes(1)).unwrap() - Duration::minutes(20);
    let mut docs = Vec::new();
    for k in 0..=3i64 {
        for (host, sec) in [("a", 20), ("b", 40)] {
            let at = base + Duration::minutes(k - 1) + Duration::seconds(sec);
            docs.push((events.clone(), json!({"@timestamp": ms(at), "event": {"category": "process"},
                "host": {"name": format!("h{k}{host}")}, "process": {"name": "evil.exe"}})));
        }
    }
    assert_eq!(esdetect::simulate::lab::index_events(&c, &docs).await.unwrap(), docs.len());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rule.toml");
    std::fs::write(
        &path,
        format!(
            "[metadata]\nmaturity = \"production\"\n\n[rule]\nrule_id = \"{RULE_ID}\"\nname = \"Shadow test\"\n\
             description = \"d\"\nrisk_score = 21\nseverity = \"low\"\nindex = [\"{events}\"]\nlanguage = \"eql\"\n\
             type = \"eql\"\ninterval = \"1m\"\nfrom = \"now-1m\"\nquery = '''\nprocess where process.name == \"evil.exe\"\n'''\n"
        ),
    )
    .unwrap();
    let mut config = Config::default();
    config.alerts.index = alias.clone();
    let rule: PreparedRule = prepare_rule(esdetect::rules::load_file(&path).unwrap(), &config).unwrap();
    let opts = RunOptions { page_size: 100, ..RunOptions::default() };

    // Kibana's alerts: each window's documents, persisted 500 ms after the window end.
    let mut kibana_lines = String::new();
    let mut deleted = None;
    for k in 0..=3i64 {
        let tick = base + Duration::minutes(k);
        let window = DetectWindow { from: tick - Duration::minutes(1), to: tick };
        let out = evaluate_rules_on_cluster(&c, &[(&rule, window)], &opts, &|| tick, AlertOutput::Return).await;
        let mut alerts: Vec<(String, Value)> = out[0].groups.iter().flatten().map(|d| (d.id.clone(), d.source.clone())).collect();
        assert_eq!(alerts.len(), 2, "window {k}: {:?}", out[0].summary);
        alerts.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, doc) in alerts.iter_mut() {
            doc["kibana.alert.rule.execution.timestamp"] = json!(ms(tick + Duration::milliseconds(500)));
            doc["kibana.alert.rule.execution.uuid"] = json!(format!("kibana-exec-{k}"));
        }
        match k {
            1 => deleted = Some(alerts.remove(0).0), // Kibana never wrote it
            2 => {
                let mut foreign = alerts[0].1.clone();
                foreign["kibana.alert.ancestors"] = json!([{"id": "foreign-event", "type": "event", "index": events, "depth": 0}]);
                alerts.push(("foreign-alert".into(), foreign));
            }
            3 => alerts[0].1["kibana.alert.severity"] = json!("critical"),
            _ => {}
        }
        for (id, doc) in alerts {
            kibana_lines.push_str(&format!("{}\n{}\n", json!({"create": {"_index": kibana, "_id": id}}), doc));
        }
    }
    let body = common::bulk(None, kibana_lines.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect()).await;
    assert_eq!(body["errors"], json!(false), "{body}");
    assert!(deleted.is_some());

    // The daemon: shadow mode, comparing 1 s after each window run.
    let store = Arc::new(EsStateStore::new(client(), StoreIndices { state_index: state.clone(), ledger_index: ledger.clone(), replicas: Some(0) }));
    let shadow = Shadow::new(client(), ShadowSettings { delay: StdDuration::from_secs(1), kibana_alerts: kibana.clone() }, ledger.clone());
    let metrics = Arc::new(Metrics::new());
    let ids: HashSet<String> = [RULE_ID.to_string()].into();
    let live = Arc::new(LiveRules::new(vec![rule.clone()], opts.clone()));
    let exec = live_executor(client(), live, Some(metrics.clone()), Some((shadow, ids)));
    let clock = ManualClock::new(base + Duration::seconds(1));
    let sched = Scheduler::new(Arc::new(clock.clone()), store.clone(), exec, SchedulerConfig::new("shadow-replica"));
    let mut spec = RuleSpec::every(RULE_ID, Duration::minutes(1), Duration::minutes(1)).unwrap();
    spec.gap_policy = GapPolicy::Backfill { max_backfill: Duration::hours(1) };
    let token = CancellationToken::new();
    let task = {
        let (sched, token) = (sched.clone(), token.clone());
        tokio::spawn(async move { sched.run(vec![spec], token).await })
    };
    for k in 0..=3i64 {
        let tick = base + Duration::minutes(k);
        clock.set(tick + Duration::seconds(1));
        let s = store.clone();
        wait_until(30, &format!("tick {tick} is recorded"), || {
            let s = s.clone();
            async move { s.get(RULE_ID).await.ok().flatten().and_then(|v| v.value.last_window_end) == Some(tick) }
        })
        .await;
    }
    // All four comparisons recorded.
    let c2 = client();
    let ledger2 = ledger.clone();
    wait_until(30, "four shadow results are in the ledger", || {
        let (c, l) = (c2.clone(), ledger2.clone());
        async move {
            let _ = c.raw(Method::Post, &format!("/{l}/_refresh"), &[], None).await;
            agreement(&c, &l).await.ok().and_then(|a| a.get(RULE_ID).map(|a| a.windows)) == Some(4)
        }
    })
    .await;
    token.cancel();
    tokio::time::timeout(StdDuration::from_secs(20), task).await.expect("scheduler stops").unwrap();

    // Ledger: per window and in total.
    let totals = agreement(&c, &ledger).await.unwrap()[RULE_ID].clone();
    assert_eq!((totals.both, totals.kibana_only, totals.esdetect_only, totals.differing), (7, 1, 1, 1), "{totals:?}");
    let body = json!({"size": 10, "query": {"term": {"record": "shadow"}}, "sort": [{"window_to": "asc"}]});
    let (_, resp) = c.raw(Method::Post, &format!("/{ledger}/_search"), &[], Some(&body)).await.unwrap();
    let per_window: Vec<(u64, u64, u64, u64)> = resp["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let s = &h["_source"];
            (s["both"].as_u64().unwrap(), s["kibana_only"].as_u64().unwrap(), s["esdetect_only"].as_u64().unwrap(), s["differing"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(per_window, vec![(2, 0, 0, 0), (1, 0, 1, 0), (2, 1, 0, 0), (2, 0, 0, 1)]);
    let divergent: Vec<String> = resp["hits"]["hits"][1]["_source"]["divergences"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(divergent, vec![deleted.unwrap()]);
    assert_eq!(resp["hits"]["hits"][2]["_source"]["divergences"][0]["id"], json!("foreign-alert"));
    assert_eq!(resp["hits"]["hits"][3]["_source"]["divergences"][0]["fields"], json!(["kibana.alert.severity"]));

    // Metrics: the same counts.
    let text = metrics.render();
    for (outcome, n) in [("both", 7), ("kibana_only", 1), ("esdetect_only", 1)] {
        let line = format!("esdetect_shadow_results_total{{outcome=\"{outcome}\",rule=\"{RULE_ID}\"}} {n}");
        assert!(text.contains(&line), "missing `{line}` in:\n{text}");
    }

    // Executions are ordinary ledger entries (the shadow documents do not disturb them); nothing written.
    let runs = store.recent_runs(Some(RULE_ID), 100).await.unwrap();
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded && r.counts.alerts_written == 0), "{runs:?}");
    let (status, _) = c.raw(Method::Get, &format!("/{alias}/_count"), &[], None).await.unwrap();
    assert_eq!(status, 404, "a shadow rule must not create or write its alerts alias");

    // `esdetect status` (the real binary, config with `mode = "shadow"` and `[shadow]`): the agreement.
    let cfg = dir.path().join("esdetect.toml");
    std::fs::write(
        &cfg,
        format!(
            "rules_dir = {rules:?}\n[elasticsearch]\nurls = [{url:?}]\nmax_retries = 0\n\n[scheduler]\nstate_index = {state:?}\n\
             ledger_index = {ledger:?}\n\n[shadow]\ndelay = \"1s\"\nkibana_alerts = {kibana:?}\n\n[rules.\"{RULE_ID}\"]\nmode = \"shadow\"\n",
            rules = dir.path().display().to_string(),
            url = common::es_url()
        ),
    )
    .unwrap();
    let out = common::esdetect(dir.path(), &["--config", cfg.to_str().unwrap(), "status", "--format", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("shadow").is_some())
        .unwrap_or_else(|| panic!("no shadow line in {stdout}"));
    assert_eq!(line["shadow"]["rule_id"], json!(RULE_ID));
    assert_eq!(line["shadow"]["totals"], json!({"windows": 4, "both": 7, "kibana_only": 1, "esdetect_only": 1, "differing": 1}));
    let out = common::esdetect(dir.path(), &["--config", cfg.to_str().unwrap(), "--no-color", "status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("shadow rule") && table.contains("77.8%"), "{table}");
}

/// A shadow-mode rule writes no alerts in a manual run either: `run --once` and `backfill` skip it and
/// say so (here it is the only rule, so nothing is left to run and the cluster is never contacted).
#[test]
fn manual_runs_skip_shadow_rules_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/credential_access_machine_account_smb_relay.toml");
    let rule_id = esdetect::rules::load_file(&rules).unwrap().rule_id;
    let cfg = dir.path().join("esdetect.toml");
    std::fs::write(
        &cfg,
        format!("rules_dir = {:?}\n[elasticsearch]\nurls = [\"http://127.0.0.1:9\"]\n\n[rules.\"{rule_id}\"]\nmode = \"shadow\"\n", rules.to_str().unwrap()),
    )
    .unwrap();
    for args in [vec!["run", "--once"], vec!["backfill", "--from", "2026-05-20T09:00:00Z", "--to", "2026-05-20T10:00:00Z"]] {
        let mut all = vec!["--config", cfg.to_str().unwrap(), "--no-color"];
        all.extend(args.iter());
        let out = common::esdetect(dir.path(), &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("{rule_id}: in shadow mode")) && stderr.contains("writes no alerts"), "{args:?}: {stderr}");
        assert!(!stderr.contains("cannot reach"), "{args:?} must not contact the cluster: {stderr}");
    }
}
