#!/usr/bin/env bash
# Starts, stops and reports on ONE real Elasticsearch node for esdetect's development and tests.
#
#   scripts/elasticsearch.sh start    start a node (or reuse the one recorded in .es/), wait for health yellow
#   scripts/elasticsearch.sh stop     stop the node this checkout started, and wait until it is gone
#   scripts/elasticsearch.sh status   print URL and version of the recorded node; exit 1 if none answers
#
# The node is the real Elasticsearch server assembled from Maven Central (see pom.xml: the server jar, its
# libraries, the transport-netty4 module), run by scripts/es-node/EsNode.java. It binds to 127.0.0.1 only,
# has security disabled and must never be exposed.
#
# Files (all under .es/, which is gitignored; or under $ESDETECT_ES_STATE):
#   .es/url        http://127.0.0.1:PORT of the running node
#   .es/pid        its process id
#   .es/node.log   its log (printed in part when start fails)
#   .es/home/      the assembled Elasticsearch home (jars, config, data)
#
# Environment:
#   ESDETECT_ES_STATE          state directory holding the files above, default .es/ of this checkout. Each
#                              state directory is its own node: tests use one to run a private node (which
#                              they may stop) beside the shared one.
#   ESDETECT_ES_HEAP           JVM heap, default 1g (at most 1g is the project rule for the dev node)
#   ESDETECT_ES_PORTS          HTTP port range, default 9200-9299 (first free port is used)
#   ESDETECT_ES_START_TIMEOUT  seconds to wait for health yellow, default 240
#   ESDETECT_JAVA              java binary to use (default: JDK 17 if installed, else $JAVA_HOME, else java)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${ESDETECT_ES_STATE:-$ROOT/.es}"
HOME_DIR="$STATE/home"
URL_FILE="$STATE/url"
PID_FILE="$STATE/pid"
LOG_FILE="$STATE/node.log"
HEAP="${ESDETECT_ES_HEAP:-1g}"
PORTS="${ESDETECT_ES_PORTS:-9200-9299}"
START_TIMEOUT="${ESDETECT_ES_START_TIMEOUT:-240}"

say() { echo "elasticsearch.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

# --- helpers ---------------------------------------------------------------------------------------------

# True if $1 answers the cluster health API.
answers() {
    curl -fsS --max-time 5 "$1/_cluster/health" >/dev/null 2>&1
}

# True if the recorded pid is alive and is our launcher (guards against a recycled pid).
pid_alive() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'EsNode.java'
}

