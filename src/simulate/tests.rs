//! Simulator tests: document shapes (event-shapes §2), determinism, planted attacks and look-alikes.

use super::*;
use crate::eql::{dsl, plan::QueryOptions, pushdown};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z").unwrap().with_timezone(&Utc)
}

fn get<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |v, k| v.get(k))
}

fn s<'a>(doc: &'a Value, path: &str) -> &'a str {
    get(doc, path).and_then(Value::as_str).unwrap_or_else(|| panic!("{path} is not a string in {doc}"))
}

fn ts(doc: &Value) -> i64 {
    scenarios::timestamp_ms(doc).expect("@timestamp")
}

fn is_logon_id(v: &str) -> bool {
    v.starts_with("0x") && v.len() > 2 && v[2..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

fn find<'a>(docs: &'a [(String, Value)], computer: &str, record: &str) -> &'a Value {
    let hits: Vec<_> = docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| s(d, "winlog.computer_name") == computer && get(d, "winlog.record_id").map(|r| r.to_string().trim_matches('"').to_string()) == Some(record.to_string()))
        .collect();
    assert_eq!(hits.len(), 1, "exactly one document for {computer} record {record}");
    hits[0]
}

#[test]
fn documents_have_post_pipeline_shapes() {
    let mut sim = Simulator::new(7, start());
    let docs = sim.generate(Scenario::All, 600);
    assert!(docs.len() >= 600);
    let mut codes = BTreeSet::new();
    for (index, d) in &docs {
        let family = Family::ALL.iter().find(|f| f.index() == index).unwrap_or_else(|| panic!("unknown index {index}"));
        let code = s(d, "event.code");
        codes.insert(code.to_string());
        assert_eq!(s(d, "winlog.event_id"), code);
        let cats = get(d, "event.category").and_then(Value::as_array).expect("category array");
        assert!(!cats.is_empty() && cats.iter().all(Value::is_string));
        assert!(get(d, "event.type").is_some_and(Value::is_array));
        if let Some(pid) = get(d, "process.pid") {
            assert!(pid.is_u64(), "process.pid must be a number: {pid}");
        }
        for (k, v) in get(d, "winlog.event_data").and_then(Value::as_object).expect("event_data") {
            assert!(v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string)), "event_data.{k} = {v}");
            if k.ends_with("LogonId") {
                assert!(is_logon_id(v.as_str().unwrap()), "{k} = {v}");
            }
        }
        let ips = get(d, "host.ip").and_then(Value::as_array).expect("host.ip array");
        let parsed: Vec<IpAddr> = ips.iter().map(|v| v.as_str().unwrap().parse().unwrap()).collect();
        assert!(parsed.iter().any(IpAddr::is_ipv4));
        assert!(parsed.iter().any(|ip| matches!(ip, IpAddr::V6(v6) if v6.segments()[0] == 0xfe80)));
        assert_eq!(s(d, "host.os.type"), "windows");
        assert!(!s(d, "host.name").is_empty() && !s(d, "agent.id").is_empty() && !s(d, "ecs.version").is_empty());
        assert!(chrono::DateTime::parse_from_rfc3339(s(d, "event.ingested")).is_ok());
        let ts_text = s(d, "@timestamp");
        let record = get(d, "winlog.record_id").unwrap();
        if *family == Family::Winlogbeat {
            assert!(record.is_u64() && get(d, "data_stream").is_none());
            assert_eq!(ts_text.len(), "2025-03-01T12:00:00.1234567Z".len(), "{ts_text}");
        } else {
            assert!(record.is_string());
            assert_eq!(s(d, "data_stream.dataset"), if *family == Family::System { "system.security" } else { "windows.forwarded" });
            assert_eq!(ts_text.len(), "2025-03-01T12:00:00.123Z".len(), "{ts_text}");
        }
        if let Some(ip) = get(d, "source.ip") {
            assert!(ip.as_str().unwrap().parse::<IpAddr>().is_ok());
            assert!(get(d, "source.port").unwrap().is_u64());
        }
        let t = ts(d);
        assert!(t >= sim.start_ms() && t < sim.start_ms() + sim.window_ms + 600_000);
    }
    let want: BTreeSet<String> = ["4624", "4625", "4634", "4672", "4688", "4697", "5140", "5145"].iter().map(|c| c.to_string()).collect();
    assert_eq!(codes, want);
    assert!(docs.windows(2).all(|w| ts(&w[0].1) <= ts(&w[1].1)), "output is ordered by time");
    for f in Family::ALL {
        assert!(docs.iter().filter(|(i, _)| i == f.index()).count() > 100, "{f:?} under-represented");
    }
}

