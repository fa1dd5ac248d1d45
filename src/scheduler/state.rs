//! What the scheduler keeps in Elasticsearch, and the store interface it keeps it through.
//!
//! * One **state document per rule** ([`RuleState`]): the end of the last window that completed, the
//!   last status, and the lease (owner + expiry) through which replicas take turns. Every write to it is
//!   conditional on the `seq_no`/`primary_term` read before ([`Versioned`]), Elasticsearch's optimistic
//!   concurrency control, so two replicas can never both believe they hold the rule.
//! * One **ledger document per execution** ([`LedgerEntry`]): what ran, over which windows, with which
//!   result. `esdetect status` reads the newest ones back.
//!
//! [`StateStore`] is the interface; the Elasticsearch implementation lives outside this module.
//! [`InMemoryStateStore`] implements the exact same concurrency semantics for tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::windows::Window;

/// Statuses are the detect layer's ([`crate::detect::RunStatus`]): one enum, whose `Skipped` only the
/// ledger uses.
pub use crate::detect::RunStatus;

/// The state document of one rule (document id = rule id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleState {
    pub rule_id: String,
    /// End of the last window that completed successfully; the next run's gap is measured from here.
    /// Only ever moves forward, and only in the write that releases the lease.
    pub last_window_end: Option<DateTime<Utc>>,
    pub last_status: Option<RunStatus>,
    pub last_message: Option<String>,
    pub last_execution_id: Option<String>,
    /// When the last execution finished.
    pub last_run_at: Option<DateTime<Utc>>,
    /// Executions in a row whose status was `failed`.
    pub consecutive_failures: u32,
    /// End of the window the last execution failed on, and how many executions in a row failed on it;
    /// after `max_window_attempts` the window is given up so one poison window cannot stall the rule.
    pub failed_window_end: Option<DateTime<Utc>>,
    pub failed_window_attempts: u32,
    /// Replica that holds the rule, if any (unique per process: two processes must never share it).
    pub lease_owner: Option<String>,
    /// After this instant the lease is void and any replica may claim the rule.
    pub lease_expires: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl RuleState {
    /// The state of a rule that never ran.
    pub fn new(rule_id: impl Into<String>) -> Self {
        RuleState {
            rule_id: rule_id.into(),
            last_window_end: None,
            last_status: None,
            last_message: None,
            last_execution_id: None,
            last_run_at: None,
            consecutive_failures: 0,
            failed_window_end: None,
            failed_window_attempts: 0,
            lease_owner: None,
            lease_expires: None,
            updated_at: None,
        }
    }
}

impl Default for RuleState {
    fn default() -> Self {
        RuleState::new("")
    }
}

/// A document with the concurrency-control tokens of the version that was read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub seq_no: i64,
    pub primary_term: i64,
}

/// Result counts of an execution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Events (or sequences) the searches returned.
    pub fetched: u64,
    /// Matches that became alert candidates.
    pub matches: u64,
    /// Alert documents actually created.
    pub alerts_written: u64,
    /// Candidates dropped because their alert already existed.
    pub duplicates: u64,
    /// Bytes of the search answers (the scan's pages).
    pub bytes_search: u64,
    /// Bytes of the `_mget` answers (the whole `_source` of the alerts' events after a filtered scan).
    pub bytes_mget: u64,
    /// Notifications of the rule's actions by connector and outcome (`sent`, `failed` after the retries,
    /// `throttled`, `redelivered`, `dropped`); they never change the execution's status.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<crate::actions::ActionCount>,
    /// Why notifications were not delivered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub action_errors: Vec<String>,
}

impl Counts {
    /// What the ledger keeps of one detect run.
    pub fn of(summary: &crate::detect::RunSummary) -> Counts {
        Counts {
            fetched: summary.fetched,
            matches: summary.kept,
            alerts_written: summary.alerts_written,
            duplicates: summary.duplicates,
            bytes_search: summary.bytes_fetched,
            bytes_mget: summary.bytes_mget,
            actions: summary.actions.counts(),
            action_errors: summary.actions.errors.clone(),
        }
    }

    pub fn add(&mut self, other: &Counts) {
        self.fetched += other.fetched;
        self.matches += other.matches;
        self.alerts_written += other.alerts_written;
        self.duplicates += other.duplicates;
        self.bytes_search += other.bytes_search;
        self.bytes_mget += other.bytes_mget;
        crate::actions::add_counts(&mut self.actions, &other.actions);
        self.action_errors.extend(other.action_errors.iter().cloned());
    }
}

/// The same execution type alert documents carry.
pub use crate::alert::ExecutionType;

