#!/usr/bin/env bash
# The bulk enrollment import: POST /v1/devices/import (text/csv, admin only, all or nothing, one
# audit record) and `exemptctl device import FILE` with its chunking and exit codes.
source "$(dirname "$0")/lib.sh"

# import_csv NAME FILE [CONTENT_TYPE] — POST FILE to /v1/devices/import as certificate NAME.
import_csv() {
    LAST_REQUEST="POST /v1/devices/import ($(basename "$2")) as $1"
    : >"$TEST_TMP/response"
    CURL_RC=0
    local meta
    meta="$(curl_as "$1" -o "$TEST_TMP/response" -w '%{http_code} %{content_type}' -X POST \
        -H "Content-Type: ${3:-text/csv}" --data-binary "@$2" "$(api_url /v1/devices/import)" \
        2>"$TEST_TMP/curl.err")" || CURL_RC=$?
    STATUS="${meta%% *}"
    STATUS="${STATUS:-000}"
    CTYPE="${meta#* }"
    BODY="$(<"$TEST_TMP/response")"
    CURL_ERR="$(<"$TEST_TMP/curl.err")"
    json_parse "$BODY" || true
}

device_count() {
    api helpdesk GET /v1/devices
    assert_status 200
    jcount "$BODY" .devices
}

# imported_records — how many devices.imported records the audit trail holds.
imported_records() {
    api helpdesk GET "/v1/audit?limit=10000"
    assert_status 200
    jcolumn "$BODY" .records .action | grep -c '^devices\.imported$' || true
}

case_exemptctl_imports_a_file_and_a_repeat_changes_nothing() {
    # Quoted fields, a quote inside quotes, CRLF line ends, an empty owner and source.
    printf '%s\r\n' 'device_id,enrolled,owner,source' 'IMP-0001,true,sam@example.com,mdm' \
        '"IMP-0002",yes,"jordan@example.com",' 'IMP-0003,0,,"mdm ""jamf"" export"' >"$TEST_TMP/a.csv"
    ctl admin device import "$TEST_TMP/a.csv"
    assert_ctl 0
    assert_contains "$CTL_OUT" "3 rows: 3 created, 0 changed, 0 unchanged" "exemptctl device import output"
    api helpdesk GET /v1/devices/IMP-0002
    assert_status 200
    assert_json .enrollment.enrolled true
    assert_json .enrollment.owner jordan@example.com
    assert_json .enrollment.source mdm-import
    assert_json .enrollment.updated_by admin@example.com
    api helpdesk GET /v1/devices/IMP-0003
    assert_json .enrollment.enrolled false
    assert_json .enrollment.source 'mdm "jamf" export'
    # One audit record for the whole file, with its SHA-256 and the counts.
    assert_eq 1 "$(imported_records)" "devices.imported records"
    local sha
    sha="$(sha256sum "$TEST_TMP/a.csv" | cut -d' ' -f1)"
    api helpdesk GET "/v1/audit?limit=10000"
    assert_contains "$BODY" "$sha" "the audit trail (the file's SHA-256)"
    # The same file again: nothing changes, nothing is audited.
    ctl admin --json device import "$TEST_TMP/a.csv"
    assert_ctl 0
    assert_json .unchanged 3 "$CTL_OUT"
    assert_json .created 0 "$CTL_OUT"
    assert_json .requests 1 "$CTL_OUT"
    assert_eq 1 "$(imported_records)" "devices.imported records after a repeat"
}

case_an_import_changes_a_checked_in_devices_decision() {
    enroll LAPTOP-0042 sam@example.com
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042)"
    assert_status 200
    assert_json .decision allow
    printf 'device_id,enrolled,owner\nLAPTOP-0042,false,sam@example.com\nIMP-0001,true,sam@example.com\n' \
        >"$TEST_TMP/b.csv"
    import_csv admin "$TEST_TMP/b.csv" "text/csv; charset=utf-8"
    assert_status 200
    assert_json .rows 2
    assert_json .changed 2
    assert_json .created 0
    assert_json .unchanged 0
    # The device was re-evaluated at the import, without a new check-in.
    api helpdesk GET /v1/devices/LAPTOP-0042
    assert_json .decision.decision deny
    api helpdesk GET "/v1/audit?limit=10000"
    assert_contains "$BODY" '"decision.changed"' "the audit trail after the import"
}