#[test]
fn forwarded_documents_describe_the_collector_in_host() {
    let mut sim = Simulator::new(3, start());
    let docs = sim.generate(Scenario::Noise, 300);
    let collector = sim.hosts[0].clone();
    for (index, d) in docs.iter().filter(|(i, _)| i == Family::Forwarded.index()) {
        assert_eq!(index, "logs-windows.forwarded-default");
        assert_eq!(get(d, "host.ip").unwrap(), &json!(collector.ips()));
        assert_ne!(s(d, "winlog.computer_name"), collector.computer_name);
    }
}

#[test]
fn same_seed_same_output_different_seed_different_output() {
    let run = |seed| {
        let mut sim = Simulator::new(seed, start());
        let docs = sim.generate(Scenario::All, 300);
        (docs, sim.planted().to_vec())
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42).0, run(43).0);
    let a = benchmark_events(500, 9);
    assert_eq!(a, benchmark_events(500, 9));
}

#[test]
fn krbrelayup_pairs_share_computer_and_logon_id_within_five_minutes() {
    let mut sim = Simulator::new(11, start());
    let docs = sim.generate(Scenario::KrbRelayUp, 25);
    assert_eq!(docs.len(), 50);
    assert_eq!(sim.planted().len(), 25);
    for p in sim.planted() {
        assert!(p.is_attack() && p.scenario == Scenario::KrbRelayUp);
        let a = find(&docs, &p.computer_name, &p.record_ids[0]);
        let b = find(&docs, &p.computer_name, &p.record_ids[1]);
        assert_eq!((s(a, "event.code"), s(b, "event.code")), ("4624", "4697"));
        // Rule 1, stage A, field by field (spec §10.1).
        assert!(get(a, "event.category").unwrap().as_array().unwrap().contains(&json!("authentication")));
        assert_eq!(s(a, "event.action"), "logged-in");
        assert_eq!(s(a, "event.outcome"), "success");
        assert_eq!(s(a, "winlog.event_data.ElevatedToken"), "%%1843");
        assert_eq!(get(a, "process.pid"), Some(&json!(0)));
        assert_eq!(s(a, "winlog.event_data.AuthenticationPackageName"), "Kerberos");
        assert_eq!(s(a, "winlog.logon.type"), "Network");
        assert!(s(a, "source.ip").parse::<IpAddr>().unwrap().is_loopback());
        // Stage B and the join.
        assert_eq!(s(b, "event.action"), "service-installed");
        assert_eq!(s(a, "winlog.computer_name"), s(b, "winlog.computer_name"));
        assert_eq!(s(a, "winlog.event_data.TargetLogonId"), p.logon_id);
        assert_eq!(s(b, "winlog.event_data.SubjectLogonId"), p.logon_id);
        // winlog.logon.id on a 4624 is the Subject's id, not the new session's (event-shapes §2).
        assert_ne!(s(a, "winlog.logon.id"), p.logon_id);
        let span = ts(b) - ts(a);
        assert!(span > 0 && span <= 300_000, "span {span}");
    }
    // Logon ids never repeat across attacks, so no two pairs can cross-join.
    let ids: HashSet<_> = sim.planted().iter().map(|p| &p.logon_id).collect();
    assert_eq!(ids.len(), 25);
}

