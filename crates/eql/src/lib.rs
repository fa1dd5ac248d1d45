//! An in-memory engine for Elasticsearch's Event Query Language (EQL), with Elasticsearch's semantics.
//!
//! Semantics follow `_eql/search` exactly where it is specified: two-valued logic, any-value matching on
//! arrays, literal coercion by the field mapping, case-insensitive `:`/`~` forms, latest-wins sequence
//! slots, `sample`, missing-event stages `![…]`, `until`, `maxspan`, `head`/`tail` selection. The crate is
//! pure by construction: no network, no clock, no alert shapes; the caller brings events (JSON documents)
//! and a mapping, the engine returns matching events or sequences.
//!
//! The layout follows the stages of Elasticsearch's EQL plugin, one folder each:
//!
//! | stage | modules | what |
//! |---|---|---|
//! | [`syntax`] | [`lexer`], [`parser`], [`ast`], [`error`] | text → syntax tree, errors with positions |
//! | [`analysis`] | [`mapping`], [`value`], [`verify`], [`analyze`] | field types, literal coercion, every problem at once, compile to predicates |
//! | [`exec`] | [`plan`], [`eval`], [`functions`], [`engine`], [`sequence`], [`sample`] | ordering, matching, limits |
//! | [`pushdown`] | [`pushdown`], [`dsl`] | a conservative Query DSL pre-filter, and a matcher to check it |
//!
//! plus [`event`] (the event handle and field projection) and [`limits`] (per-event work bounds). The
//! flat module names ([`parser`], [`analyze`], [`engine`], …) are re-exported at the root and are the
//! stable paths for callers.
//!
//! # Example
//!
//! ```
//! use esdetect_eql::{analyze::CompiledQuery, engine, event::Event, mapping::Mapping, plan::QueryOptions};
//! use serde_json::json;
//!
//! let query = esdetect_eql::parse(r#"process where process.name : "CMD.EXE""#).unwrap();
//! let plan = CompiledQuery::compile(&query, &Mapping::builtin_ecs(), &QueryOptions::default()).unwrap();
//! let events = vec![
//!     Event::new("logs", "1", json!({"@timestamp": "2026-12-03T10:00:00Z",
//!         "event": {"category": "process"}, "process": {"name": "cmd.exe"}})),
//!     Event::new("logs", "2", json!({"@timestamp": "2026-12-03T10:00:01Z",
//!         "event": {"category": "process"}, "process": {"name": "explorer.exe"}})),
//! ];
//! let out = engine::run(&plan, events).unwrap();
//! assert_eq!(out.results.len(), 1);
//! ```

pub mod analysis;
pub mod event;
pub mod exec;
pub mod limits;
pub mod pushdown;
pub mod syntax;

pub use analysis::{analyze, mapping, value, verify};
pub use exec::{engine, eval, functions, plan, sample, sequence};
pub use pushdown::dsl;
pub use syntax::{ast, error, lexer, parser};

pub use error::{EqlError, ErrorKind};
pub use parser::parse;
