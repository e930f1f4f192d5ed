#!/usr/bin/env bash
# Crash safety (README "Crash safety"): two background clients send a stream of writes —
# exemption requests, approvals and revocations; enrollments and check-ins — while the daemon is
# killed with SIGKILL at random moments (CRASH_KILLS times, 60 by default) and restarted on the
# same configuration and database. Every request that got a 2xx answer is written down with what
# it created. After the last restart the script checks that:
#   - every acknowledged write is there: the exemption exists under the id it was given, with the
#     content it was requested with (ids are never reused) and at least the acknowledged state;
#     the enrollment and the check-in (its nonce) are stored;
#   - nothing is half-written: each exemption has its `exemption.requested` record, each decided
#     one its approval (and revocation) record, each pending one none; no audit record names an
#     exemption that does not exist; each device's enrollment matches its latest audit record;
#   - `PRAGMA integrity_check` says ok, and the audit chain verifies (exemptctl audit verify, also
#     against the signed checkpoints, and GET /v1/audit/verify);
#   - no start-up flagged the chain against its checkpoint (a kill between a commit and the next
#     checkpoint only makes the chain grow beyond the checkpoint, which is not tampering).
# The kill loop is 60 x (0.3-1 s + a restart): 95-130 s on the shared 2-core build machine under
# load (restarts take ~1 s there); estimated at about a minute on a quiet one (0.15 s restarts).
source "$(dirname "$0")/lib.sh"

command -v sqlite3 >/dev/null || { echo "sqlite3 CLI is required" >&2; exit 1; }

readonly KILLS="${CRASH_KILLS:-60}"
readonly CRASH_DIR="$TEST_TMP/crash"
readonly STOP_FILE="$TEST_TMP/clients.stop"

# ---------------------------------------------------------------------------------------------
# Helpers.

# kill_daemon — SIGKILL by PID, then reaps it (lib.sh's stop_daemon wants exit 0 after SIGTERM).
kill_daemon() {
    local pid="$DAEMON_PID"
    DAEMON_PID=""
    kill -KILL "$pid" 2>/dev/null || true
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    [[ "$rc" == 137 ]] || fail "exemptd (pid $pid) should have died of SIGKILL (137), exited $rc. $(daemon_log_tail)"
}

# batch WHO METHOD PATH... — sends the bodies $CLIENT_TMP/body.1… to PATH… as WHO, in one curl
# run over one keep-alive connection, to whichever daemon runs now (its port is read from the
# ready file). Sets STATUSES (one per request; "000" when no answer came: transfers after a kill
# fail at once) and leaves the answers in $CLIENT_TMP/answer.1….
batch() {
    local who="$1" method="$2" port i=0 path
    shift 2
    local -a args=()
    STATUSES=()
    port="$(sed -n 's/^listen=127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$CRASH_DIR/ready" 2>/dev/null)" || port=""
    for path in "$@"; do
        i=$((i + 1))
        : >"$CLIENT_TMP/answer.$i"
        ((i == 1)) || args+=(--next)
        args+=(-s --noproxy '*' --max-time 5 --cacert "$PKI_DIR/server-ca.crt" --cert "$PKI_DIR/$who.crt"
            --key "$PKI_DIR/$who.key" -o "$CLIENT_TMP/answer.$i" -w '%{http_code}\n' -X "$method"
            -H 'Content-Type: application/json' --data-binary "@$CLIENT_TMP/body.$i"
            "https://127.0.0.1:${port:-1}$path")
    done
    ((i > 0)) || return 0
    if [[ -z "$port" ]]; then
        sleep 0.05   # between a kill and the next ready file
    else
        mapfile -t STATUSES < <(curl -q "${args[@]}" 2>/dev/null || true)
    fi
    local lost=0
    for ((i = 1; i <= $#; i++)); do
        case "${STATUSES[i - 1]:-000}" in
            2??) ;;
            000) lost=$((lost + 1)) ;;
            *) echo "status ${STATUSES[i - 1]} $(<"$CLIENT_TMP/answer.$i")" >>"$CLIENT_TMP/outcomes" ;;
        esac
    done
    ((lost == 0)) || printf 'lost\n%.0s' $(seq "$lost") >>"$CLIENT_TMP/outcomes"
}

# answered I CODE — request I of the last batch was answered CODE.
answered() {
    [[ "${STATUSES[$1 - 1]:-000}" == "$2" ]]
}