#[test]
fn smb_relays_use_the_hosts_own_machine_account_from_a_remote_address() {
    let mut sim = Simulator::new(5, start());
    let docs = sim.generate(Scenario::SmbRelay, 30);
    assert_eq!(docs.len(), 30);
    let all_host_ips: HashSet<String> = sim.hosts.iter().flat_map(|h| h.ips()).collect();
    let mut on_fs01 = 0;
    for p in sim.planted() {
        let d = find(&docs, &p.computer_name, &p.record_ids[0]);
        assert_eq!(s(d, "event.code"), "5145");
        let computer = s(d, "winlog.computer_name");
        let user = s(d, "user.name");
        assert!(user.ends_with('$'));
        // Same machine, case-insensitively, with a dot boundary.
        assert!(computer.to_lowercase().starts_with(&format!("{}.", user[..user.len() - 1].to_lowercase())));
        on_fs01 += (computer == "fs01.corp.local" && user == "FS01$") as usize;
        let src = s(d, "source.ip");
        assert!(!src.parse::<IpAddr>().unwrap().is_loopback());
        assert!(!all_host_ips.contains(src), "{src} is a fleet address");
        let host_ips: Vec<&str> = get(d, "host.ip").unwrap().as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(host_ips.iter().all(|h| !src.ends_with(h)), "local-access exclusion would drop it");
    }
    assert!(on_fs01 > 10);
}

