//! esdetect: runs Elastic Security EQL detection rules outside Kibana.
//!
//! Data path: `source` (Elasticsearch, files) → `eql` (parse, analyse, evaluate, sequence, pushdown)
//! → `detect` (one rule run) → `alert` (Kibana documents and ids) → `sink` (Elasticsearch, stdout).
//! `scheduler` decides when runs happen; `cli` is a thin shell over all of it. `rules` reads
//! detection-rules TOML; `simulate` writes realistic Windows Security events for labs and benchmarks.
pub mod actions;
pub mod alert;
pub mod cli;
pub mod compare;
pub mod config;
pub mod detect;
pub mod eql;
pub mod es;
pub mod event;
pub mod exceptions;
pub mod kql;
pub mod limits;
pub mod rules;
pub mod scheduler;
pub mod simulate;
pub mod sink;
pub mod source;
