#!/usr/bin/env python3
"""The lab's Kibana step: import the seed rules into Kibana (disabled) and point esdetect at them.

Why: Kibana's Security -> Alerts page shows alerts of rules Kibana knows, read from its own alerts alias
(`.alerts-security.alerts-<space>`). This script

1. builds a Kibana rule import (NDJSON, the format of the Detection rules page's export) from the
   detection-rules TOML files, every rule `enabled: false` so Kibana never runs them itself;
2. imports it through the detection engine API (`_import?overwrite=true`, so a second run updates);
3. asks Kibana to create its alerts index for the space and waits until the alias exists in Elasticsearch;
4. reads back each rule's saved-object id and writes an esdetect configuration (the lab's template plus,
   per rule, `uuid` = that id and `alerts_index` = Kibana's alias): esdetect then writes the alerts Kibana
   would write, with Kibana's ids, linked to the imported rules ("replace mode").

`--plan` prints the requests instead of sending them (used by the tests); `--ndjson FILE` only writes the
import file. Standard library only (Python 3.11+ for tomllib).
"""

import argparse
import base64
import json
import os
import pathlib
import sys
import time
import tomllib
import urllib.error
import urllib.request

BOUNDARY = "esdetect-lab-boundary-7f3a9c"


def load_rules(rules_dir):
    """The [rule] tables of the EQL rules in rules_dir (sorted by file name)."""
    rules = []
    for path in sorted(pathlib.Path(rules_dir).glob("*.toml")):
        with open(path, "rb") as f:
            doc = tomllib.load(f)
        rule = doc.get("rule")
        if not isinstance(rule, dict) or rule.get("type") != "eql":
            continue
        rules.append((path, rule))
    if not rules:
        sys.exit(f"kibana_rules: no EQL rule in {rules_dir}")
    return rules


def import_body(rule):
    """A rule object of Kibana's import: the detection-rules [rule] table (its keys are the API's), disabled."""
    body = dict(rule)
    body["enabled"] = False
    return body


def import_ndjson(rules):
    """The import file: one rule per line, then the export details line Kibana writes (and skips on import)."""
    lines = [json.dumps(import_body(rule), ensure_ascii=False) for _, rule in rules]
    n = len(lines)
    details = {
        "exported_count": n,
        "exported_rules_count": n,
        "missing_rules": [],
        "missing_rules_count": 0,
        "exported_exception_list_count": 0,
        "exported_exception_list_item_count": 0,
        "missing_exception_list_item_count": 0,
        "missing_exception_list_items": [],
        "missing_exception_lists": [],
        "missing_exception_lists_count": 0,
        "exported_action_connector_count": 0,
    }
    return "\n".join(lines + [json.dumps(details)]) + "\n"


def multipart(ndjson):
    """multipart/form-data with the import file in the `file` field, as the rules page uploads it."""
    body = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="esdetect-lab-rules.ndjson"\r\n'
        "Content-Type: application/ndjson\r\n\r\n"
        f"{ndjson}\r\n"
        f"--{BOUNDARY}--\r\n"
    ).encode("utf-8")
    return body, f"multipart/form-data; boundary={BOUNDARY}"


def space_prefix(space):
    return "" if space == "default" else f"/s/{space}"


def kibana_headers(user, password):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"kbn-xsrf": "esdetect-lab", "elastic-api-version": "2023-10-31", "Authorization": f"Basic {token}"}


def config_with_uuids(template, uuids, space):
    """The lab's esdetect.toml with, per rule, Kibana's rule id and alias (a section is added if missing)."""
    alias = ".alerts-security.alerts-{space}"
    lines = template.splitlines()
    out = []
    done = set()
    for line in lines:
        out.append(line)
        header = line.strip()
        for rule_id, uuid in uuids.items():
            if header == f'[rules."{rule_id}"]':
                out.append(f'uuid = "{uuid}"')
                out.append(f'space = "{space}"')
                out.append(f'alerts_index = "{alias}"')
                done.add(rule_id)
    for rule_id, uuid in uuids.items():
        if rule_id not in done:
            out += ["", f'[rules."{rule_id}"]', f'uuid = "{uuid}"', f'space = "{space}"', f'alerts_index = "{alias}"']
    header = (
        "# Written by lab/kibana_rules.py: the lab's esdetect.toml plus, per rule, the id Kibana gave the imported\n"
        "# (disabled) rule and Kibana's alerts alias, so esdetect's alerts are Kibana's own, linked to those rules.\n"
    )
    return header + "\n".join(out) + "\n"


