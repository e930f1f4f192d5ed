#!/usr/bin/env bash
# Check-in throughput of exemptd against a static nginx answering the same mTLS requests.
#
#   bench/run.sh [BUILD_DIR]          (default: build; run as root, it may apt-get nginx-light)
#
# Makes a dev PKI in a temporary folder, starts nginx (a fixed JSON answer for POST /v1/checkin,
# the same TLS settings as exemptd) and exemptd (fresh database, policies/default.yaml) on
# 127.0.0.1 with the same number of server threads/workers, seeds exemptd with DEVICES enrolled
# devices (and approved exemptions for the "exempted" share of the mix), then runs
# build/bench/exemptd-loadgen against both: keepalive (closed loop over CONNECTIONS connections),
# handshake (a full handshake per request) and resume (a resumed TLS session per request).
# Prints a table and, as the very last line, checkin_vs_nginx=R, where R is exemptd's keep-alive
# requests/s divided by nginx's. Never run by ctest; figures vary with the machine's load.
#
# Environment (defaults in brackets):
#   CONNECTIONS [64]  DURATION [10] seconds per run  THREADS [1] server threads = nginx workers
#   DEVICES [1000] device certificates (and seeded devices)  CLIENT_THREADS [1] loadgen threads
#   MIX [compliant=70,grace=10,exempted=10,denied=10]
#   CHANGING_FACTS [1]: 1 adds a fact that differs in every report but that the policy does not
#   check (uptime_seconds): each check-in still takes its device's cached decision again, and
#   writes a row that differs from the last, as every check-in of a real fleet does; checked also
#   varies a fact the policy checks, so that each is evaluated and encoded afresh; 0 repeats the
#   same facts, and most rows are then rewritten unchanged, which SQLite skips: a lighter load
#   than a fleet's (see README "Tenth pass")
#   FLEET [0]: 1 also runs the fleet mode against exemptd (DEVICES devices, one check-in every
#   FLEET_INTERVAL [30] s each, for FLEET_DURATION [60] s)
#   HALF_LOAD [0]: 1 also runs the fleet mode against exemptd at half its keep-alive req/s
#   (DEVICES devices, for FLEET_DURATION s, the first 5 s of connecting left out): the p50/p99
#   of a server that is not saturated. HALF_LOAD_RATE sets that rate instead (check-ins/s);
#   with it, MODES= (empty) runs that fleet alone, to compare the p99 of builds at one rate
#   PERF [0]: 1 records `perf record -g` of exemptd during its keep-alive run (perf.data kept
#   in PERF_OUT [./exemptd-keepalive.perf.data]; PERF_RECORD_ARGS [-g] replaces -g, e.g.
#   "--call-graph dwarf" where the libraries have no frame pointers)
#   CALLGRIND [0]: 1 runs exemptd under valgrind's callgrind and prints its instructions per
#   check-in (every thread, user space), a figure the machine's load does not move, unlike req/s.
#   Counted during the keep-alive run from CALLGRIND_WARMUP [15] s in (after the handshakes) to
#   its end, over the check-ins exemptd's metrics counted meanwhile; set DURATION well above the
#   warm-up (30). Everything runs about 100 times slower. The profile is kept in
#   CALLGRIND_OUT [./exemptd-keepalive.callgrind].1 for callgrind_annotate.
#   MODES [keepalive handshake resume]: the loadgen modes to compare
#   KEEP_TMP [0]: 1 keeps the temporary folder (configs, logs, database)
#   SCALE [0]: 1 runs bench/scale.sh instead (1,000 vs 1,000,000 imported devices; its own
#   environment, see there)
set -euo pipefail

SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$(cd "${1:-$SOURCE_DIR/build}" && pwd)"
[[ "${SCALE:-0}" != 1 ]] || exec "$SOURCE_DIR/bench/scale.sh" "$BUILD_DIR"
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-10}"
THREADS="${THREADS:-1}"
DEVICES="${DEVICES:-1000}"
CLIENT_THREADS="${CLIENT_THREADS:-1}"
MIX="${MIX:-compliant=70,grace=10,exempted=10,denied=10}"
CHANGING_FACTS="${CHANGING_FACTS:-1}"
FLEET="${FLEET:-0}"
FLEET_INTERVAL="${FLEET_INTERVAL:-30}"
FLEET_DURATION="${FLEET_DURATION:-60}"
HALF_LOAD="${HALF_LOAD:-0}"
PERF="${PERF:-0}"
MODES="${MODES-keepalive handshake resume}"  # set but empty: no such runs
PERF_OUT="${PERF_OUT:-$PWD/exemptd-keepalive.perf.data}"
CALLGRIND="${CALLGRIND:-0}"
CALLGRIND_OUT="${CALLGRIND_OUT:-$PWD/exemptd-keepalive.callgrind}"
CALLGRIND_WARMUP="${CALLGRIND_WARMUP:-15}"
LOADGEN="$BUILD_DIR/bench/exemptd-loadgen"
EXEMPTD="$BUILD_DIR/daemon/exemptd"

