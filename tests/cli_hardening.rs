//! Hostile values in rules and configuration, through the real binary: nothing a rule file or a config
//! file says may make esdetect panic (exit 101); each problem is one `file:line:col: message` line.
//!
//! Positions are computed from the text of the file the test writes, never copied from the program.

use crate::common;

use common::esdetect;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SMB_RULE_ID: &str = "d84a11c0-eb12-4e7d-8a0a-718e38351e29";
const KRB_RULE_ID: &str = "e4e31051-ee01-4307-a6ee-b21b186958f4";

fn seed(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(name)).unwrap()
}

fn smb() -> String {
    seed("credential_access_machine_account_smb_relay.toml")
}

fn krb() -> String {
    seed("privilege_escalation_krbrelayup_service_creation.toml")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// 1-based (line, column in characters) of the first occurrence of `needle` in `text`, plus `offset` chars.
fn position(text: &str, needle: &str, offset: usize) -> (usize, usize) {
    let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in the file"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap().chars().count() + 1 + offset;
    (line, col)
}

fn rules_folder(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for (name, body) in files {
        std::fs::write(rules.join(name), body).unwrap();
    }
    rules
}

fn find_line(stderr: &str, file: &Path, (line, col): (usize, usize)) -> String {
    let prefix = format!("{}:{line}:{col}: ", file.display());
    stderr.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no `{prefix}` line in:\n{stderr}")).to_string()
}

#[test]
fn out_of_range_rule_durations_are_reported_with_their_position_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let far = smb().replacen("from = \"now-9m\"", "from = \"now-100000000d\"", 1);
    let far_at = position(&far, "\"now-100000000d\"", 0);
    let slow = krb().replacen("from = \"now-9m\"", "from = \"now-9m\"\ninterval = \"100000000d\"", 1);
    let slow_at = position(&slow, "\"100000000d\"", 0);
    let rules = rules_folder(dir.path(), &[("far.toml", &far), ("slow.toml", &slow)]);

    let out = esdetect(dir.path(), &["--no-color", "--rules", rules.to_str().unwrap(), "validate"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(find_line(&stderr, &rules.join("far.toml"), far_at).contains("maximum of 3650 days"), "{stderr}");
    assert!(find_line(&stderr, &rules.join("slow.toml"), slow_at).contains("interval"), "{stderr}");
    assert!(text(&out.stdout).contains("0 rule(s) valid, 2 error(s)"), "{}", text(&out.stdout));

    // `explain` and `test --now` used to panic (exit 101) on the same rule.
    let out = esdetect(
        dir.path(),
        &["--no-color", "--rules", rules.to_str().unwrap(), "explain", SMB_RULE_ID, "--now", "2026-05-20T10:00:00Z"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("maximum of 3650 days"), "{}", text(&out.stderr));
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, "{\"@timestamp\":\"2026-05-20T09:59:00Z\",\"event\":{\"code\":\"5145\"}}\n").unwrap();
    let out = esdetect(
        dir.path(),
        &["--no-color", "--rules", rules.to_str().unwrap(), "test", "--events", events.to_str().unwrap(), "--now", "2026-05-20T10:00:00Z"],
    );
    assert_ne!(out.status.code(), Some(101), "panicked: {}", text(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "two invalid rules are not a success: {}", text(&out.stderr));
}

#[test]
fn a_huge_maxspan_is_refused_in_complete_mode_only() {
    let dir = tempfile::tempdir().unwrap();
    let huge = krb().replacen("with maxspan=5m", "with maxspan=9223372036854775807ms", 1);
    let at = position(&huge, "maxspan=9223372036854775807ms", 0);
    let rules = rules_folder(dir.path(), &[("huge.toml", &huge)]);

    // Kibana mode: Elasticsearch accepts any maxspan, and so does esdetect.
    let out = esdetect(dir.path(), &["--no-color", "--rules", rules.to_str().unwrap(), "validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let config = dir.path().join("esdetect.toml");
    std::fs::write(&config, format!("[rules.\"{KRB_RULE_ID}\"]\nsequence_mode = \"complete\"\n")).unwrap();
    let out = esdetect(
        dir.path(),
        &["--no-color", "--config", config.to_str().unwrap(), "--rules", rules.to_str().unwrap(), "validate"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(find_line(&stderr, &rules.join("huge.toml"), at).contains("sequence_mode"), "{stderr}");
}

#[test]
fn out_of_range_config_durations_are_a_usage_error_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_folder(dir.path(), &[("smb.toml", &smb())]);
    let config = dir.path().join("esdetect.toml");
    let body = "[scheduler]\nrun_timeout = \"100000000d\"\n";
    std::fs::write(&config, body).unwrap();
    let (line, col) = position(body, "\"100000000d\"", 0);
    for command in [&["validate"][..], &["run", "--once"][..]] {
        let mut args = vec!["--no-color", "--config", config.to_str().unwrap(), "--rules", rules.to_str().unwrap()];
        args.extend_from_slice(command);
        let out = esdetect(dir.path(), &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(stderr.contains(&format!("{}: {line}:{col}:", config.display())), "{command:?}: {stderr}");
        assert!(stderr.contains("maximum of 3650 days"), "{stderr}");
    }
}

#[test]
fn index_patterns_follow_elasticsearch_naming_rules_and_are_encoded_in_paths() {
    let dir = tempfile::tempdir().unwrap();
    let original = "index = [\"logs-system.security*\", \"logs-windows.forwarded*\", \"winlogbeat-*\"]";
    let evil = smb().replacen(original, "index = [\"logs-system.security*\", \"../_security/api_key?x=\"]", 1);
    let at = position(&evil, "\"../_security", 0);
    let rules = rules_folder(dir.path(), &[("evil.toml", &evil)]);
    let out = esdetect(dir.path(), &["--no-color", "--rules", rules.to_str().unwrap(), "validate"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(find_line(&stderr, &rules.join("evil.toml"), at).contains("invalid `index`"), "{stderr}");

    // A legal name with characters that mean something in a URL is sent percent-encoded.
    let odd = smb().replacen(original, "index = [\"logs-a&b=c*\", \"winlogbeat-*\"]", 1);
    let dir2 = tempfile::tempdir().unwrap();
    let rules2 = rules_folder(dir2.path(), &[("odd.toml", &odd)]);
    let out = esdetect(dir2.path(), &["--no-color", "--rules", rules2.to_str().unwrap(), "explain", SMB_RULE_ID]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("POST /logs-a%26b%3Dc*,winlogbeat-*/_pit?"), "{stdout}");
}

/// Like [`esdetect`], with extra environment variables.
fn esdetect_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esdetect"));
    cmd.current_dir(cwd).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("ESDETECT_") || name == "NO_COLOR" {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("running the esdetect binary")
}

#[test]
fn secrets_stay_out_of_errors_and_plain_http_credentials_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_folder(dir.path(), &[("smb.toml", &smb())]);
    let r = rules.to_str().unwrap();
    // A URL without a scheme, and one with a bad port, both carrying a password.
    for url in ["elastic:hunter2@es01:9200", "http://elastic:hunter2@127.0.0.1:99999"] {
        let out = esdetect_env(dir.path(), &["--no-color", "--rules", r, "run", "--once"], &[("ESDETECT_ES_URL", url)]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(!stderr.contains("hunter2"), "password printed: {stderr}");
        assert!(stderr.contains("elastic:***@"), "{stderr}");
    }
    // Credentials over http:// to a node that is not there: a warning, and still no password.
    let out = esdetect_env(
        dir.path(),
        &["--no-color", "--rules", r, "run", "--once"],
        &[("ESDETECT_ES_URL", "http://127.0.0.1:1"), ("ESDETECT_ES_USERNAME", "elastic"), ("ESDETECT_ES_PASSWORD", "hunter2")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("plain http://"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // A CA together with verification switched off is refused before anything is sent.
    let config = dir.path().join("tls.toml");
    std::fs::write(&config, "[elasticsearch]\nurls = [\"https://127.0.0.1:1\"]\nca_cert = \"/nonexistent/ca.pem\"\ninsecure_skip_verify = true\n").unwrap();
    let out = esdetect(dir.path(), &["--no-color", "--config", config.to_str().unwrap(), "--rules", r, "run", "--once"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("insecure_skip_verify"), "{stderr}");
}

#[test]
fn logs_to_a_pipe_are_plain_a_bad_log_filter_and_a_missing_rules_folder_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_folder(dir.path(), &[("smb.toml", &smb())]);
    let r = rules.to_str().unwrap();
    // Warnings are logged while the unreachable node is retried; stderr is a pipe here.
    let out = esdetect_env(
        dir.path(),
        &["--log", "warn", "--rules", r, "run", "--once"],
        &[("ESDETECT_ES_URL", "http://127.0.0.1:1"), ("ESDETECT_ES_USERNAME", "u"), ("ESDETECT_ES_PASSWORD", "p")],
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "ANSI codes in logs written to a pipe: {stderr:?}");

    let out = esdetect(dir.path(), &["--log", "esdetect=loud", "--rules", r, "validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--log \"esdetect=loud\" is not a log filter"), "{}", text(&out.stderr));

    let config = dir.path().join("c.toml");
    std::fs::write(&config, "rules_dir = \"missing\"\n").unwrap();
    let out = esdetect(dir.path(), &["--config", config.to_str().unwrap(), "validate"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "documented: a missing rules folder is a usage problem; {stderr}");
    assert_eq!(stderr.lines().count(), 1, "said once: {stderr}");
    assert!(stderr.contains(&dir.path().join("missing").display().to_string()), "{stderr}");
    assert!(stderr.contains("relative to the config file's folder") && !stderr.contains(":1:1"), "{stderr}");
}

#[test]
fn an_unreachable_cluster_is_one_error_line_with_its_cause_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_folder(dir.path(), &[("smb.toml", &smb())]);
    let r = rules.to_str().unwrap();
    let out = esdetect_env(dir.path(), &["--no-color", "--log", "off", "--rules", r, "run", "--once"], &[("ESDETECT_ES_URL", "http://127.0.0.1:1")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: cannot reach Elasticsearch at http://127.0.0.1:1"), "{stderr}");
    // The cause (the refused connection) is named, and only once although it is also the error's source.
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
    assert!(stderr.contains("Check that the URL"), "what to do: {stderr}");
}
