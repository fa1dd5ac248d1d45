//! The rule-level pipeline on arbitrary input: bytes split at the first two NUL bytes into a rule file
//! (detection-rules TOML), a configuration file (TOML) and events (NDJSON). Parse and validate the rule,
//! load the configuration, resolve the rule's settings, compute its window (extended by `maxspan` in
//! complete mode), its schedule and window plan, and evaluate it over the events. Errors are fine;
//! panics are not.
#![no_main]

use chrono::{DateTime, Duration, Utc};
use esdetect::config::Config;
use esdetect::detect::{self, Window};
use esdetect::eql::mapping::Mapping;
use esdetect::event::Event;
use esdetect::scheduler::windows::plan;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let (Some(rule), Some(config), events) = (parts.next(), parts.next(), parts.next().unwrap_or_default()) else { return };
    let (Ok(rule), Ok(config_text)) = (std::str::from_utf8(rule), std::str::from_utf8(config)) else { return };
    let Ok(rule) = esdetect::rules::parse_rule(Path::new("fuzz.toml"), rule) else { return };
    // `Config::load` reads a file (it resolves paths relative to it): one scratch file per process.
    let path = std::env::temp_dir().join(format!("esdetect-fuzz-{}.toml", std::process::id()));
    if std::fs::write(&path, config_text).is_err() {
        return;
    }
    let Ok(config) = Config::load(Some(&path), &|_| None) else { return };
    let Ok(prepared) = detect::prepare::prepare_rule(rule, &config) else { return };
    let now = DateTime::parse_from_rfc3339("2026-05-20T10:05:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default();
    let window = Window::ending_at(&prepared.rule, now);
    if let Ok(spec) = esdetect::cli::daemon::rule_spec(&prepared, &config) {
        let _ = plan(now, spec.lookback, spec.interval, Some(now - Duration::days(2)), spec.gap_policy);
    }
    let events: Vec<Event> = String::from_utf8_lossy(events)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .enumerate()
        .map(|(i, doc)| Event::new("fuzz-index", i.to_string(), doc))
        .collect();
    let mut mapping = Mapping::builtin_ecs();
    mapping.set_infer_unknown(true);
    let _ = detect::offline::run_on_events(&[&prepared], &mapping, events, Some(now), &detect::RunOptions::default());
});
