#!/usr/bin/env bash
# Hostile clients (issue 8): malformed, oversized, slow and flooding requests, and certificates
# that must not pass. Each gets its own status and error code (SPEC §4), the daemon keeps serving,
# and a refused request leaves the database exactly as it was.
#
# Two daemons: the main one with short timeouts (request 3 s) and a client CRL, and a small one
# with max_connections 50 and a check-in rate of 3 a minute. Needs sqlite3 and the
# exemptd-hold-connections helper (tests/tools).
source "$(dirname "$0")/lib.sh"

command -v sqlite3 >/dev/null || { echo "sqlite3 CLI is required" >&2; exit 1; }
HOLD_BIN="${EXEMPTD_HOLD_CONNECTIONS_BIN:-}"
readonly REQUEST_TIMEOUT=3
# The main daemon's handshake deadline. Under ASan and UBSan on a heavily loaded machine, one run
# ended with 1843 of 2,000 handshaked clients still open and a 3 MB upload unanswered, most likely
# handshakes the daemon could not finish within 3 s, so the sanitizer build (EXEMPTD_SANITIZERS=1)
# gives it 6 s. The cases check that the deadline holds, whatever its value.
if [[ "${EXEMPTD_SANITIZERS:-0}" == 1 ]]; then HANDSHAKE_TIMEOUT=6; else HANDSHAKE_TIMEOUT=3; fi
readonly HANDSHAKE_TIMEOUT

# ---------------------------------------------------------------------------------------------
# Helpers.

# db_dump — every table of the current daemon's database, as SQL text.
db_dump() {
    sqlite3 -batch "$DAEMON_DIR/state/exemptd.db" .dump
}

# refused_family NAME FUNCTION — runs FUNCTION and requires the database to be unchanged.
unchanged() {
    local before after
    before="$(db_dump)"
    "$@"
    after="$(db_dump)"
    [[ "$before" == "$after" ]] \
        || fail "$1 changed the database: $(diff <(echo "$before") <(echo "$after") | head -20)"
}

# post_checkin BODY [CERT] — POST /v1/checkin with BODY (bytes as given) as endpoint-LAPTOP-0042.
post_checkin() {
    printf '%s' "$1" >"$TEST_TMP/body"
    request "${2:-endpoint-LAPTOP-0042}" POST /v1/checkin "$TEST_TMP/body"
}

metric() {   # NAME_WITH_LABELS — the value of one series on /metrics
    curl -q -s --noproxy '*' --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" \
        | awk -v name="$1" '$1 == name { print $2 }'
}

# upload FILE CURL_ARGS... — POSTs FILE to /v1/checkin as endpoint-LAPTOP-0042; sets STATUS and
# UPLOADED (the bytes curl managed to send before the answer or the close).
upload() {
    local file="$1" out
    shift
    out="$(curl_as endpoint-LAPTOP-0042 -o "$TEST_TMP/response" -w '%{http_code} %{size_upload}' \
        -H 'Content-Type: application/json' --data-binary "@$file" "$@" "$(api_url /v1/checkin)" 2>/dev/null)" || true
    STATUS="${out%% *}"
    UPLOADED="${out#* }"
    UPLOADED="${UPLOADED%.*}"
    BODY="$(<"$TEST_TMP/response")"
    CTYPE=application/json
    LAST_REQUEST="POST /v1/checkin with $(stat -c %s "$file") bytes $*"
}

# ---------------------------------------------------------------------------------------------
# Bodies that do not parse or have wrong types: 400, nothing written.

