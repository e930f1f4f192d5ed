#!/usr/bin/env bash
# Mutual TLS and roles (SPEC §3): who completes a handshake, what each role may do, and that
# refused clients never get an HTTP answer that leaks anything.
source "$(dirname "$0")/lib.sh"

# A valid certificate first, so that a refusal below cannot be a broken server.
case_valid_certificates_are_served() {
    api helpdesk GET /v1/devices
    assert_status 200
    api admin GET /v1/devices
    assert_status 200
    api endpoint-LAPTOP-0042 GET /v1/devices/LAPTOP-0042/decision
    assert_error 404 not_found
}

case_server_presents_the_dev_server_certificate() {
    # The server certificate verifies for both names in its SAN.
    local out
    out="$(curl_as helpdesk -o /dev/null -w '%{http_code}' --resolve "localhost:$PORT:127.0.0.1" \
        "https://localhost:$PORT/v1/devices")" || fail "https://localhost:$PORT failed"
    assert_eq 200 "$out" "GET via the name localhost"
    # A client that trusts another CA refuses the server.
    if curl -q -sS --noproxy '*' --max-time 10 --cacert "$PKI_DIR/clients-ca.crt" \
        --cert "$PKI_DIR/helpdesk.crt" --key "$PKI_DIR/helpdesk.key" -o /dev/null \
        "$(api_url /v1/devices)" 2>/dev/null; then
        fail "a client trusting only the clients CA accepted the server's certificate"
    fi
}

case_tls13_preferred_and_tls12_accepted() {
    local out
    out="$(openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$PKI_DIR/server-ca.crt" \
        -cert "$PKI_DIR/helpdesk.crt" -key "$PKI_DIR/helpdesk.key" -verify_return_error \
        -brief </dev/null 2>&1)" || true
    assert_contains "$out" "Protocol version: TLSv1.3" "openssl s_client -brief"
    request helpdesk GET /v1/devices "" --tls-max 1.2
    assert_status 200
}

# s_client_request WHO SESSION_ARGS... — one GET over a fresh openssl s_client, read to the end
# (a TLS 1.3 session ticket arrives after the handshake).
s_client_request() {
    local who="$1"
    shift
    printf 'GET /v1/devices HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
        timeout 20 openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$PKI_DIR/server-ca.crt" \
            -cert "$PKI_DIR/$who.crt" -key "$PKI_DIR/$who.key" -verify_return_error -ign_eof "$@" 2>&1 || true
}

case_sessions_resume_from_the_server_cache() {
    local out session="$TEST_TMP/session.pem"
    out="$(s_client_request helpdesk -sess_out "$session")"
    assert_contains "$out" "New, TLSv1.3" "first connection"
    assert_contains "$out" "HTTP/1.1 200" "first connection's answer"
    out="$(s_client_request helpdesk -sess_in "$session")"
    assert_contains "$out" "Reused, TLSv1.3" "second connection"
    assert_contains "$out" "HTTP/1.1 200" "resumed connection's answer"
    # Stateful: the ticket is a 32-byte id of the session in the server's cache, not the session.
    local ticket_lines
    ticket_lines="$(openssl sess_id -in "$session" -text -noout | sed -n '/TLS session ticket:/,/^ *Start Time/p' | grep -c ' - ')"
    ((ticket_lines <= 2)) || fail "the session ticket is $ticket_lines hex lines long: a stateless ticket"
    # A reload starts an empty cache: the old session is not resumed.
    kill -HUP "$DAEMON_PID"
    sleep 1
    out="$(s_client_request helpdesk -sess_in "$session")"
    assert_contains "$out" "New, TLSv1.3" "after SIGHUP"
}

case_tls11_is_refused() {
    local out
    # @SECLEVEL=0 lets this OpenSSL offer TLS 1.1 at all; the server must still refuse it.
    out="$(openssl s_client -connect "127.0.0.1:$PORT" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' \
        -cert "$PKI_DIR/helpdesk.crt" -key "$PKI_DIR/helpdesk.key" -brief </dev/null 2>&1)" || true
    assert_not_contains "$out" "CONNECTION ESTABLISHED" "openssl s_client -tls1_1"
    assert_contains "$out" "alert protocol version" "openssl s_client -tls1_1"
}

case_no_client_certificate_never_completes_handshake() {
    request - GET /v1/devices
    assert_refused_handshake
    request - GET /v1/devices "" --tls-max 1.2
    assert_refused_handshake
    request - POST /v1/checkin "$TEST_TMP/empty.json"
    assert_refused_handshake
}

case_certificate_from_rogue_ca_is_refused() {
    # rogue-ca has the same subject name as the clients CA; only the signature differs.
    request rogue-endpoint GET /v1/devices/LAPTOP-0042/decision
    assert_refused_handshake
    request rogue-endpoint GET /v1/devices/LAPTOP-0042/decision "" --tls-max 1.2
    assert_refused_handshake
    posture LAPTOP-0042 >"$TEST_TMP/report.json"
    request rogue-endpoint POST /v1/checkin "$TEST_TMP/report.json"
    assert_refused_handshake
}

