//! Alert documents for the two seed rules, checked field by field against the alert-documents spec
//! (§4–§7, §9). Events are modelled on the ECS fixtures (5145 from windows.forwarded; 4624/4697 from
//! the system integration), with the identities of the spec's worked example (§9.5).

use chrono::{TimeZone, Utc};
use esdetect::alert::{sequence_alerts, event_alert, AlertContext, AlertDoc};
use esdetect::event::Event;
use esdetect::rules::{load_file, Rule};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

const INDEX: &str = ".ds-logs-system.security-default-2026.05.20-000001";

fn rule(file: &str) -> Rule {
    load_file(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(file)).expect("seed rule loads")
}

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn ctx(rule_uuid: &str) -> AlertContext {
    AlertContext::new(
        "default",
        rule_uuid,
        "9.0.1",
        "c0ffee00-0000-4000-8000-000000000001",
        Utc.with_ymd_and_hms(2026, 5, 20, 10, 5, 0).unwrap() + chrono::Duration::milliseconds(412),
        Utc.with_ymd_and_hms(2026, 5, 20, 10, 5, 0).unwrap() + chrono::Duration::milliseconds(561),
    )
}

fn smb_5145() -> Event {
    Event::new(
        INDEX,
        "Pc3kLZYBd1Xk0aQ7mX2C",
        json!({
            "@timestamp": "2026-05-20T10:01:03.118Z",
            "agent": {"type": "filebeat", "version": "9.0.1"},
            "data_stream": {"type": "logs", "dataset": "system.security", "namespace": "default"},
            "ecs": {"version": "8.17.0"},
            "event": {
                "action": "network-share-object-access-checked",
                "category": ["network", "file"],
                "code": "5145",
                "ingested": "2026-05-20T10:01:05Z",
                "kind": "event",
                "outcome": "success",
                "provider": "Microsoft-Windows-Security-Auditing",
                "type": ["info", "access"]
            },
            "host": {"name": "fs01.corp.local", "ip": ["10.0.0.5", "fe80::5cd1:2b3a:44e1:9f20"], "os": {"type": "windows", "family": "windows"}},
            "source": {"ip": "10.0.0.99", "port": 49152},
            "user": {"name": "FS01$", "domain": "CORP", "id": "S-1-5-18"},
            "winlog": {
                "channel": "Security",
                "computer_name": "fs01.corp.local",
                "event_id": "5145",
                "event_data": {"ShareName": "\\\\*\\IPC$", "RelativeTargetName": "srvsvc", "AccessMask": ["0x1"]},
                "process": {"pid": 4}
            }
        }),
    )
}

fn field<'a>(doc: &'a AlertDoc, key: &str) -> &'a Value {
    doc.source.get(key).unwrap_or_else(|| panic!("missing flat key {key} in {}", doc.source))
}

