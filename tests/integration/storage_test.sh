#!/usr/bin/env bash
# Storage failures (README "Crash safety"): a corrupt database is refused at start-up with a
# clear message after an unclean stop, and found by the background check (exit 1, then refused)
# after a clean one; clean restarts keep serving. A full disk and a read-only database make writes
# fail with 503 storage_unavailable and nothing half-written, while reads keep being served and
# writes work again once the disk has space. The full-disk case mounts a small tmpfs and so needs root (it
# is skipped, saying so, where mounting is not allowed).
source "$(dirname "$0")/lib.sh"

command -v sqlite3 >/dev/null || { echo "sqlite3 CLI is required" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Helpers.

# request_exemption TOKEN — POST /v1/exemptions as admin with justification TOKEN.
request_exemption() {
    api admin POST /v1/exemptions "{\"subject\": \"device:STORE-1\", \"controls\": [\"OS-01\"], \
\"justification\": \"$1\", \"risk\": {\"likelihood\": \"low\", \"impact\": \"low\"}, \
\"mitigations\": [\"Monitored\"], \"compensating_controls\": [], \"evidence\": \"T-1\", \
\"expires_at\": \"$(now_rfc3339 86400)\"}"
}

# stored DB TOKEN — how many exemptions have justification TOKEN.
stored() {
    db_count "$1" "SELECT count(*) FROM exemptions WHERE json_extract(record, '\$.justification') = '$2'"
}

# db_count DB SQL — one number from the database.
db_count() {
    sqlite3 -batch "$1" "$2"
}

# assert_consistent DB — the file and the audit chain are whole, and every exemption has its
# exemption.requested record and every such record its exemption.
assert_consistent() {
    assert_eq ok "$(sqlite3 "$1" 'PRAGMA integrity_check')" "PRAGMA integrity_check"
    assert_eq 0 "$(db_count "$1" "SELECT count(*) FROM exemptions WHERE 'exemption:' || id NOT IN
        (SELECT subject FROM audit WHERE action = 'exemption.requested')")" "exemptions without their audit record"
    assert_eq 0 "$(db_count "$1" "SELECT count(*) FROM audit WHERE subject LIKE 'exemption:%'
        AND substr(subject, 11) NOT IN (SELECT id FROM exemptions)")" "audit records of missing exemptions"
    api helpdesk GET /v1/audit/verify
    assert_status 200
    assert_json .ok true
    ctl helpdesk audit verify
    assert_ctl 0
}

# ---------------------------------------------------------------------------------------------
# Cases.

# fill_and_keep DIR — with exemptd stopped: adds 400 devices (so that the file has pages in the
# middle to damage), moves any WAL left by a kill into the file, and keeps a good copy.
fill_and_keep() {
    local db="$1/state/exemptd.db"
    sqlite3 "$db" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
        INSERT INTO devices (device_id) SELECT printf('FILLER-%04d', i) FROM n" || fail "could not add rows"
    sqlite3 "$db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null || fail "could not checkpoint the WAL"
    [[ ! -s "$db-wal" ]] || fail "the WAL should be in the file by now"
    cp "$db" "$TEST_TMP/good.db"
}

# damage_middle_page DB — overwrites the b-tree page header and cell pointers of a page in the
# middle of the file (a device page).
damage_middle_page() {
    local db="$1" size pages mid
    size="$(db_count "$db" 'PRAGMA page_size')"
    pages="$(db_count "$db" 'PRAGMA page_count')"
    ((pages >= 8)) || fail "expected a database of several pages, got $pages"
    mid=$((pages / 2))
    head -c 48 /dev/zero | tr '\0' '\377' | dd of="$db" bs=1 seek=$(((mid - 1) * size)) conv=notrunc status=none
}

# assert_refused_at_start DIR — exemptd refuses the damaged database before serving, with the
# clear message, and leaves it as it was; a good copy then starts and serves.
assert_refused_at_start() {
    local dir="$1" db="$1/state/exemptd.db" line
    start_daemon_expecting_failure "$dir"
    line="$(grep 'event=start_failed' "$dir/daemon.log" | tail -n 1)"
    assert_match "$line" \
        "level=critical event=start_failed reason=\"database $db is corrupt: .+; restore from a backup\"" \
        "the start-up refusal"
    note "$line"
    cp "$TEST_TMP/good.db" "$db"
    rm -f "$db-wal" "$db-shm"
    start_daemon "$dir"
    api helpdesk GET /v1/devices/CORRUPT-1
    assert_status 200
    stop_daemon || exit 1
}

# A run killed with SIGKILL records no clean stop, so the next start checks the whole file before
# serving, as after a crash or a power cut.
case_corrupt_after_kill_is_refused_at_start() {
    local dir="$TEST_TMP/killed" db="$TEST_TMP/killed/state/exemptd.db"
    start_daemon "$dir"
    enroll CORRUPT-1
    request_exemption "before the kill"
    assert_status 201
    stop_daemon || exit 1
    assert_eq 1 "$(db_count "$db" 'SELECT count(*) FROM clean_stop')" "clean-stop marker after SIGTERM"
    start_daemon "$dir"  # takes the marker before serving
    assert_eq 0 "$(db_count "$db" 'SELECT count(*) FROM clean_stop')" "clean-stop marker while serving"
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=""
    fill_and_keep "$dir"
    damage_middle_page "$db"
    assert_refused_at_start "$dir"
}

# After a clean stop exemptd serves at once and checks the file in the background: damage found
# then stops it (exit 1) with the same message, and the restart refuses the file before serving.
case_corrupt_after_clean_stop_is_caught_in_the_background() {
    local dir="$TEST_TMP/clean" db="$TEST_TMP/clean/state/exemptd.db" pid i rc=0 line
    start_daemon "$dir"
    enroll CORRUPT-1
    request_exemption "before the damage"
    assert_status 201
    stop_daemon || exit 1
    fill_and_keep "$dir"
    damage_middle_page "$db"
    start_daemon "$dir"
    pid="$DAEMON_PID"
    DAEMON_PID=""
    grep -q 'event=database_opened clean_stop=true integrity_check=deferred' "$dir/daemon.log" \
        || fail "the start after a clean stop should defer its check. $(daemon_log_tail)"
    for ((i = 0; i < 200; i++)); do
        daemon_alive "$pid" || break
        sleep 0.05
    done
    daemon_alive "$pid" && fail "exemptd still serves a corrupt database 10 s after it was ready. $(daemon_log_tail)"
    wait "$pid" || rc=$?
    assert_eq 1 "$rc" "exit code after the background check found damage"
    line="$(grep 'event=database_corrupt' "$dir/daemon.log" | tail -n 1)"
    assert_match "$line" \
        "level=critical event=database_corrupt reason=\"database $db is corrupt: .+; restore from a backup\"" \
        "the background check's report"
    note "$line"
    grep -q 'event=database_closed clean_stop=false reason="the integrity check found damage"' "$dir/daemon.log" \
        || fail "a damaged file must not be marked as cleanly stopped. $(daemon_log_tail)"
    assert_refused_at_start "$dir"
}

# Clean restarts serve at once, check in the background, and keep every write.
case_clean_restarts_keep_serving() {
    local dir="$TEST_TMP/restarts" db="$TEST_TMP/restarts/state/exemptd.db" round
    start_daemon "$dir"
    enroll RESTART-1
    for round in 1 2 3; do
        request_exemption "restart round $round"
        assert_status 201
        stop_daemon || exit 1
        assert_eq 1 "$(db_count "$db" 'SELECT count(*) FROM clean_stop')" "clean-stop marker after round $round"
        start_daemon "$dir"
        wait_for_log "$dir" 'event=integrity_checked result=ok' "$round"
        api helpdesk GET "/v1/exemptions?subject=device:STORE-1"
        assert_status 200
        assert_eq "$round" "$(jcount "$BODY" .exemptions)" "exemptions after restart $round"
    done
    assert_eq 3 "$(grep -c 'event=database_opened clean_stop=true integrity_check=deferred' "$dir/daemon.log")" \
        "starts that deferred their check"
    stop_daemon || exit 1
}

# wait_for_log DIR TEXT COUNT — waits up to 10 s for COUNT lines with TEXT in DIR/daemon.log.
wait_for_log() {
    local i
    for ((i = 0; i < 200; i++)); do
        (($(grep -c -- "$2" "$1/daemon.log" || true) >= $3)) && return 0
        sleep 0.05
    done
    fail "no $3 lines with '$2' in the log within 10 s. $(daemon_log_tail)"
}

# start_daemon_expecting_failure DIR — starts exemptd, which must exit non-zero within 10 s.
start_daemon_expecting_failure() {
    local dir="$1" pid i rc=0
    rm -f "$dir/ready"
    echo "=== start $(date -u +%T)" >>"$dir/daemon.log"
    (cd "$TEST_TMP" && exec "$EXEMPTD_BIN" --config "$dir/exemptd.yaml" --ready-file "$dir/ready") \
        </dev/null >>"$dir/daemon.log" 2>&1 &
    pid=$!
    echo "$pid" >>"$PID_FILE"
    for ((i = 0; i < 200; i++)); do
        daemon_alive "$pid" || break
        sleep 0.05
    done
    daemon_alive "$pid" && fail "exemptd still runs on a corrupt database. $(DAEMON_DIR="$dir" daemon_log_tail)"
    wait "$pid" || rc=$?
    ((rc != 0)) || fail "exemptd exited 0 on a corrupt database"
    [[ ! -e "$dir/ready" ]] || fail "exemptd said it was ready on a corrupt database"
}

# The full disk: a 3 MiB tmpfs holds the database; a filler file takes every free block.
case_full_disk_is_503_and_recovers() {
    local dir="$TEST_TMP/full" mnt="$TEST_TMP/full/state"
    mkdir -p "$mnt"
    if ! mount -t tmpfs -o size=3m,mode=0700 exemptd-test "$mnt" 2>"$TEST_TMP/mount.err"; then
        note "skipped: cannot mount a tmpfs here ($(<"$TEST_TMP/mount.err"))"
        return 0
    fi
    # Whatever happens, the daemon must go before the file system can.
    trap 'if [[ -n "$DAEMON_PID" ]]; then kill -KILL "$DAEMON_PID"; wait "$DAEMON_PID"; fi; umount "$mnt"' EXIT
    start_daemon "$dir"
    local db="$mnt/exemptd.db" i ok=0 full=0 token
    request_exemption "written before the disk filled"
    assert_status 201
    dd if=/dev/zero of="$mnt/filler" bs=4k status=none 2>/dev/null || true
    assert_eq 0 "$(df --output=avail "$mnt" | tail -n 1 | tr -d ' ')" "free space on the full tmpfs"
    for ((i = 1; i <= 8; i++)); do
        request_exemption "disk full $i"
        if [[ "$STATUS" == 201 ]]; then
            ok=$((ok + 1))
            echo "disk full $i" >>"$TEST_TMP/full.acked"
        else
            assert_error 503 storage_unavailable
            full=$((full + 1))
            echo "disk full $i" >>"$TEST_TMP/full.refused"
        fi
    done
    note "with the disk full: $ok writes acknowledged (room left in the WAL), $full refused with 503"
    ((full > 0)) || fail "no write failed on a full disk"
    api it-manager POST /v1/exemptions/EX-000001/approve '{"note": "on a full disk"}'
    [[ "$STATUS" == 200 ]] || assert_error 503 storage_unavailable
    # Reads are still served.
    api helpdesk GET /v1/exemptions
    assert_status 200
    api helpdesk GET /v1/audit/verify
    assert_status 200
    assert_json .ok true
    # Space again: writes work without a restart.
    rm -f "$mnt/filler"
    request_exemption "after the disk had space again"
    assert_status 201
    # Nothing refused was written; everything acknowledged was.
    local refused
    while read -r token; do
        assert_eq 0 "$(stored "$db" "$token")" "rows for the refused '$token'"
    done <"$TEST_TMP/full.refused"
    if [[ -s "$TEST_TMP/full.acked" ]]; then
        while read -r token; do
            assert_eq 1 "$(stored "$db" "$token")" "rows for the acknowledged '$token'"
        done <"$TEST_TMP/full.acked"
    fi
    refused="$(grep -c 'event=write_failed' "$dir/daemon.log" || true)"
    ((refused > 0)) || fail "the daemon logged no write_failed for the refused writes"
    assert_consistent "$db"
    stop_daemon || exit 1
    trap - EXIT
    umount "$mnt"
}

# The read-only database: the database file and its WAL are made immutable (chattr +i; as root,
# chmod would not stop anything) while the daemon runs. The -shm file stays writable: it is
# mapped into memory, and the kernel answers a store into a mapped immutable file with SIGBUS.
case_read_only_database_is_503() {
    local dir="$TEST_TMP/readonly"
    start_daemon "$dir"
    local db="$dir/state/exemptd.db"
    request_exemption "before read-only"
    assert_status 201
    if ! chattr +i "$db" "$db-wal" 2>"$TEST_TMP/chattr.err"; then
        chattr -i "$db" "$db-wal" 2>/dev/null || true
        note "skipped: chattr +i is not supported here ($(<"$TEST_TMP/chattr.err"))"
        return 0
    fi
    trap 'chattr -i "$db" "$db-wal" 2>/dev/null || true' EXIT
    request_exemption "while read-only"
    assert_error 503 storage_unavailable
    api admin PUT /v1/devices/READONLY-1/enrollment '{"enrolled": true, "owner": "sam@example.com", "source": "mdm"}'
    assert_error 503 storage_unavailable
    api helpdesk GET /v1/exemptions/EX-000001
    assert_status 200
    chattr -i "$db" "$db-wal"
    trap - EXIT
    request_exemption "writable again"
    assert_status 201
    assert_eq 0 "$(stored "$db" "while read-only")" "rows of the refused write"
    assert_eq 0 "$(db_count "$db" "SELECT count(*) FROM devices WHERE device_id = 'READONLY-1'")" "the refused enrollment"
    assert_consistent "$db"
    stop_daemon || exit 1
}

run_case "after SIGKILL, a corrupt database is refused at start-up with a clear message" \
    case_corrupt_after_kill_is_refused_at_start
run_case "after a clean stop, damage is found in the background: clear message, exit 1, refused next start" \
    case_corrupt_after_clean_stop_is_caught_in_the_background
run_case "clean restarts serve at once and keep every write" case_clean_restarts_keep_serving
run_case "a full disk answers 503 storage_unavailable, keeps reads and recovers" case_full_disk_is_503_and_recovers
run_case "a read-only database answers 503 storage_unavailable and keeps reads" case_read_only_database_is_503

finish