bad_bodies() {
    local body
    for body in '{' '{"device_id": "LAPTOP-0042",' '' 'not json' '{"a":1}{"b":2}' "$(posture LAPTOP-0042 | head -c 80)"; do
        post_checkin "$body"
        assert_error 400 malformed_json
    done
    post_checkin '[]'
    assert_error 400 malformed_json
    # Invalid UTF-8 inside a string.
    post_checkin "$(posture LAPTOP-0042 | sed 's/host-LAPTOP-0042/\xff\xfe\xc0/')"
    assert_error 400 malformed_json
    # 10,000 nested arrays or objects.
    post_checkin "$(printf '%.0s[' {1..10000})"
    assert_error 400 malformed_json
    assert_contains "$BODY" "too deep" "deep nesting message"
    post_checkin "$(printf '%.0s{"a":' {1..10000})"
    assert_error 400 malformed_json
    # Wrong types.
    post_checkin "$(posture LAPTOP-0042 | sed 's/"device_id": "LAPTOP-0042"/"device_id": 42/')"
    assert_error 400 invalid_field
    post_checkin "$(posture LAPTOP-0042 | sed 's/"facts": {/"facts": 7, "x": {/')"
    assert_error 400 invalid_field
    post_checkin "$(posture LAPTOP-0042 reported_at=12345 | sed 's/"12345"/12345/')"
    assert_error 400 invalid_field
    post_checkin "$(posture LAPTOP-0042 nonce=short)"
    assert_error 400 invalid_field
    # A number beyond a double.
    post_checkin "$(posture LAPTOP-0042 os_patch_age_days=1e400)"
    assert_error 400 invalid_field
    # The same on admin routes.
    api admin PUT /v1/devices/HOSTILE-0001/enrollment '{"enrolled": "yes", "owner": "sam@example.com", "source": "mdm"}'
    assert_error 400 invalid_field
    api admin PUT /v1/devices/HOSTILE-0001/enrollment '{"enrolled": true, "owner": '
    assert_error 400 malformed_json
    api admin POST /v1/exemptions '{"subject": 5}'
    assert_error 400 invalid_field
    api admin POST /v1/exemptions "$(printf '%.0s[' {1..10000})"
    assert_error 400 malformed_json
    api admin POST /v1/agreements '{"document": "not base64!", "signature": []}'
    assert_error 400 invalid_field
}

case_bad_bodies_are_400() {
    unchanged bad_bodies
}

case_huge_integer_is_a_number() {
    # 2^64 is a valid JSON number: the report is stored and the control fails on it (it is
    # posture, not a type error); the answer is a decision, not a crash or a wrap-around.
    post_checkin "$(posture LAPTOP-0042 os_patch_age_days=18446744073709551616)"
    assert_status 200
    assert_control OS-01 status fail
}

# ---------------------------------------------------------------------------------------------
# Sizes.

too_large() {
    local pad i
    # 100 KiB in one header, and 2,000 small ones: both over the 16 KiB header limit.
    pad="$(head -c 102400 /dev/zero | tr '\0' a)"
    request helpdesk GET /v1/devices "" -H "X-Pad: $pad"
    assert_error 431 headers_too_large
    local -a many=()
    for ((i = 0; i < 2000; i++)); do many+=(-H "X-H$i: value-$i"); done
    request helpdesk GET /v1/devices "" "${many[@]}"
    assert_error 431 headers_too_large

    # 3 MB with Content-Length: refused from the header, before the body is read. curl sends
    # Expect: 100-continue for a body this large, gets the 413 instead and sends nothing.
    head -c 3000000 /dev/zero | tr '\0' ' ' >"$TEST_TMP/big.json"
    upload "$TEST_TMP/big.json"
    assert_error 413 body_too_large
    assert_eq 0 "$UPLOADED" "bytes of the 3 MB body sent after the 413"
    # Without Expect curl sends the body at once; chunked, no Content-Length announces it. The
    # daemon answers 413, reads at most max_body_bytes more and closes; curl may hit the close
    # while still sending, and then never reads the answer.
    local -a variant
    for variant in "-H Expect:" "-H Transfer-Encoding:chunked" "-H Transfer-Encoding:chunked -H Expect:"; do
        # shellcheck disable=SC2086  # the variant is split on purpose
        upload "$TEST_TMP/big.json" $variant
        note "3 MB body with curl $variant: HTTP $STATUS after $UPLOADED bytes handed to the kernel"
        [[ "$STATUS" == 000 || "$STATUS" == 100 ]] || assert_error 413 body_too_large
    done
    # What the daemon read: a client with an 8 KiB send buffer can only send what the daemon
    # read plus its receive buffer (curl's send buffer grows to megabytes on loopback).
    [[ -x "$HOLD_BIN" ]] || fail "exemptd-hold-connections is not built (EXEMPTD_HOLD_CONNECTIONS_BIN='$HOLD_BIN')"
    local head="POST /v1/checkin HTTP/1.1"$'\r\n'"Host: x"$'\r\n'"Content-Type: application/json"$'\r\n' out
    printf '%sContent-Length: 3000000\r\n\r\n' "$head" >"$TEST_TMP/head.length"
    printf '%sTransfer-Encoding: chunked\r\n\r\n2DC6C0\r\n' "$head" >"$TEST_TMP/head.chunked"
    for variant in length chunked; do
        out="$("$HOLD_BIN" upload "$PORT" "$PKI_DIR/server-ca.crt" "$PKI_DIR/endpoint-LAPTOP-0042.crt" \
            "$PKI_DIR/endpoint-LAPTOP-0042.key" "$TEST_TMP/head.$variant" 3000000)"
        note "3 MB body ($variant) from a client with a small send buffer: $out"
        assert_match "$out" '^sent=[0-9]+ status=413$' "3 MB body ($variant)"
        out="${out#sent=}"
        ((${out%% *} < 1000000)) || fail "the daemon took ${out%% *} bytes of a refused 3 MB body ($variant)"
    done
}

