//! The lab's Kibana step (`lab/kibana_rules.py`), as far as this machine allows without Kibana or Docker:
//!
//! * the import file is exactly the rule files' `[rule]` tables (plus `enabled: false`), and esdetect reads it
//!   as a Kibana export with the same rules;
//! * the script's requests, sent to a local receiver standing in for Kibana (the import as multipart with
//!   that file, the alerts-index request, the read-back of each rule's id, Kibana's headers and basic auth),
//!   with the wait for Kibana's alias done against the real node;
//! * replace mode end to end on the real node: with the configuration the script wrote, `esdetect run
//!   --once` writes the lab's alerts into the Kibana-named alias, carrying the ids the receiver gave the rules.
//!
//! Not run here: a real Kibana answering these requests (and creating its alias), and the Alerts page.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri};
use chrono::{DurationRound, Utc};
use elasticsearch::http::Method;
use esdetect::es::{ConnectionConfig, EsClient};
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn rules_dir() -> PathBuf {
    Path::new(ROOT).join("rules")
}

fn script() -> PathBuf {
    Path::new(ROOT).join("lab").join("kibana_rules.py")
}

/// The seed rules' `[rule]` tables as JSON, by rule_id.
fn rule_tables() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(rules_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let doc: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let rule = esdetect::rules::toml_to_json(&doc["rule"]);
        out.insert(rule["rule_id"].as_str().unwrap().to_string(), rule);
    }
    assert_eq!(out.len(), 2, "two seed rules");
    out
}

