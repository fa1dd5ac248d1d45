//! Behaviour tests of the scheduler loop: a hand-driven clock, the in-memory store and a fake executor
//! that records which windows it was asked to run. Hours of schedule pass in milliseconds.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use tokio_util::sync::CancellationToken;

use super::clock::{Clock, ManualClock};
use super::daemon::{Executor, RuleSpec, WindowOutcome, WindowRequest, Scheduler, SchedulerConfig};
use super::state::{InMemoryStateStore, LedgerEntry, RuleState, RunStatus, StateStore};
use super::windows::{GapPolicy, Window, WindowKind};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap() // on the 5-minute grid
}
fn m(n: i64) -> Duration {
    Duration::minutes(n)
}

#[derive(Clone, Copy, Debug)]
enum Act {
    Instant,
    Take(Duration),
    Hang,
    Fail,
}

/// Records what the executors were asked to run and what they finished.
#[derive(Default)]
struct Fake {
    started: Mutex<Vec<(String, WindowRequest)>>,
    done: Mutex<Vec<(String, WindowRequest)>>,
}

impl Fake {
    fn done_windows(&self) -> Vec<Window> {
        self.done.lock().unwrap().iter().map(|(_, r)| r.window).collect()
    }
    fn done_ends(&self) -> Vec<DateTime<Utc>> {
        self.done_windows().iter().map(|w| w.range.to).collect()
    }
}

fn executor(
    clock: &ManualClock,
    owner: &str,
    fake: &Arc<Fake>,
    act: impl Fn(&WindowRequest) -> Act + Send + Sync + 'static,
) -> Executor {
    let (clock, owner, fake, act) = (clock.clone(), owner.to_string(), fake.clone(), Arc::new(act));
    Arc::new(move |req: WindowRequest| {
        let (clock, owner, fake, act) = (clock.clone(), owner.clone(), fake.clone(), act.clone());
        Box::pin(async move {
            fake.started.lock().unwrap().push((owner.clone(), req.clone()));
            match act(&req) {
                Act::Instant => {}
                Act::Take(d) => clock.sleep_until(clock.now() + d).await,
                Act::Hang => std::future::pending::<()>().await,
                Act::Fail => return WindowOutcome::failed("boom"),
            }
            let out = WindowOutcome::succeeded(&req, 1);
            fake.done.lock().unwrap().push((owner, req));
            out
        })
    })
}

fn scheduler(clock: &ManualClock, store: &Arc<InMemoryStateStore>, exec: Executor, owner: &str) -> Scheduler {
    Scheduler::new(Arc::new(clock.clone()), store.clone(), exec, SchedulerConfig::new(owner))
}

fn rule() -> RuleSpec {
    RuleSpec::every("r1", m(5), m(9)).unwrap()
}

async fn seed(store: &InMemoryStateStore, last_end: DateTime<Utc>) {
    let mut s = RuleState::new("r1");
    s.last_window_end = Some(last_end);
    store.create(&s).await.unwrap();
}

/// Lets every ready task run until all are waiting again (current-thread runtime).
async fn settle() {
    for _ in 0..300 {
        tokio::task::yield_now().await;
    }
}

async fn drive(clock: &ManualClock, until: DateTime<Utc>, step: Duration) {
    settle().await;
    while clock.now() < until {
        clock.advance(step);
        settle().await;
    }
}

fn spawn_run(s: &Scheduler, rules: Vec<RuleSpec>, token: &CancellationToken) -> tokio::task::JoinHandle<Vec<String>> {
    let (s, token) = (s.clone(), token.clone());
    tokio::spawn(async move { s.run(rules, token).await })
}

fn executions(store: &InMemoryStateStore) -> Vec<LedgerEntry> {
    store.ledger().into_iter().filter(|e| !e.skipped_tick).collect()
}

/// Windows sorted by end: no window twice, ends exactly `step` apart, each `lookback` long.
fn assert_exactly_once_no_holes(ws: &[Window], first_end: DateTime<Utc>, last_end: DateTime<Utc>) {
    let mut sorted = ws.to_vec();
    sorted.sort_by_key(|w| w.range.to);
    let distinct: HashSet<(DateTime<Utc>, DateTime<Utc>)> = ws.iter().map(|w| (w.range.from, w.range.to)).collect();
    assert_eq!(distinct.len(), ws.len(), "a window ran twice: {sorted:?}");
    assert_eq!(sorted.first().map(|w| w.range.to), Some(first_end));
    assert_eq!(sorted.last().map(|w| w.range.to), Some(last_end));
    for pair in sorted.windows(2) {
        assert_eq!(pair[1].range.to - pair[0].range.to, m(5), "hole or misaligned window between {pair:?}");
    }
    assert!(sorted.iter().all(|w| w.range.to - w.range.from == m(9)));
}

