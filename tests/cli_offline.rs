//! The offline commands, tested through the real binary with no cluster: `esdetect test`, `validate`,
//! `explain`, `simulate --stdout`, and the help/exit-code contract.
//!
//! Expected alert ids are computed here from the formulas of spec alert-documents §9 with `sha2` (and, for
//! search hits, checked against the spec's worked example §9.5), never copied from the program's output.
//! Error positions are computed from the text of the broken file the test writes.

use crate::common;

use common::esdetect;
use common::ids::{event_alert_id, sequence_ids};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

const SMB_RULE_ID: &str = "d84a11c0-eb12-4e7d-8a0a-718e38351e29";
const KRB_RULE_ID: &str = "e4e31051-ee01-4307-a6ee-b21b186958f4";
/// Kibana rule saved-object ids of spec §9.5, set through the config so the ids are predictable.
const SMB_UUID: &str = "5d0c1e1a-2b7f-4a39-8c4e-6f1b9d2a7e10";
const KRB_UUID: &str = "7b1c2a9e-3f0d-4c55-9a11-0d6e2f4b8c01";
const DS_INDEX: &str = ".ds-logs-system.security-default-2026.05.20-000001";
const ALERTS_ALIAS: &str = "esdetect-alerts-default";




/// §"bare events" of `source::files`: `_id` = first 10 bytes of SHA-256 of the compact JSON, hex.
fn bare_id(line: &str) -> String {
    hex::encode(&Sha256::digest(line.as_bytes())[..10])
}

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config giving both seed rules the §9.5 rule uuids; returns its path.
fn config(dir: &Path, rules: &Path) -> PathBuf {
    let path = dir.join("esdetect.toml");
    let body = format!(
        "rules_dir = {rules:?}\n[rules.\"{SMB_RULE_ID}\"]\nuuid = \"{SMB_UUID}\"\n[rules.\"{KRB_RULE_ID}\"]\nuuid = \"{KRB_UUID}\"\n",
        rules = rules.display().to_string()
    );
    std::fs::write(&path, body).unwrap();
    path
}

/// `esdetect --config C test --events F [extra...]`.
fn run_test(dir: &Path, rules: &Path, events: &Path, extra: &[&str]) -> Output {
    let cfg = config(dir, rules);
    let mut args = vec!["--no-color", "--config", cfg.to_str().unwrap(), "test", "--events", events.to_str().unwrap()];
    args.extend_from_slice(extra);
    esdetect(dir, &args)
}

/// Parses `--format ndjson` output, checking every line's shape; returns the lines.
fn alert_lines(out: &Output) -> Vec<Value> {
    let stdout = text(&out.stdout);
    stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            let keys: BTreeSet<&str> = v.as_object().expect("object per line").keys().map(String::as_str).collect();
            assert_eq!(keys, BTreeSet::from(["_index", "_id", "_source"]), "{line}");
            assert_eq!(v["_index"], ALERTS_ALIAS);
            assert_eq!(v["_source"]["kibana.alert.uuid"], v["_id"], "kibana.alert.uuid must equal _id");
            v
        })
        .collect()
}

fn ids(lines: &[Value]) -> BTreeSet<String> {
    lines.iter().map(|l| l["_id"].as_str().unwrap().to_string()).collect()
}

// --- events (our own fixtures, shaped as in spec event-shapes) ------------------------------------------

fn smb_5145(ts: &str, ingested: Option<&str>, source_ip: &str) -> Value {
    let mut e = json!({
        "@timestamp": ts,
        "event": {"category": ["network", "file"], "code": "5145", "action": "network-share-object-access-checked", "kind": "event"},
        "host": {"name": "fs01.corp.local", "ip": ["10.0.1.12", "fe80::1"], "os": {"type": "windows"}},
        "winlog": {"computer_name": "fs01.corp.local", "event_data": {"ShareName": "\\\\*\\IPC$", "SubjectLogonId": "0x3e7"}},
        "user": {"name": "FS01$", "domain": "CORP"},
        "source": {"ip": source_ip, "port": 49832}
    });
    if let Some(ing) = ingested {
        e["event"]["ingested"] = json!(ing);
    }
    e
}

fn krb_4624(ts: &str, logon_id: &str) -> Value {
    json!({
        "@timestamp": ts,
        "event": {"category": ["authentication"], "code": "4624", "action": "logged-in", "outcome": "success", "ingested": ts},
        "host": {"name": "ws04.corp.local", "os": {"type": "windows"}},
        "process": {"pid": 0},
        "source": {"ip": "127.0.0.1"},
        "user": {"name": "frank"},
        "winlog": {
            "computer_name": "ws04.corp.local",
            "logon": {"type": "Network"},
            "event_data": {"AuthenticationPackageName": "Kerberos", "ElevatedToken": "%%1843", "TargetLogonId": logon_id}
        }
    })
}

