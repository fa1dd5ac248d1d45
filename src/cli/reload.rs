//! The daemon's reload wiring: what "re-read rules and configuration" means for `esdetect run`, and the
//! triggers (SIGHUP, and the rules-path watch when `[scheduler] watch_rules = true`). The running set is
//! changed by `scheduler::reload`; this module only loads and validates the new set.

use std::future::Future;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use tokio_util::sync::CancellationToken;

use super::daemon::rule_spec;
use crate::config::Config;
use crate::detect::PreparedRule;
use crate::scheduler::http::Readiness;
use crate::scheduler::reload::{self, LiveRules, Loaded, Loader, RuleSet, Trigger, Watcher};
use crate::scheduler::{RuleSpec, Scheduler};

/// Reads the configuration file and the rules again, as `esdetect run` did at start (same `--rules`
/// override and `--rule` filter). Every problem is returned; the caller rejects the reload if any.
pub fn load(start: &Config, only: &[String]) -> Result<Loaded, Vec<String>> {
    let env = |name: &str| std::env::var(name).ok();
    let mut config = Config::load(start.config_path.as_deref(), &env).map_err(|e| vec![e.to_string()])?;
    if start.rules_dir_origin == "--rules" {
        config.rules_dir = start.rules_dir.clone();
        config.rules_dir_origin = start.rules_dir_origin.clone();
    }
    if !config.rules_dir.exists() {
        return Err(vec![format!("rules path {} not found (from {})", config.rules_dir.display(), config.rules_dir_origin)]);
    }
    let prepared = crate::detect::prepare_rules(&config.rules_dir, &config);
    let mut errors: Vec<String> = prepared.errors.iter().map(|e| e.to_string()).collect();
    for w in &prepared.warnings {
        tracing::warn!("reload: {w}");
    }
    let rules: Vec<PreparedRule> =
        prepared.rules.into_iter().filter(|r| r.enabled && (only.is_empty() || only.contains(&r.rule.rule_id))).collect();
    if rules.is_empty() && errors.is_empty() {
        errors.push(format!("no enabled rule to run in {}", config.rules_dir.display()));
    }
    let mut with_specs = Vec::new();
    for r in rules {
        match rule_spec(&r, &config) {
            Ok(spec) => with_specs.push((r, spec)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let opts = super::run_options(&config).map_err(|e| errors.push(e.to_string())).ok();
    let Some(opts) = opts.filter(|_| errors.is_empty()) else { return Err(errors) };
    if format!("{:?}{:?}", start.elasticsearch, fixed_scheduler_settings(&start.scheduler))
        != format!("{:?}{:?}", config.elasticsearch, fixed_scheduler_settings(&config.scheduler))
    {
        tracing::warn!("reload: changes to [elasticsearch] and to [scheduler] listen, state/ledger indices, owner, \
                        leases, shutdown_grace, log_format or watch_rules take effect only after a restart");
    }
    let watch = config.scheduler.watch_rules.then(|| config.rules_dir.clone());
    Ok(Loaded { rules: with_specs, opts, watch })
}

/// The `[scheduler]` settings a reload cannot change (the rest feed each rule's spec).
fn fixed_scheduler_settings(s: &crate::config::SchedulerSettings) -> impl std::fmt::Debug + '_ {
    (&s.listen, &s.state_index, &s.ledger_index, &s.index_replicas, &s.owner, &s.lease_ttl, &s.lease_renew, &s.shutdown_grace, &s.log_format, s.watch_rules)
}

/// Starts every rule's task and returns the loop that reloads on SIGHUP (and on changes under the rules
/// path with `watch_rules`) until `shutdown`; it resolves to the rules that were down at the end.
#[allow(clippy::too_many_arguments)]
pub fn start(
    scheduler: &Scheduler,
    live: Arc<LiveRules>,
    rules: Vec<(PreparedRule, RuleSpec)>,
    config: &Config,
    only: &[String],
    shutdown: CancellationToken,
    readiness: Arc<Readiness>,
) -> Result<impl Future<Output = Vec<String>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Trigger>(4);
    if let Err(e) = reload::forward_sighup(tx.clone(), shutdown.clone()) {
        tracing::warn!("{e}");
    }
    let watcher = if config.scheduler.watch_rules {
        let w = Watcher::new(config.rules_dir.clone(), tx).map_err(|e| anyhow!("{e}; or set [scheduler] watch_rules = false"))?;
        tracing::info!(path = %config.rules_dir.display(), "watching the rules path; changes are reloaded");
        Some(w)
    } else {
        None
    };
    let (start_config, only) = (config.clone(), only.to_vec());
    let loader: Loader = Arc::new(move || load(&start_config, &only));
    let set = RuleSet::start(scheduler.clone(), live, rules, shutdown, Some(readiness));
    Ok(reload::serve(set, loader, rx, watcher))
}
