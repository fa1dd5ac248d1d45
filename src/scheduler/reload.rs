//! Hot reload of the daemon's rules and configuration (SIGHUP, or a watch of the rules path).
//!
//! Why: adding or changing a rule should not need a restart (and lose a tick). A reload re-reads the
//! configuration and the rules as a whole; if anything does not validate, the reload is rejected, the
//! errors are logged and the running set stays as it was. Otherwise the running set is changed in place:
//!
//! * a rule whose scheduling parameters are unchanged keeps its task; only its prepared rule (query,
//!   exceptions, alias, actions…) is swapped in [`LiveRules`], which every window run reads when it starts;
//! * a rule whose schedule, interval, look-back, gap policy, sequence mode or timeout changed gets a new
//!   task once the old one has stopped (its current run finishes first, then its lease is released);
//! * an added rule starts on its schedule; a removed rule's task is stopped the same way.
//!
//! State and ledger are keyed by rule id in Elasticsearch, so a changed rule continues from its last
//! window end. Settings read once at start (`[elasticsearch]`, `[scheduler]`) are not reloaded.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, RwLock};

use prometheus::{IntCounterVec, IntGauge, Opts};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::daemon::{RuleSpec, Scheduler};
use super::http::Readiness;
use crate::detect::{PreparedRule, RunOptions};

/// `esdetect_rules_loaded`: rules the daemon schedules right now.
pub static RULES_LOADED: LazyLock<IntGauge> =
    LazyLock::new(|| IntGauge::new("esdetect_rules_loaded", "Rules the daemon schedules right now").expect("valid metric definition"));

/// `esdetect_reload_total{outcome}`: reloads by outcome (`success`, `rejected`).
pub static RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new("esdetect_reload_total", "Reloads of rules and configuration by outcome (success, rejected)"),
        &["outcome"],
    )
    .expect("valid metric definition");
    for o in ["success", "rejected"] {
        c.with_label_values(&[o]);
    }
    c
});

/// `esdetect_reload_last_timestamp_seconds`: when the latest reload was attempted (Unix seconds).
pub static LAST_RELOAD: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new("esdetect_reload_last_timestamp_seconds", "When the latest reload was attempted (Unix time)")
        .expect("valid metric definition")
});

/// `esdetect_reload_last_success`: 1 when the latest reload was applied, 0 when it was rejected.
pub static LAST_RELOAD_OK: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new("esdetect_reload_last_success", "1 when the latest reload was applied, 0 when it was rejected")
        .expect("valid metric definition")
});

/// The reload metrics, for the daemon's `/metrics` registry.
pub fn collectors() -> Vec<Box<dyn prometheus::core::Collector>> {
    vec![
        Box::new(RULES_LOADED.clone()),
        Box::new(RELOADS.clone()),
        Box::new(LAST_RELOAD.clone()),
        Box::new(LAST_RELOAD_OK.clone()),
    ]
}

/// The prepared rules and run options every window run reads when it starts; a reload swaps them.
pub struct LiveRules {
    current: RwLock<(Arc<HashMap<String, PreparedRule>>, Arc<RunOptions>)>,
}

impl LiveRules {
    pub fn new(rules: Vec<PreparedRule>, opts: RunOptions) -> LiveRules {
        LiveRules { current: RwLock::new((Arc::new(by_id(rules)), Arc::new(opts))) }
    }

    /// The rules and options as of now (a run keeps using its snapshot to the end).
    pub fn snapshot(&self) -> (Arc<HashMap<String, PreparedRule>>, Arc<RunOptions>) {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, rules: HashMap<String, PreparedRule>, opts: RunOptions) {
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = (Arc::new(rules), Arc::new(opts));
    }

    /// Drops a rule whose task has stopped (unless a later reload brought it back).
    fn forget(&self, rule_id: &str, active: &HashSet<String>) {
        if active.contains(rule_id) {
            return;
        }
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if g.0.contains_key(rule_id) {
            let mut rules = (*g.0).clone();
            rules.remove(rule_id);
            g.0 = Arc::new(rules);
        }
    }
}

/// A fingerprint of everything a prepared rule holds (query, exceptions, alias, settings).
fn rule_key(rule: &PreparedRule) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{rule:?}").hash(&mut h);
    h.finish()
}

fn by_id(rules: Vec<PreparedRule>) -> HashMap<String, PreparedRule> {
    rules.into_iter().map(|r| (r.rule.rule_id.clone(), r)).collect()
}