case_an_invalid_row_refuses_the_whole_file() {
    local before
    before="$(device_count)"
    printf 'device_id,enrolled,owner,source\nNEW-0001,true,,\nbad id!,true,,\n' >"$TEST_TMP/c.csv"
    import_csv admin "$TEST_TMP/c.csv"
    assert_error 422 invalid_row
    assert_contains "$BODY" "line 3" "the refusal"
    ctl admin device import "$TEST_TMP/c.csv"
    assert_ctl 1
    assert_contains "$CTL_ERR" "line 3" "exemptctl's refusal"
    printf 'device_id,enrolled\nNEW-0001,true\nNEW-0002,maybe\n' >"$TEST_TMP/d.csv"
    import_csv admin "$TEST_TMP/d.csv"
    assert_error 422 invalid_row
    printf 'device_id,enrolled,owner\nNEW-0001,true,not-an-email\n' >"$TEST_TMP/e.csv"
    import_csv admin "$TEST_TMP/e.csv"
    assert_error 422 invalid_row
    printf 'device_id,enrolled\nNEW-0001,true\nNEW-0002,true\nNEW-0001,false\n' >"$TEST_TMP/f.csv"
    import_csv admin "$TEST_TMP/f.csv"
    assert_error 422 invalid_row
    assert_contains "$BODY" "line 4" "the duplicate refusal"
    printf 'NEW-0001,true\n' >"$TEST_TMP/g.csv"
    import_csv admin "$TEST_TMP/g.csv"
    assert_error 400 invalid_csv
    ctl admin device import "$TEST_TMP/g.csv"
    assert_ctl 2
    printf 'device_id,enrolled\n"NEW-0001,true\n' >"$TEST_TMP/h.csv"
    import_csv admin "$TEST_TMP/h.csv"
    assert_error 400 invalid_csv
    assert_eq "$before" "$(device_count)" "devices after refused imports"
}

case_only_admins_import_and_only_csv() {
    printf 'device_id,enrolled\nNEW-0009,true\n' >"$TEST_TMP/i.csv"
    import_csv helpdesk "$TEST_TMP/i.csv"
    assert_error 403 forbidden
    import_csv endpoint-LAPTOP-0042 "$TEST_TMP/i.csv"
    assert_error 403 forbidden
    import_csv admin "$TEST_TMP/i.csv" application/json
    assert_error 415 unsupported_media_type
    api helpdesk GET /v1/devices/NEW-0009
    assert_error 404 not_found
}

case_the_import_route_has_its_own_body_limit() {
    # 4,000 rows (about 120 KB) is above the 64 KiB limit of every other route.
    {
        echo device_id,enrolled,owner,source
        seq -f 'BULK-%06g' 1 4000 | sed 's/.*/&,true,owner-&@example.com,mdm/'
    } >"$TEST_TMP/big.csv"
    (($(stat -c %s "$TEST_TMP/big.csv") > 65536)) || fail "big.csv is not above 64 KiB"
    import_csv admin "$TEST_TMP/big.csv"
    assert_status 200
    assert_json .created 4000
    # The same bytes to another route are still over its limit.
    request admin POST /v1/exemptions "$TEST_TMP/big.csv"
    assert_error 413 body_too_large
}

case_exemptctl_splits_a_file_into_requests() {
    {
        echo device_id,enrolled,owner
        seq -f 'CHUNK-%04g,true,sam@example.com' 1 5
    } >"$TEST_TMP/j.csv"
    ctl admin device import --rows-per-request 2 "$TEST_TMP/j.csv"
    assert_ctl 0
    assert_contains "$CTL_ERR" "request 3/3 (lines 6-6)" "exemptctl's progress"
    assert_contains "$CTL_OUT" "5 rows: 5 created, 0 changed, 0 unchanged (3 requests)" "exemptctl's totals"
    ctl admin device import "$TEST_TMP/does-not-exist.csv"
    assert_ctl 2
    ctl helpdesk device import "$TEST_TMP/j.csv"
    assert_ctl 1
}

case_a_long_import_is_answered_past_the_request_timeout() {
    # The request timeout bounds reading a request, not handling it: the rows take longer to
    # commit than this daemon's 1-second request timeout (500,000 about 1.4 s here; under the
    # sanitizers, about four times slower, 300,000 stay well within curl's 10 s).
    local rows=500000
    [[ "${EXEMPTD_SANITIZERS:-0}" != 1 ]] || rows=300000
    "$SOURCE_DIR/bench/make-mdm-csv.sh" "$rows" >"$TEST_TMP/many.csv"
    local started=$EPOCHREALTIME
    import_csv admin "$TEST_TMP/many.csv"
    note "$rows rows in $(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
    assert_status 200
    assert_json .created "$rows"
}

start_daemon
run_case "exemptctl device import creates devices; a repeat changes and audits nothing" \
    case_exemptctl_imports_a_file_and_a_repeat_changes_nothing
run_case "an import re-evaluates a checked-in device whose enrollment changed" \
    case_an_import_changes_a_checked_in_devices_decision
run_case "one invalid row refuses the whole file, naming its line" case_an_invalid_row_refuses_the_whole_file
run_case "only admins import, and only text/csv" case_only_admins_import_and_only_csv
run_case "the import route takes bodies above the global 64 KiB limit" case_the_import_route_has_its_own_body_limit
run_case "exemptctl splits a file into all-or-nothing requests" case_exemptctl_splits_a_file_into_requests
stop_daemon
write_config "$TEST_TMP/slow/exemptd.yaml" "limits: {request_timeout_seconds: 1}"
start_daemon "$TEST_TMP/slow"
run_case "a long import is answered past the request timeout" case_a_long_import_is_answered_past_the_request_timeout
finish
