//! Cluster access in one place: connection settings, the retrying client, typed errors.
//!
//! Everything that talks to Elasticsearch or OpenSearch (`source::es`, `sink::es`, the scheduler's
//! ledger) goes through [`EsClient`], so auth, TLS, timeouts and retry behaviour are decided here once.

pub mod answer;
pub mod client;
pub mod config;
pub mod error;
pub mod path;
pub mod retry;

pub use client::{chain_message, ClusterInfo, EsClient, Flavour, PrivilegeCheck};
pub use config::{ConnectionConfig, Secret};
pub use error::EsError;
pub use retry::RetryPolicy;
/// The request method of [`EsClient::raw`] and the `refresh` setting of [`EsClient::bulk`], re-exported so
/// callers need not name the pinned client crate.
pub use elasticsearch::http::Method;
pub use elasticsearch::params::Refresh;
