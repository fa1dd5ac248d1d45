//! The long-running commands: `esdetect run` (daemon mode), `esdetect status` (what the ledger says
//! about recent runs: "why was there no alert?") and `esdetect backfill` (run a past range on demand).
//!
//! All three only wire configuration to the library: scheduling is `scheduler::Scheduler`, state is
//! `scheduler::EsStateStore`, a window's run is `scheduler::executor` over `detect`.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

use super::args::{BackfillArgs, OutputFormat, RunArgs, StatusArgs};
use super::output::Style;
use super::{load_rules, parse_time, run_options, EXIT_FAILED, EXIT_OK, EXIT_PARTIAL};
use crate::config::Config;
use crate::detect::PreparedRule;
use crate::es::EsClient;
use crate::scheduler::executor;
use crate::scheduler::manual;
use crate::scheduler::http::{self, HttpState, Readiness};
use crate::scheduler::metrics::Metrics;
use crate::scheduler::windows::{self, GapPolicy};
use crate::scheduler::{
    EsStateStore, LedgerEntry, RuleSpec, RunStatus, Schedule, Scheduler, SchedulerConfig,
    StoreIndices, SystemClock,
};

/// A process-unique replica id: host name plus a random suffix (two processes on one host must differ).
pub fn default_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "esdetect".to_string());
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &id[..12])
}

/// This process's owner id: the configured `[scheduler] owner` (or the host name) plus a random instance
/// id, so two processes given the same name never share leases and silently run the same windows.
pub fn owner_id(config: &Config) -> String {
    match config.scheduler.owner.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
        Some(name) => format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        None => default_owner(),
    }
}

/// Whether the config file asks for JSON logs (`[scheduler] log_format = "json"`). Read before logging
/// starts, so problems with the file are ignored here and reported when the command loads it.
pub fn config_wants_json_logs(cli: &super::args::Cli) -> bool {
    let env = |name: &str| std::env::var(name).ok();
    Config::load(cli.config.as_deref(), &env)
        .map(|c| c.scheduler.log_format == crate::config::LogFormat::Json)
        .unwrap_or(false)
}

fn chrono_duration(d: std::time::Duration, what: &str) -> Result<Duration> {
    Duration::from_std(d).map_err(|_| anyhow!("[scheduler] {what} is too long"))
}

/// The state store the config names.
pub fn state_store(config: &Config, client: EsClient) -> EsStateStore {
    let s = &config.scheduler;
    EsStateStore::new(
        client,
        StoreIndices { state_index: s.state_index.clone(), ledger_index: s.ledger_index.clone(), replicas: s.index_replicas },
    )
}

/// Scheduler settings from `[scheduler]`.
pub fn scheduler_config(config: &Config) -> Result<SchedulerConfig> {
    let s = &config.scheduler;
    let mut c = SchedulerConfig::new(owner_id(config));
    c.shutdown_grace = chrono_duration(s.shutdown_grace, "shutdown_grace")?;
    c.lease_ttl = chrono_duration(s.lease_ttl, "lease_ttl")?;
    c.lease_renew_every = chrono_duration(s.lease_renew, "lease_renew")?;
    if c.lease_renew_every <= Duration::zero() || c.lease_renew_every >= c.lease_ttl {
        bail!(
            "[scheduler] lease_renew ({}s) must be longer than zero and shorter than lease_ttl ({}s), e.g. 30s and 90s",
            c.lease_renew_every.num_seconds(),
            c.lease_ttl.num_seconds()
        );
    }
    if s.lease_margin.is_some() {
        tracing::warn!("[scheduler] lease_margin is no longer used and is ignored: the lease lasts lease_ttl (default 90s) and is renewed every lease_renew (default 30s) while a rule runs");
    }
    Ok(c)
}