fn krb_4697(ts: &str, logon_id: &str) -> Value {
    json!({
        "@timestamp": ts,
        "event": {"category": ["iam", "configuration"], "code": "4697", "action": "service-installed", "ingested": ts},
        "host": {"name": "ws04.corp.local", "os": {"type": "windows"}},
        "user": {"name": "frank"},
        "winlog": {"computer_name": "ws04.corp.local", "event_data": {"SubjectLogonId": logon_id, "ServiceName": "KrbSCM"}}
    })
}

fn hit(index: &str, id: &str, source: &Value) -> Value {
    json!({"_index": index, "_id": id, "_source": source})
}

// --- esdetect test --------------------------------------------------------------------------------------

#[test]
fn bare_ndjson_events_get_spec_ids_and_the_ndjson_shape() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = [
        smb_5145("2026-05-20T10:01:00.000Z", Some("2026-05-20T10:01:02.000Z"), "10.0.80.80"),
        // Look-alike: the server's own address (listed in host.ip) — local access, no alert.
        smb_5145("2026-05-20T10:01:30.000Z", Some("2026-05-20T10:01:31.000Z"), "10.0.1.12"),
        krb_4624("2026-05-20T10:02:00.000Z", "0x1a2b3"),
        krb_4697("2026-05-20T10:03:00.000Z", "0x1a2b3"),
        // A service installed by another session: not part of the sequence.
        krb_4697("2026-05-20T10:03:10.000Z", "0x999"),
    ]
    .iter()
    .map(|v| serde_json::to_string(v).unwrap())
    .collect();
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();

    let out = run_test(dir.path(), &rules_dir(), &events, &["--format", "ndjson"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let alerts = alert_lines(&out);

    let smb = event_alert_id("offline", &bare_id(&lines[0]), "default", SMB_UUID);
    let (shell, bbs) = sequence_ids(&[("offline", &bare_id(&lines[2])), ("offline", &bare_id(&lines[3]))], KRB_UUID);
    let expected: BTreeSet<String> = [smb.clone(), bbs[0].clone(), bbs[1].clone(), shell.clone()].into();
    assert_eq!(ids(&alerts), expected);
    assert_eq!(alerts.len(), 4, "each alert exactly once");
    // The event alert carries its event; building blocks point at the shell.
    let smb_doc = alerts.iter().find(|a| a["_id"] == smb.as_str()).unwrap();
    assert_eq!(smb_doc["_source"]["source"]["ip"], "10.0.80.80");
    for bb in &bbs {
        let doc = alerts.iter().find(|a| a["_id"] == bb.as_str()).unwrap();
        assert_eq!(doc["_source"]["kibana.alert.group.id"], alerts.iter().find(|a| a["_id"] == shell.as_str()).unwrap()["_source"]["kibana.alert.group.id"]);
    }

    // The table lists the same ids.
    let table = run_test(dir.path(), &rules_dir(), &events, &[]);
    assert_eq!(table.status.code(), Some(0));
    let stdout = text(&table.stdout);
    for id in &expected {
        assert!(stdout.contains(id.as_str()), "table lacks {id}:\n{stdout}");
    }
    assert!(!stdout.contains('\u{1b}'), "no colour codes when stdout is not a terminal");
}

/// Search hits keep their `_index`/`_id`, so the ids are the spec's worked example (§9.5) — whatever the
/// container: NDJSON, a JSON array, or gzip.
#[test]
fn search_hits_feed_the_ids_in_every_container_format() {
    let dir = tempfile::tempdir().unwrap();
    let hits = vec![
        hit(DS_INDEX, "Nq3kLZYBd1Xk0aQ7mX2A", &krb_4624("2026-05-20T10:02:00.000Z", "0x1a2b3")),
        hit(DS_INDEX, "Ob3kLZYBd1Xk0aQ7mX2B", &krb_4697("2026-05-20T10:03:00.000Z", "0x1a2b3")),
        hit(DS_INDEX, "Pc3kLZYBd1Xk0aQ7mX2C", &smb_5145("2026-05-20T10:04:00.000Z", Some("2026-05-20T10:04:01.000Z"), "10.0.80.80")),
    ];
    // Spec §9.5 vectors, and the same from the formulas.
    let smb = "6d15af6dd1d859e30d5c6ea8a354ab7e6b57eb67dca50e5d90e8896ce41f80bf";
    let bb0 = "c2cd89d997be182db1bbeb67089c750a9911c619225247d181c6db45061efd8d";
    let bb1 = "8d1d8af1c392637281cc8483be9fd005f6cd6fdfbd117a3771102755f4682794";
    let shell = "3a760c8c835d6516cf4fcc4882d3420b34e710e7c0dc2529164e97474884d780";
    assert_eq!(event_alert_id(DS_INDEX, "Pc3kLZYBd1Xk0aQ7mX2C", "default", SMB_UUID), smb);
    let (sh, bbs) = sequence_ids(&[(DS_INDEX, "Nq3kLZYBd1Xk0aQ7mX2A"), (DS_INDEX, "Ob3kLZYBd1Xk0aQ7mX2B")], KRB_UUID);
    assert_eq!((bbs[0].as_str(), bbs[1].as_str(), sh.as_str()), (bb0, bb1, shell));
    let expected: BTreeSet<String> = [smb, bb0, bb1, shell].iter().map(|s| s.to_string()).collect();

    let ndjson: String = hits.iter().map(|h| serde_json::to_string(h).unwrap() + "\n").collect();
    let plain = dir.path().join("hits.ndjson");
    std::fs::write(&plain, &ndjson).unwrap();
    let array = dir.path().join("hits.json");
    std::fs::write(&array, serde_json::to_string_pretty(&hits).unwrap()).unwrap();
    let gz = dir.path().join("hits.ndjson.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    enc.write_all(ndjson.as_bytes()).unwrap();
    enc.finish().unwrap();

    for file in [&plain, &array, &gz] {
        let out = run_test(dir.path(), &rules_dir(), file, &["--format", "ndjson"]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", file.display(), text(&out.stderr));
        assert_eq!(ids(&alert_lines(&out)), expected, "{}", file.display());
    }
}

/// `--now T`: each rule sees `[T - 9m, T]`; the SMB rule on `event.ingested` (falling back to `@timestamp`
/// only when `event.ingested` is missing), the sequence rule on `@timestamp`.
#[test]
fn now_windows_each_rule_on_its_own_field() {
    let dir = tempfile::tempdir().unwrap();
    let now = "2026-05-20T10:05:00Z"; // window [09:56:00, 10:05:00]
    let hits = vec![
        // @timestamp before the window, ingested inside: in (the window is on event.ingested).
        hit(DS_INDEX, "smb-late-ingest", &smb_5145("2026-05-20T09:50:00.000Z", Some("2026-05-20T09:57:00.000Z"), "10.0.80.1")),
        // @timestamp inside, ingested after T: out.
        hit(DS_INDEX, "smb-future-ingest", &smb_5145("2026-05-20T10:04:59.000Z", Some("2026-05-20T10:05:00.001Z"), "10.0.80.2")),
        // No event.ingested: @timestamp decides, inside.
        hit(DS_INDEX, "smb-no-ingest-in", &smb_5145("2026-05-20T10:00:00.000Z", None, "10.0.80.3")),
        // No event.ingested, @timestamp before the window: out.
        hit(DS_INDEX, "smb-no-ingest-out", &smb_5145("2026-05-20T09:55:59.999Z", None, "10.0.80.4")),
        // Ingested exactly at the window start: in (both ends inclusive).
        hit(DS_INDEX, "smb-at-from", &smb_5145("2026-05-20T09:55:00.000Z", Some("2026-05-20T09:56:00.000Z"), "10.0.80.5")),
        // Sequence with its first event before the window: the window cannot see it.
        hit(DS_INDEX, "krb-a-4624", &krb_4624("2026-05-20T09:55:30.000Z", "0xa")),
        hit(DS_INDEX, "krb-a-4697", &krb_4697("2026-05-20T09:57:00.000Z", "0xa")),
        // Sequence fully inside.
        hit(DS_INDEX, "krb-b-4624", &krb_4624("2026-05-20T10:00:00.000Z", "0xb")),
        hit(DS_INDEX, "krb-b-4697", &krb_4697("2026-05-20T10:01:00.000Z", "0xb")),
    ];
    let file = dir.path().join("w.ndjson");
    std::fs::write(&file, hits.iter().map(|h| serde_json::to_string(h).unwrap() + "\n").collect::<String>()).unwrap();
    let smb = |id: &str| event_alert_id(DS_INDEX, id, "default", SMB_UUID);
    let seq = |a: &str, b: &str| {
        let (shell, bbs) = sequence_ids(&[(DS_INDEX, a), (DS_INDEX, b)], KRB_UUID);
        vec![bbs[0].clone(), bbs[1].clone(), shell]
    };

    let out = run_test(dir.path(), &rules_dir(), &file, &["--now", now, "--format", "ndjson"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut expected: BTreeSet<String> = ["smb-late-ingest", "smb-no-ingest-in", "smb-at-from"].iter().map(|i| smb(i)).collect();
    expected.extend(seq("krb-b-4624", "krb-b-4697"));
    assert_eq!(ids(&alert_lines(&out)), expected);

    // Without --now the whole file is one window: every attack is found.
    let out = run_test(dir.path(), &rules_dir(), &file, &["--format", "ndjson"]);
    let mut all: BTreeSet<String> =
        ["smb-late-ingest", "smb-future-ingest", "smb-no-ingest-in", "smb-no-ingest-out", "smb-at-from"].iter().map(|i| smb(i)).collect();
    all.extend(seq("krb-a-4624", "krb-a-4697"));
    all.extend(seq("krb-b-4624", "krb-b-4697"));
    assert_eq!(ids(&alert_lines(&out)), all);
}

#[test]
fn max_signals_keeps_the_most_recent_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let original = std::fs::read_to_string(rules_dir().join("credential_access_machine_account_smb_relay.toml")).unwrap();
    assert!(original.contains("\nfrom = \"now-9m\"\n"));
    let capped = original.replacen("\nfrom = \"now-9m\"\n", "\nfrom = \"now-9m\"\nmax_signals = 3\n", 1);
    std::fs::write(rules.join("smb.toml"), capped).unwrap();
    // Five attacks, written out of time order: the cap keeps the three most recent by @timestamp.
    let minutes = [3, 0, 4, 1, 2];
    let hits: Vec<Value> = minutes
        .iter()
        .map(|m| {
            let ts = format!("2026-05-20T10:0{m}:00.000Z");
            hit(DS_INDEX, &format!("smb-{m}"), &smb_5145(&ts, Some(&ts), &format!("10.0.80.{}", 10 + m)))
        })
        .collect();
    let file = dir.path().join("flood.ndjson");
    std::fs::write(&file, hits.iter().map(|h| serde_json::to_string(h).unwrap() + "\n").collect::<String>()).unwrap();

    let out = run_test(dir.path(), &rules, &file, &["--format", "ndjson"]);
    assert_eq!(out.status.code(), Some(3), "partial failure exit code; stderr: {}", text(&out.stderr));
    let expected: BTreeSet<String> = [2, 3, 4].iter().map(|m| event_alert_id(DS_INDEX, &format!("smb-{m}"), "default", SMB_UUID)).collect();
    assert_eq!(ids(&alert_lines(&out)), expected);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("reached the maximum alert limit"), "{stderr}");
    assert!(stderr.contains(SMB_RULE_ID), "the warning names the rule: {stderr}");
}

#[test]
fn malformed_lines_are_reported_with_line_numbers_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let good = serde_json::to_string(&hit(DS_INDEX, "Pc3kLZYBd1Xk0aQ7mX2C", &smb_5145("2026-05-20T10:04:00.000Z", Some("2026-05-20T10:04:01.000Z"), "10.0.80.80"))).unwrap();
    let body = format!("{{\"broken\": \n[1,2]\n\n{good}\n{{\"_index\":\"x\",\"_id\":5,\"_source\":{{}}}}\n");
    let file = dir.path().join("mixed.ndjson");
    std::fs::write(&file, body).unwrap();
    let out = run_test(dir.path(), &rules_dir(), &file, &["--format", "ndjson"]);
    assert_eq!(out.status.code(), Some(0), "skipped lines are not a failure: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let name = file.display().to_string();
    for line in [1, 2, 5] {
        assert!(stderr.contains(&format!("{name}:{line}: skipped")), "line {line} not reported:\n{stderr}");
    }
    assert!(!stderr.contains(&format!("{name}:4: skipped")), "{stderr}");
    assert!(stderr.contains("3 line(s) skipped"), "{stderr}");
    let expected: BTreeSet<String> = [event_alert_id(DS_INDEX, "Pc3kLZYBd1Xk0aQ7mX2C", "default", SMB_UUID)].into();
    assert_eq!(ids(&alert_lines(&out)), expected, "the run continues past bad lines");
}

#[test]
fn unreadable_events_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_test(dir.path(), &rules_dir(), &dir.path().join("missing.ndjson"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing.ndjson"), "{}", text(&out.stderr));
}

// --- validate -------------------------------------------------------------------------------------------

#[test]
fn validate_accepts_the_seed_rules() {
    let dir = tempfile::tempdir().unwrap();
    let out = esdetect(dir.path(), &["--rules", rules_dir().to_str().unwrap(), "validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("2 rule(s) valid, 0 error(s)"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
}

/// 1-based (line, column in characters) of the first occurrence of `needle` in `text`, plus `offset` chars.
fn position(text: &str, needle: &str, offset: usize) -> (usize, usize) {
    let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in the file"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap().chars().count() + 1 + offset;
    (line, col)
}

#[test]
fn validate_reports_file_line_col_for_each_broken_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let smb = std::fs::read_to_string(rules_dir().join("credential_access_machine_account_smb_relay.toml")).unwrap();
    let krb = std::fs::read_to_string(rules_dir().join("privilege_escalation_krbrelayup_service_creation.toml")).unwrap();

    // 1. A typo `=` for `==` in the query.
    let typo = smb.replacen("event.code == \"5145\"", "event.code = \"5145\"", 1);
    let typo_at = position(&typo, "event.code = \"5145\"", "event.code ".len());
    std::fs::write(rules.join("typo.toml"), &typo).unwrap();
    // 2. An unknown function (and a distinct rule_id, so only that problem is reported).
    let unknown = krb.replacen("cidrmatch(", "cidrmatchx(", 1).replacen(KRB_RULE_ID, "00000000-0000-4000-8000-000000000001", 1);
    let unknown_at = position(&unknown, "cidrmatchx(", 0);
    std::fs::write(rules.join("unknown.toml"), &unknown).unwrap();
    // 3. Bad TOML: a duplicate key.
    let dup = smb.replacen("\nrisk_score = 73\n", "\nrisk_score = 73\nrisk_score = 21\n", 1).replacen(SMB_RULE_ID, "00000000-0000-4000-8000-000000000002", 1);
    let dup_at = position(&dup, "risk_score = 21", 0);
    std::fs::write(rules.join("dup.toml"), &dup).unwrap();
    // 4. One good rule, which must not be reported.
    std::fs::write(rules.join("good.toml"), &smb).unwrap();

    let out = esdetect(dir.path(), &["--no-color", "--rules", rules.to_str().unwrap(), "validate"]);
    assert_eq!(out.status.code(), Some(1), "any error → exit 1; stdout: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    let find = |file: &str, (line, col): (usize, usize)| -> String {
        let prefix = format!("{}:{line}:{col}: ", rules.join(file).display());
        stderr.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no `{prefix}` line in:\n{stderr}")).to_string()
    };
    assert!(find("typo.toml", typo_at).contains("=="), "the typo message suggests `==`");
    assert!(find("unknown.toml", unknown_at).contains("cidrmatchx"));
    assert!(find("dup.toml", dup_at).contains("risk_score"));
    assert!(!stderr.contains("good.toml"), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| !l.trim().is_empty()).count(), 3, "{stderr}");
    assert!(text(&out.stdout).contains("1 rule(s) valid, 3 error(s)"), "{}", text(&out.stdout));
}

#[test]
fn validate_reports_every_problem_of_one_query_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let smb = std::fs::read_to_string(rules_dir().join("credential_access_machine_account_smb_relay.toml")).unwrap();
    // Two mistakes in one query that the verifier refuses even without a cluster mapping: a field compared
    // with a field, and a string function on a `long` field.
    let two = smb
        .replacen("event.code == \"5145\"", "event.code == host.os.family", 1)
        .replacen("endswith(user.name, \"$\")", "endswith(process.pid, \"$\")", 1);
    let compare_at = position(&two, "event.code == host.os.family", 0);
    let pid_at = position(&two, "process.pid, \"$\")", 0);
    std::fs::write(rules.join("two.toml"), &two).unwrap();

    let out = esdetect(dir.path(), &["--no-color", "--rules", rules.to_str().unwrap(), "validate"]);
    assert_eq!(out.status.code(), Some(1), "any error → exit 1; stdout: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let file = rules.join("two.toml").display().to_string();
    assert_eq!(lines.len(), 2, "{stderr}");
    let (line, col) = compare_at;
    assert!(lines[0].starts_with(&format!("{file}:{line}:{col}: ")), "{stderr}");
    assert!(lines[0].contains("Comparisons against fields"), "{stderr}");
    let (line, col) = pid_at;
    assert!(lines[1].starts_with(&format!("{file}:{line}:{col}: ")), "{stderr}");
    assert!(lines[1].contains("process.pid"), "{stderr}");
    assert!(text(&out.stdout).contains("0 rule(s) valid, 2 error(s)"), "{}", text(&out.stdout));
}

// --- explain --------------------------------------------------------------------------------------------

/// The JSON request body printed between the `_search` step and the `DELETE /_pit` step.
fn explain_body(stdout: &str) -> Value {
    let start = stdout.find("\n{").expect("a JSON body") + 1;
    let end = stdout.find("\n3. DELETE /_pit").expect("the PIT close step");
    serde_json::from_str(&stdout[start..end]).expect("the request body is JSON")
}

#[test]
fn explain_shows_query_indices_window_pushdown_and_sort() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_dir();
    let out = esdetect(dir.path(), &["--rules", rules.to_str().unwrap(), "explain", SMB_RULE_ID, "--now", "2026-05-20T10:05:00Z"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // Normalised query: `endswith` printed with ES's canonical casing, comments and line breaks gone.
    assert!(stdout.contains("file where host.os.type == \"windows\" and event.code == \"5145\" and endsWith(user.name, \"$\")"), "{stdout}");
    assert!(!stdout.contains("/* exclude local access */"));
    assert!(stdout.contains("logs-system.security* logs-windows.forwarded* winlogbeat-*"), "{stdout}");
    assert!(stdout.contains("POST /logs-system.security*,logs-windows.forwarded*,winlogbeat-*/_pit"), "{stdout}");
    assert!(stdout.contains("[2026-05-20T09:56:00+00:00, 2026-05-20T10:05:00+00:00] on event.ingested"), "{stdout}");
    assert!(stdout.contains("max_signals 100"), "{stdout}");

    let body = explain_body(&stdout);
    let filters = body["query"]["bool"]["filter"].as_array().expect("bool.filter");
    let text = serde_json::to_string(&body).unwrap();
    // Window: event.ingested, falling back to @timestamp where event.ingested is missing.
    assert!(text.contains(r#""event.ingested":{"lte":"2026-05-20T10:05:00.000Z","gte":"2026-05-20T09:56:00.000Z""#), "{text}");
    assert!(text.contains(r#""must_not":{"exists":{"field":"event.ingested"}}"#), "{text}");
    // Pushdown: the exact conditions of the query, no more.
    let pushdown = filters.iter().find(|f| f.to_string().contains("5145")).expect("a pushdown filter");
    let p = pushdown.to_string();
    for part in [r#"{"term":{"event.code":{"value":"5145"}}}"#, r#"{"term":{"host.os.type":{"value":"windows"}}}"#, r#"{"term":{"event.category":{"value":"file"}}}"#, r#"{"wildcard":{"user.name":{"value":"*$"}}}"#, r#"{"exists":{"field":"source.ip"}}"#] {
        assert!(p.contains(part), "pushdown lacks {part}: {p}");
    }
    // Sort: EQL timestamp, then the PIT tiebreaker.
    assert_eq!(body["sort"][0]["@timestamp"]["order"], "asc");
    assert_eq!(body["sort"][1]["_shard_doc"], "asc");

    // The sequence rule windows on @timestamp and pushes down both stages as alternatives.
    let out = esdetect(dir.path(), &["--rules", rules.to_str().unwrap(), "explain", KRB_RULE_ID, "--now", "2026-05-20T10:05:00Z"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("sequence by winlog.computer_name with maxspan=5m"), "{stdout}");
    assert!(stdout.contains("on @timestamp"), "{stdout}");
    let p = explain_body(&stdout).to_string();
    assert!(p.contains("service-installed") && p.contains("Kerberos"), "{p}");

    let out = esdetect(dir.path(), &["--rules", rules.to_str().unwrap(), "explain", "no-such-rule"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-rule"));
}

// --- simulate --stdout, help ----------------------------------------------------------------------------

#[test]
fn simulate_stdout_emits_hits_that_test_turns_into_the_planted_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let planted_path = dir.path().join("planted.json");
    let out = esdetect(
        dir.path(),
        &["simulate", "--stdout", "--scenario", "all", "--count", "300", "--seed", "5", "--start", "2026-05-20T10:00:00Z", "--namespace", "ci", "--planted-out", planted_path.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let hits: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(hits.len() >= 300, "{} hits", hits.len());
    let mut seen_ids = BTreeSet::new();
    for h in &hits {
        let index = h["_index"].as_str().unwrap();
        assert!(
            ["logs-system.security-ci", "logs-windows.forwarded-ci", "winlogbeat-8.19.0-ci"].contains(&index),
            "unexpected index {index}"
        );
        assert!(seen_ids.insert(h["_id"].as_str().unwrap().to_string()), "duplicate _id");
        assert!(h["_source"]["@timestamp"].is_string());
        if let Some(ns) = h["_source"].pointer("/data_stream/namespace") {
            assert_eq!(ns, "ci");
        }
    }
    let planted: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&planted_path).unwrap()).unwrap();
    let attacks = |scenario: &str| -> BTreeSet<String> {
        planted
            .iter()
            .filter(|p| p["attack"] == true && p["scenario"] == scenario)
            .flat_map(|p| p["record_ids"].as_array().unwrap().iter().map(|r| r.as_str().map(String::from).unwrap_or_else(|| r.to_string())))
            .collect()
    };
    assert_eq!(attacks("SmbRelay").len(), 3, "300 noise slots plant 3 SMB relays");
    assert!(planted.iter().any(|p| p["attack"] == false), "look-alikes are planted too");

    // The hits through `esdetect test`: exactly the planted attacks raise alerts.
    let file = dir.path().join("sim.ndjson");
    std::fs::write(&file, &stdout).unwrap();
    let out = run_test(dir.path(), &rules_dir(), &file, &["--format", "ndjson"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let alerts = alert_lines(&out);
    let record_ids = |rule_uuid: &str| -> BTreeSet<String> {
        alerts
            .iter()
            .filter(|a| a["_source"]["kibana.alert.rule.uuid"] == rule_uuid)
            .filter_map(|a| a["_source"].pointer("/winlog/record_id"))
            .map(|r| r.as_str().map(String::from).unwrap_or_else(|| r.to_string()))
            .collect()
    };
    assert_eq!(record_ids(SMB_UUID), attacks("SmbRelay"));
    assert_eq!(record_ids(KRB_UUID), attacks("KrbRelayUp"));
    let shells = alerts.iter().filter(|a| a["_source"]["kibana.alert.rule.uuid"] == KRB_UUID && a["_source"].get("kibana.alert.building_block_type").is_none()).count();
    assert_eq!(shells, 3, "one sequence per planted KrbRelayUp");

    // A namespace that could not be a data stream namespace is refused up front.
    let out = esdetect(dir.path(), &["simulate", "--stdout", "--namespace", "Bad-NS"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_documents_exit_codes_and_colour() {
    let dir = tempfile::tempdir().unwrap();
    let out = esdetect(dir.path(), &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("Exit codes:"), "{help}");
    for code in ["0  success", "1  at least one rule failed", "2  usage", "3  no failure, but"] {
        assert!(help.contains(code), "help lacks `{code}`:\n{help}");
    }
    assert!(help.contains("--no-color") && help.contains("NO_COLOR"), "{help}");
}

/// A hit is offered only to the rules whose index patterns match its `_index` (data stream backing indices
/// resolve to their stream); what a rule did not read is reported in its summary.
#[test]
fn hits_outside_a_rules_indices_are_not_offered_and_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ts = "2026-05-20T10:00:00.000Z";
    let hits = vec![
        hit(DS_INDEX, "in-stream", &smb_5145(ts, Some(ts), "10.0.80.1")),
        hit("winlogbeat-8.19.0-2026.05.20", "in-pattern", &smb_5145(ts, Some(ts), "10.0.80.2")),
        hit("logs-endpoint.events.network-default", "other-index", &smb_5145(ts, Some(ts), "10.0.80.3")),
    ];
    let file = dir.path().join("indices.ndjson");
    std::fs::write(&file, hits.iter().map(|h| serde_json::to_string(h).unwrap() + "\n").collect::<String>()).unwrap();
    let out = run_test(dir.path(), &rules_dir(), &file, &["--format", "ndjson"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let expected: BTreeSet<String> = [(DS_INDEX, "in-stream"), ("winlogbeat-8.19.0-2026.05.20", "in-pattern")]
        .iter()
        .map(|(index, id)| event_alert_id(index, id, "default", SMB_UUID))
        .collect();
    assert_eq!(ids(&alert_lines(&out)), expected);
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("note [{SMB_RULE_ID}]: 1 skipped: `_index` matches none")), "{stderr}");
}

/// `alert_suppression` offline: the in-run part (one alert per `source.ip`, the earliest event's, counting
/// the others) and a note saying that merging with earlier alerts needs a cluster run. The instance id
/// was computed with the `object-hash` npm package:
/// `objectHash([[{field: "source.ip", value: ["10.0.80.80"]}], SMB_UUID, "default"])`.
#[test]
fn alert_suppression_is_applied_within_the_run_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let smb = std::fs::read_to_string(rules_dir().join("credential_access_machine_account_smb_relay.toml")).unwrap();
    std::fs::write(
        rules.join("smb.toml"),
        format!("{smb}\n[rule.alert_suppression]\ngroup_by = [\"source.ip\"]\nmissing_fields_strategy = \"suppress\"\n"),
    )
    .unwrap();
    let hits = vec![
        hit(DS_INDEX, "a3", &smb_5145("2026-05-20T10:04:00.000Z", Some("2026-05-20T10:04:01.000Z"), "10.0.80.80")),
        hit(DS_INDEX, "a1", &smb_5145("2026-05-20T10:02:00.000Z", Some("2026-05-20T10:02:01.000Z"), "10.0.80.80")),
        hit(DS_INDEX, "a2", &smb_5145("2026-05-20T10:03:00.000Z", Some("2026-05-20T10:03:01.000Z"), "10.0.80.80")),
        hit(DS_INDEX, "b1", &smb_5145("2026-05-20T10:03:30.000Z", Some("2026-05-20T10:03:31.000Z"), "10.0.80.81")),
    ];
    let events = dir.path().join("hits.ndjson");
    std::fs::write(&events, hits.iter().map(|h| serde_json::to_string(h).unwrap() + "\n").collect::<String>()).unwrap();
    let out = run_test(dir.path(), &rules, &events, &["--format", "ndjson"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines = alert_lines(&out);
    let expected: BTreeSet<String> =
        ["a1", "b1"].iter().map(|id| event_alert_id(DS_INDEX, id, "default", SMB_UUID)).collect();
    assert_eq!(ids(&lines), expected);
    let first = lines.iter().find(|l| l["_id"] == event_alert_id(DS_INDEX, "a1", "default", SMB_UUID)).unwrap();
    let s = &first["_source"];
    assert_eq!(s["kibana.alert.instance.id"], "0f465a98628af739ab63a75d8f815bf57ddc78b0");
    assert_eq!(s["kibana.alert.suppression.docs_count"], 2);
    assert_eq!(s["kibana.alert.suppression.start"], "2026-05-20T10:02:01.000Z");
    assert_eq!(s["kibana.alert.suppression.end"], "2026-05-20T10:04:01.000Z");
    assert_eq!(s["kibana.alert.suppression.terms"], json!([{"field": "source.ip", "value": ["10.0.80.80"]}]));
    assert!(
        stderr.contains(&format!("note [{SMB_RULE_ID}]: alert_suppression applied within this run only (2 alert(s) suppressed)")),
        "{stderr}"
    );
}

/// `esdetect test --events -` with the events piped to standard input.
fn run_test_stdin(dir: &Path, rules: &Path, input: &[u8]) -> Output {
    let cfg = config(dir, rules);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_esdetect"));
    cmd.current_dir(dir).args(["--no-color", "--config", cfg.to_str().unwrap(), "test", "--events", "-", "--format", "ndjson"]);
    for (name, _) in std::env::vars() {
        if name.starts_with("ESDETECT_") || name == "NO_COLOR" {
            cmd.env_remove(name);
        }
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running the esdetect binary");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    // esdetect may stop reading early (input out of time order): a broken pipe is fine then.
    if let Err(e) = writer.join().unwrap() {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    out
}

#[test]
fn events_on_standard_input_give_the_alerts_of_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = esdetect(dir.path(), &["simulate", "--stdout", "--count", "400", "--seed", "7", "--start", "2026-05-20T10:00:00Z"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let file = dir.path().join("sim.ndjson");
    std::fs::write(&file, &out.stdout).unwrap();

    let from_file = run_test(dir.path(), &rules_dir(), &file, &["--format", "ndjson"]);
    assert_eq!(from_file.status.code(), Some(0), "{}", text(&from_file.stderr));
    let from_stdin = run_test_stdin(dir.path(), &rules_dir(), &out.stdout);
    assert_eq!(from_stdin.status.code(), Some(0), "{}", text(&from_stdin.stderr));
    let (file_alerts, stdin_alerts) = (alert_lines(&from_file), alert_lines(&from_stdin));
    assert!(file_alerts.len() >= 4, "the planted attacks raise alerts: {}", file_alerts.len());
    assert_eq!(ids(&stdin_alerts), ids(&file_alerts));
    // The alerts carry the whole event (its text is kept in memory, not read back from a file): fields no
    // rule reads, like `winlog.record_id`, are there.
    for (a, b) in file_alerts.iter().zip(&stdin_alerts) {
        assert_eq!(a["_source"]["winlog"], b["_source"]["winlog"]);
    }
    assert!(stdin_alerts.iter().any(|b| b["_source"].pointer("/winlog/record_id").is_some()));

    // Out of time order: standard input cannot be re-read and sorted, so the run stops and says why.
    let mut lines: Vec<&[u8]> = out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    lines.reverse();
    let reversed = lines.join(&b'\n');
    let out = run_test_stdin(dir.path(), &rules_dir(), &reversed);
    assert_ne!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not in time order") && stderr.contains("save the events to a file"), "{stderr}");
}