/// Flattens a document into `path → leaf` (arrays are leaves).
fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| {
            let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            leaves(v, &p, out)
        }),
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn diff(a: &Value, b: &Value) -> BTreeSet<String> {
    let (mut x, mut y) = (BTreeMap::new(), BTreeMap::new());
    leaves(a, "", &mut x);
    leaves(b, "", &mut y);
    x.keys().chain(y.keys()).filter(|k| x.get(*k) != y.get(*k)).cloned().collect()
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

#[test]
fn lookalikes_differ_from_the_attack_in_exactly_the_intended_fields() {
    let mut sim = Simulator::new(21, start());
    for kind in [LookAlike::KrbElevatedYes, LookAlike::KrbRemoteSource, LookAlike::KrbNtlm, LookAlike::KrbNotNetwork, LookAlike::KrbOtherLogonId] {
        let case = sim.krb_case(false);
        let [a0, b0] = sim.krb_docs(&case, None);
        let [a1, b1] = sim.krb_docs(&case, Some(kind));
        let (da, db) = (diff(&a0.1, &a1.1), diff(&b0.1, &b1.1));
        let (want_a, want_b) = match kind {
            LookAlike::KrbElevatedYes => (set(&["winlog.event_data.ElevatedToken"]), set(&[])),
            LookAlike::KrbRemoteSource => (set(&["source.ip", "related.ip"]), set(&[])),
            LookAlike::KrbNtlm => (set(&["winlog.event_data.AuthenticationPackageName", "winlog.event_data.LogonProcessName", "winlog.event_data.LmPackageName"]), set(&[])),
            LookAlike::KrbNotNetwork => (set(&["winlog.logon.type", "winlog.event_data.LogonType"]), set(&[])),
            _ => (set(&[]), set(&["winlog.event_data.SubjectLogonId", "winlog.logon.id"])),
        };
        assert_eq!((da, db), (want_a, want_b), "{kind:?}");
    }
    // The late service install: same documents, only the 4697 is more than 5 minutes later.
    let late = sim.krb_case(true);
    let [a, b] = sim.krb_docs(&late, None);
    assert!(ts(&b.1) - ts(&a.1) > 300_000);
    assert_eq!(s(&a.1, "winlog.event_data.TargetLogonId"), s(&b.1, "winlog.event_data.SubjectLogonId"));

    for kind in [LookAlike::SmbOwnIpv4, LookAlike::SmbOwnIpv6, LookAlike::SmbLoopback, LookAlike::SmbOtherMachine] {
        let case = sim.smb_case(true);
        let (_, d0) = sim.smb_doc(&case, None);
        let (_, d1) = sim.smb_doc(&case, Some(kind));
        let want = match kind {
            LookAlike::SmbOtherMachine => set(&["user.name", "user.id", "related.user", "winlog.event_data.SubjectUserName", "winlog.event_data.SubjectUserSid"]),
            _ => set(&["source.ip", "related.ip"]),
        };
        assert_eq!(diff(&d0, &d1), want, "{kind:?}");
        let host_ips: Vec<&Value> = get(&d1, "host.ip").unwrap().as_array().unwrap().iter().collect();
        match kind {
            LookAlike::SmbOwnIpv4 | LookAlike::SmbOwnIpv6 => assert!(host_ips.contains(&get(&d1, "source.ip").unwrap())),
            LookAlike::SmbLoopback => assert_eq!(s(&d1, "source.ip"), "127.0.0.1"),
            _ => assert_ne!(s(&d1, "user.name"), sim.hosts[case.host].machine_account()),
        }
    }
}

/// Rule 1 stage A's conditions on one document, restated from spec §10.1.
fn is_loopback_kerberos_network_logon(d: &Value) -> bool {
    get(d, "event.code") == Some(&json!("4624"))
        && get(d, "winlog.event_data.ElevatedToken") == Some(&json!("%%1843"))
        && get(d, "process.pid") == Some(&json!(0))
        && get(d, "winlog.event_data.AuthenticationPackageName").and_then(Value::as_str).is_some_and(|a| a.eq_ignore_ascii_case("kerberos"))
        && get(d, "winlog.logon.type") == Some(&json!("Network"))
        && get(d, "source.ip").and_then(Value::as_str).and_then(|ip| ip.parse::<IpAddr>().ok()).is_some_and(|ip| ip.is_loopback())
}

#[test]
fn noise_plants_every_lookalike_and_no_accidental_attack() {
    let mut sim = Simulator::new(99, start());
    let docs = sim.generate(Scenario::Noise, 200);
    let kinds: HashSet<LookAlike> = sim.planted().iter().filter_map(|p| p.lookalike).collect();
    assert_eq!(kinds.len(), LookAlike::ALL.len());
    assert!(sim.planted().iter().all(|p| !p.is_attack()));
    // The only loopback Kerberos network logons with %%1843 are the look-alikes whose 4697 differs.
    let planted_records: HashSet<(String, String)> =
        sim.planted().iter().flat_map(|p| p.record_ids.iter().map(move |r| (p.computer_name.clone(), r.clone()))).collect();
    for (_, d) in &docs {
        if is_loopback_kerberos_network_logon(d) {
            let key = (s(d, "winlog.computer_name").to_string(), get(d, "winlog.record_id").unwrap().to_string().trim_matches('"').to_string());
            assert!(planted_records.contains(&key), "unplanted stage-A logon: {d}");
        }
    }
}

#[test]
fn pushdown_filters_keep_every_planted_attack_event() {
    let mut sim = Simulator::new(1234, start());
    let docs = sim.generate(Scenario::All, 500);
    let opts = QueryOptions::default();
    // The filters of the two rules as shipped in `rules/`.
    let filter_of = |file: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(file);
        let rule = crate::rules::parse_rule(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        pushdown::pushdown_filter(&crate::eql::parse(&rule.query).unwrap(), &opts).unwrap()
    };
    let f1 = filter_of("privilege_escalation_krbrelayup_service_creation.toml");
    let f2 = filter_of("credential_access_machine_account_smb_relay.toml");
    let attacks: Vec<&Planted> = sim.planted().iter().filter(|p| p.is_attack()).collect();
    assert_eq!(attacks.len(), 10);
    for p in attacks {
        for r in &p.record_ids {
            let d = find(&docs, &p.computer_name, r);
            let e = Event::new("x", "1", d.clone());
            let filter = if p.scenario == Scenario::KrbRelayUp { &f1 } else { &f2 };
            assert!(dsl::matches(filter, &e), "{:?} event dropped by pushdown: {d}", p.scenario);
        }
    }
    // And the filters do narrow the noise substantially.
    let kept = docs.iter().filter(|(_, d)| dsl::matches(&f2, &Event::new("x", "1", d.clone()))).count();
    assert!(kept < docs.len() / 4, "rule 2 filter keeps {kept} of {}", docs.len());
}

#[test]
fn benchmark_events_are_a_mix_with_about_one_percent_attacks() {
    let events = benchmark_events(3000, 77);
    assert_eq!(events.len(), 3000);
    let ids: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 3000);
    let attacks = events.iter().filter(|e| is_loopback_kerberos_network_logon(&e.source)).count();
    // 3000 events: 10 planted pairs (1 %), plus the noise's stage-A look-alikes whose 4697 is what
    // differs (other logon id, late): every tenth of ~2970 noise slots is a look-alike, two kinds of
    // ten → about 60.
    assert!((50..=75).contains(&attacks), "{attacks}");
    let codes: HashSet<&str> = events.iter().filter_map(|e| e.source["event"]["code"].as_str()).collect();
    assert_eq!(codes.len(), 8);
}

