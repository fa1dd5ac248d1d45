#!/usr/bin/env bash
# Side-by-side benchmark of the cluster data path: `esdetect run --once` (both seed rules, alerts written)
# against a bare point-in-time / `search_after` fetch of the same windows with byte-identical requests
# (scripts/bench/bare_fetch.py, Python standard library only, request bodies taken from `esdetect explain`):
# once parsing each page with json.loads as a user would ("bare-fetch"), once only searching the bytes for
# the PIT id and the last `sort` ("bare-read", the floor of any client). esdetect runs twice: "esdetect" with
# `[source] fetch = "filtered"` (pages carry only the rules' fields, then `_mget` of the alerts' events) and
# "esdetect-full" with `fetch = "full"` (the default); each peer runs with the filtered body and with the
# whole `_source` ("…-full"), so bytes and time can be compared both ways. Runs are interleaved (A B C, A B C,
# …) so that drift of this shared machine hits all alike; the table gives medians and per-round ratios of
# client CPU (user + sys), peak RSS and wall time, then the hits and bytes each contender read, as a check
# that they sent the same requests.
#
#   bash scripts/bench-cluster.sh               # 250 000 events, 3 rounds (also: MODE=cluster bash scripts/bench.sh)
#   EVENTS=100000 ROUNDS=5 bash scripts/bench-cluster.sh
#   ALERTS=keep bash scripts/bench-cluster.sh   # alerts of earlier rounds stay: every alert is a duplicate
#
# Elasticsearch: $ESDETECT_TEST_ES_URL if set, else the node of scripts/elasticsearch.sh (started if none
# answers, and then stopped again at the end). Bound to 127.0.0.1 only, as that script does.
# The events are simulated (`esdetect simulate`, in chunks of 50 000 to bound the simulator's memory) into
# namespace `bench` (indices `*-bench`: deleted and rewritten when they do not hold exactly EVENTS events, so
# keep nothing else in indices of that name), loaded once and reused. The table's "events" column is what
# the window of the rules holds. The first round after a node start is slower (cold caches). Alerts go to the alias
# `esdetect-bench-alerts-default`, emptied (documents deleted, the index kept) before every `run --once` so
# that every round does the same work: the dedup lookup finds nothing and every alert is written.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
EVENTS="${EVENTS:-250000}"
ROUNDS="${ROUNDS:-3}"
ALERTS="${ALERTS:-empty}"       # or "keep": a re-run of the same window, nothing new to write
CHUNK=50000
START="2026-11-20T10:00:00Z"   # the simulation starts here; 250 000 events reach about START + 10 min
NOW="2026-11-20T10:05:00Z"     # both rules look back 9 minutes from here: ~99 % of the events are in the window
ALIAS="esdetect-bench-alerts-default"
OUT=target/bench/cluster
mkdir -p "$OUT"

say() { echo "bench-cluster: $*" >&2; }

say "building (release)"
cargo build --release -q --bin esdetect
BIN=target/release/esdetect

STARTED_NODE=
if [[ -n "${ESDETECT_TEST_ES_URL:-}" ]]; then
    URL="$ESDETECT_TEST_ES_URL"
else
    if ! bash scripts/elasticsearch.sh status >/dev/null 2>&1; then
        STARTED_NODE=1
    fi
    bash scripts/elasticsearch.sh start >/dev/null
    URL="$(cat "${ESDETECT_ES_STATE:-$ROOT/.es}/url")"
fi
# The environment wins over the configuration file: point every esdetect call at this node and this setup.
export ESDETECT_ES_URL="$URL"
unset ESDETECT_CONFIG ESDETECT_RULES_DIR ESDETECT_SPACE ESDETECT_ALERTS_INDEX ESDETECT_PAGE_SIZE
stop_node() { if [[ -n "$STARTED_NODE" ]]; then bash scripts/elasticsearch.sh stop; fi; }
trap stop_node EXIT
say "Elasticsearch at $URL"

