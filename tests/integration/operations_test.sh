#!/usr/bin/env bash
# Running exemptd for real: /metrics in the Prometheus text format, SIGHUP reloads that neither
# drop a connection nor accept a bad policy, SIGTERM that finishes the request in flight, and
# log lines that are key=value and carry no secrets or bodies.
source "$(dirname "$0")/lib.sh"

metrics() {
    curl -q -sS --noproxy '*' --max-time 5 -D "$TEST_TMP/metrics.headers" \
        "http://127.0.0.1:$METRICS_PORT/metrics" || fail "GET /metrics failed"
}

# metric_value NAME_AND_LABELS — the sample's value, or "absent".
metric_value() {
    awk -v key="$1" '$1 == key { print $2; found = 1 } END { if (!found) print "absent" }' "$TEST_TMP/metrics"
}

assert_metric() {   # NAME_AND_LABELS EXPECTED
    assert_eq "$2" "$(metric_value "$1")" "/metrics sample $1"
}

# Every line is a HELP or TYPE comment or a sample `name{labels} value` of a family whose TYPE
# came before it; names follow the exemptd_ prefix.
assert_prometheus_text() {
    local problems
    problems="$(awk '
        /^# HELP exemptd_[a-z_]+ .+$/ { next }
        /^# TYPE exemptd_[a-z_]+ (counter|gauge|histogram)$/ { typed[$3] = $4; next }
        {
            if ($0 !~ /^exemptd_[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? -?[0-9.e+-]+$/) { print "malformed: " $0; next }
            name = $1; sub(/\{.*/, "", name)
            family = name; sub(/_(bucket|sum|count)$/, "", family)
            if (!(name in typed) && !(family in typed && typed[family] == "histogram")) print "untyped: " $0
            if (name ~ /_total$/ && typed[name] != "counter") print "a _total that is no counter: " $0
        }' "$TEST_TMP/metrics")"
    [[ -z "$problems" ]] || fail "/metrics is not valid Prometheus text: $problems"
    assert_contains "$(cat "$TEST_TMP/metrics.headers")" "text/plain; version=0.0.4" "/metrics Content-Type"
}

case_metrics_count_what_happened() {
    enroll LAPTOP-0042
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042)"
    assert_decision allow compliant LAPTOP-0042
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042 disk_encrypted=false)"
    assert_decision allow grace LAPTOP-0042
    request - GET /v1/devices/LAPTOP-0042/decision
    assert_refused_handshake
    request expired-endpoint GET /v1/devices/LAPTOP-0042/decision
    assert_refused_handshake
    request two-roles GET /v1/devices
    api admin POST /v1/exemptions '{"subject": "device:LAPTOP-0042", "controls": ["ENC-01"],
        "justification": "A replacement disk is on order.", "risk": {"likelihood": "low", "impact": "low"},
        "mitigations": ["Monitored by the SOC"], "evidence": "TICKET-1", "compensating_controls": [],
        "expires_at": "'"$(now_rfc3339 86400)"'"}'
    assert_status 201
    api helpdesk GET /v1/nothing
    assert_error 404 not_found

    metrics >"$TEST_TMP/metrics"
    assert_prometheus_text
    assert_metric 'exemptd_checkins_total{decision="allow",basis="compliant"}' 1
    assert_metric 'exemptd_checkins_total{decision="allow",basis="grace"}' 1
    assert_metric 'exemptd_checkins_total{decision="deny",basis="noncompliant"}' 0
    assert_metric 'exemptd_checkins_total{decision="allow",basis="exempted"}' 0
    assert_metric 'exemptd_http_request_duration_seconds_count{route="checkin"}' 2
    assert_metric 'exemptd_http_request_duration_seconds_bucket{route="checkin",le="+Inf"}' 2
    assert_metric 'exemptd_http_request_duration_seconds_count{route="exemption_request"}' 1
    assert_metric 'exemptd_http_request_duration_seconds_count{route="none"}' 1
    assert_metric 'exemptd_http_responses_total{code="404"}' 1
    assert_metric 'exemptd_http_responses_total{code="201"}' 2
    assert_metric 'exemptd_tls_handshake_failures_total{reason="no_certificate"}' 1
    assert_metric 'exemptd_tls_handshake_failures_total{reason="certificate_expired"}' 1
    assert_metric 'exemptd_tls_handshake_failures_total{reason="invalid_identity"}' 1
    assert_metric 'exemptd_exemptions{state="pending"}' 1
    assert_metric 'exemptd_exemptions{state="active"}' 0
    assert_metric 'exemptd_exemptions_expiring' 0
    [[ "$(metric_value exemptd_store_commit_duration_seconds_count)" -ge 4 ]] \
        || fail "exemptd_store_commit_duration_seconds_count should count the commits: $(metric_value exemptd_store_commit_duration_seconds_count)"
    # Buckets are cumulative.
    local previous=0 n
    while read -r n; do
        [[ "$n" -ge "$previous" ]] || fail "checkin latency buckets are not cumulative: $n after $previous"
        previous="$n"
    done < <(awk '/^exemptd_http_request_duration_seconds_bucket\{route="checkin"/ { print $2 }' "$TEST_TMP/metrics")
}

