//! The EQL engine: parse → analyse (types from a field mapping) → evaluate / match sequences, plus
//! pushdown of a conservative Query DSL pre-filter. Pure: no network, no clock, no alert shapes.
//!
//! Semantics follow Elasticsearch's `_eql/search` exactly where it is specified
//! (`shared/spec/eql-semantics.md`): two-valued logic, any-value matching on arrays, literal coercion
//! by mapping, latest-wins sequence slots, tail selection.

pub mod ast;
pub mod error;
pub mod conformance;
pub mod engine;
pub mod plan;
pub mod sequence;

pub use error::{EqlError, ErrorKind};
pub mod analyze;
pub mod eval;
pub mod functions;
pub mod mapping;
pub mod value;