es() { # METHOD PATH [BODY] → response body; fails on HTTP errors
    local method=$1 path=$2
    if [[ $# -ge 3 ]]; then
        curl -fsS --max-time 600 -X "$method" -H 'Content-Type: application/json' "$URL$path" -d "$3"
    else
        curl -fsS --max-time 600 -X "$method" "$URL$path"
    fi
}
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

cat > "$OUT/esdetect.toml" <<EOF
rules_dir = "$ROOT/rules"

[elasticsearch]
urls = ["$URL"]

[alerts]
index = "esdetect-bench-alerts-{space}"
EOF
{ cat "$OUT/esdetect.toml"; printf '\n[source]\nfetch = "full"\n'; } > "$OUT/esdetect-full.toml"
printf '\n[source]\nfetch = "filtered"\n' >> "$OUT/esdetect.toml"

INDICES="logs-system.security*,logs-windows.forwarded*,winlogbeat-*"
WINDOW_QUERY='{"query":{"range":{"@timestamp":{"gte":"2026-11-20T09:56:00.000Z","lte":"2026-11-20T10:05:00.000Z"}}}}'
in_window() { es POST "/$INDICES/_count?ignore_unavailable=true&allow_no_indices=true" "$WINDOW_QUERY" | json_field '["count"]'; }
loaded() { es POST "/*-bench/_count?ignore_unavailable=true&allow_no_indices=true" '{}' | json_field '["count"]'; }

have=$(loaded)
if [[ "$have" != "$EVENTS" ]]; then
    say "namespace bench holds $have events, want $EVENTS: reloading it"
    for idx in $(es GET "/_cat/indices/*-bench?h=index" || true); do
        es DELETE "/$idx" >/dev/null
    done
    left=$EVENTS seed=1
    while (( left > 0 )); do
        n=$(( left < CHUNK ? left : CHUNK ))
        say "simulating $n events (seed $seed), $((left - n)) to go"
        "$BIN" simulate --count "$n" --start "$START" --seed "$seed" --namespace bench >/dev/null
        left=$((left - n)) seed=$((seed + 1))
    done
    es POST "/$INDICES/_refresh?ignore_unavailable=true" >/dev/null
    have=$(loaded)
    if [[ "$have" != "$EVENTS" ]]; then
        say "error: after loading, namespace bench holds $have events, not $EVENTS"
        exit 1
    fi
fi
have=$(in_window)
say "$have events (@timestamp) in the window ending $NOW; other events of the node in it are fetched too"

# The requests, exactly as a run sends them.
explains=()
for rule_id in $(sed -n 's/^rule_id = "\(.*\)"/\1/p' rules/*.toml); do
    f="$OUT/explain-$rule_id.txt"
    "$BIN" --config "$OUT/esdetect.toml" explain "$rule_id" --now "$NOW" > "$f"
    explains+=("$f")
done

empty_alerts() { # deletes the documents, not the index, so every run finds the alias as a daemon's run does
    # (this node has no _delete_by_query: the reindex module is not part of the server jar)
    python3 - "$URL" "$ALIAS" <<'PY'
import json, sys, urllib.error, urllib.request
url, alias = sys.argv[1], sys.argv[2]
def call(method, path, body, ctype="application/json"):
    req = urllib.request.Request(url + path, data=body, method=method, headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)
try:
    hits = call("POST", f"/{alias}/_search", b'{"size":10000,"_source":false,"query":{"match_all":{}}}')["hits"]["hits"]
except urllib.error.HTTPError as e:
    if e.code == 404:  # the first run creates the alias
        sys.exit(0)
    raise
if hits:
    lines = "".join(json.dumps({"delete": {"_index": h["_index"], "_id": h["_id"]}}) + "\n" for h in hits)
    r = call("POST", "/_bulk?refresh=true", lines.encode(), "application/x-ndjson")
    if r.get("errors"):
        sys.exit(f"could not delete the alerts of the last round: {r}")
PY
}

# run NAME STDOUT CMD… → appends "NAME wall user sys maxrss_kb" to $OUT/runs.txt; the command's stderr is
# kept in $OUT/NAME-stderr.txt (exit 3 is esdetect's "partial failure": the max_signals cap was reached)
run() {
    local name=$1 stdout=$2 rc=0; shift 2
    local errf="$OUT/${name%%/*}-stderr.txt"
    /usr/bin/time -f "$name %e %U %S %M" -a -o "$OUT/runs.txt" "$@" > "$stdout" 2>"$errf" || rc=$?
    if (( rc != 0 && rc != 3 )); then
        say "$name failed (exit $rc):"; cat "$errf" >&2; exit 1
    fi
}

: > "$OUT/runs.txt"
for r in $(seq "$ROUNDS"); do
    say "round $r of $ROUNDS"
    if [[ "$ALERTS" != keep ]]; then empty_alerts; fi
    run "esdetect/$EVENTS/$have" "$OUT/run-once-$r.json" \
        "$BIN" --config "$OUT/esdetect.toml" run --once --now "$NOW" --format json
    run "bare-fetch/$EVENTS/$have" /dev/null python3 scripts/bench/bare_fetch.py "$URL" "${explains[@]}"
    run "bare-read/$EVENTS/$have" /dev/null python3 scripts/bench/bare_fetch.py --read-only "$URL" "${explains[@]}"
    if [[ "$ALERTS" != keep ]]; then empty_alerts; fi
    run "esdetect-full/$EVENTS/$have" "$OUT/run-once-full-$r.json" \
        "$BIN" --config "$OUT/esdetect-full.toml" run --once --now "$NOW" --format json
    run "bare-fetch-full/$EVENTS/$have" /dev/null python3 scripts/bench/bare_fetch.py --full-source "$URL" "${explains[@]}"
    run "bare-read-full/$EVENTS/$have" /dev/null python3 scripts/bench/bare_fetch.py --read-only --full-source "$URL" "${explains[@]}"
done

echo "Elasticsearch $(es GET / | json_field '["version"]["number"]'), $have events in one window, $ROUNDS interleaved rounds" \
    "(esdetect = run --once, both seed rules; alerts: $ALERTS)"
python3 scripts/bench/report.py "$OUT/runs.txt" --wall
echo
echo "Bytes read per rule (response bodies), last round: search pages, then run --once's _mget of the alerts' events:"
python3 - "$OUT/run-once-$ROUNDS.json" "$OUT/run-once-full-$ROUNDS.json" "$OUT/bare-fetch-stderr.txt" "$OUT/bare-fetch-full-stderr.txt" <<'EOF'
import json, re, sys
def summaries(path):
    text = open(path).read()
    try:
        s = json.loads(text)
    except ValueError:  # one JSON document per line
        s = [json.loads(l) for l in text.splitlines() if l.strip()]
    if isinstance(s, dict):
        s = s.get("rules", [s])
    return {x.get("rule_id"): x for x in s}
def peer(path):
    out = {}
    for line in open(path):  # the last round's line per rule wins
        m = re.match(r"bare_fetch: .*explain-(.+)\.txt: (\d+) hits, (\d+) pages, (\d+) bytes", line)
        if m:
            out[m.group(1)] = (int(m.group(2)), int(m.group(4)))
    return out
filtered, full = summaries(sys.argv[1]), summaries(sys.argv[2])
pf, pfull = peer(sys.argv[3]), peer(sys.argv[4])
print("| rule | fetched | alerts written | run --once pages | + _mget | bare-fetch pages | run --once full pages | bare-fetch-full pages |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for rid, s in filtered.items():
    f = full.get(rid, {})
    print(f"| {rid} | {s.get('fetched')} | {s.get('alerts_written')} | {s.get('bytes_fetched')} | {s.get('bytes_mget')} "
          f"| {pf.get(rid, ('?', '?'))[1]} | {f.get('bytes_fetched')} | {pfull.get(rid, ('?', '?'))[1]} |")
EOF