#[tokio::test]
async fn interval_ticks_do_not_drift_even_when_runs_take_time() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    let fake = Arc::new(Fake::default());
    let s = scheduler(&clock, &store, executor(&clock, "A", &fake, |_| Act::Take(Duration::seconds(37))), "A");
    let token = CancellationToken::new();
    let h = spawn_run(&s, vec![rule()], &token);
    drive(&clock, t0() + m(61), Duration::seconds(10)).await;

    let ex = executions(&store);
    let scheduled: Vec<_> = ex.iter().map(|e| e.scheduled_at).collect();
    let expected: Vec<_> = (0..=12).map(|k| t0() + m(5 * k)).collect();
    assert_eq!(scheduled, expected, "ticks must stay on the grid, not drift by the 37s run time");
    assert!(ex.iter().all(|e| e.started_at == e.scheduled_at && e.status == RunStatus::Succeeded));
    assert_eq!(fake.done_ends(), expected);
    assert_eq!(fake.done_windows()[1], Window::new(t0() - m(4), t0() + m(5), WindowKind::Scheduled));

    token.cancel();
    settle().await;
    assert!(h.is_finished());
    assert!(store.ledger().iter().all(|e| !e.skipped_tick));
}

#[tokio::test]
async fn slow_runs_delay_or_skip_the_next_tick_and_it_is_recorded() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    let fake = Arc::new(Fake::default());
    let exec = executor(&clock, "A", &fake, |r| {
        if r.window.range.to == t0() {
            Act::Take(m(12)) // runs past two ticks: t0+5 is skipped, t0+10 runs late
        } else if r.window.range.to == t0() + m(20) {
            Act::Take(m(7)) // runs past one tick: t0+25 runs late, nothing skipped
        } else {
            Act::Instant
        }
    });
    let s = scheduler(&clock, &store, exec, "A");
    let token = CancellationToken::new();
    let mut r = rule();
    r.run_timeout = m(20);
    let _h = spawn_run(&s, vec![r], &token);
    drive(&clock, t0() + m(36), Duration::seconds(30)).await;

    // Every 5-minute window ran once, in order, even the skipped tick's.
    let ends = fake.done_ends();
    assert_eq!(ends, (0..=7).map(|k| t0() + m(5 * k)).collect::<Vec<_>>());
    assert_exactly_once_no_holes(&fake.done_windows(), t0(), t0() + m(35));

    let skips: Vec<_> = store.ledger().into_iter().filter(|e| e.skipped_tick).collect();
    assert_eq!(skips.len(), 1, "{skips:?}");
    assert_eq!((skips[0].scheduled_at, skips[0].skipped_ticks, skips[0].status), (t0() + m(5), 1, RunStatus::Skipped));

    let ex = executions(&store);
    assert!(ex.iter().all(|e| e.scheduled_at != t0() + m(5)));
    let late = ex.iter().find(|e| e.scheduled_at == t0() + m(10)).unwrap();
    assert_eq!((late.started_at, late.delay_ms, late.windows.len()), (t0() + m(12), 120_000, 2));
    assert_eq!(late.windows[0].kind, WindowKind::Backfill);
    let late2 = ex.iter().find(|e| e.scheduled_at == t0() + m(25)).unwrap();
    assert_eq!((late2.started_at, late2.windows.len()), (t0() + m(27), 1));
    assert_eq!(s.stats().ticks_skipped.load(Ordering::Relaxed), 1);
    token.cancel();
}

#[tokio::test]
async fn kibana_mode_twenty_minute_gap_is_caught_up_without_error() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    seed(&store, t0() - m(20)).await;
    let fake = Arc::new(Fake::default());
    let s = scheduler(&clock, &store, executor(&clock, "A", &fake, |_| Act::Instant), "A");
    let mut r = rule();
    r.gap_policy = GapPolicy::Kibana;
    let report = s.run_tick(&r, t0(), &CancellationToken::new()).await.unwrap();

    // gap = 20m − 9m = 11m → ceil(11/5) = 3 catch-up windows + the scheduled one.
    assert_eq!(fake.done_ends(), vec![t0() - m(15), t0() - m(10), t0() - m(5), t0()]);
    let kinds: Vec<_> = fake.done_windows().iter().map(|w| w.kind).collect();
    assert_eq!(kinds, vec![WindowKind::CatchUp, WindowKind::CatchUp, WindowKind::CatchUp, WindowKind::Scheduled]);
    let e = &report.executions[0];
    assert_eq!((report.executions.len(), e.status, e.gap_ms), (1, RunStatus::Succeeded, None));
    assert_eq!(e.counts.fetched, 4);
    let st = store.state("r1").unwrap().value;
    assert_eq!((st.last_window_end, st.lease_owner), (Some(t0()), None));
}

