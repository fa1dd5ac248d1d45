//! The scheduler loop: runs every rule on its schedule, forever, beside a cluster.
//!
//! Each rule gets its own task, so rules run concurrently while one rule never overlaps itself (in this
//! process, because its task is sequential; across replicas, because of the lease). For every tick the
//! task claims the rule's lease, plans the windows ([`windows::plan`]), runs them oldest first through
//! the injected [`Executor`] with a per-window timeout while renewing the lease, and releases the lease
//! in a write that advances the window end to the last window that completed. One ledger entry is
//! written per execution.
//!
//! * **Ticks** come from [`Schedule`]; a tick that passes while the previous run is still going is run
//!   late (the newest missed tick only) and the older missed ones are recorded as a skip. The windows of
//!   skipped ticks are not lost: the late run's gap handling covers them.
//! * **Failures** never stop the loop. An executor error or timeout leaves the window end where it was,
//!   so the next tick retries that time as catch-up/backfill. Store errors (cluster down) are retried
//!   with jittered exponential backoff and make [`SchedulerStats::is_ready`] false meanwhile.
//! * **Shutdown**: cancelling the token stops new claims at once; a run in progress gets
//!   `shutdown_grace` to finish, after which it is abandoned; either way the lease is released, so
//!   another replica can continue immediately.
//! * **Time** is the injected [`Clock`]: timeouts, renewals, grace and backoff all use it (not tokio's
//!   timer directly), so tests drive hours of schedule with a [`super::clock::ManualClock`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

use super::clock::{BoxFuture, Clock};
use super::lease::{self, Claim, Lease, LeaseError, Release};
use super::schedule::{Schedule, ScheduleError};
use super::execution_log::ExecutionLog;
use super::state::{ExecutionType, LedgerEntry, RunStatus, StateStore, StoreError};
use super::windows::{self, GapPolicy, Window, WindowPlan};
use crate::detect::RunSummary;
use crate::es::retry::Backoff;

pub use crate::config::SequenceMode;

/// Why a rule cannot be scheduled; each names the rule and the setting to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("rule `{rule_id}`: {what} must be longer than zero (got {got})")]
    NotPositive { rule_id: String, what: &'static str, got: Duration },
    #[error("rule `{rule_id}`: {what} {}", crate::limits::too_long(&got.to_string()))]
    TooLong { rule_id: String, what: &'static str, got: Duration },
    #[error("rule `{rule_id}`: max_backfill must not be negative")]
    NegativeBackfill { rule_id: String },
    #[error("rule `{rule_id}`: invalid schedule")]
    Schedule {
        rule_id: String,
        #[source]
        source: ScheduleError,
    },
}

/// Scheduling parameters of one rule.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub rule_id: String,
    /// When ticks happen.
    pub schedule: Schedule,
    /// The rule's `interval`: the step between catch-up/backfill windows (for cron schedules too).
    pub interval: Duration,
    /// Window length, from the rule's `from` (`now-9m` → 9 minutes).
    pub lookback: Duration,
    pub gap_policy: GapPolicy,
    pub sequence_mode: SequenceMode,
    /// Longest one window's run may take before it is stopped and counted as failed.
    pub run_timeout: Duration,
}

/// Default `max_backfill` of [`GapPolicy::Backfill`].
pub fn default_max_backfill() -> Duration {
    Duration::hours(24)
}

impl RuleSpec {
    /// A rule on an interval schedule with esdetect's defaults: backfill on (24 h), Kibana sequence
    /// mode, 5 minute run timeout (the Kibana alerting default).
    pub fn every(rule_id: impl Into<String>, interval: Duration, lookback: Duration) -> Result<RuleSpec, SpecError> {
        let rule_id = rule_id.into();
        let schedule = Schedule::interval(interval).map_err(|source| SpecError::Schedule { rule_id: rule_id.clone(), source })?;
        RuleSpec {
            rule_id,
            schedule,
            interval,
            lookback,
            gap_policy: GapPolicy::Backfill { max_backfill: default_max_backfill() },
            sequence_mode: SequenceMode::Kibana,
            run_timeout: Duration::minutes(5),
        }
        .validated()
    }

    /// Checks the durations; the error names the rule and the setting to fix.
    pub fn validated(self) -> Result<RuleSpec, SpecError> {
        let settings = [("interval", self.interval), ("the look-back (`from`)", self.lookback), ("the run timeout", self.run_timeout)];
        for (what, d) in settings {
            if d <= Duration::zero() {
                return Err(SpecError::NotPositive { rule_id: self.rule_id, what, got: d });
            }
        }
        for (what, d) in settings {
            if d > crate::limits::max_duration() {
                return Err(SpecError::TooLong { rule_id: self.rule_id, what, got: d });
            }
        }
        if let GapPolicy::Backfill { max_backfill } = self.gap_policy {
            if max_backfill < Duration::zero() {
                return Err(SpecError::NegativeBackfill { rule_id: self.rule_id });
            }
        }
        Ok(self)
    }
}