case_oversized_headers_and_bodies_are_refused_early() {
    unchanged too_large
}

# ---------------------------------------------------------------------------------------------
# Replays and clocks.

case_replayed_and_skewed_reports() {
    local report
    report="$(posture LAPTOP-0042)"
    post_checkin "$report"
    assert_status 200
    unchanged post_checkin "$report"
    assert_error 409 replay
    unchanged post_checkin "$(posture LAPTOP-0042 reported_at="$(now_rfc3339 -3600)")"
    assert_error 422 clock_skew
    unchanged post_checkin "$(posture LAPTOP-0042 reported_at="$(now_rfc3339 3600)")"
    assert_error 422 clock_skew
    unchanged post_checkin "$(posture LAPTOP-0042 reported_at="1970-01-01T00:00:00Z")"
    assert_error 422 clock_skew
}

# ---------------------------------------------------------------------------------------------
# Injection-shaped ids and fields: refused by syntax, or stored literally.

injections() {
    local id
    for id in "LAPTOP'%3B%20DROP%20TABLE%20devices%3B--" "..%2F..%2Fetc%2Fpasswd" "A%00B" "LAPTOP-%C3%A9" \
        "$(printf 'A%.0s' {1..65})" "$(printf 'A%.0s' {1..5000})" "%25"; do
        request helpdesk GET "/v1/devices/$id/decision"
        assert_error 400 invalid_device_id
        request admin PUT "/v1/devices/$id/enrollment" "$TEST_TMP/enroll.json"
        assert_error 400 invalid_device_id
        request helpdesk GET "/v1/devices/$id/explain"
        assert_error 400 invalid_device_id
    done
    request helpdesk GET "/v1/devices/../../etc/passwd" "" --path-as-is
    assert_error 404 not_found
    request helpdesk GET "/v1/../../../etc/passwd" "" --path-as-is
    assert_error 404 not_found
    request helpdesk GET "/v1/exemptions/EX-000001'%20OR%20'1'='1"
    assert_error 404 not_found
    request helpdesk GET "/v1/agreements/..%2F..%2Fetc%2Fpasswd"
    assert_error 404 not_found
    # Query strings.
    request helpdesk GET "/v1/devices?state=allowed'%20OR%201=1--"
    assert_error 400 invalid_field
    request helpdesk GET "/v1/exemptions?state=active%00"
    assert_error 400 invalid_field
    request helpdesk GET "/v1/audit?after=1%20OR%201=1"
    assert_error 400 invalid_field
    request helpdesk GET "/v1/devices/LAPTOP-0042/explain?at=2026-01-01T00:00:00Z'%3B--"
    assert_error 400 invalid_field
    request helpdesk GET "/v1/exemptions?subject=device:X'%3B%20DROP%20TABLE%20exemptions%3B--"
    assert_status 200
    assert_eq 0 "$(jcount "$BODY" .exemptions)" "exemptions for an injection-shaped subject"
    # Bodies.
    post_checkin "$(posture "LAPTOP'; DROP TABLE devices;--")"
    assert_error 400 invalid_field
    post_checkin "$(posture "../../etc/passwd")"
    assert_error 400 invalid_field
    post_checkin "$(posture LAPTOP-0043)"
    assert_error 403 forbidden
    api admin PUT /v1/devices/HOSTILE-0001/enrollment \
        '{"enrolled": true, "owner": "x'"'"'; DROP TABLE devices;--@example.com", "source": "mdm"}'
    assert_error 400 invalid_field
    api admin POST /v1/exemptions '{"subject": "device:LAPTOP'"'"'; DROP TABLE exemptions;--", "controls": ["OS-01"],
        "justification": "j", "risk": {"likelihood": "low", "impact": "low"}, "mitigations": ["m"],
        "expires_at": "'"$(now_rfc3339 86400)"'"}'
    assert_error 422 invalid_subject
}