/// A validated rule set, ready to replace the running one.
pub struct Loaded {
    /// Enabled rules, each with its scheduling parameters.
    pub rules: Vec<(PreparedRule, RuleSpec)>,
    pub opts: RunOptions,
    /// The rules path to watch (when `[scheduler] watch_rules` is on).
    pub watch: Option<PathBuf>,
}

/// Re-reads configuration and rules; `Err` lists every problem (the reload is then rejected).
pub type Loader = Arc<dyn Fn() -> Result<Loaded, Vec<String>> + Send + Sync>;

/// Why a reload happens (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Sighup,
    Watch,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Rules whose schedule changed: restarted.
    pub rescheduled: Vec<String>,
    /// Rules whose content changed, schedule unchanged: swapped in place.
    pub updated: Vec<String>,
}

struct Task {
    /// The spec the task runs with (its `Debug` text: `RuleSpec` has no equality).
    spec_key: String,
    /// A hash of the prepared rule's `Debug` text, to tell changed rules from unchanged ones in the log.
    rule_key: u64,
    token: CancellationToken,
    handle: JoinHandle<Vec<String>>,
}

/// The running rule tasks, one [`Scheduler::run`] per rule so rules can be started and stopped one by one.
pub struct RuleSet {
    scheduler: Scheduler,
    live: Arc<LiveRules>,
    readiness: Option<Arc<Readiness>>,
    shutdown: CancellationToken,
    running: HashMap<String, Task>,
    /// Tasks of removed or rescheduled rules, still finishing their run.
    stopping: Vec<JoinHandle<Vec<String>>>,
    active: Arc<RwLock<HashSet<String>>>,
}

impl RuleSet {
    /// Starts a task for every rule. `live` must hold the same prepared rules (the executor reads it).
    pub fn start(
        scheduler: Scheduler,
        live: Arc<LiveRules>,
        rules: Vec<(PreparedRule, RuleSpec)>,
        shutdown: CancellationToken,
        readiness: Option<Arc<Readiness>>,
    ) -> RuleSet {
        let mut set = RuleSet {
            scheduler,
            live,
            readiness,
            shutdown,
            running: HashMap::new(),
            stopping: Vec::new(),
            active: Arc::new(RwLock::new(HashSet::new())),
        };
        for (rule, spec) in rules {
            let task = set.spawn(&rule, spec, None);
            set.running.insert(rule.rule.rule_id.clone(), task);
        }
        set.publish_count();
        set
    }

    /// Rule ids running now, sorted.
    pub fn rule_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.running.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn publish_count(&self) {
        let n = self.running.len();
        RULES_LOADED.set(i64::try_from(n).unwrap_or(i64::MAX));
        if let Some(r) = &self.readiness {
            r.set_rules_loaded(n);
        }
        if let Ok(mut a) = self.active.write() {
            *a = self.running.keys().cloned().collect();
        }
    }

    /// A rule's task; with `after`, it starts once that (stopping) task has ended, so one rule never has
    /// two tasks claiming it at once.
    fn spawn(&self, rule: &PreparedRule, spec: RuleSpec, after: Option<JoinHandle<Vec<String>>>) -> Task {
        let token = self.shutdown.child_token();
        let spec_key = format!("{spec:?}");
        let (scheduler, t) = (self.scheduler.clone(), token.clone());
        let handle = tokio::spawn(async move {
            if let Some(previous) = after {
                let _ = previous.await;
            }
            if t.is_cancelled() {
                return Vec::new();
            }
            scheduler.run(vec![spec], t).await
        });
        Task { spec_key, rule_key: rule_key(rule), token, handle }
    }

    /// Stops a task in the background; its rule leaves [`LiveRules`] once it has ended, unless re-added.
    fn retire(&mut self, rule_id: String, task: Task) {
        task.token.cancel();
        let (live, active, stats) = (self.live.clone(), self.active.clone(), self.scheduler.stats());
        self.stopping.push(tokio::spawn(async move {
            let _ = task.handle.await;
            let active = active.read().map(|a| a.clone()).unwrap_or_default();
            if !active.contains(&rule_id) {
                live.forget(&rule_id, &active);
                // A removed rule that was down is no longer a reason for /readyz to fail.
                stats.set_down(&rule_id, None);
            }
            Vec::new()
        }));
    }

