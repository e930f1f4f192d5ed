# Shared helpers for the exemptd integration tests. Source it from a *_test.sh script.
#
# Needs only bash, coreutils, awk, openssl and curl. CTest sets these in the environment:
#   PKI_DIR           the development PKI made by certs/make-dev-pki.sh (the integration.pki fixture)
#   EXEMPTD_BIN       the daemon
#   EXEMPTCTL_BIN     the admin CLI (tests that need it fail clearly when it is missing)
#   EXEMPT_AGENT_BIN  the endpoint agent (likewise)
#   SOURCE_DIR        the source tree (policies/, certs/)
# Optional: KEEP_TMP=1 keeps the per-script temporary folder for inspection.
#
# A script starts a daemon, runs its cases with run_case (each in a subshell, so one failing
# assertion ends only that case), and ends with finish. After every case, run_case checks that
# the daemon is still alive and answers /healthz. Any daemon started here is stopped by PID when
# the script exits, even on failure.

# shellcheck disable=SC2119,SC2120  # optional arguments are optional
set -euo pipefail

: "${PKI_DIR:?PKI_DIR must point at the dev PKI (certs/make-dev-pki.sh)}"
: "${EXEMPTD_BIN:?EXEMPTD_BIN must point at the exemptd binary}"
: "${SOURCE_DIR:?SOURCE_DIR must point at the source tree}"
EXEMPTCTL_BIN="${EXEMPTCTL_BIN:-}"
EXEMPT_AGENT_BIN="${EXEMPT_AGENT_BIN:-}"

LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly LIB_DIR
readonly JSON_AWK="$LIB_DIR/json.awk"
TEST_NAME="$(basename "$0" .sh)"
readonly TEST_NAME
TEST_TMP="$(mktemp -d "${TMPDIR:-/tmp}/exemptd-$TEST_NAME.XXXXXX")"
readonly TEST_TMP
readonly PID_FILE="$TEST_TMP/daemon.pids"
: >"$PID_FILE"
# Clients must not pick up a developer's own configuration or proxy.
export HOME="$TEST_TMP/home" XDG_CONFIG_HOME="$TEST_TMP/home/.config"
mkdir -p "$HOME"
unset EXEMPTCTL_SERVER EXEMPTCTL_CERT EXEMPTCTL_KEY EXEMPTCTL_CA
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY

CASES_RUN=0
CASES_FAILED=()
DAEMON_PID=""
PORT=""
METRICS_PORT=""
DAEMON_DIR=""

# ---------------------------------------------------------------------------------------------
# Reporting and assertions. Each prints what was expected and what came instead, then exits 1
# (which ends the current case). Never call them inside $(...): the exit would be lost.

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

note() {
    printf '    %s\n' "$*"
}

# Prints the last response, for the failure messages of HTTP assertions.
last_response() {
    printf 'last request: %s\n  -> HTTP %s, curl exit %s, body: %.600s' \
        "${LAST_REQUEST:-none}" "${STATUS:-?}" "${CURL_RC:-?}" "${BODY:-}"
}

assert_eq() {   # EXPECTED ACTUAL WHAT
    [[ "$1" == "$2" ]] || fail "$3: expected '$1', got '$2'"
}

assert_ne() {   # UNEXPECTED ACTUAL WHAT
    [[ "$1" != "$2" ]] || fail "$3: expected anything but '$1'"
}

assert_match() {   # VALUE ERE WHAT
    [[ "$1" =~ $2 ]] || fail "$3: expected a match for /$2/, got '$1'"
}

assert_contains() {   # HAYSTACK NEEDLE WHAT
    [[ "$1" == *"$2"* ]] || fail "$3: expected it to contain '$2', got: $(printf '%.800s' "$1")"
}

assert_not_contains() {   # HAYSTACK NEEDLE WHAT
    [[ "$1" != *"$2"* ]] || fail "$3: expected it not to contain '$2', got: $(printf '%.800s' "$1")"
}

# ---------------------------------------------------------------------------------------------
# JSON, through json.awk. A document is flattened once (one awk run) and cached in this shell;
# lookups are then plain bash string operations, which keeps the suite fast.