case_injection_shaped_input_is_refused() {
    printf '{"enrolled": true, "owner": "sam@example.com", "source": "mdm"}' >"$TEST_TMP/enroll.json"
    unchanged injections
}

case_injection_shaped_text_is_stored_literally() {
    # Free text may hold anything; it is bound as a parameter and comes back byte for byte.
    local text="Robert'); DROP TABLE exemptions;-- ../../etc/passwd %00 \u00e9\u4e2d\ud83d\ude00"
    api admin POST /v1/exemptions '{"subject": "device:LAPTOP-0042", "controls": ["OS-01"],
        "justification": "'"$text"'", "risk": {"likelihood": "low", "impact": "low"},
        "mitigations": ["m"], "expires_at": "'"$(now_rfc3339 86400)"'"}'
    assert_status 201
    local id
    id="$(jget "$BODY" .id)"
    api helpdesk GET "/v1/exemptions/$id"
    assert_status 200
    assert_eq "Robert'); DROP TABLE exemptions;-- ../../etc/passwd %00 é中😀" "$(jget "$BODY" .justification)" \
        "justification read back"
    assert_eq 1 "$(sqlite3 "$DAEMON_DIR/state/exemptd.db" "SELECT count(*) FROM exemptions")" "exemptions table"
}

# ---------------------------------------------------------------------------------------------
# Certificates.

# make_cert NAME EXTENSIONS... — NAME.{crt,key} in $PKI_DIR, signed by the clients CA.
make_cert() {
    local name="$1" dir="$TEST_TMP/certs"
    shift
    mkdir -p "$dir"
    { echo "[ext]"; printf '%s\n' "$@"; } >"$dir/$name.ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/$name.key" \
        -subj "/O=exemptd dev/CN=$name" -out "$dir/$name.csr" 2>/dev/null
    openssl x509 -req -in "$dir/$name.csr" -CA "$PKI_DIR/clients-ca.crt" -CAkey "$PKI_DIR/clients-ca.key" \
        -set_serial "0x$(openssl rand -hex 12)" -days 30 -extfile "$dir/$name.ext" -extensions ext \
        -out "$dir/$name.crt" 2>/dev/null
    cp "$dir/$name.key" "$dir/$name.crt" "$PKI_DIR/"
}

# make_client_crl CERT... — $TEST_TMP/clients.crl from the clients CA, revoking CERTs.
make_client_crl() {
    local d="$TEST_TMP/clients-ca" cert
    mkdir -p "$d"
    : >"$d/index"
    echo 01 >"$d/crlnumber"
    printf '[ca]\ndefault_ca = c\n[c]\ndatabase = %s/index\ncrlnumber = %s/crlnumber\ndefault_md = sha256\n' \
        "$d" "$d" >"$d/ca.cnf"
    for cert in "$@"; do
        openssl ca -batch -config "$d/ca.cnf" -cert "$PKI_DIR/clients-ca.crt" -keyfile "$PKI_DIR/clients-ca.key" \
            -revoke "$cert" 2>/dev/null || fail "could not revoke $cert"
    done
    openssl ca -batch -config "$d/ca.cnf" -cert "$PKI_DIR/clients-ca.crt" -keyfile "$PKI_DIR/clients-ca.key" \
        -gencrl -crldays 30 -out "$TEST_TMP/clients.crl" 2>/dev/null || fail "could not issue the client CRL"
}