# True while process $1 exists and is not a zombie. Used during startup, when the freshly forked child may not
# have exec'd java yet (so its command line does not show EsNode.java).
proc_running() {
    local state
    state="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

version_line() {
    local body
    body="$(curl -fsS --max-time 5 "$1/" 2>/dev/null)" || { echo "unknown version (GET / failed)"; return; }
    # No jq on fresh machines: pull the few fields out with sed.
    local number flavor lucene
    number="$(printf '%s' "$body" | sed -n 's/.*"number"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')"
    flavor="$(printf '%s' "$body" | sed -n 's/.*"build_flavor"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')"
    lucene="$(printf '%s' "$body" | sed -n 's/.*"lucene_version"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')"
    echo "Elasticsearch ${number:-?} (flavor ${flavor:-?}, Lucene ${lucene:-?})"
}

find_java() {
    local candidates=()
    [[ -n "${ESDETECT_JAVA:-}" ]] && candidates+=("$ESDETECT_JAVA")
    # Elasticsearch 8.19 is tested here on JDK 17 (Debian's default JDK); prefer it when present.
    candidates+=(/usr/lib/jvm/java-17-openjdk-amd64/bin/java)
    [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
    candidates+=("$(command -v java || true)")
    local j
    for j in "${candidates[@]}"; do
        [[ -n "$j" && -x "$j" && -x "$(dirname "$j")/javac" ]] || continue
        local major
        major="$("$j" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
        if [[ "$major" =~ ^[0-9]+$ ]] && (( major >= 17 )); then
            echo "$j"
            return 0
        fi
    done
    die "no JDK 17 or newer with javac found (install openjdk-17-jdk-headless, or set ESDETECT_JAVA)"
}

# Lays out .es/home from the Maven artifacts, unless it is already built from the same inputs.
assemble_home() {
    local java="$1" javac jar stamp
    javac="$(dirname "$java")/javac"
    jar="$(dirname "$java")/jar"
    stamp="$(cat "$ROOT/pom.xml" "$ROOT/scripts/es-node/RootInfoPlugin.java" | sha256sum | cut -c1-16)-$("$java" -version 2>&1 | head -1 | tr -dc 'A-Za-z0-9.')"
    if [[ -f "$HOME_DIR/.stamp" && "$(cat "$HOME_DIR/.stamp")" == "$stamp" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (install Debian's 'maven' package)"
    say "assembling Elasticsearch home from Maven Central artifacts (cached in ~/.m2) ..."
    local jars="$STATE/jars.tmp"
    rm -rf "$jars" "$HOME_DIR/lib" "$HOME_DIR/modules" "$HOME_DIR/plugins" "$HOME_DIR/config" "$HOME_DIR/.stamp"
    mkdir -p "$jars"
    if ! mvn -B -q -Dstyle.color=never -f "$ROOT/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$jars" >"$STATE/mvn.log" 2>&1; then
        tail -n 40 "$STATE/mvn.log" >&2
        die "mvn could not resolve the Elasticsearch artifacts (log: $STATE/mvn.log)"
    fi
    local es_version
    es_version="$(sed -n 's:.*<es.version>\(.*\)</es.version>.*:\1:p' "$ROOT/pom.xml")"
    local netty="$HOME_DIR/modules/transport-netty4"
    mkdir -p "$HOME_DIR/lib" "$netty" "$HOME_DIR/plugins/esdetect-root" "$HOME_DIR/config" "$HOME_DIR/tmp"
    local f
    for f in "$jars"/*.jar; do
        case "$(basename "$f")" in
            # The module and the libraries only it uses live in the module directory, as in the distribution.
            transport-netty4-*.jar | netty-*.jar | elasticsearch-ssl-config-*.jar) mv "$f" "$netty/" ;;
            *) mv "$f" "$HOME_DIR/lib/" ;;
        esac
    done
    rm -rf "$jars"
    [[ -f "$HOME_DIR/lib/elasticsearch-$es_version.jar" ]] || die "server jar elasticsearch-$es_version.jar missing after mvn"
    # The module jar carries its own descriptor; the node reads it from the module directory.
    (cd "$netty" && "$jar" xf "transport-netty4-$es_version.jar" "META-INF/es-plugins/transport-netty4/plugin-descriptor.properties" \
        && mv META-INF/es-plugins/transport-netty4/plugin-descriptor.properties . && rm -rf META-INF)
    # GET / comes from the rest-root module in the distribution, which Maven Central lacks: add our own.
    local classes="$STATE/classes.tmp"
    rm -rf "$classes"
    mkdir -p "$classes"
    "$javac" -nowarn -d "$classes" -cp "$HOME_DIR/lib/*" "$ROOT/scripts/es-node/RootInfoPlugin.java" >"$STATE/javac.log" 2>&1 \
        || { cat "$STATE/javac.log" >&2; die "could not compile scripts/es-node/RootInfoPlugin.java"; }
    "$jar" cf "$HOME_DIR/plugins/esdetect-root/esdetect-root.jar" -C "$classes" .
    rm -rf "$classes"
    cat >"$HOME_DIR/plugins/esdetect-root/plugin-descriptor.properties" <<EOF
description=GET / and HEAD / for the esdetect development node (rest-root is not on Maven Central)
version=$es_version
name=esdetect-root
classname=dev.esdetect.devnode.RootInfoPlugin
java.version=17
elasticsearch.version=$es_version
EOF
    cat >"$HOME_DIR/config/log4j2.properties" <<'EOF'
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
EOF
    echo "$stamp" >"$HOME_DIR/.stamp"
}

# --- commands --------------------------------------------------------------------------------------------

cmd_status() {
    if [[ -f "$URL_FILE" ]] && answers "$(cat "$URL_FILE")"; then
        local url
        url="$(cat "$URL_FILE")"
        echo "running: $url ($(version_line "$url"), pid $(cat "$PID_FILE" 2>/dev/null || echo '?'))"
        return 0
    fi
    if pid_alive; then
        echo "starting or unresponsive: pid $(cat "$PID_FILE"), log $LOG_FILE"
        return 1
    fi
    echo "not running"
    return 1
}

fail_start() {
    say "error: $*"
    if [[ -f "$LOG_FILE" ]]; then
        say "last lines of $LOG_FILE:"
        tail -n 60 "$LOG_FILE" >&2
    fi
    local pid="${launched:-}"
    if [[ -z "$pid" ]] && pid_alive; then pid="$(cat "$PID_FILE")"; fi
    if [[ -n "$pid" ]] && proc_running "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for i in $(seq 1 20); do proc_running "$pid" || break; sleep 0.5; done
        proc_running "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE" "$URL_FILE"
    exit 1
}

cmd_start() {
    local launched=""
    # Reuse a node this checkout already runs.
    if [[ -f "$URL_FILE" ]] && answers "$(cat "$URL_FILE")"; then
        say "reusing running node ($(version_line "$(cat "$URL_FILE")"))"
        cat "$URL_FILE"
        return 0
    fi
    if ! pid_alive; then
        rm -f "$PID_FILE" "$URL_FILE" "$HOME_DIR/http.url"
        local java
        java="$(find_java)"
        assemble_home "$java"
        say "starting Elasticsearch (heap $HEAP, $java) ..."
        # setsid: the node outlives the shell that started it; `stop` ends it. 9>&-: it must not hold the lock.
        setsid "$java" \
            -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:-OmitStackTraceInFastThrow \
            -Djava.io.tmpdir="$HOME_DIR/tmp" -Dfile.encoding=UTF-8 \
            -Dlog4j2.formatMsgNoLookups=true -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true \
            -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \
            --module-path "$HOME_DIR/lib" --add-modules ALL-MODULE-PATH \
            "$ROOT/scripts/es-node/EsNode.java" "$HOME_DIR" "$PORTS" "$HOME_DIR/http.url" \
            >"$LOG_FILE" 2>&1 </dev/null 9>&- &
        echo $! >"$PID_FILE"
        launched=$!
    else
        say "a node started by this checkout is still coming up (pid $(cat "$PID_FILE")); waiting for it"
    fi

    local deadline=$((SECONDS + START_TIMEOUT)) url=""
    while (( SECONDS < deadline )); do
        if [[ -n "$launched" ]]; then
            proc_running "$launched" || fail_start "the node exited during startup"
        else
            pid_alive || fail_start "the node exited during startup"
        fi
        if [[ -s "$HOME_DIR/http.url" ]]; then
            url="$(cat "$HOME_DIR/http.url")"
            if curl -fsS --max-time 10 "$url/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null 2>&1; then
                echo "$url" >"$URL_FILE"
                say "node is up at $url ($(version_line "$url"))"
                echo "$url"
                return 0
            fi
        fi
        sleep 1
    done
    fail_start "no health yellow within ${START_TIMEOUT}s"
}

cmd_stop() {
    if ! pid_alive; then
        say "no node started by this checkout is running"
        rm -f "$PID_FILE" "$URL_FILE"
        return 0
    fi
    local pid
    pid="$(cat "$PID_FILE")"
    say "stopping node (pid $pid) ..."
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 60); do
        [[ -d "/proc/$pid" ]] || break
        sleep 0.5
    done
    if [[ -d "/proc/$pid" ]]; then
        say "node did not stop within 30s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$PID_FILE" "$URL_FILE"
    say "stopped"
}

mkdir -p "$STATE"
case "${1:-}" in
    start | stop | status)
        # One command at a time per checkout: two concurrent starts must not launch two nodes.
        exec 9>"$STATE/lock"
        flock 9
        "cmd_$1"
        ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
