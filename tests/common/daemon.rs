//! Helpers for tests that run the `esdetect` daemon as a process: the process itself (killed on drop, its
//! log), a minimal HTTP GET for its `/metrics`, `/healthz` and `/readyz` endpoints, and polling until a
//! condition holds. Needs no Elasticsearch node, so tests with a private node (`tests/daemon_outage.rs`)
//! include this file on its own.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// The daemon process, writing its log to `log`; killed on drop if the test ends (or panics) before it
/// exited.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the daemon.
    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process; no memory is involved.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0, "signalling the daemon");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Minimal blocking HTTP/1.0 GET: status code and body, `None` when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// The value of one sample line (`name{labels} value`) of the daemon's `/metrics` at `listen`.
pub fn metric(listen: &str, sample: &str) -> Option<f64> {
    let (_, body) = http_get(listen, "/metrics")?;
    body.lines().find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// Polls `check` every 200 ms until it returns `Some`; panics with `what` (and `context()`, e.g. the
/// daemon's log) after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, context: impl Fn() -> String, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting until {what}\n{}", context());
        std::thread::sleep(Duration::from_millis(200));
    }
}
