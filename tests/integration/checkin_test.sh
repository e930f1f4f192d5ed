#!/usr/bin/env bash
# POST /v1/checkin and GET /v1/devices/{id}/decision against a real exemptd (SPEC §3, §4), with
# policies/default.yaml. Every refusal is checked for its status, its error code, and for leaving
# the stored state as it was.
source "$(dirname "$0")/lib.sh"

case_compliant_enrolled_device_is_allowed() {
    enroll LAPTOP-0042 sam@example.com
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042)"
    assert_status 200
    assert_decision allow compliant LAPTOP-0042
    local c
    for c in MDM-01 ENC-01 FW-01 LOCK-01 OS-01; do
        assert_control "$c" status pass
    done

    api endpoint-LAPTOP-0042 GET /v1/devices/LAPTOP-0042/decision
    assert_status 200
    assert_decision allow compliant LAPTOP-0042
}

case_unenrolled_device_is_denied_by_mdm01() {
    checkin endpoint-LAPTOP-0043 "$(posture LAPTOP-0043)"
    assert_status 200
    assert_decision deny noncompliant LAPTOP-0043
    assert_control MDM-01 status fail
    assert_control_reason MDM-01
    assert_control ENC-01 status pass
    assert_control OS-01 status pass
}

case_newly_failing_control_with_grace_allows_on_grace() {
    enroll DESKTOP-0001 jordan@example.com
    checkin endpoint-DESKTOP-0001 "$(posture DESKTOP-0001 disk_encrypted=false)"
    assert_status 200
    assert_decision allow grace DESKTOP-0001
    assert_control ENC-01 status fail
    assert_control_reason ENC-01
    assert_control MDM-01 status pass
    assert_control FW-01 status pass

    # LOCK-01 (grace 24h) failing as well keeps the basis grace.
    checkin endpoint-DESKTOP-0001 "$(posture DESKTOP-0001 disk_encrypted=false screen_lock_seconds=0)"
    assert_status 200
    assert_decision allow grace DESKTOP-0001
    assert_control LOCK-01 status fail
}

case_failing_control_without_grace_denies() {
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042 os_patch_age_days=45)"
    assert_status 200
    assert_decision deny noncompliant LAPTOP-0042
    assert_control OS-01 status fail
    assert_control_reason OS-01
    assert_control MDM-01 status pass
    # Back to compliant for the cases that follow.
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042)"
    assert_status 200
    assert_decision allow compliant LAPTOP-0042
}

case_missing_fact_fails_its_control() {
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042 -os_patch_age_days)"
    assert_status 200
    assert_decision deny noncompliant LAPTOP-0042
    assert_control OS-01 status fail
    assert_control_reason OS-01
    assert_control ENC-01 status pass
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042)"
    assert_status 200
    assert_decision allow compliant LAPTOP-0042
}

case_replayed_nonce_is_refused() {
    local report nonce first
    nonce="$(new_nonce)"
    report="$(posture LAPTOP-0042 nonce="$nonce")"
    checkin endpoint-LAPTOP-0042 "$report"
    assert_status 200
    read_last_checkin LAPTOP-0042
    first="$LAST_CHECKIN"
    sleep 1   # a stored replay would now show a later last_checkin

    checkin endpoint-LAPTOP-0042 "$report"
    assert_error 409 replay
    # The same nonce with a fresh timestamp and other facts is a replay too, and changes nothing.
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042 nonce="$nonce" disk_encrypted=false)"
    assert_error 409 replay
    read_last_checkin LAPTOP-0042
    assert_eq "$first" "$LAST_CHECKIN" "LAPTOP-0042's last_checkin after refused replays"
    api endpoint-LAPTOP-0042 GET /v1/devices/LAPTOP-0042/decision
    assert_status 200
    assert_decision allow compliant LAPTOP-0042
    assert_control ENC-01 status pass
}

case_nonce_is_per_device() {
    # Another device may use a nonce LAPTOP-0042 used; nonces are per device (SPEC §4).
    local nonce
    nonce="$(new_nonce)"
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042 nonce="$nonce")"
    assert_status 200
    checkin endpoint-LAPTOP-0043 "$(posture LAPTOP-0043 nonce="$nonce")"
    assert_status 200
}

case_clock_skew_is_refused() {
    local before
    read_last_checkin LAPTOP-0042
    before="$LAST_CHECKIN"
    sleep 1
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042 reported_at="$(now_rfc3339 -3600)" disk_encrypted=false)"
    assert_error 422 clock_skew
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042 reported_at="$(now_rfc3339 3600)" disk_encrypted=false)"
    assert_error 422 clock_skew
    read_last_checkin LAPTOP-0042
    assert_eq "$before" "$LAST_CHECKIN" "LAPTOP-0042's last_checkin after refused reports"
    api endpoint-LAPTOP-0042 GET /v1/devices/LAPTOP-0042/decision
    assert_status 200
    assert_control ENC-01 status pass
    # Within max_clock_skew_seconds (300) is fine.
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042 reported_at="$(now_rfc3339 -120)")"
    assert_status 200
    assert_decision allow compliant LAPTOP-0042
}

case_malformed_json_is_400() {
    local body
    for body in '{"device_id": "LAPTOP-0042", ' 'hello' '' '[1, 2' '{"device_id": "LAPTOP-0042"} trailing'; do
        checkin endpoint-LAPTOP-0042 "$body"
        assert_error 400 malformed_json
    done
}