die() {
    echo "run.sh: $*" >&2
    exit 1
}

[[ -x "$LOADGEN" ]] || die "no $LOADGEN (configure with -DEXEMPTD_BUILD_BENCH=ON and build)"
[[ -x "$EXEMPTD" ]] || die "no $EXEMPTD (build first)"
((DEVICES >= CONNECTIONS)) || die "DEVICES ($DEVICES) must be at least CONNECTIONS ($CONNECTIONS)"
case "$CHANGING_FACTS" in 0 | 1 | checked) ;; *) die "CHANGING_FACTS must be 0, 1 or checked, not '$CHANGING_FACTS'" ;; esac

# nginx-light from Debian, without starting the packaged service (RUNLEVEL=1 makes invoke-rc.d
# leave it stopped).
if ! command -v nginx >/dev/null; then
    echo "installing nginx-light" >&2
    apt-get update >&2
    RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light >&2
fi
NGINX="$(command -v nginx)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/exemptd-bench.XXXXXX")"
NGINX_PID=""
EXEMPTD_PID=""

# stop_pid PID SIGNAL — signals one process we started and waits up to 10 s, then kills it.
stop_pid() {
    local pid="$1" i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "-$2" "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    stop_pid "$NGINX_PID" QUIT
    stop_pid "$EXEMPTD_PID" TERM
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A TCP port on 127.0.0.1 that no socket uses (nginx cannot pick one itself): below the kernel's
# ephemeral range, so the load generator's own connections cannot take it before nginx binds.
free_port() {
    local port
    for _ in {1..50}; do
        port=$((20000 + SRANDOM % 12000))
        [[ -z "$(ss -Htan "sport = :$port")" ]] && { echo "$port"; return 0; }
    done
    die "found no free port"
}

# cpu_seconds PID — user+system CPU seconds of PID and its child processes (nginx workers).
cpu_seconds() {
    local pids=("$1") ticks=0 p stat
    read -r -a children <"/proc/$1/task/$1/children" || true
    pids+=("${children[@]}")
    for p in "${pids[@]}"; do
        stat="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
        stat="${stat##*) }"   # fields after the command name; utime and stime are 12 and 13
        read -r -a f <<<"$stat"
        ticks=$((ticks + f[11] + f[12]))
    done
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

# ---------------------------------------------------------------------------------------------
# PKI and servers.

PKI="$TMP/pki"
"$SOURCE_DIR/certs/make-dev-pki.sh" "$PKI"
ulimit -n "$(ulimit -Hn)"

start_nginx() {
    local dir="$TMP/nginx" port
    mkdir -p "$dir/logs"
    port="$(free_port)"
    cat >"$dir/nginx.conf" <<EOF
worker_processes $THREADS;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $PKI/server.crt;
        ssl_certificate_key $PKI/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305;
        ssl_prefer_server_ciphers on;
        ssl_client_certificate $PKI/clients-ca.crt;
        ssl_verify_client on;
        ssl_session_cache shared:exemptd_bench:10m;
        keepalive_requests 100000000;
        keepalive_timeout 60s;
        location = /v1/checkin {
            default_type application/json;
            return 200 '{"device_id":"LOAD-000001","decision":"allow","basis":"compliant","controls":[{"id":"MDM-01","status":"pass"},{"id":"ENC-01","status":"pass"},{"id":"FW-01","status":"pass"},{"id":"LOCK-01","status":"pass"},{"id":"OS-01","status":"pass"}],"policy_version":"sha256:0","evaluated_at":"2026-11-27T21:00:01Z","next_checkin_seconds":900}';
        }
    }
}
EOF
    "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" || die "nginx refused its configuration"
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" </dev/null >>"$dir/logs/stdout.log" 2>&1 &
    NGINX_PID=$!
    NGINX_PORT="$port"
    for _ in {1..100}; do
        [[ -n "$(ss -Htln "sport = :$port")" ]] && return 0
        kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited: $(tail -5 "$dir/logs/error.log")"
        sleep 0.1
    done
    die "nginx does not listen on $port"
}

