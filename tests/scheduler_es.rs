//! The daemon against the live node: the Elasticsearch state store's concurrency control, several
//! replicas sharing rules (each window once, no duplicate alerts), takeover after a crashed owner,
//! complete vs Kibana sequence mode across windows, an unreachable cluster, and the real binary
//! (`/readyz`, `/metrics`, SIGTERM → exit 0).
//!
//! Scheduler tests drive a `ManualClock`: windows lie in the past (so the planted events are already
//! there) and time advances one tick at a time once the previous tick is recorded, so minutes of
//! schedule take a second or two of real time.

mod common;

use common::daemon::http_get;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, DurationRound, TimeZone, Utc};
use elasticsearch::http::Method;
use esdetect::config::Config;
use esdetect::detect::{prepare::prepare_rule, PreparedRule, RunOptions};
use esdetect::es::{ConnectionConfig, EsClient};
use esdetect::scheduler::executor::{detect_executor, run_request};
use esdetect::scheduler::lease::{try_claim, Claim};
use esdetect::scheduler::{
    Executor, GapPolicy, LedgerEntry, ManualClock, RuleSpec, RuleState, WindowRequest, RunStatus, Scheduler,
    SchedulerConfig, SequenceMode, StateStore, StoreError, StoreIndices, Window, WindowKind,
};
use esdetect::scheduler::EsStateStore;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn client() -> EsClient {
    EsClient::new(&ConnectionConfig::for_url(common::es_url())).expect("client for the test node")
}

/// Deletes what a test created (indices, index templates), also when the test panics.
struct Cleanup {
    indices: Vec<String>,
    templates: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (indices, templates) = (std::mem::take(&mut self.indices), std::mem::take(&mut self.templates));
        let url = common::es_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let c = EsClient::new(&ConnectionConfig::for_url(url)).ok()?;
                for i in indices {
                    let _ = c.raw(Method::Delete, &format!("/{i}"), &[("ignore_unavailable", "true".into())], None).await;
                }
                for t in templates {
                    let _ = c.raw(Method::Delete, &format!("/_index_template/{t}"), &[], None).await;
                }
                Some(())
            })
        })
        .join();
    }
}

/// A test's private names: events index, alerts alias, state and ledger indices.
struct Names {
    events: String,
    alias: String,
    state: String,
    ledger: String,
    _cleanup: Cleanup,
}

fn names(label: &str) -> Names {
    let events = common::unique_index_name(&format!("{label}-events"));
    let alias = common::unique_index_name(&format!("{label}-alerts"));
    let state = common::unique_index_name(&format!("{label}-state"));
    let ledger = common::unique_index_name(&format!("{label}-ledger"));
    let cleanup = Cleanup {
        indices: vec![events.clone(), esdetect::sink::es::first_index_name(&alias), state.clone(), ledger.clone()],
        templates: vec![esdetect::sink::es::template_name(&alias)],
    };
    Names { events, alias, state, ledger, _cleanup: cleanup }
}

impl Names {
    fn store(&self) -> EsStateStore {
        EsStateStore::new(
            client(),
            StoreIndices { state_index: self.state.clone(), ledger_index: self.ledger.clone(), replicas: Some(0) },
        )
    }
}

/// Events index with ECS types for the fields the rules use.
async fn create_events_index(c: &EsClient, name: &str) {
    let body = json!({
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {"properties": {
            "@timestamp": {"type": "date"},
            "event": {"properties": {"category": {"type": "keyword"}, "code": {"type": "keyword"}}},
            "host": {"properties": {"name": {"type": "keyword"}}},
            "process": {"properties": {"name": {"type": "keyword"}}},
            "source": {"properties": {"ip": {"type": "ip"}}}
        }}
    });
    let (status, resp) = c.raw(Method::Put, &format!("/{name}"), &[], Some(&body)).await.unwrap();
    assert!((200..300).contains(&status), "creating {name}: {resp}");
}

fn process_event(index: &str, at: DateTime<Utc>, host: &str, process: &str) -> (String, Value) {
    (
        index.to_string(),
        json!({
            "@timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "event": {"category": "process", "code": "4688"},
            "host": {"name": host},
            "process": {"name": process},
            "source": {"ip": "10.0.0.7"}
        }),
    )
}