bad_certificates() {
    local who
    for who in two-roles two-devices norole hostile-ca-leaf expired-endpoint endpoint-HOSTILE-REVOKED rogue-endpoint; do
        post_checkin "$(posture LAPTOP-0042)" "$who"
        assert_refused_handshake
        request "$who" GET /v1/devices/LAPTOP-0042/decision
        assert_refused_handshake
    done
}

case_refused_certificates_never_reach_a_route() {
    unchanged bad_certificates
    # A valid certificate from the same CA still works with the CRL loaded.
    post_checkin "$(posture HOSTILE-VALID)" endpoint-HOSTILE-VALID
    assert_status 200
    local reason
    for reason in certificate_revoked certificate_expired invalid_identity untrusted_certificate; do
        local n
        n="$(metric "exemptd_tls_handshake_failures_total{reason=\"$reason\"}")"
        ((${n:-0} >= 1)) || fail "no handshake failure counted as $reason"
    done
}

# ---------------------------------------------------------------------------------------------
# Slow clients.

# slow_client MODE OUT — one TLS connection as endpoint-LAPTOP-0042 that trickles a check-in a
# byte a second (MODE header: the request line and headers; MODE body: headers at once, then
# the body); writes the seconds from start to the server closing it to OUT.
slow_client() {
    local mode="$1" out="$2" start="$EPOCHREALTIME" head body
    body="$(posture LAPTOP-0042)"
    head="POST /v1/checkin HTTP/1.1"$'\r\n'"Host: x"$'\r\n'"Content-Type: application/json"$'\r\n'
    head+="Content-Length: ${#body}"$'\r\n\r\n'
    {
        if [[ "$mode" == body ]]; then printf '%s' "$head"; else body="$head$body"; fi
        local i
        for ((i = 0; i < 30; i++)); do
            printf '%s' "${body:i:1}" || exit 0
            sleep 1
        done
    } 2>/dev/null | {
        timeout 30 openssl s_client -quiet -connect "127.0.0.1:$PORT" -CAfile "$PKI_DIR/server-ca.crt" \
            -cert "$PKI_DIR/endpoint-LAPTOP-0042.crt" -key "$PKI_DIR/endpoint-LAPTOP-0042.key" >/dev/null 2>&1 || true
        echo $(((${EPOCHREALTIME/[.,]/} - ${start/[.,]/}) / 1000)) >"$out"
    }
}

case_slowloris_is_closed_at_the_request_deadline() {
    local i pids=() t worst=0 elapsed
    for ((i = 0; i < 20; i++)); do
        slow_client "$([[ $((i % 2)) == 0 ]] && echo header || echo body)" "$TEST_TMP/slow.$i" &
        pids+=($!)
    done
    sleep 1
    # Real check-ins are served meanwhile, and fast.
    for ((i = 0; i < 5; i++)); do
        t="$(curl_as endpoint-LAPTOP-0043 -o /dev/null -w '%{http_code} %{time_total}' \
            -H 'Content-Type: application/json' --data-binary "$(posture LAPTOP-0043)" "$(api_url /v1/checkin)")"
        assert_eq 200 "${t%% *}" "check-in during the slowloris"
        note "check-in during the slowloris: ${t#* } s"
        awk -v t="${t#* }" 'BEGIN { exit !(t < 1.5) }' || fail "a check-in took ${t#* } s during the slowloris"
    done
    wait "${pids[@]}" || true
    for ((i = 0; i < 20; i++)); do
        elapsed="$(cat "$TEST_TMP/slow.$i" 2>/dev/null || echo 99999)"
        ((elapsed > worst)) && worst="$elapsed"
        # Closed at the request deadline: after it (not refused at once), and well before the
        # 30 s the client would need to finish.
        ((elapsed >= (REQUEST_TIMEOUT - 1) * 1000 && elapsed <= (REQUEST_TIMEOUT + 6) * 1000)) \
            || fail "slow client $i was closed after $elapsed ms; the request deadline is ${REQUEST_TIMEOUT} s"
    done
    note "20 slow clients (10 trickling headers, 10 a body) closed after at most $worst ms"
}

