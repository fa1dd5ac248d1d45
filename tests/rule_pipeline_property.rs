//! Property: no value in a rule file or the configuration makes the rule-level pipeline panic. Each case
//! builds a rule (the KrbRelayUp seed rule with a random `from`, `interval`, `maxspan` and sequence mode)
//! and a configuration (random scheduler durations), then goes the whole way a rule goes: parse and
//! validate → per-rule settings → the run's window (extended by `maxspan` in complete mode) → the
//! daemon's schedule and window plan → evaluation over events. Every step may refuse a value with an
//! error; none may panic. (Before durations were bounded, `from = "now-100000000d"` panicked in the
//! window and `maxspan=9223372036854775807ms` in complete mode panicked when extending it.)
//! The same pipeline is the `rule` fuzz target (`fuzz/fuzz_targets/rule.rs`).

use chrono::{DateTime, Duration, Utc};
use esdetect::config::{Config, SequenceMode};
use esdetect::detect::{self, Window};
use esdetect::eql::mapping::Mapping;
use esdetect::event::Event;
use esdetect::scheduler::windows::{plan, GapPolicy};
use proptest::prelude::*;
use serde_json::json;
use std::path::Path;

const KRB: &str = include_str!("../rules/privilege_escalation_krbrelayup_service_creation.toml");

fn duration_text() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        Just("0".to_string()),
        (1u64..100).prop_map(|n| n.to_string()),
        Just("3650".to_string()),
        Just("3651".to_string()),
        Just("100000000".to_string()),
        Just("9223372036854775807".to_string()),
        Just("99999999999999999999".to_string()),
    ];
    (number, prop_oneof![Just("ms"), Just("s"), Just("m"), Just("h"), Just("d")]).prop_map(|(n, u)| format!("{n}{u}"))
}

fn run_pipeline(from: &str, interval: &str, maxspan: &str, complete: bool, run_timeout: &str, max_backfill: &str) {
    let text = KRB
        .replacen("from = \"now-9m\"", &format!("from = \"now-{from}\"\ninterval = \"{interval}\""), 1)
        .replacen("with maxspan=5m", &format!("with maxspan={maxspan}"), 1);
    let Ok(rule) = esdetect::rules::parse_rule(Path::new("fuzz.toml"), &text) else { return };
    let config_text = format!("[scheduler]\nrun_timeout = \"{run_timeout}\"\nmax_backfill = \"{max_backfill}\"\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config_text).unwrap();
    let Ok(mut config) = Config::load(Some(&path), &|_| None) else { return };
    config.run.sequence_mode = if complete { SequenceMode::Complete } else { SequenceMode::Kibana };
    let Ok(prepared) = detect::prepare::prepare_rule(rule, &config) else { return };
    let now = DateTime::parse_from_rfc3339("2026-05-20T10:05:00Z").unwrap().with_timezone(&Utc);
    let window = Window::ending_at(&prepared.rule, now);
    let _ = window.extended_back(i64::MAX);
    if let Ok(spec) = esdetect::cli::daemon::rule_spec(&prepared, &config) {
        let _ = plan(now, spec.lookback, spec.interval, Some(now - Duration::days(400)), spec.gap_policy);
        let _ = plan(now, spec.lookback, spec.interval, None, GapPolicy::Kibana);
    }
    let events = vec![
        Event::new("i", "1", json!({"@timestamp": "2026-05-20T10:01:00Z", "event": {"category": "authentication"}})),
        Event::new("i", "2", json!({"@timestamp": "2026-05-20T10:02:00Z", "winlog": {"computer_name": ["a", "b"]}})),
    ];
    let mut mapping = Mapping::builtin_ecs();
    mapping.set_infer_unknown(true);
    let _ = detect::offline::run_on_events(&[&prepared], &mapping, events, Some(now), &detect::RunOptions::default());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn no_rule_or_config_value_panics(
        from in duration_text(),
        interval in duration_text(),
        maxspan in duration_text(),
        complete in any::<bool>(),
        run_timeout in duration_text(),
        max_backfill in duration_text(),
    ) {
        run_pipeline(&from, &interval, &maxspan, complete, &run_timeout, &max_backfill);
    }
}

#[test]
fn the_values_from_the_issue_do_not_panic() {
    run_pipeline("100000000d", "5m", "5m", false, "5m", "24h");
    run_pipeline("9m", "100000000d", "5m", false, "5m", "24h");
    run_pipeline("9m", "5m", "9223372036854775807ms", true, "5m", "24h");
    run_pipeline("9m", "5m", "5m", true, "100000000d", "24h");
    run_pipeline("3650d", "3650d", "5m", true, "3650d", "3650d");
}
