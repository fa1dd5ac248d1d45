//! Prometheus metrics of the daemon (`/metrics`).
//!
//! Per-window numbers (events scanned, alerts written, duplicates skipped, run duration) are recorded by
//! the executor as each run ends. Scheduler-level numbers (executions by status, gap seconds, timeouts,
//! lost leases, backfill progress) are kept by the scheduler in [`SchedulerStats`] and copied here at
//! scrape time ([`Metrics::sync`]), so the scheduler core stays free of any metrics library.

use std::sync::Mutex;
use std::time::Duration;

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use super::daemon::SchedulerStats;
use crate::detect::{RunStatus, RunSummary};

/// Every metric the daemon exports, in one registry.
pub struct Metrics {
    registry: Registry,
    /// Executions (one claim of a rule, one or more windows) by final status.
    pub executions: IntCounterVec,
    /// Window runs by status, as the detect layer reported them.
    pub window_runs: IntCounterVec,
    pub alerts_written: IntCounter,
    pub duplicates_skipped: IntCounter,
    pub events_scanned: IntCounter,
    pub run_duration: Histogram,
    /// Unqueried time reported (Kibana mode beyond 4 catch-ups, or beyond `max_backfill`).
    pub gap_seconds: IntCounter,
    pub lease_takeovers: IntCounter,
    pub leases_lost: IntCounter,
    pub run_timeouts: IntCounter,
    pub ticks_skipped: IntCounter,
    pub store_errors: IntCounter,
    /// Window runs that panicked (counted failed and retried).
    pub run_panics: IntCounter,
    /// Rule tasks that failed and were restarted.
    pub task_failures: IntCounter,
    /// Rules whose task is down right now (waiting to be restarted).
    pub rules_down: IntGauge,
    /// Windows of the current catch-up/backfill plan still to run, per rule.
    pub windows_pending: IntGaugeVec,
    /// 1 while the cluster answers and rules are loaded.
    pub ready: IntGauge,
    synced: Mutex<Synced>,
}

/// Scheduler counter values already copied into the Prometheus counters.
#[derive(Default)]
struct Synced {
    succeeded: u64,
    partial: u64,
    failed: u64,
    gap_seconds: u64,
    takeovers: u64,
    leases_lost: u64,
    timeouts: u64,
    ticks_skipped: u64,
    store_errors: u64,
    run_panics: u64,
    task_failures: u64,
}

fn counter(name: &str, help: &str) -> IntCounter {
    // Names and help texts are constants of this module: a failure here is a programming error caught
    // by the unit test below, never user input.
    IntCounter::new(name, help).expect("valid metric definition")
}