    /// Replaces the running set with `loaded`: see the module documentation for what happens to each rule.
    pub fn apply(&mut self, loaded: Loaded) -> ReloadReport {
        let mut report = ReloadReport::default();
        let mut map = HashMap::new();
        let mut next: HashMap<String, Task> = HashMap::new();
        for (rule, spec) in loaded.rules {
            let id = rule.rule.rule_id.clone();
            let task = match self.running.remove(&id) {
                None => {
                    report.added.push(id.clone());
                    self.spawn(&rule, spec, None)
                }
                Some(old) if old.spec_key != format!("{spec:?}") => {
                    report.rescheduled.push(id.clone());
                    old.token.cancel();
                    self.spawn(&rule, spec, Some(old.handle))
                }
                Some(mut old) => {
                    let key = rule_key(&rule);
                    if old.rule_key != key {
                        report.updated.push(id.clone());
                        old.rule_key = key;
                    }
                    old
                }
            };
            next.insert(id.clone(), task);
            map.insert(id, rule);
        }
        let removed: Vec<(String, Task)> = self.running.drain().collect();
        // Rules still finishing a run keep their prepared rule until their task ends.
        let (old_rules, _) = self.live.snapshot();
        for (id, _) in &removed {
            if let Some(r) = old_rules.get(id) {
                map.insert(id.clone(), r.clone());
            }
        }
        self.live.replace(map, loaded.opts);
        self.running = next;
        self.publish_count();
        for (id, task) in removed {
            report.removed.push(id.clone());
            self.retire(id, task);
        }
        for list in [&mut report.added, &mut report.removed, &mut report.rescheduled, &mut report.updated] {
            list.sort();
        }
        report
    }

    /// Waits for every task to end (after `shutdown` was cancelled); returns the rules that were down.
    pub async fn finish(self) -> Vec<String> {
        let mut down = Vec::new();
        for (_, task) in self.running {
            if let Ok(d) = task.handle.await {
                down.extend(d);
            }
        }
        for h in self.stopping {
            let _ = h.await;
        }
        down.sort();
        down.dedup();
        down
    }
}

/// Runs the rule set until `shutdown`, reloading on each trigger. A reload that does not validate is
/// rejected (errors logged, running set kept). Returns the rules that were down when it stopped.
pub async fn serve(mut set: RuleSet, loader: Loader, mut triggers: mpsc::Receiver<Trigger>, mut watcher: Option<Watcher>) -> Vec<String> {
    let shutdown = set.shutdown.clone();
    loop {
        let trigger = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            t = triggers.recv() => match t {
                Some(t) => t,
                None => { shutdown.cancelled().await; break; }
            },
        };
        // Bursts (an editor's save, a `cp -r`) become one reload, read once the files have settled.
        if trigger == Trigger::Watch {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(DEBOUNCE) => {}
            }
        }
        while triggers.try_recv().is_ok() {}
        tracing::info!(trigger = ?trigger, "reloading rules and configuration");
        let load = loader.clone();
        let loaded = match tokio::task::spawn_blocking(move || load()).await {
            Ok(r) => r,
            Err(e) => Err(vec![format!("the reload stopped unexpectedly: {e}")]),
        };
        LAST_RELOAD.set(chrono::Utc::now().timestamp());
        match loaded {
            Err(errors) => {
                RELOADS.with_label_values(&["rejected"]).inc();
                LAST_RELOAD_OK.set(0);
                for e in &errors {
                    tracing::error!("reload: {e}");
                }
                tracing::error!(errors = errors.len(), rules = set.running.len(),
                    "reload rejected: fix the errors above and reload again (SIGHUP); the running rules are unchanged");
            }
            Ok(loaded) => {
                let watch = loaded.watch.clone();
                let report = set.apply(loaded);
                RELOADS.with_label_values(&["success"]).inc();
                LAST_RELOAD_OK.set(1);
                tracing::info!(rules = set.running.len(), added = ?report.added, removed = ?report.removed,
                    rescheduled = ?report.rescheduled, updated = ?report.updated, "reload applied");
                if let Some(w) = watcher.as_mut() {
                    w.follow(watch);
                }
            }
        }
    }
    drop(watcher);
    set.finish().await
}

/// A watch of the rules path that sends [`Trigger::Watch`] when a file is created, written, renamed or
/// removed (reads are ignored: the reload itself reads every file). Bursts are merged by [`serve`]. A rules
/// path that is one file is watched through its folder, so an editor that saves by renaming a new file over
/// it is still seen.
pub struct Watcher {
    watcher: notify::RecommendedWatcher,
    /// The rules path, and what is registered for it (itself, or the folder of a single file).
    path: PathBuf,
    watched: PathBuf,
    /// When the rules path is one file: its name (events of other files in its folder are ignored).
    only: Arc<RwLock<Option<std::ffi::OsString>>>,
}

/// How long a reload waits for file events to settle (an editor's save, a `cp -r`) before reading.
pub const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether a file event changes what a reload would read.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::event::{EventKind, ModifyKind};
    match kind {
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any | EventKind::Other => true,
    }
}