/// Scheduling parameters of one prepared rule: its `interval` (or the configured cron `schedule`), its
/// look-back, the gap policy, sequence mode and run timeout.
pub fn rule_spec(rule: &PreparedRule, config: &Config) -> Result<RuleSpec> {
    let id = &rule.rule.rule_id;
    let settings = config.rule_settings(id);
    let schedule = match settings.schedule.as_deref() {
        Some(expr) => Schedule::cron(expr).with_context(|| format!("[rules.\"{id}\"] schedule"))?,
        None => Schedule::interval(rule.rule.interval_duration)
            .with_context(|| format!("rule {id} ({}): interval", rule.rule.path.display()))?,
    };
    let s = &config.scheduler;
    let gap_policy = if s.backfill_gaps {
        GapPolicy::Backfill { max_backfill: chrono_duration(s.max_backfill, "max_backfill")? }
    } else {
        GapPolicy::Kibana
    };
    RuleSpec {
        rule_id: id.clone(),
        schedule,
        interval: rule.rule.interval_duration,
        lookback: rule.rule.lookback,
        gap_policy,
        sequence_mode: rule.sequence_mode,
        run_timeout: chrono_duration(s.run_timeout, "run_timeout")?,
    }
    .validated()
    .map_err(anyhow::Error::from)
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the daemon"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `esdetect run` without `--once`: schedules every enabled rule until SIGTERM/SIGINT, then exits 0.
pub async fn run_daemon(config: &Config, a: &RunArgs) -> Result<i32> {
    let prepared = load_rules(config, &a.rule_ids)?;
    let rules: Vec<PreparedRule> = prepared.rules.into_iter().filter(|r| r.enabled).collect();
    if rules.is_empty() {
        bail!("no enabled rule to run in {}", config.rules_dir.display());
    }
    let specs = rules.iter().map(|r| rule_spec(r, config)).collect::<Result<Vec<_>>>()?;
    let sched_config = scheduler_config(config)?;
    let grace = sched_config.shutdown_grace;
    let client = EsClient::new(&config.elasticsearch)?;
    let store = Arc::new(state_store(config, client.clone()));
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::default());
    readiness.set_rules_loaded(rules.len());
    let listener = http::bind(&config.scheduler.listen).await?;
    // Window runs (fetch + CPU-bound evaluation) get a runtime and a connection pool of their own, so a
    // heavy run never delays the scheduler's timers (run_timeout, lease renewal), the state store's
    // requests or /healthz.
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let run_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("esdetect-run")
        .enable_all()
        .build()
        .context("cannot start the worker threads for rule runs")?;
    let run_client = EsClient::new(&config.elasticsearch)?;
    // Shadow-mode rules (`mode = "shadow"`): compared with Kibana's alerts instead of writing.
    let shadow_ids: std::collections::HashSet<String> = rules
        .iter()
        .filter(|r| config.rule_settings(&r.rule.rule_id).mode == Some(crate::config::RuleMode::Shadow))
        .map(|r| r.rule.rule_id.clone())
        .collect();
    let shadow = (!shadow_ids.is_empty()).then(|| {
        tracing::info!(rules = ?shadow_ids, delay = ?config.shadow.delay, "shadow mode: these rules write no alerts");
        (crate::scheduler::shadow::Shadow::new(run_client.clone(), config.shadow.clone(), config.scheduler.ledger_index.clone()), shadow_ids)
    });
    // The rules a reload can swap (SIGHUP, or the rules-path watch): see `scheduler::reload`.
    let live = Arc::new(crate::scheduler::reload::LiveRules::new(rules.clone(), run_options(config)?));
    let exec = executor::live_executor(run_client, live.clone(), Some(metrics.clone()), shadow);
    let scheduler = Scheduler::with_run_runtime(
        Arc::new(SystemClock),
        store.clone(),
        exec,
        sched_config,
        Some(run_runtime.handle().clone()),
    );
    tracing::info!(owner = %scheduler.config().owner, rules = specs.len(), listen = ?listener.local_addr().ok(),
        "esdetect daemon starting");

    let shutdown = CancellationToken::new();
    let http_stop = CancellationToken::new();
    let store_for_metrics = store.clone();
    let http_state = HttpState {
        metrics,
        stats: scheduler.stats(),
        readiness: readiness.clone(),
        takeovers: Arc::new(move || store_for_metrics.lease_takeovers()),
    };
    let http_task = tokio::spawn(http::serve(listener, http_state, http_stop.clone()));
    let rule_set = rules.into_iter().zip(specs).collect();
    let run = super::reload::start(&scheduler, live, rule_set, config, &a.rule_ids, shutdown.clone(), readiness.clone())?;
    // Readiness: the cluster answers (retried every few seconds while it does not; a cluster that is down
    // at start is not fatal, the scheduler retries with backoff meanwhile).
    let probe_store = store.clone();
    let probe_stop = shutdown.clone();
    let probe = tokio::spawn(async move {
        use crate::scheduler::outage::{OutageLog, Report};
        let probe_log = OutageLog::default();
        loop {
            let ok = match probe_store.ping().await {
                Ok(()) => probe_store.ensure_indices().await,
                Err(e) => Err(e),
            };
            let wait = if ok.is_ok() { 15 } else { 3 };
            let report = match &ok {
                Ok(()) => probe_log.success(Utc::now()),
                Err(_) => probe_log.failure(Utc::now()),
            };
            match (&ok, report) {
                (Err(e), Report::Started) => tracing::warn!(error = %e, "cluster not ready"),
                (Err(e), Report::StillDown { down_for, failures }) => {
                    tracing::warn!(error = %e, down_s = down_for.num_seconds(), failures, "cluster still not ready")
                }
                (_, Report::Recovered { down_for, .. }) => {
                    tracing::info!(down_s = down_for.num_seconds(), "cluster ready again")
                }
                (Err(e), _) => tracing::debug!(error = %e, "cluster not ready"),
                _ => {}
            }
            readiness.set_cluster(ok.map_err(|e| e.to_string()));
            tokio::select! {
                _ = probe_stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(wait)) => {}
            }
        }
    });

    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        termination_signal().await;
        signal_token.cancel();
    });
    let stats = scheduler.stats();
    tokio::pin!(run);
    let mut down = Vec::new();
    tokio::select! {
        d = &mut run => down = d,
        _ = shutdown.cancelled() => {
            // Runs in progress get the grace period, then a bounded time to release their leases.
            let bound = grace.to_std().unwrap_or_default() + std::time::Duration::from_secs(10);
            match tokio::time::timeout(bound, &mut run).await {
                Ok(d) => down = d,
                Err(_) => tracing::warn!("rules did not stop within the grace period; exiting anyway (their leases expire)"),
            }
        }
    }
    for rule in stats.rules_down().into_keys() {
        if !down.contains(&rule) {
            down.push(rule);
        }
    }
    shutdown.cancel();
    http_stop.cancel();
    probe.abort();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), http_task).await;
    // A run abandoned at shutdown may still be computing: do not wait for it.
    run_runtime.shutdown_background();
    if !down.is_empty() {
        tracing::error!(rules = ?down, "esdetect daemon stopped while rules were down after a failure");
        return Ok(super::EXIT_FAILED);
    }
    tracing::info!("esdetect daemon stopped");
    Ok(EXIT_OK)
}