#[tokio::test]
async fn kibana_mode_two_hour_gap_runs_four_catchups_and_fails_with_the_gap() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    seed(&store, t0() - m(120)).await;
    let fake = Arc::new(Fake::default());
    let s = scheduler(&clock, &store, executor(&clock, "A", &fake, |_| Act::Instant), "A");
    let mut r = rule();
    r.gap_policy = GapPolicy::Kibana;
    let report = s.run_tick(&r, t0(), &CancellationToken::new()).await.unwrap();

    assert_eq!(fake.done_ends(), (0..5).rev().map(|k| t0() - m(5 * k)).collect::<Vec<_>>());
    let e = &report.executions[0];
    assert_eq!(e.status, RunStatus::Failed);
    assert_eq!(e.gap_ms, Some(91 * 60_000)); // 111m gap − 4 × 5m
    assert_eq!((e.gap_from, e.gap_to), (Some(t0() - m(120)), Some(t0() - m(29))));
    assert_eq!(
        e.message,
        "2 hours (5460000ms) were not queried between this rule execution and the last execution, so signals may \
         have been missed. Consider increasing your look behind time or adding more Kibana instances"
    );
    // As in Kibana, the gap is reported once and the rule moves on.
    let st = store.state("r1").unwrap().value;
    assert_eq!((st.last_window_end, st.last_status), (Some(t0()), Some(RunStatus::Failed)));
    assert_eq!(st.lease_owner, None);
    assert_eq!(s.stats().gap_seconds.load(Ordering::Relaxed), 5460);
}

#[tokio::test]
async fn backfill_mode_fills_the_whole_gap_oldest_first_in_saved_steps() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    seed(&store, t0() - m(120)).await;
    let fake = Arc::new(Fake::default());
    let s = scheduler(&clock, &store, executor(&clock, "A", &fake, |_| Act::Instant), "A");
    let report = s.run_tick(&rule(), t0(), &CancellationToken::new()).await.unwrap();

    // ceil(111/5) = 23 backfill windows + the scheduled one, 12 per execution.
    let ends = fake.done_ends();
    assert_eq!(ends, (0..24).rev().map(|k| t0() - m(5 * k)).collect::<Vec<_>>());
    assert!(fake.done_windows()[0].range.from <= t0() - m(120), "the oldest window must reach back to the last end");
    assert_exactly_once_no_holes(&fake.done_windows(), t0() - m(115), t0());
    let ex = &report.executions;
    assert_eq!(ex.len(), 2);
    assert_eq!((ex[0].windows_completed, ex[0].windows_remaining, ex[0].window_end), (12, 12, Some(t0() - m(60))));
    assert_eq!((ex[1].windows_completed, ex[1].windows_remaining, ex[1].window_end), (12, 0, Some(t0())));
    assert!(ex.iter().all(|e| e.status == RunStatus::Succeeded && e.gap_ms.is_none()));
    // The gap was filled, and `status` can still show there was one: 120m since the last end − 9m.
    assert_eq!(ex[0].gap_filled_ms, Some(m(111).num_milliseconds()));
    assert_eq!(store.state("r1").unwrap().value.last_window_end, Some(t0()));
}

#[tokio::test]
async fn backfill_beyond_max_backfill_reports_the_oldest_part_once() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    seed(&store, t0() - Duration::hours(30)).await;
    let fake = Arc::new(Fake::default());
    let s = scheduler(&clock, &store, executor(&clock, "A", &fake, |_| Act::Instant), "A");
    let report = s.run_tick(&rule(), t0(), &CancellationToken::new()).await.unwrap();

    let ws = fake.done_windows();
    assert_eq!(ws.len(), 24 * 12 + 1);
    assert_eq!(ws[0].range.from, t0() - Duration::hours(30) + m(351));
    assert_exactly_once_no_holes(&ws, t0() - Duration::hours(24), t0());
    let ex = &report.executions;
    assert_eq!(ex.len(), 25);
    assert_eq!((ex[0].status, ex[0].gap_ms), (RunStatus::Failed, Some(351 * 60_000)));
    assert!(ex[0].message.starts_with("6 hours (21060000ms) were not queried"));
    assert!(ex[1..].iter().all(|e| e.gap_ms.is_none() && e.status == RunStatus::Succeeded));
}

