//! Rules whose query is a `sample` or a sequence with missing-event stages, through the real binary and no
//! cluster (`validate`, `explain`, `test`).
//!
//! Elasticsearch returns samples in `hits.sequences`, so Kibana's EQL executor turns each sample into
//! building blocks plus a shell alert exactly like a sequence; for missing-event stages Kibana (PR #235133)
//! leaves the `missing` placeholder out of the building blocks and the shell. Expected ids are computed
//! here from the formulas of spec alert-documents §9, never copied from the program's output.

use crate::common;

use common::esdetect;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

const SAMPLE_ID: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const MISSING_ID: &str = "aaaaaaaa-0000-4000-8000-000000000002";
const SAMPLE_UUID: &str = "11111111-2222-4333-8444-555555555555";
const MISSING_UUID: &str = "66666666-7777-4888-8999-000000000000";

/// §9.2 and §9.3: building-block ids then the shell id of a group of `(index, id)` events.
fn group_ids(events: &[(&str, &str)], rule_uuid: &str) -> Vec<String> {
    let (shell, mut ids) = common::ids::sequence_ids(events, rule_uuid);
    ids.push(shell);
    ids
}

fn rule(rule_id: &str, name: &str, query: &str) -> String {
    format!(
        "[metadata]\ncreation_date = \"2026/01/01\"\nmaturity = \"production\"\nupdated_date = \"2026/01/01\"\n\n\
         [rule]\nauthor = [\"test\"]\ndescription = \"{name}\"\nfrom = \"now-9m\"\nindex = [\"logs-*\"]\n\
         language = \"eql\"\nlicense = \"Elastic License v2\"\nname = \"{name}\"\nrisk_score = 47\n\
         rule_id = \"{rule_id}\"\nseverity = \"medium\"\ntype = \"eql\"\nquery = '''\n{query}\n'''\n"
    )
}

/// A rules folder with the two rules and a config giving them known uuids; returns the config path.
fn setup(dir: &Path) -> std::path::PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let sample = "sample by host.name\n  [authentication where event.action == \"logged-in\"]\n  [any where event.action == \"service-installed\"]";
    let missing = "sequence by host.name with maxspan=1m\n  [authentication where event.action == \"logged-in\"]\n ![any where event.action == \"logged-out\"]";
    std::fs::write(rules.join("sample.toml"), rule(SAMPLE_ID, "Logon and service install on one host", sample)).unwrap();
    std::fs::write(rules.join("missing.toml"), rule(MISSING_ID, "Logon without logoff within a minute", missing)).unwrap();
    let cfg = dir.join("esdetect.toml");
    std::fs::write(
        &cfg,
        format!(
            "rules_dir = {:?}\n[rules.\"{SAMPLE_ID}\"]\nuuid = \"{SAMPLE_UUID}\"\n[rules.\"{MISSING_ID}\"]\nuuid = \"{MISSING_UUID}\"\n",
            rules.display().to_string()
        ),
    )
    .unwrap();
    cfg
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn hit(id: &str, ts: &str, category: &str, action: &str, host: &str) -> Value {
    json!({"_index": "logs-test", "_id": id, "_source": {
        "@timestamp": ts, "event": {"category": [category], "action": action}, "host": {"name": host}
    }})
}

#[test]
fn validate_accepts_sample_and_missing_event_rules() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let out = esdetect(dir.path(), &["--config", cfg.to_str().unwrap(), "validate"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("2 rule(s) valid, 0 error(s)"), "{}", text(&out.stdout));
}

#[test]
fn explain_describes_how_samples_are_selected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let out = esdetect(dir.path(), &["--config", cfg.to_str().unwrap(), "explain", SAMPLE_ID, "--now", "2026-05-20T10:10:00Z"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("sample by host.name"), "{stdout}");
    assert!(stdout.contains("ascending join-key order"), "{stdout}");
    assert!(!stdout.contains("tail: the most recent"), "{stdout}");
    // The pushdown fetches the events of every filter.
    assert!(stdout.contains("\"logged-in\"") && stdout.contains("\"service-installed\""), "{stdout}");
}

#[test]
fn explain_fetches_the_events_of_missing_stages_too() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let out = esdetect(dir.path(), &["--config", cfg.to_str().unwrap(), "explain", MISSING_ID, "--now", "2026-05-20T10:10:00Z"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("![any where event.action == \"logged-out\"]"), "{stdout}");
    // A logoff vetoes a sequence, so the search must return logoffs as well as logons.
    assert!(stdout.contains("\"logged-in\"") && stdout.contains("\"logged-out\""), "{stdout}");
}