/// One ledger document: one execution of one rule (one claim of the lease, one or more windows), or one
/// record of scheduled ticks that were skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub rule_id: String,
    /// Unique per execution; a good document id.
    pub execution_id: String,
    /// Replica that ran it.
    pub owner: String,
    /// The tick this execution belongs to (for a skip record: the first skipped tick).
    pub scheduled_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Span of the windows this execution set out to query (`None` for a skip record).
    pub window_from: Option<DateTime<Utc>>,
    pub window_to: Option<DateTime<Utc>>,
    /// The windows attempted, oldest first.
    pub windows: Vec<Window>,
    /// How many of them completed successfully.
    pub windows_completed: u32,
    /// Windows of the same plan left for the next execution (backfill progress).
    pub windows_remaining: u32,
    /// The rule's `last_window_end` after this execution (unchanged when nothing completed).
    pub window_end: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub message: String,
    pub counts: Counts,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
    /// Unqueried time reported by this execution (Kibana's remaining gap), in milliseconds.
    pub gap_ms: Option<i64>,
    pub gap_from: Option<DateTime<Utc>>,
    pub gap_to: Option<DateTime<Utc>>,
    /// A gap this execution found and filled completely with catch-up/backfill windows, in
    /// milliseconds (after an outage); `gap_ms` is only what stayed unqueried.
    #[serde(default)]
    pub gap_filled_ms: Option<i64>,
    pub search_duration_ms: u64,
    pub indexing_duration_ms: u64,
    pub duration_ms: u64,
    /// How late the execution started after its scheduled time, in milliseconds.
    pub delay_ms: i64,
    /// True for a record of ticks that were not run because the previous run was still going (or the
    /// cluster was unreachable); `skipped_ticks` says how many.
    pub skipped_tick: bool,
    pub skipped_ticks: u32,
    /// Scheduled (the daemon) or manual; entries written before this field existed read as scheduled.
    #[serde(default)]
    pub execution_type: ExecutionType,
}

/// Why a store operation did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The document changed since it was read (or already exists, for `create`; or is missing, for a
    /// conditional write). Someone else wrote first: read again.
    #[error("the state document of rule `{rule_id}` was changed by another writer; read it again")]
    Conflict { rule_id: String },
    /// The cluster could not be reached or answered with an error; worth retrying later. (Shared, so the
    /// error can be cloned to every waiter.)
    #[error("the state store is unavailable: {0}")]
    Unavailable(#[source] std::sync::Arc<crate::es::EsError>),
    /// The store answered with something esdetect cannot use (a document without version tokens, a
    /// state document that does not parse), or is switched off (tests); also worth retrying later.
    #[error("the state store is unavailable: {0}")]
    Unusable(String),
}

/// Where rule state and the ledger live. Implementations must give `create` and `compare_and_set`
/// Elasticsearch's semantics: `create` fails with [`StoreError::Conflict`] if the document exists;
/// `compare_and_set` writes only if the stored document still has exactly the given `seq_no` and
/// `primary_term` (and fails with `Conflict` otherwise, including when it does not exist), and every
/// successful write returns new tokens.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The state document of `rule_id`, if any.
    async fn get(&self, rule_id: &str) -> Result<Option<Versioned<RuleState>>, StoreError>;
    /// Creates the state document (`state.rule_id` is the id); `Conflict` if it exists.
    async fn create(&self, state: &RuleState) -> Result<Versioned<RuleState>, StoreError>;
    /// Replaces the state document if it is still at (`seq_no`, `primary_term`).
    async fn compare_and_set(
        &self,
        state: &RuleState,
        seq_no: i64,
        primary_term: i64,
    ) -> Result<Versioned<RuleState>, StoreError>;
    /// Appends one ledger document.
    async fn append_ledger(&self, entry: &LedgerEntry) -> Result<(), StoreError>;
    /// The newest `limit` ledger entries of `rule_id`, newest first (by `started_at`).
    async fn recent_ledger(&self, rule_id: &str, limit: usize) -> Result<Vec<LedgerEntry>, StoreError>;
}

/// An in-process [`StateStore`] with Elasticsearch's optimistic-concurrency semantics, for tests and
/// for single-process use without a cluster.
#[derive(Debug, Default)]
pub struct InMemoryStateStore {
    inner: Mutex<Inner>,
    /// Yield to the runtime before and after each operation, so concurrent claimers interleave the way
    /// network round trips would make them.
    yields: bool,
    unavailable: AtomicBool,
    conflicts: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    docs: HashMap<String, Versioned<RuleState>>,
    last_seq_no: i64,
    ledger: Vec<LedgerEntry>,
}

impl InMemoryStateStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that yields to other tasks around every operation (see the field doc).
    pub fn with_yields() -> Self {
        InMemoryStateStore { yields: true, ..Self::default() }
    }

    /// Makes every operation fail with [`StoreError::Unusable`] (a cluster that is down) or work again.
    pub fn set_unavailable(&self, down: bool) {
        self.unavailable.store(down, Ordering::SeqCst);
    }

    /// How many writes were refused with `Conflict` so far.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::SeqCst)
    }

    /// Every ledger entry, in insertion order.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.lock().ledger.clone()
    }

    /// The stored state of `rule_id`, without going through the async interface.
    pub fn state(&self, rule_id: &str) -> Option<Versioned<RuleState>> {
        self.lock().docs.get(rule_id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated (each write is one assignment),
        // so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn enter(&self) -> Result<(), StoreError> {
        if self.yields {
            tokio::task::yield_now().await;
        }
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unusable("in-memory store switched off by the test".to_string()));
        }
        Ok(())
    }

    async fn leave(&self) {
        if self.yields {
            tokio::task::yield_now().await;
        }
    }

    fn conflict(&self, rule_id: &str) -> StoreError {
        self.conflicts.fetch_add(1, Ordering::SeqCst);
        StoreError::Conflict { rule_id: rule_id.to_string() }
    }
}