#[test]
fn smb_event_alert_field_by_field() {
    let rule = rule("credential_access_machine_account_smb_relay.toml");
    let uuid = "5d0c1e1a-2b7f-4a39-8c4e-6f1b9d2a7e10";
    let event = smb_5145();
    let a = event_alert(&rule, &ctx(uuid), &event);

    // §9.1 id, recomputed independently, and the spec's worked example value.
    let expected_id = sha(&format!("{INDEX}Pc3kLZYBd1Xk0aQ7mX2Cundefineddefault:{uuid}"));
    assert_eq!(a.id, expected_id);
    assert_eq!(a.id, "6d15af6dd1d859e30d5c6ea8a354ab7e6b57eb67dca50e5d90e8896ce41f80bf");
    assert_eq!(field(&a, "kibana.alert.uuid"), &json!(a.id));

    // §7 reason: numeric source.port omitted, no file.name → derived example verbatim.
    assert_eq!(
        field(&a, "kibana.alert.reason"),
        "network, file event with source 10.0.0.99 by FS01$ on fs01.corp.local created high alert Potential Machine Account Relay Attack via SMB."
    );

    // §3 source copy: nested source kept, event.kind removed there, flat event.kind is signal.
    let s = &a.source;
    assert_eq!(s["event"]["code"], "5145");
    assert!(s["event"].get("kind").is_none());
    assert_eq!(s["event.kind"], "signal");
    assert_eq!(s["host"]["ip"], json!(["10.0.0.5", "fe80::5cd1:2b3a:44e1:9f20"]));
    assert_eq!(s["winlog"]["computer_name"], "fs01.corp.local");
    assert_eq!(s["user"]["name"], "FS01$");
    assert_eq!(s["source"]["port"], 49152);
    assert_eq!(field(&a, "kibana.alert.original_event.kind"), "event");
    assert_eq!(field(&a, "kibana.alert.original_event.code"), "5145");
    assert_eq!(field(&a, "kibana.alert.original_event.action"), "network-share-object-access-checked");
    assert_eq!(field(&a, "kibana.alert.original_event.category"), &json!(["network", "file"]));
    assert_eq!(field(&a, "kibana.alert.original_event.ingested"), "2026-05-20T10:01:05Z");
    assert_eq!(field(&a, "kibana.alert.original_data_stream.dataset"), "system.security");
    assert!(s.get("kibana").is_none(), "alert fields are flat keys, never a nested kibana object");

    // §4.1 identity/lineage/time
    assert_eq!(field(&a, "@timestamp"), "2026-05-20T10:05:00.412Z");
    assert_eq!(field(&a, "kibana.alert.intended_timestamp"), "2026-05-20T10:05:00.412Z");
    assert_eq!(field(&a, "kibana.alert.original_time"), "2026-05-20T10:01:03.118Z");
    assert_eq!(field(&a, "kibana.alert.start"), "2026-05-20T10:05:00.561Z");
    assert_eq!(field(&a, "kibana.alert.rule.execution.timestamp"), "2026-05-20T10:05:00.561Z");
    assert_eq!(
        field(&a, "kibana.alert.ancestors"),
        &json!([{"id": "Pc3kLZYBd1Xk0aQ7mX2C", "type": "event", "index": INDEX, "depth": 0}])
    );
    assert_eq!(field(&a, "kibana.alert.depth"), 1);
    assert_eq!(field(&a, "kibana.space_ids"), &json!(["default"]));
    assert_eq!(field(&a, "kibana.alert.status"), "active");
    assert_eq!(field(&a, "kibana.alert.workflow_status"), "open");
    assert_eq!(field(&a, "kibana.alert.workflow_tags"), &json!([]));
    assert_eq!(field(&a, "kibana.alert.severity"), "high");
    assert_eq!(field(&a, "kibana.alert.risk_score"), 73);
    assert!(s.get("kibana.alert.group.id").is_none());
    assert!(s.get("kibana.alert.group.index").is_none());
    assert!(s.get("kibana.alert.building_block_type").is_none());

    // §4.2 rule fields
    assert_eq!(field(&a, "kibana.alert.rule.uuid"), uuid);
    assert_eq!(field(&a, "kibana.alert.rule.rule_id"), "d84a11c0-eb12-4e7d-8a0a-718e38351e29");
    assert_eq!(field(&a, "kibana.alert.rule.name"), "Potential Machine Account Relay Attack via SMB");
    assert_eq!(field(&a, "kibana.alert.rule.type"), "eql");
    assert_eq!(field(&a, "kibana.alert.rule.rule_type_id"), "siem.eqlRule");
    assert_eq!(field(&a, "kibana.alert.rule.timestamp_override"), "event.ingested");
    assert_eq!(field(&a, "kibana.alert.rule.from"), "now-9m");
    assert_eq!(field(&a, "kibana.alert.rule.interval"), "5m");
    assert_eq!(field(&a, "kibana.alert.rule.max_signals"), 100);
    assert_eq!(field(&a, "kibana.alert.rule.threat").as_array().map(Vec::len), Some(2));
    let params = field(&a, "kibana.alert.rule.parameters");
    assert_eq!(params["query"], json!(rule.query));
    assert_eq!(params["language"], "eql");
    assert_eq!(params["index"], json!(rule.index));
    assert_eq!(params["timestamp_override"], "event.ingested");
    assert_eq!(params["rule_id"], "d84a11c0-eb12-4e7d-8a0a-718e38351e29");
    assert!(s.get("kibana.alert.rule.query").is_none(), "query lives only in parameters");
}

