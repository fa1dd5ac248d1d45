//! Time source for the scheduler.
//!
//! Everything in `scheduler` that reads the time or waits goes through [`Clock`], so the same code runs
//! against the wall clock in production ([`SystemClock`]) and against a hand-driven clock in tests
//! ([`ManualClock`]), where hours of schedules, gaps and lease expiries pass in milliseconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A boxed, sendable future: the return type of the object-safe async methods in this module.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Source of "now" and of waiting until a point in time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// Completes once `now() >= deadline` (at once if that is already so). Dropping it cancels the wait.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// The wall clock, with tokio timers for waiting.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// Longest single timer sleep. Waiting in slices and re-reading the wall clock keeps a sleep correct
/// when the wall clock jumps (NTP step, suspended VM), which a monotonic timer alone would not notice.
const MAX_SLEEP_SLICE: std::time::Duration = std::time::Duration::from_secs(30);

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                let left = deadline - Utc::now();
                // A negative or zero remainder fails `to_std`: the deadline has passed.
                let Ok(left) = left.to_std() else { return };
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(MAX_SLEEP_SLICE)).await;
            }
        })
    }
}

/// A clock that only moves when told to: tests call [`ManualClock::advance`] or [`ManualClock::set`],
/// and every sleeper whose deadline has been reached wakes up. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        let (tx, _rx) = watch::channel(start);
        ManualClock { now: Arc::new(tx) }
    }

    /// Moves time forward by `by` (a negative amount is ignored: time never goes back).
    pub fn advance(&self, by: chrono::Duration) {
        if by > chrono::Duration::zero() {
            self.now.send_modify(|t| *t += by);
        }
    }

    /// Moves time forward to `t` (ignored if `t` is in the past).
    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_if_modified(|now| {
            if t > *now {
                *now = t;
                true
            } else {
                false
            }
        });
    }

    /// Number of pending sleeps (each waiting future holds one subscription). Lets a test wait until
    /// the tasks it drives have gone to sleep.
    pub fn sleepers(&self) -> usize {
        self.now.receiver_count()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // `wait_for` fails only when every clock handle is gone; time can then never reach the
            // deadline, and returning beats hanging a task forever.
            let _ = rx.wait_for(|now| *now >= deadline).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_only_when_their_time_comes() {
        let clock = ManualClock::new(t0());
        let c2 = clock.clone();
        let woke = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let w2 = woke.clone();
        let h = tokio::spawn(async move {
            c2.sleep_until(t0() + Duration::minutes(5)).await;
            w2.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        clock.advance(Duration::minutes(4));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!woke.load(std::sync::atomic::Ordering::SeqCst), "woke a minute early");
        clock.advance(Duration::minutes(1));
        h.await.unwrap();
        assert!(woke.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(clock.now(), t0() + Duration::minutes(5));
    }

    #[tokio::test]
    async fn past_deadline_returns_at_once_and_time_never_goes_back() {
        let clock = ManualClock::new(t0());
        clock.sleep_until(t0() - Duration::seconds(1)).await;
        clock.set(t0() - Duration::hours(1));
        clock.advance(Duration::seconds(-5));
        assert_eq!(clock.now(), t0());
        SystemClock.sleep_until(Utc::now() - Duration::seconds(1)).await;
    }
}