async fn plant(c: &EsClient, docs: &[(String, Value)]) {
    let n = esdetect::simulate::lab::index_events(c, docs).await.expect("planting events");
    assert_eq!(n, docs.len());
}

fn write_rule(dir: &Path, rule_id: &str, index: &str, query: &str, interval: &str, from: &str) -> PathBuf {
    let path = dir.join(format!("{rule_id}.toml"));
    let text = format!(
        "[metadata]\nmaturity = \"production\"\n\n[rule]\nrule_id = \"{rule_id}\"\nname = \"Test {rule_id}\"\n\
         description = \"d\"\nrisk_score = 21\nseverity = \"low\"\nindex = [\"{index}\"]\nlanguage = \"eql\"\n\
         type = \"eql\"\ninterval = \"{interval}\"\nfrom = \"{from}\"\nquery = '''\n{query}\n'''\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn prepared(path: &Path, alias: &str) -> PreparedRule {
    let mut config = Config::default();
    config.alerts.index = alias.to_string();
    let rule = esdetect::rules::load_file(path).expect("test rule loads");
    prepare_rule(rule, &config).expect("test rule prepares")
}

fn run_options() -> RunOptions {
    RunOptions { page_size: 100, ..RunOptions::default() }
}

/// A minute boundary safely in the past, so every window the test runs has all its events indexed.
fn minute_base(minutes_ago: i64) -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::minutes(1)).unwrap() - Duration::minutes(minutes_ago)
}

/// Polls `check` every 50 ms until it is true; panics with `what` after `secs` seconds.
async fn wait_until<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + StdDuration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

async fn window_end(store: &EsStateStore, rule_id: &str) -> Option<DateTime<Utc>> {
    store.get(rule_id).await.ok().flatten().and_then(|v| v.value.last_window_end)
}

async fn refresh(c: &EsClient, index: &str) {
    let _ = c.raw(Method::Post, &format!("/{index}/_refresh"), &[("ignore_unavailable", "true".into())], None).await;
}

/// All ledger entries of a rule (refreshed first).
async fn ledger(c: &EsClient, store: &EsStateStore, rule_id: &str) -> Vec<LedgerEntry> {
    refresh(c, &store.indices().ledger_index).await;
    store.recent_runs(Some(rule_id), 1000).await.expect("reading the ledger")
}

/// Alert `_id`s in the alias (all of them, duplicates kept).
async fn alert_ids(c: &EsClient, alias: &str) -> Vec<String> {
    refresh(c, alias).await;
    let body = json!({"size": 1000, "query": {"match_all": {}}});
    let (status, resp) = c.raw(Method::Post, &format!("/{alias}/_search"), &[], Some(&body)).await.unwrap();
    assert_eq!(status, 200, "{resp}");
    resp["hits"]["hits"].as_array().unwrap().iter().map(|h| h["_id"].as_str().unwrap().to_string()).collect()
}

/// Windows of the ledger's executions that completed (succeeded), as (from, to), with how often each ran.
fn executed_windows(entries: &[LedgerEntry]) -> HashMap<(DateTime<Utc>, DateTime<Utc>), usize> {
    let mut seen = HashMap::new();
    for e in entries.iter().filter(|e| !e.skipped_tick) {
        assert_eq!(e.status, RunStatus::Succeeded, "execution failed: {e:?}");
        assert_eq!(e.windows_completed as usize, e.windows.len(), "{e:?}");
        for w in &e.windows {
            *seen.entry((w.range.from, w.range.to)).or_insert(0) += 1;
        }
    }
    seen
}