/// Why rule changes cannot be watched (reloads still work through the other trigger).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch the rules path: {0}")]
    Start(#[source] notify::Error),
    #[error("cannot watch {} for rule changes: {source}", path.display())]
    Path {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot watch SIGHUP for reloads: {0}")]
    Signal(#[source] std::io::Error),
    #[error("SIGHUP reloads need a Unix system")]
    NotUnix,
}

impl Watcher {
    /// Watches `path` (a folder recursively, or one file).
    pub fn new(path: PathBuf, tx: mpsc::Sender<Trigger>) -> Result<Watcher, WatchError> {
        let only: Arc<RwLock<Option<std::ffi::OsString>>> = Arc::default();
        let filter = only.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) if is_change(&event.kind) => {
                let only = filter.read().map(|o| o.clone()).unwrap_or_default();
                if only.is_none_or(|name| event.paths.iter().any(|p| p.file_name() == Some(name.as_os_str()))) {
                    // A full channel already has a reload pending: nothing is lost by dropping this one.
                    let _ = tx.try_send(Trigger::Watch);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "watching the rules path failed"),
        })
        .map_err(WatchError::Start)?;
        let mut w = Watcher { watcher, path: PathBuf::new(), watched: PathBuf::new(), only };
        w.watch(&path)?;
        Ok(w)
    }

    fn watch(&mut self, path: &std::path::Path) -> Result<(), WatchError> {
        use notify::{RecursiveMode, Watcher as _};
        let (target, mode, only) = if path.is_file() {
            let folder = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            (folder, RecursiveMode::NonRecursive, path.file_name().map(|n| n.to_os_string()))
        } else {
            (path.to_path_buf(), RecursiveMode::Recursive, None)
        };
        self.watcher.watch(&target, mode).map_err(|source| WatchError::Path { path: path.to_path_buf(), source })?;
        if let Ok(mut o) = self.only.write() {
            *o = only;
        }
        self.path = path.to_path_buf();
        self.watched = target;
        Ok(())
    }

    /// After a reload: watch the (possibly changed) rules path.
    fn follow(&mut self, path: Option<PathBuf>) {
        use notify::Watcher as _;
        let Some(path) = path else { return };
        if path == self.path {
            return;
        }
        let _ = self.watcher.unwatch(&self.watched);
        match self.watch(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "now watching the new rules path"),
            Err(e) => tracing::warn!("{e}; reload with SIGHUP meanwhile"),
        }
    }
}