case_certificate_without_clientauth_is_refused() {
    request noeku-endpoint GET /v1/devices/LAPTOP-0042/decision
    assert_refused_handshake
    request noeku-endpoint GET /v1/devices/LAPTOP-0042/decision "" --tls-max 1.2
    assert_refused_handshake
}

case_expired_certificate_is_refused() {
    request expired-endpoint GET /v1/devices/LAPTOP-0042/decision
    assert_refused_handshake
    request expired-endpoint GET /v1/devices/LAPTOP-0042/decision "" --tls-max 1.2
    assert_refused_handshake
}

case_ambiguous_identities_are_refused() {
    local who
    posture LAPTOP-0042 >"$TEST_TMP/report.json"
    for who in two-roles two-devices norole; do
        request "$who" GET /v1/devices
        assert_refused
        request "$who" GET /v1/devices/LAPTOP-0042/decision
        assert_refused
        request "$who" POST /v1/checkin "$TEST_TMP/report.json"
        assert_refused
        api "$who" PUT /v1/devices/TLS-AMBIGUOUS/enrollment \
            '{"enrolled": true, "owner": "sam@example.com", "source": "mdm"}'
        assert_refused
    done
    # None of them changed anything.
    api helpdesk GET /v1/devices/TLS-AMBIGUOUS/decision
    assert_error 404 not_found
    api helpdesk GET /v1/devices/LAPTOP-0042/decision
    assert_error 404 not_found
}

case_help_desk_is_read_only() {
    api helpdesk PUT /v1/devices/LAPTOP-0042/enrollment \
        '{"enrolled": true, "owner": "sam@example.com", "source": "mdm"}'
    assert_error 403 forbidden
    # The role is checked before the body: an invalid body is still 403.
    api helpdesk PUT /v1/devices/LAPTOP-0042/enrollment '{"enrolled": '
    assert_error 403 forbidden
    api helpdesk GET /v1/devices
    assert_status 200
    assert_eq 0 "$(jcount "$BODY" .devices)" "devices after help desk's refused enrollment"
}

case_endpoint_may_not_list_or_enroll() {
    api endpoint-LAPTOP-0042 GET /v1/devices
    assert_error 403 forbidden
    api endpoint-LAPTOP-0042 PUT /v1/devices/LAPTOP-0042/enrollment \
        '{"enrolled": true, "owner": "sam@example.com", "source": "mdm"}'
    assert_error 403 forbidden
}

case_admin_may_enroll() {
    api admin PUT /v1/devices/LAPTOP-0042/enrollment \
        '{"enrolled": true, "owner": "sam@example.com", "source": "mdm"}'
    assert_status 201
    assert_json .device_id LAPTOP-0042
    assert_json .enrollment.enrolled true
    # Every admin is an admin for enrollment, approver or not.
    api ciso PUT /v1/devices/LAPTOP-0043/enrollment \
        '{"enrolled": true, "owner": "jordan@example.com", "source": "mdm"}'
    assert_status 201
}

case_keep_alive_reuses_one_connection() {
    local out
    out="$(curl_as helpdesk -o /dev/null -o /dev/null -w '%{http_code}/%{num_connects} ' \
        "$(api_url /v1/devices)" "$(api_url /v1/devices/LAPTOP-0042/decision)")" \
        || fail "two requests on one connection failed: $out"
    assert_eq "200/1 404/0 " "$out" "status/new connections of two requests in one curl run"
}

printf '' >"$TEST_TMP/empty.json"
start_daemon
run_case "valid client certificates are served" case_valid_certificates_are_served
run_case "the server presents the dev server certificate" case_server_presents_the_dev_server_certificate
run_case "TLS 1.3 is preferred and TLS 1.2 accepted" case_tls13_preferred_and_tls12_accepted
run_case "TLS 1.3 sessions resume from the server's cache, emptied by a reload" case_sessions_resume_from_the_server_cache
run_case "TLS 1.1 is refused" case_tls11_is_refused
run_case "no client certificate: the handshake never completes" case_no_client_certificate_never_completes_handshake
run_case "a certificate from a rogue CA with the same name is refused" case_certificate_from_rogue_ca_is_refused
run_case "a certificate without EKU clientAuth is refused" case_certificate_without_clientauth_is_refused
run_case "an expired client certificate is refused" case_expired_certificate_is_refused
run_case "two roles, two devices or no role are refused" case_ambiguous_identities_are_refused
run_case "help desk may read but not enroll" case_help_desk_is_read_only
run_case "an endpoint may not list devices or enroll" case_endpoint_may_not_list_or_enroll
run_case "an admin may enroll" case_admin_may_enroll
run_case "keep-alive: two requests share one connection" case_keep_alive_reuses_one_connection
finish