fn ts(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "-".into())
}

fn gap_text(e: &LedgerEntry) -> String {
    match (e.gap_ms, e.gap_filled_ms) {
        (Some(ms), _) if ms > 0 => format!("{}s", (ms + 500) / 1000),
        (_, Some(ms)) if ms > 0 => format!("{}s (filled)", (ms + 500) / 1000),
        _ => "-".into(),
    }
}

/// `esdetect status`: the newest ledger entries per rule, and each rule's state.
pub async fn status(config: &Config, a: &StatusArgs, style: Style) -> Result<i32> {
    let client = EsClient::new(&config.elasticsearch)?;
    let store = state_store(config, client.clone());
    let limit = a.limit.max(1);
    // Shadow-mode agreement per rule (src/scheduler/shadow.rs).
    let mut shadow = crate::scheduler::shadow::agreement(&client, &config.scheduler.ledger_index).await?;
    if let Some(rule) = &a.rule {
        shadow.retain(|id, _| id == rule);
    }
    let mut states = store.all_states().await?;
    // Rules with ledger entries but no state (only ever backfilled by hand) are listed too.
    let mut rule_ids: Vec<String> = states.iter().map(|s| s.rule_id.clone()).collect();
    for e in store.recent_runs(None, 1000).await? {
        if !rule_ids.contains(&e.rule_id) {
            rule_ids.push(e.rule_id);
        }
    }
    if let Some(rule) = &a.rule {
        states.retain(|s| &s.rule_id == rule);
        rule_ids.retain(|id| id == rule);
        if rule_ids.is_empty() {
            bail!(
                "rule `{rule}` has no state in {} and no runs in {}: it never ran in daemon mode or backfill here",
                config.scheduler.state_index,
                config.scheduler.ledger_index
            );
        }
    }
    let mut entries = Vec::new();
    for id in &rule_ids {
        entries.extend(store.recent_runs(Some(id), limit).await?);
    }
    if a.format == OutputFormat::Json {
        for s in &states {
            println!("{}", serde_json::json!({"state": s}));
        }
        for e in &entries {
            println!("{}", serde_json::json!({"run": e}));
        }
        let mut ids: Vec<&String> = shadow.keys().collect();
        ids.sort();
        for id in ids {
            let s = &shadow[id];
            println!("{}", serde_json::json!({"shadow": {"rule_id": id, "agreement_percent": s.percent(), "totals": s}}));
        }
        return Ok(EXIT_OK);
    }
    if rule_ids.is_empty() {
        println!(
            "no rule has run yet (state index {}, ledger index {})",
            config.scheduler.state_index, config.scheduler.ledger_index
        );
        return Ok(EXIT_OK);
    }
    let mut t = style.table(&["rule", "queried up to", "last status", "lease"]);
    for s in &states {
        let lease = match (&s.lease_owner, s.lease_expires) {
            (Some(o), Some(until)) if until > Utc::now() => format!("{o} until {}", ts(Some(until))),
            _ => "free".into(),
        };
        t.add_row(vec![
            s.rule_id.clone(),
            ts(s.last_window_end),
            s.last_status.map(|x| x.to_string()).unwrap_or_else(|| "never ran".into()),
            lease,
        ]);
    }
    if !states.is_empty() {
        println!("{t}\n");
    }
    let mut t = style.table(&[
        "rule", "started", "status", "window", "windows", "fetched", "matches", "alerts", "dups", "gap", "owner", "actions",
        "message",
    ]);
    for e in &entries {
        let windows = if e.skipped_tick {
            format!("{} skipped", e.skipped_ticks)
        } else {
            format!("{}/{} (+{} left)", e.windows_completed, e.windows.len(), e.windows_remaining)
        };
        let mut message = e.message.replace('\n', " ");
        if let Some(first) = e.counts.action_errors.first() {
            // Undelivered notifications never change the status; say why they failed here.
            let more = e.counts.action_errors.len() - 1;
            let more = if more > 0 { format!(" (+{more} more)") } else { String::new() };
            message = format!("{message}{}actions: {first}{more}", if message.is_empty() { "" } else { " | " });
        }
        if message.chars().count() > 160 {
            message = message.chars().take(157).collect::<String>() + "...";
        }
        t.add_row(vec![
            e.rule_id.clone(),
            ts(Some(e.started_at)),
            match e.execution_type {
                crate::scheduler::state::ExecutionType::Manual => format!("{} (manual)", e.status),
                crate::scheduler::state::ExecutionType::Scheduled => e.status.to_string(),
            },
            format!("{} → {}", ts(e.window_from), ts(e.window_to)),
            windows,
            e.counts.fetched.to_string(),
            e.counts.matches.to_string(),
            e.counts.alerts_written.to_string(),
            e.counts.duplicates.to_string(),
            gap_text(e),
            e.owner.clone(),
            Some(crate::actions::describe_counts(&e.counts.actions)).filter(|d| !d.is_empty()).unwrap_or_else(|| "-".into()),
            message,
        ]);
    }
    println!("{t}");
    if !shadow.is_empty() {
        let mut t = style.table(&["shadow rule", "windows", "agreement", "both", "kibana only", "esdetect only", "differing"]);
        let mut ids: Vec<&String> = shadow.keys().collect();
        ids.sort();
        for id in ids {
            let s = &shadow[id];
            t.add_row(vec![
                id.clone(),
                s.windows.to_string(),
                format!("{:.1}%", s.percent()),
                s.both.to_string(),
                s.kibana_only.to_string(),
                s.esdetect_only.to_string(),
                s.differing.to_string(),
            ]);
        }
        println!("\n{t}");
    }
    Ok(EXIT_OK)
}

