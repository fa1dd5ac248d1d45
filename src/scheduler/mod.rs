//! Scheduler: decides when each rule runs, over which time windows, and makes sure that any number of
//! daemon replicas against one cluster run every window of every rule exactly once.
//!
//! * [`clock`]: injectable time (wall clock in production, a hand-driven clock in tests).
//! * [`schedule`]: interval and cron schedules, on a fixed grid so nothing drifts.
//! * [`windows`]: which windows a tick must query: Kibana's catch-up formula, or full backfill.
//! * [`state`]: the per-rule state document and per-execution ledger entries, and the store trait.
//! * [`lease`]: claiming a rule through its state document with optimistic concurrency.
//! * [`daemon`]: the loop that ties it together, with timeouts, renewals, backoff and shutdown.
//! * [`execution_log`]: one execution's ledger entry, built the same way by every kind of run;
//!   [`manual`]: executions started by hand (`run --once` records, `backfill`).
//! * [`store_es`]: the [`StateStore`] in Elasticsearch; [`executor`]: the executor on top of `detect`;
//!   [`metrics`] and [`http`]: Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` endpoints.
//! * [`reload`]: hot reload of rules and configuration (SIGHUP, a watch of the rules path).
//! * [`shadow`]: shadow-mode rules, compared with Kibana's alerts instead of writing their own.
pub mod clock;
pub mod schedule;
pub mod windows;
pub mod state;
pub mod lease;
pub mod daemon;
pub mod execution_log;
pub mod manual;
pub mod executor;
pub mod http;
pub mod metrics;
pub mod outage;
pub mod shadow;
pub mod store_es;
pub mod reload;

#[cfg(test)]
mod daemon_tests;

pub use clock::{BoxFuture, Clock, ManualClock, SystemClock};
pub use daemon::{
    Executor, RuleSpec, WindowOutcome, WindowRequest, Scheduler, SchedulerConfig, SchedulerStats, SequenceMode, TickReport,
};
pub use schedule::{Schedule, ScheduleError};
pub use state::{Counts, InMemoryStateStore, LedgerEntry, RuleState, RunStatus, StateStore, StoreError, Versioned};
pub use windows::{GapPolicy, Window, WindowKind};
pub use store_es::{EsStateStore, StoreIndices};
