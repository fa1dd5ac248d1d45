//! Shadow mode: a rule with `mode = "shadow"` runs on its schedule like any other but writes no alerts;
//! `[shadow] delay` after each window it compares what it found with the alerts Kibana's execution of
//! the same tick wrote, and records the outcome — in the ledger (one `record: "shadow"` document per
//! window), in `/metrics` (`esdetect_shadow_results_total{rule,outcome}`) and in the log (each divergence
//! once, with its events). `esdetect status` sums the ledger documents into an agreement per rule.
//!
//! Matching reuses `esdetect compare` ([`crate::compare`]): results (an event alert, or a sequence's shell
//! and building blocks) are keyed by their source events, and matched pairs are compared field by field.
//! Per window:
//! * Kibana's side: the rule's alerts (by `kibana.alert.rule.rule_id`) whose
//!   `kibana.alert.rule.execution.timestamp` lies in `[window end, window end + delay]` — Kibana's
//!   execution of the same tick, so the two schedules must share interval and grid.
//! * `both`: a Kibana result esdetect also found in the window (a differing field is logged and counted
//!   in the ledger's `differing`, still as `both`); `kibana_only`: the rest of Kibana's.
//! * `esdetect_only`: esdetect's results Kibana did not write in that execution, leaving out results
//!   already compared in an earlier window of this process (overlapping windows find them again; Kibana
//!   writes a result once) and results Kibana wrote in another execution (found by alert id, which needs
//!   Kibana's rule uuid in the rule's `uuid`).
//!
//! A comparison pending when the daemon stops is lost (the window is not compared); one that fails
//! (Kibana's index unreadable) is logged and recorded as a failed shadow document.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Duration, Utc};
use elasticsearch::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::compare::kibana::{existing_ids, read_alerts, RuleMatch};
use crate::compare::CompareError;
use crate::compare::results::{differences, group_results, AlertResult, EventRef};
use crate::config::ShadowSettings;
use crate::detect::scan::{evaluate_rules_on_cluster, AlertOutput};
use crate::detect::{PreparedRule, RunOptions, RunSummary, Window};
use crate::es::{EsClient, EsError};

/// `esdetect_shadow_results_total{rule,outcome}`; the daemon registers it with its `/metrics` registry.
pub static SHADOW_RESULTS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "esdetect_shadow_results_total",
            "Results of shadow-mode rules compared with Kibana's alerts, by outcome (both, kibana_only, esdetect_only)",
        ),
        &["rule", "outcome"],
    )
    .expect("valid metric definition")
});

/// A result only one side has, as logged and stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Divergence {
    /// `kibana_only`, `esdetect_only` or `differing`.
    pub outcome: String,
    /// `_id` of the event alert or shell on the side that has it.
    pub id: String,
    /// Source events as `<_index>/<_id>`.
    pub events: Vec<String>,
    /// For `differing`: the fields that differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// The outcome of one window: what goes into the ledger (`record: "shadow"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShadowRecord {
    pub record: String,
    pub rule_id: String,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    pub compared_at: DateTime<Utc>,
    pub both: u64,
    pub kibana_only: u64,
    pub esdetect_only: u64,
    pub differing: u64,
    pub divergences: Vec<Divergence>,
    /// Set when the comparison could not be made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ShadowRecord {
    /// A window's record with nothing counted yet, compared now.
    fn empty(rule_id: &str, window: Window) -> ShadowRecord {
        ShadowRecord {
            record: "shadow".into(),
            rule_id: rule_id.to_string(),
            window_from: window.from,
            window_to: window.to,
            compared_at: Utc::now(),
            both: 0,
            kibana_only: 0,
            esdetect_only: 0,
            differing: 0,
            divergences: Vec::new(),
            error: None,
        }
    }
}

/// Result keys of one rule already compared, with the end of the window that compared each.
type Compared = HashMap<Vec<EventRef>, DateTime<Utc>>;

/// Compares shadow-mode windows with Kibana; shared by the executor's runs.
pub struct Shadow {
    client: EsClient,
    settings: ShadowSettings,
    ledger_index: String,
    /// Per rule: result keys already compared (with the window end that compared them, for pruning).
    seen: Mutex<HashMap<String, Compared>>,
    /// The ledger mapping has the shadow fields (checked before the first write).
    mapped: std::sync::atomic::AtomicBool,
}

fn names(events: &[EventRef]) -> Vec<String> {
    events.iter().map(|(i, id)| format!("{i}/{id}")).collect()
}

impl Shadow {
    pub fn new(client: EsClient, settings: ShadowSettings, ledger_index: String) -> Arc<Shadow> {
        Arc::new(Shadow { client, settings, ledger_index, seen: Mutex::new(HashMap::new()), mapped: Default::default() })
    }

