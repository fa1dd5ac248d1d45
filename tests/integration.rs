//! Every integration test file except the daemon-process ones, linked into ONE test binary: each file
//! is a module here, so `cargo test --test integration cli_offline` runs one file's tests. One binary instead
//! of one per file cuts the link step (the slowest part of building the tests) about threefold. The tests
//! that run the `esdetect run` daemon on timers (`daemon_outage`, `reload`, `scheduler_es`) stay binaries
//! of their own, so their timing is never shared with the rest of the suite.
//!
//! Shared helpers: `common` (one copy, so unique index names stay unique across files).

mod common;

#[path = "actions.rs"]
mod actions;
#[path = "alert_documents.rs"]
mod alert_documents;
#[path = "alert_suppression.rs"]
mod alert_suppression;
#[path = "cli_hardening.rs"]
mod cli_hardening;
#[path = "cli_offline.rs"]
mod cli_offline;
#[path = "compare.rs"]
mod compare;
#[path = "conformance.rs"]
mod conformance;
#[path = "detect_run.rs"]
mod detect_run;
#[path = "eql_parser.rs"]
mod eql_parser;
#[path = "es_io.rs"]
mod es_io;
#[path = "es_node.rs"]
mod es_node;
#[path = "golden.rs"]
mod golden;
#[path = "lab_flow.rs"]
mod lab_flow;
#[path = "lab_kibana.rs"]
mod lab_kibana;
#[path = "pushdown_property.rs"]
mod pushdown_property;
#[path = "rule_pipeline_property.rs"]
mod rule_pipeline_property;
#[path = "rule_sets.rs"]
mod rule_sets;
#[path = "rule_types.rs"]
mod rule_types;
#[path = "run_once_ledger.rs"]
mod run_once_ledger;
#[path = "sample_missing_cluster.rs"]
mod sample_missing_cluster;
#[path = "sample_missing_rules.rs"]
mod sample_missing_rules;
#[path = "seed_rules.rs"]
mod seed_rules;
#[path = "shadow_mode.rs"]
mod shadow_mode;