#[async_trait]
impl StateStore for InMemoryStateStore {
    async fn get(&self, rule_id: &str) -> Result<Option<Versioned<RuleState>>, StoreError> {
        self.enter().await?;
        let found = self.lock().docs.get(rule_id).cloned();
        self.leave().await;
        Ok(found)
    }

    async fn create(&self, state: &RuleState) -> Result<Versioned<RuleState>, StoreError> {
        self.enter().await?;
        let result = {
            let mut inner = self.lock();
            if inner.docs.contains_key(&state.rule_id) {
                Err(self.conflict(&state.rule_id))
            } else {
                inner.last_seq_no += 1;
                let v = Versioned { value: state.clone(), seq_no: inner.last_seq_no, primary_term: 1 };
                inner.docs.insert(state.rule_id.clone(), v.clone());
                Ok(v)
            }
        };
        self.leave().await;
        result
    }

    async fn compare_and_set(
        &self,
        state: &RuleState,
        seq_no: i64,
        primary_term: i64,
    ) -> Result<Versioned<RuleState>, StoreError> {
        self.enter().await?;
        let result = {
            let mut inner = self.lock();
            match inner.docs.get(&state.rule_id) {
                Some(cur) if cur.seq_no == seq_no && cur.primary_term == primary_term => {
                    inner.last_seq_no += 1;
                    let v = Versioned { value: state.clone(), seq_no: inner.last_seq_no, primary_term };
                    inner.docs.insert(state.rule_id.clone(), v.clone());
                    Ok(v)
                }
                _ => Err(self.conflict(&state.rule_id)),
            }
        };
        self.leave().await;
        result
    }

    async fn append_ledger(&self, entry: &LedgerEntry) -> Result<(), StoreError> {
        self.enter().await?;
        self.lock().ledger.push(entry.clone());
        self.leave().await;
        Ok(())
    }

    async fn recent_ledger(&self, rule_id: &str, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        self.enter().await?;
        let mut entries: Vec<LedgerEntry> =
            self.lock().ledger.iter().filter(|e| e.rule_id == rule_id).cloned().collect();
        self.leave().await;
        // Stable sort keeps insertion order among equal start times; then newest first.
        entries.sort_by_key(|e| e.started_at);
        entries.reverse();
        entries.truncate(limit);
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_memory_store_has_optimistic_concurrency_semantics() {
        let store = InMemoryStateStore::new();
        assert_eq!(store.get("r").await.unwrap(), None);
        let v1 = store.create(&RuleState::new("r")).await.unwrap();
        assert!(matches!(store.create(&RuleState::new("r")).await, Err(StoreError::Conflict { .. })));

        let mut s = v1.value.clone();
        s.consecutive_failures = 1;
        let v2 = store.compare_and_set(&s, v1.seq_no, v1.primary_term).await.unwrap();
        assert!(v2.seq_no > v1.seq_no);
        // A second writer still holding v1's tokens loses.
        s.consecutive_failures = 7;
        assert!(matches!(store.compare_and_set(&s, v1.seq_no, v1.primary_term).await, Err(StoreError::Conflict { .. })));
        assert!(matches!(store.compare_and_set(&s, v2.seq_no, 2).await, Err(StoreError::Conflict { .. })));
        assert_eq!(store.get("r").await.unwrap().unwrap().value.consecutive_failures, 1);
        // Conditional write of a document that does not exist is a conflict, as in Elasticsearch.
        assert!(matches!(store.compare_and_set(&RuleState::new("x"), 1, 1).await, Err(StoreError::Conflict { .. })));
        assert_eq!(store.conflicts(), 4);

        store.set_unavailable(true);
        assert!(matches!(store.get("r").await, Err(StoreError::Unusable(_))));
    }

    #[test]
    fn status_precedence_and_document_shape() {
        let (st, msg) = RunStatus::from_problems(&["a".into(), "b".into()], &["w".into()]);
        assert_eq!((st, msg.as_str()), (RunStatus::Failed, "a, b"));
        let (st, msg) = RunStatus::from_problems(&[], &["w1".into(), "w2".into()]);
        assert_eq!((st, msg.as_str()), (RunStatus::PartialFailure, "w1\n\nw2"));
        assert_eq!(RunStatus::from_problems(&[], &[]).0, RunStatus::Succeeded);
        assert_eq!(serde_json::to_value(RunStatus::PartialFailure).unwrap(), "partial failure");
        // A state document written by an older version (fewer fields) still reads.
        let s: RuleState = serde_json::from_value(serde_json::json!({"rule_id": "r", "last_window_end": "2024-05-01T12:00:00Z"})).unwrap();
        assert_eq!(s.rule_id, "r");
        assert!(s.lease_owner.is_none() && s.last_window_end.is_some());
    }
}