# GET the decision COUNT times over one keep-alive connection; prints one status per request and
# then the number of connections curl opened.
decision_burst() {
    local count="$1" url i
    url="$(api_url /v1/devices/LAPTOP-0042/decision)"
    local -a urls=()
    for ((i = 0; i < count; i++)); do urls+=(-o /dev/null "$url"); done
    curl_as helpdesk --max-time 60 -w '%{http_code} %{num_connects}\n' "${urls[@]}"
}

case_reload_drops_no_request() {
    enroll LAPTOP-0042
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042)"
    assert_status 200
    decision_burst 400 >"$TEST_TMP/burst" 2>&1 &
    local burst=$! i
    for ((i = 0; i < 8; i++)); do
        sleep 0.1
        kill -HUP "$DAEMON_PID"
    done
    wait "$burst" || fail "the request burst failed during reloads: $(tail -3 "$TEST_TMP/burst")"
    assert_eq 400 "$(grep -c '^200 ' "$TEST_TMP/burst")" "requests answered 200 across 8 reloads"
    assert_eq 1 "$(awk '{ n += $2 } END { print n }' "$TEST_TMP/burst")" "connections opened for 400 requests"
    check_serving
}

case_bad_policy_reload_keeps_the_old_policy() {
    local policy="$DAEMON_DIR/policy/policy.yaml" before after
    enroll LAPTOP-0042
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042)"
    before="$(jget "$BODY" .policy_version)"

    cp "$policy" "$TEST_TMP/good-policy.yaml"
    printf 'controls: [\n' >>"$policy"
    kill -HUP "$DAEMON_PID"
    wait_for_log "event=policy_reload_refused"
    assert_contains "$(grep 'event=policy_reload_refused' "$DAEMON_DIR/daemon.log")" "policy.yaml:" \
        "the refusal names the file and line"
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042)"
    assert_decision allow compliant LAPTOP-0042
    assert_eq "$before" "$(jget "$BODY" .policy_version)" "policy_version after a refused reload"

    sed 's/title: Host firewall is enabled/title: The host firewall is on/' "$TEST_TMP/good-policy.yaml" >"$policy"
    kill -HUP "$DAEMON_PID"
    wait_for_log "event=policy_loaded version=sha256:$(sha256sum "$policy" | cut -d' ' -f1)"
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042)"
    after="$(jget "$BODY" .policy_version)"
    assert_ne "$before" "$after" "policy_version after a good reload"
}

# wait_for_log TEXT — up to 5 s for TEXT to appear in the daemon's log.
wait_for_log() {
    local i
    for ((i = 0; i < 100; i++)); do
        grep -qF -- "$1" "$DAEMON_DIR/daemon.log" && return 0
        sleep 0.05
    done
    fail "the daemon log never showed '$1'. $(daemon_log_tail)"
}

# wait_for_log_count ERE N — up to 10 s for N lines matching ERE in the daemon's log.
wait_for_log_count() {
    local i
    for ((i = 0; i < 200; i++)); do
        (($(grep -cE -- "$1" "$DAEMON_DIR/daemon.log" || true) >= $2)) && return 0
        sleep 0.05
    done
    fail "the daemon log never showed $2 lines matching '$1'. $(daemon_log_tail)"
}