async fn replicas_run_each_window_exactly_once(n: usize) {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::with_yields());
    let fake = Arc::new(Fake::default());
    let token = CancellationToken::new();
    let mut schedulers = Vec::new();
    let mut handles = Vec::new();
    for i in 0..n {
        let owner = format!("replica-{i}");
        // Run times vary by window and replica, up to longer than the interval.
        let exec = executor(&clock, &owner, &fake, move |r| {
            let k = r.window.range.to.timestamp() / 300;
            Act::Take(Duration::seconds((k * 37 + i as i64 * 71) % 420))
        });
        let s = scheduler(&clock, &store, exec, &owner);
        let mut r = rule();
        r.run_timeout = m(10);
        handles.push(spawn_run(&s, vec![r], &token));
        schedulers.push(s);
        // Replicas start at different times.
        drive(&clock, clock.now() + m(2), Duration::seconds(20)).await;
    }
    drive(&clock, t0() + m(180), Duration::seconds(20)).await;
    token.cancel();
    drive(&clock, clock.now() + m(1), Duration::seconds(5)).await;
    assert!(handles.iter().all(|h| h.is_finished()));

    let ws = fake.done_windows();
    let last = ws.iter().map(|w| w.range.to).max().unwrap();
    assert!(last >= t0() + m(170), "runs stopped early: last window ends {last}");
    assert_exactly_once_no_holes(&ws, t0(), last);
    // Runs never overlapped: no window was even started twice. At most one run was still going at
    // shutdown (and abandoned after the grace period), and it is newer than every finished one.
    let started: Vec<Window> = fake.started.lock().unwrap().iter().map(|(_, r)| r.window).collect();
    let distinct: HashSet<DateTime<Utc>> = started.iter().map(|w| w.range.to).collect();
    assert_eq!(distinct.len(), started.len(), "a window was started twice");
    assert!(started.len() - ws.len() <= 1);
    assert!(started.iter().all(|w| w.range.to <= last || w.range.to == last + m(5)));
    let owners: HashSet<String> = fake.done.lock().unwrap().iter().map(|(o, _)| o.clone()).collect();
    assert!(owners.len() >= 2, "the work should really have been shared: {owners:?}");
    assert!(store.conflicts() > 0, "the replicas should really have raced for the lease");
    let held: u64 = schedulers.iter().map(|s| s.stats().ticks_held_elsewhere.load(Ordering::Relaxed)).sum();
    assert!(held > 0, "replicas should have found the rule held by another");
    let st = store.state("r1").unwrap().value;
    assert_eq!((st.lease_owner, st.last_window_end), (None, Some(last)));
    // Every completed window appears in exactly one ledger entry.
    let ledgered: usize = executions(&store).iter().map(|e| e.windows_completed as usize).sum();
    assert_eq!(ledgered, ws.len());
}

#[tokio::test]
async fn two_replicas_run_each_window_exactly_once() {
    replicas_run_each_window_exactly_once(2).await;
}

#[tokio::test]
async fn three_replicas_run_each_window_exactly_once() {
    replicas_run_each_window_exactly_once(3).await;
}

#[tokio::test]
async fn a_crashed_owners_lease_expires_and_another_replica_runs_its_window() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    seed(&store, t0() - m(5)).await;
    let fake = Arc::new(Fake::default());
    let token = CancellationToken::new();
    let a = scheduler(&clock, &store, executor(&clock, "A", &fake, |_| Act::Hang), "A");
    let ha = spawn_run(&a, vec![rule()], &token);
    drive(&clock, t0() + m(1), Duration::seconds(30)).await;
    assert_eq!(store.state("r1").unwrap().value.lease_owner.as_deref(), Some("A"));
    ha.abort(); // crash: no renewal, no release
    settle().await;

    let b = scheduler(&clock, &store, executor(&clock, "B", &fake, |_| Act::Instant), "B");
    let _hb = spawn_run(&b, vec![rule()], &token);
    // A renewed at t0+30s and t0+60s: its lease runs out 90 s after the last renewal, at t0+2m30s.
    drive(&clock, t0() + Duration::seconds(140), Duration::seconds(10)).await;
    assert!(fake.done_ends().is_empty(), "B must wait for A's lease to expire");
    assert!(b.stats().ticks_held_elsewhere.load(Ordering::Relaxed) >= 1);
    drive(&clock, t0() + m(16), Duration::seconds(30)).await;

    // B took over at its next tick (t0+5) and ran A's window (ending t0) as well: no gap, nothing twice.
    // With the old lease (interval + margin) B would have waited until t0+10.
    assert_eq!(fake.done_ends(), vec![t0(), t0() + m(5), t0() + m(10), t0() + m(15)]);
    assert!(fake.done.lock().unwrap().iter().all(|(o, _)| o == "B"));
    let ex = executions(&store);
    assert!(ex.iter().all(|e| e.owner == "B" && e.status == RunStatus::Succeeded && e.gap_ms.is_none()));
    assert_eq!(ex[0].scheduled_at, t0() + m(5));
    token.cancel();
}

