#!/usr/bin/env bash
# The enrollment registry: PUT /v1/devices/{id}/enrollment, GET /v1/devices[?state=…], and the
# exemptctl device commands with their exit codes (SPEC §4, §9).
source "$(dirname "$0")/lib.sh"

readonly kSam='{"enrolled": true, "owner": "sam@example.com", "source": "mdm"}'

# devices_in STATE — the device ids GET /v1/devices?state=STATE lists, space-separated, sorted.
devices_in() {
    local query=""
    [[ -z "$1" ]] || query="?state=$1"
    api helpdesk GET "/v1/devices$query"
    assert_status 200
    LISTED="$(jcolumn "$BODY" .devices .device_id | sort | tr '\n' ' ')"
}

assert_listed() {   # STATE "ID ID ..."
    devices_in "$1"
    local want="" ids
    read -r -a ids <<<"$2"
    ((${#ids[@]} == 0)) || want="$(printf "%s\n" "${ids[@]}" | sort | tr "\n" " ")"
    assert_eq "$want" "$LISTED" "GET /v1/devices?state=$1"
}

case_put_enrollment_creates_then_is_idempotent() {
    api admin PUT /v1/devices/LAPTOP-0042/enrollment "$kSam"
    assert_status 201
    assert_json .device_id LAPTOP-0042
    assert_json .enrollment.enrolled true
    assert_json .enrollment.owner sam@example.com
    assert_json .enrollment.source mdm
    local first="$BODY"

    api admin PUT /v1/devices/LAPTOP-0042/enrollment "$kSam"
    assert_status 200
    assert_json .device_id LAPTOP-0042
    assert_json .enrollment.enrolled true
    assert_json .enrollment.owner sam@example.com
    # Nothing changed, so the stored record (its updated_at) is the one the first PUT wrote.
    assert_json .enrollment.updated_at "$(jget "$first" .enrollment.updated_at)"
}

case_changing_an_enrollment_updates_it() {
    api admin PUT /v1/devices/LAPTOP-0042/enrollment \
        '{"enrolled": true, "owner": "jordan@example.com", "source": "mdm"}'
    assert_status 200
    assert_json .enrollment.owner jordan@example.com
    api admin PUT /v1/devices/LAPTOP-0042/enrollment "$kSam"
    assert_status 200
    assert_json .enrollment.owner sam@example.com
}

case_invalid_enrollment_bodies_are_400() {
    api admin PUT /v1/devices/LAPTOP-0042/enrollment '{"enrolled": true, "owner": '
    assert_error 400 malformed_json
    api admin PUT /v1/devices/LAPTOP-0042/enrollment 'not json'
    assert_error 400 malformed_json
    local body
    for body in '{"enrolled": "yes", "owner": "sam@example.com", "source": "mdm"}' \
        '{"enrolled": false, "owner": 7, "source": "mdm"}' \
        '{"owner": "sam@example.com", "source": "mdm"}'; do
        api admin PUT /v1/devices/LAPTOP-0042/enrollment "$body"
        assert_error 400 invalid_field
    done
    # JSON that is not an object: either 400 code describes it.
    api admin PUT /v1/devices/LAPTOP-0042/enrollment '[true]'
    assert_status 400
    [[ "$(jget "$BODY" .error.code)" == @(malformed_json|invalid_field) ]] \
        || fail "a JSON array as enrollment: expected malformed_json or invalid_field. $(last_response)"
    # None of them changed the registry.
    api helpdesk GET /v1/devices
    assert_status 200
    assert_eq "LAPTOP-0042" "$(jcolumn "$BODY" .devices .device_id | tr '\n' ' ' | sed 's/ $//')" \
        "devices after refused enrollments"
    assert_json .devices[0].enrollment.enrolled true
    assert_json .devices[0].enrollment.owner sam@example.com
}

case_invalid_device_id_in_path_is_refused() {
    local id
    for id in "$(printf 'A%.0s' {1..65})" "bad%20id" "bad%2Fid"; do
        api admin PUT "/v1/devices/$id/enrollment" "$kSam"
        case "$STATUS" in
            400) assert_error 400 invalid_device_id ;;
            404) assert_error 404 not_found ;;
            *) fail "device id '$id' in the path: expected 400 or 404. $(last_response)" ;;
        esac
    done
    api helpdesk GET /v1/devices
    assert_eq 1 "$(jcount "$BODY" .devices)" "devices after refused device ids"
}

