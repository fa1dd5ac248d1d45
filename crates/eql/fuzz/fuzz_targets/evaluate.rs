//! Arbitrary JSON documents (bytes → `serde_json`) evaluated against the compiled plans of both seed rules,
//! a `sample` and a sequence with missing-event stages: every stage, the join keys, timestamp and a small
//! engine run. Nothing may panic; query errors are allowed (they are results, e.g. a script type error),
//! panics are not.
#![no_main]

use esdetect_eql::analyze::CompiledQuery;
use esdetect_eql::mapping::Mapping;
use esdetect_eql::plan::{Plan, Position, QueryOptions};
use esdetect_eql::event::Event;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The seed rule files, embedded at build time so the fuzz binary does not depend on its working directory.
const RULES: [(&str, &str); 2] = [
    (
        "privilege_escalation_krbrelayup_service_creation.toml",
        include_str!("../../../../rules/privilege_escalation_krbrelayup_service_creation.toml"),
    ),
    (
        "credential_access_machine_account_smb_relay.toml",
        include_str!("../../../../rules/credential_access_machine_account_smb_relay.toml"),
    ),
];

fn plans() -> &'static Vec<CompiledQuery> {
    static PLANS: OnceLock<Vec<CompiledQuery>> = OnceLock::new();
    PLANS.get_or_init(|| {
        let opts = QueryOptions { size: 100, position: Position::Tail, ..QueryOptions::default() };
        RULES
            .iter()
            .map(|(name, text)| {
                let rule: toml::Table = text.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
                let query = rule["rule"]["query"].as_str().unwrap_or_else(|| panic!("{name}: no rule.query"));
                let q = esdetect_eql::parse(query).expect("seed rule parses");
                CompiledQuery::compile(&q, &Mapping::builtin_ecs(), &opts).expect("seed rule compiles")
            })
            .chain(EXTRA_QUERIES.iter().map(|text| {
                let q = esdetect_eql::parse(text).expect("extra query parses");
                CompiledQuery::compile(&q, &Mapping::builtin_ecs(), &opts).expect("extra query compiles")
            }))
            .collect()
    })
}

/// Queries for the engine paths the seed rules do not take.
const EXTRA_QUERIES: [&str; 2] = [
    "sample by host.name, ?user.name [authentication where event.action == \"logged-in\"] by ?process.pid [any where true] by ?process.pid",
    "sequence by host.name with maxspan=1m ![any where event.code == \"4634\"] [authentication where true] \
     ![any where event.code == \"4647\"] [any where true] with runs=2 ![any where source.ip == \"::1\"]",
];

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let event = Event::new("fuzz-index", "fuzz-id", doc);
    for plan in plans() {
        for s in 0..plan.stage_count() {
            let _ = plan.matches_stage(s, &event);
            let _ = plan.join_keys(s, &event);
        }
        for m in 0..plan.missing_positions().len() {
            let _ = plan.matches_missing(m, &event);
            let _ = plan.missing_keys(m, &event);
        }
        let _ = plan.timestamp_ms(&event);
        // The same document several times: samples need distinct events per filter, sequences several stages.
        let copies = (0..4).map(|i| Event::new("fuzz-index", format!("fuzz-id-{i}"), event.source.clone()));
        let _ = esdetect_eql::engine::run(plan, copies);
    }
});