def request(method, url, headers, body=None, timeout=30):
    """(status, parsed JSON or text) of one request; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rules", required=True, help="folder of detection-rules TOML files")
    p.add_argument("--template", help="the lab's esdetect.toml")
    p.add_argument("--out", help="where to write esdetect's configuration")
    p.add_argument("--kibana", default="http://kibana:5601")
    p.add_argument("--elasticsearch", default="http://elasticsearch:9200")
    p.add_argument("--user", default="elastic")
    p.add_argument("--password-env", default="ELASTIC_PASSWORD", help="environment variable holding the password")
    p.add_argument("--space", default="default")
    p.add_argument("--wait", type=float, default=120, help="seconds to wait for Kibana's alerts alias")
    p.add_argument("--ndjson", help="only write the import file here")
    p.add_argument("--plan", action="store_true", help="print the requests as JSON lines instead of sending them")
    a = p.parse_args(argv)

    rules = load_rules(a.rules)
    ndjson = import_ndjson(rules)
    if a.ndjson:
        pathlib.Path(a.ndjson).write_text(ndjson, encoding="utf-8")
        return 0
    if not (a.template and a.out):
        p.error("--template and --out are needed (or --ndjson)")
    password = os.environ.get(a.password_env, "")
    headers = kibana_headers(a.user, password)
    kibana = a.kibana.rstrip("/") + space_prefix(a.space)
    body, content_type = multipart(ndjson)
    steps = [
        ("POST", f"{kibana}/api/detection_engine/rules/_import?overwrite=true", dict(headers, **{"Content-Type": content_type}), body),
        ("POST", f"{kibana}/api/detection_engine/index", headers, None),
    ]
    if a.plan:
        for method, url, h, b in steps:
            print(json.dumps({"method": method, "url": url, "headers": h, "body": b.decode() if b else None}))
        for _, rule in rules:
            print(json.dumps({"method": "GET", "url": f"{kibana}/api/detection_engine/rules?rule_id={rule['rule_id']}", "headers": headers}))
        return 0

    status, answer = request(*steps[0])
    if status != 200 or not isinstance(answer, dict) or answer.get("errors") or answer.get("success_count") != len(rules):
        sys.exit(f"kibana_rules: importing the rules failed (HTTP {status}): {answer}")
    print(f"kibana_rules: imported {len(rules)} rule(s) into Kibana (disabled)")
    status, answer = request(*steps[1])
    if status not in (200, 409):
        print(f"kibana_rules: Kibana did not create its alerts index (HTTP {status}: {answer}); waiting for the alias anyway")
    alias = f".alerts-security.alerts-{a.space}"
    es_headers = {"Authorization": headers["Authorization"]}
    deadline = time.monotonic() + a.wait
    while True:
        status, _ = request("GET", f"{a.elasticsearch.rstrip('/')}/_alias/{alias}", es_headers)
        if status == 200:
            break
        if time.monotonic() > deadline:
            sys.exit(f"kibana_rules: {alias} did not appear within {a.wait:.0f}s; open Security -> Alerts in Kibana once and run the seeder again")
        time.sleep(2)
    uuids = {}
    for _, rule in rules:
        status, answer = request("GET", f"{kibana}/api/detection_engine/rules?rule_id={rule['rule_id']}", headers)
        if status != 200 or not isinstance(answer, dict) or "id" not in answer:
            sys.exit(f"kibana_rules: cannot read back rule {rule['rule_id']} (HTTP {status}): {answer}")
        uuids[rule["rule_id"]] = answer["id"]
    template = pathlib.Path(a.template).read_text(encoding="utf-8")
    pathlib.Path(a.out).write_text(config_with_uuids(template, uuids, a.space), encoding="utf-8")
    for rule_id, uuid in uuids.items():
        print(f"kibana_rules: rule {rule_id} is Kibana rule {uuid}; esdetect writes its alerts into {alias}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