fn krb_4624() -> Event {
    Event::new(
        INDEX,
        "Nq3kLZYBd1Xk0aQ7mX2A",
        json!({
            "@timestamp": "2026-05-20T10:01:00.250Z",
            "agent": {"type": "filebeat", "version": "9.0.1", "id": "agent-1"},
            "data_stream": {"type": "logs", "dataset": "system.security", "namespace": "default"},
            "event": {"action": "logged-in", "category": ["authentication"], "code": "4624", "kind": "event",
                      "outcome": "success", "provider": "Microsoft-Windows-Security-Auditing", "type": ["start"]},
            "host": {"name": "ws01.corp.local", "os": {"type": "windows"}},
            "process": {"name": "-", "pid": 0},
            "source": {"ip": "127.0.0.1", "port": 0},
            "user": {"name": "Administrator", "domain": "CORP"},
            "winlog": {"computer_name": "ws01.corp.local", "event_id": "4624",
                       "event_data": {"TargetLogonId": "0x4c323", "AuthenticationPackageName": "Kerberos",
                                      "ElevatedToken": "%%1843"},
                       "logon": {"id": "0x3e7", "type": "Network"}}
        }),
    )
}

fn krb_4697() -> Event {
    Event::new(
        INDEX,
        "Ob3kLZYBd1Xk0aQ7mX2B",
        json!({
            "@timestamp": "2026-05-20T10:01:02.500Z",
            "agent": {"type": "filebeat", "version": "9.0.1", "id": "agent-1"},
            "data_stream": {"type": "logs", "dataset": "system.security", "namespace": "default"},
            "event": {"action": "service-installed", "category": ["iam", "configuration"], "code": "4697",
                      "kind": "event", "outcome": "success", "provider": "Microsoft-Windows-Security-Auditing",
                      "type": ["admin", "change"]},
            "host": {"name": "ws01.corp.local", "os": {"type": "windows"}},
            "service": {"name": "KrbSCM"},
            "user": {"name": "Administrator", "domain": "CORP"},
            "winlog": {"computer_name": "ws01.corp.local", "event_id": "4697",
                       "event_data": {"SubjectLogonId": "0x4c323", "ServiceName": "KrbSCM"},
                       "logon": {"id": "0x4c323"}}
        }),
    )
}

