use super::*;
use std::path::Path;

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

fn minimal(rule_body: &str) -> String {
    format!("[metadata]\nmaturity = \"production\"\n\n[rule]\n{rule_body}")
}

const BASE: &str = r#"rule_id = "r1"
name = "N"
description = "D"
risk_score = 21
severity = "low"
index = ["logs-*"]
language = "eql"
type = "eql"
"#;

#[test]
fn seed_rules_load_with_kibana_defaults() {
    let (rules, errors) = load_dir(seed_dir());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(rules.len(), 2);
    // sorted by path: credential_access… before privilege_escalation…
    let smb = &rules[0];
    let krb = &rules[1];
    assert_eq!(smb.rule_id, "d84a11c0-eb12-4e7d-8a0a-718e38351e29");
    assert_eq!(smb.name, "Potential Machine Account Relay Attack via SMB");
    assert_eq!(krb.rule_id, "e4e31051-ee01-4307-a6ee-b21b186958f4");
    assert_eq!(krb.name, "Service Creation via Local Kerberos Authentication");
    for r in [smb, krb] {
        assert_eq!(r.from, "now-9m");
        assert_eq!(r.lookback, Duration::minutes(9));
        assert_eq!(r.to, "now");
        assert_eq!(r.interval, "5m");
        assert_eq!(r.interval_duration, Duration::minutes(5));
        assert_eq!(r.max_signals, 100);
        assert_eq!(r.risk_score, 73);
        assert_eq!(r.severity, "high");
        assert_eq!(r.index, ["logs-system.security*", "logs-windows.forwarded*", "winlogbeat-*"]);
        assert_eq!(r.author, ["Elastic"]);
        assert_eq!(r.license.as_deref(), Some("Elastic License v2"));
        assert_eq!(r.tags.len(), 8);
        assert_eq!(r.version, None);
        assert_eq!(r.threat.as_array().map(Vec::len), Some(2));
        assert!(r.note.as_deref().unwrap_or("").starts_with("## Triage and analysis"));
        assert_eq!(r.metadata["integration"], json!(["system", "windows"]));
        assert!(r.file_extra.contains_key("transform"));
        assert!(r.extra.is_empty(), "{:?}", r.extra);
    }
    assert_eq!(smb.timestamp_override.as_deref(), Some("event.ingested"));
    assert_eq!(krb.timestamp_override, None);
    assert!(krb.is_sequence());
    assert!(!smb.is_sequence());
    assert!(smb.query.starts_with("file where host.os.type == \"windows\""));
    assert_eq!(
        smb.investigation_fields.as_ref().and_then(|v| v["field_names"].as_array()).map(Vec::len),
        Some(15)
    );
}

#[test]
fn threat_has_kibana_shape() {
    let rule = load_file(seed_dir().join("credential_access_machine_account_smb_relay.toml")).unwrap();
    let t0 = &rule.threat[0];
    let keys: Vec<_> = t0.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["framework", "tactic", "technique"]);
    assert_eq!(t0["framework"], "MITRE ATT&CK");
    assert_eq!(
        t0["tactic"],
        json!({"id": "TA0006", "name": "Credential Access", "reference": "https://attack.mitre.org/tactics/TA0006/"})
    );
    assert_eq!(t0["technique"][0]["id"], "T1187");
    assert!(t0["technique"][0].get("subtechnique").is_none());
    assert_eq!(t0["technique"][1]["id"], "T1557");
    assert_eq!(t0["technique"][1]["subtechnique"][0]["id"], "T1557.001");
    assert_eq!(rule.threat[1]["tactic"]["id"], "TA0008");
    assert_eq!(rule.threat[1]["technique"][0]["subtechnique"][0]["name"], "SMB/Windows Admin Shares");
}

