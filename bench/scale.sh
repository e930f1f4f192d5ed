#!/usr/bin/env bash
# Check-in load against a small and a large enrollment registry (issue 7 part 3).
#
#   bench/scale.sh [BUILD_DIR]          (default: build)
#
# For each registry size in SIZES it starts exemptd on a fresh database, writes an MDM export of
# that many devices (bench/make-mdm-csv.sh) and imports it with `exemptctl device import`, seeds
# approved OS-01 exemptions for the "exempted" share of MIX among the first SEED_DEVICES devices
# (`exemptd-loadgen seed --no-enroll`), restarts exemptd to time its start-up (exec to the ready
# file) and read its RSS, then runs the same keep-alive check-in load against it (LOAD_DEVICES
# device certificates, the first devices of the registry, over CONNECTIONS connections). Prints
# a table and, last, scale_rps_ratio=R: the largest registry's req/s divided by the smallest's.
# Never run by ctest; figures vary with the machine's load.
#
# Environment (defaults in brackets):
#   SIZES ["1000 1000000"]  SEED_DEVICES [each size] devices whose exemptions are seeded
#   LOAD_DEVICES [1000]  CONNECTIONS [64]  DURATION [20] s  THREADS [1] server threads
#   MIX [compliant=70,grace=10,exempted=10,denied=10]  KEEP_TMP [0]
set -euo pipefail

SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$(cd "${1:-$SOURCE_DIR/build}" && pwd)"
SIZES="${SIZES:-1000 1000000}"
LOAD_DEVICES="${LOAD_DEVICES:-1000}"
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-20}"
THREADS="${THREADS:-1}"
MIX="${MIX:-compliant=70,grace=10,exempted=10,denied=10}"
LOADGEN="$BUILD_DIR/bench/exemptd-loadgen"
EXEMPTD="$BUILD_DIR/daemon/exemptd"
EXEMPTCTL="$BUILD_DIR/client/exemptctl"

die() {
    echo "scale.sh: $*" >&2
    exit 1
}

for bin in "$LOADGEN" "$EXEMPTD" "$EXEMPTCTL"; do [[ -x "$bin" ]] || die "no $bin (build first)"; done
((LOAD_DEVICES >= CONNECTIONS)) || die "LOAD_DEVICES ($LOAD_DEVICES) must be at least CONNECTIONS ($CONNECTIONS)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/exemptd-scale.XXXXXX")"
EXEMPTD_PID=""

stop_exemptd() {
    local i
    [[ -n "$EXEMPTD_PID" ]] && kill -0 "$EXEMPTD_PID" 2>/dev/null || return 0
    kill -TERM "$EXEMPTD_PID"
    for ((i = 0; i < 300; i++)); do
        kill -0 "$EXEMPTD_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$EXEMPTD_PID" 2>/dev/null && kill -KILL "$EXEMPTD_PID"
    wait "$EXEMPTD_PID" 2>/dev/null || true
    EXEMPTD_PID=""
}

