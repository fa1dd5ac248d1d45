//! esdetect: runs Elastic Security EQL detection rules outside Kibana.
//!
//! Data path: `source` (Elasticsearch, files) → `eql` (the `esdetect-eql` crate in `crates/eql`: parse,
//! analyse, evaluate, sequence, pushdown)
//! → `detect` (one rule run) → `alert` (Kibana documents and ids) → `sink` (Elasticsearch, stdout).
//! `scheduler` decides when runs happen; `cli` is a thin shell over all of it. `rules` reads
//! detection-rules TOML; `simulate` writes realistic Windows Security events for labs and benchmarks.
pub mod actions;
pub mod alert;
pub mod cli;
pub mod compare;
pub mod config;
pub mod conformance;
pub mod detect;
pub mod duration;
/// The EQL engine (`crates/eql`), under the name the rest of esdetect uses.
pub use esdetect_eql as eql;
pub mod es;
/// Events and field projection live with the engine that reads them.
pub use esdetect_eql::event;
pub mod exceptions;
pub mod kql;
pub mod limits;
pub mod rules;
pub mod scheduler;
pub mod simulate;
pub mod sink;
pub mod source;