/// Sends [`Trigger::Sighup`] for every SIGHUP until `shutdown`.
pub fn forward_sighup(tx: mpsc::Sender<Trigger>, shutdown: CancellationToken) -> Result<JoinHandle<()>, WatchError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).map_err(WatchError::Signal)?;
        Ok(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    s = hup.recv() => {
                        if s.is_none() { return; }
                        tracing::info!("SIGHUP received");
                        let _ = tx.try_send(Trigger::Sighup);
                    }
                }
            }
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = (tx, shutdown);
        Err(WatchError::NotUnix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, DataChange, EventKind, MetadataKind, ModifyKind, RemoveKind};

    #[test]
    fn reads_of_the_rules_do_not_trigger_a_reload() {
        // The reload reads every rule file; if reads counted, each reload would trigger the next one.
        assert!(!is_change(&EventKind::Access(AccessKind::Any)));
        assert!(!is_change(&EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Data(DataChange::Content))));
        assert!(is_change(&EventKind::Remove(RemoveKind::File)));
    }

    const SMB: &str = "d84a11c0-eb12-4e7d-8a0a-718e38351e29";
    const KRB: &str = "e4e31051-ee01-4307-a6ee-b21b186958f4";

    /// A seed rule, renamed (a content change that leaves its schedule alone).
    fn seed(file: &str, name: &str) -> PreparedRule {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(file);
        let mut rule = crate::rules::load_file(path).unwrap();
        rule.name = name.into();
        crate::detect::prepare::prepare_rule(rule, &crate::config::Config::default()).unwrap()
    }

    fn smb(name: &str) -> PreparedRule {
        seed("credential_access_machine_account_smb_relay.toml", name)
    }

    fn krb() -> PreparedRule {
        seed("privilege_escalation_krbrelayup_service_creation.toml", "krb")
    }

    fn every(rule: &PreparedRule, minutes: i64) -> RuleSpec {
        RuleSpec::every(rule.rule.rule_id.clone(), chrono::Duration::minutes(minutes), chrono::Duration::minutes(9)).unwrap()
    }

    /// Polls `check` (yielding to the rule tasks) for up to 5 s of real time.
    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn apply_swaps_changed_rules_starts_added_ones_stops_removed_ones_and_restarts_rescheduled_ones() {
        use crate::scheduler::{InMemoryStateStore, ManualClock, WindowOutcome, SchedulerConfig};
        use chrono::TimeZone;
        let clock = ManualClock::new(chrono::Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap());
        let live = Arc::new(LiveRules::new(vec![smb("A1"), krb()], RunOptions::default()));
        // The executor records which rule (and which version of it, by name) each window run saw.
        let seen: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
        let (l, s) = (live.clone(), seen.clone());
        let exec: super::super::Executor = Arc::new(move |req: super::super::WindowRequest| {
            let (rules, _) = l.snapshot();
            let name = rules.get(&req.rule_id).map(|r| r.rule.name.clone()).unwrap_or_else(|| "not loaded".into());
            s.lock().unwrap().push((req.rule_id.clone(), name));
            let out = WindowOutcome::succeeded(&req, 0);
            Box::pin(async { out })
        });
        let store = Arc::new(InMemoryStateStore::new());
        let scheduler = Scheduler::new(Arc::new(clock.clone()), store, exec, SchedulerConfig::new("me"));
        let shutdown = CancellationToken::new();
        let (a1, b) = (smb("A1"), krb());
        let rules = vec![(a1.clone(), every(&a1, 5)), (b.clone(), every(&b, 5))];
        let mut set = RuleSet::start(scheduler, live.clone(), rules, shutdown.clone(), None);
        let count = |id: &str, name: &str| seen.lock().unwrap().iter().filter(|(r, n)| r == id && n == name).count();
        until("both rules ran their first tick", || count(SMB, "A1") == 1 && count(KRB, "krb") == 1).await;
        assert_eq!(set.rule_ids(), vec![SMB.to_string(), KRB.to_string()]);

        // A renamed (same schedule), B removed.
        let a2 = smb("A2");
        let report = set.apply(Loaded { rules: vec![(a2.clone(), every(&a2, 5))], opts: RunOptions::default(), watch: None });
        assert_eq!(report, ReloadReport { updated: vec![SMB.into()], removed: vec![KRB.into()], ..Default::default() });
        until("the removed rule leaves the live set once its task ended", || !live.snapshot().0.contains_key(KRB)).await;
        clock.advance(chrono::Duration::minutes(5));
        until("the next tick runs the new version", || count(SMB, "A2") == 1).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(count(KRB, "krb"), 1, "the removed rule did not run again");
        assert_eq!(count(SMB, "A1"), 1, "the old version did not run again");

        // B back, A on a 1-minute schedule: A's task is restarted, B starts.
        let report = set.apply(Loaded {
            rules: vec![(a2.clone(), every(&a2, 1)), (b.clone(), every(&b, 5))],
            opts: RunOptions::default(),
            watch: None,
        });
        assert_eq!(report, ReloadReport { added: vec![KRB.into()], rescheduled: vec![SMB.into()], ..Default::default() });
        until("the added rule runs", || count(KRB, "krb") == 2).await;
        clock.advance(chrono::Duration::minutes(1));
        until("the rescheduled rule runs on its new schedule", || count(SMB, "A2") == 2).await;
        assert_eq!(set.rule_ids().len(), 2);
        shutdown.cancel();
        assert_eq!(set.finish().await, Vec::<String>::new(), "no rule down");
    }

    /// Waits up to `limit` for a trigger; drains any burst after it.
    async fn triggered(rx: &mut mpsc::Receiver<Trigger>, limit: std::time::Duration) -> bool {
        let got = tokio::time::timeout(limit, rx.recv()).await.ok().flatten().is_some();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        while rx.try_recv().is_ok() {}
        got
    }

    #[tokio::test]
    async fn a_single_rules_file_is_watched_through_its_folder_and_other_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rules.ndjson");
        std::fs::write(&file, "{}\n").unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let _w = Watcher::new(file.clone(), tx).unwrap();
        let wait = std::time::Duration::from_secs(3);
        // An editor's save: a new file renamed over the old one (a watch on the old inode would miss it).
        std::fs::write(dir.path().join(".rules.ndjson.swp"), "{}\n{}\n").unwrap();
        std::fs::rename(dir.path().join(".rules.ndjson.swp"), &file).unwrap();
        assert!(triggered(&mut rx, wait).await, "the rename over the rules file triggers a reload");
        std::fs::write(&file, "{}\n").unwrap();
        assert!(triggered(&mut rx, wait).await, "and so does a later write (the watch survived the rename)");
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        assert!(!triggered(&mut rx, std::time::Duration::from_millis(800)).await, "another file in the folder does not");
    }
}
