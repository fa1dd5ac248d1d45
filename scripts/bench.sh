#!/usr/bin/env bash
# Side-by-side benchmark of the offline data path: `esdetect test` against the peer a user would pick instead
# (Python eql 1.0.1) and two floors (parsing every line into serde_json::Value; only reading the lines), on
# time-sorted simulated Windows Security events. Runs are interleaved (A B C D, A B C D, …) so that drift of
# this shared machine hits every contender alike; figures are medians and ratios per round.
#
#   bash scripts/bench.sh                 # sizes 20000 320000 1000000, 3 rounds
#   SIZES="20000 10000000" ROUNDS=5 bash scripts/bench.sh
#   RULES=1000 bash scripts/bench.sh      # also 1,000 generated rules vs the 2 seed rules (100 k events)
#   SIZES= STREAM="200000 1000000 10000000" ROUNDS=1 bash scripts/bench.sh   # streamed through stdin, no file (below)
#   MODE=cluster bash scripts/bench.sh    # `run --once` vs a bare PIT/search_after fetch: scripts/bench-cluster.sh
#
# Needs: cargo, python3 (a virtualenv with eql==1.0.1 is created in target/bench/venv), /usr/bin/time.
# Event files are cached in target/bench/ (10 M events are ~22 GB).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ "${MODE:-file}" == cluster ]]; then
    exec bash scripts/bench-cluster.sh
fi
SIZES="${SIZES-20000 320000 1000000}"  # SIZES= (empty): no file sizes, e.g. with STREAM
ROUNDS="${ROUNDS:-3}"
OUT=target/bench
mkdir -p "$OUT"

echo "bench: building (release)" >&2
cargo build --release -q --bin esdetect --example parse_floor
BIN=target/release/esdetect
FLOOR=target/release/examples/parse_floor

if [[ ! -x "$OUT/venv/bin/python" ]]; then
    echo "bench: creating $OUT/venv with eql==1.0.1" >&2
    python3 -m venv "$OUT/venv"
    "$OUT/venv/bin/pip" install -q eql==1.0.1
fi
PY="$OUT/venv/bin/python"

events_file() { # N → path of a time-sorted NDJSON file of ~N simulated events (search hits)
    local n=$1 f="$OUT/events-$1.ndjson"
    if [[ ! -s "$f" ]]; then
        echo "bench: simulating $n events into $f" >&2
        "$BIN" simulate --count "$n" --start 2026-11-20T10:00:00Z --seed 42 --stdout > "$f.tmp" 2>/dev/null
        mv "$f.tmp" "$f"
    fi
    echo "$f"
}

# run NAME CMD… → appends "NAME wall user sys maxrss_kb" to $OUT/runs.txt
# (exit 3 is esdetect's "partial failure": the max_signals cap was reached, as it is on these files)
run() {
    local name=$1 rc=0; shift
    /usr/bin/time -f "$name %e %U %S %M" -a -o "$OUT/runs.txt" "$@" > /dev/null 2>"$OUT/last-stderr.txt" || rc=$?
    if (( rc != 0 && rc != 3 )); then
        echo "bench: $name failed (exit $rc):" >&2; cat "$OUT/last-stderr.txt" >&2; exit 1
    fi
}

: > "$OUT/runs.txt"
for n in $SIZES; do
    f=$(events_file "$n")
    lines=$(wc -l < "$f")
    for r in $(seq "$ROUNDS"); do
        run "esdetect/$n/$lines" "$BIN" test --events "$f" --rules rules --format ndjson
        if (( n <= 1000000 )); then  # Python eql at 10 M events would take hours
            run "python-eql/$n/$lines" "$PY" scripts/bench/eql_peer.py "$f" rules/*.toml
        fi
        run "parse-value/$n/$lines" "$FLOOR" value "$f"
        run "read-only/$n/$lines" "$FLOOR" read "$f"
    done
done

if [[ -n "${RULES:-}" ]]; then
    f=$(events_file 100000)
    lines=$(wc -l < "$f")
    many="$OUT/rules-$RULES"
    "$PY" scripts/bench/many_rules.py rules "$many" "$RULES"
    for r in $(seq "$ROUNDS"); do
        run "esdetect-2-rules/100000/$lines" "$BIN" test --events "$f" --rules rules --format ndjson
        run "esdetect-$RULES-rules/100000/$lines" "$BIN" test --events "$f" --rules "$many" --format ndjson
    done
fi

# Sizes no file can hold (22 GB at 10 M), piped into `esdetect test --events -`: the simulator streams in
# bounded memory (~80 MiB whatever --count), so any N is one pipe. Events come in chunks of STREAM_CHUNK
# (200 000) simulated events, each starting ten simulated minutes after the previous one (a chunk spans at
# most ten minutes, so the stream stays in time order): the density, and with it the open sequence state,
# stays that of one chunk at every N, which is what "cost per event flat from 20 k to 10 M" compares. (One
# simulation of N events puts them all into four simulated minutes: STREAM_CHUNK=N gives that.) esdetect is
# timed as `esdetect-stdin`, the generator beside it as `simulate-stdout` (all its chunks together).
CHUNK="${STREAM_CHUNK:-200000}"
stream_events() { # N → NDJSON hits of N events on stdout
    local n=$1 k=0 left=$1 c
    while ((left > 0)); do
        c=$((left < CHUNK ? left : CHUNK))
        "$BIN" simulate --count "$c" --start "$(date -u -d "2026-11-20T10:00:00Z + $((10 * k)) minutes" +%Y-%m-%dT%H:%M:%SZ)" \
            --seed $((42 + k)) --stdout 2>/dev/null
        left=$((left - c)) k=$((k + 1))
    done
}
export -f stream_events
export BIN CHUNK
for n in ${STREAM:-}; do
    for r in $(seq "$ROUNDS"); do
        /usr/bin/time -f "simulate-stdout/$n/$n %e %U %S %M" -a -o "$OUT/runs.txt" bash -c "stream_events $n" \
            | run "esdetect-stdin/$n/$n" "$BIN" test --events - --rules rules --format ndjson
    done
done

python3 scripts/bench/report.py "$OUT/runs.txt"
