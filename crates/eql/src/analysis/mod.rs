//! Analysis: resolves fields against a [`mapping::Mapping`], coerces literals to the field types
//! ([`value`]), checks what Elasticsearch's verifier refuses, and compiles the query into the predicates
//! and plan the executor runs ([`analyze::CompiledQuery`]); [`verify`] collects every problem of a query
//! at once and suggests near field names.

pub mod analyze;
pub mod mapping;
pub mod value;
pub mod verify;