fn spec(rule_id: &str, interval: Duration, lookback: Duration, run_timeout: Duration) -> RuleSpec {
    let mut s = RuleSpec::every(rule_id, interval, lookback).unwrap();
    s.run_timeout = run_timeout;
    s.gap_policy = GapPolicy::Backfill { max_backfill: Duration::hours(1) };
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn es_store_semantics_and_claim_race() {
    let n = names("store");
    let (a, b) = (Arc::new(n.store()), Arc::new(n.store()));
    a.ensure_indices().await.unwrap();
    b.ensure_indices().await.unwrap(); // idempotent, and from another store
    assert_eq!(a.get("r").await.unwrap(), None);
    let mut s = RuleState::new("r");
    s.lease_owner = Some("A".into());
    let v = a.create(&s).await.unwrap();
    assert!(matches!(b.create(&s).await, Err(StoreError::Conflict { .. })), "create of an existing doc must conflict");
    let read = b.get("r").await.unwrap().unwrap();
    assert_eq!((read.seq_no, read.primary_term, read.value.clone()), (v.seq_no, v.primary_term, s.clone()));
    let mut s2 = s.clone();
    s2.lease_owner = Some("B".into());
    let v2 = b.compare_and_set(&s2, v.seq_no, v.primary_term).await.unwrap();
    assert!(v2.seq_no > v.seq_no);
    assert_eq!(b.lease_takeovers(), 1, "writing B over A's read version is a takeover");
    // A's stale version is refused; so is a conditional write of a document that does not exist.
    assert!(matches!(a.compare_and_set(&s, v.seq_no, v.primary_term).await, Err(StoreError::Conflict { .. })));
    let ghost = RuleState::new("ghost");
    assert!(matches!(a.compare_and_set(&ghost, 0, 1).await, Err(StoreError::Conflict { .. })));

    // Claims race: two stores (two connections) claim the same fresh rule at once, many times.
    let now = Utc::now();
    for round in 0..8 {
        let rule = format!("race-{round}");
        let (a2, b2, r1, r2) = (a.clone(), b.clone(), rule.clone(), rule.clone());
        let ha = tokio::spawn(async move { try_claim(a2.as_ref(), &r1, "A", now, Duration::minutes(5)).await });
        let hb = tokio::spawn(async move { try_claim(b2.as_ref(), &r2, "B", now, Duration::minutes(5)).await });
        let (ra, rb) = (ha.await.unwrap().unwrap(), hb.await.unwrap().unwrap());
        let winners: Vec<&str> = [(&ra, "A"), (&rb, "B")]
            .iter()
            .filter(|(c, _)| matches!(c, Claim::Acquired(_)))
            .map(|(_, o)| *o)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one claimer must win, got {ra:?} / {rb:?}");
        let stored = a.get(&rule).await.unwrap().unwrap().value;
        assert_eq!(stored.lease_owner.as_deref(), Some(winners[0]));
    }

    // Ledger: append is idempotent per execution id, listing is newest first.
    let entry = |id: &str, minute: i64| LedgerEntry {
        rule_id: "r".into(),
        execution_id: id.into(),
        owner: "A".into(),
        scheduled_at: now,
        started_at: now + Duration::minutes(minute),
        finished_at: now + Duration::minutes(minute),
        window_from: Some(now),
        window_to: Some(now),
        windows: vec![Window::new(now, now, WindowKind::Scheduled)],
        windows_completed: 1,
        windows_remaining: 0,
        window_end: Some(now),
        status: RunStatus::Succeeded,
        message: "ok".into(),
        counts: Default::default(),
        warnings: vec![],
        errors: vec![],
        gap_ms: None,
        gap_from: None,
        gap_to: None,
        gap_filled_ms: None,
        search_duration_ms: 1,
        indexing_duration_ms: 1,
        duration_ms: 2,
        delay_ms: 0,
        skipped_tick: false,
        skipped_ticks: 0,
        execution_type: esdetect::scheduler::state::ExecutionType::Scheduled,
    };
    a.append_ledger(&entry("e1", 0)).await.unwrap();
    a.append_ledger(&entry("e1", 0)).await.unwrap();
    a.append_ledger(&entry("e2", 1)).await.unwrap();
    refresh(&client(), &n.ledger).await;
    let got = a.recent_ledger("r", 10).await.unwrap();
    assert_eq!(got.iter().map(|e| e.execution_id.as_str()).collect::<Vec<_>>(), vec!["e2", "e1"]);
    assert_eq!(got[1], entry("e1", 0), "a ledger entry reads back exactly as written");
}

/// `n` schedulers over the same rule and planted events: every window runs once, alerts are not duplicated.
async fn replicas_share_the_work(n_replicas: usize) {
    let c = client();
    let n = names(&format!("replicas{n_replicas}"));
    create_events_index(&c, &n.events).await;
    let base = minute_base(20);
    let ticks = 4i64;
    // One event in the middle of each window [base + (k-1)m, base + k m], k = 0..=ticks.
    let docs: Vec<_> =
        (0..=ticks).map(|k| process_event(&n.events, base + Duration::minutes(k) - Duration::seconds(30), &format!("h{k}"), "evil.exe")).collect();
    plant(&c, &docs).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_rule(dir.path(), "rep", &n.events, "process where process.name == \"evil.exe\"", "1m", "now-1m");
    let rule = prepared(&path, &n.alias);

    let clock = ManualClock::new(base + Duration::seconds(1));
    let token = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut schedulers = Vec::new();
    for i in 0..n_replicas {
        let store = Arc::new(n.store());
        let exec = detect_executor(client(), vec![rule.clone()], run_options(), None);
        let sched = Scheduler::new(Arc::new(clock.clone()), store, exec, SchedulerConfig::new(format!("replica-{i}")));
        schedulers.push(sched.clone());
        let specs = vec![spec("rep", Duration::minutes(1), Duration::minutes(1), Duration::seconds(30))];
        let t = token.clone();
        tasks.push(tokio::spawn(async move { sched.run(specs, t).await }));
    }
    let probe = n.store();
    for k in 0..=ticks {
        let tick = base + Duration::minutes(k);
        clock.set(tick + Duration::seconds(1));
        wait_until(30, &format!("tick {tick} is recorded"), || async { window_end(&probe, "rep").await == Some(tick) }).await;
    }
    token.cancel();
    for t in tasks {
        tokio::time::timeout(StdDuration::from_secs(20), t).await.expect("schedulers stop after cancel").unwrap();
    }

    let entries = ledger(&c, &probe, "rep").await;
    let seen = executed_windows(&entries);
    let expected: HashSet<_> =
        (0..=ticks).map(|k| (base + Duration::minutes(k - 1), base + Duration::minutes(k))).collect();
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), expected, "windows run: {seen:?}");
    assert!(seen.values().all(|&c| c == 1), "a window ran more than once: {seen:?}");
    let dups: u64 = entries.iter().map(|e| e.counts.duplicates).sum();
    let written: u64 = entries.iter().map(|e| e.counts.alerts_written).sum();
    assert_eq!((written, dups), (ticks as u64 + 1, 0));
    // The ledger counts the bytes each execution read (stored and read back).
    assert!(entries.iter().filter(|e| e.counts.alerts_written > 0).all(|e| e.counts.bytes_search > 0), "{entries:?}");
    let ids = alert_ids(&c, &n.alias).await;
    let distinct: HashSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (ticks as usize + 1, ticks as usize + 1), "{ids:?}");
    // The replicas really competed: the ones that did not run a tick saw it held or already done.
    let held: u64 = schedulers.iter().map(|s| s.stats().ticks_held_elsewhere.load(Ordering::Relaxed)).sum();
    let executions: u64 = schedulers.iter().map(|s| s.stats().executions_succeeded.load(Ordering::Relaxed)).sum();
    assert_eq!(executions, ticks as u64 + 1, "one execution per tick across all replicas");
    eprintln!("{n_replicas} replicas: {executions} executions, {held} ticks seen held by another replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_run_each_window_once() {
    replicas_share_the_work(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_run_each_window_once() {
    replicas_share_the_work(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crashed_owner_is_taken_over_after_lease_expiry_without_gap() {
    let c = client();
    let n = names("takeover");
    create_events_index(&c, &n.events).await;
    let base = minute_base(20);
    let docs: Vec<_> =
        (0..=3).map(|k| process_event(&n.events, base + Duration::minutes(k) - Duration::seconds(30), &format!("h{k}"), "evil.exe")).collect();
    plant(&c, &docs).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_rule(dir.path(), "tko", &n.events, "process where process.name == \"evil.exe\"", "1m", "now-1m");
    let rule = prepared(&path, &n.alias);
    let rule_spec = spec("tko", Duration::minutes(1), Duration::minutes(1), Duration::seconds(30));
    let config = |owner: &str| {
        let mut cfg = SchedulerConfig::new(owner);
        cfg.lease_ttl = Duration::seconds(61); // a lease just longer than the 1-minute interval
        cfg
    };
    let clock = ManualClock::new(base + Duration::seconds(1));
    let probe = n.store();

    // Replica A: its first window runs normally, the second hangs forever (a wedged or dying process).
    let calls = Arc::new(AtomicUsize::new(0));
    let real = detect_executor(client(), vec![rule.clone()], run_options(), None);
    let calls2 = calls.clone();
    let hanging: Executor = Arc::new(move |req: WindowRequest| {
        let n = calls2.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            real(req)
        } else {
            Box::pin(std::future::pending())
        }
    });
    let a = Scheduler::new(Arc::new(clock.clone()), Arc::new(n.store()), hanging, config("A"));
    let (ta, specs) = (CancellationToken::new(), vec![rule_spec.clone()]);
    let task_a = tokio::spawn({
        let t = ta.clone();
        async move { a.run(specs, t).await }
    });
    wait_until(30, "A completes the first tick", || async { window_end(&probe, "tko").await == Some(base) }).await;
    clock.set(base + Duration::minutes(1) + Duration::seconds(1));
    wait_until(30, "A is stuck in its second run", || async { calls.load(Ordering::SeqCst) >= 2 }).await;
    let held = probe.get("tko").await.unwrap().unwrap().value;
    assert_eq!(held.lease_owner.as_deref(), Some("A"));
    // Crash: the task vanishes without releasing its lease.
    task_a.abort();
    let _ = task_a.await;

    let b_store = Arc::new(n.store());
    let b_exec = detect_executor(client(), vec![rule.clone()], run_options(), None);
    let b = Scheduler::new(Arc::new(clock.clone()), b_store.clone(), b_exec, config("B"));
    let tb = CancellationToken::new();
    let b_stats = b.stats();
    let task_b = tokio::spawn({
        let (t, specs) = (tb.clone(), vec![rule_spec.clone()]);
        async move { b.run(specs, t).await }
    });
    // While A's lease is valid, B must not run the rule.
    wait_until(30, "B sees the rule held", || async { b_stats.ticks_held_elsewhere.load(Ordering::Relaxed) >= 1 }).await;
    assert_eq!(window_end(&probe, "tko").await, Some(base));
    // Past the expiry (base+1m+1s + 61s): B takes over and runs the crashed window and the ones since.
    let end = base + Duration::minutes(3);
    clock.set(end + Duration::seconds(1));
    wait_until(30, "B catches up", || async { window_end(&probe, "tko").await == Some(end) }).await;
    tb.cancel();
    tokio::time::timeout(StdDuration::from_secs(20), task_b).await.expect("B stops").unwrap();

    assert_eq!(b_store.lease_takeovers(), 1, "B took the lease over from A");
    let entries = ledger(&c, &probe, "tko").await;
    assert!(entries.iter().all(|e| e.gap_ms.unwrap_or(0) == 0), "no gap may be reported: {entries:?}");
    let seen = executed_windows(&entries);
    let mut windows: Vec<_> = seen.keys().cloned().collect();
    windows.sort();
    let expected: Vec<_> = (0..=3).map(|k| (base + Duration::minutes(k - 1), base + Duration::minutes(k))).collect();
    assert_eq!(windows, expected, "contiguous windows, the crashed one included");
    assert!(seen.values().all(|&c| c == 1));
    let ids = alert_ids(&c, &n.alias).await;
    assert_eq!((ids.len(), ids.iter().collect::<HashSet<_>>().len()), (4, 4), "every planted event once: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_mode_finds_a_sequence_straddling_windows_kibana_mode_does_not() {
    let c = client();
    let n = names("straddle");
    create_events_index(&c, &n.events).await;
    // Windows of 9 minutes every 5: W1 = [t0-4m, t0+5m], W2 = [t0+1m, t0+10m]. A at t0+45s is only in
    // W1, B at t0+5m15s only in W2; they are 4m30s apart, within maxspan.
    let t0 = Utc::now().duration_trunc(Duration::minutes(5)).unwrap() - Duration::hours(1);
    let a_at = t0 + Duration::seconds(45);
    let b_at = t0 + Duration::minutes(5) + Duration::seconds(15);
    plant(&c, &[process_event(&n.events, a_at, "ws1", "a.exe"), process_event(&n.events, b_at, "ws1", "b.exe")]).await;
    let dir = tempfile::tempdir().unwrap();
    let query = "sequence by host.name with maxspan=5m\n  [process where process.name == \"a.exe\"]\n  [process where process.name == \"b.exe\"]";
    let path = write_rule(dir.path(), "seq", &n.events, query, "5m", "now-9m");
    let rule = prepared(&path, &n.alias);
    esdetect::scheduler::executor::AliasGuard::default().ensure(&c, &rule).await.unwrap();
    let window = |k: i64| Window::new(t0 + Duration::minutes(5 * k - 9), t0 + Duration::minutes(5 * k), WindowKind::Scheduled);
    let run = |mode: SequenceMode, k: i64| {
        let req = WindowRequest {
            rule_id: "seq".into(),
            execution_id: "x".into(),
            window: window(k),
            previous_window_end: Some(window(k - 1).range.to),
            sequence_mode: mode,
            scheduled_at: window(k).range.to,
        };
        let (c, rule) = (c.clone(), rule.clone());
        async move { run_request(&c, &rule, &req, &run_options()).await }
    };
    for k in 1..=3 {
        let s = run(SequenceMode::Kibana, k).await;
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.kept, 0, "kibana mode, window {k}: no single window holds both events");
    }
    let found: Vec<u64> = {
        let mut v = Vec::new();
        for k in 1..=3 {
            let s = run(SequenceMode::Complete, k).await;
            assert!(s.errors.is_empty(), "{:?}", s.errors);
            v.push(s.kept);
        }
        v
    };
    assert_eq!(found, vec![0, 1, 0], "complete mode: found once, by the window holding its last event");
    // One sequence: a shell and two building blocks, written once.
    assert_eq!(alert_ids(&c, &n.alias).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cluster_means_not_ready_and_no_panic() {
    let mut cfg = ConnectionConfig::for_url("http://127.0.0.1:1");
    cfg.max_retries = 0;
    let store = Arc::new(EsStateStore::new(EsClient::new(&cfg).unwrap(), StoreIndices::default()));
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
    let exec: Executor = Arc::new(|_req| Box::pin(async { panic!("nothing may run without the store") }));
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap());
    let sched = Scheduler::new(Arc::new(clock), store, exec, SchedulerConfig::new("X"));
    let stats = sched.stats();
    let token = CancellationToken::new();
    let task = tokio::spawn({
        let t = token.clone();
        async move { sched.run(vec![spec("r", Duration::minutes(1), Duration::minutes(1), Duration::seconds(30))], t).await }
    });
    wait_until(20, "the store error is counted", || async { stats.store_errors.load(Ordering::Relaxed) >= 1 }).await;
    assert!(!stats.is_ready());
    token.cancel();
    tokio::time::timeout(StdDuration::from_secs(5), task).await.expect("stops while backing off").unwrap();
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_process_serves_metrics_and_readiness_and_exits_cleanly_on_sigterm() {
    let c = client();
    let n = names("proc");
    create_events_index(&c, &n.events).await;
    let now = Utc::now();
    plant(&c, &[process_event(&n.events, now - Duration::seconds(70), "h1", "evil.exe")]).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    write_rule(&rules, "proc", &n.events, "process where process.name == \"evil.exe\"", "1m", "now-2m");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("esdetect.toml");
    std::fs::write(
        &config,
        format!(
            "rules_dir = \"rules\"\n[elasticsearch]\nurls = [\"{}\"]\n[alerts]\nindex = \"{}\"\n[scheduler]\n\
             listen = \"{addr}\"\nstate_index = \"{}\"\nledger_index = \"{}\"\nindex_replicas = 0\n\
             shutdown_grace = \"5s\"\nrun_timeout = \"30s\"\nlog_format = \"json\"\n",
            common::es_url(),
            n.alias,
            n.state,
            n.ledger
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_esdetect"))
        .args(["run", "--config"])
        .arg(&config)
        .env("ESDETECT_LOG", "info")
        .env_remove("ESDETECT_ES_URL")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting the daemon");
    let log_text = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();

    let a2 = addr.clone();
    let ready = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + StdDuration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(http_get(&a2, "/readyz"), Some((200, _))) {
                return true;
            }
            std::thread::sleep(StdDuration::from_millis(100));
        }
        false
    })
    .await
    .unwrap();
    assert!(ready, "/readyz never became 200; log:\n{}", log_text());
    assert_eq!(http_get(&addr, "/healthz").map(|r| r.0), Some(200));
    // The first tick runs at start: wait for its execution to show in the metrics.
    let a3 = addr.clone();
    let metrics = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + StdDuration::from_secs(20);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some((200, body)) = http_get(&a3, "/metrics") {
                if body.contains("esdetect_executions_total{status=\"succeeded\"} 1") {
                    return Ok(body);
                }
                last = body;
            }
            std::thread::sleep(StdDuration::from_millis(200));
        }
        Err(last)
    })
    .await
    .unwrap();
    let metrics = metrics.unwrap_or_else(|last| panic!("no succeeded execution in /metrics:\n{last}\nlog:\n{}", log_text()));
    for line in ["esdetect_alerts_written_total 1", "esdetect_events_scanned_total 1", "esdetect_duplicates_skipped_total 0", "esdetect_ready 1"] {
        assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    }
    assert!(metrics.contains("esdetect_run_duration_seconds_count 1"), "{metrics}");

    // SIGTERM: exit 0 within the grace period (5 s) plus a margin.
    let pid = child.id() as i32;
    // SAFETY: sending a signal to our own child process; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + StdDuration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not exit within 15 s of SIGTERM; log:\n{}", log_text());
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status:?}; log:\n{}", log_text());
    let log = log_text();
    assert!(log.lines().any(|l| l.trim_start().starts_with('{')), "log_format = json gives JSON lines:\n{log}");
    // The lease was released on the way out, and the run is in the ledger.
    let store = n.store();
    let state = store.get("proc").await.unwrap().expect("state document");
    assert_eq!(state.value.lease_owner, None, "lease released at shutdown");
    let entries = ledger(&c, &store, "proc").await;
    assert!(entries.iter().any(|e| e.status == RunStatus::Succeeded && e.counts.alerts_written == 1), "{entries:?}");
}