start_exemptd() {
    local dir="$TMP/exemptd"
    mkdir -p "$dir"
    cp "$SOURCE_DIR/policies/default.yaml" "$dir/policy.yaml"
    cp "$SOURCE_DIR/policies/byod-v3.txt" "$dir/"
    cat >"$dir/exemptd.yaml" <<EOF
listen: 127.0.0.1:0
tls: {cert: $PKI/server.crt, key: $PKI/server.key, client_ca: $PKI/clients-ca.crt}
database: $dir/exemptd.db
policy: policy.yaml
agreements: {ca: $PKI/agreements-ca.crt, crl: $PKI/agreements.crl}
metrics_listen: 127.0.0.1:0
log_level: info
threads: $THREADS
limits: {checkin_rate_per_minute: 0}   # each device checks in as fast as it can
${SWEEP_INTERVAL:+sweep_interval_seconds: $SWEEP_INTERVAL}
EOF
    local wrapper=()
    [[ "$CALLGRIND" != 1 ]] || wrapper=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$CALLGRIND_OUT")
    "${wrapper[@]}" "$EXEMPTD" --config "$dir/exemptd.yaml" --ready-file "$dir/ready" </dev/null >"$dir/exemptd.log" 2>&1 &
    EXEMPTD_PID=$!
    for _ in {1..600}; do
        [[ -s "$dir/ready" ]] && break
        kill -0 "$EXEMPTD_PID" 2>/dev/null || die "exemptd exited: $(tail -5 "$dir/exemptd.log")"
        sleep 0.1
    done
    EXEMPTD_PORT="$(sed -n 's/^listen=127\.0\.0\.1:\([0-9]*\)$/\1/p' "$dir/ready")"
    [[ -n "$EXEMPTD_PORT" ]] || die "exemptd wrote no ready file"
    EXEMPTD_METRICS="$(sed -n 's/^metrics_listen=//p' "$dir/ready")"
}

# ---------------------------------------------------------------------------------------------
# Runs.

loadgen() {   # PORT MODE [ARGS...]
    local port="$1" mode="$2"
    shift 2
    "$LOADGEN" "$mode" --connect "127.0.0.1:$port" --ca "$PKI/server-ca.crt" \
        --clients-ca-cert "$PKI/clients-ca.crt" --clients-ca-key "$PKI/clients-ca.key" \
        --connections "$CONNECTIONS" --devices "$DEVICES" --threads "$CLIENT_THREADS" --mix "$MIX" \
        $(case "$CHANGING_FACTS" in 1) echo --changing-facts ;; checked) echo --changing-facts --changing-checked-fact ;; esac) "$@"
}

ROWS=()
declare -A RPS

# Check-ins exemptd has answered, from its metrics.
checkins_answered() {
    curl -s "http://$EXEMPTD_METRICS/metrics" | awk '/^exemptd_checkins_total\{/ { n += $2 } END { print n + 0 }'
}

# report_instructions CHECKINS — exemptd's instructions per check-in from callgrind's dump.
report_instructions() {
    local dump total
    dump="$CALLGRIND_OUT.1"  # the first (and only) dump; the file without a suffix comes at exit
    [[ -s "$dump" ]] || die "callgrind wrote no dump"
    total="$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')"
    echo "callgrind: $total instructions over $1 check-ins: $(awk -v t="$total" -v n="$1" 'BEGIN { printf "%.0f", t / n }') per check-in ($dump)"
}

