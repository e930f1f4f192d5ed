#!/usr/bin/env bash
# The exemption register (SPEC §4, §6, §9): POST /v1/exemptions and the life cycle approve,
# reject, renew, review, revoke; the rules the daemon enforces; who may do what; the list filters;
# `exemptctl exemption …` with its exit codes; an exemption covering a real device's failure until
# it expires (and the sweeper marking it expired); and racing transitions. Every refusal is
# checked for its status, its error code, and for leaving the register as it was.
#
# The dev PKI's admins: admin (approves nothing), it-manager (medium and lower), security-lead
# (high and lower), ciso (critical and lower); policies/default.yaml has max_renewals: 2.
source "$(dirname "$0")/lib.sh"

readonly kDay=86400

# ---------------------------------------------------------------------------------------------
# Helpers.

# ex_body SUBJECT CONTROLS LIKELIHOOD IMPACT EXPIRES_IN_SECONDS [EXTRA_FIELDS] — a request body;
# CONTROLS is comma-separated ("OS-01,FW-01"); EXTRA_FIELDS is JSON text such as
# '"compensating_controls": ["ENC-01"]' and replaces the empty compensating_controls.
ex_body() {
    local controls="\"${2//,/\", \"}\"" extra="${6:-\"compensating_controls\": []}"
    printf '{"subject": "%s", "controls": [%s], "justification": "Integration test for %s.", ' \
        "$1" "$controls" "$1"
    printf '"risk": {"likelihood": "%s", "impact": "%s"}, "mitigations": ["Monitored by the SOC"], ' "$3" "$4"
    printf '"evidence": "TICKET-1", "expires_at": "%s", %s}' "$(now_rfc3339 "$5")" "$extra"
}

# new_exemption WHO SUBJECT CONTROLS LIKELIHOOD IMPACT EXPIRES_IN_SECONDS [EXTRA_FIELDS] — requests
# one (expects 201 pending) and sets EX_ID.
new_exemption() {
    local who="$1"
    shift
    api "$who" POST /v1/exemptions "$(ex_body "$@")"
    assert_status 201
    assert_json .state pending
    EX_ID="$(jget "$BODY" .id)"
    assert_match "$EX_ID" '^EX-[0-9]{6}$' "the new exemption's id"
}

# change WHO ID VERB [BODY] — POST /v1/exemptions/ID/VERB; the body defaults to {}.
change() {
    local body="${4:-}"
    [[ -n "$body" ]] || body='{}'
    api "$1" POST "/v1/exemptions/$2/$3" "$body"
}

# approved WHO ID — approves and expects 200 active.
approved() {
    change "$1" "$2" approve '{"note": "approved in the integration test"}'
    assert_status 200
    assert_json .state active
}

# exemption_json ID — GET /v1/exemptions/ID as help desk (expects 200); sets EX_JSON.
exemption_json() {
    api helpdesk GET "/v1/exemptions/$1"
    assert_status 200
    EX_JSON="$BODY"
}

# register — the whole register as the admin sees it; sets REGISTER. A case takes it before a
# run of refusals and calls assert_register_unchanged after them.
register() {
    # Straight through curl: the register grows through the script, and flattening it with
    # json.awk on every snapshot (as `api` does) would cost more than the rest of the case.
    REGISTER="$(curl_as admin --fail "$(api_url /v1/exemptions)")" || fail "GET /v1/exemptions as admin failed"
    [[ "$REGISTER" == '{"exemptions":['* ]] || fail "GET /v1/exemptions: unexpected body $(printf '%.300s' "$REGISTER")"
}

assert_register_unchanged() {   # WHAT
    local before="$REGISTER"
    register
    [[ "$before" == "$REGISTER" ]] || fail "$1 changed the register.
  before: $(printf '%.600s' "$before")
  after:  $(printf '%.600s' "$REGISTER")"
}

# refused_change WHO ID VERB BODY STATUS CODE — the change is refused with STATUS and CODE.
refused_change() {
    change "$1" "$2" "$3" "$4"
    assert_error "$5" "$6"
}

# refused_request WHO BODY STATUS CODE — POST /v1/exemptions is refused with STATUS and CODE.
refused_request() {
    api "$1" POST /v1/exemptions "$2"
    assert_error "$3" "$4"
}

# ids_listed QUERY — the ids GET /v1/exemptions?QUERY lists (as help desk), sorted, space-separated.
ids_listed() {
    api helpdesk GET "/v1/exemptions${1:+?$1}"
    assert_status 200
    LISTED="$(jcolumn "$BODY" .exemptions .id | sort | tr '\n' ' ')"
}