case_wrong_types_and_missing_fields_are_400_invalid_field() {
    local good
    good="$(posture LAPTOP-0042)"
    local -a bad=(
        "$(sed 's/"device_id": "LAPTOP-0042"/"device_id": 42/' <<<"$good")"
        "$(sed 's/"facts": {[^}]*}/"facts": "none"/' <<<"$good")"
        "$(sed 's/"reported_at": "[^"]*"/"reported_at": "yesterday"/' <<<"$good")"
        "$(sed 's/, "nonce": "[^"]*"//' <<<"$good")"
        "$(posture LAPTOP-0042 nonce=abc)"
        '{}'
    )
    local body
    for body in "${bad[@]}"; do
        checkin endpoint-LAPTOP-0042 "$body"
        assert_error 400 invalid_field
    done
    # JSON that is not an object: either 400 code describes it.
    checkin endpoint-LAPTOP-0042 '[]'
    assert_status 400
    [[ "$(jget "$BODY" .error.code)" == @(malformed_json|invalid_field) ]] \
        || fail "a JSON array as report: expected malformed_json or invalid_field. $(last_response)"
}

case_body_over_64k_is_413() {
    local pad
    pad="$(head -c 70000 /dev/zero | tr '\0' x)"
    posture LAPTOP-0042 "padding=\"$pad\"" >"$TEST_TMP/big.json"
    request endpoint-LAPTOP-0042 POST /v1/checkin "$TEST_TMP/big.json"
    assert_error 413 body_too_large
}

case_device_id_must_match_certificate() {
    local before
    read_last_checkin LAPTOP-0043
    before="$LAST_CHECKIN"
    sleep 1
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0043 disk_encrypted=false)"
    assert_error 403 forbidden
    read_last_checkin LAPTOP-0043
    assert_eq "$before" "$LAST_CHECKIN" "LAPTOP-0043's last_checkin after LAPTOP-0042 reported for it"
    api endpoint-LAPTOP-0043 GET /v1/devices/LAPTOP-0043/decision
    assert_status 200
    assert_control ENC-01 status pass
}

case_endpoint_reads_only_its_own_decision() {
    api endpoint-LAPTOP-0042 GET /v1/devices/LAPTOP-0043/decision
    assert_error 403 forbidden
    # Forbidden whether or not the other device exists: no probing of the registry.
    api endpoint-LAPTOP-0042 GET /v1/devices/NO-SUCH-DEVICE/decision
    assert_error 403 forbidden
    api endpoint-LAPTOP-0043 GET /v1/devices/LAPTOP-0043/decision
    assert_status 200
    assert_decision deny noncompliant LAPTOP-0043
}

case_help_desk_and_admin_read_any_decision() {
    api helpdesk GET /v1/devices/LAPTOP-0042/decision
    assert_status 200
    assert_decision allow compliant LAPTOP-0042
    api admin GET /v1/devices/LAPTOP-0043/decision
    assert_status 200
    assert_decision deny noncompliant LAPTOP-0043
}

case_unknown_device_decision_is_404() {
    api helpdesk GET /v1/devices/NO-SUCH-DEVICE/decision
    assert_error 404 not_found
    # A device the registry does not know is not_found; a known one that never checked in has
    # no decision yet.
    mint_endpoint CHK-NEVER-SEEN
    api endpoint-CHK-NEVER-SEEN GET /v1/devices/CHK-NEVER-SEEN/decision
    assert_error 404 not_found
    enroll CHK-ENROLLED-ONLY
    api helpdesk GET /v1/devices/CHK-ENROLLED-ONLY/decision
    assert_error 404 no_decision
}

case_only_endpoints_check_in_and_role_comes_before_body() {
    local who
    for who in helpdesk admin; do
        checkin "$who" "$(posture LAPTOP-0042)"
        assert_error 403 forbidden
        # The role is checked before the body is read: a broken body still gets 403.
        checkin "$who" '{"broken'
        assert_error 403 forbidden
    done
}

case_unknown_route_is_404() {
    api admin GET /v1/no-such-route
    assert_error 404 not_found
    api endpoint-LAPTOP-0042 GET /v1/devices/LAPTOP-0042/no-such-thing
    assert_error 404 not_found
}

# These cases check in far more often than a device may (limits.checkin_rate_per_minute); the
# limit has its own cases in hostile_test.sh.
write_config "$TEST_TMP/daemon/exemptd.yaml" "limits: {checkin_rate_per_minute: 0}"
start_daemon
run_case "an enrolled, compliant device is allowed on basis compliant" case_compliant_enrolled_device_is_allowed
run_case "an unenrolled device is denied, MDM-01 failing with a reason" case_unenrolled_device_is_denied_by_mdm01
run_case "a newly failing control with grace_hours allows on basis grace" case_newly_failing_control_with_grace_allows_on_grace
run_case "a failing control without grace denies" case_failing_control_without_grace_denies
run_case "a missing fact fails its control" case_missing_fact_fails_its_control
run_case "a replayed nonce is refused with 409 replay and changes nothing" case_replayed_nonce_is_refused
run_case "nonces are per device" case_nonce_is_per_device
run_case "reported_at an hour off is refused with 422 clock_skew" case_clock_skew_is_refused
run_case "malformed JSON is 400 malformed_json" case_malformed_json_is_400
run_case "wrong types and missing fields are 400 invalid_field" case_wrong_types_and_missing_fields_are_400_invalid_field
run_case "a body over 64 KiB is 413 body_too_large" case_body_over_64k_is_413
run_case "a device_id other than the certificate's is 403 and changes nothing" case_device_id_must_match_certificate
run_case "an endpoint reads only its own decision" case_endpoint_reads_only_its_own_decision
run_case "help desk and admin read any device's decision" case_help_desk_and_admin_read_any_decision
run_case "an unknown device's decision is 404 not_found" case_unknown_device_decision_is_404
run_case "only endpoints check in; the role is checked before the body" case_only_endpoints_check_in_and_role_comes_before_body
run_case "an unknown route is 404 not_found" case_unknown_route_is_404
finish