fn python(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new("python3");
    cmd.arg(script()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("python3 (3.11+) runs the lab's Kibana step")
}

#[test]
fn the_import_file_is_the_rule_files_disabled_and_esdetect_reads_it_as_the_same_rules() {
    let dir = tempfile::tempdir().unwrap();
    let ndjson = dir.path().join("rules.ndjson");
    let out = python(&["--rules", rules_dir().to_str().unwrap(), "--ndjson", ndjson.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&ndjson).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "two rules and the export details line");
    assert_eq!(lines[2]["exported_count"], 2);
    assert_eq!(lines[2]["exported_rules_count"], 2);
    let tables = rule_tables();
    for line in &lines[..2] {
        let mut line = line.clone();
        assert_eq!(line["enabled"], false, "Kibana must not run the imported rules itself");
        line.as_object_mut().unwrap().remove("enabled");
        let id = line["rule_id"].as_str().unwrap().to_string();
        assert_eq!(line, tables[&id], "the import body of {id} is the rule file's [rule] table");
    }

    // esdetect reads the import as a Kibana export: the same rules as from the TOML files, disabled.
    let from_export = esdetect::rules::folder::load_path(&ndjson);
    assert!(from_export.errors.is_empty(), "{:?}", from_export.errors);
    let (from_toml, errors) = esdetect::rules::load_dir(rules_dir());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(from_export.rules.len(), 2);
    for r in &from_export.rules {
        let t = from_toml.iter().find(|t| t.rule_id == r.rule_id).expect("same rule ids");
        assert_eq!(
            (&r.name, &r.query, &r.index, r.lookback, r.interval_duration, r.risk_score, &r.severity, r.max_signals),
            (&t.name, &t.query, &t.index, t.lookback, t.interval_duration, t.risk_score, &t.severity, t.max_signals),
            "{}",
            r.rule_id
        );
        assert_eq!((&r.timestamp_override, &r.threat, &r.tags), (&t.timestamp_override, &t.threat, &t.tags));
    }
    let out = common::esdetect(dir.path(), &["--rules", ndjson.to_str().unwrap(), "validate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 skipped (2 disabled)"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// What the stand-in for Kibana received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path_and_query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Answers like Kibana's detection engine API: the import succeeds, the alerts index is acknowledged, a
/// rule read by rule_id has the id in `ids`.
async fn fake_kibana(ids: BTreeMap<String, String>) -> (Arc<Mutex<Vec<Received>>>, String) {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let state = got.clone();
    let app = axum::Router::new().fallback(move |method: HttpMethod, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (state, ids) = (state.clone(), ids.clone());
        async move {
            let path_and_query = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
            state.lock().unwrap().push(Received { method: method.to_string(), path_and_query: path_and_query.clone(), headers, body: body.to_vec() });
            let answer = if uri.path().ends_with("/api/detection_engine/rules/_import") {
                json!({"success": true, "success_count": ids.len(), "rules_count": ids.len(), "errors": []})
            } else if uri.path().ends_with("/api/detection_engine/index") {
                json!({"acknowledged": true})
            } else if let Some(rule_id) = uri.query().and_then(|q| q.strip_prefix("rule_id=")) {
                match ids.get(rule_id) {
                    Some(id) => json!({"id": id, "rule_id": rule_id, "enabled": false}),
                    None => return (StatusCode::NOT_FOUND, "{}".to_string()),
                }
            } else {
                return (StatusCode::NOT_FOUND, "{}".to_string());
            };
            (StatusCode::OK, answer.to_string())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (got, url)
}

/// Indices and templates of the test on the shared node, deleted on drop.
struct Cleanup {
    indices: Vec<String>,
    templates: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, indices, templates) = (common::es_url(), self.indices.clone(), self.templates.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let c = EsClient::new(&ConnectionConfig::for_url(url)).unwrap();
                for i in indices {
                    let q = [("expand_wildcards", "all".to_string()), ("ignore_unavailable", "true".to_string())];
                    let _ = c.raw(Method::Delete, &format!("/{i}"), &q, None).await;
                }
                for t in templates {
                    let _ = c.raw(Method::Delete, &format!("/_index_template/{t}"), &[], None).await;
                }
            })
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kibana_step_imports_reads_back_ids_and_esdetect_then_writes_into_kibanas_alias() {
    let url = common::es_url();
    let client = EsClient::new(&ConnectionConfig::for_url(url.clone())).unwrap();
    let tag = common::unique_index_name("kb").trim_start_matches("esdetect-test-").to_string();
    let ns = tag.replace('-', "_");
    let space = format!("esdetect-test-{tag}");
    let alias = format!(".alerts-security.alerts-{space}");
    let backing = format!(".internal.alerts-security.alerts-{space}-000001");
    let events = [format!("logs-system.security-{ns}"), format!("logs-windows.forwarded-{ns}"), format!("winlogbeat-8.19.0-{ns}")];
    let template = format!("esdetect-test-events-{ns}");
    let _cleanup = Cleanup {
        indices: events.iter().cloned().chain([backing.clone()]).collect(),
        templates: vec![template.clone()],
    };

    // Kibana's alias for the space, as Kibana creates it (here: by the test, with esdetect's alert mapping).
    let mappings = esdetect::alert::mapping::alerts_index_template(&[backing.clone()])["template"]["mappings"].clone();
    let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0, "index.hidden": true},
                      "mappings": mappings, "aliases": {&alias: {"is_write_index": true, "is_hidden": true}}});
    let (status, resp) = client.raw(Method::Put, &format!("/{backing}"), &[], Some(&body)).await.unwrap();
    assert_eq!(status, 200, "creating {backing}: {resp}");

    // The script against the stand-in for Kibana (and the real node for the alias).
    let ids: BTreeMap<String, String> = rule_tables().keys().map(|id| (id.clone(), uuid::Uuid::new_v4().to_string())).collect();
    let (got, kibana) = fake_kibana(ids.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("esdetect.toml");
    let lab_template = Path::new(ROOT).join("lab").join("esdetect.toml");
    let args: Vec<String> = [
        "--rules", rules_dir().to_str().unwrap(), "--template", lab_template.to_str().unwrap(), "--out", generated.to_str().unwrap(),
        "--kibana", &kibana, "--elasticsearch", &url, "--space", &space, "--wait", "10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        python(&args, &[("ELASTIC_PASSWORD", "lab-test-password")])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));

    let got = got.lock().unwrap().clone();
    let prefix = format!("/s/{space}/api/detection_engine");
    let paths: Vec<(String, String)> = got.iter().map(|r| (r.method.clone(), r.path_and_query.clone())).collect();
    let mut expected = vec![
        ("POST".to_string(), format!("{prefix}/rules/_import?overwrite=true")),
        ("POST".to_string(), format!("{prefix}/index")),
    ];
    expected.extend(ids.keys().map(|id| ("GET".to_string(), format!("{prefix}/rules?rule_id={id}"))));
    let (mut a, mut b) = (paths.clone(), expected.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b, "the requests, in any order of the read-backs");
    assert_eq!(paths[..2], expected[..2], "import first, then the alerts index");
    // `printf 'elastic:lab-test-password' | base64`
    let basic = "Basic ZWxhc3RpYzpsYWItdGVzdC1wYXNzd29yZA==";
    for r in &got {
        assert_eq!(r.headers["kbn-xsrf"], "esdetect-lab", "{r:?}");
        assert_eq!(r.headers["authorization"], basic, "{r:?}");
    }
    // The import: multipart with the import file in the `file` field; that file is what --ndjson writes.
    let import = &got[0];
    let content_type = import.headers["content-type"].to_str().unwrap().to_string();
    let boundary = content_type.strip_prefix("multipart/form-data; boundary=").expect("multipart").to_string();
    let body = String::from_utf8(import.body.clone()).unwrap();
    let part = body.split(&format!("--{boundary}")).nth(1).expect("one part");
    let (part_headers, content) = part.split_once("\r\n\r\n").expect("part headers");
    assert!(part_headers.contains("name=\"file\"") && part_headers.contains("filename="), "{part_headers}");
    let ndjson = dir.path().join("rules.ndjson");
    assert!(python(&["--rules", rules_dir().to_str().unwrap(), "--ndjson", ndjson.to_str().unwrap()], &[]).status.success());
    assert_eq!(content.trim_end_matches("\r\n"), std::fs::read_to_string(&ndjson).unwrap(), "the uploaded file");
    assert!(body.ends_with(&format!("--{boundary}--\r\n")));

    // The configuration it wrote: the lab's, with each rule's Kibana id, space and Kibana's alias.
    let config = esdetect::config::Config::load(Some(&generated), &|_| None).expect("the written config loads");
    for (rule_id, uuid) in &ids {
        let s = config.rule_settings(rule_id);
        assert_eq!(s.uuid.as_deref(), Some(uuid.as_str()));
        assert_eq!(config.alerts_alias(&s), alias);
        assert_eq!(s.schedule.as_deref(), Some("* * * * *"), "the lab's own settings are kept");
    }

    // Replace mode on the real node: the lab's events (this test's namespace), the rules reading only it,
    // and `run --once` with the written configuration writes into Kibana's alias with Kibana's rule ids.
    let body = json!({
        "index_patterns": events, "priority": 4322,
        "template": {"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": {
            "date_detection": false,
            "dynamic_templates": [{"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword", "ignore_above": 1024}}}],
            "properties": {"@timestamp": {"type": "date"}, "event": {"properties": {"ingested": {"type": "date"}, "created": {"type": "date"}}},
                           "source": {"properties": {"ip": {"type": "ip"}, "port": {"type": "long"}}},
                           "host": {"properties": {"ip": {"type": "ip"}}}, "process": {"properties": {"pid": {"type": "long"}}}}}}
    });
    let (status, resp) = client.raw(Method::Put, &format!("/_index_template/{template}"), &[], Some(&body)).await.unwrap();
    assert_eq!(status, 200, "{resp}");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let upstream = r#"index = ["logs-system.security*", "logs-windows.forwarded*", "winlogbeat-*"]"#;
    let ours = format!(r#"index = ["logs-system.security-{ns}", "logs-windows.forwarded-{ns}", "winlogbeat-*-{ns}"]"#);
    for entry in std::fs::read_dir(rules_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(upstream), "{} changed its index patterns; update this test", path.display());
            std::fs::write(rules.join(path.file_name().unwrap()), text.replace(upstream, &ours)).unwrap();
        }
    }
    let now = Utc::now().duration_trunc(chrono::Duration::seconds(1)).unwrap();
    let start = (now - chrono::Duration::minutes(6)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let now_s = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let run = |args: Vec<String>| {
        let url = url.clone();
        let cwd = dir.path().to_path_buf();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_esdetect"));
                cmd.current_dir(cwd).args(&args);
                for (k, _) in std::env::vars() {
                    if k.starts_with("ESDETECT_") || k == "NO_COLOR" {
                        cmd.env_remove(k);
                    }
                }
                cmd.env("ESDETECT_ES_URL", url).output().unwrap()
            })
            .await
            .unwrap()
        }
    };
    let common_args = |rest: &[&str]| -> Vec<String> {
        ["--config", generated.to_str().unwrap(), "--rules", rules.to_str().unwrap()].iter().chain(rest).map(|s| s.to_string()).collect()
    };
    let out = run(common_args(&["simulate", "--scenario", "all", "--count", "200", "--seed", "5", "--start", &start, "--namespace", &ns])).await;
    assert_eq!(out.status.code(), Some(0), "simulate: {}", String::from_utf8_lossy(&out.stderr));
    let out = run(common_args(&["run", "--once", "--now", &now_s, "--format", "json"])).await;
    assert_eq!(out.status.code(), Some(0), "run --once: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    client.raw(Method::Post, &format!("/{alias}/_refresh"), &[], None).await.unwrap();
    let body = json!({"size": 1000, "query": {"match_all": {}}});
    let (status, resp) = client.raw(Method::Post, &format!("/{alias}/_search"), &[], Some(&body)).await.unwrap();
    assert_eq!(status, 200, "{resp}");
    let hits = resp["hits"]["hits"].as_array().unwrap();
    assert!(!hits.is_empty(), "alerts in Kibana's alias");
    let mut per_rule: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for h in hits {
        assert_eq!(h["_index"], backing.as_str());
        let s = &h["_source"];
        per_rule.entry(s["kibana.alert.rule.rule_id"].as_str().unwrap().to_string()).or_default().insert(s["kibana.alert.rule.uuid"].as_str().unwrap().to_string());
        assert_eq!(s["kibana.space_ids"], json!([space]), "the space the rules were imported into");
    }
    let expected: BTreeMap<String, BTreeSet<String>> = ids.iter().map(|(k, v)| (k.clone(), BTreeSet::from([v.clone()]))).collect();
    assert_eq!(per_rule, expected, "both rules alerted, each with the id Kibana gave it");
}
