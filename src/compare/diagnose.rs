//! Which part of a rule's query rejects given events: the stage, the top-level conjunct of its
//! condition, the join key or the maxspan. Each check runs esdetect's own evaluator (over a query made
//! of just that part, through the offline path), so the answer is what the engine decides, not a guess;
//! when no single part explains it, there is no answer.

use crate::detect::{offline, PreparedRule, RunOptions};
use crate::eql::ast::{EventFilter, Expr, Literal, Query, QueryBody};
use crate::eql::mapping::Mapping;
use crate::event::Event;
use crate::exceptions::RuleExceptions;

/// The top-level conjuncts of a condition (`a and (b and c)` → a, b, c).
fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::And(a, b) => {
            let mut out = conjuncts(a);
            out.extend(conjuncts(b));
            out
        }
        other => vec![other],
    }
}

/// Whether `filter` alone (an event query) matches `event`, by esdetect's evaluator; `None` when that
/// query cannot be compiled on its own.
fn matches(prepared: &PreparedRule, mapping: &Mapping, opts: &RunOptions, filter: &EventFilter, event: &Event) -> Option<bool> {
    let mut part = prepared.clone();
    part.query = Query { body: QueryBody::Event(filter.clone()), pipes: Vec::new() };
    part.exceptions = RuleExceptions::default();
    crate::detect::compile(&part, mapping).ok()?;
    let outcome = offline::run_on_events(&[&part], mapping, [event.clone()], None, opts);
    Some(outcome.first().map(|o| !o.groups.is_empty()).unwrap_or(false))
}

/// Why `filter` rejects `event`: its category, or the first top-level conjunct it fails.
fn failing_part(prepared: &PreparedRule, mapping: &Mapping, opts: &RunOptions, filter: &EventFilter, event: &Event) -> Option<String> {
    if matches(prepared, mapping, opts, filter, event)? {
        return None;
    }
    let only_category = EventFilter { condition: Expr::Literal(Literal::Bool(true), filter.span), ..filter.clone() };
    if !matches(prepared, mapping, opts, &only_category, event)? {
        return Some(format!("its event category is not `{}`", filter.category.as_deref().unwrap_or("any")));
    }
    for c in conjuncts(&filter.condition) {
        let part = EventFilter { condition: c.clone(), ..filter.clone() };
        if !matches(prepared, mapping, opts, &part, event)? {
            return Some(format!("it fails `{c}`"));
        }
    }
    Some(format!("it fails `{}` as a whole (each conjunct alone holds)", filter.condition))
}

fn values(event: &Event, path: &str) -> Vec<String> {
    event.field_values(path).into_iter().map(|v| v.as_str().map(String::from).unwrap_or_else(|| v.to_string())).collect()
}

fn name(e: &Event) -> String {
    format!("{}/{}", e.index, e.id)
}