#[test]
fn krb_sequence_shell_and_building_blocks() {
    let rule = rule("privilege_escalation_krbrelayup_service_creation.toml");
    let uuid = "7b1c2a9e-3f0d-4c55-9a11-0d6e2f4b8c01";
    let docs = sequence_alerts(&rule, &ctx(uuid), &[krb_4624(), krb_4697()]);
    assert_eq!(docs.len(), 3, "2 building blocks + 1 shell");
    let (shell, bb0, bb1) = (&docs[0], &docs[1], &docs[2]);

    // §9.2/9.3 ids recomputed from the formulas, and the spec's worked example.
    let (e0, e1) = ("Nq3kLZYBd1Xk0aQ7mX2A", "Ob3kLZYBd1Xk0aQ7mX2B");
    let base = format!("{e0}{INDEX}{uuid}{e1}{INDEX}{uuid}");
    let (id0, id1) = (sha(&format!("{base}0")), sha(&format!("{base}1")));
    let shell_id = sha(&format!("{e0}{INDEX}{id0}{e1}{INDEX}{id1}{uuid}"));
    assert_eq!((bb0.id.as_str(), bb1.id.as_str(), shell.id.as_str()), (id0.as_str(), id1.as_str(), shell_id.as_str()));
    assert_eq!(shell.id, "3a760c8c835d6516cf4fcc4882d3420b34e710e7c0dc2529164e97474884d780");
    assert_eq!(bb0.id, "c2cd89d997be182db1bbeb67089c750a9911c619225247d181c6db45061efd8d");
    assert_eq!(bb1.id, "8d1d8af1c392637281cc8483be9fd005f6cd6fdfbd117a3771102755f4682794");

    // group fields
    for d in &docs {
        assert_eq!(field(d, "kibana.alert.group.id"), &json!(shell_id));
        assert_eq!(field(d, "kibana.alert.uuid"), &json!(d.id));
        assert_eq!(field(d, "event.kind"), "signal");
    }
    assert_eq!(field(bb0, "kibana.alert.group.index"), 0);
    assert_eq!(field(bb1, "kibana.alert.group.index"), 1);
    assert!(shell.source.get("kibana.alert.group.index").is_none());
    assert_eq!(field(bb0, "kibana.alert.building_block_type"), "default");
    assert!(shell.source.get("kibana.alert.building_block_type").is_none());

    // depth and ancestors
    assert_eq!(field(bb0, "kibana.alert.depth"), 1);
    assert_eq!(field(shell, "kibana.alert.depth"), 2);
    assert_eq!(
        field(bb1, "kibana.alert.ancestors"),
        &json!([{"id": e1, "type": "event", "index": INDEX, "depth": 0}])
    );
    assert_eq!(
        field(shell, "kibana.alert.ancestors"),
        &json!([
            {"id": e0, "type": "event", "index": INDEX, "depth": 0},
            {"id": id0, "type": "signal", "index": "", "depth": 1, "rule": uuid},
            {"id": e1, "type": "event", "index": INDEX, "depth": 0},
            {"id": id1, "type": "signal", "index": "", "depth": 1, "rule": uuid}
        ])
    );

    // times: BB original_time = its event; shell = first BB's @timestamp
    assert_eq!(field(bb0, "kibana.alert.original_time"), "2026-05-20T10:01:00.250Z");
    assert_eq!(field(bb1, "kibana.alert.original_time"), "2026-05-20T10:01:02.500Z");
    assert_eq!(field(shell, "kibana.alert.original_time"), field(bb0, "@timestamp"));

    // shell content = intersection
    let s = &shell.source;
    assert_eq!(s["winlog"]["computer_name"], "ws01.corp.local");
    assert_eq!(s["host"]["name"], "ws01.corp.local");
    assert_eq!(s["user"]["name"], "Administrator");
    assert_eq!(s["event"]["category"], json!([]));
    assert_eq!(s["event"]["type"], json!([]));
    assert_eq!(s["event"]["outcome"], "success");
    assert!(s["event"].get("action").is_none());
    assert!(s["event"].get("code").is_none());
    assert!(s["winlog"].get("event_id").is_none());
    assert!(s.get("source").is_none() && s.get("process").is_none() && s.get("service").is_none());
    assert_eq!(field(shell, "kibana.alert.original_event.outcome"), "success");
    assert_eq!(field(shell, "kibana.alert.original_event.category"), &json!([]));
    assert!(s.get("kibana.alert.original_event.code").is_none());

    // building blocks keep their own full source
    assert_eq!(bb0.source["event"]["action"], "logged-in");
    assert_eq!(bb1.source["event"]["action"], "service-installed");
    assert!(bb0.source["event"].get("kind").is_none());

    // §7 reasons
    let name = "Service Creation via Local Kerberos Authentication";
    assert_eq!(
        field(bb0, "kibana.alert.reason"),
        &json!(format!("authentication event with source 127.0.0.1 by Administrator on ws01.corp.local created high alert {name}."))
    );
    assert_eq!(
        field(bb1, "kibana.alert.reason"),
        &json!(format!("iam, configuration event by Administrator on ws01.corp.local created high alert {name}."))
    );
    assert_eq!(
        field(shell, "kibana.alert.reason"),
        &json!(format!("event by Administrator on ws01.corp.local created high alert {name}."))
    );
    assert!(shell.source.get("kibana.alert.rule.timestamp_override").is_none());
}

#[test]
fn own_alerts_are_not_alerted_again() {
    let rule = rule("privilege_escalation_krbrelayup_service_creation.toml");
    let uuid = "7b1c2a9e-3f0d-4c55-9a11-0d6e2f4b8c01";
    let docs = sequence_alerts(&rule, &ctx(uuid), &[krb_4624(), krb_4697()]);
    let as_event = Event::new(".internal.alerts-security.alerts-default-000001", docs[1].id.clone(), docs[1].source.clone());
    assert!(sequence_alerts(&rule, &ctx(uuid), &[as_event.clone(), krb_4697()]).is_empty());
    // Another rule may alert on it: lineage extends, depth grows.
    let other = event_alert(&rule, &ctx("another-rule"), &as_event);
    assert_eq!(other.source["kibana.alert.depth"], 2);
    let anc = other.source["kibana.alert.ancestors"].as_array().unwrap();
    assert_eq!(anc.len(), 2);
    assert_eq!(anc[1]["type"], "signal");
    assert_eq!(anc[1]["rule"], uuid);
    assert!(sequence_alerts(&rule, &ctx(uuid), &[]).is_empty());
}