#[tokio::test]
async fn long_executions_renew_the_lease_so_nobody_else_steps_in() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    seed(&store, t0() - m(20)).await; // three catch-up windows of 4 minutes each: 16 minutes
    let fake = Arc::new(Fake::default());
    let token = CancellationToken::new();
    let mut cfg = SchedulerConfig::new("A");
    cfg.lease_ttl = m(1); // far shorter than the 16-minute execution: only renewals keep it
    let mut r = rule();
    r.gap_policy = GapPolicy::Kibana;
    let a = Scheduler::new(
        Arc::new(clock.clone()),
        store.clone(),
        executor(&clock, "A", &fake, |_| Act::Take(m(4))),
        cfg,
    );
    let _ha = spawn_run(&a, vec![r.clone()], &token);
    settle().await;
    let b = scheduler(&clock, &store, executor(&clock, "B", &fake, |_| Act::Instant), "B");
    let _hb = spawn_run(&b, vec![r], &token);
    drive(&clock, t0() + m(16), Duration::seconds(10)).await;

    let done = fake.done.lock().unwrap().clone();
    assert_eq!(done.len(), 4);
    assert!(done.iter().all(|(o, _)| o == "A"), "B ran something while A was still running: {done:?}");
    assert!(b.stats().ticks_held_elsewhere.load(Ordering::Relaxed) >= 3);
    token.cancel();
}

#[tokio::test]
async fn shutdown_abandons_a_hung_run_after_the_grace_period_and_releases_the_lease() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    seed(&store, t0() - m(5)).await;
    let fake = Arc::new(Fake::default());
    let s = scheduler(&clock, &store, executor(&clock, "A", &fake, |_| Act::Hang), "A");
    let token = CancellationToken::new();
    let h = spawn_run(&s, vec![rule()], &token);
    drive(&clock, t0() + m(1), Duration::seconds(30)).await;
    token.cancel();
    drive(&clock, t0() + m(1) + Duration::seconds(29), Duration::seconds(1)).await;
    assert!(!h.is_finished(), "the run gets the whole 30s grace");
    drive(&clock, t0() + m(1) + Duration::seconds(30), Duration::seconds(1)).await;
    assert!(h.is_finished(), "shutdown must complete once the grace period is over");

    let st = store.state("r1").unwrap().value;
    assert_eq!((st.lease_owner, st.lease_expires), (None, None));
    assert_eq!(st.last_window_end, Some(t0() - m(5)), "an abandoned window must not count as done");
    let e = executions(&store).pop().unwrap();
    assert_eq!(e.status, RunStatus::Failed);
    assert!(e.message.contains("abandoned at shutdown"), "{}", e.message);
}

#[tokio::test]
async fn shutdown_lets_a_run_finish_within_grace_and_claims_nothing_more() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    let fake = Arc::new(Fake::default());
    let s = scheduler(&clock, &store, executor(&clock, "A", &fake, |_| Act::Take(Duration::seconds(20))), "A");
    let token = CancellationToken::new();
    let h = spawn_run(&s, vec![rule()], &token);
    drive(&clock, t0() + Duration::seconds(5), Duration::seconds(5)).await;
    token.cancel();
    drive(&clock, t0() + Duration::seconds(20), Duration::seconds(5)).await;
    assert!(h.is_finished());
    assert_eq!(fake.done_ends(), vec![t0()]);
    let st = store.state("r1").unwrap().value;
    assert_eq!((st.lease_owner, st.last_window_end, st.last_status), (None, Some(t0()), Some(RunStatus::Succeeded)));
    drive(&clock, t0() + m(11), Duration::seconds(30)).await;
    assert_eq!(fake.started.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_cluster_down_at_start_is_retried_and_readiness_follows_it() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    seed(&store, t0() - m(5)).await;
    store.set_unavailable(true);
    let fake = Arc::new(Fake::default());
    let s = scheduler(&clock, &store, executor(&clock, "A", &fake, |_| Act::Instant), "A");
    let token = CancellationToken::new();
    let _h = spawn_run(&s, vec![rule()], &token);
    drive(&clock, t0() + m(7), Duration::seconds(5)).await;
    assert!(!s.stats().is_ready());
    assert!(fake.started.lock().unwrap().is_empty());
    assert!(s.stats().store_errors.load(Ordering::Relaxed) >= 3, "should keep retrying");

    store.set_unavailable(false);
    drive(&clock, t0() + m(9), Duration::seconds(5)).await;
    assert!(s.stats().is_ready());
    // The newest due tick (t0+5) ran and covered the missed one's window too.
    assert_eq!(fake.done_ends(), vec![t0(), t0() + m(5)]);
    let skip = store.ledger().into_iter().find(|e| e.skipped_tick).expect("the missed tick is recorded");
    assert_eq!(skip.scheduled_at, t0());
    token.cancel();
}

