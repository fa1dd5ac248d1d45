//! esdetect: runs Elastic Security EQL detection rules outside Kibana.
//!
//! Data path: `source` (Elasticsearch, files) → `eql` (parse, analyse, evaluate, sequence, pushdown)
//! → `detect` (one rule run) → `alert` (Kibana documents and ids) → `sink` (Elasticsearch, stdout).
//! `scheduler` decides when runs happen; `cli` is a thin shell over all of it.
pub mod event;
pub mod eql;
pub mod rules;
pub mod alert;