/// `esdetect backfill --from --to [--rule]`: runs each rule over `[from, to]` in windows shaped like its
/// scheduled ones (`scheduler::manual::backfill`), with a progress bar, and prints what it did.
pub async fn backfill(config: &Config, a: &BackfillArgs) -> Result<i32> {
    let from = parse_time(Some(&a.from), "--from")?;
    let to = parse_time(a.to.as_deref(), "--to")?;
    if to <= from {
        bail!("--to ({to}) must be after --from ({from})");
    }
    let prepared = load_rules(config, &a.rule_ids)?;
    let rules: Vec<PreparedRule> = prepared
        .rules
        .into_iter()
        .filter(|r| (r.enabled || !a.rule_ids.is_empty()) && !super::writes_nothing(config, r, "backfill"))
        .collect();
    if rules.is_empty() {
        bail!("no rule to backfill in {}", config.rules_dir.display());
    }
    let client = EsClient::new(&config.elasticsearch)?;
    client.info().await?;
    let mut opts = run_options(config)?;
    opts.manual = true;
    let store = state_store(config, client.clone());
    let plans = manual::plan(&rules, from, to);
    let bar = indicatif::ProgressBar::new(plans.iter().map(|w| w.len() as u64).sum());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} windows {msg} (eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut progress = Bar(&bar);
    let done = manual::backfill(&client, &store, &owner_id(config), &rules, plans, &opts, &mut progress).await;
    bar.finish_and_clear();
    for d in &done {
        if let Err(e) = &d.recorded {
            eprintln!("warning: could not record the backfill of {} in the ledger: {e}", d.entry.rule_id);
        }
        if d.entry.status != RunStatus::Succeeded {
            eprintln!("{} [{}]: {}", d.entry.rule_id, d.entry.status, d.entry.message);
        }
    }
    let totals = manual::totals(&done);
    eprintln!(
        "backfilled {} rule(s) over {} → {}: {} events scanned, {} alerts written, {} duplicates skipped",
        rules.len(),
        from.to_rfc3339(),
        to.to_rfc3339(),
        totals.fetched,
        totals.alerts_written,
        totals.duplicates
    );
    let any = |status| done.iter().any(|d| d.entry.status == status);
    Ok(if any(RunStatus::Failed) { EXIT_FAILED } else if any(RunStatus::PartialFailure) { EXIT_PARTIAL } else { EXIT_OK })
}

