//! Taking turns on a rule: a lease in the rule's state document.
//!
//! A replica may run a rule only while it holds the lease: `lease_owner` is its id and `lease_expires`
//! is in the future. Claiming, renewing and releasing are all conditional writes on the version just
//! read, so of several replicas racing for the same rule exactly one wins; the others see the lease as
//! held. The window end advances only in the releasing write, so a window counts as done only if the
//! replica that ran it still held the lease when it finished. A crashed owner simply stops renewing;
//! once its lease expires any replica can claim the rule, and the unadvanced window end makes it run the
//! crashed owner's window again.
//!
//! Expiry compares the claimer's clock with the expiry the owner wrote from its own clock, so replica
//! clocks must agree to well within the lease margin (NTP does).

use chrono::{DateTime, Duration, Utc};

use super::state::{RuleState, RunStatus, StateStore, StoreError, Versioned};

/// A held lease, with the version of the state document it was last written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub state: Versioned<RuleState>,
}

impl Lease {
    pub fn rule_id(&self) -> &str {
        &self.state.value.rule_id
    }

    /// When the lease runs out unless renewed.
    pub fn expires(&self) -> Option<DateTime<Utc>> {
        self.state.value.lease_expires
    }
}

/// Outcome of [`try_claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Acquired(Lease),
    /// Another replica holds the rule until `until`.
    HeldBy { owner: String, until: DateTime<Utc> },
}