assert_listed() {   # QUERY "ID ID ..."
    ids_listed "$1"
    local want="" ids
    read -r -a ids <<<"$2"
    ((${#ids[@]} == 0)) || want="$(printf '%s\n' "${ids[@]}" | sort | tr '\n' ' ')"
    assert_eq "$want" "$LISTED" "GET /v1/exemptions?$1"
}

epoch_of() {   # RFC3339
    date -u -d "$1" +%s
}

rfc3339_of() {   # EPOCH_SECONDS
    date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ
}

# assert_time_plus BASE_PATH DAYS PATH [JSON] — the time at PATH is the time at BASE_PATH + DAYS days.
assert_time_plus() {
    local json="${4-$BODY}" base
    base="$(jget "$json" "$1")" || fail "no $1 in $(printf '%.400s' "$json")"
    assert_json "$3" "$(rfc3339_of $(($(epoch_of "$base") + $2 * kDay)))" "$json"
}

# assert_client_time_plus BASE_PATH DAYS PATH JSON — as assert_time_plus for a time exemptctl
# computed (--expires-in) from its own clock, which may read up to a second before the server's.
assert_client_time_plus() {
    local base at
    base="$(epoch_of "$(jget "$4" "$1")")" || fail "no $1 in $(printf '%.400s' "$4")"
    at="$(epoch_of "$(jget "$4" "$3")")" || fail "no $3 in $(printf '%.400s' "$4")"
    local off=$((at - base - $2 * kDay))
    ((off >= -1 && off <= 0)) || fail "$3 should be $1 + $2 days, is $off s off: $(printf '%.400s' "$4")"
}

# assert_line ERE WHAT — one whole line of exemptctl's output matches ERE.
assert_line() {
    [[ "$CTL_OUT" =~ (^|$'\n')$1($'\n'|$) ]] \
        || fail "$2: expected a line matching /$1/ in: $(printf '%.1200s' "$CTL_OUT")"
}

# ctl_id — the id in exemptctl's human output ("id:  EX-…" on the first line).
ctl_id() {
    local first="${CTL_OUT%%$'\n'*}"
    [[ "$first" =~ ^id:\ +(EX-[0-9]{6})$ ]] || return 1
    printf '%s' "${BASH_REMATCH[1]}"
}

# ---------------------------------------------------------------------------------------------
# Request and approval.

case_request_answers_201_pending_with_every_field() {
    new_exemption admin device:DESK-1001 OS-01 medium high $((20 * kDay)) \
        '"compensating_controls": ["ENC-01"], "agreement_id": "AG-000001"'
    local sent_expiry
    sent_expiry="$(jget "$(<"$TEST_TMP/request")" .expires_at)"
    assert_json .subject device:DESK-1001
    assert_json .controls[0] OS-01
    assert_json_absent .controls[1]
    assert_json .justification "Integration test for device:DESK-1001."
    assert_json .risk.likelihood medium
    assert_json .risk.impact high
    assert_json .risk.level high
    assert_json .mitigations[0] "Monitored by the SOC"
    assert_json .compensating_controls[0] ENC-01
    assert_json .evidence TICKET-1
    assert_json .agreement_id AG-000001
    assert_json .requested_by admin@example.com
    assert_json_string .requested_at
    assert_json .expires_at "$sent_expiry"
    local field
    for field in approved_by approved_at revoked_by revoked_at next_review_at; do
        assert_json ".$field" null
    done
    assert_json .reviews '[]'
    assert_json .renewals '[]'
    # The register shows it, the same, to the help desk.
    local created="$BODY"
    exemption_json "$EX_ID"
    assert_json .state pending "$EX_JSON"
    assert_json .id "$EX_ID" "$EX_JSON"
    assert_json .requested_at "$(jget "$created" .requested_at)" "$EX_JSON"
}

case_risk_level_is_derived_from_likelihood_and_impact() {
    local spec likelihood impact level days
    # likelihood impact level max_days
    for spec in "low low low 180" "low medium low 180" "low high medium 90" "medium medium medium 90" \
        "medium high high 30" "high high critical 7"; do
        read -r likelihood impact level days <<<"$spec"
        new_exemption admin "device:RISK-$likelihood-$impact" FW-01 "$likelihood" "$impact" $((days * kDay - 60))
        assert_json .risk.level "$level"
    done
}

case_approval_needs_another_admin_with_the_level() {
    new_exemption admin device:DESK-1002 OS-01 medium high $((20 * kDay))   # high
    local high="$EX_ID"
    register
    refused_change admin "$high" approve '{"note": "my own"}' 422 self_approval
    refused_change it-manager "$high" approve '{}' 422 approver_not_authorized
    refused_change it-manager "$high" reject '{}' 422 approver_not_authorized
    ctl it-manager exemption approve "$high" --note "looks fine"
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: approver_not_authorized: " "exemptctl approve without the level"
    assert_register_unchanged "refused approvals"

    change security-lead "$high" approve '{"note": "patch window agreed"}'
    assert_status 200
    assert_json .state active
    assert_json .approved_by security-lead@example.com
    assert_json_string .approved_at
    assert_json .decision_note "patch window agreed"
    assert_time_plus .approved_at 7 .next_review_at   # review_every_days.high

    # An approver who requested it may not approve it either.
    new_exemption security-lead device:DESK-1002 FW-01 medium high $((20 * kDay))
    register
    refused_change security-lead "$EX_ID" approve '{}' 422 self_approval
    assert_register_unchanged "an approval by the requester"
    approved ciso "$EX_ID"

    # critical needs the ciso; a lower level may be approved by any higher approver.
    new_exemption admin device:DESK-1002 LOCK-01 high high $((5 * kDay))
    register
    refused_change security-lead "$EX_ID" approve '{}' 422 approver_not_authorized
    assert_register_unchanged "an approval without the level"
    approved ciso "$EX_ID"
    assert_json .risk.level critical
    new_exemption admin device:DESK-1002 ENC-01 low low $((30 * kDay))
    approved it-manager "$EX_ID"
    assert_time_plus .approved_at 90 .next_review_at   # review_every_days.low
}

case_rejection_records_who_decided() {
    new_exemption admin device:DESK-1008 FW-01 low medium $((30 * kDay))
    change it-manager "$EX_ID" reject '{"note": "fix the firewall instead"}'
    assert_status 200
    assert_json .state rejected
    assert_json .rejected_by it-manager@example.com
    assert_json_string .rejected_at
    assert_json .approved_by null
    assert_json .decision_note "fix the firewall instead"
}

# ---------------------------------------------------------------------------------------------
# Illegal transitions and the rules of a request.

case_illegal_transitions_are_409() {
    new_exemption admin device:DESK-1003 FW-01 low low $((30 * kDay))
    local pending="$EX_ID" active rejected revoked
    new_exemption admin device:DESK-1003 LOCK-01 low low $((30 * kDay))
    active="$EX_ID"
    approved it-manager "$active"
    new_exemption admin device:DESK-1003 ENC-01 low low $((30 * kDay))
    rejected="$EX_ID"
    change it-manager "$rejected" reject '{"note": "no"}'
    assert_status 200
    new_exemption admin device:DESK-1003 OS-01 low low $((30 * kDay))
    revoked="$EX_ID"
    approved it-manager "$revoked"
    change admin "$revoked" revoke '{"reason": "laptop replaced"}'
    assert_status 200
    assert_json .state revoked
    assert_json .revoked_by admin@example.com
    assert_json .revoked_reason "laptop replaced"

    local renew
    renew="{\"expires_at\": \"$(now_rfc3339 $((40 * kDay)))\"}"
    register
    refused_change ciso "$pending" renew "$renew" 409 exemption_not_active
    refused_change ciso "$pending" review '{"note": "n"}' 409 exemption_not_active
    refused_change ciso "$active" approve '{}' 409 exemption_not_pending
    refused_change ciso "$active" reject '{}' 409 exemption_not_pending
    refused_change ciso "$rejected" review '{"note": "n"}' 409 exemption_not_active
    refused_change ciso "$rejected" approve '{}' 409 exemption_not_pending
    refused_change ciso "$rejected" renew "$renew" 409 exemption_not_active
    refused_change ciso "$rejected" revoke '{"reason": "r"}' 409 exemption_closed
    refused_change ciso "$revoked" revoke '{"reason": "twice"}' 409 exemption_closed
    refused_change ciso "$revoked" approve '{}' 409 exemption_not_pending
    refused_change ciso "$revoked" reject '{}' 409 exemption_not_pending
    refused_change ciso "$revoked" review '{"note": "n"}' 409 exemption_not_active
    refused_change ciso "$revoked" renew "$renew" 409 exemption_not_active
    ctl admin exemption revoke "$revoked" --reason "once more"
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: exemption_closed: " "exemptctl revoke of a revoked exemption"
    ctl ciso exemption approve "$active"
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: exemption_not_pending: " "exemptctl approve of an active exemption"
    assert_register_unchanged "illegal transitions"
}

case_unknown_ids_and_bad_bodies_are_refused() {
    new_exemption admin device:DESK-1009 FW-01 low low $((30 * kDay))
    approved it-manager "$EX_ID"
    register
    api helpdesk GET /v1/exemptions/EX-999999
    assert_error 404 not_found
    change ciso EX-999999 approve '{}'
    assert_error 404 not_found
    ctl helpdesk exemption show EX-999999
    assert_ctl 1
    ctl ciso exemption show ../devices
    assert_ctl 2
    refused_change admin "$EX_ID" revoke '{}' 400 invalid_field
    refused_change admin "$EX_ID" review '{}' 400 invalid_field
    refused_change ciso "$EX_ID" renew '{"note": "no expiry"}' 400 invalid_field
    refused_change ciso "$EX_ID" approve '{"note": 7}' 400 invalid_field
    refused_change ciso "$EX_ID" revoke '{"reason": "r", "extra": 1}' 400 invalid_field
    change ciso "$EX_ID" revoke '{"reason": '
    assert_error 400 malformed_json
    assert_register_unchanged "refused life-cycle bodies"
}

case_expiry_must_be_future_and_within_max_days() {
    register
    refused_request admin "$(ex_body device:DESK-1004 OS-01 medium high $((31 * kDay)))" 422 expiry_too_far
    refused_request admin "$(ex_body device:DESK-1004 OS-01 medium high $((30 * kDay + 120)))" 422 expiry_too_far
    refused_request admin "$(ex_body device:DESK-1004 OS-01 low low $((181 * kDay)))" 422 expiry_too_far
    refused_request admin "$(ex_body device:DESK-1004 OS-01 high high $((8 * kDay)))" 422 expiry_too_far
    refused_request admin "$(ex_body device:DESK-1004 OS-01 low low -60)" 422 expiry_in_past
    refused_request admin '{"subject": "device:DESK-1004", "controls": ["OS-01"], "justification": "j",
        "risk": {"likelihood": "low", "impact": "low"}}' 400 invalid_field
    refused_request admin '{"subject": "device:DESK-1004", "controls": ["OS-01"], "justification": "j",
        "risk": {"likelihood": "low", "impact": "low"}, "expires_at": "tomorrow"}' 400 invalid_field
    ctl admin exemption request --subject device:DESK-1004 --control OS-01 --justification "too long" \
        --likelihood medium --impact high --expires-in 31d
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: expiry_too_far: " "exemptctl request beyond max_days"
    ctl admin exemption request --subject device:DESK-1004 --control OS-01 --justification "past" \
        --likelihood low --impact low --expires-at 2020-01-01T00:00:00Z
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: expiry_in_past: " "exemptctl request expiring in the past"
    assert_register_unchanged "requests with a bad expiry"

    # Exactly max_days is allowed.
    new_exemption admin device:DESK-1004 OS-01 medium high $((30 * kDay))
}

case_controls_must_exist_and_match_the_subject_kind() {
    register
    refused_request admin "$(ex_body device:DESK-1005 NOPE-01 low low $kDay)" 422 unknown_control
    refused_request admin "$(ex_body user:jordan@example.com OS-01 low low $kDay)" 422 subject_kind_mismatch
    refused_request admin "$(ex_body device:DESK-1005 HR-03 low low $kDay)" 422 subject_kind_mismatch
    refused_request admin "$(ex_body user:jordan@example.com IAM-01 low low $kDay)" 422 subject_kind_mismatch
    refused_request admin "$(ex_body account:aws-root HR-03 low low $kDay)" 422 subject_kind_mismatch
    refused_request admin "$(ex_body device:DESK-1005 OS-01 low low $kDay '"compensating_controls": ["NOPE-02"]')" \
        422 unknown_control
    refused_request admin "$(ex_body device:DESK-1005 OS-01 low low $kDay '"compensating_controls": ["HR-03"]')" \
        422 invalid_compensating_control
    refused_request admin "$(ex_body device:DESK-1005 OS-01 low low $kDay '"compensating_controls": ["OS-01"]')" \
        422 invalid_compensating_control
    refused_request admin "$(ex_body user:jordan@example.com HR-03 low low $kDay '"compensating_controls": ["ENC-01"]')" \
        422 invalid_compensating_control
    refused_request admin "$(ex_body laptop:DESK-1005 OS-01 low low $kDay)" 422 invalid_subject
    refused_request admin "$(ex_body 'device:bad id' OS-01 low low $kDay)" 422 invalid_subject
    refused_request admin "$(ex_body device:DESK-1005 OS-01 critical low $kDay)" 400 invalid_field
    refused_request admin '{"subject": "device:DESK-1005"' 400 malformed_json
    ctl admin exemption request --subject user:jordan@example.com --control OS-01 --justification "j" \
        --likelihood low --impact low --expires-in 1d
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: subject_kind_mismatch: " "exemptctl request with a device control for a user"
    ctl admin exemption request --subject device:DESK-1005 --control NOPE-01 --justification "j" \
        --likelihood low --impact low --expires-in 1d
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: unknown_control: " "exemptctl request with an unknown control"
    assert_register_unchanged "requests breaking the control rules"
}

case_mdm01_approval_needs_an_agreement() {
    new_exemption admin device:BYOD-0001 MDM-01 low medium $((30 * kDay)) '"compensating_controls": ["ENC-01"]'
    register
    refused_change it-manager "$EX_ID" approve '{}' 422 agreement_required
    ctl it-manager exemption approve "$EX_ID"
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: agreement_required: " "exemptctl approve of MDM-01 without an agreement"
    assert_register_unchanged "approvals of MDM-01 without an agreement"
    # An agreement id that names no verified agreement does not do either.
    new_exemption admin device:BYOD-0001 MDM-01 low medium $((30 * kDay)) '"agreement_id": "AG-000001"'
    register
    refused_change it-manager "$EX_ID" approve '{}' 422 agreement_not_found
    assert_register_unchanged "approvals without a verified agreement"
}

# ---------------------------------------------------------------------------------------------
# exemptctl, roles and the register.

case_exemptctl_request_approve_show() {
    ctl admin exemption request --subject device:DESK-2001 --control OS-01 --control FW-01 \
        --justification "Vendor driver blocks the update" --likelihood medium --impact medium \
        --mitigation "Office network only" --mitigation "Weekly malware scan" \
        --compensating-control ENC-01 --evidence "TICKET-42" --expires-in 30d
    assert_ctl 0
    local id
    id="$(ctl_id)" || fail "exemptctl exemption request should print the id first, got: $CTL_OUT"
    assert_line 'state: +pending' "exemptctl request output"
    assert_line 'risk: +medium \(likelihood medium, impact medium\)' "exemptctl request output"
    exemption_json "$id"
    assert_json .controls[1] FW-01 "$EX_JSON"
    assert_json .mitigations[1] "Weekly malware scan" "$EX_JSON"
    assert_json .compensating_controls[0] ENC-01 "$EX_JSON"
    assert_json .evidence TICKET-42 "$EX_JSON"
    assert_client_time_plus .requested_at 30 .expires_at "$EX_JSON"   # --expires-in counts from now

    ctl it-manager exemption approve "$id" --note "ok until the driver ships" --json
    assert_ctl 0
    assert_json .state active "$CTL_OUT"
    assert_json .approved_by it-manager@example.com "$CTL_OUT"

    ctl helpdesk exemption show "$id"
    assert_ctl 0
    local line
    for line in "id: +$id" "state: +active" "subject: +device:DESK-2001" "controls: +OS-01, FW-01" \
        "justification: +Vendor driver blocks the update" "mitigations: +- Office network only" \
        " +- Weekly malware scan" "compensating controls: +ENC-01 \\(must pass for the exemption to cover\\)" \
        "evidence: +TICKET-42" "agreement: +-" "requested: +[0-9T:-]+Z by admin@example.com" \
        "approved: +[0-9T:-]+Z by it-manager@example.com" "decision note: +ok until the driver ships" \
        "expires: +[0-9T:-]+Z" "next review: +[0-9T:-]+Z" "reviews: +-" "renewals: +-" "revoked: +-"; do
        assert_line "$line" "exemptctl exemption show"
    done
    ctl helpdesk exemption show "$id" --json
    assert_ctl 0
    assert_json .id "$id" "$CTL_OUT"
    assert_json .state active "$CTL_OUT"

    ctl admin exemption revoke "$id" --reason "driver shipped"
    assert_ctl 0
    assert_line 'revoked: +[0-9T:-]+Z by admin@example.com: driver shipped' "exemptctl revoke"
    assert_line 'state: +revoked' "exemptctl revoke"
}

case_user_and_account_exemptions_share_the_life_cycle() {
    ctl admin exemption request --subject user:jordan@example.com --control HR-03 \
        --justification "Background check delayed by the agency" --likelihood low --impact medium \
        --mitigation "No access to production data until done" --expires-in 60d --json
    assert_ctl 0
    local user account
    user="$(jget "$CTL_OUT" .id)"
    assert_json .state pending "$CTL_OUT"
    assert_json .risk.level low "$CTL_OUT"
    ctl it-manager exemption approve "$user"
    assert_ctl 0
    assert_line 'state: +active' "exemptctl approve of a user exemption"

    new_exemption admin account:aws-root IAM-01 low high $((60 * kDay))   # medium
    account="$EX_ID"
    approved it-manager "$account"

    assert_listed "subject=user:jordan@example.com" "$user"
    assert_listed "subject=account%3Aaws-root" "$account"
    assert_listed "control=IAM-01" "$account"
    assert_listed "control=HR-03&state=active" "$user"

    ctl helpdesk exemption list --subject user:jordan@example.com
    assert_ctl 0
    assert_match "$CTL_OUT" $'^ID +SUBJECT +CONTROLS +RISK +STATE +EXPIRES +NEXT REVIEW\n' "exemptctl list header"
    assert_line "$user +user:jordan@example.com +HR-03 +low +active +[0-9T:-]+Z +[0-9T:-]+Z" \
        "exemptctl list row"
    ctl helpdesk exemption list --control IAM-01 --json
    assert_ctl 0
    assert_eq "$account" "$(jcolumn "$CTL_OUT" .exemptions .id | tr -d '\n')" "exemptctl list --control IAM-01 --json"
    ctl helpdesk exemption show "$account"
    assert_ctl 0
    assert_line 'subject: +account:aws-root' "exemptctl show of an account exemption"
}

case_helpdesk_reads_endpoint_may_not() {
    new_exemption admin device:DESK-3001 FW-01 low low $((30 * kDay))
    local id="$EX_ID"
    register
    api helpdesk GET /v1/exemptions
    assert_status 200
    api helpdesk GET "/v1/exemptions/$id"
    assert_status 200
    ctl helpdesk exemption list
    assert_ctl 0
    assert_contains "$CTL_OUT" "$id" "exemptctl exemption list as help desk"

    api helpdesk POST /v1/exemptions "$(ex_body device:DESK-3001 OS-01 low low $kDay)"
    assert_error 403 forbidden
    local verb
    for verb in approve reject renew review revoke; do
        change helpdesk "$id" "$verb" '{"note": "n"}'
        assert_error 403 forbidden
    done
    ctl helpdesk exemption request --subject device:DESK-3001 --control OS-01 --justification j \
        --likelihood low --impact low --expires-in 1d
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: forbidden: " "exemptctl request as help desk"

    for path in /v1/exemptions "/v1/exemptions/$id" "/v1/exemptions?subject=device:LAPTOP-0042"; do
        api endpoint-LAPTOP-0042 GET "$path"
        assert_error 403 forbidden
    done
    api endpoint-LAPTOP-0042 POST /v1/exemptions "$(ex_body device:LAPTOP-0042 OS-01 low low $kDay)"
    assert_error 403 forbidden
    change endpoint-LAPTOP-0042 "$id" approve
    assert_error 403 forbidden
    ctl endpoint-LAPTOP-0042 exemption list
    assert_ctl 1
    api - GET /v1/exemptions
    assert_refused_handshake
    assert_register_unchanged "refused requests by help desk and endpoint"
}

case_list_filters() {
    new_exemption admin device:FLT-0001 FW-01 low low $((5 * kDay))
    local e1="$EX_ID" e2 e3 e4 e5
    approved it-manager "$e1"
    new_exemption admin device:FLT-0001 LOCK-01 low low $((60 * kDay))
    e2="$EX_ID"
    approved it-manager "$e2"
    new_exemption admin device:FLT-0002 FW-01 low low $((5 * kDay))
    e3="$EX_ID"
    new_exemption admin device:FLT-0002 LOCK-01 low low $((5 * kDay))
    e4="$EX_ID"
    change it-manager "$e4" reject '{}'
    assert_status 200
    new_exemption admin device:FLT-0002 FW-01 low low $((5 * kDay))
    e5="$EX_ID"
    change admin "$e5" revoke '{"reason": "duplicate"}'
    assert_status 200

    assert_listed "subject=device:FLT-0001" "$e1 $e2"
    assert_listed "subject=device:FLT-0002" "$e3 $e4 $e5"
    assert_listed "subject=device:FLT-0001&control=FW-01" "$e1"
    assert_listed "subject=device:FLT-0002&control=LOCK-01" "$e4"
    assert_listed "subject=device:FLT-0001&state=active" "$e1 $e2"
    assert_listed "subject=device:FLT-0002&state=pending" "$e3"
    assert_listed "subject=device:FLT-0002&state=rejected" "$e4"
    assert_listed "subject=device:FLT-0002&state=revoked" "$e5"
    assert_listed "subject=device:FLT-0002&state=active" ""
    assert_listed "subject=device:FLT-0001&state=expired" ""
    # expiring_within counts active exemptions only: e3 expires as soon as e1 but is pending.
    assert_listed "subject=device:FLT-0001&expiring_within=14d" "$e1"
    assert_listed "subject=device:FLT-0002&expiring_within=14d" ""
    assert_listed "subject=device:FLT-0001&expiring_within=90d" "$e1 $e2"
    ids_listed "expiring_within=14d"
    assert_contains "$LISTED" "$e1" "GET /v1/exemptions?expiring_within=14d"
    assert_not_contains "$LISTED" "$e2" "GET /v1/exemptions?expiring_within=14d"
    assert_not_contains "$LISTED" "$e3" "GET /v1/exemptions?expiring_within=14d"

    api helpdesk GET "/v1/exemptions?state=bogus"
    assert_error 400 invalid_field
    api helpdesk GET "/v1/exemptions?expiring_within=soon"
    assert_error 400 invalid_field

    ctl helpdesk exemption list --subject device:FLT-0001 --expiring-within 14d
    assert_ctl 0
    assert_eq 2 "$(printf '%s\n' "$CTL_OUT" | wc -l)" "lines of exemptctl list --expiring-within 14d"
    assert_line "$e1 +device:FLT-0001 +FW-01 +low +active +[0-9T:-]+Z +[0-9T:-]+Z" "exemptctl list --expiring-within"
    ctl helpdesk exemption list --subject device:FLT-0002 --state rejected --json
    assert_ctl 0
    assert_eq "$e4" "$(jcolumn "$CTL_OUT" .exemptions .id | tr -d '\n')" "exemptctl list --state rejected --json"
    ctl helpdesk exemption list --subject device:FLT-0002 --control FW-01
    assert_ctl 0
    assert_line "$e3 +device:FLT-0002 +FW-01 +low +pending +[0-9T:-]+Z +-" "pending row"
    assert_line "$e5 +device:FLT-0002 +FW-01 +low +revoked +[0-9T:-]+Z +-" "revoked row"
    assert_not_contains "$CTL_OUT" "$e4" "exemptctl list --control FW-01"
    ctl helpdesk exemption list --state happy
    assert_ctl 2
    ctl helpdesk exemption list --expiring-within soon
    assert_ctl 2
}

# ---------------------------------------------------------------------------------------------
# Renewal and review.

case_renewals_are_capped_by_max_renewals() {
    new_exemption admin device:DESK-4001 FW-01 low low $((10 * kDay))
    local id="$EX_ID" first_expiry
    approved it-manager "$id"
    first_expiry="$(jget "$BODY" .expires_at)"
    register
    refused_change admin "$id" renew "{\"expires_at\": \"$(now_rfc3339 $((20 * kDay)))\"}" 422 self_approval
    refused_change it-manager "$id" renew "{\"expires_at\": \"$(now_rfc3339 $((5 * kDay)))\"}" 422 expiry_not_extended
    refused_change it-manager "$id" renew "{\"expires_at\": \"$(now_rfc3339 $((181 * kDay)))\"}" 422 expiry_too_far
    assert_register_unchanged "refused renewals"

    local renewed_to
    renewed_to="$(now_rfc3339 $((20 * kDay)))"
    change it-manager "$id" renew "{\"expires_at\": \"$renewed_to\", \"note\": \"still waiting\"}"
    assert_status 200
    assert_json .state active
    assert_json .expires_at "$renewed_to"
    assert_json .renewals[0].by it-manager@example.com
    assert_json .renewals[0].note "still waiting"
    assert_json .renewals[0].previous_expires_at "$first_expiry"
    assert_json .renewals[0].expires_at "$(jget "$BODY" .expires_at)"
    local second_expiry
    second_expiry="$(jget "$BODY" .expires_at)"

    ctl ciso exemption renew "$id" --expires-in 30d --note "vendor slipped again"
    assert_ctl 0
    assert_line "renewals: +[0-9T:-]+Z by it-manager@example.com: expiry $first_expiry -> $second_expiry: still waiting" \
        "exemptctl renew output"
    assert_line " +[0-9T:-]+Z by ciso@example.com: expiry $second_expiry -> [0-9T:-]+Z: vendor slipped again" \
        "exemptctl renew output"
    exemption_json "$id"
    assert_json .renewals[1].by ciso@example.com "$EX_JSON"
    assert_json .renewals[1].previous_expires_at "$second_expiry" "$EX_JSON"
    assert_client_time_plus .renewals[1].at 30 .expires_at "$EX_JSON"

    register
    refused_change ciso "$id" renew "{\"expires_at\": \"$(now_rfc3339 $((40 * kDay)))\"}" 422 max_renewals_reached
    ctl ciso exemption renew "$id" --expires-at "$(now_rfc3339 $((50 * kDay)))"
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: max_renewals_reached: " "exemptctl renew a third time"
    ctl ciso exemption renew "$id"
    assert_ctl 2
    assert_contains "$CTL_ERR" "--expires-at or --expires-in is required" "exemptctl renew without an expiry"
    assert_register_unchanged "renewals beyond max_renewals"
}

case_review_moves_next_review_at() {
    new_exemption admin device:DESK-4002 FW-01 low medium $((30 * kDay))
    local id="$EX_ID" before
    approved it-manager "$id"
    before="$(jget "$BODY" .next_review_at)"
    assert_time_plus .approved_at 90 .next_review_at
    register
    refused_change helpdesk "$id" review '{"note": "n"}' 403 forbidden
    refused_change admin "$id" review '{"note": ""}' 400 invalid_field
    assert_register_unchanged "refused reviews"
    sleep 1.1   # so that the review's time differs from the approval's
    ctl admin exemption review "$id" --note "Still needed; driver fix due in March"
    assert_ctl 0
    assert_line 'reviews: +[0-9T:-]+Z by admin@example.com: Still needed; driver fix due in March' \
        "exemptctl review output"
    exemption_json "$id"
    assert_json .reviews[0].by admin@example.com "$EX_JSON"
    assert_json .reviews[0].note "Still needed; driver fix due in March" "$EX_JSON"
    assert_time_plus .reviews[0].at 90 .next_review_at "$EX_JSON"
    assert_ne "$before" "$(jget "$EX_JSON" .next_review_at)" "next_review_at after a review"
    assert_json .state active "$EX_JSON"
    assert_json .review_overdue false "$EX_JSON"
    ctl admin exemption review "$id"
    assert_ctl 2
}

# ---------------------------------------------------------------------------------------------
# End to end: an exemption covers a real device's failure, only while its compensating control
# passes, and only until it expires.

readonly kShortLife=6

case_exemption_covers_a_failure_until_it_expires() {
    enroll LAPTOP-0042 sam@example.com
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042 os_patch_age_days=45)"
    assert_status 200
    assert_decision deny noncompliant LAPTOP-0042
    assert_control OS-01 status fail
    assert_control OS-01 covered_by "<absent>"

    local start="$EPOCHSECONDS" id expires
    ctl admin exemption request --subject device:LAPTOP-0042 --control OS-01 --compensating-control ENC-01 \
        --justification "Kernel update breaks the docking station" --likelihood medium --impact medium \
        --mitigation "Only used on the office network" --expires-in "${kShortLife}s" --json
    assert_ctl 0
    id="$(jget "$CTL_OUT" .id)"
    expires="$(jget "$CTL_OUT" .expires_at)"
    approved it-manager "$id"

    api endpoint-LAPTOP-0042 GET /v1/devices/LAPTOP-0042/decision
    assert_status 200
    assert_decision allow exempted LAPTOP-0042
    assert_control OS-01 status fail
    assert_control OS-01 covered_by "$id"
    assert_control ENC-01 status pass

    # The compensating control fails: ENC-01 is inside its 72 h grace, but it does not pass, so
    # the exemption no longer covers OS-01, which has no grace of its own.
    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042 os_patch_age_days=45 disk_encrypted=false)"
    assert_status 200
    assert_control ENC-01 status fail
    assert_json_string "$CONTROL_AT.grace_until"
    assert_control OS-01 status fail
    assert_control OS-01 covered_by "<absent>"
    assert_decision deny noncompliant LAPTOP-0042

    checkin endpoint-LAPTOP-0042 "$(posture LAPTOP-0042 os_patch_age_days=45)"
    assert_status 200
    assert_decision allow exempted LAPTOP-0042
    assert_control OS-01 covered_by "$id"
    api helpdesk GET "/v1/devices?state=exempted"
    assert_status 200
    assert_contains "$(jcolumn "$BODY" .devices .device_id)" LAPTOP-0042 "devices exempted before the expiry"
    (( EPOCHSECONDS < $(epoch_of "$expires") )) \
        || fail "the checks before the expiry took longer than ${kShortLife}s; the case proves nothing"
    note "checks before the expiry took $((EPOCHSECONDS - start)) s"

    # Past the expiry: the decision, evaluated afresh, no longer counts it.
    while (( EPOCHSECONDS <= $(epoch_of "$expires") )); do sleep 0.2; done
    api endpoint-LAPTOP-0042 GET /v1/devices/LAPTOP-0042/decision
    assert_status 200
    assert_decision deny noncompliant LAPTOP-0042
    assert_control OS-01 status fail
    assert_control OS-01 covered_by "<absent>"

    # The sweeper (every second here) records the expiry and refreshes the stored decision.
    local i
    for ((i = 0; i < 50; i++)); do
        grep -q "event=sweep expired=1" "$DAEMON_DIR/daemon.log" && break
        sleep 0.1
    done
    grep -q "event=sweep expired=1" "$DAEMON_DIR/daemon.log" \
        || fail "the sweeper logged no expiry within 5 s of $expires. $(daemon_log_tail)"
    api helpdesk GET "/v1/devices?state=denied"
    assert_contains "$(jcolumn "$BODY" .devices .device_id)" LAPTOP-0042 "devices denied after the sweep"
    ctl helpdesk exemption show "$id"
    assert_ctl 0
    assert_line 'state: +expired' "exemptctl exemption show after the expiry"
    assert_listed "subject=device:LAPTOP-0042&state=expired" "$id"
    assert_listed "subject=device:LAPTOP-0042&state=active" ""
    register
    refused_change ciso "$id" renew "{\"expires_at\": \"$(now_rfc3339 $kDay)\"}" 409 exemption_not_active
    refused_change admin "$id" revoke '{"reason": "too late"}' 409 exemption_closed
    assert_register_unchanged "changes to an expired exemption"
}

