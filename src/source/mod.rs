//! Event sources.
pub mod es;
pub mod files;