/// A backfill's progress on the terminal: the bar counts windows and names the rule being run.
struct Bar<'a>(&'a indicatif::ProgressBar);

impl manual::BackfillProgress for Bar<'_> {
    fn rule_started(&mut self, rule: &PreparedRule, _windows: usize) {
        self.0.set_message(rule.rule.name.clone());
    }

    fn window_done(&mut self, _rule: &PreparedRule, _window: &windows::Window, _summary: &crate::detect::RunSummary) {
        self.0.inc(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_unique_per_call() {
        let mut config = Config::default();
        let c = scheduler_config(&config).unwrap();
        assert_eq!((c.lease_ttl, c.lease_renew_every), (Duration::seconds(90), Duration::seconds(30)));
        config.scheduler.lease_renew = std::time::Duration::from_secs(90);
        assert!(scheduler_config(&config).unwrap_err().to_string().contains("shorter than lease_ttl"));
        config.scheduler.lease_renew = std::time::Duration::from_secs(30);
        config.scheduler.owner = Some("esdetect-a".into());
        let (x, y) = (owner_id(&config), owner_id(&config));
        assert!(x.starts_with("esdetect-a-") && y.starts_with("esdetect-a-") && x != y, "{x} {y}");
        let (a, b) = (default_owner(), default_owner());
        assert_ne!(a, b);
        assert!(!a.is_empty());
    }
}