cleanup() {
    local rc=$?
    stop_exemptd
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
rss_mb() { awk -v k="$2:" '$1 == k { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

PKI="$TMP/pki"
"$SOURCE_DIR/certs/make-dev-pki.sh" "$PKI" >/dev/null
ulimit -n "$(ulimit -Hn)"

write_config() {   # DIR
    mkdir -p "$1"
    cp "$SOURCE_DIR/policies/default.yaml" "$1/policy.yaml"
    cp "$SOURCE_DIR/policies/byod-v3.txt" "$1/"
    printf '%s\n' "listen: 127.0.0.1:0" \
        "tls: {cert: $PKI/server.crt, key: $PKI/server.key, client_ca: $PKI/clients-ca.crt}" \
        "database: $1/exemptd.db" "policy: policy.yaml" \
        "agreements: {ca: $PKI/agreements-ca.crt, crl: $PKI/agreements.crl}" \
        "metrics_listen: 127.0.0.1:0" "log_level: info" "threads: $THREADS" \
        "limits: {checkin_rate_per_minute: 0}   # each device checks in as fast as it can" >"$1/exemptd.yaml"
}

# start_exemptd DIR — starts exemptd on DIR/exemptd.db; sets EXEMPTD_PID, PORT and STARTUP_S (exec
# to the ready file, polled every 10 ms).
start_exemptd() {
    local dir="$1" started
    [[ -f "$dir/exemptd.yaml" ]] || write_config "$dir"
    rm -f "$dir/ready"
    started="$(now)"
    "$EXEMPTD" --config "$dir/exemptd.yaml" --ready-file "$dir/ready" </dev/null >>"$dir/exemptd.log" 2>&1 &
    EXEMPTD_PID=$!
    until [[ -s "$dir/ready" ]]; do
        kill -0 "$EXEMPTD_PID" 2>/dev/null || die "exemptd exited: $(tail -5 "$dir/exemptd.log")"
        sleep 0.01
    done
    STARTUP_S="$(since "$started")"
    PORT="$(sed -n 's/^listen=127\.0\.0\.1:\([0-9]*\)$/\1/p' "$dir/ready")"
}

ROWS=()
declare -A RPS P99

# load N DIR — the keep-alive run; sets RESULT to its figures.
load() {
    local out kv
    echo "=== $1 devices: keepalive" >&2
    out="$("$LOADGEN" keepalive --connect "127.0.0.1:$PORT" --ca "$PKI/server-ca.crt" \
        --clients-ca-cert "$PKI/clients-ca.crt" --clients-ca-key "$PKI/clients-ca.key" \
        --connections "$CONNECTIONS" --devices "$LOAD_DEVICES" --mix "$MIX" --duration "$DURATION")" || true
    printf '%s\n' "$out" >&2
    RESULT=()
    out="$(grep '^result ' <<<"$out" | tail -1)"
    for kv in ${out#result }; do RESULT["${kv%%=*}"]="${kv#*=}"; done
}

# run_size N — one registry of N devices, from import to load.
run_size() {
    local n="$1" dir="$TMP/n$1" t seed_n import_s seed_s db_mb rss_ready
    start_exemptd "$dir"
    echo "=== $n devices: exemptd pid $EXEMPTD_PID port $PORT" >&2
    "$SOURCE_DIR/bench/make-mdm-csv.sh" "$n" >"$dir/devices.csv"
    t="$(now)"
    EXEMPTCTL_SERVER="https://127.0.0.1:$PORT" EXEMPTCTL_CERT="$PKI/admin.crt" EXEMPTCTL_KEY="$PKI/admin.key" \
        EXEMPTCTL_CA="$PKI/server-ca.crt" "$EXEMPTCTL" device import "$dir/devices.csv" >&2 || die "import failed"
    import_s="$(since "$t")"
    seed_n="${SEED_DEVICES:-$n}"
    ((seed_n <= n)) || seed_n="$n"
    t="$(now)"
    "$LOADGEN" seed --no-enroll --connect "127.0.0.1:$PORT" --ca "$PKI/server-ca.crt" --devices "$seed_n" \
        --mix "$MIX" --admin-cert "$PKI/admin.crt" --admin-key "$PKI/admin.key" \
        --approver-cert "$PKI/it-manager.crt" --approver-key "$PKI/it-manager.key" >&2 || die "seeding failed"
    seed_s="$(since "$t")"
    stop_exemptd
    db_mb="$(du -cm "$dir"/exemptd.db* | awk 'END { print $1 }')"
    start_exemptd "$dir"
    rss_ready="$(rss_mb "$EXEMPTD_PID" VmRSS)"
    declare -gA RESULT
    load "$n"
    RPS[$n]="${RESULT[rps]:-0}"
    P99[$n]="${RESULT[p99_ms]:-0}"
    ROWS+=("$n $import_s $seed_n $seed_s $db_mb $STARTUP_S $rss_ready $(rss_mb "$EXEMPTD_PID" VmHWM) \
${RESULT[rps]:-?} ${RESULT[p50_ms]:-?} ${RESULT[p99_ms]:-?} ${RESULT[errors]:-?}")
    stop_exemptd
}

for n in $SIZES; do run_size "$n"; done

echo
echo "$CONNECTIONS connections, $DURATION s keep-alive load over $LOAD_DEVICES devices, $THREADS server thread(s), \
$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
{
    echo "devices import_s seeded_for seed_s db_MB startup_s rss_ready_MB rss_peak_MB req/s p50_ms p99_ms errors"
    printf '%s\n' "${ROWS[@]}"
} | column -t
read -r -a sizes <<<"$SIZES"
small="${sizes[0]}" large="${sizes[-1]}"
awk -v a="${RPS[$small]}" -v b="${RPS[$large]}" -v pa="${P99[$small]}" -v pb="${P99[$large]}" 'BEGIN {
    printf "scale_p99_ratio=%.2f\n", (pa > 0 ? pb / pa : 0)
    printf "scale_rps_ratio=%.3f\n", (a > 0 ? b / a : 0) }'