# ---------------------------------------------------------------------------------------------
# Races: transitions of one exemption are serialised, so exactly one of two conflicting ones wins.

# fire TAG WHO PATH BODY — POST in the background; TAG.status and TAG.body in $TEST_TMP.
fire() {
    printf '%s' "$4" >"$TEST_TMP/$1.req"
    curl_as "$2" -o "$TEST_TMP/$1.body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        --data-binary "@$TEST_TMP/$1.req" "$(api_url "$3")" >"$TEST_TMP/$1.status" 2>/dev/null || true
}

# race ID VERB_A WHO_A BODY_A VERB_B WHO_B BODY_B — fires both at once; sets STATUS_A/B, BODY_A/B.
race() {
    fire race-a "$3" "/v1/exemptions/$1/$2" "$4" &
    fire race-b "$6" "/v1/exemptions/$1/$5" "$7" &
    wait
    STATUS_A="$(<"$TEST_TMP/race-a.status")" STATUS_B="$(<"$TEST_TMP/race-b.status")"
    BODY_A="$(<"$TEST_TMP/race-a.body")" BODY_B="$(<"$TEST_TMP/race-b.body")"
}

case_two_approvals_race_exactly_one_wins() {
    local round winner
    for round in 1 2 3 4; do
        new_exemption admin "device:RACE-000$round" FW-01 low low $((30 * kDay))
        race "$EX_ID" approve it-manager '{"note": "a"}' approve ciso '{"note": "b"}'
        case "$STATUS_A $STATUS_B" in
            "200 409") winner=it-manager@example.com; BODY="$BODY_B" ;;
            "409 200") winner=ciso@example.com; BODY="$BODY_A" ;;
            *) fail "round $round: two approvals answered $STATUS_A and $STATUS_B, expected one 200 and one 409.
  a: $BODY_A
  b: $BODY_B" ;;
        esac
        assert_json .error.code exemption_not_pending
        exemption_json "$EX_ID"
        assert_json .state active "$EX_JSON"
        assert_json .approved_by "$winner" "$EX_JSON"
    done
}