case_device_list_filters_by_state() {
    # LAPTOP-0042: enrolled and compliant -> allowed.
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042)"
    assert_status 200
    assert_json .decision allow
    # LAPTOP-0043: never enrolled, checks in -> denied and unenrolled.
    checkin endpoint-LAPTOP-0043 "$(posture LAPTOP-0043)"
    assert_status 200
    assert_json .decision deny
    # DESKTOP-0001: enrolled, patched too long ago -> denied, but enrolled.
    enroll DESKTOP-0001 jordan@example.com
    checkin endpoint-DESKTOP-0001 "$(posture DESKTOP-0001 os_patch_age_days=90)"
    assert_status 200
    assert_json .decision deny
    # ENR-BYOD-0001: a personal device recorded with its owner but not enrolled, no check-in yet.
    enroll ENR-BYOD-0001 jordan@example.com false
    # ENR-CORP-0001: enrolled, never checked in: no decision, so neither allowed nor denied.
    enroll ENR-CORP-0001 sam@example.com

    assert_listed "" "DESKTOP-0001 ENR-BYOD-0001 ENR-CORP-0001 LAPTOP-0042 LAPTOP-0043"
    assert_listed allowed "LAPTOP-0042"
    assert_listed denied "DESKTOP-0001 LAPTOP-0043"
    assert_listed unenrolled "ENR-BYOD-0001 LAPTOP-0043"
    assert_listed exempted ""
    devices_in stale
    assert_not_contains "$LISTED" LAPTOP "devices that just checked in, listed as stale"
    assert_not_contains "$LISTED" DESKTOP-0001 "a device that just checked in, listed as stale"

    api helpdesk GET "/v1/devices?state=bogus"
    assert_error 400 invalid_field
}

case_device_list_reflects_unenrolling() {
    api admin PUT /v1/devices/LAPTOP-0042/enrollment \
        '{"enrolled": false, "owner": "sam@example.com", "source": "mdm"}'
    assert_status 200
    assert_json .enrollment.enrolled false
    # The registry change counts from the next decision; the check-in then denies on MDM-01.
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042)"
    assert_status 200
    assert_json .decision deny
    assert_control MDM-01 status fail
    assert_listed unenrolled "ENR-BYOD-0001 LAPTOP-0042 LAPTOP-0043"
    assert_listed allowed ""
    # Enroll again for the CLI cases.
    enroll LAPTOP-0042 sam@example.com
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042)"
    assert_json .decision allow
}

case_exemptctl_device_enroll_and_unenroll() {
    ctl admin device enroll ENR-CTL-0001 --owner sam@example.com --source mdm
    assert_ctl 0
    ctl admin device enroll ENR-CTL-0001 --owner sam@example.com --source mdm
    assert_ctl 0
    api helpdesk GET /v1/devices
    local i=0 id
    while id="$(jget "$BODY" ".devices[$i].device_id")" && [[ "$id" != ENR-CTL-0001 ]]; do
        i=$((i + 1))
    done
    [[ "$id" == ENR-CTL-0001 ]] || fail "exemptctl device enroll did not register ENR-CTL-0001: $BODY"
    assert_json ".devices[$i].enrollment.enrolled" true
    assert_json ".devices[$i].enrollment.owner" sam@example.com

    ctl admin device unenroll ENR-CTL-0001
    assert_ctl 0
    assert_listed unenrolled "ENR-BYOD-0001 ENR-CTL-0001 LAPTOP-0043"
}

case_exemptctl_device_list_and_show() {
    ctl helpdesk device list --json
    assert_ctl 0
    assert_json_valid "$CTL_OUT"
    assert_contains "$CTL_OUT" '"LAPTOP-0042"' "exemptctl device list --json"
    ctl helpdesk device list --state denied --json
    assert_ctl 0
    assert_eq "DESKTOP-0001 LAPTOP-0043 " "$(jcolumn "$CTL_OUT" .devices .device_id | sort | tr '\n' ' ')" \
        "exemptctl device list --state denied --json"
    ctl helpdesk device list --state allowed
    assert_ctl 0
    assert_contains "$CTL_OUT" LAPTOP-0042 "exemptctl device list --state allowed (table)"
    assert_not_contains "$CTL_OUT" LAPTOP-0043 "exemptctl device list --state allowed (table)"

    # Paging: one page with --limit, its cursor on stderr; every page without.
    local all
    ctl helpdesk device list --json
    all="$(jcolumn "$CTL_OUT" .devices .device_id | tr '\n' ' ')"
    [[ "$(wc -w <<<"$all")" -ge 3 ]] || fail "expected at least 3 devices, got: $all"
    assert_json .next_after null "$CTL_OUT"
    ctl helpdesk device list --limit 2 --json
    assert_ctl 0
    assert_eq "$(cut -d' ' -f1-2 <<<"$all") " "$(jcolumn "$CTL_OUT" .devices .device_id | tr '\n' ' ')" "device list --limit 2"
    assert_json .next_after "$(cut -d' ' -f2 <<<"$all")" "$CTL_OUT"
    assert_contains "$CTL_ERR" "exemptctl device list --after $(cut -d' ' -f2 <<<"$all")" "device list --limit 2 (cursor)"
    ctl helpdesk device list --after "$(cut -d' ' -f2 <<<"$all")" --json
    assert_ctl 0
    assert_eq "$(cut -d' ' -f3- <<<"$all")" "$(jcolumn "$CTL_OUT" .devices .device_id | tr '\n' ' ')" "device list --after"
    ctl helpdesk device list --limit 0
    assert_ctl 2
    ctl helpdesk device list --after "bad id"
    assert_ctl 2
    api helpdesk GET "/v1/devices?limit=10001"
    assert_error 400 invalid_field
    api helpdesk GET "/v1/devices?after=%27%3B--"
    assert_error 400 invalid_field

    ctl helpdesk device show LAPTOP-0042 --json
    assert_ctl 0
    assert_json .device_id LAPTOP-0042 "$CTL_OUT"
    assert_json .enrollment.owner sam@example.com "$CTL_OUT"
    ctl helpdesk device show LAPTOP-0042
    assert_ctl 0
    assert_contains "$CTL_OUT" LAPTOP-0042 "exemptctl device show (table)"
}