# A check-in whose body trickles in over about two seconds is still in flight when SIGTERM
# arrives: it is answered, its write survives, and the daemon then exits 0.
case_sigterm_finishes_the_request_in_flight() {
    local dir="$TEST_TMP/inflight" report nonce
    start_daemon "$dir"
    enroll LAPTOP-0042
    nonce="$(new_nonce)"
    report="$(posture LAPTOP-0042 nonce="$nonce")"
    { printf '%s' "$report"; printf '%*s' 4000 ''; } >"$TEST_TMP/slow.json"
    local connected
    connected="$(grep -c 'event=connected.*endpoint-LAPTOP-0042' "$DAEMON_DIR/daemon.log" || true)"
    curl_as endpoint-LAPTOP-0042 --limit-rate 2K -o "$TEST_TMP/slow.out" -w '%{http_code}' \
        -H 'Content-Type: application/json' --data-binary "@$TEST_TMP/slow.json" \
        "$(api_url /v1/checkin)" >"$TEST_TMP/slow.status" 2>&1 &
    local slow=$!
    # The request is in flight once its connection is up and its headers sent (a connection that
    # has sent nothing yet counts as idle, and SIGTERM closes idle ones).
    wait_for_log_count 'event=connected.*endpoint-LAPTOP-0042' $((connected + 1))
    sleep 0.5
    kill -TERM "$DAEMON_PID"
    wait "$slow" || true
    assert_eq 200 "$(cat "$TEST_TMP/slow.status")" "the in-flight check-in's status"
    stop_daemon || exit 1
    start_daemon "$dir"
    checkin endpoint-LAPTOP-0042 "$report"
    assert_error 409 replay
    stop_daemon || exit 1
}

# Lines are `time level=… event=…`; no line holds a key, a certificate, a signature or a body.
case_logs_are_key_value_without_secrets() {
    local nonce log="$DAEMON_DIR/daemon.log"
    enroll LAPTOP-0042
    nonce="$(new_nonce)"
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042 nonce="$nonce")"
    assert_status 200
    checkin endpoint-LAPTOP-0042 '{"device_id": "LAPTOP-0042", "secret_field": "hunter2-'"$nonce"'"'
    assert_status 400
    local bad
    bad="$(grep -v '^=== start' "$log" | grep -vE '^[0-9T:.-]+Z level=(trace|debug|info|warning|error|critical) event=[a-z_]+( |$)' || true)"
    [[ -z "$bad" ]] || fail "log lines not in key=value form: $(printf '%.400s' "$bad")"
    assert_not_contains "$(cat "$log")" "$nonce" "the daemon log (a request body)"
    assert_not_contains "$(cat "$log")" "hunter2" "the daemon log (a request body)"
    assert_not_contains "$(cat "$log")" "BEGIN" "the daemon log (PEM)"
    assert_not_contains "$(cat "$log")" "PRIVATE" "the daemon log (a key)"
}

# Under systemd (JOURNAL_STREAM set) each line starts with its syslog priority and no time.
case_journal_lines_carry_priority() {
    local dir="$TEST_TMP/journal"
    JOURNAL_STREAM=8:12345 start_daemon "$dir"
    stop_daemon || exit 1
    assert_match "$(grep -m1 'event=listening' "$dir/daemon.log")" '^<6>level=info event=listening ' \
        "a journal line"
}

start_daemon
run_case "/metrics counts check-ins, routes, refusals and the register" case_metrics_count_what_happened
run_case "SIGHUP reloads drop no request and no connection" case_reload_drops_no_request
run_case "a bad policy on SIGHUP is refused with its reason; the old one stays" case_bad_policy_reload_keeps_the_old_policy
run_case "log lines are key=value and hold no body, key or certificate" case_logs_are_key_value_without_secrets
stop_daemon || exit 1
run_case "SIGTERM finishes the request in flight and exits 0" case_sigterm_finishes_the_request_in_flight
run_case "under systemd, log lines carry their syslog priority" case_journal_lines_carry_priority
finish