    /// Adds the shadow fields to the ledger mapping (additive; the index may predate shadow mode).
    pub async fn ensure_ledger_mapping(&self) -> Result<(), LedgerError> {
        let body = json!({"properties": {
            "record": {"type": "keyword"}, "compared_at": {"type": "date"},
            "both": {"type": "long"}, "kibana_only": {"type": "long"}, "esdetect_only": {"type": "long"},
            "differing": {"type": "long"}
        }});
        let path = format!("/{}/_mapping", crate::es::path::segment(&self.ledger_index));
        let what = "adding the shadow fields to the ledger mapping";
        let failed = |source| LedgerError { action: what, index: self.ledger_index.clone(), source };
        let (status, resp) = self.client.raw(Method::Put, &path, &[], Some(&body)).await.map_err(failed)?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(failed(EsError::from_response(what, status, &resp)))
        }
    }

    /// Runs one window without writing, and schedules its comparison `delay` later.
    pub async fn run_window(self: &Arc<Self>, prepared: &PreparedRule, window: Window, opts: &RunOptions) -> RunSummary {
        let mut outcomes =
            evaluate_rules_on_cluster(&self.client, &[(prepared, window)], opts, &Utc::now, AlertOutput::Return).await;
        let outcome = outcomes.pop().expect("one outcome per rule");
        if outcome.summary.status != crate::detect::RunStatus::Failed {
            let results: Vec<AlertResult> = outcome
                .groups
                .iter()
                .flat_map(|g| group_results(g.iter().map(|d| (d.id.clone(), d.source.clone()))))
                .collect();
            let (me, rule) = (Arc::clone(self), prepared.clone());
            let delay = self.settings.delay;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                me.compare_and_record(&rule, window, results).await;
            });
        }
        outcome.summary
    }

    /// Compares one window and records the outcome (ledger, metrics, log). Never fails: a comparison
    /// that cannot be made is logged and recorded with its error.
    pub async fn compare_and_record(&self, prepared: &PreparedRule, window: Window, esdetect: Vec<AlertResult>) -> ShadowRecord {
        let record = match self.compare(prepared, window, esdetect).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(rule_id = %prepared.rule.rule_id, from = %window.from, to = %window.to, error = %e, "shadow comparison failed");
                ShadowRecord { error: Some(e.to_string()), ..ShadowRecord::empty(&prepared.rule.rule_id, window) }
            }
        };
        let rule = &prepared.rule.rule_id;
        for (outcome, n) in [("both", record.both), ("kibana_only", record.kibana_only), ("esdetect_only", record.esdetect_only)] {
            SHADOW_RESULTS.with_label_values(&[rule, outcome]).inc_by(n);
        }
        for d in &record.divergences {
            tracing::warn!(rule_id = %rule, outcome = %d.outcome, id = %d.id, events = ?d.events, fields = ?d.fields,
                           from = %window.from, to = %window.to, "shadow divergence");
        }
        if !self.mapped.load(std::sync::atomic::Ordering::Relaxed) {
            match self.ensure_ledger_mapping().await {
                Ok(()) => self.mapped.store(true, std::sync::atomic::Ordering::Relaxed),
                Err(e) => tracing::warn!(error = %e, "shadow fields not added to the ledger mapping"),
            }
        }
        let id = format!("shadow-{rule}-{}", window.to.timestamp_millis());
        let path = format!("/{}/_doc/{}", crate::es::path::segment(&self.ledger_index), crate::es::path::segment(&id));
        let body = serde_json::to_value(&record).unwrap_or(Value::Null);
        match self.client.raw(Method::Put, &path, &[("refresh", "true".to_string())], Some(&body)).await {
            Ok((s, _)) if (200..300).contains(&s) => {}
            Ok((s, resp)) => tracing::error!(rule_id = %rule, status = s, %resp, "could not write the shadow result to the ledger"),
            Err(e) => tracing::error!(rule_id = %rule, error = %e, "could not write the shadow result to the ledger"),
        }
        record
    }

    async fn compare(&self, prepared: &PreparedRule, window: Window, esdetect: Vec<AlertResult>) -> Result<ShadowRecord, CompareError> {
        let index = self.settings.kibana_alerts.replace("{space}", &prepared.space);
        let until = window.to + Duration::from_std(self.settings.delay).unwrap_or(Duration::zero());
        let docs = read_alerts(&self.client, &index, &RuleMatch::RuleId(prepared.rule.rule_id.clone()), window.to, until).await?;
        let kibana = group_results(docs);
        let mine: HashMap<&[EventRef], &AlertResult> = esdetect.iter().map(|r| (r.events.as_slice(), r)).collect();
        let theirs: HashSet<&[EventRef]> = kibana.iter().map(|r| r.events.as_slice()).collect();
        let mut record = ShadowRecord::empty(&prepared.rule.rule_id, window);
        for k in &kibana {
            match mine.get(k.events.as_slice()) {
                Some(e) => {
                    record.both += 1;
                    let fields = differences(k, e);
                    if !fields.is_empty() {
                        record.differing += 1;
                        record.divergences.push(Divergence {
                            outcome: "differing".into(),
                            id: k.id.clone(),
                            events: names(&k.events),
                            fields: fields.iter().map(|f| f.field.clone()).collect(),
                        });
                    }
                }
                None => {
                    record.kibana_only += 1;
                    record.divergences.push(Divergence { outcome: "kibana_only".into(), id: k.id.clone(), events: names(&k.events), fields: Vec::new() });
                }
            }
        }
        // esdetect's results: those not compared before and not written by Kibana in another execution.
        let fresh: Vec<&AlertResult> = {
            let seen = self.seen.lock().expect("shadow memory");
            let rule_seen = seen.get(&prepared.rule.rule_id);
            esdetect
                .iter()
                .filter(|e| !theirs.contains(e.events.as_slice()))
                .filter(|e| rule_seen.map(|s| !s.contains_key(&e.events)).unwrap_or(true))
                .collect()
        };
        let ids: Vec<String> = fresh.iter().flat_map(|e| e.docs.iter().map(|(id, _)| id.clone())).collect();
        let elsewhere: HashSet<String> = existing_ids(&self.client, &index, &ids).await?.into_iter().collect();
        for e in fresh {
            if e.docs.iter().any(|(id, _)| elsewhere.contains(id)) {
                continue;
            }
            record.esdetect_only += 1;
            record.divergences.push(Divergence { outcome: "esdetect_only".into(), id: e.id.clone(), events: names(&e.events), fields: Vec::new() });
        }
        self.remember(prepared, window, esdetect.iter().map(|r| r.events.clone()).chain(kibana.iter().map(|r| r.events.clone())));
        Ok(record)
    }

    /// Remembers compared result keys; forgets those older than twice the rule's look-back (no later
    /// window of the rule can find them again).
    fn remember(&self, prepared: &PreparedRule, window: Window, keys: impl Iterator<Item = Vec<EventRef>>) {
        let mut seen = self.seen.lock().expect("shadow memory");
        let rule = seen.entry(prepared.rule.rule_id.clone()).or_default();
        for k in keys {
            rule.entry(k).or_insert(window.to);
        }
        let horizon = window.to - prepared.rule.lookback * 2;
        rule.retain(|_, at| *at >= horizon);
    }
}

