//! `esdetect compare`: validates a Kibana rule by comparing the alerts Kibana wrote for it with what
//! esdetect finds over exactly the same windows, without writing anything.
//!
//! Kibana's alerts are read per execution ([`kibana`]), each execution's window is rebuilt from its
//! alerts, the parts of the range no such execution covers get windows of the rule's schedule, and
//! esdetect evaluates all of them with the engine and requests of `run --once`
//! (`detect::scan::evaluate_rules_on_cluster`, alerts returned instead of written). Results are matched
//! by their source events ([`results`]), never by id, so a wrong id shows up as a differing field rather
//! than as two one-sided results; results only one side has get a reason ([`reasons`]).
//!
//! esdetect compares as Kibana runs: Kibana's rule uuid and space (so ids must match), and Kibana's
//! sequence mode (each window on its own) whatever the configuration says.

pub mod diagnose;
pub mod eql;
pub mod error;
pub mod kibana;
pub mod reasons;
pub mod results;

use crate::config::SequenceMode;
use crate::detect::scan::{evaluate_rules_on_cluster, AlertOutput};
use crate::detect::{cluster_mapping, PreparedRule, RunOptions, RunStatus, Window};
use crate::es::EsClient;
use chrono::{DateTime, Utc};
pub use error::CompareError;
use kibana::RuleMatch;
use results::{differences, group_results, AlertResult, EventRef, FieldDiff};
use serde::Serialize;
use std::collections::HashMap;

/// What to compare.
#[derive(Debug, Clone)]
pub struct CompareRequest {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Kibana's alerts index or alias; default `.alerts-security.alerts-<space>`.
    pub kibana_index: Option<String>,
    /// Kibana's rule saved-object id; default: match alerts by the rule's `rule_id`.
    pub kibana_rule_uuid: Option<String>,
}

/// Where a compared window comes from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WindowSource {
    /// A Kibana execution that wrote alerts (`kibana.alert.rule.execution.uuid`).
    Kibana { execution_uuid: String },
    /// The rule's schedule, over time no such execution covers.
    Schedule,
}

/// A result only one side has.
#[derive(Debug, Clone, Serialize)]
pub struct OneSided {
    /// `_id` of the event alert or the sequence shell.
    pub id: String,
    pub kind: &'static str,
    /// Source events as `<_index>/<_id>`, in order.
    pub events: Vec<String>,
    pub reason: String,
}

/// A result both sides have whose documents differ in a field esdetect reproduces.
#[derive(Debug, Clone, Serialize)]
pub struct Differing {
    pub id: String,
    pub kind: &'static str,
    pub events: Vec<String>,
    pub fields: Vec<FieldDiff>,
}

/// One window: what both sides found in it.
#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    pub source: WindowSource,
    pub window: Window,
    /// esdetect's run of the window: status and results.
    pub esdetect_status: RunStatus,
    pub esdetect_results: usize,
    pub kibana_results: usize,
    /// Results with the same events on both sides and no differing field.
    pub both: usize,
    pub differing: Vec<Differing>,
    pub kibana_only: Vec<OneSided>,
    pub esdetect_only: Vec<OneSided>,
}

/// Totals over all windows.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub both: usize,
    /// esdetect results Kibana wrote in an execution outside the range (Kibana writes a result once,
    /// in the first execution that finds it): agreement, without a field comparison.
    pub both_outside_range: usize,
    pub differing: usize,
    pub kibana_only: usize,
    pub esdetect_only: usize,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub rule_id: String,
    pub rule_name: String,
    pub kibana_rule_uuid: String,
    pub kibana_index: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub windows: Vec<WindowReport>,
    pub totals: Totals,
}

impl Report {
    /// Both sides agree: no one-sided result and no differing field.
    pub fn agrees(&self) -> bool {
        self.totals.differing == 0 && self.totals.kibana_only == 0 && self.totals.esdetect_only == 0
    }
}

fn event_names(events: &[EventRef]) -> Vec<String> {
    events.iter().map(|(i, id)| format!("{i}/{id}")).collect()
}

/// The first distinct string values of `path` among the alerts.
fn distinct(docs: &[(String, serde_json::Value)], path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, d) in docs {
        let v = crate::alert::get_path(d, path);
        let first = v.and_then(|v| v.as_str().or_else(|| v.as_array()?.first()?.as_str()));
        if let Some(s) = first {
            if !out.iter().any(|o| o == s) {
                out.push(s.to_string());
            }
        }
    }
    out
}

