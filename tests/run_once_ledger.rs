//! `esdetect run --once` against the live node, through the real binary: a rule whose index patterns
//! match no index ends as Kibana's partial failure with Kibana's warning, and every `run --once` execution
//! is in the ledger (execution type `manual`), so `esdetect status` shows it.
//! Needs ESDETECT_TEST_ES_URL: without a node the test fails (tests/common).

use crate::common;

use common::esdetect;

use std::path::Path;

use elasticsearch::http::Method;
use esdetect::es::{ConnectionConfig, EsClient};
use serde_json::Value;

const SMB_RULE_ID: &str = "d84a11c0-eb12-4e7d-8a0a-718e38351e29";

/// Deletes the test's indices (by exact name) when dropped, also on failure.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let names = self.0.join(",");
        let url = common::es_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let client = EsClient::new(&ConnectionConfig::for_url(url)).ok()?;
                let path = format!("/{names}?ignore_unavailable=true");
                client.raw(Method::Delete, &path, &[], None).await.ok()
            })
        })
        .join();
    }
}

#[test]
fn a_run_once_over_no_matching_index_is_a_partial_failure_and_is_in_the_ledger() {
    let url = common::es_url();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let (state, ledger, alerts) = (format!("esdetect-t-state-{tag}"), format!("esdetect-t-ledger-{tag}"), format!("esdetect-t-alerts-{tag}"));
    let _cleanup = Cleanup(vec![state.clone(), ledger.clone(), format!("{alerts}-000001")]);
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let original = "index = [\"logs-system.security*\", \"logs-windows.forwarded*\", \"winlogbeat-*\"]";
    let pattern = format!("nothing-here-{tag}-*");
    let rule = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/credential_access_machine_account_smb_relay.toml"))
        .unwrap()
        .replacen(original, &format!("index = [\"{pattern}\"]"), 1);
    std::fs::write(rules.join("smb.toml"), rule).unwrap();
    let config = dir.path().join("esdetect.toml");
    std::fs::write(
        &config,
        format!(
            "rules_dir = \"rules\"\n[elasticsearch]\nurls = [\"{url}\"]\n[alerts]\nindex = \"{alerts}\"\n\
             [scheduler]\nstate_index = \"{state}\"\nledger_index = \"{ledger}\"\nowner = \"once\"\n"
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();

    let out = esdetect(dir.path(), &["--no-color", "--config", c, "run", "--once", "--format", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "partial failure → exit 3; stdout {stdout} stderr {}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let warnings = summary["warnings"].as_array().unwrap();
    let expected = format!(
        "This rule is attempting to query data from Elasticsearch indices listed in the \"Index patterns\" section of \
         the rule definition, however no index matching: [\"{pattern}\"] was found. This warning will continue to \
         appear until a matching index is created or this rule is disabled."
    );
    assert_eq!(warnings, &vec![Value::String(expected.clone())], "{summary}");

    // The ledger is searched, so the entry shows once the node has refreshed (within about a second).
    let mut runs: Vec<Value> = Vec::new();
    for _ in 0..20 {
        let out = esdetect(dir.path(), &["--no-color", "--config", c, "status", "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        runs = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.get("run").cloned())
            .collect();
        if !runs.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(runs.len(), 1, "one ledger entry for the one run: {runs:?}");
    let run = &runs[0];
    assert_eq!(run["rule_id"], SMB_RULE_ID);
    // The table summary names the cluster it ran against.
    let out = esdetect(dir.path(), &["--no-color", "--config", c, "run", "--once"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("cluster: {url}")), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(run["execution_type"], "manual");
    assert_eq!(run["status"], "partial failure");
    assert_eq!(run["message"], Value::String(expected));
    assert!(run["owner"].as_str().unwrap().starts_with("once-"), "per-process owner id: {run}");
}