impl Metrics {
    pub fn new() -> Metrics {
        let executions = IntCounterVec::new(
            Opts::new("esdetect_executions_total", "Rule executions by final status"),
            &["status"],
        )
        .expect("valid metric definition");
        let window_runs = IntCounterVec::new(
            Opts::new("esdetect_window_runs_total", "Window runs (one query of one rule) by status"),
            &["status"],
        )
        .expect("valid metric definition");
        let run_duration = Histogram::with_opts(
            HistogramOpts::new("esdetect_run_duration_seconds", "Duration of one window run (fetch, evaluate, write)")
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
        )
        .expect("valid metric definition");
        let windows_pending = IntGaugeVec::new(
            Opts::new("esdetect_backfill_windows_pending", "Windows of the current catch-up/backfill still to run"),
            &["rule_id"],
        )
        .expect("valid metric definition");
        let m = Metrics {
            registry: Registry::new(),
            executions,
            window_runs,
            alerts_written: counter("esdetect_alerts_written_total", "Alert documents created"),
            duplicates_skipped: counter(
                "esdetect_duplicates_skipped_total",
                "Alert candidates not written because the alert already existed",
            ),
            events_scanned: counter("esdetect_events_scanned_total", "Events read from the source indices"),
            run_duration,
            gap_seconds: counter("esdetect_gap_seconds_total", "Seconds of source time left unqueried (reported gaps)"),
            lease_takeovers: counter(
                "esdetect_lease_takeovers_total",
                "Rules claimed from another replica whose lease had expired",
            ),
            leases_lost: counter("esdetect_leases_lost_total", "Runs whose lease was taken over before they finished"),
            run_timeouts: counter("esdetect_run_timeouts_total", "Window runs stopped by the run timeout"),
            ticks_skipped: counter("esdetect_ticks_skipped_total", "Scheduled ticks not run on time (covered by a later run)"),
            store_errors: counter("esdetect_state_store_errors_total", "Failed state/ledger operations (retried)"),
            run_panics: counter("esdetect_run_panics_total", "Window runs that panicked (failed, retried; a bug to report)"),
            task_failures: counter(
                "esdetect_rule_task_failures_total",
                "Rule scheduling tasks that failed and were restarted with backoff",
            ),
            rules_down: IntGauge::new("esdetect_rules_down", "Rules whose task failed and is waiting to be restarted")
                .expect("valid metric definition"),
            windows_pending,
            ready: IntGauge::new("esdetect_ready", "1 while the cluster answers and rules are loaded")
                .expect("valid metric definition"),
            synced: Mutex::new(Synced::default()),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.executions.clone()),
            Box::new(m.window_runs.clone()),
            Box::new(m.alerts_written.clone()),
            Box::new(m.duplicates_skipped.clone()),
            Box::new(m.events_scanned.clone()),
            Box::new(m.run_duration.clone()),
            Box::new(m.gap_seconds.clone()),
            Box::new(m.lease_takeovers.clone()),
            Box::new(m.leases_lost.clone()),
            Box::new(m.run_timeouts.clone()),
            Box::new(m.ticks_skipped.clone()),
            Box::new(m.store_errors.clone()),
            Box::new(m.run_panics.clone()),
            Box::new(m.task_failures.clone()),
            Box::new(m.rules_down.clone()),
            Box::new(m.windows_pending.clone()),
            Box::new(m.ready.clone()),
            // Counted by the actions module as notifications go out.
            Box::new(crate::actions::ACTIONS_TOTAL.clone()),
            // Counted by shadow-mode comparisons (src/scheduler/shadow.rs).
            Box::new(super::shadow::SHADOW_RESULTS.clone()),
        ];
        // Kept by the reload module: rules loaded, reloads by outcome, the last reload's time and result.
        let collectors = collectors.into_iter().chain(super::reload::collectors());
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        // Show every status from the start, so dashboards see zeros rather than missing series.
        for s in ["succeeded", "partial failure", "failed"] {
            m.executions.with_label_values(&[s]);
            m.window_runs.with_label_values(&[s]);
        }
        m
    }

    /// Records one window run of the detect layer.
    pub fn observe_run(&self, summary: &RunSummary, took: Duration) {
        self.window_runs.with_label_values(&[summary.status.as_str()]).inc();
        self.events_scanned.inc_by(summary.fetched);
        self.alerts_written.inc_by(summary.alerts_written);
        self.duplicates_skipped.inc_by(summary.duplicates);
        self.run_duration.observe(took.as_secs_f64());
        if summary.status == RunStatus::Failed {
            tracing::debug!(rule = %summary.rule_id, "window run failed");
        }
    }

    /// Copies the scheduler's counters (and the store's takeover count) into the exported ones.
    pub fn sync(&self, stats: &SchedulerStats, takeovers: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let Ok(mut last) = self.synced.lock() else { return };
        let bump = |c: &IntCounter, now: u64, last: &mut u64| {
            if now > *last {
                c.inc_by(now - *last);
                *last = now;
            }
        };
        bump(&self.executions.with_label_values(&["succeeded"]), stats.executions_succeeded.load(Relaxed), &mut last.succeeded);
        bump(&self.executions.with_label_values(&["partial failure"]), stats.executions_partial.load(Relaxed), &mut last.partial);
        bump(&self.executions.with_label_values(&["failed"]), stats.executions_failed.load(Relaxed), &mut last.failed);
        bump(&self.gap_seconds, stats.gap_seconds.load(Relaxed), &mut last.gap_seconds);
        bump(&self.lease_takeovers, takeovers, &mut last.takeovers);
        bump(&self.leases_lost, stats.leases_lost.load(Relaxed), &mut last.leases_lost);
        bump(&self.run_timeouts, stats.timeouts.load(Relaxed), &mut last.timeouts);
        bump(&self.ticks_skipped, stats.ticks_skipped.load(Relaxed), &mut last.ticks_skipped);
        bump(&self.store_errors, stats.store_errors.load(Relaxed), &mut last.store_errors);
        bump(&self.run_panics, stats.run_panics.load(Relaxed), &mut last.run_panics);
        bump(&self.task_failures, stats.task_failures.load(Relaxed), &mut last.task_failures);
        self.rules_down.set(i64::try_from(stats.rules_down().len()).unwrap_or(i64::MAX));
        for (rule, n) in stats.windows_pending() {
            self.windows_pending.with_label_values(&[&rule]).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            return format!("# error encoding metrics: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn scheduler_counters_are_copied_once() {
        let m = Metrics::new();
        let stats = SchedulerStats::default();
        stats.executions_failed.fetch_add(2, Ordering::Relaxed);
        stats.gap_seconds.fetch_add(5460, Ordering::Relaxed);
        m.sync(&stats, 1);
        m.sync(&stats, 1); // a second scrape must not double-count
        let text = m.render();
        assert!(text.contains("esdetect_executions_total{status=\"failed\"} 2"), "{text}");
        assert!(text.contains("esdetect_executions_total{status=\"succeeded\"} 0"), "{text}");
        assert!(text.contains("esdetect_gap_seconds_total 5460"), "{text}");
        assert!(text.contains("esdetect_lease_takeovers_total 1"), "{text}");
        assert!(text.contains("esdetect_run_duration_seconds_bucket"), "{text}");
        stats.task_failures.fetch_add(1, Ordering::Relaxed);
        m.sync(&stats, 1);
        let text = m.render();
        assert!(text.contains("esdetect_rule_task_failures_total 1"), "{text}");
        assert!(text.contains("esdetect_rules_down 0"), "{text}");
    }
}