#[test]
fn query_origin_points_at_first_query_character() {
    for file in ["credential_access_machine_account_smb_relay.toml", "privilege_escalation_krbrelayup_service_creation.toml"] {
        let path = seed_dir().join(file);
        let rule = load_file(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let (line, col) = query_position_in_file(&rule);
        let line_text = text.lines().nth(line as usize - 1).unwrap();
        let at: String = line_text.chars().skip(col as usize - 1).collect();
        let first_query_line = rule.query.lines().next().unwrap();
        assert_eq!(at, first_query_line, "{file}");
        // the line before is `query = '''`
        assert_eq!(text.lines().nth(line as usize - 2), Some("query = '''"));
    }
}

#[test]
fn query_errors_map_to_file_positions() {
    let p = Path::new("r.toml");
    // query content starts at line 40, col 1 (multi-line string)
    let e = map_query_error(p, (40, 1), 3, 7, "unexpected token");
    assert_eq!((e.line, e.col), (42, 7));
    assert_eq!(e.field.as_deref(), Some("query"));
    assert_eq!(e.to_string(), "r.toml:42:7: unexpected token");
    // single-line string: the first query line is offset by the column of the content
    let e = map_query_error(p, (12, 10), 1, 5, "x");
    assert_eq!((e.line, e.col), (12, 14));
    let e = map_query_error(p, (12, 10), 2, 5, "x");
    assert_eq!((e.line, e.col), (13, 5));

    // End to end with a real seed rule: the `sequence` keyword's `by` on query line 1 col 10.
    let rule = load_file(seed_dir().join("privilege_escalation_krbrelayup_service_creation.toml")).unwrap();
    let e = rule.query_error(1, 10, "bad");
    let text = std::fs::read_to_string(&rule.path).unwrap();
    let line_text = text.lines().nth(e.line as usize - 1).unwrap();
    assert!(line_text.chars().skip(e.col as usize - 1).collect::<String>().starts_with("by winlog.computer_name"));
}

#[test]
fn single_line_query_origin() {
    let text = minimal(&format!("{BASE}query = 'process where true'\n"));
    let rule = parse_rule(Path::new("x.toml"), &text).unwrap();
    let (line, col) = rule.query_origin;
    let l = text.lines().nth(line as usize - 1).unwrap();
    assert_eq!(&l[col as usize - 1..], "process where true'");
}

#[test]
fn invalid_toml_reports_file_line_col() {
    let text = "[rule]\nname = \"x\"\nrisk_score = = 3\n";
    let err = parse_rule(Path::new("bad.toml"), text).unwrap_err();
    assert_eq!(err.line, 3);
    assert_eq!(err.col, 14);
    assert!(err.to_string().starts_with("bad.toml:3:14: invalid TOML"), "{err}");
    assert_eq!(err.kind, RuleErrorKind::Invalid);
}

#[test]
fn missing_query_names_the_field_at_the_rule_header() {
    let text = minimal(BASE);
    let err = parse_rule(Path::new("m.toml"), &text).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("query"));
    assert!(err.message.contains("`query`"), "{err}");
    // [rule] is on line 4
    assert_eq!((err.line, err.col), (4, 1));
}

#[test]
fn wrong_type_points_at_the_value() {
    let text = minimal(&format!("{BASE}query = 'any where true'\nmax_signals = \"many\"\n"));
    let err = parse_rule(Path::new("w.toml"), &text).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("max_signals"));
    let line = text.lines().position(|l| l.starts_with("max_signals")).unwrap() as u32 + 1;
    assert_eq!((err.line, err.col), (line, 15));
    assert!(err.message.contains("must be an integer, found a string"), "{err}");
}

#[test]
fn invalid_durations_name_the_field() {
    let text = minimal(&format!("{BASE}query = 'any where true'\nfrom = \"now-9q\"\n"));
    let err = parse_rule(Path::new("d.toml"), &text).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("from"));
    let text = minimal(&format!("{BASE}query = 'any where true'\ninterval = \"often\"\n"));
    let err = parse_rule(Path::new("d.toml"), &text).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("interval"));
}

