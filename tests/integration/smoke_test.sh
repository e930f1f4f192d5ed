#!/usr/bin/env bash
# exemptd as a program: --version, --check-config, the ready file and /healthz, loopback-only
# listeners, SIGTERM, refusing a bad policy, and a database that survives a restart (SPEC §9).
source "$(dirname "$0")/lib.sh"

case_version() {
    local out rc=0
    out="$(timeout 10 "$EXEMPTD_BIN" --version 2>&1)" || rc=$?
    assert_eq 0 "$rc" "exemptd --version exit code"
    assert_eq "exemptd 0.1.0" "$out" "exemptd --version"
}

case_check_config_accepts_default_policy() {
    write_config "$TEST_TMP/good/exemptd.yaml"
    local out rc=0
    out="$(cd / && timeout 10 "$EXEMPTD_BIN" --check-config "$TEST_TMP/good/exemptd.yaml" 2>&1)" || rc=$?
    [[ "$rc" == 0 ]] || fail "exemptd --check-config with policies/default.yaml: exit $rc: $out"
}

# bad_policy_config DIR — a config whose policy has an unknown key `colour`; sets BAD_LINE.
bad_policy_config() {
    local dir="$1" policy="$TEST_TMP/bad-policy.yaml"
    awk '{ print } /title: Host firewall is enabled/ { print "    colour: blue" }' \
        "$SOURCE_DIR/policies/default.yaml" >"$policy"
    BAD_LINE="$(grep -n 'colour: blue' "$policy" | cut -d: -f1)"
    [[ -n "$BAD_LINE" ]] || fail "could not make the bad policy"
    cp "$SOURCE_DIR/policies/byod-v3.txt" "$TEST_TMP/"
    POLICY_FILE="$policy" write_config "$dir/exemptd.yaml"
    # write_config copies the policy next to the config; point at the original to see its name.
    sed -i "s|^policy: .*|policy: $policy|" "$dir/exemptd.yaml"
}

case_check_config_refuses_unknown_policy_key() {
    bad_policy_config "$TEST_TMP/bad"
    local out rc=0
    out="$(timeout 10 "$EXEMPTD_BIN" --check-config "$TEST_TMP/bad/exemptd.yaml" 2>&1)" || rc=$?
    assert_eq 1 "$rc" "exemptd --check-config with an unknown policy key: exit code (output: $out)"
    assert_contains "$out" "bad-policy.yaml:$BAD_LINE:" "the --check-config message"
    assert_contains "$out" "colour" "the --check-config message"
}

case_check_config_refuses_unknown_config_key() {
    write_config "$TEST_TMP/badconf/exemptd.yaml" "flavour: vanilla"
    local line out rc=0
    line="$(grep -n '^flavour:' "$TEST_TMP/badconf/exemptd.yaml" | cut -d: -f1)"
    out="$(timeout 10 "$EXEMPTD_BIN" --check-config "$TEST_TMP/badconf/exemptd.yaml" 2>&1)" || rc=$?
    assert_eq 1 "$rc" "exemptd --check-config with an unknown config key: exit code (output: $out)"
    assert_contains "$out" "exemptd.yaml:$line:" "the --check-config message"
    assert_contains "$out" "flavour" "the --check-config message"
}

case_check_config_refuses_missing_policy() {
    write_config "$TEST_TMP/nopolicy/exemptd.yaml"
    sed -i 's|^policy: .*|policy: policy/missing.yaml|' "$TEST_TMP/nopolicy/exemptd.yaml"
    local out rc=0
    out="$(timeout 10 "$EXEMPTD_BIN" --check-config "$TEST_TMP/nopolicy/exemptd.yaml" 2>&1)" || rc=$?
    assert_eq 1 "$rc" "exemptd --check-config with a missing policy file: exit code (output: $out)"
    assert_contains "$out" "missing.yaml" "the --check-config message"
}

case_daemon_refuses_to_start_with_bad_policy() {
    bad_policy_config "$TEST_TMP/badrun"
    local out rc=0
    out="$(timeout 10 "$EXEMPTD_BIN" --config "$TEST_TMP/badrun/exemptd.yaml" \
        --ready-file "$TEST_TMP/badrun/ready" 2>&1)" || rc=$?
    [[ "$rc" != 0 && "$rc" != 124 ]] || fail "exemptd with a bad policy: expected a prompt non-zero exit, got $rc"
    [[ ! -e "$TEST_TMP/badrun/ready" ]] || fail "exemptd wrote a ready file with a bad policy"
    assert_contains "$out" "bad-policy.yaml:$BAD_LINE:" "exemptd's startup error"
}