/// What the executor is asked to do: query one window of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRequest {
    pub rule_id: String,
    /// Shared by all windows of one execution; also the ledger entry's id.
    pub execution_id: String,
    pub window: Window,
    /// End of the window completed before this one (the stored end for the first window of an
    /// execution, `None` if the rule never ran). In [`SequenceMode::Complete`] only sequences whose
    /// last event is after this are new.
    pub previous_window_end: Option<DateTime<Utc>>,
    pub sequence_mode: SequenceMode,
    /// The tick this window belongs to.
    pub scheduled_at: DateTime<Utc>,
}

/// What one window's run produced: the detect layer's own [`RunSummary`] (any `errors` in it make the
/// window count as failed, so the window end does not advance past it; `warnings` make the status
/// `partial failure` but the window counts as done), or why the window could not be run at all.
#[derive(Debug, Clone)]
pub enum WindowOutcome {
    /// The window ran; its summary, whatever its status.
    Ran(Box<RunSummary>),
    /// The window was not run (its rule is not loaded, its alerts alias could not be prepared, …).
    NotRun(String),
}

impl WindowOutcome {
    /// A window that was not run, with why.
    pub fn failed(error: impl Into<String>) -> WindowOutcome {
        WindowOutcome::NotRun(error.into())
    }
}

impl From<RunSummary> for WindowOutcome {
    fn from(summary: RunSummary) -> WindowOutcome {
        WindowOutcome::Ran(Box::new(summary))
    }
}

#[cfg(test)]
impl WindowOutcome {
    /// A run of `req` that went well and fetched `fetched` events (for the scheduler's own tests, which
    /// have no prepared rule to build a summary from).
    pub(crate) fn succeeded(req: &WindowRequest, fetched: u64) -> WindowOutcome {
        // Any prepared rule will do: the summary is renamed to the request's rule.
        static RULE: std::sync::OnceLock<crate::detect::PreparedRule> = std::sync::OnceLock::new();
        let rule = RULE.get_or_init(|| {
            let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
            crate::detect::prepare_rules(&rules, &crate::config::Config::default()).rules.remove(0)
        });
        let mut summary = RunSummary::new(rule, req.window.range);
        summary.rule_id = req.rule_id.clone();
        summary.fetched = fetched;
        WindowOutcome::from(summary)
    }
}

/// Runs one window of one rule (the detect layer). Dropping the future abandons the run (timeout,
/// shutdown), so it must not leave anything that a rerun of the same window would not repair.
pub type Executor = Arc<dyn Fn(WindowRequest) -> BoxFuture<'static, WindowOutcome> + Send + Sync>;

/// Jittered exponential backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig { initial: Duration::seconds(1), max: Duration::seconds(60) }
    }
}

impl BackoffConfig {
    /// A fresh backoff with these bounds (the one jitter rule of [`crate::es::retry`]).
    fn start(self) -> Backoff {
        Backoff::new(self.initial.to_std().unwrap_or_default(), self.max.to_std().unwrap_or_default())
    }
}

/// The next delay of a backoff on the scheduler's clock.
fn next_delay(backoff: &mut Backoff) -> Duration {
    Duration::from_std(backoff.next_delay()).unwrap_or(Duration::MAX)
}

/// Process-wide settings of a [`Scheduler`].
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This replica's id in leases and the ledger. Must be unique per process (e.g. host + random id).
    pub owner: String,
    /// How long a claim lasts unless renewed (90 s): what a killed replica blocks its rules for.
    pub lease_ttl: Duration,
    /// How often a running execution renews its lease (30 s); well below `lease_ttl`, so one or two
    /// failed renewals do not lose it.
    pub lease_renew_every: Duration,
    /// How long a run in progress may go on after shutdown was requested.
    pub shutdown_grace: Duration,
    /// Most windows run under one claim (one ledger entry); a longer backfill releases and claims again,
    /// so its progress is saved as it goes. At least 5, so Kibana's catch-up is never split.
    pub max_windows_per_execution: usize,
    /// Backoff when the store is unreachable.
    pub backoff: BackoffConfig,
    /// How often a failed release or ledger write is retried before giving up (the lease then expires
    /// on its own, and the windows are run again by whoever claims next).
    pub write_attempts: u32,
    /// Executions in a row that may fail on the same window before it is given up (reported as an error,
    /// and the window end moves past it). Without this one poison window would stall a rule forever.
    pub max_window_attempts: u32,
}