#[test]
fn count_is_exact_for_all_and_noise() {
    for (scenario, n) in [(Scenario::All, 1000), (Scenario::All, 7), (Scenario::All, 2), (Scenario::Noise, 1000), (Scenario::Noise, 19)] {
        let mut sim = Simulator::new(5, start());
        assert_eq!(sim.generate(scenario, n).len(), n, "{scenario:?} {n}");
    }
    let mut sim = Simulator::new(5, start());
    sim.window_ms = 4 * 60_000; // what `esdetect simulate` uses
    let docs = sim.generate(Scenario::All, 1000);
    assert_eq!(sim.planted().iter().filter(|p| p.is_attack()).count(), 20, "10 rounds of two attacks");
    // Every event lies in [start, start + 10 minutes) (the "late service" look-alike's 4697 comes 5–10
    // minutes after its logon), and every event of an attack in [start, start + 4 minutes).
    let lo = start().timestamp_millis();
    let attack_records: HashSet<String> =
        sim.planted().iter().filter(|p| p.is_attack()).flat_map(|p| p.record_ids.clone()).collect();
    let mut attack_docs = 0;
    for (_, d) in &docs {
        let t = scenarios::timestamp_ms(d).unwrap();
        assert!((lo..lo + 10 * 60_000).contains(&t), "{t} is outside [start, start + 10m)");
        let record = d.pointer("/winlog/record_id").map(|r| r.to_string().trim_matches('"').to_string()).unwrap_or_default();
        if attack_records.contains(&record) {
            attack_docs += 1;
            assert!(t < lo + 4 * 60_000, "an attack event at {t} is outside [start, start + 4m)");
        }
    }
    assert_eq!(attack_docs, 30);
}

/// Streams a simulation (`write_hits`) and parses the hits back.
fn streamed(seed: u64, scenario: Scenario, count: usize, ns: &str, slice_docs: usize) -> (Vec<Value>, Simulator) {
    let mut sim = Simulator::new(seed, start());
    sim.window_ms = 4 * 60_000; // what `esdetect simulate` uses
    let mut out = Vec::new();
    let written = sim.write_hits(scenario, count, ns, slice_docs, &mut out).unwrap();
    let hits: Vec<Value> = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(written as usize, hits.len());
    (hits, sim)
}

fn code_mix(docs: &[&Value]) -> BTreeMap<String, usize> {
    let mut mix = BTreeMap::new();
    for d in docs {
        *mix.entry(s(d, "event.code").to_string()).or_insert(0) += 1;
    }
    mix
}