/// Per-rule totals of the shadow documents in the ledger, for `esdetect status`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Agreement {
    pub windows: u64,
    pub both: u64,
    pub kibana_only: u64,
    pub esdetect_only: u64,
    pub differing: u64,
}

impl Agreement {
    /// Share of results both sides have, in percent (100 when there were none).
    pub fn percent(&self) -> f64 {
        let total = self.both + self.kibana_only + self.esdetect_only;
        if total == 0 {
            100.0
        } else {
            100.0 * self.both as f64 / total as f64
        }
    }
}

/// The ledger could not be read or updated for shadow mode.
#[derive(Debug, thiserror::Error)]
#[error("{action} (ledger `{index}`) failed: {source}")]
pub struct LedgerError {
    pub action: &'static str,
    pub index: String,
    #[source]
    pub source: EsError,
}

/// Sums the shadow documents of the ledger per rule (an empty map when there are none).
pub async fn agreement(client: &EsClient, ledger_index: &str) -> Result<HashMap<String, Agreement>, LedgerError> {
    let body = json!({
        "size": 0,
        "query": {"term": {"record": "shadow"}},
        "aggs": {"rules": {"terms": {"field": "rule_id", "size": 10000}, "aggs": {
            "both": {"sum": {"field": "both"}}, "kibana_only": {"sum": {"field": "kibana_only"}},
            "esdetect_only": {"sum": {"field": "esdetect_only"}}, "differing": {"sum": {"field": "differing"}}
        }}}
    });
    let path = format!("/{}/_search", crate::es::path::segment(ledger_index));
    let what = "reading the shadow results";
    let failed = |source| LedgerError { action: what, index: ledger_index.to_string(), source };
    let (status, resp) = client
        .raw(Method::Post, &path, &[("ignore_unavailable", "true".to_string())], Some(&body))
        .await
        .map_err(failed)?;
    if !(200..300).contains(&status) {
        return Err(failed(EsError::from_response(what, status, &resp)));
    }
    let n = |b: &Value, k: &str| b[k]["value"].as_f64().unwrap_or(0.0) as u64;
    Ok(resp["aggregations"]["rules"]["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| {
            Some((
                b["key"].as_str()?.to_string(),
                Agreement {
                    windows: b["doc_count"].as_u64().unwrap_or(0),
                    both: n(b, "both"),
                    kibana_only: n(b, "kibana_only"),
                    esdetect_only: n(b, "esdetect_only"),
                    differing: n(b, "differing"),
                },
            ))
        })
        .collect())
}