#[tokio::test]
async fn a_failed_run_keeps_the_window_end_and_the_next_tick_retries_it() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    seed(&store, t0() - m(5)).await;
    let fake = Arc::new(Fake::default());
    let failed_once = Arc::new(AtomicBool::new(false));
    let f = failed_once.clone();
    let exec = executor(&clock, "A", &fake, move |r| {
        if r.window.range.to == t0() && !f.swap(true, Ordering::SeqCst) {
            Act::Fail
        } else {
            Act::Instant
        }
    });
    let s = scheduler(&clock, &store, exec, "A");
    let token = CancellationToken::new();
    let _h = spawn_run(&s, vec![rule()], &token);
    drive(&clock, t0() + m(1), Duration::seconds(30)).await;
    let st = store.state("r1").unwrap().value;
    assert_eq!((st.last_window_end, st.last_status, st.consecutive_failures), (Some(t0() - m(5)), Some(RunStatus::Failed), 1));
    assert_eq!(st.lease_owner, None);
    assert_eq!(executions(&store)[0].message, "boom");

    drive(&clock, t0() + m(6), Duration::seconds(30)).await;
    assert_eq!(fake.done_ends(), vec![t0(), t0() + m(5)]);
    let st = store.state("r1").unwrap().value;
    assert_eq!((st.last_window_end, st.consecutive_failures), (Some(t0() + m(5)), 0));
    // The retried window's request says where the last completed window ended.
    let done = fake.done.lock().unwrap().clone();
    assert_eq!(done[0].1.previous_window_end, Some(t0() - m(5)));
    assert_eq!(done[1].1.previous_window_end, Some(t0()));
    token.cancel();
}

#[tokio::test]
async fn a_run_past_its_timeout_is_stopped_and_counted_failed() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    seed(&store, t0() - m(5)).await;
    let fake = Arc::new(Fake::default());
    let s = scheduler(&clock, &store, executor(&clock, "A", &fake, |_| Act::Take(m(3))), "A");
    let mut r = rule();
    r.run_timeout = m(2);
    let token = CancellationToken::new();
    let _h = spawn_run(&s, vec![r], &token);
    drive(&clock, t0() + m(4), Duration::seconds(10)).await;
    assert!(fake.done_ends().is_empty());
    let e = executions(&store).pop().unwrap();
    assert_eq!(e.status, RunStatus::Failed);
    assert!(e.message.contains("run timeout"), "{}", e.message);
    assert_eq!(e.finished_at, t0() + m(2));
    let st = store.state("r1").unwrap().value;
    assert_eq!((st.lease_owner, st.last_window_end), (None, Some(t0() - m(5))));
    token.cancel();
}

#[tokio::test]
async fn a_window_that_keeps_failing_is_given_up_after_three_attempts() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    seed(&store, t0() - m(5)).await;
    let fake = Arc::new(Fake::default());
    let exec = executor(&clock, "A", &fake, |r| if r.window.range.to == t0() { Act::Fail } else { Act::Instant });
    let s = scheduler(&clock, &store, exec, "A");
    let token = CancellationToken::new();
    let _h = spawn_run(&s, vec![rule()], &token);
    drive(&clock, t0() + m(6), Duration::seconds(30)).await;
    // Two attempts so far (t0, t0+5): still stuck before the poison window.
    assert!(fake.done_ends().is_empty());
    assert_eq!(store.state("r1").unwrap().value.failed_window_attempts, 2);
    drive(&clock, t0() + m(16), Duration::seconds(30)).await;
    // Third attempt at t0+10 gives it up and runs the rest; t0+15 runs normally.
    assert_eq!(fake.done_ends(), vec![t0() + m(5), t0() + m(10), t0() + m(15)]);
    let ex = executions(&store);
    let third = ex.iter().find(|e| e.scheduled_at == t0() + m(10)).unwrap();
    assert_eq!(third.status, RunStatus::Failed);
    assert!(third.message.contains("failed 3 times in a row"), "{}", third.message);
    let st = store.state("r1").unwrap().value;
    assert_eq!((st.last_window_end, st.failed_window_end, st.last_status), (Some(t0() + m(15)), None, Some(RunStatus::Succeeded)));
    token.cancel();
}

#[tokio::test]
async fn a_tick_runs_its_window_once_and_a_second_run_of_it_finds_it_done() {
    let clock = ManualClock::new(t0() + m(3));
    let store = Arc::new(InMemoryStateStore::new());
    let fake = Arc::new(Fake::default());
    let s = scheduler(&clock, &store, executor(&clock, "A", &fake, |_| Act::Instant), "A");
    let out = s.run_tick(&rule(), t0(), &CancellationToken::new()).await.unwrap();
    assert_eq!(out.executions.len(), 1);
    assert_eq!(fake.done_windows(), vec![Window::new(t0() - m(9), t0(), WindowKind::Scheduled)]);
    // Running the same tick again (another replica, a restart) finds it done.
    let again = s.run_tick(&rule(), t0(), &CancellationToken::new()).await.unwrap();
    assert!(again.already_done);
}

/// An in-memory store with faults to inject: `get` panics the first `get_panics` times (a bug outside any
/// window run), and the ledger refuses writes while `ledger_down` is set (an outage between a run's state
/// write and its ledger write).
struct FaultyStore {
    inner: InMemoryStateStore,
    get_panics: std::sync::atomic::AtomicU32,
    ledger_down: AtomicBool,
}

