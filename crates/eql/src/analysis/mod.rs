//! Analysis: resolves fields against a [`mapping::Mapping`], coerces literals to the field types
//! ([`value`]), checks what Elasticsearch's verifier refuses, and compiles the query into the predicates
//! and plan the executor runs ([`analyze::CompiledQuery`]).

pub mod analyze;
pub mod mapping;
pub mod value;
