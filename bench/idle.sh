#!/usr/bin/env bash
# Resident memory of exemptd per idle, TLS-established connection (issue 7).
#
#   bench/idle.sh [BUILD_DIR]          (default: build)
#
# Makes a dev PKI in a temporary folder, starts exemptd (fresh database, policies/default.yaml,
# max_connections 20000, no check-in rate limit, a long idle timeout) on 127.0.0.1 with the fd
# limit raised to the hard limit, then opens CONNECTIONS connections with
# build/tests/exemptd-hold-connections, each completing a TLS handshake with the
# endpoint-LAPTOP-0042 client certificate, and holds them without sending a request. Reads
# exemptd's VmRSS from /proc before and while they are held (after SETTLE seconds), then after
# one check-in (for a device that is not enrolled) on each of the first CHECKINS of them, which
# stay open and idle again, then after all are closed, and VmHWM (peak) at the end. Prints a
# table and, as the very last line, rss_per_idle_connection_kb=N: (RSS held - RSS before) /
# connections opened, in KiB, before any request. About 2 minutes for 10,000 connections.
# Never run by ctest; needs CONNECTIONS + about 100 file descriptors (hard limit) and as many
# free local ports.
#
# Environment (defaults in brackets):
#   CONNECTIONS [10000]  CHECKINS [1000] (0: none)  THREADS [1] server I/O threads (0: one per
#   core)  SETTLE [3] seconds
#   KEEP_TMP [0]: 1 keeps the temporary folder (config, log, database)
#   DATABASE []: a database to start from (copied), e.g. the 1,000,000-device one that
#   `KEEP_TMP=1 SIZES=1000000 bench/scale.sh` leaves; a fresh one by default
set -euo pipefail

SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$(cd "${1:-$SOURCE_DIR/build}" && pwd)"
CONNECTIONS="${CONNECTIONS:-10000}"
CHECKINS="${CHECKINS:-1000}"
THREADS="${THREADS:-1}"
SETTLE="${SETTLE:-3}"
EXEMPTD="$BUILD_DIR/daemon/exemptd"
HOLD="$BUILD_DIR/tests/exemptd-hold-connections"

die() {
    echo "idle.sh: $*" >&2
    exit 1
}

[[ -x "$EXEMPTD" ]] || die "no $EXEMPTD (build first)"
[[ -x "$HOLD" ]] || die "no $HOLD (build the tests first)"
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > CONNECTIONS + 100)) || die "the fd limit ($(ulimit -n)) is too low for $CONNECTIONS connections"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/exemptd-idle.XXXXXX")"
EXEMPTD_PID=""
HOLD_PID=""

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
    stop_pid "$HOLD_PID" USR1
    stop_pid "$EXEMPTD_PID" TERM
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# status_kb PID FIELD — a kB figure (VmRSS, VmHWM) from /proc/PID/status.
status_kb() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

PKI="$TMP/pki"
"$SOURCE_DIR/certs/make-dev-pki.sh" "$PKI"

dir="$TMP/exemptd"
mkdir -p "$dir"
cp "$SOURCE_DIR/policies/default.yaml" "$dir/policy.yaml"
cp "$SOURCE_DIR/policies/byod-v3.txt" "$dir/"
if [[ -n "${DATABASE:-}" ]]; then
    [[ -f "$DATABASE" && ! -e "$DATABASE-wal" ]] || die "DATABASE must be a cleanly stopped database (no -wal file): $DATABASE"
    cp "$DATABASE" "$dir/exemptd.db"
fi
cat >"$dir/exemptd.yaml" <<EOF
listen: 127.0.0.1:0
tls: {cert: $PKI/server.crt, key: $PKI/server.key, client_ca: $PKI/clients-ca.crt}
database: $dir/exemptd.db
policy: policy.yaml
agreements: {ca: $PKI/agreements-ca.crt, crl: $PKI/agreements.crl}
metrics_listen: 127.0.0.1:0
log_level: warn
threads: $THREADS
limits: {max_connections: 20000, checkin_rate_per_minute: 0, idle_timeout_seconds: 3600}
EOF
"$EXEMPTD" --config "$dir/exemptd.yaml" --ready-file "$dir/ready" </dev/null >"$dir/exemptd.log" 2>&1 &
EXEMPTD_PID=$!
for _ in {1..100}; do
    [[ -s "$dir/ready" ]] && break
    kill -0 "$EXEMPTD_PID" 2>/dev/null || die "exemptd exited: $(tail -5 "$dir/exemptd.log")"
    sleep 0.1
