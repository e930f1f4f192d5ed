#!/usr/bin/env bash
# exempt-agent --once with --posture-file against a real exemptd: exit 0 allowed, 1 denied,
# 2 error (SPEC §9). Each decision the agent reports is checked against what the daemon stored.
source "$(dirname "$0")/lib.sh"

# posture_file NAME DEVICE [posture ARGS...] — a posture file without nonce and reported_at,
# which the agent must fill in.
posture_file() {
    local name="$1"
    shift
    posture "$@" | sed 's/, "reported_at": "[^"]*", "nonce": "[^"]*"//' >"$TEST_TMP/$name.json"
    printf '%s' "$TEST_TMP/$name.json"
}

# stored_decision DEVICE — the daemon's current decision for DEVICE, as help desk sees it.
assert_stored_decision() {   # DEVICE DECISION BASIS
    api helpdesk GET "/v1/devices/$1/decision"
    assert_status 200
    assert_decision "$2" "$3" "$1"
}

case_compliant_device_exits_0() {
    enroll LAPTOP-0042 sam@example.com
    local file
    file="$(posture_file compliant LAPTOP-0042)"
    agent endpoint-LAPTOP-0042 "$file"
    assert_agent 0
    assert_contains "$AGENT_OUT$AGENT_ERR" allow "exempt-agent output"
    assert_stored_decision LAPTOP-0042 allow compliant
    # The agent sends a fresh nonce each time: the same file checks in again.
    agent endpoint-LAPTOP-0042 "$file"
    assert_agent 0
}

case_grace_exits_0() {
    enroll DESKTOP-0001 jordan@example.com
    agent endpoint-DESKTOP-0001 "$(posture_file grace DESKTOP-0001 firewall_enabled=false)"
    assert_agent 0
    assert_stored_decision DESKTOP-0001 allow grace
    assert_control FW-01 status fail
}

case_noncompliant_device_exits_1() {
    agent endpoint-LAPTOP-0042 "$(posture_file unpatched LAPTOP-0042 os_patch_age_days=120)"
    assert_agent 1
    assert_contains "$AGENT_OUT$AGENT_ERR" deny "exempt-agent output"
    assert_stored_decision LAPTOP-0042 deny noncompliant
    assert_control OS-01 status fail
    agent endpoint-LAPTOP-0042 "$(posture_file compliant LAPTOP-0042)"
    assert_agent 0
}

case_unenrolled_device_exits_1() {
    agent endpoint-LAPTOP-0043 "$(posture_file unenrolled LAPTOP-0043)"
    assert_agent 1
    assert_stored_decision LAPTOP-0043 deny noncompliant
    assert_control MDM-01 status fail
}

case_agent_keeps_given_nonce_and_replay_is_an_error() {
    local nonce file
    nonce="$(new_nonce)"
    posture LAPTOP-0042 nonce="$nonce" | sed 's/, "reported_at": "[^"]*"//' >"$TEST_TMP/fixed.json"
    file="$TEST_TMP/fixed.json"
    agent endpoint-LAPTOP-0042 "$file"
    assert_agent 0
    # The file's nonce was sent as-is, so the daemon refuses the second report as a replay.
    agent endpoint-LAPTOP-0042 "$file"
    assert_agent 2
}

case_report_for_another_device_exits_2() {
    agent endpoint-LAPTOP-0042 "$(posture_file other LAPTOP-0043)"
    assert_agent 2
    assert_stored_decision LAPTOP-0043 deny noncompliant
}

case_bad_posture_file_exits_2() {
    agent endpoint-LAPTOP-0042 "$TEST_TMP/does-not-exist.json"
    assert_agent 2
    printf '{"device_id": "LAPTOP-0042", ' >"$TEST_TMP/broken.json"
    agent endpoint-LAPTOP-0042 "$TEST_TMP/broken.json"
    assert_agent 2
}

case_unreachable_server_exits_2() {
    local file
    file="$(posture_file compliant2 LAPTOP-0042)"
    # Port 1 on loopback: nothing listens there.
    agent endpoint-LAPTOP-0042 "$file" "https://127.0.0.1:1"
    assert_agent 2
    # The metrics listener speaks plain HTTP, not TLS.
    agent endpoint-LAPTOP-0042 "$file" "https://127.0.0.1:$METRICS_PORT"
    assert_agent 2
}

case_refused_certificate_exits_2() {
    agent expired-endpoint "$(posture_file expired LAPTOP-0042)"
    assert_agent 2
    agent rogue-endpoint "$(posture_file rogue LAPTOP-0042)"
    assert_agent 2
    assert_stored_decision LAPTOP-0042 allow compliant
}

start_daemon
run_case "a compliant device: exit 0" case_compliant_device_exits_0
run_case "a failing control inside its grace: exit 0" case_grace_exits_0
run_case "a failing control without grace: exit 1" case_noncompliant_device_exits_1
run_case "an unenrolled device: exit 1" case_unenrolled_device_exits_1
run_case "a nonce in the posture file is sent as-is; a replay is exit 2" case_agent_keeps_given_nonce_and_replay_is_an_error
run_case "a report for another device: exit 2" case_report_for_another_device_exits_2
run_case "a missing or broken posture file: exit 2" case_bad_posture_file_exits_2
run_case "an unreachable server: exit 2" case_unreachable_server_exits_2
run_case "a refused client certificate: exit 2" case_refused_certificate_exits_2
finish