case_approval_racing_rejection_exactly_one_wins() {
    local round
    for round in 1 2 3; do
        new_exemption admin "device:RACE-100$round" FW-01 low low $((30 * kDay))
        race "$EX_ID" approve it-manager '{}' reject ciso '{"note": "no"}'
        exemption_json "$EX_ID"
        case "$STATUS_A $STATUS_B" in
            "200 409")
                assert_json .state active "$EX_JSON"
                assert_json .approved_by it-manager@example.com "$EX_JSON"
                assert_json .error.code exemption_not_pending "$BODY_B" ;;
            "409 200")
                assert_json .state rejected "$EX_JSON"
                assert_json .rejected_by ciso@example.com "$EX_JSON"
                assert_json .error.code exemption_not_pending "$BODY_A" ;;
            *) fail "round $round: approve and reject answered $STATUS_A and $STATUS_B, expected one 200 and one 409" ;;
        esac
    done
}

# A revocation applies to pending and to active exemptions, so the two serial orders are: the
# revocation first (the approval then loses with 409), or the approval first and the revocation
# after it (both 200, and the revocation's answer shows the approval). Either way the exemption
# ends revoked and never covers anything.
case_approval_racing_revocation_is_serialised() {
    local round
    for round in 1 2 3; do
        new_exemption admin "device:RACE-200$round" FW-01 low low $((30 * kDay))
        race "$EX_ID" approve it-manager '{}' revoke admin '{"reason": "withdrawn"}'
        exemption_json "$EX_ID"
        assert_json .state revoked "$EX_JSON"
        assert_json .revoked_by admin@example.com "$EX_JSON"
        case "$STATUS_A $STATUS_B" in
            "409 200")
                assert_json .error.code exemption_not_pending "$BODY_A"
                assert_json .approved_by null "$EX_JSON"
                note "round $round: the revocation won" ;;
            "200 200")
                assert_json .approved_by it-manager@example.com "$BODY_B"
                assert_json .approved_by it-manager@example.com "$EX_JSON"
                note "round $round: the approval came first, then the revocation" ;;
            *) fail "round $round: approve and revoke answered $STATUS_A and $STATUS_B" ;;
        esac
    done
}