case_silent_connections_are_closed_at_the_handshake_deadline() {
    [[ -x "$HOLD_BIN" ]] || fail "exemptd-hold-connections is not built (EXEMPTD_HOLD_CONNECTIONS_BIN='$HOLD_BIN')"
    # TCP only, never a ClientHello: the handshake timeout ends them.
    local hold=$((HANDSHAKE_TIMEOUT + 2))
    "$HOLD_BIN" "$PORT" 20 "$hold" >"$TEST_TMP/silent.out"
    assert_contains "$(cat "$TEST_TMP/silent.out")" "opened=20 failed=0" "silent connections"
    assert_contains "$(cat "$TEST_TMP/silent.out")" "open=0 closed=20" "silent connections after $hold s"
}

# ---------------------------------------------------------------------------------------------
# Many connections.

case_2000_idle_connections_while_check_ins_work() {
    [[ -x "$HOLD_BIN" ]] || fail "exemptd-hold-connections is not built (EXEMPTD_HOLD_CONNECTIONS_BIN='$HOLD_BIN')"
    "$HOLD_BIN" "$PORT" 2000 60 "$PKI_DIR/server-ca.crt" "$PKI_DIR/helpdesk.crt" "$PKI_DIR/helpdesk.key" \
        >"$TEST_TMP/idle.out" &
    local hold_pid=$! i
    for ((i = 0; i < 600; i++)); do
        grep -q opened= "$TEST_TMP/idle.out" && break
        sleep 0.1
    done
    assert_contains "$(cat "$TEST_TMP/idle.out")" "opened=2000 failed=0" "2,000 TLS connections"
    local open
    open="$(metric exemptd_open_connections)"
    ((open >= 2000)) || fail "exemptd_open_connections is $open with 2,000 idle clients"
    for ((i = 0; i < 3; i++)); do
        post_checkin "$(posture LAPTOP-0043)" endpoint-LAPTOP-0043
        assert_status 200
    done
    kill -USR1 "$hold_pid"
    wait "$hold_pid"
    assert_contains "$(cat "$TEST_TMP/idle.out")" "open=2000 closed=0" "idle connections within the idle timeout"
}

# flood N — opens N TLS connections and holds them while checking that the daemon refuses more.
case_flood_above_max_connections() {
    [[ -x "$HOLD_BIN" ]] || fail "exemptd-hold-connections is not built (EXEMPTD_HOLD_CONNECTIONS_BIN='$HOLD_BIN')"
    "$HOLD_BIN" "$PORT" 80 30 "$PKI_DIR/server-ca.crt" "$PKI_DIR/helpdesk.crt" "$PKI_DIR/helpdesk.key" \
        >"$TEST_TMP/flood.out" &
    local hold_pid=$! i
    for ((i = 0; i < 300; i++)); do
        grep -q opened= "$TEST_TMP/flood.out" && break
        sleep 0.1
    done
    assert_contains "$(cat "$TEST_TMP/flood.out")" "opened=50 failed=30" "80 connections against max_connections 50"
    request helpdesk GET /v1/devices
    assert_refused_handshake
    assert_eq 31 "$(metric 'exemptd_connections_refused_total{reason="max_connections"}')" "refused connections"
    local lines
    lines="$(grep -c 'event=connection_refused' "$DAEMON_DIR/daemon.log")"
    note "31 refused connections logged in $lines lines"
    ((lines >= 1 && lines <= 4)) || fail "31 refused connections gave $lines log lines; expected at most one a second"
    kill -USR1 "$hold_pid"
    wait "$hold_pid"
    assert_contains "$(cat "$TEST_TMP/flood.out")" "open=50 closed=0" "the 50 admitted connections"
    # The daemon serves as soon as they are gone (check_serving runs after this case).
    sleep 0.3
}

case_flood_above_max_connections_per_address() {
    "$HOLD_BIN" "$PORT" 8 0 "$PKI_DIR/server-ca.crt" "$PKI_DIR/helpdesk.crt" "$PKI_DIR/helpdesk.key" \
        >"$TEST_TMP/per-address.out"
    assert_contains "$(cat "$TEST_TMP/per-address.out")" "opened=5 failed=3" "8 connections from one address, cap 5"
    assert_eq 3 "$(metric 'exemptd_connections_refused_total{reason="max_connections_per_address"}')" \
        "refused per address"
    sleep 0.3
}

