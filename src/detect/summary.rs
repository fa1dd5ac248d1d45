//! What one rule execution did, in Kibana's terms (status precedence of spec alert-documents §12.2).

use super::{PreparedRule, Window, MAX_SIGNALS_WARNING};
use crate::eql::engine::Evaluation;
use crate::sink::es::WriteReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// Kibana's warning when a rule's index patterns match no index (a partial failure in Kibana).
pub fn no_matching_index_warning(patterns: &[String]) -> String {
    format!(
        "This rule is attempting to query data from Elasticsearch indices listed in the \"Index patterns\" section \
         of the rule definition, however no index matching: {} was found. This warning will continue to appear \
         until a matching index is created or this rule is disabled.",
        serde_json::to_string(patterns).unwrap_or_default()
    )
}

/// An execution's final status, with Kibana's names: any error → failed; else any warning → partial
/// failure; else succeeded. `skipped` is esdetect's own, recorded by the scheduler for ticks not run (a
/// rule run never ends skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunStatus {
    #[serde(rename = "succeeded")]
    Succeeded,
    #[serde(rename = "partial failure")]
    PartialFailure,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "skipped")]
    Skipped,
}

impl RunStatus {
    /// Kibana's status name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::PartialFailure => "partial failure",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
        }
    }

    /// Kibana's `status_order` (skipped, which Kibana does not have, sorts with succeeded).
    pub fn status_order(self) -> u8 {
        match self {
            RunStatus::Succeeded | RunStatus::Skipped => 0,
            RunStatus::PartialFailure => 20,
            RunStatus::Failed => 30,
        }
    }

    /// Kibana's precedence (spec §12.2): any error → failed (errors joined by ", "), else any warning →
    /// partial failure (warnings joined by a blank line), else succeeded.
    pub fn from_problems(errors: &[String], warnings: &[String]) -> (RunStatus, String) {
        if !errors.is_empty() {
            (RunStatus::Failed, errors.join(", "))
        } else if !warnings.is_empty() {
            (RunStatus::PartialFailure, warnings.join("\n\n"))
        } else {
            (RunStatus::Succeeded, "Rule execution completed successfully".to_string())
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Durations {
    /// Fetching and evaluating the window (the two are streamed together).
    pub search_ms: u64,
    /// Reading the whole `_source` of the alerts' events (`_mget`, filtered scans only).
    #[serde(skip_serializing_if = "is_zero")]
    pub mget_ms: u64,
    /// Dedup lookup and bulk writes.
    pub index_ms: u64,
    pub total_ms: u64,
}

/// One summary per rule run: printed as a table, as JSON, and logged.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub rule_id: String,
    pub rule_name: String,
    pub window: Window,
    pub status: RunStatus,
    /// Documents read from the window (after the pushdown pre-filter).
    pub fetched: u64,
    /// Bytes of the search answers read from the cluster (0 for a file run).
    pub bytes_fetched: u64,
    /// Bytes of the `_mget` answers: the whole `_source` of the alerts' events, read after a filtered scan.
    pub bytes_mget: u64,
    /// Alerts' events whose whole `_source` could not be read after the scan (deleted since): their alerts
    /// were built from the fields the scan read.
    #[serde(skip_serializing_if = "is_zero")]
    pub sources_missing: u64,
    /// Events that matched at least one stage condition.
    pub candidates: u64,
    /// Results before the `max_signals` cut (events, or sequences for a sequence rule).
    pub matches: u64,
    /// Results kept after the cut.
    pub kept: u64,
    /// Alert documents built (a sequence gives a shell plus one building block per event).
    pub alerts_built: u64,
    pub alerts_written: u64,
    pub duplicates: u64,
    /// Alerts folded into another alert by `alert_suppression` (in this run, or into an existing alert).
    #[serde(skip_serializing_if = "is_zero")]
    pub suppressed: u64,
    /// More than `max_signals` results: the oldest were cut (Kibana keeps the most recent).
    pub truncated: bool,
    /// Events or values skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
    pub durations: Durations,
    /// Notifications of the rule's actions (empty when it has none); never part of the status.
    #[serde(skip_serializing_if = "crate::actions::ActionsReport::is_empty")]
    pub actions: crate::actions::ActionsReport,
}

impl RunSummary {
    pub fn new(prepared: &PreparedRule, window: Window) -> RunSummary {
        RunSummary {
            rule_id: prepared.rule.rule_id.clone(),
            rule_name: prepared.rule.name.clone(),
            window,
            status: RunStatus::Succeeded,
            fetched: 0,
            bytes_fetched: 0,
            bytes_mget: 0,
            sources_missing: 0,
            candidates: 0,
            matches: 0,
            kept: 0,
            alerts_built: 0,
            alerts_written: 0,
            duplicates: 0,
            suppressed: 0,
            truncated: false,
            skipped: BTreeMap::new(),
            warnings: Vec::new(),
            errors: Vec::new(),
            durations: Durations::default(),
            actions: crate::actions::ActionsReport::default(),
        }
    }

    /// Records the engine's counters and Kibana's max-signals warning (which fires whenever the run returns
    /// `max_signals` results, even if all of them turn out to be duplicates).
    pub fn record_evaluation(&mut self, output: &Evaluation, malformed_values: u64, max_signals: u32) {
        let stats = &output.stats;
        self.candidates = stats.stage_matches;
        self.matches = stats.total_results;
        self.kept = output.results.len() as u64;
        self.truncated = stats.truncated;
        if stats.events_skipped_no_timestamp > 0 {
            self.skipped.insert("no usable timestamp".into(), stats.events_skipped_no_timestamp);
        }
        if malformed_values > 0 {
            self.skipped.insert("malformed values treated as missing".into(), malformed_values);
        }
        if max_signals > 0 && self.kept >= max_signals as u64 {
            self.warnings.push(MAX_SIGNALS_WARNING.to_string());
        }
    }

    /// Adds a warning after the run finished: a succeeded run becomes a partial failure (Kibana's
    /// precedence: errors over warnings over success).
    pub fn add_warning(&mut self, warning: String) {
        self.warnings.push(warning);
        if self.status == RunStatus::Succeeded {
            self.status = RunStatus::PartialFailure;
        }
    }

    /// Records events left out by a per-event limit (`crate::limits`): counted by reason, and a warning
    /// (partial failure) because such an event may have been part of an attack.
    pub fn record_limit_skips(&mut self, skips: Vec<(String, u64)>) {
        for (reason, n) in skips {
            self.warnings.push(format!("{n} event(s) left out by a per-event limit: {reason}"));
            self.skipped.insert(reason, n);
        }
    }

    /// Events the rule's exceptions removed from what its query saw.
    pub fn record_excepted(&mut self, excepted: u64) {
        if excepted > 0 {
            self.skipped.insert("removed by the rule's exceptions".into(), excepted);
        }
    }

    pub fn record_write(&mut self, report: &WriteReport) {
        self.alerts_written = report.created as u64;
        self.duplicates = report.duplicates as u64;
        for (id, reason) in &report.failed {
            self.errors.push(format!("alert {id} not written: {reason}"));
        }
        if !report.partial_groups.is_empty() {
            self.errors.push(format!(
                "{} sequence(s) only partly written (shell or building blocks missing); the next run retries them",
                report.partial_groups.len()
            ));
        }
    }

    /// Ends the run with an error: text, or a typed error (whose message names its cause).
    pub fn fail(mut self, error: impl std::fmt::Display, started: Instant) -> RunSummary {
        self.errors.push(error.to_string());
        self.finish(started)
    }

    /// Sets the status from errors and warnings, and the total duration; logs the outcome.
    pub fn finish(mut self, started: Instant) -> RunSummary {
        self.durations.total_ms = started.elapsed().as_millis() as u64;
        self.status = RunStatus::from_problems(&self.errors, &self.warnings).0;
        match self.status {
            RunStatus::Failed => tracing::error!(rule_id = %self.rule_id, errors = ?self.errors, "rule run failed"),
            _ => tracing::info!(
                rule_id = %self.rule_id,
                status = self.status.as_str(),
                fetched = self.fetched,
                matches = self.matches,
                written = self.alerts_written,
                duplicates = self.duplicates,
                total_ms = self.durations.total_ms,
                "rule run finished"
            ),
        }
        self
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
