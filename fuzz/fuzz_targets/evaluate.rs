//! Arbitrary JSON documents (bytes → `serde_json`) evaluated against the compiled plans of both seed rules:
//! every stage, the join keys, timestamp and a one-event engine run. Nothing may panic; query errors are
//! allowed (they are results, e.g. a script type error), panics are not.
#![no_main]

use esdetect::eql::analyze::CompiledQuery;
use esdetect::eql::mapping::Mapping;
use esdetect::eql::plan::{Plan, Position, QueryOptions};
use esdetect::event::Event;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The seed rule files, embedded at build time so the fuzz binary does not depend on its working directory.
const RULES: [(&str, &str); 2] = [
    (
        "privilege_escalation_krbrelayup_service_creation.toml",
        include_str!("../../rules/privilege_escalation_krbrelayup_service_creation.toml"),
    ),
    (
        "credential_access_machine_account_smb_relay.toml",
        include_str!("../../rules/credential_access_machine_account_smb_relay.toml"),
    ),
];

fn plans() -> &'static Vec<CompiledQuery> {
    static PLANS: OnceLock<Vec<CompiledQuery>> = OnceLock::new();
    PLANS.get_or_init(|| {
        let opts = QueryOptions { size: 100, position: Position::Tail, ..QueryOptions::default() };
        RULES
            .iter()
            .map(|(name, text)| {
                let rule = esdetect::rules::parse_rule(std::path::Path::new(name), text).expect("seed rule loads");
                let q = esdetect::eql::parse(&rule.query).expect("seed rule parses");
                CompiledQuery::compile(&q, &Mapping::builtin_ecs(), &opts).expect("seed rule compiles")
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let event = Event::new("fuzz-index", "fuzz-id", doc);
    for plan in plans() {
        for s in 0..plan.stage_count() {
            let _ = plan.matches_stage(s, &event);
            let _ = plan.join_keys(s, &event);
        }
        let _ = plan.timestamp_ms(&event);
        let _ = esdetect::eql::engine::run(plan, vec![event.clone()]);
    }
});