case_idle_connections_are_closed_at_the_idle_deadline() {
    # TLS established, then no request: the idle timeout (2 s on this daemon) ends them.
    "$HOLD_BIN" "$PORT" 3 5 "$PKI_DIR/server-ca.crt" "$PKI_DIR/helpdesk.crt" "$PKI_DIR/helpdesk.key" \
        >"$TEST_TMP/idle-deadline.out"
    assert_contains "$(cat "$TEST_TMP/idle-deadline.out")" "opened=3 failed=0" "TLS connections"
    assert_contains "$(cat "$TEST_TMP/idle-deadline.out")" "open=0 closed=3" "idle connections after 5 s"
}

# ---------------------------------------------------------------------------------------------
# The per-device check-in rate.

rate_limited() {
    post_checkin "$(posture LAPTOP-0042)"
    assert_error 429 rate_limited
}

case_check_in_rate_per_device() {
    local i
    for ((i = 0; i < 3; i++)); do
        post_checkin "$(posture LAPTOP-0042)"
        assert_status 200
    done
    unchanged rate_limited
    local headers
    headers="$(curl_as endpoint-LAPTOP-0042 -o /dev/null -D - -H 'Content-Type: application/json' \
        --data-binary "$(posture LAPTOP-0042)" "$(api_url /v1/checkin)" | tr -d '\r')"
    assert_match "$headers" $'HTTP/1.1 429[^\n]*\n' "status line"
    assert_match "$headers" $'\n[Rr]etry-[Aa]fter: (1[0-9]|20)\n' "Retry-After (one check-in every 20 s)"
    # Another device is not limited by this one.
    post_checkin "$(posture LAPTOP-0043)" endpoint-LAPTOP-0043
    assert_status 200
}

# ---------------------------------------------------------------------------------------------
# Out of file descriptors: accepts fail, and the daemon neither spins nor floods its log.

case_accept_failures_are_throttled() {
    assert_contains "$(cat "$DAEMON_DIR/daemon.log")" "event=fd_limit_low" "start-up warning for max_connections"
    # 150 TCP connections against a daemon limited to 64 descriptors: the ones it cannot accept
    # wait in the backlog for 3 s.
    "$HOLD_BIN" "$PORT" 150 3 >"$TEST_TMP/emfile.out"
    assert_contains "$(cat "$TEST_TMP/emfile.out")" "opened=150 failed=0" "connections into the backlog"
    local lines
    lines="$(grep -c 'event=accept_failed' "$DAEMON_DIR/daemon.log")"
    note "3 s out of descriptors: $lines accept_failed lines"
    ((lines >= 1 && lines <= 6)) || fail "3 s of failing accepts logged $lines lines; expected at most one a second"
    # Once they are gone it serves again (check_serving runs after this case); the held ones
    # still in the handshake end at its 3 s timeout.
    local i
    for ((i = 0; i < 50; i++)); do
        [[ "$(healthz_status)" == 200 ]] && request helpdesk GET /v1/devices && [[ "$STATUS" == 200 ]] && return 0
        sleep 0.2
    done
    fail "the daemon did not serve again after running out of descriptors. $(last_response)"
}

# ---------------------------------------------------------------------------------------------

mint_endpoint HOSTILE-VALID
mint_endpoint HOSTILE-REVOKED
make_cert hostile-ca-leaf "basicConstraints = critical, CA:TRUE" "keyUsage = critical, digitalSignature, keyCertSign" \
    "extendedKeyUsage = clientAuth" \
    "subjectAltName = URI:urn:exemptd:role:endpoint, URI:urn:exemptd:device:LAPTOP-0042"
make_client_crl "$PKI_DIR/endpoint-HOSTILE-REVOKED.crt"

MAIN_DIR="$TEST_TMP/main"
write_config "$MAIN_DIR/exemptd.yaml" \
    "limits: {request_timeout_seconds: $REQUEST_TIMEOUT, handshake_timeout_seconds: $HANDSHAKE_TIMEOUT, idle_timeout_seconds: 60, max_connections: 3000, checkin_rate_per_minute: 0}"
