//! End-to-end checks of the edge cases of `shared/spec/eql-semantics.md` §13 (items 1–23), through the real
//! pipeline: the seed rules' query text from `rules/*.toml` (`rules::load_file`), `eql::parse`, compilation
//! against the built-in ECS mapping with the options Kibana sends (`detect::query_options`), and
//! `eql::engine::run` over small hand-made event sets. Each test asserts *which* events or sequences come
//! back. The same cases exist as unit tests on hand-built syntax trees in `crates/eql/src/analysis/analyze.rs` and
//! `crates/eql/src/exec/engine.rs`; these catch a parser or rule-file difference that those cannot see.
//!
//! Rule 1 = `privilege_escalation_krbrelayup_service_creation` (sequence A: Kerberos loopback logon 4624,
//! B: service installed 4697, by computer and logon id, maxspan 5m). Rule 2 =
//! `credential_access_machine_account_smb_relay` (event query on 5145).

use esdetect::detect::window::{event_in_window, Window, WindowFields};
use esdetect::eql::analyze::CompiledQuery;
use esdetect::eql::engine::{run, Results, Evaluation};
use esdetect::eql::mapping::Mapping;
use esdetect::eql::plan::QueryOptions;
use esdetect::event::Event;
use esdetect::rules::Rule;
use serde_json::{json, Value};
use std::path::Path;

const KRB: &str = "privilege_escalation_krbrelayup_service_creation.toml";
const SMB: &str = "credential_access_machine_account_smb_relay.toml";

/// 2024-05-01T10:00:00Z in epoch milliseconds.
const T0: i64 = 1_714_557_600_000;