impl FaultyStore {
    fn new(get_panics: u32, ledger_down: bool) -> FaultyStore {
        FaultyStore { inner: InMemoryStateStore::new(), get_panics: get_panics.into(), ledger_down: ledger_down.into() }
    }
}

#[async_trait::async_trait]
impl StateStore for FaultyStore {
    async fn get(&self, rule_id: &str) -> Result<Option<super::state::Versioned<RuleState>>, super::state::StoreError> {
        if self.get_panics.load(Ordering::SeqCst) > 0 {
            self.get_panics.fetch_sub(1, Ordering::SeqCst);
            panic!("state store bug");
        }
        self.inner.get(rule_id).await
    }
    async fn create(&self, state: &RuleState) -> Result<super::state::Versioned<RuleState>, super::state::StoreError> {
        self.inner.create(state).await
    }
    async fn compare_and_set(
        &self,
        state: &RuleState,
        seq_no: i64,
        primary_term: i64,
    ) -> Result<super::state::Versioned<RuleState>, super::state::StoreError> {
        self.inner.compare_and_set(state, seq_no, primary_term).await
    }
    async fn append_ledger(&self, entry: &LedgerEntry) -> Result<(), super::state::StoreError> {
        if self.ledger_down.load(Ordering::SeqCst) {
            return Err(super::state::StoreError::Unusable("the ledger index is unreachable".into()));
        }
        self.inner.append_ledger(entry).await
    }
    async fn recent_ledger(&self, rule_id: &str, limit: usize) -> Result<Vec<LedgerEntry>, super::state::StoreError> {
        self.inner.recent_ledger(rule_id, limit).await
    }
}

#[tokio::test]
async fn a_panicking_run_fails_its_window_is_recorded_and_retried() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    seed(&store, t0() - m(5)).await;
    let fake = Arc::new(Fake::default());
    let panicked = Arc::new(AtomicBool::new(false));
    let once = panicked.clone();
    let inner = executor(&clock, "A", &fake, |_| Act::Instant);
    let exec: Executor = Arc::new(move |req: WindowRequest| {
        if !once.swap(true, Ordering::SeqCst) {
            return Box::pin(async { panic!("evaluator bug") });
        }
        inner(req)
    });
    let s = scheduler(&clock, &store, exec, "A");
    let token = CancellationToken::new();
    let h = spawn_run(&s, vec![rule()], &token);
    drive(&clock, t0() + m(5), Duration::seconds(10)).await;

    let ex = executions(&store);
    assert_eq!(ex.len(), 2, "{ex:?}");
    assert_eq!(ex[0].status, RunStatus::Failed);
    assert!(ex[0].errors.iter().any(|e| e.contains("panicked (evaluator bug)")), "{:?}", ex[0].errors);
    assert_eq!(ex[0].window_end, Some(t0() - m(5)), "the window end must not move past a panicked run");
    // The next tick runs the failed window again (as catch-up) and the new one.
    assert_eq!(ex[1].status, RunStatus::Succeeded);
    assert_eq!(fake.done_ends(), vec![t0(), t0() + m(5)]);
    assert_eq!(s.stats().run_panics.load(Ordering::Relaxed), 1);
    assert!(s.stats().rules_down().is_empty());
    token.cancel();
    assert_eq!(h.await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn a_failed_rule_task_is_recorded_shown_down_and_restarted_with_backoff() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(FaultyStore::new(2, false));
    let fake = Arc::new(Fake::default());
    let exec = executor(&clock, "A", &fake, |_| Act::Instant);
    let s = Scheduler::new(Arc::new(clock.clone()), store.clone(), exec, SchedulerConfig::new("A"));
    let token = CancellationToken::new();
    let h = spawn_run(&s, vec![rule()], &token);
    settle().await;

    // First failure: recorded, counted and shown as down until the restart.
    assert_eq!(s.stats().task_failures.load(Ordering::Relaxed), 1);
    let down = s.stats().rules_down();
    assert!(down.get("r1").is_some_and(|why| why.contains("state store bug")), "{down:?}");
    let failed: Vec<_> = store.inner.ledger().into_iter().filter(|e| e.status == RunStatus::Failed).collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].message.contains("stopped unexpectedly (panicked: state store bug)"), "{}", failed[0].message);

    // The restarts back off (≥ 0.5 s, then ≥ 1 s) and the third attempt runs the tick.
    drive(&clock, t0() + Duration::seconds(4), Duration::milliseconds(100)).await;
    assert_eq!(s.stats().task_failures.load(Ordering::Relaxed), 2);
    assert!(s.stats().rules_down().is_empty(), "restarted");
    assert_eq!(fake.done_ends(), vec![t0()]);
    drive(&clock, t0() + m(5), Duration::seconds(10)).await;
    assert_eq!(fake.done_ends(), vec![t0(), t0() + m(5)]);
    token.cancel();
    assert_eq!(h.await.unwrap(), Vec::<String>::new(), "nothing is down at shutdown");
}