sed -i "s|client_ca: \([^,}]*\)}|client_ca: \1, client_crl: $TEST_TMP/clients.crl}|" "$MAIN_DIR/exemptd.yaml"
start_daemon "$MAIN_DIR"
run_case "malformed, truncated, invalid UTF-8, deep and wrong-typed bodies are 400" case_bad_bodies_are_400
run_case "2^64 is a number: a decision, not an error" case_huge_integer_is_a_number
run_case "100 KiB of headers is 431; a 3 MB body is 413 and not read" case_oversized_headers_and_bodies_are_refused_early
run_case "replayed reports are 409 replay, skewed ones 422 clock_skew" case_replayed_and_skewed_reports
run_case "injection-shaped ids and fields are refused by syntax" case_injection_shaped_input_is_refused
run_case "injection-shaped free text is stored literally" case_injection_shaped_text_is_stored_literally
run_case "two roles, two devices, CA:TRUE, expired, revoked and rogue certificates are refused" \
    case_refused_certificates_never_reach_a_route
run_case "slowloris connections are closed at the request deadline while check-ins go on" \
    case_slowloris_is_closed_at_the_request_deadline
run_case "connections that never start TLS are closed at the handshake deadline" \
    case_silent_connections_are_closed_at_the_handshake_deadline
run_case "2,000 idle TLS connections while check-ins still work" case_2000_idle_connections_while_check_ins_work
stop_daemon || CASES_FAILED+=("the main daemon stops cleanly")

SMALL_DIR="$TEST_TMP/small"
write_config "$SMALL_DIR/exemptd.yaml" "limits: {max_connections: 50, checkin_rate_per_minute: 3}"
start_daemon "$SMALL_DIR"
run_case "a connection flood above max_connections is closed at once and served after" case_flood_above_max_connections
run_case "a device checking in too often gets 429 rate_limited with Retry-After" case_check_in_rate_per_device
stop_daemon || CASES_FAILED+=("the small daemon stops cleanly")
sed -i 's/max_connections: 50,/max_connections: 50, max_connections_per_address: 5, idle_timeout_seconds: 2,/' \
    "$SMALL_DIR/exemptd.yaml"
start_daemon "$SMALL_DIR"
run_case "connections above max_connections_per_address are closed at once" case_flood_above_max_connections_per_address
run_case "TLS connections that send no request are closed at the idle deadline" \
    case_idle_connections_are_closed_at_the_idle_deadline
stop_daemon || CASES_FAILED+=("the small daemon stops cleanly")

# A daemon limited to 64 file descriptors (soft and hard, so it cannot raise them), through a
# wrapper that lowers the limit and execs the real binary. EXEMPTD_BIN goes back to the real
# binary at once: cleanup stops only processes running it.
#
# Not under the sanitizers: UBSan (GCC 12) checks whether memory is readable by writing it into a
# pipe(), so in a process with no descriptor left its vptr check reports valid objects as "invalid
# vptr" and aborts the daemon (Boost.Beast's error category during a failed handshake). The
# release build of the same CI run covers this case.
if [[ "${EXEMPTD_SANITIZERS:-0}" == 1 ]]; then
    echo "skip - out of file descriptors (UBSan's vptr check needs a free descriptor; covered by the release build)"
    finish
    exit 0
fi
printf '#!/usr/bin/env bash\nulimit -n 64 || exit 1\nexec "%s" "$@"\n' "$EXEMPTD_BIN" >"$TEST_TMP/exemptd-64fds"
chmod +x "$TEST_TMP/exemptd-64fds"
REAL_EXEMPTD_BIN="$EXEMPTD_BIN"
EXEMPTD_BIN="$TEST_TMP/exemptd-64fds"
FDS_DIR="$TEST_TMP/fds"
write_config "$FDS_DIR/exemptd.yaml" "threads: 1" "handler_threads: 2" "limits: {handshake_timeout_seconds: 3}"
start_daemon "$FDS_DIR"
EXEMPTD_BIN="$REAL_EXEMPTD_BIN"
run_case "out of file descriptors, failed accepts are retried without spinning or flooding the log" \
    case_accept_failures_are_throttled
finish
