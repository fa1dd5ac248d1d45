#!/usr/bin/env bash
# THE test command (README, CI): runs every unit and integration test against a real Elasticsearch node.
#
#   bash scripts/test.sh [cargo test args...]
#
# Uses the node named by ESDETECT_TEST_ES_URL if it answers; else reuses the node this checkout already runs
# (scripts/elasticsearch.sh status); else starts one and stops it again on exit. Exits with cargo's status.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ES=scripts/elasticsearch.sh

started_here=0
cleanup() {
    if (( started_here )); then
        bash "$ES" stop || true
    fi
}
trap cleanup EXIT

if [[ -n "${ESDETECT_TEST_ES_URL:-}" ]] && curl -fsS --max-time 5 "$ESDETECT_TEST_ES_URL/_cluster/health" >/dev/null 2>&1; then
    echo "test.sh: using the node at ESDETECT_TEST_ES_URL=$ESDETECT_TEST_ES_URL"
elif bash "$ES" status >/dev/null 2>&1; then
    ESDETECT_TEST_ES_URL="$(cat .es/url)"
    echo "test.sh: reusing this checkout's running node at $ESDETECT_TEST_ES_URL"
else
    started_here=1
    ESDETECT_TEST_ES_URL="$(bash "$ES" start)"
    echo "test.sh: started a node at $ESDETECT_TEST_ES_URL (stopped again when the tests end)"
fi
export ESDETECT_TEST_ES_URL

echo "test.sh: GET / of the test node:"
curl -fsS --max-time 10 "$ESDETECT_TEST_ES_URL/" || echo "(GET / failed)"
echo

set +e
cargo test --workspace "$@"
status=$?
set -e
exit "$status"