impl SchedulerConfig {
    pub fn new(owner: impl Into<String>) -> Self {
        SchedulerConfig {
            owner: owner.into(),
            lease_ttl: Duration::seconds(90),
            lease_renew_every: Duration::seconds(30),
            shutdown_grace: Duration::seconds(30),
            max_windows_per_execution: 12,
            backoff: BackoffConfig::default(),
            write_attempts: 3,
            max_window_attempts: 3,
        }
    }

    /// Lease length: short, and renewed while the rule runs, so a replica that dies holds its rules for
    /// at most `lease_ttl` whatever the rule's interval or run timeout.
    pub fn lease_length(&self, _rule: &RuleSpec) -> Duration {
        self.lease_ttl.max(Duration::seconds(1))
    }

    /// How often a held lease is renewed: `lease_renew_every`, and at least three times per lease.
    pub fn renew_every(&self, rule: &RuleSpec) -> Duration {
        self.lease_renew_every.min(self.lease_length(rule) / 3).max(Duration::milliseconds(100))
    }
}

/// Counters for readiness and metrics, shared with whoever serves them.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    ready: AtomicBool,
    pub executions_succeeded: AtomicU64,
    pub executions_partial: AtomicU64,
    pub executions_failed: AtomicU64,
    pub windows_completed: AtomicU64,
    pub windows_failed: AtomicU64,
    /// Ticks this replica did not run because its previous run of the rule was still going.
    pub ticks_skipped: AtomicU64,
    /// Ticks another replica held the rule for.
    pub ticks_held_elsewhere: AtomicU64,
    pub store_errors: AtomicU64,
    pub leases_lost: AtomicU64,
    pub timeouts: AtomicU64,
    /// Sum of unfilled gaps reported, in seconds.
    pub gap_seconds: AtomicU64,
    /// Per rule: windows of the current plan still to run (backfill progress).
    windows_pending: Mutex<HashMap<String, u64>>,
    /// Window runs that panicked (a bug; the window counts as failed and is retried).
    pub run_panics: AtomicU64,
    /// Rule tasks that ended abnormally (a panic outside a window run) and were restarted.
    pub task_failures: AtomicU64,
    /// Rules whose task failed and is waiting to be restarted, with why.
    down: Mutex<std::collections::BTreeMap<String, String>>,
    /// State-store reachability, for log lines: one per change plus a periodic summary.
    store_outage: super::outage::OutageLog,
}