#[test]
fn sample_and_missing_event_rules_raise_kibana_shaped_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let events = [
        // Sample, host a: the service install comes first — a sample ignores time order.
        hit("s1", "2026-05-20T10:01:00.000Z", "configuration", "service-installed", "a"),
        hit("l1", "2026-05-20T10:02:00.000Z", "authentication", "logged-in", "a"),
        // Host b: a logon but no service install → no sample; and no logoff → a missing-event match.
        hit("l2", "2026-05-20T10:03:00.000Z", "authentication", "logged-in", "b"),
        // Host c: logon then logoff 30 s later → no missing-event match; logon only → no sample.
        hit("l3", "2026-05-20T10:04:00.000Z", "authentication", "logged-in", "c"),
        hit("o3", "2026-05-20T10:04:30.000Z", "authentication", "logged-out", "c"),
    ];
    let file = dir.path().join("events.ndjson");
    let body: String = events.iter().map(|e| serde_json::to_string(e).unwrap() + "\n").collect();
    std::fs::write(&file, body).unwrap();
    let out = esdetect(
        dir.path(),
        &["--no-color", "--config", cfg.to_str().unwrap(), "test", "--events", file.to_str().unwrap(), "--format", "ndjson"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let alerts: Vec<Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: BTreeSet<String> = alerts.iter().map(|a| a["_id"].as_str().unwrap().to_string()).collect();

    // Sample: events in filter order (logon, then service install), whatever their timestamps.
    let sample = group_ids(&[("logs-test", "l1"), ("logs-test", "s1")], SAMPLE_UUID);
    // Missing events: host a's logon (no logoff) and host b's; the placeholder has no alert of its own.
    let missing_a = group_ids(&[("logs-test", "l1")], MISSING_UUID);
    let missing_b = group_ids(&[("logs-test", "l2")], MISSING_UUID);
    let expected: BTreeSet<String> = sample.iter().chain(&missing_a).chain(&missing_b).cloned().collect();
    assert_eq!(got, expected);
    assert_eq!(alerts.len(), expected.len(), "each alert exactly once");

    // The sample's shell carries what its events share (host a), its building blocks point at it.
    let shell = alerts.iter().find(|a| a["_id"] == sample[2].as_str()).unwrap();
    assert_eq!(shell["_source"]["host"]["name"], "a");
    for bb in &sample[..2] {
        let doc = alerts.iter().find(|a| a["_id"] == bb.as_str()).unwrap();
        assert_eq!(doc["_source"]["kibana.alert.group.id"], shell["_source"]["kibana.alert.group.id"]);
    }
    // A missing-event shell is built from the events that exist, so it is not empty.
    let shell_b = alerts.iter().find(|a| a["_id"] == missing_b[1].as_str()).unwrap();
    assert_eq!(shell_b["_source"]["host"]["name"], "b");
}

/// Queries shaped like the production detection rules that use these features (five-filter and two-filter
/// samples keyed by several fields; a trailing missing event with a 12 h span; a per-stage-keyed one) load.
#[test]
fn production_shaped_rules_validate() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let open = |path: &str| {
        format!("[file where host.os.type == \"linux\" and auditd.data.syscall == \"open\" and auditd.data.a2 == \"1b6\" and file.path == \"{path}\"]")
    };
    let queries = [
        format!(
            "sample by host.id, process.pid, user.id\n  {}\n  {}\n  {}\n  {}\n  {}",
            open("/etc/machine-id"),
            open("/etc/passwd"),
            open("/proc/net/route"),
            open("/proc/net/ipv6_route"),
            open("/proc/net/if_inet6")
        ),
        "sample by host.id, process.pid, process.parent.pid\n  [process where host.os.type == \"linux\" and event.type == \"start\" and process.name : (\"bash\", \"sh\")]\n  [network where host.os.type == \"linux\" and event.action == \"connected-to\" and network.transport == \"udp\"]".to_string(),
        "sequence by okta.target.id with maxspan=12h\n  [any where event.dataset == \"okta.system\" and okta.event_type in (\"user.mfa.factor.deactivate\", \"user.mfa.factor.reset_all\")]\n ![any where event.dataset == \"okta.system\" and okta.event_type == \"user.mfa.factor.activate\"]".to_string(),
        "sequence with maxspan=10m\n  [any where event.dataset == \"endpoint.alerts\"] by host.id\n ![any where event.dataset != \"endpoint.alerts\"] by host.id".to_string(),
    ];
    for (i, q) in queries.iter().enumerate() {
        let id = format!("cccccccc-0000-4000-8000-00000000000{i}");
        std::fs::write(rules.join(format!("r{i}.toml")), rule(&id, &format!("rule {i}"), q)).unwrap();
    }
    let out = esdetect(dir.path(), &["--rules", rules.to_str().unwrap(), "validate"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("4 rule(s) valid, 0 error(s)"), "{}", text(&out.stdout));

    // A rule that cannot run is never reported valid: an error names file:line:col.
    std::fs::write(
        rules.join("bad.toml"),
        rule("cccccccc-0000-4000-8000-000000000009", "bad", "sample by host.id\n  [any where true]\n  ![any where true]"),
    )
    .unwrap();
    let out = esdetect(dir.path(), &["--rules", rules.to_str().unwrap(), "validate"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    let stderr = text(&out.stderr);
    let bad = rules.join("bad.toml").display().to_string();
    let text_of_bad = std::fs::read_to_string(rules.join("bad.toml")).unwrap();
    let (line, col) = text_of_bad
        .lines()
        .enumerate()
        .find_map(|(n, l)| l.find("![any").map(|c| (n + 1, c + 1)))
        .unwrap();
    assert!(stderr.contains(&format!("{bad}:{line}:{col}:")), "{stderr}");
    assert!(stderr.contains("only allowed in a `sequence`"), "{stderr}");
}