#[tokio::test]
async fn rules_still_down_at_shutdown_are_reported() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(FaultyStore::new(u32::MAX, false));
    let fake = Arc::new(Fake::default());
    let exec = executor(&clock, "A", &fake, |_| Act::Instant);
    let s = Scheduler::new(Arc::new(clock.clone()), store.clone(), exec, SchedulerConfig::new("A"));
    let token = CancellationToken::new();
    let h = spawn_run(&s, vec![rule()], &token);
    drive(&clock, t0() + m(3), Duration::seconds(5)).await;
    assert!(s.stats().task_failures.load(Ordering::Relaxed) >= 3, "restarted again and again");
    token.cancel();
    assert_eq!(h.await.unwrap(), vec!["r1".to_string()], "a dead rule must not look like a clean exit");
    assert!(fake.done_ends().is_empty());
}

#[test]
fn a_cpu_bound_run_on_its_own_runtime_cannot_hold_up_the_timeout() {
    // The scheduler on a single-threaded runtime, as a busy daemon worker would be; the run blocks its
    // thread for 3 s without ever awaiting (evaluation of a huge page).
    let runs = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let main = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    let exec: Executor = Arc::new(|req: WindowRequest| {
        Box::pin(async move {
            std::thread::sleep(std::time::Duration::from_secs(3));
            WindowOutcome::succeeded(&req, 0)
        })
    });
    let s = Scheduler::with_run_runtime(
        Arc::new(clock.clone()),
        store.clone(),
        exec,
        SchedulerConfig::new("A"),
        Some(runs.handle().clone()),
    );
    let mut r = rule();
    r.run_timeout = m(1);
    let started = std::time::Instant::now();
    main.block_on(async {
        let tick = {
            let (s, r) = (s.clone(), r.clone());
            tokio::spawn(async move { s.run_tick(&r, t0(), &CancellationToken::new()).await })
        };
        settle().await;
        clock.advance(m(2));
        let report = tick.await.unwrap().unwrap();
        assert_eq!(report.executions[0].status, RunStatus::Failed);
        assert!(report.executions[0].errors[0].contains("run timeout"), "{:?}", report.executions[0].errors);
    });
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "the timeout waited for the run: {:?}", started.elapsed());
    assert_eq!(s.stats().timeouts.load(Ordering::Relaxed), 1);
    runs.shutdown_background();
}

#[tokio::test]
async fn a_replica_that_never_owned_the_rule_records_no_skipped_ticks() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(InMemoryStateStore::new());
    let mut held = RuleState::new("r1");
    held.lease_owner = Some("A".into());
    held.lease_expires = Some(t0() + m(60));
    store.create(&held).await.unwrap();
    let fake = Arc::new(Fake::default());
    let b = scheduler(&clock, &store, executor(&clock, "B", &fake, |_| Act::Instant), "B");
    let token = CancellationToken::new();
    let _h = spawn_run(&b, vec![rule()], &token);
    settle().await;
    clock.advance(m(12)); // B's loop wakes late: t0+5 was missed, t0+10 is due — and A holds the rule
    settle().await;
    assert_eq!(b.stats().ticks_skipped.load(Ordering::Relaxed), 1);
    assert!(b.stats().ticks_held_elsewhere.load(Ordering::Relaxed) >= 1);
    assert!(store.ledger().is_empty(), "B ran nothing, so it records nothing: {:?}", store.ledger());
    assert!(fake.done_ends().is_empty());
    token.cancel();
}

#[tokio::test]
async fn a_ledger_entry_the_store_refused_is_written_before_the_next_one() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(FaultyStore::new(0, true));
    seed(&store.inner, t0() - m(5)).await;
    let fake = Arc::new(Fake::default());
    let mut config = SchedulerConfig::new("A");
    config.write_attempts = 1;
    let s = Scheduler::new(Arc::new(clock.clone()), store.clone(), executor(&clock, "A", &fake, |_| Act::Instant), config);

    // The run completes (its window is done and recorded in the state) but the ledger refuses its entry.
    s.run_tick(&rule(), t0(), &CancellationToken::new()).await.unwrap();
    assert!(store.inner.ledger().is_empty(), "the store refused the entry");
    assert_eq!(store.inner.state("r1").unwrap().value.last_window_end, Some(t0()));

    // Once the store answers, the kept entry is written first, then the new one: no finished run is missing.
    store.ledger_down.store(false, Ordering::SeqCst);
    clock.advance(m(5));
    s.run_tick(&rule(), t0() + m(5), &CancellationToken::new()).await.unwrap();
    let ends: Vec<_> = store.inner.ledger().iter().map(|e| e.window_to).collect();
    assert_eq!(ends, vec![Some(t0()), Some(t0() + m(5))], "{:#?}", store.inner.ledger());
}