case_healthz_on_metrics_listener() {
    local code
    code="$(curl -q -sS --noproxy '*' --max-time 5 -o "$TEST_TMP/healthz" -w '%{http_code}' \
        "http://127.0.0.1:$METRICS_PORT/healthz")" || fail "GET /healthz failed"
    assert_eq 200 "$code" "GET /healthz status"
    assert_json .status ok "$(cat "$TEST_TMP/healthz")"
    # The API listener is TLS only: plain HTTP gets no answer.
    code="$(curl -q -s --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' \
        "http://127.0.0.1:$PORT/healthz")" || true
    [[ "$code" != 200 ]] || fail "the API port answered plain HTTP /healthz with 200"
}

# The daemon's listening TCP sockets, as HEXADDR:HEXPORT from /proc/net/tcp{,6}.
listening_sockets() {
    local pid="$1" inodes
    inodes="$(find "/proc/$pid/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null \
        | sed 's/socket:\[\([0-9]*\)\]/\1/' | sort -u | tr '\n' ' ')"
    awk -v inodes=" $inodes" '$4 == "0A" && index(inodes, " " $10 " ") { print $2 }' \
        /proc/net/tcp /proc/net/tcp6
}

case_listens_on_loopback_only() {
    local sockets
    sockets="$(listening_sockets "$DAEMON_PID" | sort | tr '\n' ' ')"
    local want
    want="$(printf '0100007F:%04X\n' "$PORT" "$METRICS_PORT" | sort | tr '\n' ' ')"
    assert_eq "$want" "$sockets" "exemptd's listening sockets (hex addr:port)"
}

# The scheduling policy (/proc stat field 41: 0 other, 3 batch) and nice (field 19) of the
# daemon's thread named NAME.
thread_sched() {
    local task
    for task in /proc/"$DAEMON_PID"/task/*; do
        [[ "$(cat "$task/comm" 2>/dev/null)" == "$1" ]] || continue
        # Fields after the ")" that closes the name, which may hold spaces: field 3 is the first.
        sed 's/^.*) //' "$task/stat" | awk '{ print "policy=" $39 " nice=" $17 }'
        return 0
    done
    echo "no thread named $1"
}

case_store_threads_yield_to_the_io_thread() {
    assert_eq "policy=3 nice=0" "$(thread_sched store-commit)" "the commit thread (SCHED_BATCH)"
    assert_eq "policy=0 nice=10" "$(thread_sched store-checkpt)" "the checkpointer"
    assert_eq "policy=0 nice=0" "$(thread_sched exemptd)" "a thread named exemptd (main, I/O, handlers)"
}

case_database_survives_restart() {
    local dir="$TEST_TMP/persist" nonce report
    start_daemon "$dir"
    enroll LAPTOP-0042 sam@example.com
    assert_status 201
    nonce="$(new_nonce)"
    report="$(posture LAPTOP-0042 nonce="$nonce")"
    checkin endpoint-LAPTOP-0042 "$report"
    assert_status 200
    assert_decision allow compliant LAPTOP-0042
    local last
    read_last_checkin LAPTOP-0042
    last="$LAST_CHECKIN"
    stop_daemon || exit 1

    start_daemon "$dir"
    api admin PUT /v1/devices/LAPTOP-0042/enrollment \
        '{"enrolled": true, "owner": "sam@example.com", "source": "mdm"}'
    assert_status 200
    api helpdesk GET /v1/devices/LAPTOP-0042/decision
    assert_status 200
    assert_decision allow compliant LAPTOP-0042
    read_last_checkin LAPTOP-0042
    assert_eq "$last" "$LAST_CHECKIN" "last_checkin after the restart"
    # A nonce seen before the restart is still a replay after it.
    checkin endpoint-LAPTOP-0042 "$report"
    assert_error 409 replay
    stop_daemon || exit 1
}

run_case "exemptd --version prints exemptd 0.1.0" case_version
run_case "--check-config accepts policies/default.yaml" case_check_config_accepts_default_policy
run_case "--check-config refuses an unknown policy key with file:line" case_check_config_refuses_unknown_policy_key
run_case "--check-config refuses an unknown config key with file:line" case_check_config_refuses_unknown_config_key
run_case "--check-config refuses a missing policy file" case_check_config_refuses_missing_policy
run_case "exemptd refuses to start with a bad policy" case_daemon_refuses_to_start_with_bad_policy
start_daemon
run_case "GET /healthz answers on the metrics listener" case_healthz_on_metrics_listener
run_case "exemptd listens on 127.0.0.1 only" case_listens_on_loopback_only
run_case "the store's threads give way to the I/O thread (SCHED_BATCH, nice 10)" case_store_threads_yield_to_the_io_thread
run_case "enrollment, decision and nonces survive SIGTERM and restart" case_database_survives_restart
finish
