//! The daemon's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the process is alive) and
//! `/readyz` (the cluster answers, rules are loaded and none is down after a failure; 503 with the reason
//! otherwise). Bound to
//! 127.0.0.1 by default: metrics name rules and hosts, so exposing them is an explicit choice.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use super::daemon::SchedulerStats;
use super::metrics::Metrics;

/// What `/readyz` reports, updated by the daemon.
#[derive(Debug, Default)]
pub struct Readiness {
    cluster_ok: AtomicBool,
    rules_loaded: AtomicUsize,
    last_error: Mutex<Option<String>>,
}

impl Readiness {
    pub fn set_rules_loaded(&self, n: usize) {
        self.rules_loaded.store(n, Ordering::SeqCst);
    }

    /// Records the outcome of the latest cluster check.
    pub fn set_cluster(&self, result: Result<(), String>) {
        self.cluster_ok.store(result.is_ok(), Ordering::SeqCst);
        if let Ok(mut e) = self.last_error.lock() {
            *e = result.err();
        }
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), String> {
        if self.rules_loaded.load(Ordering::SeqCst) == 0 {
            return Err("no rules loaded".into());
        }
        if !self.cluster_ok.load(Ordering::SeqCst) {
            let why = self.last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_else(|| "not checked yet".into());
            return Err(format!("cluster not reachable: {why}"));
        }
        Ok(())
    }
}

/// Everything the endpoints read.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub stats: Arc<SchedulerStats>,
    pub readiness: Arc<Readiness>,
    /// Current lease-takeover count (from the state store).
    pub takeovers: Arc<dyn Fn() -> u64 + Send + Sync>,
}

/// The router with the three endpoints.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Ready when the cluster answers, rules are loaded and no rule's task is down.
fn ready(s: &HttpState) -> Result<(), String> {
    s.readiness.check()?;
    let down = s.stats.rules_down();
    if down.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = down.iter().map(|(rule, why)| format!("{rule} ({why})")).collect();
    Err(format!("rule task(s) failed and are being restarted: {}", list.join("; ")))
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    s.metrics.sync(&s.stats, (s.takeovers)());
    s.metrics.ready.set(i64::from(ready(&s).is_ok()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    match ready(&s) {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

/// The HTTP endpoint's address cannot be listened on.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for /metrics and health checks; set [scheduler] listen to a free address")]
pub struct BindError {
    pub addr: String,
    pub source: std::io::Error,
}

/// Binds `addr` (e.g. `127.0.0.1:9464`; port 0 picks a free one).
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener, BindError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| BindError { addr: addr.to_string(), source })
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(listener: tokio::net::TcpListener, state: HttpState, shutdown: CancellationToken) {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "serving /metrics, /healthz, /readyz");
    let result = axum::serve(listener, router(state)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    if let Err(e) = result {
        tracing::error!(error = %e, "the HTTP endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_that_is_down_makes_the_daemon_not_ready() {
        let state = HttpState {
            metrics: Arc::new(Metrics::new()),
            stats: Arc::new(SchedulerStats::default()),
            readiness: Arc::new(Readiness::default()),
            takeovers: Arc::new(|| 0),
        };
        state.readiness.set_rules_loaded(2);
        state.readiness.set_cluster(Ok(()));
        assert_eq!(ready(&state), Ok(()));
        state.stats.set_down("r1", Some("panicked: boom".into()));
        let why = ready(&state).unwrap_err();
        assert!(why.contains("r1 (panicked: boom)"), "{why}");
        state.stats.set_down("r1", None);
        assert_eq!(ready(&state), Ok(()));
    }
}
