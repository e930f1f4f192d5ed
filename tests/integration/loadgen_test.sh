#!/usr/bin/env bash
# bench/loadgen.cpp against a real exemptd: seeds a handful of devices (enrollment, and an approved
# exemption for the exempted ones), then runs each check-in mode for about a second. Every run
# must exit 0 and report zero errors: every answer 200 with the basis its device kind expects
# (compliant, grace, exempted, noncompliant). Nothing is timed.
source "$(dirname "$0")/lib.sh"

: "${EXEMPTD_LOADGEN_BIN:?EXEMPTD_LOADGEN_BIN must point at exemptd-loadgen}"

# loadgen MODE [ARGS...] — sets LG_RC and LG_OUT (stdout and stderr).
loadgen() {
    LG_RC=0
    LG_OUT="$(timeout 60 "$EXEMPTD_LOADGEN_BIN" "$1" --connect "127.0.0.1:$PORT" --ca "$PKI_DIR/server-ca.crt" \
        --clients-ca-cert "$PKI_DIR/clients-ca.crt" --clients-ca-key "$PKI_DIR/clients-ca.key" \
        --admin-cert "$PKI_DIR/admin.crt" --admin-key "$PKI_DIR/admin.key" \
        --approver-cert "$PKI_DIR/it-manager.crt" --approver-key "$PKI_DIR/it-manager.key" \
        --devices 8 --mix compliant=25,grace=25,exempted=25,denied=25 "${@:2}" 2>&1)" || LG_RC=$?
}

assert_clean_run() {   # MODE
    [[ "$LG_RC" == 0 ]] || fail "exemptd-loadgen $1 exited $LG_RC: $LG_OUT"
    assert_contains "$LG_OUT" "errors=0 " "exemptd-loadgen $1's result line"
    assert_match "$LG_OUT" 'result mode=[a-z]+ requests=[1-9]' "exemptd-loadgen $1 made requests"
}

case_seed() {
    loadgen seed --connections 2
    [[ "$LG_RC" == 0 ]] || fail "exemptd-loadgen seed exited $LG_RC: $LG_OUT"
    assert_contains "$LG_OUT" "8 devices enrolled, 2 exemptions approved" "the seed summary"
}

case_keepalive() {
    loadgen keepalive --connections 4 --duration 2
    assert_clean_run keepalive
    local basis
    for basis in compliant grace exempted noncompliant; do
        assert_match "$LG_OUT" "by basis:.* $basis=[1-9]" "answers on basis $basis"
    done
}

# Every report's facts differ from its device's last ones: in a fact the policy does not check
# (each check-in takes its device's cached decision again), then also in one it checks (each is
# evaluated afresh). The answers must be the same.
case_keepalive_changing_facts() {
    local flags basis
    for flags in --changing-facts "--changing-facts --changing-checked-fact"; do
        # shellcheck disable=SC2086 # two flags in one word
        loadgen keepalive --connections 4 --duration 2 $flags
        assert_clean_run keepalive
        for basis in compliant grace exempted noncompliant; do
            assert_match "$LG_OUT" "by basis:.* $basis=[1-9]" "answers on basis $basis ($flags)"
        done
    done
}

case_handshake_and_resume() {
    loadgen handshake --connections 2 --duration 1
    assert_clean_run handshake
    loadgen resume --connections 2 --duration 1
    assert_clean_run resume
    assert_match "$LG_OUT" 'resumed=0\.[1-9]|resumed=1\.0' "some resumed sessions"
}

case_fleet() {
    loadgen fleet --interval 0.5 --duration 2
    assert_clean_run fleet
}

# The load generator checks each device in as fast as it can: no per-device rate limit here.
write_config "$TEST_TMP/daemon/exemptd.yaml" "limits: {checkin_rate_per_minute: 0}"
start_daemon
run_case "seed enrolls the devices and approves the exempted ones' exemptions" case_seed
run_case "keepalive: every answer is 200 on its device kind's basis" case_keepalive
run_case "keepalive with facts that change in every report: the same answers" case_keepalive_changing_facts
run_case "handshake and resume modes run without errors" case_handshake_and_resume
run_case "fleet mode runs without errors" case_fleet
finish