case_exemptctl_exit_codes() {
    ctl helpdesk device show NO-SUCH-DEVICE
    assert_ctl 1
    ctl helpdesk device enroll ENR-CTL-0002 --owner sam@example.com
    assert_ctl 1
    ctl endpoint-LAPTOP-0042 device list
    assert_ctl 1
    ctl admin device enroll
    assert_ctl 2
    ctl admin device frobnicate LAPTOP-0042
    assert_ctl 2
    ctl admin device list --state bogus
    [[ "$CTL_RC" == 1 || "$CTL_RC" == 2 ]] || assert_ctl 2
    # Unreachable server: a port nothing listens on (the metrics port speaks no TLS).
    CTL_RC=0
    timeout 20 "$EXEMPTCTL_BIN" --server "https://127.0.0.1:1" --cert "$PKI_DIR/admin.crt" \
        --key "$PKI_DIR/admin.key" --ca "$PKI_DIR/server-ca.crt" device list \
        >"$TEST_TMP/ctl.out" 2>"$TEST_TMP/ctl.err" || CTL_RC=$?
    CTL_OUT="$(cat "$TEST_TMP/ctl.out")" CTL_ERR="$(cat "$TEST_TMP/ctl.err")"
    LAST_CTL="exemptctl --server https://127.0.0.1:1 device list"
    assert_ctl 2
    # Flags instead of the environment, against the real server, work the same.
    CTL_RC=0
    timeout 20 "$EXEMPTCTL_BIN" --server "https://127.0.0.1:$PORT" --cert "$PKI_DIR/helpdesk.crt" \
        --key "$PKI_DIR/helpdesk.key" --ca "$PKI_DIR/server-ca.crt" device show LAPTOP-0042 --json \
        >"$TEST_TMP/ctl.out" 2>"$TEST_TMP/ctl.err" || CTL_RC=$?
    CTL_OUT="$(cat "$TEST_TMP/ctl.out")" CTL_ERR="$(cat "$TEST_TMP/ctl.err")"
    LAST_CTL="exemptctl --server … device show LAPTOP-0042 --json"
    assert_ctl 0
    assert_json .device_id LAPTOP-0042 "$CTL_OUT"
    # A server whose certificate the client does not trust is a connection error.
    CTL_RC=0
    EXEMPTCTL_SERVER="https://127.0.0.1:$PORT" EXEMPTCTL_CERT="$PKI_DIR/helpdesk.crt" \
        EXEMPTCTL_KEY="$PKI_DIR/helpdesk.key" EXEMPTCTL_CA="$PKI_DIR/clients-ca.crt" \
        timeout 20 "$EXEMPTCTL_BIN" device list >"$TEST_TMP/ctl.out" 2>"$TEST_TMP/ctl.err" || CTL_RC=$?
    CTL_OUT="$(cat "$TEST_TMP/ctl.out")" CTL_ERR="$(cat "$TEST_TMP/ctl.err")"
    LAST_CTL="exemptctl device list trusting the wrong CA"
    assert_ctl 2
}

start_daemon
run_case "PUT enrollment answers 201, then 200 for the same enrollment" case_put_enrollment_creates_then_is_idempotent
run_case "changing an enrollment updates it" case_changing_an_enrollment_updates_it
run_case "invalid enrollment bodies are 400 and change nothing" case_invalid_enrollment_bodies_are_400
run_case "an invalid device id in the path is refused" case_invalid_device_id_in_path_is_refused
run_case "GET /v1/devices filters allowed, denied, unenrolled" case_device_list_filters_by_state
run_case "unenrolling shows in the next decision and the list" case_device_list_reflects_unenrolling
# The client cases last: exemptctl may not be built yet.
run_case "exemptctl device enroll and unenroll" case_exemptctl_device_enroll_and_unenroll
run_case "exemptctl device list and show" case_exemptctl_device_list_and_show
run_case "exemptctl exit codes: 0 ok, 1 refused, 2 usage or connection" case_exemptctl_exit_codes
finish