/// Why a lease operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LeaseError {
    /// The state document changed under us: the lease expired and another replica took the rule.
    #[error("lost the lease on rule `{rule_id}`: another replica changed its state (the lease had expired)")]
    Lost { rule_id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How many read-then-write rounds a claim tries before giving up on a busy document.
const CLAIM_ATTEMPTS: usize = 5;

/// Tries to take the lease on `rule_id` for `lease_len` from `now`. Creates the state document for a
/// rule that never ran. Returns `HeldBy` if another owner holds an unexpired lease. A lease already
/// held by the same `owner` (e.g. one whose release failed) is taken over.
pub async fn try_claim(
    store: &dyn StateStore,
    rule_id: &str,
    owner: &str,
    now: DateTime<Utc>,
    lease_len: Duration,
) -> Result<Claim, StoreError> {
    for _ in 0..CLAIM_ATTEMPTS {
        let current = store.get(rule_id).await?;
        let result = match current {
            None => {
                let mut s = RuleState::new(rule_id);
                s.lease_owner = Some(owner.to_string());
                s.lease_expires = Some(crate::limits::later(now, lease_len));
                s.updated_at = Some(now);
                store.create(&s).await
            }
            Some(v) => {
                if let (Some(holder), Some(until)) = (&v.value.lease_owner, v.value.lease_expires) {
                    if holder != owner && until > now {
                        return Ok(Claim::HeldBy { owner: holder.clone(), until });
                    }
                }
                let mut s = v.value.clone();
                s.lease_owner = Some(owner.to_string());
                s.lease_expires = Some(crate::limits::later(now, lease_len));
                s.updated_at = Some(now);
                store.compare_and_set(&s, v.seq_no, v.primary_term).await
            }
        };
        match result {
            Ok(state) => return Ok(Claim::Acquired(Lease { owner: owner.to_string(), state })),
            // Someone wrote between our read and write: read again, it is probably held now.
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict { rule_id: rule_id.to_string() })
}

/// Extends a held lease to `now + lease_len`. Never touches the window end.
pub async fn renew(
    store: &dyn StateStore,
    lease: &mut Lease,
    now: DateTime<Utc>,
    lease_len: Duration,
) -> Result<(), LeaseError> {
    let mut s = lease.state.value.clone();
    s.lease_expires = Some(crate::limits::later(now, lease_len));
    s.updated_at = Some(now);
    lease.state = write(store, lease, &s).await?;
    Ok(())
}

/// What the releasing write records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Release {
    /// New end of the last completed window; ignored unless later than the stored one.
    pub window_end: Option<DateTime<Utc>>,
    /// Outcome of the execution, if one ran (`None` releases without recording a run).
    pub status: Option<(RunStatus, String)>,
    pub execution_id: Option<String>,
    /// The window this execution failed on and the attempts so far (recorded with `status`; `None`
    /// clears a previous failure).
    pub failed_window: Option<(DateTime<Utc>, u32)>,
}

/// Gives the lease up, recording the execution's outcome and advancing the window end in the same
/// conditional write. Fails with [`LeaseError::Lost`] if another replica took the rule meanwhile; then
/// nothing is recorded and the window end stays where it was.
pub async fn release(
    store: &dyn StateStore,
    lease: &Lease,
    now: DateTime<Utc>,
    release: Release,
) -> Result<Versioned<RuleState>, LeaseError> {
    let mut s = lease.state.value.clone();
    s.lease_owner = None;
    s.lease_expires = None;
    s.updated_at = Some(now);
    if let Some(end) = release.window_end {
        s.last_window_end = Some(s.last_window_end.map_or(end, |old| old.max(end)));
    }
    if let Some((status, message)) = release.status {
        s.last_status = Some(status);
        s.last_message = Some(message);
        s.last_run_at = Some(now);
        s.consecutive_failures = if status == RunStatus::Failed { s.consecutive_failures.saturating_add(1) } else { 0 };
        s.failed_window_end = release.failed_window.map(|f| f.0);
        s.failed_window_attempts = release.failed_window.map_or(0, |f| f.1);
    }
    if release.execution_id.is_some() {
        s.last_execution_id = release.execution_id;
    }
    write(store, lease, &s).await
}

async fn write(store: &dyn StateStore, lease: &Lease, s: &RuleState) -> Result<Versioned<RuleState>, LeaseError> {
    match store.compare_and_set(s, lease.state.seq_no, lease.state.primary_term).await {
        Ok(v) => Ok(v),
        Err(StoreError::Conflict { rule_id }) => Err(LeaseError::Lost { rule_id }),
        Err(e) => Err(LeaseError::Store(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::state::InMemoryStateStore;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap() + Duration::minutes(min)
    }

    #[tokio::test]
    async fn one_holder_at_a_time_until_expiry() {
        let store = InMemoryStateStore::new();
        let len = Duration::minutes(6);
        let Claim::Acquired(a) = try_claim(&store, "r", "A", t(0), len).await.unwrap() else { panic!("A should get it") };
        assert_eq!(a.expires(), Some(t(6)));
        assert_eq!(try_claim(&store, "r", "B", t(1), len).await.unwrap(), Claim::HeldBy { owner: "A".into(), until: t(6) });
        // Expired: B takes over, and A's later writes are refused.
        let Claim::Acquired(b) = try_claim(&store, "r", "B", t(6), len).await.unwrap() else { panic!("B should get it") };
        assert_eq!(b.owner, "B");
        let mut a2 = a.clone();
        assert!(matches!(renew(&store, &mut a2, t(7), len).await, Err(LeaseError::Lost { .. })));
        let r = release(&store, &a, t(7), Release { window_end: Some(t(5)), ..Release::default() }).await;
        assert!(matches!(r, Err(LeaseError::Lost { .. })));
        assert_eq!(store.state("r").unwrap().value.last_window_end, None, "a lost owner must not advance the window");
        assert_eq!(store.state("r").unwrap().value.lease_owner.as_deref(), Some("B"));
    }

    #[tokio::test]
    async fn an_endless_lease_saturates_instead_of_panicking() {
        let store = InMemoryStateStore::new();
        let Claim::Acquired(mut l) = try_claim(&store, "r", "A", t(0), Duration::MAX).await.unwrap() else { panic!() };
        assert_eq!(l.expires(), Some(DateTime::<Utc>::MAX_UTC));
        renew(&store, &mut l, t(1), Duration::MAX).await.unwrap();
        let Claim::Acquired(_) = try_claim(&store, "s", "A", t(0), Duration::MAX).await.unwrap() else { panic!() };
        assert!(matches!(try_claim(&store, "r", "B", t(2), Duration::minutes(1)).await.unwrap(), Claim::HeldBy { .. }));
    }

    #[tokio::test]
    async fn window_end_moves_only_in_the_release_and_only_forward() {
        let store = InMemoryStateStore::new();
        let len = Duration::minutes(6);
        let Claim::Acquired(mut l) = try_claim(&store, "r", "A", t(0), len).await.unwrap() else { panic!() };
        renew(&store, &mut l, t(2), len).await.unwrap();
        assert_eq!(l.expires(), Some(t(8)));
        assert_eq!(store.state("r").unwrap().value.last_window_end, None);
        let v = release(
            &store,
            &l,
            t(3),
            Release {
                window_end: Some(t(0)),
                status: Some((RunStatus::Failed, "x".into())),
                execution_id: Some("e1".into()),
                failed_window: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(v.value.last_window_end, Some(t(0)));
        assert_eq!((v.value.lease_owner.clone(), v.value.lease_expires), (None, None));
        assert_eq!(v.value.consecutive_failures, 1);
        // Released: anyone may claim at once; an older end never moves it back.
        let Claim::Acquired(l) = try_claim(&store, "r", "B", t(3), len).await.unwrap() else { panic!() };
        let v = release(&store, &l, t(4), Release { window_end: Some(t(-5)), ..Release::default() }).await.unwrap();
        assert_eq!(v.value.last_window_end, Some(t(0)));
        assert_eq!(v.value.consecutive_failures, 1, "a release without a run keeps the failure count");
    }

    #[tokio::test]
    async fn same_owner_reclaims_its_own_unreleased_lease() {
        let store = InMemoryStateStore::new();
        let len = Duration::minutes(6);
        assert!(matches!(try_claim(&store, "r", "A", t(0), len).await.unwrap(), Claim::Acquired(_)));
        assert!(matches!(try_claim(&store, "r", "A", t(1), len).await.unwrap(), Claim::Acquired(_)));
    }

    #[tokio::test]
    async fn racing_claimers_get_exactly_one_lease() {
        let store = std::sync::Arc::new(InMemoryStateStore::with_yields());
        let len = Duration::minutes(6);
        let mut handles = Vec::new();
        for owner in ["A", "B", "C", "D"] {
            let store = store.clone();
            handles.push(tokio::spawn(async move { try_claim(store.as_ref(), "r", owner, t(0), len).await }));
        }
        let mut acquired = 0;
        for h in handles {
            if let Claim::Acquired(_) = h.await.unwrap().unwrap() {
                acquired += 1;
            }
        }
        assert_eq!(acquired, 1);
        assert!(store.conflicts() > 0, "the claims should really have raced");
    }
}
