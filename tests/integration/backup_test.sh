#!/usr/bin/env bash
# `exemptd --config FILE --backup DEST` (docs/operations.md): an online copy of the database while
# the daemon serves it, which a second exemptd then serves with the same registry and an intact
# audit trail; and the refusals, with exit code 1 and a message.
source "$(dirname "$0")/lib.sh"

command -v sqlite3 >/dev/null || fail "sqlite3 is missing (apt-get install sqlite3)"

# backup DEST [CONFIG] — runs exemptd --backup; sets BACKUP_RC and BACKUP_OUT (stdout and stderr).
backup() {
    BACKUP_RC=0
    BACKUP_OUT="$(cd / && timeout 30 "$EXEMPTD_BIN" --config "${2:-$DAEMON_DIR/exemptd.yaml}" --backup "$1" 2>&1)" \
        || BACKUP_RC=$?
}

audit_count() {   # DATABASE
    sqlite3 "file:$1?mode=ro" 'SELECT count(*) FROM audit'
}

case_backup_while_serving() {
    enroll LAPTOP-0042
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042)"
    assert_status 200
    mkdir -p "$TEST_TMP/backups"
    backup "$TEST_TMP/backups/exemptd.db"
    assert_eq 0 "$BACKUP_RC" "exemptd --backup exit code (output: $BACKUP_OUT)"
    assert_contains "$BACKUP_OUT" "backed up" "the --backup message"
    # The daemon still serves and writes after the backup.
    enroll LAPTOP-0043
    assert_eq "exemptd.db" "$(ls "$TEST_TMP/backups")" "files in the backup folder (no temporary, -wal or -shm)"
    assert_eq "ok" "$(sqlite3 "file:$TEST_TMP/backups/exemptd.db?mode=ro" 'PRAGMA integrity_check')" "integrity_check"
    local copied live
    copied="$(audit_count "$TEST_TMP/backups/exemptd.db")"
    live="$(audit_count "$DAEMON_DIR/state/exemptd.db")"
    ((copied >= 3 && copied < live)) \
        || fail "the copy should hold the records up to the backup (>= 3), fewer than now ($live); it has $copied"
    assert_eq 1 "$(sqlite3 "file:$TEST_TMP/backups/exemptd.db?mode=ro" 'SELECT count(*) FROM devices')" "devices in the copy"
    COPIED_RECORDS="$copied"
    declare -p COPIED_RECORDS >"$TEST_TMP/copied"
}

case_refusals() {
    backup "$TEST_TMP/no-such-folder/exemptd.db"
    assert_eq 1 "$BACKUP_RC" "--backup into a missing folder: exit code (output: $BACKUP_OUT)"
    assert_contains "$BACKUP_OUT" "failed" "the --backup message"
    [[ ! -e "$TEST_TMP/no-such-folder" ]] || fail "--backup created the missing folder"

    write_config "$TEST_TMP/empty/exemptd.yaml"
    backup "$TEST_TMP/empty-copy.db" "$TEST_TMP/empty/exemptd.yaml"
    assert_eq 1 "$BACKUP_RC" "--backup without a database: exit code (output: $BACKUP_OUT)"
    assert_contains "$BACKUP_OUT" "no database file" "the --backup message"
    [[ ! -e "$TEST_TMP/empty/state/exemptd.db" ]] || fail "--backup created a database"
    [[ ! -e "$TEST_TMP/empty-copy.db" ]] || fail "--backup wrote a copy of nothing"
}

# Restore: a second exemptd serves the copy.
case_copy_serves() {
    # shellcheck disable=SC1091
    source "$TEST_TMP/copied"
    local dir="$TEST_TMP/restored"
    write_config "$dir/exemptd.yaml"
    cp "$TEST_TMP/backups/exemptd.db" "$dir/state/exemptd.db"
    start_daemon "$dir"
    api helpdesk GET /v1/devices/LAPTOP-0042
    assert_status 200
    api helpdesk GET /v1/devices/LAPTOP-0043
    assert_error 404 not_found
    api helpdesk GET /v1/audit/verify
    assert_status 200
    assert_json .ok true
    # The copy's records plus the restarted daemon's own policy.loaded.
    assert_json .records "$((COPIED_RECORDS + 1))"
    stop_daemon || exit 1
}

start_daemon
run_case "a backup taken while exemptd serves is a complete, checked copy" case_backup_while_serving
run_case "a backup into a missing folder or of a missing database fails with exit 1" case_refusals
stop_daemon || fail "the first daemon did not stop cleanly"
run_case "a second exemptd serves the copy with an intact audit trail" case_copy_serves
finish
