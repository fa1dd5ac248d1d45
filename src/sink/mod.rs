//! Alert sinks.
pub mod es;
pub mod stdout;
pub mod suppressed;
