//! Cluster access in one place: connection settings, the retrying client, typed errors.
//!
//! Everything that talks to Elasticsearch or OpenSearch (`source::es`, `sink::es`, the scheduler's
//! ledger) goes through [`EsClient`], so auth, TLS, timeouts and retry behaviour are decided here once.

pub mod client;
pub mod config;
pub mod error;
pub mod path;
pub mod retry;

pub use client::{ClusterInfo, EsClient, Flavour, PrivilegeCheck};
pub use config::{ConnectionConfig, Secret};
pub use error::EsError;
pub use retry::RetryPolicy;
