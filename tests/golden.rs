//! Golden outputs: the alert documents `esdetect test --format ndjson` prints for fixed event files, byte for
//! byte, minus the two run-time values (the run's time and its execution uuid).
//!
//! They were captured before the data path was rebuilt (one-pass projection parsing) and guard against any
//! accidental change of results: which alerts, their ids, their order and every copied field. The inputs are
//! time-unsorted simulated Windows Security events (three simulation runs concatenated) as search hits, and the
//! same events as bare documents (synthetic ids). A change that alters results on purpose regenerates them with
//! `ESDETECT_BLESS=1 cargo test --test golden` and says why in its commit.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn gunzip(path: &Path) -> String {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut text).unwrap();
    text
}

/// Runs `esdetect test` over `events` and returns stdout with run-time values replaced.
fn run_test(events: &Path, now: Option<&str>, config: Option<&Path>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esdetect"));
    cmd.args(["test", "--format", "ndjson", "--rules"]).arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"));
    cmd.arg("--events").arg(events);
    if let Some(now) = now {
        cmd.args(["--now", now]);
    }
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    for (name, _) in std::env::vars() {
        if name.starts_with("ESDETECT_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd.output().expect("running esdetect");
    let code = out.status.code();
    // 0, or 3 when a rule reached max_signals (the fixtures do on purpose).
    assert!(matches!(code, Some(0) | Some(3)), "esdetect test failed ({code:?}): {}", String::from_utf8_lossy(&out.stderr));
    normalise(&String::from_utf8(out.stdout).expect("UTF-8 output"))
}

/// Replaces the run's time and execution uuid (different on every run) by placeholders, textually, so that
/// everything else stays byte-exact.
fn normalise(ndjson: &str) -> String {
    let mut out = String::with_capacity(ndjson.len());
    for line in ndjson.lines() {
        let doc: serde_json::Value = serde_json::from_str(line).expect("an alert line is JSON");
        let source = &doc["_source"];
        let now = source["@timestamp"].as_str().expect("alert @timestamp").to_string();
        let exec = source["kibana.alert.rule.execution.uuid"].as_str().expect("execution uuid").to_string();
        out.push_str(&line.replace(&format!("\"{now}\""), "\"<now>\"").replace(&format!("\"{exec}\""), "\"<exec>\""));
        out.push('\n');
    }
    out
}

/// Compares with (or, with ESDETECT_BLESS=1, writes) `tests/golden/<name>.ndjson.gz`.
fn check(name: &str, actual: &str) {
    let path = golden_dir().join(format!("{name}.ndjson.gz"));
    if std::env::var_os("ESDETECT_BLESS").is_some() {
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::best());
        gz.write_all(actual.as_bytes()).unwrap();
        gz.finish().unwrap();
        return;
    }
    let expected = gunzip(&path);
    assert!(!expected.is_empty(), "{name}: the golden output is empty; a golden case must produce alerts");
    if expected != actual {
        let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
        let first = e.iter().zip(&a).position(|(x, y)| x != y).unwrap_or(e.len().min(a.len()));
        panic!(
            "{name}: output differs from the golden file ({} expected lines, {} actual); first difference at line {}:\n\
             expected: {}\n  actual: {}",
            e.len(),
            a.len(),
            first + 1,
            e.get(first).map(|s| &s[..s.len().min(2000)]).unwrap_or("<end>"),
            a.get(first).map(|s| &s[..s.len().min(2000)]).unwrap_or("<end>"),
        );
    }
}

fn hits() -> PathBuf {
    golden_dir().join("events.ndjson.gz")
}

#[test]
fn windows_of_search_hits() {
    for (name, now) in [("hits-1004", "2026-11-20T10:04:00Z"), ("hits-1009", "2026-11-20T10:09:00Z"), ("hits-1014", "2026-11-20T10:14:00Z")] {
        check(name, &run_test(&hits(), Some(now), None));
    }
}

#[test]
fn whole_file_as_one_window() {
    check("hits-all", &run_test(&hits(), None, None));
}

#[test]
fn complete_sequence_mode() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("esdetect.toml");
    std::fs::write(&config, "[run]\nsequence_mode = \"complete\"\n").unwrap();
    check("hits-1014-complete", &run_test(&hits(), Some("2026-11-20T10:14:00Z"), Some(&config)));
}

#[test]
fn bare_events_get_synthetic_ids() {
    check("bare-1009", &run_test(&golden_dir().join("bare-events.ndjson.gz"), Some("2026-11-20T10:09:00Z"), None));
}

/// The same events as a plain (not gzipped) JSON array give the same alerts as the gzipped NDJSON.
#[test]
fn json_array_input_is_the_same_stream() {
    let dir = tempfile::tempdir().unwrap();
    let array = dir.path().join("events.json");
    let text = gunzip(&hits());
    let items: Vec<&str> = text.lines().collect();
    std::fs::write(&array, format!("[\n{}\n]\n", items.join(",\n"))).unwrap();
    check("hits-1009", &run_test(&array, Some("2026-11-20T10:09:00Z"), None));
}

/// The same events sorted by time are streamed in one pass (no in-memory sort) and give the same alerts.
#[test]
fn time_sorted_input_streams_to_the_same_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let sorted = dir.path().join("sorted.ndjson");
    let text = gunzip(&hits());
    let mut lines: Vec<(i64, &str)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let ts = chrono::DateTime::parse_from_rfc3339(v["_source"]["@timestamp"].as_str().unwrap()).unwrap();
            (ts.timestamp_millis(), l)
        })
        .collect();
    lines.sort_by_key(|(ms, _)| *ms);
    std::fs::write(&sorted, lines.iter().map(|(_, l)| format!("{l}\n")).collect::<String>()).unwrap();
    for (name, now) in [("hits-1004", "2026-11-20T10:04:00Z"), ("hits-1009", "2026-11-20T10:09:00Z"), ("hits-1014", "2026-11-20T10:14:00Z")] {
        check(name, &run_test(&sorted, Some(now), None));
    }
    check("hits-all", &run_test(&sorted, None, None));
}