FLAT_SRC=""
FLAT_OUT=""
FLAT_OK=1

# json_parse JSON — flattens JSON into FLAT_OUT (cached); status 1 when it is not JSON.
json_parse() {
    if [[ "$1" != "$FLAT_SRC" || -z "$FLAT_SRC" ]]; then
        FLAT_SRC="$1"
        FLAT_OK=0
        FLAT_OUT=$'\n'"$(printf '%s' "$1" | awk -f "$JSON_AWK" 2>/dev/null)"$'\n' || FLAT_OK=1
    fi
    return "$FLAT_OK"
}

# json_flat JSON — prints the PATH<TAB>LITERAL lines; non-zero when JSON is not a JSON document.
json_flat() {
    json_parse "$1" || return 2
    printf '%s' "${FLAT_OUT#$'\n'}"
}

# jlookup JSON PATH — sets JVAL to the literal at PATH (strings keep quotes); status 1 when
# absent, 2 when JSON is not JSON.
jlookup() {
    json_parse "$1" || return 2
    local key=$'\n'"$2"$'\t'
    [[ "$FLAT_OUT" == *"$key"* ]] || return 1
    JVAL="${FLAT_OUT#*"$key"}"
    JVAL="${JVAL%%$'\n'*}"
}

# unquote LITERAL — a JSON string literal's text with \" \\ \/ unescaped; other literals as-is.
unquote() {
    local lit="$1"
    if [[ "$lit" == \"*\" ]]; then
        lit="${lit:1:${#lit}-2}"
        lit="${lit//\\\"/\"}"
        lit="${lit//\\\//\/}"
        lit="${lit//\\\\/\\}"
    fi
    printf '%s' "$lit"
}

# jraw JSON PATH — prints the literal at PATH; status 1 when absent.
jraw() {
    jlookup "$1" "$2" || return
    printf '%s' "$JVAL"
}

# jget JSON PATH — prints the value at PATH, a string without its quotes; status 1 when absent.
jget() {
    jlookup "$1" "$2" || return
    unquote "$JVAL"
}

# jlength JSON ARRAY_PATH — sets JLEN to the number of elements at ARRAY_PATH (0 when empty or
# absent); status 2 when JSON is not JSON.
jlength() {
    json_parse "$1" || return 2
    JLEN=0
    while [[ "$FLAT_OUT" == *$'\n'"$2[$JLEN]"[.[$'\t']* ]]; do
        JLEN=$((JLEN + 1))
    done
}

# jcount JSON ARRAY_PATH — prints the number of elements of the array at ARRAY_PATH.
jcount() {
    jlength "$1" "$2" || return
    echo "$JLEN"
}

# jcolumn JSON ARRAY_PATH FIELD_PATH — FIELD of every element: jcolumn "$BODY" .devices .device_id
jcolumn() {
    jlength "$1" "$2" || return
    local i n="$JLEN"
    for ((i = 0; i < n; i++)); do
        if jlookup "$1" "$2[$i]$3"; then unquote "$JVAL"; echo; fi
    done
}

assert_json_valid() {   # [JSON]
    json_parse "${1-$BODY}" || fail "expected a JSON body. $(last_response)"
}

# assert_json PATH EXPECTED [JSON] — the value at PATH (strings unquoted) equals EXPECTED.
assert_json() {
    jlookup "${3-$BODY}" "$1" || fail "expected $1 = '$2', but $1 is absent. $(last_response)"
    local got
    got="$(unquote "$JVAL")"
    [[ "$got" == "$2" ]] || fail "expected $1 = '$2', got '$got'. $(last_response)"
}

# assert_json_string PATH [JSON] — PATH holds a non-empty JSON string.
assert_json_string() {
    jlookup "${2-$BODY}" "$1" || fail "expected a string at $1, but it is absent. $(last_response)"
    [[ "$JVAL" == \"?*\" ]] || fail "expected a non-empty string at $1, got $JVAL. $(last_response)"
}

assert_json_absent() {   # PATH [JSON]
    if jlookup "${2-$BODY}" "$1"; then
        fail "expected no $1, got $JVAL. $(last_response)"
    fi
}

# control_index JSON ID — sets CONTROL_AT to the path of control ID in .controls; status 1 if absent.
control_index() {
    local i=0
    while jlookup "$1" ".controls[$i].id"; do
        if [[ "$JVAL" == "\"$2\"" ]]; then
            CONTROL_AT=".controls[$i]"
            return 0
        fi
        i=$((i + 1))
    done
    return 1
}

# assert_control ID FIELD EXPECTED [JSON] — e.g. assert_control MDM-01 status fail
assert_control() {
    local json="${4-$BODY}" got
    control_index "$json" "$1" || fail "decision has no control $1. $(last_response)"
    got="<absent>"
    if jlookup "$json" "$CONTROL_AT.$2"; then got="$(unquote "$JVAL")"; fi
    [[ "$got" == "$3" ]] || fail "control $1: expected $2 '$3', got '$got'. $(last_response)"
}

# assert_control_reason ID [JSON] — a failing control names a non-empty reason.
assert_control_reason() {
    local json="${2-$BODY}"
    control_index "$json" "$1" || fail "decision has no control $1. $(last_response)"
    assert_json_string "$CONTROL_AT.reason" "$json"
}

# assert_decision DECISION BASIS DEVICE [JSON] — the shape SPEC §4 "Decision" describes.
assert_decision() {
    local json="${4-$BODY}" c
    assert_json .device_id "$3" "$json"
    assert_json .decision "$1" "$json"
    assert_json .basis "$2" "$json"
    jlookup "$json" .policy_version || JVAL=""
    assert_match "$JVAL" '^"sha256:[0-9a-f]{64}"$' "policy_version"
    jlookup "$json" .evaluated_at || JVAL=""
    assert_match "$JVAL" '^"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z"$' "evaluated_at"
    assert_json .next_checkin_seconds 900 "$json"
    for c in MDM-01 ENC-01 FW-01 LOCK-01 OS-01; do
        control_index "$json" "$c" || fail "decision lacks device control $c: $json"
    done
    for c in HR-03 IAM-01; do
        ! control_index "$json" "$c" || fail "decision lists non-device control $c: $json"
    done
}

# ---------------------------------------------------------------------------------------------
# HTTP through curl. Every call sets STATUS (000 when no HTTP answer came), BODY, CTYPE, CURL_RC.

# curl_as NAME CURL_ARGS... — curl with NAME's client certificate from $PKI_DIR ("-" for none),
# trusting only the dev server CA.
curl_as() {
    local who="$1"
    shift
    local -a cert=()
    [[ "$who" == "-" ]] || cert=(--cert "$PKI_DIR/$who.crt" --key "$PKI_DIR/$who.key")
    curl -q -sS --noproxy '*' --max-time 10 --cacert "$PKI_DIR/server-ca.crt" "${cert[@]}" "$@"
}

api_url() {
    printf 'https://127.0.0.1:%s%s' "$PORT" "$1"
}

# request NAME METHOD PATH [BODY_FILE] [CURL_ARGS...] — BODY_FILE "" for none, e.g.
#   request helpdesk GET /v1/devices "" --tls-max 1.2
request() {
    local who="$1" method="$2" path="$3" file="${4:-}"
    shift $(($# >= 4 ? 4 : 3))
    local -a data=()
    [[ -z "$file" ]] || data=(-H 'Content-Type: application/json' --data-binary "@$file")
    LAST_REQUEST="$method $path as $who"
    : >"$TEST_TMP/response"
    local meta
    CURL_RC=0
    meta="$(curl_as "$who" -o "$TEST_TMP/response" -w '%{http_code} %{content_type}' \
        -X "$method" "${data[@]}" "$@" "$(api_url "$path")" 2>"$TEST_TMP/curl.err")" || CURL_RC=$?
    STATUS="${meta%% *}"
    STATUS="${STATUS:-000}"
    CTYPE="${meta#* }"
    BODY="$(<"$TEST_TMP/response")"
    CURL_ERR="$(<"$TEST_TMP/curl.err")"
    json_parse "$BODY" || true   # cache the flattened body for the assertions
}

# api NAME METHOD PATH [BODY_STRING] — a JSON request.
api() {
    if (($# >= 4)); then
        printf '%s' "$4" >"$TEST_TMP/request"
        request "$1" "$2" "$3" "$TEST_TMP/request"
    else
        request "$1" "$2" "$3"
    fi
}

assert_status() {   # EXPECTED
    [[ "$STATUS" == "$1" ]] || fail "expected HTTP $1, got $STATUS. $(last_response) ${CURL_ERR:-}"
    if [[ "$1" != 000 ]]; then
        [[ "$CTYPE" == application/json* ]] \
            || fail "expected Content-Type application/json, got '$CTYPE'. $(last_response)"
        assert_json_valid
    fi
}

# assert_error STATUS CODE — the SPEC §4 error body: {"error": {"code": CODE, "message": "…"}}.
assert_error() {
    assert_status "$1"
    assert_json .error.code "$2"
    assert_json_string .error.message
    local keys
    keys="$(json_flat "$BODY" | cut -f1 | sort | tr "\n" " ")"
    assert_eq ".error.code .error.message " "$keys" "error body keys"
}

# assert_refused_handshake — no HTTP answer at all (the TLS handshake or the connection failed).
assert_refused_handshake() {
    [[ "$STATUS" == 000 && "$CURL_RC" != 0 ]] \
        || fail "expected the TLS handshake to be refused, got HTTP $STATUS. $(last_response)"
}

# assert_refused — either no HTTP answer, or 403 forbidden with an error body; never success.
assert_refused() {
    if [[ "$STATUS" == 000 ]]; then
        assert_refused_handshake
    else
        assert_error 403 forbidden
    fi
}

healthz_status() {
    curl -q -s --noproxy '*' --max-time 5 -o "$TEST_TMP/healthz" -w '%{http_code}' \
        "http://127.0.0.1:$METRICS_PORT/healthz" || true
}

# ---------------------------------------------------------------------------------------------
# Request bodies.

# now_rfc3339 [OFFSET_SECONDS]
now_rfc3339() {
    TZ=UTC printf "%(%Y-%m-%dT%H:%M:%SZ)T" "$((EPOCHSECONDS + ${1:-0}))"
}

new_nonce() {
    printf "%08x%08x%08x" "$SRANDOM" "$SRANDOM" "$SRANDOM"
}

# posture DEVICE [ARG...] — a posture report (SPEC §4) with a fresh nonce and reported_at, and
# the facts of a compliant device. ARG is fact=JSON to set a fact, -fact to leave it out, or
# nonce=…, reported_at=…, device_id=… for the top-level fields. Keys and facts are in a fixed
# order, so the same arguments give the same bytes.
posture() {
    local device="$1" nonce at arg k facts=""
    shift
    nonce="$(new_nonce)"
    at="$(now_rfc3339)"
    local -A f=([disk_encrypted]=true [firewall_enabled]=true [screen_lock_seconds]=300
        [os_patch_age_days]=12)
    local -a order=(disk_encrypted firewall_enabled os_patch_age_days screen_lock_seconds)
    for arg in "$@"; do
        case "$arg" in
            nonce=*) nonce="${arg#*=}" ;;
            reported_at=*) at="${arg#*=}" ;;
            device_id=*) device="${arg#*=}" ;;
            -*) unset "f[${arg#-}]" ;;
            *=*)
                [[ " ${order[*]} " == *" ${arg%%=*} "* ]] || order+=("${arg%%=*}")
                f["${arg%%=*}"]="${arg#*=}" ;;
            *) fail "posture: bad argument '$arg'" ;;
        esac
    done
    for k in "${order[@]}"; do
        [[ -v "f[$k]" ]] || continue
        facts+="${facts:+, }\"$k\": ${f[$k]}"
    done
    printf '{"device_id": "%s", "hostname": "host-%s", "serial": "SN-%s", ' "$device" "$device" "$device"
    printf '"os": {"name": "debian", "version": "12.8"}, "facts": {%s}, ' "$facts"
    printf '"agent_version": "0.1.0", "reported_at": "%s", "nonce": "%s"}' "$at" "$nonce"
}

# checkin NAME POSTURE_JSON — POST /v1/checkin as certificate NAME.
checkin() {
    api "$1" POST /v1/checkin "$2"
}

# enroll DEVICE [OWNER] [ENROLLED] — PUT …/enrollment as admin; expects 200 or 201.
enroll() {
    local owner="${2:-sam@example.com}" enrolled="${3:-true}"
    api admin PUT "/v1/devices/$1/enrollment" \
        "{\"enrolled\": $enrolled, \"owner\": \"$owner\", \"source\": \"mdm\"}"
    [[ "$STATUS" == 200 || "$STATUS" == 201 ]] || fail "enrolling $1: $(last_response)"
}

# device_entry DEVICE — finds DEVICE in GET /v1/devices (as help desk); sets DEVICE_JSON to the
# list and DEVICE_AT to the entry's path (".devices[N]").
device_entry() {
    api helpdesk GET /v1/devices
    assert_status 200
    local i=0 id
    while id="$(jget "$BODY" ".devices[$i].device_id")"; do
        if [[ "$id" == "$1" ]]; then
            DEVICE_JSON="$BODY"
            DEVICE_AT=".devices[$i]"
            return 0
        fi
        i=$((i + 1))
    done
    fail "GET /v1/devices does not list $1: $(printf '%.600s' "$BODY")"
}

# read_last_checkin DEVICE — sets LAST_CHECKIN to the device's last_checkin in the device list.
read_last_checkin() {
    device_entry "$1"
    jlookup "$DEVICE_JSON" "$DEVICE_AT.last_checkin" \
        || fail "$1 in GET /v1/devices has no last_checkin: $DEVICE_JSON"
    LAST_CHECKIN="$JVAL"
}

# mint_endpoint DEVICE — an extra endpoint certificate endpoint-DEVICE in $PKI_DIR.
mint_endpoint() {
    "$SOURCE_DIR/certs/make-dev-pki.sh" "$PKI_DIR" endpoint "$1" || fail "could not mint endpoint-$1"
}

# ---------------------------------------------------------------------------------------------
# The daemon.

# write_config FILE [EXTRA_YAML_LINES...] — a config for FILE's folder: ephemeral loopback ports,
# certificates from $PKI_DIR by absolute path; database and policy by paths relative to the
# config's folder (to check that they resolve there). POLICY_FILE overrides the policy copied in.
write_config() {
    local file="$1" dir
    shift
    dir="$(dirname "$file")"
    mkdir -p "$dir/policy" "$dir/state"
    cp "${POLICY_FILE:-$SOURCE_DIR/policies/default.yaml}" "$dir/policy/policy.yaml"
    cp "$SOURCE_DIR/policies/byod-v3.txt" "$dir/policy/"
    {
        echo "listen: 127.0.0.1:0"
        echo "tls: {cert: $PKI_DIR/server.crt, key: $PKI_DIR/server.key, client_ca: $PKI_DIR/clients-ca.crt}"
        echo "database: state/exemptd.db"
        echo "policy: policy/policy.yaml"
        echo "agreements: {ca: $PKI_DIR/agreements-ca.crt, crl: $PKI_DIR/agreements.crl}"
        echo "metrics_listen: 127.0.0.1:0"
        echo "log_level: debug"
        local line
        for line in "$@"; do echo "$line"; done
    } >"$file"
}

daemon_alive() {   # PID — running and not a zombie
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# start_daemon [DIR] — starts exemptd with DIR/exemptd.yaml (written by write_config when it does
# not exist yet, so a second start reuses config and database) from another working folder, and
# waits up to 10 s for the ready file. Sets DAEMON_PID, DAEMON_DIR, PORT and METRICS_PORT.
start_daemon() {
    DAEMON_DIR="${1:-$TEST_TMP/daemon}"
    mkdir -p "$DAEMON_DIR" "$TEST_TMP/cwd"
    [[ -f "$DAEMON_DIR/exemptd.yaml" ]] || write_config "$DAEMON_DIR/exemptd.yaml"
    rm -f "$DAEMON_DIR/ready"
    echo "=== start $(date -u +%T)" >>"$DAEMON_DIR/daemon.log"
    (cd "$TEST_TMP/cwd" && exec "$EXEMPTD_BIN" --config "$DAEMON_DIR/exemptd.yaml" \
        --ready-file "$DAEMON_DIR/ready") </dev/null >>"$DAEMON_DIR/daemon.log" 2>&1 &
    DAEMON_PID=$!
    echo "$DAEMON_PID" >>"$PID_FILE"
    local i
    for ((i = 0; i < 200; i++)); do
        [[ -s "$DAEMON_DIR/ready" ]] && break
        daemon_alive "$DAEMON_PID" || break
        sleep 0.05
    done
    if [[ ! -s "$DAEMON_DIR/ready" ]]; then
        daemon_alive "$DAEMON_PID" && fail "exemptd wrote no ready file within 10 s. $(daemon_log_tail)"
        wait "$DAEMON_PID" && rc=0 || rc=$?
        fail "exemptd exited with $rc before it was ready. $(daemon_log_tail)"
    fi
    local ready
    ready="$(cat "$DAEMON_DIR/ready")"
    PORT="$(sed -n 's/^listen=127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$DAEMON_DIR/ready")"
    METRICS_PORT="$(sed -n 's/^metrics_listen=127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$DAEMON_DIR/ready")"
    [[ -n "$PORT" && -n "$METRICS_PORT" && "$PORT" != 0 && "$METRICS_PORT" != 0 ]] \
        || fail "ready file should hold listen=127.0.0.1:PORT and metrics_listen=127.0.0.1:PORT, got: $ready"
}

daemon_log_tail() {
    printf '\n--- last lines of %s:\n' "$DAEMON_DIR/daemon.log"
    tail -n 30 "$DAEMON_DIR/daemon.log" 2>/dev/null || true
}

# stop_daemon — SIGTERM, then waits up to 10 s; the exit code must be 0. Must run in the shell
# that started the daemon (it reaps it). Returns 1 with a message instead of exiting, so finish
# can count it; inside a case write `stop_daemon || exit 1`.
stop_daemon() {
    [[ -n "$DAEMON_PID" ]] || return 0
    local pid="$DAEMON_PID" i rc
    DAEMON_PID=""
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        daemon_alive "$pid" || break
        sleep 0.05
    done
    if daemon_alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        printf 'FAIL: exemptd (pid %s) did not stop within 10 s of SIGTERM.%s\n' "$pid" "$(daemon_log_tail)" >&2
        return 1
    fi
    wait "$pid" && rc=0 || rc=$?
    if [[ "$rc" != 0 ]]; then
        printf 'FAIL: exemptd should exit 0 on SIGTERM, exited %s.%s\n' "$rc" "$(daemon_log_tail)" >&2
        return 1
    fi
}

# check_serving — the daemon is alive, answers /healthz, and still completes an mTLS request.
check_serving() {
    daemon_alive "$DAEMON_PID" || fail "exemptd (pid $DAEMON_PID) is no longer running. $(daemon_log_tail)"
    local code
    code="$(healthz_status)"
    [[ "$code" == 200 ]] || fail "GET /healthz answered $code. $(daemon_log_tail)"
    request helpdesk GET /v1/devices
    [[ "$STATUS" == 200 ]] || fail "exemptd no longer serves GET /v1/devices. $(last_response)"
}

# Stops every daemon this script started that is still running; by PID, and only if it is ours.
cleanup() {
    local rc=$? pid exe
    exe="$(readlink -f "$EXEMPTD_BIN")"
    while read -r pid; do
        if [[ -z "$pid" ]] || ! daemon_alive "$pid"; then continue; fi
        [[ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]] || continue
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do daemon_alive "$pid" || break; sleep 0.05; done
        daemon_alive "$pid" && kill -KILL "$pid" 2>/dev/null
    done <"$PID_FILE"
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then
        echo "kept $TEST_TMP" >&2
    else
        rm -rf "$TEST_TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Clients.

# ctl NAME ARGS... — exemptctl with NAME's certificate through EXEMPTCTL_* variables.
# Sets CTL_RC, CTL_OUT, CTL_ERR.
ctl() {
    local who="$1"
    shift
    [[ -x "$EXEMPTCTL_BIN" ]] || fail "exemptctl is not built (EXEMPTCTL_BIN='$EXEMPTCTL_BIN')"
    CTL_RC=0
    EXEMPTCTL_SERVER="https://127.0.0.1:$PORT" EXEMPTCTL_CERT="$PKI_DIR/$who.crt" \
        EXEMPTCTL_KEY="$PKI_DIR/$who.key" EXEMPTCTL_CA="$PKI_DIR/server-ca.crt" \
        timeout 20 "$EXEMPTCTL_BIN" "$@" >"$TEST_TMP/ctl.out" 2>"$TEST_TMP/ctl.err" || CTL_RC=$?
    CTL_OUT="$(<"$TEST_TMP/ctl.out")"
    CTL_ERR="$(<"$TEST_TMP/ctl.err")"
    LAST_CTL="exemptctl $* (as $who)"
}

assert_ctl() {   # EXPECTED_EXIT
    [[ "$CTL_RC" == "$1" ]] || fail "$LAST_CTL: expected exit $1, got $CTL_RC.
  stdout: $(printf '%.600s' "$CTL_OUT")
  stderr: $(printf '%.600s' "$CTL_ERR")"
}

# agent NAME POSTURE_FILE [SERVER_URL] — exempt-agent --once. Sets AGENT_RC, AGENT_OUT, AGENT_ERR.
agent() {
    [[ -x "$EXEMPT_AGENT_BIN" ]] || fail "exempt-agent is not built (EXEMPT_AGENT_BIN='$EXEMPT_AGENT_BIN')"
    AGENT_RC=0
    timeout 20 "$EXEMPT_AGENT_BIN" --once --posture-file "$2" \
        --server "${3:-https://127.0.0.1:$PORT}" --cert "$PKI_DIR/$1.crt" --key "$PKI_DIR/$1.key" \
        --ca "$PKI_DIR/server-ca.crt" >"$TEST_TMP/agent.out" 2>"$TEST_TMP/agent.err" || AGENT_RC=$?
    AGENT_OUT="$(<"$TEST_TMP/agent.out")"
    AGENT_ERR="$(<"$TEST_TMP/agent.err")"
    LAST_AGENT="exempt-agent --once --posture-file $(basename "$2") (as $1)"
}

assert_agent() {   # EXPECTED_EXIT
    [[ "$AGENT_RC" == "$1" ]] || fail "$LAST_AGENT: expected exit $1, got $AGENT_RC.
  stdout: $(printf '%.600s' "$AGENT_OUT")
  stderr: $(printf '%.600s' "$AGENT_ERR")"
}

# ---------------------------------------------------------------------------------------------
# Cases.

# run_case NAME FUNCTION [ARGS...] — runs FUNCTION in a subshell; then checks the daemon serves.
run_case() {
    local name="$1" rc start="${EPOCHREALTIME/[.,]/}"
    shift
    CASES_RUN=$((CASES_RUN + 1))
    set +e
    (
        set -e
        "$@"
    )
    rc=$?
    if ((rc == 0)) && [[ -n "$DAEMON_PID" ]]; then
        (check_serving)
        rc=$?
    fi
    set -e
    if ((rc == 0)); then
        echo "ok   - $name ($(( (${EPOCHREALTIME/[.,]/} - start) / 1000 )) ms)"
    else
        echo "FAIL - $name"
        CASES_FAILED+=("$name")
    fi
}

# finish — stops the daemon (exit code 0 required), prints a summary, and exits 1 on any failure.
finish() {
    if [[ -n "$DAEMON_PID" ]]; then
        CASES_RUN=$((CASES_RUN + 1))
        if stop_daemon; then
            echo "ok   - exemptd stops cleanly on SIGTERM"
        else
            echo "FAIL - exemptd stops cleanly on SIGTERM"
            CASES_FAILED+=("exemptd stops cleanly on SIGTERM")
        fi
    fi
    echo "$TEST_NAME: $((CASES_RUN - ${#CASES_FAILED[@]}))/$CASES_RUN cases passed"
    if ((${#CASES_FAILED[@]} > 0)); then
        printf '  failed: %s\n' "${CASES_FAILED[@]}"
        [[ -z "$DAEMON_DIR" ]] || daemon_log_tail
        exit 1
    fi
}