/// Why the rule's query does not match `events` (one event, or a sequence's events in order); `None`
/// when no single part of the query explains it.
pub fn explain(prepared: &PreparedRule, mapping: &Mapping, opts: &RunOptions, events: &[Event]) -> Option<String> {
    match &prepared.query.body {
        QueryBody::Event(filter) => {
            let e = events.first()?;
            failing_part(prepared, mapping, opts, filter, e).map(|why| format!("event {}: {why}", name(e)))
        }
        QueryBody::Sequence(seq) => {
            // The stage each position stands for (a stage `with runs=N` stands for N positions).
            let stages: Vec<_> = seq.stages.iter().filter(|s| !s.missing).flat_map(|s| std::iter::repeat_n(s, s.runs.max(1) as usize)).collect();
            if stages.len() != events.len() {
                return Some(format!("{} events for a sequence of {} positions", events.len(), stages.len()));
            }
            for (i, (stage, e)) in stages.iter().zip(events).enumerate() {
                if let Some(why) = failing_part(prepared, mapping, opts, &stage.filter, e) {
                    return Some(format!("event {} does not match stage {}: {why}", name(e), i + 1));
                }
            }
            // Join keys: the sequence's `by` then the stage's own, position by position.
            let keys: Vec<Vec<String>> = stages.iter().map(|s| seq.by.iter().chain(&s.by).map(|k| k.path.clone()).collect()).collect();
            let width = keys.iter().map(Vec::len).min().unwrap_or(0);
            for k in 0..width {
                let first = values(&events[0], &keys[0][k]);
                for (i, e) in events.iter().enumerate().skip(1) {
                    let other = values(e, &keys[i][k]);
                    if !other.iter().any(|v| first.contains(v)) {
                        return Some(format!(
                            "join key {k_no} differs: {} has {} = {first:?}, {} has {} = {other:?}",
                            name(&events[0]),
                            keys[0][k],
                            name(e),
                            keys[i][k],
                            k_no = k + 1
                        ));
                    }
                }
            }
            if let Some(maxspan) = seq.maxspan_ms {
                let field = prepared.rule.timestamp_field.clone().unwrap_or_else(|| "@timestamp".into());
                let ts = |e: &Event| e.field_values(&field).first().and_then(|v| v.as_str()).and_then(crate::eql::value::parse_date_ms);
                if let (Some(a), Some(b)) = (ts(&events[0]), events.last().and_then(ts)) {
                    if b - a > maxspan {
                        return Some(format!("the events are {} ms apart, more than maxspan ({maxspan} ms)", b - a));
                    }
                    if b < a {
                        return Some(format!("the events are out of order on {field}"));
                    }
                }
            }
            None
        }
        // A sample's result is a set of events picked per key: no single stage or conjunct explains a miss.
        QueryBody::Sample(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smb() -> PreparedRule {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/credential_access_machine_account_smb_relay.toml");
        let rule = crate::rules::load_file(&path).unwrap();
        crate::detect::prepare::prepare_rule(rule, &crate::config::Config::default()).unwrap()
    }

    fn share(source_ip: &str) -> Event {
        Event::new("i", "e1", json!({
            "@timestamp": "2026-05-20T10:01:00.000Z",
            "event": {"code": "5145", "category": ["network", "file"], "ingested": "2026-05-20T10:01:00.000Z"},
            "winlog": {"computer_name": "fs01.corp.local"},
            "host": {"os": {"type": "windows"}, "ip": ["10.0.0.20"]},
            "source": {"ip": source_ip},
            "user": {"name": "FS01$"}
        }))
    }

    #[test]
    fn names_the_failing_conjunct_of_an_event_query() {
        let prepared = smb();
        let mapping = Mapping::builtin_ecs();
        let opts = RunOptions::default();
        assert_eq!(explain(&prepared, &mapping, &opts, &[share("10.0.0.99")]), None, "a matching event has no failing part");
        let why = explain(&prepared, &mapping, &opts, &[share("10.0.0.20")]).unwrap();
        assert!(why.starts_with("event i/e1: it fails `not endsWith(") && why.contains("host.ip"), "{why}");
    }

    #[test]
    fn names_the_stage_and_the_join_key_of_a_sequence() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/privilege_escalation_krbrelayup_service_creation.toml");
        let rule = crate::rules::load_file(&path).unwrap();
        let prepared = crate::detect::prepare::prepare_rule(rule, &crate::config::Config::default()).unwrap();
        let mapping = Mapping::builtin_ecs();
        let opts = RunOptions::default();
        let logon = |logon_id: &str| Event::new("i", "l", json!({
            "@timestamp": "2026-05-20T10:00:00.000Z",
            "event": {"category": ["authentication"], "action": "logged-in", "outcome": "success"},
            "host": {"os": {"type": "windows"}}, "process": {"pid": 0}, "source": {"ip": "127.0.0.1"},
            "winlog": {"computer_name": "ws01", "logon": {"type": "Network"},
                       "event_data": {"ElevatedToken": "%%1843", "AuthenticationPackageName": "Kerberos", "TargetLogonId": logon_id}}
        }));
        let service = Event::new("i", "s", json!({
            "@timestamp": "2026-05-20T10:00:05.000Z", "event": {"category": ["iam"], "action": "service-installed"},
            "host": {"os": {"type": "windows"}}, "winlog": {"computer_name": "ws01", "event_data": {"SubjectLogonId": "0x1"}}
        }));
        let why = explain(&prepared, &mapping, &opts, &[logon("0x2"), service.clone()]).unwrap();
        assert!(why.starts_with("join key 2 differs") && why.contains("TargetLogonId"), "{why}");
        let mut wrong = logon("0x1");
        wrong.source["process"]["pid"] = json!(4);
        let why = explain(&prepared, &mapping, &opts, &[wrong, service]).unwrap();
        assert!(why.starts_with("event i/l does not match stage 1: it fails `process.pid == 0`"), "{why}");
    }
}