/// A takeover whose answer was lost: the claim's write reached the node, the client retried it, and the
/// retry met the first attempt as a version conflict. The re-read shows this replica as the owner, so the
/// takeover is counted (exactly once), as it would have been had the answer arrived.
#[tokio::test]
async fn a_takeover_whose_answer_was_lost_is_still_counted_once() {
    let n = names("lost");
    let (a, b) = (n.store(), n.store());
    let mut s = RuleState::new("r");
    s.lease_owner = Some("A".into());
    a.create(&s).await.unwrap();
    let read = b.get("r").await.unwrap().unwrap(); // B sees A's (expired) lease
    let mut mine = read.value.clone();
    mine.lease_owner = Some("B".into());
    // B's write lands through another connection (the first attempt, whose answer never came back)…
    let landed = a.compare_and_set(&mine, read.seq_no, read.primary_term).await.unwrap();
    // …and B's retry of the same write conflicts with it.
    assert!(matches!(b.compare_and_set(&mine, read.seq_no, read.primary_term).await, Err(StoreError::Conflict { .. })));
    assert_eq!(b.lease_takeovers(), 0, "not known yet");
    let again = b.get("r").await.unwrap().unwrap();
    assert_eq!((again.seq_no, again.value.lease_owner.as_deref()), (landed.seq_no, Some("B")));
    assert_eq!(b.lease_takeovers(), 1, "the re-read shows B as owner: the takeover happened");
    // B now renews its own lease: no further takeover.
    b.compare_and_set(&again.value, again.seq_no, again.primary_term).await.unwrap();
    b.get("r").await.unwrap();
    assert_eq!(b.lease_takeovers(), 1);
}