done
PORT="$(sed -n 's/^listen=127\.0\.0\.1:\([0-9]*\)$/\1/p' "$dir/ready")"
[[ -n "$PORT" ]] || die "exemptd wrote no ready file"
sleep 1
rss_before="$(status_kb "$EXEMPTD_PID" VmRSS)"

echo "opening $CONNECTIONS connections to exemptd (pid $EXEMPTD_PID, port $PORT, threads: $THREADS)" >&2
started=$SECONDS
"$HOLD" "$PORT" "$CONNECTIONS" 3600 "$PKI/server-ca.crt" "$PKI/endpoint-LAPTOP-0042.crt" \
    "$PKI/endpoint-LAPTOP-0042.key" "$CHECKINS" LAPTOP-0042 >"$TMP/hold.out" &
HOLD_PID=$!
until grep -q '^opened=' "$TMP/hold.out"; do
    kill -0 "$HOLD_PID" 2>/dev/null || die "exemptd-hold-connections exited: $(cat "$TMP/hold.out")"
    kill -0 "$EXEMPTD_PID" 2>/dev/null || die "exemptd exited: $(tail -5 "$dir/exemptd.log")"
    sleep 0.5
done
opened_line="$(grep '^opened=' "$TMP/hold.out")"
opened="${opened_line#opened=}"
opened="${opened%% *}"
echo "$opened_line after $((SECONDS - started)) s" >&2
((opened > 0)) || die "no connection opened"
sleep "$SETTLE"
rss_held="$(status_kb "$EXEMPTD_PID" VmRSS)"
rss_checked="$rss_held"
if ((CHECKINS > 0)); then
    kill -USR2 "$HOLD_PID"
    until grep -q '^checked_in=' "$TMP/hold.out"; do
        kill -0 "$HOLD_PID" 2>/dev/null || die "exemptd-hold-connections exited: $(cat "$TMP/hold.out")"
        sleep 0.2
    done
    echo "$(grep '^checked_in=' "$TMP/hold.out") (status:count)" >&2
    sleep "$SETTLE"
    rss_checked="$(status_kb "$EXEMPTD_PID" VmRSS)"
fi

stop_pid "$HOLD_PID" USR1
HOLD_PID=""
echo "$(grep '^open=' "$TMP/hold.out" || echo 'open=? closed=?') (closed: by exemptd while held)" >&2
sleep "$SETTLE"
rss_after="$(status_kb "$EXEMPTD_PID" VmRSS)"
hwm="$(status_kb "$EXEMPTD_PID" VmHWM)"

echo
echo "$opened idle TLS connections (of $CONNECTIONS), threads: $THREADS (0: one per core), $(nproc) cores"
[[ -z "${DATABASE:-}" ]] || echo "database: a copy of $DATABASE ($(du -m "$dir/exemptd.db" | cut -f1) MB)"
{
    echo "state rss_kb rss_mb"
    for row in "before:$rss_before" "held:$rss_held" "after_${CHECKINS}_checkins:$rss_checked" \
        "closed:$rss_after" "peak(VmHWM):$hwm"; do
        awk -v n="${row%%:*}" -v k="${row#*:}" 'BEGIN { printf "%s %d %.1f\n", n, k, k / 1024 }'
    done
} | column -t
if ((CHECKINS > 0)); then
    awk -v a="$rss_held" -v b="$rss_checked" -v n="$CHECKINS" \
        'BEGIN { printf "rss_growth_per_checked_in_connection_kb=%.1f\n", (b - a) / n }'
fi
awk -v a="$rss_before" -v b="$rss_held" -v n="$opened" 'BEGIN { printf "rss_per_idle_connection_kb=%.1f\n", (b - a) / n }'