impl SchedulerStats {
    /// True once the store has answered, false while it is being retried.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn windows_pending(&self) -> HashMap<String, u64> {
        self.windows_pending.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Rules whose scheduling task failed and is not running right now (rule id → why).
    pub fn rules_down(&self) -> std::collections::BTreeMap<String, String> {
        self.down.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub(crate) fn set_down(&self, rule_id: &str, why: Option<String>) {
        if let Ok(mut m) = self.down.lock() {
            match why {
                Some(why) => m.insert(rule_id.to_string(), why),
                None => m.remove(rule_id),
            };
        }
    }

    fn set_pending(&self, rule_id: &str, n: u64) {
        if let Ok(mut m) = self.windows_pending.lock() {
            m.insert(rule_id.to_string(), n);
        }
    }

    fn count_execution(&self, status: RunStatus) {
        let c = match status {
            RunStatus::Succeeded | RunStatus::Skipped => &self.executions_succeeded,
            RunStatus::PartialFailure => &self.executions_partial,
            RunStatus::Failed => &self.executions_failed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Ledger entries of the executions run (several for a long backfill).
    pub executions: Vec<LedgerEntry>,
    /// Set when another replica held the rule.
    pub held_by: Option<(String, DateTime<Utc>)>,
    /// True when the tick's windows had already been run (by another replica).
    pub already_done: bool,
}

/// Runs rules on their schedules. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Arc<dyn Clock>,
    store: Arc<dyn StateStore>,
    executor: Executor,
    config: SchedulerConfig,
    stats: Arc<SchedulerStats>,
    /// Where window runs execute; `None`: the current runtime.
    runs: Option<tokio::runtime::Handle>,
    /// Ledger entries the store refused through every attempt (the cluster went down between a run's
    /// state write and its ledger write), oldest first: written before the next entry, so an outage
    /// does not leave a finished run out of the ledger. At most [`MAX_UNWRITTEN`].
    unwritten: std::sync::Mutex<std::collections::VecDeque<LedgerEntry>>,
}

/// Ledger entries kept in memory while the store is unreachable; past this the oldest is dropped (logged).
const MAX_UNWRITTEN: usize = 1000;

impl Inner {
    /// The kept-back ledger entries. A panic while they were locked cannot leave them half-changed (each
    /// change is one push, pop or retain), so a poisoned lock is used as it is.
    fn unwritten(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<LedgerEntry>> {
        self.unwritten.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Inner {
    /// Entries still kept back when the scheduler goes away are lost: say so, with their runs.
    fn drop(&mut self) {
        let unwritten = self.unwritten.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        for entry in unwritten.iter() {
            tracing::error!(rule = %entry.rule_id, execution = %entry.execution_id,
                "ledger entry lost: the store was unreachable until shutdown");
        }
    }
}

/// How one window's run ended.
enum WindowResult {
    Done(WindowOutcome),
    /// The executor panicked (a bug); the message of the panic.
    Panicked(String),
    TimedOut,
    LeaseLost,
    Abandoned,
}

impl Scheduler {
    pub fn new(clock: Arc<dyn Clock>, store: Arc<dyn StateStore>, executor: Executor, config: SchedulerConfig) -> Self {
        Scheduler::with_run_runtime(clock, store, executor, config, None)
    }

    /// Like [`Scheduler::new`], but window runs execute on `runs` (a runtime of their own). Evaluation is
    /// CPU work: on its own runtime it can never hold up the scheduler's timers (so `run_timeout` fires on
    /// time and the run is aborted at its next await), lease renewals, or the health endpoints.
    pub fn with_run_runtime(
        clock: Arc<dyn Clock>,
        store: Arc<dyn StateStore>,
        executor: Executor,
        config: SchedulerConfig,
        runs: Option<tokio::runtime::Handle>,
    ) -> Self {
        let mut config = config;
        config.max_windows_per_execution = config.max_windows_per_execution.max(windows::KIBANA_MAX_CATCHUP as usize + 1);
        let stats = Arc::new(SchedulerStats::default());
        Scheduler { inner: Arc::new(Inner { clock, store, executor, config, stats, runs, unwritten: Default::default() }) }
    }

    pub fn stats(&self) -> Arc<SchedulerStats> {
        self.inner.stats.clone()
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.inner.config
    }

    /// Runs every rule on its schedule until `shutdown` is cancelled, then returns once every rule has
    /// released its lease (within `shutdown_grace` plus a few store round trips).
    ///
    /// Each rule's task is supervised: if it ends abnormally (a panic outside a window run — those are
    /// caught per window), the failure is written to the ledger, counted, shown by
    /// [`SchedulerStats::rules_down`] (so `/readyz` says not ready) and the rule is restarted after a
    /// jittered exponential backoff. Returns the rules that were down when the loop stopped, so the
    /// process can exit non-zero instead of pretending all was well.
    pub async fn run(&self, rules: Vec<RuleSpec>, shutdown: CancellationToken) -> Vec<String> {
        let mut tasks = tokio::task::JoinSet::new();
        let mut by_task: HashMap<tokio::task::Id, (RuleSpec, Backoff)> = HashMap::new();
        for rule in rules {
            let handle = tasks.spawn(self.supervised(rule.clone(), None, shutdown.clone()));
            by_task.insert(handle.id(), (rule, self.inner.config.backoff.start()));
        }
        while let Some(res) = tasks.join_next_with_id().await {
            let e = match res {
                Ok((id, ())) => {
                    by_task.remove(&id);
                    continue;
                }
                Err(e) => e,
            };
            let Some((rule, mut backoff)) = by_task.remove(&e.id()) else { continue };
            let why = if e.is_panic() { format!("panicked: {}", panic_message(e.into_panic())) } else { e.to_string() };
            self.inner.stats.task_failures.fetch_add(1, Ordering::Relaxed);
            self.inner.stats.set_down(&rule.rule_id, Some(why.clone()));
            let delay = next_delay(&mut backoff);
            tracing::error!(rule = %rule.rule_id, error = %why, restart_in_ms = delay.num_milliseconds(),
                "the rule's scheduling task failed; restarting it");
            self.record_task_failure(&rule, &why, delay).await;
            if shutdown.is_cancelled() {
                continue; // stays down: reported by the return value
            }
            let handle = tasks.spawn(self.supervised(rule.clone(), Some(delay), shutdown.clone()));
            by_task.insert(handle.id(), (rule, backoff));
        }
        self.inner.stats.rules_down().into_keys().collect()
    }

    /// A rule's loop, started after `delay` when it is a restart (the rule counts as down until then).
    fn supervised(
        &self,
        rule: RuleSpec,
        delay: Option<Duration>,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let me = self.clone();
        async move {
            if let Some(delay) = delay {
                let until = crate::limits::later(me.inner.clock.now(), delay);
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    _ = me.inner.clock.sleep_until(until) => {}
                }
                me.inner.stats.set_down(&rule.rule_id, None);
                tracing::info!(rule = %rule.rule_id, "rule restarted");
            }
            me.rule_loop(rule, shutdown).await
        }
    }

    /// Writes a failed ledger entry for a rule task that ended abnormally, so `esdetect status` shows it.
    async fn record_task_failure(&self, rule: &RuleSpec, why: &str, delay: Duration) {
        let now = self.inner.clock.now();
        let message = format!(
            "the rule's scheduling task stopped unexpectedly ({why}); this is a bug in esdetect, please report it. \
             The rule is restarted in {}s and its windows are run again.",
            delay.num_seconds().max(1)
        );
        let mut log = ExecutionLog::start(&rule.rule_id, &self.inner.config.owner, ExecutionType::Scheduled, now, now);
        log.error(message);
        let entry = log.finish(now, Vec::new(), 0);
        self.inner.stats.count_execution(RunStatus::Failed);
        self.append_with_retries(&entry).await;
    }

    /// One rule's loop: wait for the tick, run it, repeat.
    async fn rule_loop(&self, rule: RuleSpec, shutdown: CancellationToken) {
        let inner = &self.inner;
        let Some(mut next) = rule.schedule.latest_at_or_before(inner.clock.now()) else {
            tracing::warn!(rule = %rule.rule_id, "the schedule has no times; the rule will not run");
            return;
        };
        let mut backoff = inner.config.backoff.start();
        // Skipped ticks not yet recorded: (first skipped, how many). Recorded once the store answers again.
        let mut skipped: Option<(DateTime<Utc>, u64)> = None;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = inner.clock.sleep_until(next) => {}
            }
            let now = inner.clock.now();
            // Run the newest tick that is due; older due ticks were skipped (a slow run, a cluster outage).
            let due = rule.schedule.latest_at_or_before(now).filter(|t| *t > next).unwrap_or(next);
            if due > next {
                let n = 1 + rule.schedule.count_between(next, due, u32::MAX as u64);
                inner.stats.ticks_skipped.fetch_add(n, Ordering::Relaxed);
                let (first, before) = skipped.unwrap_or((next, 0));
                skipped = Some((first, before + n));
            }
            match self.run_tick(&rule, due, &shutdown).await {
                Ok(report) => {
                    if let super::outage::Report::Recovered { down_for, failures } =
                        inner.stats.store_outage.success(inner.clock.now())
                    {
                        tracing::info!(down_s = down_for.num_seconds(), failures, "the state store is reachable again");
                    }
                    backoff.reset();
                    // Only the replica that ran the late tick records the skipped ones; another replica
                    // held the rule (or had run it), and it keeps its own record.
                    if let Some((first, n)) = skipped.take() {
                        if !report.executions.is_empty() {
                            self.record_skip(&rule, first, due, n, now).await;
                        }
                    }
                    match rule.schedule.next_after(due) {
                        Some(n) => next = n,
                        None => {
                            tracing::info!(rule = %rule.rule_id, "the schedule has no further times; stopping");
                            return;
                        }
                    }
                }
                Err(e) => {
                    inner.stats.ready.store(false, Ordering::SeqCst);
                    inner.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                    let delay = next_delay(&mut backoff);
                    match inner.stats.store_outage.failure(inner.clock.now()) {
                        super::outage::Report::Started => tracing::warn!(rule = %rule.rule_id, error = %e,
                            "cannot reach the state store; every rule retries with backoff (one summary a minute until it is back)"),
                        super::outage::Report::StillDown { down_for, failures } => tracing::warn!(error = %e,
                            down_s = down_for.num_seconds(), failures, "the state store is still unreachable"),
                        _ => tracing::debug!(rule = %rule.rule_id, error = %e, retry_in_ms = delay.num_milliseconds(),
                            "cannot reach the state store; retrying"),
                    }
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return,
                        _ = inner.clock.sleep_until(now + delay) => {}
                    }
                    next = due; // retry this tick (or the newest one due by then)
                }
            }
        }
    }

    /// Runs one tick of `rule` scheduled at `scheduled_at`: claim, plan, run, release, ledger; repeated
    /// while a long backfill has windows left. Returns `Err` only when the store could not be reached to
    /// claim. (`esdetect run --once` is not a tick: it takes no lease and moves no window end, see
    /// [`super::manual::run_once`].)
    pub async fn run_tick(
        &self,
        rule: &RuleSpec,
        scheduled_at: DateTime<Utc>,
        shutdown: &CancellationToken,
    ) -> Result<TickReport, StoreError> {
        let inner = &self.inner;
        let lease_len = inner.config.lease_length(rule);
        let mut report = TickReport::default();
        while !shutdown.is_cancelled() {
            let claim =
                lease::try_claim(inner.store.as_ref(), &rule.rule_id, &inner.config.owner, inner.clock.now(), lease_len)
                    .await?;
            inner.stats.ready.store(true, Ordering::SeqCst);
            let lease = match claim {
                Claim::Acquired(l) => l,
                Claim::HeldBy { owner, until } => {
                    inner.stats.ticks_held_elsewhere.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(rule = %rule.rule_id, %owner, %until, "another replica holds the rule");
                    report.held_by = Some((owner, until));
                    return Ok(report);
                }
            };
            let plan = windows::plan(
                scheduled_at,
                rule.lookback,
                rule.interval,
                lease.state.value.last_window_end,
                rule.gap_policy,
            );
            if plan.windows.is_empty() {
                report.already_done = true;
                self.release_with_retries(&lease, Release::default()).await;
                return Ok(report);
            }
            let batch = plan.windows.len().min(inner.config.max_windows_per_execution);
            let (entry, all_done) = self.execute(rule, lease, &plan, batch, scheduled_at, shutdown).await;
            report.executions.push(entry);
            if !(all_done && batch < plan.windows.len()) {
                break;
            }
        }
        Ok(report)
    }

    /// Runs the first `batch` windows of `plan` under `lease`, then releases it and writes the ledger.
    /// Returns the ledger entry and whether every window of the batch completed.
    async fn execute(
        &self,
        rule: &RuleSpec,
        mut lease: Lease,
        plan: &WindowPlan,
        batch: usize,
        scheduled_at: DateTime<Utc>,
        shutdown: &CancellationToken,
    ) -> (LedgerEntry, bool) {
        let inner = &self.inner;
        let started_at = inner.clock.now();
        let mut log = ExecutionLog::start(&rule.rule_id, &inner.config.owner, ExecutionType::Scheduled, scheduled_at, started_at);
        let execution_id = log.execution_id().to_string();
        let windows: Vec<Window> = plan.windows[..batch].to_vec();
        let remaining = (plan.windows.len() - batch) as u32;
        log.gap(plan);
        if let Some(gap) = &plan.unfilled {
            inner.stats.gap_seconds.fetch_add(gap.seconds_rounded().max(0) as u64, Ordering::Relaxed);
            tracing::warn!(rule = %rule.rule_id, gap_ms = gap.millis(), from = %gap.from, to = %gap.to,
                "time was left unqueried");
        }
        if plan.windows.len() > 1 {
            tracing::info!(rule = %rule.rule_id, windows = plan.windows.len(), this_execution = batch,
                gap_ms = plan.gap.num_milliseconds(), "catching up");
        }
        let mut completed = 0u32; // windows that succeeded
        let mut settled = 0usize; // windows the window end may move past (succeeded or given up)
        let mut done_end = None;
        let mut previous_end = lease.state.value.last_window_end;
        let mut lease_lost = false;
        let mut failed_window = None;
        for w in &windows {
            let req = WindowRequest {
                rule_id: rule.rule_id.clone(),
                execution_id: execution_id.clone(),
                window: *w,
                previous_window_end: previous_end,
                sequence_mode: rule.sequence_mode,
                scheduled_at,
            };
            let ok = match self.run_window(rule, req, &mut lease, shutdown).await {
                WindowResult::Done(out) => log.add(out),
                WindowResult::Panicked(why) => {
                    inner.stats.run_panics.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(rule = %rule.rule_id, from = %w.range.from, to = %w.range.to, error = %why, "the run panicked");
                    log.error(format!(
                        "the run of window {} to {} panicked ({why}); this is a bug in esdetect, please report it; \
                         the window will be retried",
                        w.range.from, w.range.to
                    ));
                    false
                }
                WindowResult::TimedOut => {
                    inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    log.error(format!(
                        "the run of window {} to {} did not finish within the run timeout ({}s) and was stopped; \
                         it will be retried",
                        w.range.from, w.range.to, rule.run_timeout.num_seconds()
                    ));
                    false
                }
                WindowResult::LeaseLost => {
                    inner.stats.leases_lost.fetch_add(1, Ordering::Relaxed);
                    lease_lost = true;
                    log.error(format!(
                        "lost the lease on the rule while running window {} to {} (it could not be renewed in \
                         time and another replica took over); this run's progress is not recorded",
                        w.range.from, w.range.to
                    ));
                    false
                }
                WindowResult::Abandoned => {
                    log.error(format!(
                        "window {} to {} was abandoned at shutdown after the {}s grace period; it will be run again",
                        w.range.from, w.range.to, inner.config.shutdown_grace.num_seconds()
                    ));
                    false
                }
            };
            if !ok {
                inner.stats.windows_failed.fetch_add(1, Ordering::Relaxed);
                if lease_lost || shutdown.is_cancelled() {
                    break; // not the window's fault: run it again next time
                }
                let st = &lease.state.value;
                let prior = if st.failed_window_end == Some(w.range.to) { st.failed_window_attempts } else { 0 };
                let attempts = prior.saturating_add(1);
                if attempts < inner.config.max_window_attempts.max(1) {
                    failed_window = Some((w.range.to, attempts));
                    break;
                }
                log.error(format!(
                    "window {} to {} failed {attempts} times in a row and was given up so the rule can move on; events in it may have been missed",
                    w.range.from, w.range.to
                ));
                tracing::error!(rule = %rule.rule_id, from = %w.range.from, to = %w.range.to, attempts, "giving up on a window");
            } else {
                inner.stats.windows_completed.fetch_add(1, Ordering::Relaxed);
                completed += 1;
            }
            settled += 1;
            done_end = Some(w.range.to);
            previous_end = Some(w.range.to);
            inner.stats.set_pending(&rule.rule_id, (plan.windows.len() as u64).saturating_sub(settled as u64));
            if shutdown.is_cancelled() {
                break; // stop between windows; what completed is recorded below
            }
        }
        let all_done = settled == windows.len();
        let (status, message) = log.status();
        let finished_at = inner.clock.now();
        let mut window_end = lease.state.value.last_window_end;
        if !lease_lost {
            let release = Release {
                window_end: done_end,
                status: Some((status, message.clone())),
                execution_id: Some(execution_id.clone()),
                failed_window,
            };
            if let Some(v) = self.release_with_retries(&lease, release).await {
                window_end = v.value.last_window_end;
            }
        }
        inner.stats.count_execution(status);
        if remaining > 0 {
            tracing::info!(rule = %rule.rule_id, completed, remaining, "backfill progress");
        }
        let mut entry = log.finish(finished_at, windows, completed);
        entry.windows_remaining = remaining;
        entry.window_end = window_end;
        tracing::info!(rule = %entry.rule_id, status = %entry.status, windows = entry.windows.len(),
            completed, alerts = entry.counts.alerts_written, "execution finished");
        self.append_with_retries(&entry).await;
        (entry, all_done && !lease_lost)
    }

    /// Runs one window with the timeout, lease renewal and shutdown grace, all on the injected clock.
    async fn run_window(
        &self,
        rule: &RuleSpec,
        req: WindowRequest,
        lease: &mut Lease,
        shutdown: &CancellationToken,
    ) -> WindowResult {
        let inner = &self.inner;
        let clock = &inner.clock;
        let lease_len = inner.config.lease_length(rule);
        let renew_every = inner.config.renew_every(rule);
        let start = clock.now();
        let deadline = crate::limits::later(start, rule.run_timeout);
        let mut next_renew = crate::limits::later(start, renew_every);
        let mut grace_until = shutdown.is_cancelled().then(|| crate::limits::later(start, inner.config.shutdown_grace));
        // Its own task: a panic in the run is caught here instead of killing the rule's loop, and dropping
        // the handle (timeout, shutdown) aborts it.
        let future = (inner.executor)(req);
        let spawned = match &inner.runs {
            Some(runtime) => runtime.spawn(future),
            None => tokio::spawn(future),
        };
        let run = tokio_util::task::AbortOnDropHandle::new(spawned);
        tokio::pin!(run);
        loop {
            let grace = {
                let sleep = grace_until.map(|t| clock.sleep_until(t));
                async move {
                    match sleep {
                        Some(s) => s.await,
                        None => std::future::pending().await,
                    }
                }
            };
            tokio::select! {
                biased;
                out = &mut run => return match out {
                    Ok(out) => WindowResult::Done(out),
                    Err(e) if e.is_panic() => WindowResult::Panicked(panic_message(e.into_panic())),
                    Err(e) => WindowResult::Panicked(e.to_string()),
                },
                _ = clock.sleep_until(deadline) => return WindowResult::TimedOut,
                _ = grace => return WindowResult::Abandoned,
                _ = shutdown.cancelled(), if grace_until.is_none() => {
                    grace_until = Some(crate::limits::later(clock.now(), inner.config.shutdown_grace));
                }
                _ = clock.sleep_until(next_renew) => {
                    let now = clock.now();
                    match lease::renew(inner.store.as_ref(), lease, now, lease_len).await {
                        Ok(()) => next_renew = now + renew_every,
                        Err(LeaseError::Lost { .. }) => return WindowResult::LeaseLost,
                        Err(LeaseError::Store(e)) => {
                            inner.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                            // Keep running while the lease is still ours; retry the renewal sooner.
                            if lease.expires().is_none_or(|exp| now >= exp) {
                                return WindowResult::LeaseLost;
                            }
                            tracing::warn!(rule = %rule.rule_id, error = %e, "could not renew the lease; retrying");
                            next_renew = now + (renew_every / 4).max(Duration::milliseconds(100));
                        }
                    }
                }
            }
        }
    }

    /// Releases the lease, retrying store errors a few times. Returns the new state, or `None` if the
    /// release did not happen (the lease then expires by itself).
    async fn release_with_retries(&self, lease: &Lease, release: Release) -> Option<super::state::Versioned<super::state::RuleState>> {
        let inner = &self.inner;
        let mut backoff = inner.config.backoff.start();
        for attempt in 1..=inner.config.write_attempts.max(1) {
            match lease::release(inner.store.as_ref(), lease, inner.clock.now(), release.clone()).await {
                Ok(v) => return Some(v),
                Err(LeaseError::Lost { .. }) => {
                    inner.stats.leases_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(rule = %lease.rule_id(), "lease lost before release; results not recorded");
                    return None;
                }
                Err(LeaseError::Store(e)) => {
                    inner.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(rule = %lease.rule_id(), error = %e, attempt, "could not release the lease");
                    if attempt < inner.config.write_attempts {
                        let until = inner.clock.now() + next_delay(&mut backoff);
                        inner.clock.sleep_until(until).await;
                    }
                }
            }
        }
        tracing::error!(rule = %lease.rule_id(), "giving up releasing the lease; it will expire on its own");
        None
    }

    async fn append_with_retries(&self, entry: &LedgerEntry) {
        let inner = &self.inner;
        // Entries an outage kept back go first, so they are not overtaken by newer ones.
        self.write_unwritten().await;
        let mut backoff = inner.config.backoff.start();
        for attempt in 1..=inner.config.write_attempts.max(1) {
            match inner.store.append_ledger(entry).await {
                Ok(()) => return,
                Err(e) => {
                    inner.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(rule = %entry.rule_id, error = %e, attempt, "could not write the ledger entry");
                    if attempt < inner.config.write_attempts {
                        let until = inner.clock.now() + next_delay(&mut backoff);
                        inner.clock.sleep_until(until).await;
                    }
                }
            }
        }
        let mut unwritten = inner.unwritten();
        if unwritten.len() >= MAX_UNWRITTEN {
            if let Some(dropped) = unwritten.pop_front() {
                tracing::error!(rule = %dropped.rule_id, execution = %dropped.execution_id,
                    "ledger entry lost: too many entries waiting for the store");
            }
        }
        tracing::warn!(rule = %entry.rule_id, execution = %entry.execution_id,
            "ledger entry kept in memory; it is written once the store answers again");
        unwritten.push_back(entry.clone());
    }

    /// Writes the entries [`Self::append_with_retries`] kept back, oldest first, until the store refuses one.
    /// Rule tasks may do this side by side: an entry is written by `_id` (a second write is a no-op)
    /// and removed by its execution id, not by position.
    async fn write_unwritten(&self) {
        let inner = &self.inner;
        loop {
            let next = inner.unwritten().front().cloned();
            let Some(entry) = next else { return };
            if let Err(e) = inner.store.append_ledger(&entry).await {
                tracing::debug!(rule = %entry.rule_id, error = %e, "the store still refuses kept ledger entries");
                return;
            }
            tracing::info!(rule = %entry.rule_id, execution = %entry.execution_id, "kept ledger entry written");
            inner.unwritten().retain(|kept| kept.execution_id != entry.execution_id);
        }
    }

    /// Records ticks `[first, due)` as skipped (best effort: no lease needed, failures only logged).
    async fn record_skip(&self, rule: &RuleSpec, first: DateTime<Utc>, due: DateTime<Utc>, skipped: u64, now: DateTime<Utc>) {
        let inner = &self.inner;
        let message = format!(
            "{skipped} scheduled run(s) from {first} to before {due} were skipped because this replica's previous \
             run of the rule was still going or the cluster was unreachable; the run scheduled at {due} covers \
             their time"
        );
        tracing::warn!(rule = %rule.rule_id, skipped, %first, %due, "skipped ticks");
        let entry = ExecutionLog::start(&rule.rule_id, &inner.config.owner, ExecutionType::Scheduled, first, now).skipped(
            u32::try_from(skipped).unwrap_or(u32::MAX),
            message,
            now,
        );
        if let Err(e) = inner.store.append_ledger(&entry).await {
            tracing::warn!(rule = %rule.rule_id, error = %e, "could not record skipped ticks");
        }
    }
}

/// The text of a panic payload (`panic!("…")` gives a `&str` or a `String`).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "a panic without a message".to_string(),
        },
    }
}