#[test]
fn streamed_hits_are_time_sorted_and_the_same_documents_as_generate() {
    let count = 3000;
    let mut reference = Simulator::new(8, start());
    reference.window_ms = 4 * 60_000;
    let docs = reference.generate(Scenario::All, count);
    // Small slices force many replays; one huge slice is a single pass: both give the same stream.
    let (hits, sim) = streamed(8, Scenario::All, count, "default", 400);
    let (one_slice, _) = streamed(8, Scenario::All, count, "default", usize::MAX);
    assert_eq!(hits, one_slice);
    assert_eq!(hits.len(), count);
    let sources: Vec<&Value> = hits.iter().map(|h| &h["_source"]).collect();
    assert!(sources.windows(2).all(|w| ts(w[0]) <= ts(w[1])), "streamed hits are ordered by time");
    for (i, hit) in hits.iter().enumerate() {
        assert_eq!(hit["_id"], json!(format!("sim-8-{i:06}")));
        assert_eq!(hit["_index"], json!(docs[i].0));
        assert_eq!(hit["_source"], docs[i].1, "hit {i}");
    }
    // The event mix: all eight codes, in the proportions `generate` gives, and the planted attacks.
    let mix = code_mix(&sources);
    assert_eq!(mix, code_mix(&docs.iter().map(|(_, d)| d).collect::<Vec<_>>()));
    assert_eq!(mix.len(), 8, "{mix:?}");
    assert!(mix["4624"] > count / 5 && mix["5145"] > count / 20, "{mix:?}");
    assert_eq!(sim.planted(), reference.planted(), "the counting pass records what was planted");
    assert_eq!(sim.planted().iter().filter(|p| p.is_attack()).count(), 2 * (count / 100));
    // The simulator ends where `generate` leaves it: a following simulation continues the same stream.
    assert_eq!(sim.clone().generate(Scenario::Noise, 50), reference.generate(Scenario::Noise, 50));
}

#[test]
fn streamed_hits_carry_the_namespace_and_skip_the_planted_list_when_asked() {
    let mut reference = Simulator::new(4, start());
    reference.window_ms = 4 * 60_000;
    let mut docs = reference.generate(Scenario::All, 500);
    lab::apply_namespace(&mut docs, "lab_2");
    let mut sim = Simulator::new(4, start());
    sim.window_ms = 4 * 60_000;
    sim.record_planted = false;
    let mut out = Vec::new();
    sim.write_hits(Scenario::All, 500, "lab_2", 100, &mut out).unwrap();
    let hits: Vec<Value> = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(hits.len(), 500);
    for (hit, (index, doc)) in hits.iter().zip(&docs) {
        assert_eq!((&hit["_index"], &hit["_source"]), (&json!(index), doc));
        assert!(index.ends_with("-lab_2"), "{index}");
    }
    assert!(sim.planted().is_empty());
}

#[test]
fn streamed_attack_scenarios_keep_their_document_counts() {
    let (krb, sim) = streamed(2, Scenario::KrbRelayUp, 40, "default", 25);
    assert_eq!(krb.len(), 80, "two documents per KrbRelayUp attack");
    assert_eq!(sim.planted().len(), 40);
    let (smb, _) = streamed(2, Scenario::SmbRelay, 40, "default", 7);
    assert_eq!(smb.len(), 40);
    assert!(smb.iter().all(|h| h["_source"]["event"]["code"] == "5145"));
}

#[test]
fn slices_hold_at_most_the_budget_and_never_split_a_millisecond() {
    let counts = [3, 0, 4, 1, 9, 2, 2, 0, 5];
    let cuts = stream::slice_cuts(&counts, 1000, 1, 5);
    assert_eq!(cuts.first(), Some(&i64::MIN));
    assert_eq!(cuts.last(), Some(&i64::MAX));
    for w in cuts.windows(2) {
        let held: u32 = counts.iter().enumerate().filter(|(b, _)| (w[0]..w[1]).contains(&(1000 + *b as i64))).map(|(_, n)| n).sum();
        // Only the bucket of 9 may exceed the budget, alone.
        assert!(held <= 5 || held == 9, "slice {w:?} holds {held}");
    }
    assert_eq!(cuts, vec![i64::MIN, 1002, 1004, 1005, 1008, i64::MAX]);
    // A budget larger than everything is one slice.
    assert_eq!(stream::slice_cuts(&counts, 0, 10, 1000), vec![i64::MIN, i64::MAX]);
}