/// Compares Kibana's alerts for `rule` in `[from, to]` with esdetect's results over the same windows.
/// Errors are usage or connection problems (nothing could be compared), worded for the user.
pub async fn compare(client: &EsClient, rule: &PreparedRule, req: &CompareRequest, opts: &RunOptions) -> Result<Report, CompareError> {
    if req.from >= req.to {
        return Err(CompareError::Usage(format!("--from ({}) must be before --to ({})", req.from, req.to)));
    }
    let index = req.kibana_index.clone().unwrap_or_else(|| format!(".alerts-security.alerts-{}", rule.space));
    let by = match &req.kibana_rule_uuid {
        Some(u) => RuleMatch::Uuid(u.clone()),
        None => RuleMatch::RuleId(rule.rule.rule_id.clone()),
    };
    let docs = kibana::read_alerts(client, &index, &by, req.from, req.to).await?;

    // Compare as Kibana runs: its rule uuid and space (ids), each window on its own.
    let mut prepared = rule.clone();
    prepared.sequence_mode = SequenceMode::Kibana;
    match &req.kibana_rule_uuid {
        Some(u) => prepared.rule_uuid = u.clone(),
        None => match distinct(&docs, "kibana.alert.rule.uuid").as_slice() {
            [] => {}
            [one] => prepared.rule_uuid = one.clone(),
            many => {
                return Err(CompareError::Usage(format!(
                    "several Kibana rules have rule_id {} in `{index}` (uuids {}); choose one with --kibana-rule-uuid",
                    rule.rule.rule_id,
                    many.join(", ")
                )))
            }
        },
    }
    if let [space] = distinct(&docs, "kibana.space_ids").as_slice() {
        prepared.space = space.clone();
    }

    let executions = kibana::executions(docs, &rule.rule.from, &rule.rule.to)?;
    let covered: Vec<Window> = executions.iter().map(|e| e.window).collect();
    let scheduled = kibana::schedule_windows(&covered, req.from, req.to, &rule.rule.interval, rule.rule.lookback)?;
    let mut windows: Vec<(WindowSource, Window, Vec<AlertResult>)> = executions
        .into_iter()
        .map(|e| (WindowSource::Kibana { execution_uuid: e.uuid }, e.window, e.results))
        .chain(scheduled.into_iter().map(|w| (WindowSource::Schedule, w, Vec::new())))
        .collect();
    windows.sort_by_key(|(_, w, _)| w.to);

    let runs: Vec<(&PreparedRule, Window)> = windows.iter().map(|(_, w, _)| (&prepared, *w)).collect();
    let outcomes = evaluate_rules_on_cluster(client, &runs, opts, &Utc::now, AlertOutput::Return).await;
    if let Some(failed) = outcomes.iter().find(|o| o.summary.status == RunStatus::Failed) {
        let w = failed.summary.window;
        return Err(CompareError::Run(format!("the window [{}, {}]: {}", w.from, w.to, failed.summary.errors.join("; "))));
    }
    let esdetect: Vec<Vec<AlertResult>> = outcomes
        .iter()
        .map(|o| o.groups.iter().flat_map(|g| group_results(g.iter().map(|d| (d.id.clone(), d.source.clone())))).collect())
        .collect();

    // Each result belongs to the first window that has it (Kibana writes a result once; esdetect's
    // overlapping windows find it again).
    let mut first_esdetect: HashMap<&[EventRef], (usize, &AlertResult)> = HashMap::new();
    for (at, results) in esdetect.iter().enumerate() {
        for r in results {
            first_esdetect.entry(r.events.as_slice()).or_insert((at, r));
        }
    }
    let mut in_kibana: HashMap<&[EventRef], ()> = HashMap::new();
    for (_, _, results) in &windows {
        for r in results {
            in_kibana.insert(r.events.as_slice(), ());
        }
    }

    let mapping = cluster_mapping(client, &prepared.rule.index, opts).await.map_err(CompareError::Mapping)?;
    let explainer = reasons::Explainer { client, prepared: &prepared, mapping: &mapping, opts };
    let mut reports: Vec<WindowReport> = Vec::new();
    let mut totals = Totals::default();
    for (at, (source, window, kibana_results)) in windows.iter().enumerate() {
        let mut report = WindowReport {
            source: source.clone(),
            window: *window,
            esdetect_status: outcomes[at].summary.status,
            esdetect_results: esdetect[at].len(),
            kibana_results: kibana_results.len(),
            both: 0,
            differing: Vec::new(),
            kibana_only: Vec::new(),
            esdetect_only: Vec::new(),
        };
        for k in kibana_results {
            match first_esdetect.get(k.events.as_slice()) {
                Some((_, e)) => {
                    let fields = differences(k, e);
                    if fields.is_empty() {
                        report.both += 1;
                    } else {
                        report.differing.push(Differing { id: k.id.clone(), kind: k.kind(), events: event_names(&k.events), fields });
                    }
                }
                None => {
                    let reason = explainer.why_not_esdetect(k, window, &outcomes[at].summary).await?;
                    report.kibana_only.push(OneSided { id: k.id.clone(), kind: k.kind(), events: event_names(&k.events), reason });
                }
            }
        }
        let mine: Vec<&AlertResult> = esdetect[at]
            .iter()
            .filter(|e| !in_kibana.contains_key(e.events.as_slice()))
            .filter(|e| first_esdetect.get(e.events.as_slice()).map(|(w, _)| *w) == Some(at))
            .collect();
        let ids: Vec<String> = mine.iter().flat_map(|e| e.docs.iter().map(|(id, _)| id.clone())).collect();
        let elsewhere = kibana::existing_ids(client, &index, &ids).await?;
        let kibana_count = matches!(source, WindowSource::Kibana { .. }).then_some(kibana_results.len());
        for e in mine {
            if e.docs.iter().any(|(id, _)| elsewhere.contains(id)) {
                totals.both_outside_range += 1;
                continue;
            }
            let reason = explainer.why_not_kibana(e, window, kibana_count).await?;
            report.esdetect_only.push(OneSided { id: e.id.clone(), kind: e.kind(), events: event_names(&e.events), reason });
        }
        totals.both += report.both;
        totals.differing += report.differing.len();
        totals.kibana_only += report.kibana_only.len();
        totals.esdetect_only += report.esdetect_only.len();
        reports.push(report);
    }
    Ok(Report {
        rule_id: prepared.rule.rule_id.clone(),
        rule_name: prepared.rule.name.clone(),
        kibana_rule_uuid: prepared.rule_uuid.clone(),
        kibana_index: index,
        from: req.from,
        to: req.to,
        windows: reports,
        totals,
    })
}