#[test]
fn defaults_and_unknown_fields() {
    let text = minimal(&format!("{BASE}query = 'any where true'\nbrand_new_field = [1, 2]\n"));
    let rule = parse_rule(Path::new("u.toml"), &text).unwrap();
    assert_eq!(rule.from, "now-6m");
    assert_eq!(rule.lookback, Duration::minutes(6));
    assert_eq!(rule.interval, "5m");
    assert_eq!(rule.max_signals, 100);
    assert_eq!(rule.threat, json!([]));
    assert_eq!(rule.risk_score_mapping, json!([]));
    assert_eq!(rule.extra.get("brand_new_field"), Some(&toml::Value::Array(vec![1.into(), 2.into()])));
}

#[test]
fn non_eql_rules_are_skipped_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("nested");
    std::fs::create_dir(&sub).unwrap();
    let kql = BASE.replace("language = \"eql\"\ntype = \"eql\"", "language = \"esql\"\ntype = \"esql\"");
    std::fs::write(sub.join("kql.toml"), minimal(&format!("{kql}query = 'FROM a | LIMIT 1'\n"))).unwrap();
    std::fs::write(dir.path().join("a.toml"), minimal(&format!("{BASE}query = 'any where true'\n"))).unwrap();
    std::fs::write(dir.path().join("notes.md"), "not a rule").unwrap();
    let (rules, errors) = load_dir(dir.path());
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].rule_id, "r1");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, RuleErrorKind::Unsupported);
    assert!(errors[0].file.ends_with("nested/kql.toml"));
    assert!(errors[0].message.contains("is not run: ES|QL rules"), "{}", errors[0]);
}

#[test]
fn default_uuid_is_stable_and_not_the_rule_id() {
    let rule = load_file(seed_dir().join("credential_access_machine_account_smb_relay.toml")).unwrap();
    let a = rule.default_uuid();
    assert_eq!(a, rule.default_uuid());
    assert_eq!(a.get_version_num(), 5);
    // independently: v5 over the documented namespace
    let ns = Uuid::new_v5(&Uuid::NAMESPACE_URL, "https://github.com/esdetect/esdetect/rule".as_bytes());
    assert_eq!(a, Uuid::new_v5(&ns, "d84a11c0-eb12-4e7d-8a0a-718e38351e29".as_bytes()));
    assert_ne!(a.to_string(), rule.rule_id);
}

/// Rule files are parsed once into a `toml_edit` document; its values must be exactly what
/// `toml::from_str` reads from the same text, for every TOML construct a rule file can use.
#[test]
fn values_read_from_the_parsed_document_equal_toml_from_str() {
    let crafted = r#"
top = "x"
dotted.key.path = 1
[metadata]
creation_date = "2020/01/01"
list = [1, 2.5, -3, true, "s", 'lit', """multi
line""", [1, [2, {inline = "t", n.m = 2}]]]
when = 1979-05-27T07:32:00Z
local_date = 1979-05-27
local_time = 07:32:00
float = 6.02e23
hex = 0xff
[rule]
query = '''
sequence by host.id
  [any where true]
'''
threat = [{framework = "MITRE ATT&CK", technique = [{id = "T1", name = "n"}]}]
[[rule.threat_table]]
framework = "a"
[[rule.threat_table.technique]]
id = "T2"
[[rule.threat_table]]
framework = "b"
[rule.nested."quoted key"]
"a.b" = "c"
"#;
    let mut texts: Vec<(String, String)> = vec![("crafted".into(), crafted.into())];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("rules"), root.join("tests/fixtures"), root.join("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "toml") {
                texts.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    assert!(texts.len() >= 3, "the seed rules and fixtures are read");
    for (name, text) in texts {
        let expected = match toml::from_str::<toml::Table>(&text) {
            Ok(t) => t,
            Err(_) if name != "crafted" => continue, // a fixture of malformed TOML
            Err(e) => panic!("the crafted document must parse: {e}"),
        };
        let doc = toml_edit::ImDocument::parse(text.as_str()).unwrap();
        assert_eq!(toml_table(doc.as_table()), expected, "{name}");
    }
}
