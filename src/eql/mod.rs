//! The EQL engine: parse → analyse (types from a field mapping) → evaluate / match sequences, plus
//! pushdown of a conservative Query DSL pre-filter. Pure: no network, no clock, no alert shapes.
//!
//! Semantics follow Elasticsearch's `_eql/search` exactly where it is specified
//! (`shared/spec/eql-semantics.md`): two-valued logic, any-value matching on arrays, literal coercion
//! by mapping, latest-wins sequence slots, tail selection.
//!
//! Pipeline, one module each: `lexer`/`parser` (text → `ast`) → `analyze` (types from `mapping`, values
//! from `value`, predicates in `eval`/`functions`) → `plan` (the contract) → `sequence` (state machine and
//! missing-event stages) / `sample` (per-key candidates) / `engine` (ordering, limits); `pushdown` derives
//! the pre-filter, `dsl` checks it in tests; `conformance` runs Elasticsearch's QA specs.

pub mod ast;
pub mod error;
pub mod lexer;
pub mod parser;
pub mod plan;

pub mod analyze;
pub mod conformance;
pub mod dsl;
pub mod engine;
pub mod eval;
pub mod functions;
pub mod mapping;
pub mod pushdown;
pub mod sample;
pub mod sequence;
pub mod value;

pub use error::{EqlError, ErrorKind};
pub use parser::parse;