# measure NAME PID PORT MODE [ARGS...] — one loadgen run; its output goes to stderr and the
# figures to ROWS. Returns 0 even when the run had errors (they are in the table).
measure() {
    local name="$1" pid="$2" port="$3" mode="$4" out result cpu0 cpu1 rc=0 perf_pid=""
    shift 4
    echo "=== $name $mode" >&2
    cpu0="$(cpu_seconds "$pid")"
    if [[ "$PERF" == 1 && "$name" == exemptd && "$mode" == keepalive ]]; then
        perf record ${PERF_RECORD_ARGS:--g} -o "$PERF_OUT" -p "$pid" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    if [[ "$CALLGRIND" == 1 && "$name" == exemptd && "$mode" == keepalive ]]; then
        loadgen "$port" "$mode" --duration "$DURATION" "$@" >"$TMP/loadgen.out" &
        local loadgen_pid=$! counted
        sleep "$CALLGRIND_WARMUP"
        rm -f "$CALLGRIND_OUT" "$CALLGRIND_OUT".*
        counted="$(checkins_answered)"
        callgrind_control --instr=on "$pid" >/dev/null 2>&1
        wait "$loadgen_pid" || rc=$?
        callgrind_control --instr=off "$pid" >/dev/null 2>&1
        counted=$(($(checkins_answered) - counted))
        callgrind_control --dump=keepalive "$pid" >/dev/null 2>&1
        out="$(cat "$TMP/loadgen.out")"
        report_instructions "$counted"
    else
        out="$(loadgen "$port" "$mode" --duration "$DURATION" "$@")" || rc=$?
    fi
    if [[ -n "$perf_pid" ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" || true
        echo "perf data of exemptd during the keep-alive run (and the loadgen's certificate set-up): $PERF_OUT" >&2
    fi
    cpu1="$(cpu_seconds "$pid")"
    printf '%s\n' "$out" >&2
    result="$(grep '^result ' <<<"$out" | tail -1 || true)"
    [[ -n "$result" ]] || { ROWS+=("$name $mode failed(exit=$rc) - - - - - -"); return 0; }
    local -A r=()
    local kv
    for kv in ${result#result }; do r["${kv%%=*}"]="${kv#*=}"; done
    RPS["$name.$mode"]="${r[rps]}"
    ROWS+=("$name $mode ${r[rps]} ${r[p50_ms]} ${r[p99_ms]} ${r[p999_ms]} ${r[errors]} ${r[resumed]} \
$(awk -v a="$cpu0" -v b="$cpu1" -v d="${r[elapsed_s]:-${r[seconds]}}" 'BEGIN { printf "%.0f%%", 100 * (b - a) / d }') ${r[cpu_s]:-?}")
}

start_nginx
start_exemptd
echo "nginx pid $NGINX_PID port $NGINX_PORT; exemptd pid $EXEMPTD_PID port $EXEMPTD_PORT; $THREADS server thread(s)" >&2
"$LOADGEN" seed --connect "127.0.0.1:$EXEMPTD_PORT" --ca "$PKI/server-ca.crt" --devices "$DEVICES" --mix "$MIX" \
    --admin-cert "$PKI/admin.crt" --admin-key "$PKI/admin.key" \
    --approver-cert "$PKI/it-manager.crt" --approver-key "$PKI/it-manager.key" >&2 \
    || die "seeding exemptd failed"

for mode in $MODES; do
    measure nginx "$NGINX_PID" "$NGINX_PORT" "$mode" --static
    measure exemptd "$EXEMPTD_PID" "$EXEMPTD_PORT" "$mode"
done
if [[ "$FLEET" == 1 ]]; then
    DURATION="$FLEET_DURATION" measure exemptd "$EXEMPTD_PID" "$EXEMPTD_PORT" fleet --interval "$FLEET_INTERVAL"
fi
if [[ "$HALF_LOAD" == 1 && -n "${HALF_LOAD_RATE:-${RPS[exemptd.keepalive]:-}}" ]]; then
    # The same devices paced at half the keep-alive rate just measured (or at HALF_LOAD_RATE):
    # latency below saturation.
    DURATION="$FLEET_DURATION" measure exemptd "$EXEMPTD_PID" "$EXEMPTD_PORT" fleet \
        --rate "${HALF_LOAD_RATE:-$(awk -v r="${RPS[exemptd.keepalive]}" 'BEGIN { printf "%.0f", r / 2 }')}" --warmup 5
fi

echo
echo "$CONNECTIONS connections, $DURATION s per run, $THREADS server thread(s)/worker(s), $CLIENT_THREADS client thread(s), $DEVICES devices, $(nproc) cores"
{
    echo "server mode req/s p50_ms p99_ms p99.9_ms errors resumed server_cpu client_cpu_s"
    printf '%s\n' "${ROWS[@]}"
} | column -t
awk -v e="${RPS[exemptd.keepalive]:-0}" -v n="${RPS[nginx.keepalive]:-0}" \
    'BEGIN { printf "checkin_vs_nginx=%.3f\n", (n > 0 ? e / n : 0) }'
