//! Execution: the [`plan::Plan`] contract, predicate evaluation ([`eval`], [`functions`]), the ordered
//! event stream ([`engine::Runner`]) and the matchers it feeds (sequences with missing-event stages in
//! [`sequence`], samples in [`sample`]).

pub mod engine;
pub mod eval;
pub mod functions;
pub mod plan;
pub mod sample;
pub mod sequence;