fn load(file: &str) -> Rule {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(file);
    esdetect::rules::load_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn compile(file: &str) -> CompiledQuery {
    let rule = load(file);
    let q = esdetect::eql::parse(&rule.query).unwrap_or_else(|e| panic!("{file}: {e:?}"));
    CompiledQuery::compile(&q, &Mapping::builtin_ecs(), &esdetect::detect::query_options(&rule))
        .unwrap_or_else(|e| panic!("{file}: {e:?}"))
}

/// Any query (not a rule file) through the same parser and mapping, for the generic items 12–14.
fn compile_text(query: &str) -> CompiledQuery {
    let q = esdetect::eql::parse(query).unwrap_or_else(|e| panic!("{query}: {e:?}"));
    CompiledQuery::compile(&q, &Mapping::builtin_ecs(), &QueryOptions::default()).unwrap_or_else(|e| panic!("{query}: {e:?}"))
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).expect("valid instant").format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Sets (`Some`) or removes (`None`) a dotted path in a nested document.
fn set(mut doc: Value, path: &str, v: Option<Value>) -> Value {
    let parts: Vec<&str> = path.split('.').collect();
    let mut cur = &mut doc;
    for p in &parts[..parts.len() - 1] {
        cur = cur.as_object_mut().expect("object").entry(p.to_string()).or_insert_with(|| json!({}));
    }
    let obj = cur.as_object_mut().expect("object");
    match v {
        Some(v) => {
            obj.insert(parts[parts.len() - 1].to_string(), v);
        }
        None => {
            obj.remove(parts[parts.len() - 1]);
        }
    }
    doc
}

fn ev(id: &str, doc: Value) -> Event {
    Event::new("logs-system.security-default", id, doc)
}

/// A 5145 that rule 2 returns: FS01's own machine account reaching a share from a remote address.
fn smb(ts: i64) -> Value {
    json!({
        "@timestamp": iso(ts),
        "event": {"category": ["network", "file"], "code": "5145", "action": "detailed-file-share", "outcome": "success"},
        "host": {"os": {"type": "windows"}, "ip": ["10.0.1.12", "fe80::1"], "name": "fs01.corp.local"},
        "user": {"name": "FS01$"},
        "winlog": {"computer_name": "fs01.corp.local"},
        "source": {"ip": "10.0.1.99"}
    })
}

/// Rule 1 stage A: a loopback Kerberos network logon on DC01 creating session `logon_id`.
fn krb_a(ts: i64, logon_id: &str) -> Value {
    json!({
        "@timestamp": iso(ts),
        "event": {"category": ["authentication"], "code": "4624", "action": "logged-in", "outcome": "success"},
        "host": {"os": {"type": "windows"}},
        "process": {"pid": 0},
        "source": {"ip": "127.0.0.1"},
        "winlog": {"computer_name": "DC01.corp.local", "logon": {"type": "Network"},
            "event_data": {"ElevatedToken": "%%1843", "AuthenticationPackageName": "Kerberos", "TargetLogonId": logon_id}}
    })
}

/// Rule 1 stage B: a service installed on DC01 by session `logon_id`.
fn krb_b(ts: i64, logon_id: &str) -> Value {
    json!({
        "@timestamp": iso(ts),
        "event": {"category": ["iam", "configuration"], "code": "4697", "action": "service-installed", "outcome": "success"},
        "host": {"os": {"type": "windows"}},
        "winlog": {"computer_name": "DC01.corp.local", "event_data": {"SubjectLogonId": logon_id}}
    })
}

/// Ids of the returned events (event query).
fn event_ids(out: &Evaluation) -> Vec<String> {
    match &out.results {
        Results::Events(v) => v.iter().map(|e| e.id.clone()).collect(),
        Results::Sequences(_) => panic!("expected events"),
    }
}

/// Ids of the events of each returned sequence.
fn seq_ids(out: &Evaluation) -> Vec<Vec<String>> {
    match &out.results {
        Results::Sequences(s) => s.iter().map(|m| m.events.iter().map(|e| e.id.clone()).collect()).collect(),
        Results::Events(_) => panic!("expected sequences"),
    }
}

/// Rule 2 over `(id, doc)` pairs (one second apart, in the given order); the ids it returns.
fn smb_returns(docs: Vec<(&str, Value)>) -> Vec<String> {
    let plan = compile(SMB);
    let events: Vec<Event> = docs
        .into_iter()
        .enumerate()
        .map(|(i, (id, doc))| ev(id, set(doc, "@timestamp", Some(json!(iso(T0 + i as i64 * 1000))))))
        .collect();
    event_ids(&run(&plan, events).expect("rule 2 runs"))
}

/// Whether rule 1 pairs the given stage-A document with the given stage-B document one second later.
fn krb_pairs(a: Value, b: Value) -> bool {
    let plan = compile(KRB);
    let a = ev("a", set(a, "@timestamp", Some(json!(iso(T0)))));
    let b = ev("b", set(b, "@timestamp", Some(json!(iso(T0 + 1000)))));
    let got = seq_ids(&run(&plan, vec![a, b]).expect("rule 1 runs"));
    match got.as_slice() {
        [] => false,
        [one] if one == &["a", "b"] => true,
        other => panic!("unexpected sequences {other:?}"),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn base_documents_match_both_rules() {
    assert_eq!(smb_returns(vec![("hit", smb(T0))]), strings(&["hit"]));
    assert!(krb_pairs(krb_a(T0, "0x129f1"), krb_b(T0, "0x129f1")));
    // Swapped roles never pair: B cannot be stage A.
    assert!(!krb_pairs(krb_b(T0, "0x129f1"), krb_a(T0, "0x129f1")));
}

#[test]
fn item_01_host_ip_missing_keeps_the_event() {
    let got = smb_returns(vec![
        ("missing", set(smb(T0), "host.ip", None)),
        ("empty", set(smb(T0), "host.ip", Some(json!([])))),
        ("null", set(smb(T0), "host.ip", Some(json!(null)))),
        ("local", set(smb(T0), "host.ip", Some(json!("10.0.1.99")))),
    ]);
    assert_eq!(got, strings(&["missing", "empty", "null"]));
}

#[test]
fn item_02_host_ip_multi_valued() {
    let got = smb_returns(vec![
        ("v4-equal", set(smb(T0), "host.ip", Some(json!(["10.0.1.99", "fe80::1"])))),
        ("v6-equal", set(set(smb(T0), "source.ip", Some(json!("fe80::7"))), "host.ip", Some(json!(["10.0.1.12", "fe80::7"])))),
        ("none-equal", set(smb(T0), "host.ip", Some(json!(["10.0.1.12", "fe80::1"])))),
    ]);
    assert_eq!(got, strings(&["none-equal"]));
}

#[test]
fn item_03_string_suffix_quirk() {
    let got = smb_returns(vec![
        ("suffix", set(set(smb(T0), "source.ip", Some(json!("110.0.0.1"))), "host.ip", Some(json!(["10.0.0.1"])))),
        ("no-suffix", set(set(smb(T0), "source.ip", Some(json!("110.0.0.1"))), "host.ip", Some(json!(["10.0.0.2"])))),
    ]);
    assert_eq!(got, strings(&["no-suffix"]));
    // Function level: endsWith("10.0.0.15", "0.0.15") is true on the script path.
    let plan = compile_text(r#"any where endswith(string(source.ip), "0.0.15")"#);
    let out = run(&plan, vec![ev("x", json!({"@timestamp": iso(T0), "source": {"ip": "10.0.0.15"}}))]).unwrap();
    assert_eq!(event_ids(&out), strings(&["x"]));
}

#[test]
fn item_04_ipv4_mapped_and_loopback_forms() {
    let with_ip = |ip: &str| set(krb_a(T0, "0x1"), "source.ip", Some(json!(ip)));
    assert!(krb_pairs(with_ip("::ffff:127.0.0.1"), krb_b(T0, "0x1")));
    assert!(krb_pairs(with_ip("127.0.0.2"), krb_b(T0, "0x1")));
    assert!(krb_pairs(with_ip("0:0:0:0:0:0:0:1"), krb_b(T0, "0x1")));
    assert!(!krb_pairs(with_ip("10.0.1.99"), krb_b(T0, "0x1")));

    let got = smb_returns(vec![
        ("mapped-loopback", set(smb(T0), "source.ip", Some(json!("::ffff:127.0.0.1")))),
        ("loopback-2", set(smb(T0), "source.ip", Some(json!("127.0.0.2")))),
        ("long-v6-loopback", set(smb(T0), "source.ip", Some(json!("0:0:0:0:0:0:0:1")))),
        ("unspecified", set(smb(T0), "source.ip", Some(json!("0:0:0:0:0:0:0:0")))),
    ]);
    assert_eq!(got, strings(&["loopback-2"]));
}

#[test]
fn item_05_source_ip_missing() {
    assert!(smb_returns(vec![("missing", set(smb(T0), "source.ip", None)), ("dash", set(smb(T0), "source.ip", Some(json!("-"))))]).is_empty());
    assert!(!krb_pairs(set(krb_a(T0, "0x1"), "source.ip", None), krb_b(T0, "0x1")));
}

#[test]
fn item_06_process_pid_forms() {
    let with_pid = |pid: Option<Value>| set(krb_a(T0, "0x1"), "process.pid", pid);
    assert!(krb_pairs(with_pid(Some(json!(0))), krb_b(T0, "0x1")));
    assert!(krb_pairs(with_pid(Some(json!("0"))), krb_b(T0, "0x1")));
    assert!(!krb_pairs(with_pid(None), krb_b(T0, "0x1")));
    assert!(!krb_pairs(with_pid(Some(json!(448))), krb_b(T0, "0x1")));
}

#[test]
fn item_07_event_code_string_or_number() {
    let got = smb_returns(vec![
        ("string", set(smb(T0), "event.code", Some(json!("5145")))),
        ("number", set(smb(T0), "event.code", Some(json!(5145)))),
        ("other", set(smb(T0), "event.code", Some(json!(5140)))),
    ]);
    assert_eq!(got, strings(&["string", "number"]));
}

#[test]
fn item_08_event_category_forms() {
    let got = smb_returns(vec![
        ("array", set(smb(T0), "event.category", Some(json!(["network", "file"])))),
        ("string", set(smb(T0), "event.category", Some(json!("file")))),
        ("wrong-case", set(smb(T0), "event.category", Some(json!("File")))),
        ("absent", set(smb(T0), "event.category", None)),
    ]);
    assert_eq!(got, strings(&["array", "string"]));
    // Stage A needs `authentication`; stage B (`any where`) does not look at the category.
    assert!(!krb_pairs(set(krb_a(T0, "0x1"), "event.category", Some(json!(["iam"]))), krb_b(T0, "0x1")));
    assert!(!krb_pairs(set(krb_a(T0, "0x1"), "event.category", None), krb_b(T0, "0x1")));
    assert!(krb_pairs(set(krb_a(T0, "0x1"), "event.category", Some(json!("authentication"))), krb_b(T0, "0x1")));
    assert!(krb_pairs(krb_a(T0, "0x1"), set(krb_b(T0, "0x1"), "event.category", None)));
    assert!(krb_pairs(krb_a(T0, "0x1"), set(krb_b(T0, "0x1"), "event.category", Some(json!(["process"])))));
}

#[test]
fn item_09_case_sensitivity() {
    let a = || krb_a(T0, "0x1");
    let b = || krb_b(T0, "0x1");
    assert!(krb_pairs(a(), set(b(), "event.action", Some(json!("Service-Installed")))), "`:` folds case");
    assert!(!krb_pairs(set(a(), "event.action", Some(json!("Logged-In"))), b()), "`==` is case-sensitive");
    assert!(krb_pairs(set(a(), "winlog.event_data.AuthenticationPackageName", Some(json!("KERBEROS"))), b()));
    assert!(!krb_pairs(set(a(), "winlog.logon.type", Some(json!("network"))), b()));
}

#[test]
fn item_10_elevated_token() {
    let with = |v: Option<Value>| set(krb_a(T0, "0x1"), "winlog.event_data.ElevatedToken", v);
    assert!(krb_pairs(with(Some(json!("%%1843"))), krb_b(T0, "0x1")));
    assert!(!krb_pairs(with(Some(json!("%%1842"))), krb_b(T0, "0x1")));
    assert!(!krb_pairs(with(None), krb_b(T0, "0x1")));
    assert!(!krb_pairs(with(Some(json!("No"))), krb_b(T0, "0x1")));
}

#[test]
fn item_11_user_and_computer_names() {
    let got = smb_returns(vec![
        ("dollar-only", set(smb(T0), "user.name", Some(json!("$")))),
        ("dot-boundary", set(smb(T0), "winlog.computer_name", Some(json!("FS010.corp.local")))),
        ("case-folded", set(set(smb(T0), "winlog.computer_name", Some(json!("fs01.corp.local"))), "user.name", Some(json!("FS01$")))),
        ("short-name", set(smb(T0), "winlog.computer_name", Some(json!("FS01")))),
        ("user-missing", set(smb(T0), "user.name", None)),
        ("not-machine", set(smb(T0), "user.name", Some(json!("FS01")))),
        ("other-machine", set(smb(T0), "user.name", Some(json!("WS01$")))),
    ]);
    assert_eq!(got, strings(&["case-folded", "short-name"]));
}

#[test]
fn item_12_missing_and_null_arrays() {
    // Rule 2's `source.ip != null` drops `[]` and `[null]` like a missing field.
    assert!(smb_returns(vec![
        ("empty", set(smb(T0), "source.ip", Some(json!([])))),
        ("null-array", set(smb(T0), "source.ip", Some(json!([null])))),
    ])
    .is_empty());
    // The generic forms: `!=` on a missing field is true; `== null` holds for [], [null] and missing.
    let docs = || {
        vec![
            ev("missing", json!({"@timestamp": iso(T0)})),
            ev("empty", json!({"@timestamp": iso(T0 + 1), "event": {"outcome": []}})),
            ev("null-array", json!({"@timestamp": iso(T0 + 2), "event": {"outcome": [null]}})),
            ev("success", json!({"@timestamp": iso(T0 + 3), "event": {"outcome": "success"}})),
            ev("mixed", json!({"@timestamp": iso(T0 + 4), "event": {"outcome": [null, "failure"]}})),
        ]
    };
    let ne = run(&compile_text(r#"any where event.outcome != "success""#), docs()).unwrap();
    assert_eq!(event_ids(&ne), strings(&["missing", "empty", "null-array", "mixed"]));
    let is_null = run(&compile_text("any where event.outcome == null"), docs()).unwrap();
    assert_eq!(event_ids(&is_null), strings(&["missing", "empty", "null-array"]));
    let not_null = run(&compile_text("any where event.outcome != null"), docs()).unwrap();
    assert_eq!(event_ids(&not_null), strings(&["success", "mixed"]));
}

#[test]
fn item_13_keyword_over_ignore_above_is_missing() {
    // 1024 characters are indexed, 1025 are not (ECS keyword `ignore_above: 1024`).
    let name = |n: usize| "A".repeat(n);
    let got = smb_returns(vec![
        ("1024", set(set(smb(T0), "user.name", Some(json!(format!("{}$", name(1023))))), "winlog.computer_name", Some(json!(name(1023))))),
        ("1025", set(set(smb(T0), "user.name", Some(json!(format!("{}$", name(1024))))), "winlog.computer_name", Some(json!(name(1024))))),
    ]);
    assert_eq!(got, strings(&["1024"]));
    let plan = compile_text(r#"any where event.action != "x""#);
    let out = run(&plan, vec![ev("long", json!({"@timestamp": iso(T0), "event": {"action": "x".repeat(1025)}}))]).unwrap();
    assert_eq!(event_ids(&out), strings(&["long"]), "an unindexed value is missing, so != is true");
}

#[test]
fn item_14_substring_counts_utf16_units() {
    let docs = || {
        vec![
            ev("mid", json!({"@timestamp": iso(T0), "user": {"name": "ab😀c"}})),
            ev("end", json!({"@timestamp": iso(T0 + 1), "user": {"name": "abc😀"}})),
        ]
    };
    // 😀 is two UTF-16 units: in "ab😀c" the units -3..-1 are exactly the emoji.
    let out = run(&compile_text(r#"any where substring(user.name, -3, -1) == "😀""#), docs()).unwrap();
    assert_eq!(event_ids(&out), strings(&["mid"]));
    let out = run(&compile_text("any where length(user.name) == 5"), docs()).unwrap();
    assert_eq!(event_ids(&out), strings(&["mid", "end"]));
    // Out-of-range indices are clamped, not errors.
    let out = run(&compile_text(r#"any where substring(user.name, -100, 100) == "abc😀""#), docs()).unwrap();
    assert_eq!(event_ids(&out), strings(&["end"]));
}

/// Rule 1 over `(id, timestamp ms, doc)`; the id lists of the returned sequences.
fn krb_run(events: Vec<(&str, i64, Value)>) -> Evaluation {
    let plan = compile(KRB);
    let events = events.into_iter().map(|(id, ts, doc)| ev(id, set(doc, "@timestamp", Some(json!(iso(ts)))))).collect::<Vec<_>>();
    run(&plan, events).expect("rule 1 runs")
}

fn seqs(v: &[&[&str]]) -> Vec<Vec<String>> {
    v.iter().map(|s| strings(s)).collect()
}

#[test]
fn item_15_same_millisecond_order_is_the_index_id_stand_in() {
    // B's id sorts before A's: B comes first in the ordinal, so no sequence.
    let out = krb_run(vec![("2", T0, krb_a(T0, "0x1")), ("1", T0, krb_b(T0, "0x1"))]);
    assert!(seq_ids(&out).is_empty());
    let out = krb_run(vec![("2", T0, krb_b(T0, "0x1")), ("1", T0, krb_a(T0, "0x1"))]);
    assert_eq!(seq_ids(&out), seqs(&[&["1", "2"]]));
}

#[test]
fn item_16_maxspan_is_inclusive() {
    let out = krb_run(vec![("a", T0, krb_a(T0, "0x1")), ("b", T0 + 300_000, krb_b(T0, "0x1"))]);
    assert_eq!(seq_ids(&out), seqs(&[&["a", "b"]]));
    let out = krb_run(vec![("a", T0, krb_a(T0, "0x1")), ("b", T0 + 300_001, krb_b(T0, "0x1"))]);
    assert!(seq_ids(&out).is_empty());
}

#[test]
fn item_17_latest_first_stage_wins() {
    let out = krb_run(vec![("a1", T0, krb_a(T0, "0x1")), ("a2", T0 + 10, krb_a(T0, "0x1")), ("b", T0 + 20, krb_b(T0, "0x1"))]);
    assert_eq!(seq_ids(&out), seqs(&[&["a2", "b"]]));
}

#[test]
fn item_18_one_b_consumes_its_a() {
    let out = krb_run(vec![("a", T0, krb_a(T0, "0x1")), ("b1", T0 + 10, krb_b(T0, "0x1")), ("b2", T0 + 20, krb_b(T0, "0x1"))]);
    assert_eq!(seq_ids(&out), seqs(&[&["a", "b1"]]));
}

#[test]
fn item_19_null_or_missing_keys_never_join() {
    let cases: Vec<(&str, Value, Value)> = vec![
        ("TargetLogonId missing", set(krb_a(T0, "0x1"), "winlog.event_data.TargetLogonId", None), krb_b(T0, "0x1")),
        ("TargetLogonId null", set(krb_a(T0, "0x1"), "winlog.event_data.TargetLogonId", Some(Value::Null)), krb_b(T0, "0x1")),
        ("SubjectLogonId missing", krb_a(T0, "0x1"), set(krb_b(T0, "0x1"), "winlog.event_data.SubjectLogonId", None)),
        ("SubjectLogonId [null]", krb_a(T0, "0x1"), set(krb_b(T0, "0x1"), "winlog.event_data.SubjectLogonId", Some(json!([null])))),
        (
            "computer_name missing on both",
            set(krb_a(T0, "0x1"), "winlog.computer_name", None),
            set(krb_b(T0, "0x1"), "winlog.computer_name", None),
        ),
        (
            "computer_name null on both",
            set(krb_a(T0, "0x1"), "winlog.computer_name", Some(Value::Null)),
            set(krb_b(T0, "0x1"), "winlog.computer_name", Some(Value::Null)),
        ),
    ];
    for (what, a, b) in cases {
        assert!(!krb_pairs(a, b), "{what}: must not join");
    }
}

#[test]
fn item_20_keys_are_exact() {
    assert!(!krb_pairs(krb_a(T0, "0x129F1"), krb_b(T0, "0x129f1")));
    assert!(!krb_pairs(krb_a(T0, "0x1"), set(krb_b(T0, "0x1"), "winlog.computer_name", Some(json!("dc01.corp.local")))));
}

#[test]
fn item_21_multi_valued_key_gives_one_candidate_per_value() {
    let a = set(krb_a(T0, "0x1"), "winlog.event_data.TargetLogonId", Some(json!(["0x1", null, "0x2"])));
    let out = krb_run(vec![
        ("a", T0, a),
        ("b-2", T0 + 10, krb_b(T0, "0x2")),
        ("b-null", T0 + 20, set(krb_b(T0, "0x1"), "winlog.event_data.SubjectLogonId", Some(Value::Null))),
        ("b-1", T0 + 30, krb_b(T0, "0x1")),
        ("b-3", T0 + 40, krb_b(T0, "0x3")),
    ]);
    assert_eq!(seq_ids(&out), seqs(&[&["a", "b-2"], &["a", "b-1"]]));
}

#[test]
fn item_22_a_before_the_window_cannot_start_a_sequence() {
    let rule = load(KRB);
    let now = chrono::DateTime::from_timestamp_millis(T0 + 10 * 60_000).expect("instant");
    let window = Window::ending_at(&rule, now);
    let fields = WindowFields::for_rule(&rule);
    let from = window.from.timestamp_millis();
    // A one second before the window start, B inside it, 2 s apart: a sequence only if both are present.
    let all = vec![
        ev("a", set(krb_a(0, "0x1"), "@timestamp", Some(json!(iso(from - 1000))))),
        ev("b", set(krb_b(0, "0x1"), "@timestamp", Some(json!(iso(from + 1000))))),
    ];
    let in_window: Vec<Event> = all.iter().filter(|e| event_in_window(&fields, &window, e)).cloned().collect();
    assert_eq!(in_window.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec!["b"]);
    let plan = compile(KRB);
    assert!(seq_ids(&run(&plan, in_window).unwrap()).is_empty());
    assert_eq!(seq_ids(&run(&plan, all).unwrap()), seqs(&[&["a", "b"]]), "the pair itself is a match");
}

#[test]
fn item_23_more_than_size_results_tail_keeps_the_latest_by_last_event() {
    let rule = load(KRB);
    let size = rule.max_signals as usize;
    assert_eq!(size, 100, "seed rule uses Kibana's default max_signals");
    // 105 pairs with distinct logon ids. All A events first, then the B events in *reverse* order, so the
    // sequence with the earliest A ends last: the tail must follow the last event, not the first.
    let n = 105usize;
    let mut events: Vec<(String, i64, Value)> = Vec::new();
    for i in 0..n {
        let ts = T0 + i as i64;
        events.push((format!("a{i:03}"), ts, krb_a(ts, &format!("0x{:x}", 0x1000 + i))));
    }
    for (k, i) in (0..n).rev().enumerate() {
        let ts = T0 + 1000 + k as i64;
        events.push((format!("b{i:03}"), ts, krb_b(ts, &format!("0x{:x}", 0x1000 + i))));
    }
    let out = krb_run(events.iter().map(|(id, ts, d)| (id.as_str(), *ts, d.clone())).collect());
    assert_eq!(out.stats.total_results, n as u64);
    assert!(out.stats.truncated);
    // B for pair i comes at position n-1-i: ascending by last event = descending i. The latest 100 by last
    // event are the pairs whose B came last: i = 99, 98, …, 0.
    let want: Vec<Vec<String>> = (0..size).rev().map(|i| vec![format!("a{i:03}"), format!("b{i:03}")]).collect();
    assert_eq!(seq_ids(&out), want);
}