# The sweeper runs every second, so the end-to-end case can watch an expiry being recorded.
mkdir -p "$TEST_TMP/daemon"
write_config "$TEST_TMP/daemon/exemptd.yaml" "sweep_interval_seconds: 1"
start_daemon
run_case "a request answers 201 pending with every field" case_request_answers_201_pending_with_every_field
run_case "the risk level is derived from likelihood and impact" case_risk_level_is_derived_from_likelihood_and_impact
run_case "approval needs another admin with the risk level" case_approval_needs_another_admin_with_the_level
run_case "a rejection records who decided" case_rejection_records_who_decided
run_case "illegal transitions are 409 and change nothing" case_illegal_transitions_are_409
run_case "unknown ids are 404, bad life-cycle bodies 400" case_unknown_ids_and_bad_bodies_are_refused
run_case "expires_at must be in the future and within max_days" case_expiry_must_be_future_and_within_max_days
run_case "controls must exist and match the subject kind" case_controls_must_exist_and_match_the_subject_kind
run_case "approving an MDM-01 exemption needs an agreement" case_mdm01_approval_needs_an_agreement
run_case "exemptctl exemption request, approve, show, revoke" case_exemptctl_request_approve_show
run_case "user and account exemptions go through the same life cycle" case_user_and_account_exemptions_share_the_life_cycle
run_case "help desk reads the register, endpoints may not" case_helpdesk_reads_endpoint_may_not
run_case "the list filters by subject, control, state and expiring_within" case_list_filters
run_case "renewals are capped by max_renewals" case_renewals_are_capped_by_max_renewals
run_case "a review moves next_review_at" case_review_moves_next_review_at
run_case "an exemption covers a failure while its compensating control passes, until it expires" \
    case_exemption_covers_a_failure_until_it_expires
run_case "two racing approvals: exactly one wins" case_two_approvals_race_exactly_one_wins
run_case "an approval racing a rejection: exactly one wins" case_approval_racing_rejection_exactly_one_wins
run_case "an approval racing a revocation is serialised and ends revoked" case_approval_racing_revocation_is_serialised
finish
