//! Elasticsearch's own EQL QA specs, run through esdetect's engine (`../shared/conformance`).
//! The corpus sits beside the repository in CI; a missing corpus fails here rather than passing silently.

use esdetect::conformance::{run_files_with_engine, run_indices_with_engine, KNOWN_DIFFERENCES};
use std::path::PathBuf;

fn corpus(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = ["../shared/conformance", "../../shared/conformance"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.join("README.md").exists())
        .expect("the EQL conformance corpus (../shared/conformance) is missing beside the repository");
    dir.join(name)
}

fn check(data: &str, spec: &str, mapping: &str, tiebreaker: &str, min_passed: usize) {
    let report = run_files_with_engine(&corpus(data), &corpus(spec), Some(&corpus(mapping)), tiebreaker).unwrap();
    eprintln!("{spec}:\n{report}");
    assert_eq!(report.failed(), 0, "{report}");
    assert!(report.passed() >= min_passed, "only {} passed: {report}", report.passed());
}

#[test]
fn endgame_test_queries() {
    // 133 active queries; at least 95 % must pass, the rest may only be skipped for documented reasons.
    check("endgame-140.test_data.json", "test_queries.toml", "endgame-140.mapping", "serial_event_id", 127);
}

#[test]
fn extra_test_queries() {
    check("extra.data", "test_extra.toml", "extra.mapping", "sequence", 38);
}

/// `test_sample.toml` runs against the three sample indices in one request, without a tiebreaker; the test
/// id is `_source.id` (README §8).
#[test]
fn sample_test_queries() {
    let data = [corpus("sample1.data"), corpus("sample2.data"), corpus("sample3.data")];
    let mappings = [corpus("sample1.mapping"), corpus("sample2.mapping"), corpus("sample3.mapping")];
    let data: Vec<&std::path::Path> = data.iter().map(|p| p.as_path()).collect();
    let mappings: Vec<&std::path::Path> = mappings.iter().map(|p| p.as_path()).collect();
    let report = run_indices_with_engine(&data, &corpus("test_sample.toml"), &mappings, None, "id").unwrap();
    eprintln!("test_sample.toml:\n{report}");
    assert_eq!(report.failed(), 0, "{report}");
    // 25 active queries; only the documented known differences may be skipped.
    assert_eq!(report.passed() + report.skipped(), 25, "{report}");
    assert!(report.skipped() <= KNOWN_DIFFERENCES.len(), "{report}");
    assert!(report.passed() >= 22, "only {} passed: {report}", report.passed());
}

#[test]
fn missing_events_test_queries() {
    check("missing-events.data", "test_missing_events.toml", "missing-events.mapping", "sequence", 26);
}

/// `esdetect eql-spec` takes several data and mapping files (one request over several indices) and reports
/// skipped known differences with their reason.
#[test]
fn eql_spec_command_runs_the_sample_spec() {
    let join = |names: &[&str]| names.iter().map(|n| corpus(n).display().to_string()).collect::<Vec<_>>().join(",");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esdetect"))
        .args(["eql-spec", "--no-tiebreaker", "--id-field", "id", "--spec"])
        .arg(corpus("test_sample.toml"))
        .args(["--data", &join(&["sample1.data", "sample2.data", "sample3.data"])])
        .args(["--mapping", &join(&["sample1.mapping", "sample2.mapping", "sample3.mapping"])])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.trim_end().ends_with("22 passed, 0 failed, 3 skipped"), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("SKIPPED customDateFormat")).count(), 3, "{stdout}");
}