# exemption_client — requests exemptions (a unique justification each), approves each one that
# was acknowledged, revokes every fourth, in batches of 8. Writes REQ ID TOKEN, APP ID and REV ID
# to acks.
exemption_client() {
    CLIENT_TMP="$TEST_TMP/client-ex"
    mkdir -p "$CLIENT_TMP"
    local n=0 i expires id
    local -a paths tokens ids
    expires="$(now_rfc3339 $((30 * 86400)))"
    while [[ ! -e "$STOP_FILE" ]]; do
        paths=() tokens=()
        for ((i = 1; i <= 8; i++)); do
            n=$((n + 1))
            tokens+=("crash test request $n")
            printf '{"subject": "device:CRASH-%d", "controls": ["OS-01"], "justification": "%s", %s' \
                $((n % 5)) "crash test request $n" '"risk": {"likelihood": "low", "impact": "low"}, ' >"$CLIENT_TMP/body.$i"
            printf '"mitigations": ["Monitored"], "compensating_controls": [], "evidence": "T-%d", "expires_at": "%s"}' \
                "$n" "$expires" >>"$CLIENT_TMP/body.$i"
            paths+=(/v1/exemptions)
        done
        batch admin POST "${paths[@]}"
        ids=()
        for ((i = 1; i <= 8; i++)); do
            answered "$i" 201 && [[ "$(<"$CLIENT_TMP/answer.$i")" =~ \"id\":\"(EX-[0-9]+)\" ]] || continue
            echo "REQ ${BASH_REMATCH[1]} ${tokens[i - 1]}" >>"$CLIENT_TMP/acks"
            ids+=("${BASH_REMATCH[1]}")
        done
        paths=()
        for ((i = 1; i <= ${#ids[@]}; i++)); do
            echo '{"note": "crash test"}' >"$CLIENT_TMP/body.$i"
            paths+=("/v1/exemptions/${ids[i - 1]}/approve")
        done
        batch it-manager POST "${paths[@]}"
        local -a approved=()
        for ((i = 1; i <= ${#ids[@]}; i++)); do
            answered "$i" 200 || continue
            echo "APP ${ids[i - 1]}" >>"$CLIENT_TMP/acks"
            approved+=("${ids[i - 1]}")
        done
        paths=()
        for ((i = 1; i <= ${#approved[@]}; i += 4)); do
            echo '{"reason": "crash test"}' >"$CLIENT_TMP/body.$((${#paths[@]} + 1))"
            paths+=("/v1/exemptions/${approved[i - 1]}/revoke")
        done
        batch admin POST "${paths[@]}"
        for ((i = 1; i <= ${#paths[@]}; i++)); do
            id="${paths[i - 1]#/v1/exemptions/}"
            answered "$i" 200 && echo "REV ${id%/revoke}" >>"$CLIENT_TMP/acks"
        done
    done
    return 0  # not the loop's status: that of its last answer, which the last kill may have lost
}

# device_client — enrollments (a unique owner each) and check-ins (a fresh nonce each), in
# batches of 8. Writes ENR DEVICE OWNER and CHK DEVICE NONCE to acks.
device_client() {
    CLIENT_TMP="$TEST_TMP/client-dev"
    mkdir -p "$CLIENT_TMP"
    local n=0 i
    local -a paths devices owners nonces
    while [[ ! -e "$STOP_FILE" ]]; do
        paths=() devices=() owners=()
        for ((i = 1; i <= 8; i++)); do
            n=$((n + 1))
            devices+=("CRASH-E$((n % 7))")
            owners+=("owner-$n@example.com")
            printf '{"enrolled": true, "owner": "owner-%d@example.com", "source": "mdm"}' "$n" >"$CLIENT_TMP/body.$i"
            paths+=("/v1/devices/CRASH-E$((n % 7))/enrollment")
        done
        batch admin PUT "${paths[@]}"
        for ((i = 1; i <= 8; i++)); do
            answered "$i" 200 || answered "$i" 201 || continue
            echo "ENR ${devices[i - 1]} ${owners[i - 1]}" >>"$CLIENT_TMP/acks"
        done
        paths=() nonces=()
        for ((i = 1; i <= 8; i++)); do
            nonces+=("$(new_nonce)")
            posture LAPTOP-0043 "nonce=${nonces[i - 1]}" >"$CLIENT_TMP/body.$i"
            paths+=(/v1/checkin)
        done
        batch endpoint-LAPTOP-0043 POST "${paths[@]}"
        for ((i = 1; i <= 8; i++)); do
            answered "$i" 200 && echo "CHK LAPTOP-0043 ${nonces[i - 1]}" >>"$CLIENT_TMP/acks"
        done
    done
    return 0  # as in exemption_client
}

# sql QUERY — runs a read-only query on the crash database; one row a line, fields joined by |.
sql() {
    sqlite3 -batch -separator '|' "$CRASH_DIR/state/exemptd.db" "$1"
}

# assert_no_rows WHAT QUERY — QUERY returns nothing.
assert_no_rows() {
    local rows
    rows="$(sql "$2")" || fail "query for '$1' failed"
    [[ -z "$rows" ]] || fail "$1: $(printf '%.800s' "$rows")"
}

# ---------------------------------------------------------------------------------------------
# The case.

case_acknowledged_writes_survive_sigkill() {
    # The device client checks in 8 at a time, far above limits.checkin_rate_per_minute.
    write_config "$CRASH_DIR/exemptd.yaml" "limits: {checkin_rate_per_minute: 0}"
    start_daemon "$CRASH_DIR"
    rm -f "$STOP_FILE"
    exemption_client &
    local ex_pid=$!
    device_client &
    local dev_pid=$!
    local k started="$EPOCHSECONDS"
    for ((k = 1; k <= KILLS; k++)); do
        sleep "0.$((3 + RANDOM % 7))"
        kill_daemon
        start_daemon "$CRASH_DIR"
    done
    touch "$STOP_FILE"
    wait "$ex_pid" || fail "the exemption client failed"
    wait "$dev_pid" || fail "the device client failed"
    note "$KILLS kills in $((EPOCHSECONDS - started)) s"

    # The daemon now running was started after the last kill: this is the clean restart.
    local acks="$TEST_TMP/acks" outcomes="$TEST_TMP/outcomes"
    cat "$TEST_TMP"/client-*/acks >"$acks" 2>/dev/null || true
    cat "$TEST_TMP"/client-*/outcomes >"$outcomes" 2>/dev/null || true
    local requested approved enrolled checked lost other
    requested="$(grep -c '^REQ ' "$acks" || true)"
    approved="$(grep -c '^APP ' "$acks" || true)"
    enrolled="$(grep -c '^ENR ' "$acks" || true)"
    checked="$(grep -c '^CHK ' "$acks" || true)"
    lost="$(grep -c '^lost' "$outcomes" || true)"
    other="$(grep -vc '^lost' "$outcomes" || true)"
    note "acknowledged: $requested requests, $approved approvals, $(grep -c '^REV ' "$acks" || true) revocations," \
        "$enrolled enrollments, $checked check-ins; $lost requests got no answer"
    ((requested >= 20 && approved >= 10 && enrolled >= 20 && checked >= 20)) \
        || fail "too few acknowledged writes to say anything (is the machine overloaded?)"
    # Requests get no answer only while the daemon is down or dying; an answer is always 2xx.
    ((other == 0)) || fail "unexpected answers under kills: $(grep -v '^lost' "$outcomes" | head -c 800)"

    # Every acknowledged exemption is there with its content and at least its acknowledged state.
    sql "SELECT id, state, json_extract(record, '\$.justification') FROM exemptions" >"$TEST_TMP/exemptions"
    local missing
    missing="$(awk -F'|' '
        NR == FNR { state[$1] = $2; text[$1] = $3; seen[$3]++; next }
        $1 == "REQ" { id = $2; token = $0; sub(/^REQ [^ ]+ /, "", token)
                      if (!(id in state)) print "acknowledged " id " (" token ") is missing"
                      else if (text[id] != token) print id " holds \"" text[id] "\", acknowledged as \"" token "\"" }
        $1 == "APP" && state[$2] != "active" && state[$2] != "revoked" { print "approved " $2 " is " state[$2] }
        $1 == "REV" && state[$2] != "revoked" { print "revoked " $2 " is " state[$2] }
        END { for (t in seen) if (seen[t] > 1) print "\"" t "\" is stored " seen[t] " times" }
    ' "$TEST_TMP/exemptions" FS=' ' "$acks")"
    [[ -z "$missing" ]] || fail "acknowledged exemption writes are not all there: $(printf '%.1200s' "$missing")"
    # Requests that were committed but whose answer a kill cut off: they show that kills landed
    # between a commit and its acknowledgement (and are allowed to exist).
    local unanswered
    unanswered="$(awk '$1 == "REQ" { acked[$2] = 1 } END { print n - length(acked) }' \
        n="$(wc -l <"$TEST_TMP/exemptions")" "$acks")"
    note "$unanswered exemptions were committed without their answer reaching the client"

    # Every acknowledged enrollment and check-in is there.
    sql "SELECT 'ENR', substr(subject, 8), json_extract(details, '\$.owner') FROM audit
         WHERE action = 'device.enrolled'" | tr '|' ' ' >"$TEST_TMP/stored"
    # The nonce log holds a row per transaction: "device_id\nnonce\n" for each of its check-ins.
    sql "SELECT nonces FROM checkin_nonce_batches" |
        awk 'NF { if (device == "") device = $0; else { print "CHK " device " " $0; device = "" } }' >>"$TEST_TMP/stored"
    missing="$(grep -E '^(ENR|CHK) ' "$acks" | sort | comm -23 - <(sort "$TEST_TMP/stored"))"
    [[ -z "$missing" ]] || fail "acknowledged enrollments or check-ins are missing: $(printf '%.800s' "$missing")"

    # Nothing half-written: state and audit trail agree both ways.
    assert_no_rows "exemptions without an exemption.requested record" \
        "SELECT id FROM exemptions WHERE 'exemption:' || id NOT IN
           (SELECT subject FROM audit WHERE action = 'exemption.requested')"
    assert_no_rows "ids requested more than once" \
        "SELECT subject FROM audit WHERE action = 'exemption.requested' GROUP BY subject HAVING count(*) > 1"
    assert_no_rows "active or revoked exemptions without an exemption.approved record" \
        "SELECT id FROM exemptions WHERE state IN ('active', 'revoked') AND 'exemption:' || id NOT IN
           (SELECT subject FROM audit WHERE action = 'exemption.approved')"
    assert_no_rows "revoked exemptions without an exemption.revoked record" \
        "SELECT id FROM exemptions WHERE state = 'revoked' AND 'exemption:' || id NOT IN
           (SELECT subject FROM audit WHERE action = 'exemption.revoked')"
    assert_no_rows "pending exemptions with a decision in the audit trail" \
        "SELECT id FROM exemptions WHERE state = 'pending' AND 'exemption:' || id IN
           (SELECT subject FROM audit WHERE action IN ('exemption.approved', 'exemption.revoked'))"
    assert_no_rows "audit records naming an exemption that does not exist" \
        "SELECT seq, subject FROM audit WHERE subject LIKE 'exemption:%'
           AND substr(subject, 11) NOT IN (SELECT id FROM exemptions)"
    assert_no_rows "devices whose enrollment differs from their latest enrollment record" \
        "SELECT device_id, owner FROM devices d WHERE enrolled IS NOT NULL AND owner IS NOT
           (SELECT json_extract(details, '\$.owner') FROM audit WHERE subject = 'device:' || d.device_id
            AND action IN ('device.enrolled', 'device.unenrolled') ORDER BY seq DESC LIMIT 1)"

    # The file and the chain.
    assert_eq ok "$(sql 'PRAGMA integrity_check')" "PRAGMA integrity_check"
    ctl helpdesk audit verify
    assert_ctl 0
    assert_match "$CTL_OUT" '^ok: [0-9]+ records, head [0-9a-f]{64}$' "exemptctl audit verify"
    ctl helpdesk audit verify --checkpoint "$CRASH_DIR/state/exemptd.db.checkpoints" \
        --checkpoint-cert "$PKI_DIR/server.crt"
    assert_ctl 0
    api helpdesk GET /v1/audit/verify
    assert_status 200
    assert_json .ok true
    assert_json .first_bad_seq null

    # Each start signed a checkpoint, and none was taken for tampering.
    local log="$CRASH_DIR/daemon.log" starts signed
    starts="$(grep -c '^=== start' "$log")"
    signed="$(grep -c 'event=audit_checkpoint ' "$log" || true)"
    ((signed >= starts)) || fail "$starts starts but only $signed checkpoints signed"
    if grep -E 'event=(audit_checkpoint_mismatch|start_failed|checkpoint_failed)|level=critical' "$log" >"$TEST_TMP/bad"; then
        fail "the daemon log flags a problem after kills: $(head -c 800 "$TEST_TMP/bad")"
    fi
    stop_daemon || exit 1
}

run_case "acknowledged writes survive SIGKILL and nothing is half-written" case_acknowledged_writes_survive_sigkill

finish
