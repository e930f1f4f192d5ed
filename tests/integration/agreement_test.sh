#!/usr/bin/env bash
# Signed BYOD agreements (SPEC §7, §9): POST /v1/agreements and GET /v1/agreements/{id};
# `exemptctl agreement upload|show|verify` (verify offline, without connection settings); every
# refusal reason, audited and storing nothing; an MDM-01 exemption backed by sam's agreement
# turning a denied BYOD laptop into an allowed one, the binding refusals (device, owner), and a
# CRL reload that revokes sam and with it the agreement and the exemption.
#
# The script works on its own copy of the dev PKI (it mints endpoints and revokes user-sam, and
# the shared PKI is used by the other integration scripts running at the same time), and the
# daemon reads its agreements CRL from a copy in the daemon's folder.
source "$(dirname "$0")/lib.sh"

# ---------------------------------------------------------------------------------------------
# Set-up: the private PKI and the signed documents.

SHARED_PKI="$PKI_DIR"
mkdir -p "$TEST_TMP/pki"
# Everything but make-dev-pki.sh's scratch folders of concurrent runs.
find "$SHARED_PKI" -maxdepth 1 -type f -exec cp -p {} "$TEST_TMP/pki/" \;
PKI_DIR="$TEST_TMP/pki"
readonly MAKE_PKI="$SOURCE_DIR/certs/make-dev-pki.sh"
for device in BYOD-0042 BYOD-0043 BYOD-0044; do
    "$MAKE_PKI" "$PKI_DIR" endpoint "$device"
done

readonly AG="$TEST_TMP/agreements"
mkdir -p "$AG"
TERMS_SHA256="$(sha256sum "$SOURCE_DIR/policies/byod-v3.txt" | cut -d' ' -f1)"
readonly TERMS_SHA256
ACCEPTED_AT="$(now_rfc3339 -3600)"
readonly ACCEPTED_AT

# document FILE USER DEVICE [TEMPLATE] [TERMS_SHA256] — an agreement document (SPEC §7).
document() {
    cat >"$1" <<EOF
agreement: ${4:-byod-v3}
user: $2
device_id: $3
device_serial: C02XYZ123
terms_sha256: ${5:-$TERMS_SHA256}
accepted_at: $ACCEPTED_AT
EOF
}

# sign DOCUMENT OUT SIGNER [OPENSSL CMS OPTIONS...] — SPEC §7's command, with SIGNER's key from
# the PKI; extra options (-md sha1 overrides the first -md) go last.
sign() {
    local doc="$1" out="$2" signer="$3"
    shift 3
    openssl cms -sign -binary -md sha256 -in "$doc" -signer "$PKI_DIR/$signer.crt" \
        -inkey "$PKI_DIR/$signer.key" -outform PEM -out "$out" "$@" 2>"$AG/openssl.err" \
        || { cat "$AG/openssl.err" >&2; echo "agreement_test: could not sign $out" >&2; exit 1; }
}

document "$AG/agreement.yaml" sam@example.com BYOD-0042
# Exactly SPEC §7's command.
(cd "$AG" && openssl cms -sign -binary -md sha256 -in agreement.yaml -signer "$PKI_DIR/user-sam.crt" \
    -inkey "$PKI_DIR/user-sam.key" -outform PEM -out agreement.yaml.p7s)
# The same signature in DER: the PEM body, base64-decoded.
sed '/^-----/d' "$AG/agreement.yaml.p7s" | base64 -d >"$AG/agreement.yaml.der"

# Refusals: NAME DOCUMENT SIGNATURE REASON.
sed 's/^device_serial: .*/device_serial: C02XYZ999/' "$AG/agreement.yaml" >"$AG/tampered.yaml"
sign "$AG/agreement.yaml" "$AG/rogue.p7s" rogue-user-sam
sign "$AG/agreement.yaml" "$AG/expired.p7s" expired-user-sam
sign "$AG/agreement.yaml" "$AG/jordan.p7s" user-jordan
sign "$AG/agreement.yaml" "$AG/attached.p7s" user-sam -nodetach
sign "$AG/agreement.yaml" "$AG/sha1.p7s" user-sam -md sha1
sign "$AG/agreement.yaml" "$AG/noattr.p7s" user-sam -noattr
document "$AG/unknown.yaml" sam@example.com BYOD-0042 byod-v9
sign "$AG/unknown.yaml" "$AG/unknown.yaml.p7s" user-sam
document "$AG/terms.yaml" sam@example.com BYOD-0042 byod-v3 "$(printf '0%.0s' {1..64})"
sign "$AG/terms.yaml" "$AG/terms.yaml.p7s" user-sam
: >"$AG/empty.yaml"
sign "$AG/empty.yaml" "$AG/empty.yaml.p7s" user-sam
printf 'I agree.\n' >"$AG/notes.yaml"
sign "$AG/notes.yaml" "$AG/notes.yaml.p7s" user-sam
# For the owner-mismatch case: sam's agreement for a laptop whose recorded owner is jordan.
document "$AG/byod-0044.yaml" sam@example.com BYOD-0044
sign "$AG/byod-0044.yaml" "$AG/byod-0044.yaml.p7s" user-sam

readonly REFUSALS=(
    "content changed after signing|tampered.yaml|agreement.yaml.p7s|bad_signature"
    "a signer from another CA|agreement.yaml|rogue.p7s|untrusted_signer"
    "an expired signer|agreement.yaml|expired.p7s|signer_expired"
    "jordan signing sam's agreement|agreement.yaml|jordan.p7s|signer_mismatch"
    "an attached (-nodetach) signature|agreement.yaml|attached.p7s|attached_content"
    "a SHA-1 digest|agreement.yaml|sha1.p7s|weak_digest"
    "no signed attributes (-noattr)|agreement.yaml|noattr.p7s|no_signed_attributes"
    "an unknown template|unknown.yaml|unknown.yaml.p7s|unknown_template"
    "a wrong terms_sha256|terms.yaml|terms.yaml.p7s|terms_mismatch"
    "a document that is not the six fields|notes.yaml|notes.yaml.p7s|malformed_document"
)

# ---------------------------------------------------------------------------------------------
# Helpers.

# upload_body DOCUMENT SIGNATURE — the POST /v1/agreements body for two files.
upload_body() {
    printf '{"document": "%s", "signature": "%s"}' "$(base64 -w0 "$1")" "$(base64 -w0 "$2")"
}

# upload DOCUMENT SIGNATURE — POST /v1/agreements as admin.
upload() {
    api admin POST /v1/agreements "$(upload_body "$1" "$2")"
}

# offline_verify DOCUMENT SIGNATURE [CRL] [POLICY] — exemptctl agreement verify with no connection
# settings at all (none in the environment, no config file). Sets CTL_RC, CTL_OUT, CTL_ERR.
# shellcheck disable=SC2034  # CTL_RC and LAST_CTL are read by assert_ctl
offline_verify() {
    CTL_RC=0
    env -u EXEMPTCTL_SERVER -u EXEMPTCTL_CERT -u EXEMPTCTL_KEY -u EXEMPTCTL_CA \
        timeout 20 "$EXEMPTCTL_BIN" agreement verify --document "$1" --signature "$2" \
        --agreements-ca "$PKI_DIR/agreements-ca.crt" --agreements-crl "${3:-$DAEMON_DIR/agreements.crl}" \
        --policy "${4:-$DAEMON_DIR/policy/policy.yaml}" >"$TEST_TMP/ctl.out" 2>"$TEST_TMP/ctl.err" || CTL_RC=$?
    CTL_OUT="$(<"$TEST_TMP/ctl.out")"
    CTL_ERR="$(<"$TEST_TMP/ctl.err")"
    LAST_CTL="exemptctl agreement verify --document $(basename "$1") --signature $(basename "$2") (offline)"
}

# fetch_audit — sets AUDIT to GET /v1/audit (as help desk).
fetch_audit() {
    AUDIT="$(curl_as helpdesk --fail "$(api_url '/v1/audit?limit=10000')")" || fail "GET /v1/audit as helpdesk failed"
}

# audit_count ACTION — fetches the audit trail into AUDIT and sets AUDIT_COUNT to how many records
# have ACTION.
audit_count() {
    fetch_audit
    AUDIT_COUNT="$( (grep -o "\"action\":\"$1\"" <<<"$AUDIT" || true) | wc -l)"
}

# mdm_exemption_body SUBJECT AGREEMENT_ID — an MDM-01 exemption body backed by an agreement.
mdm_exemption_body() {
    printf '{"subject": "%s", "controls": ["MDM-01"], "justification": "Personal laptop, BYOD agreement signed.", ' "$1"
    printf '"risk": {"likelihood": "low", "impact": "low"}, "mitigations": ["Disk encryption enforced"], '
    printf '"evidence": "TICKET-7", "expires_at": "%s", "compensating_controls": ["ENC-01"], "agreement_id": "%s"}' \
        "$(now_rfc3339 $((30 * 86400)))" "$2"
}

posture_file() {   # DEVICE [ARG...] — writes a posture report and prints its path
    local file
    file="$TEST_TMP/posture-$1-$SRANDOM.json"
    posture "$@" >"$file"
    printf '%s' "$file"
}

# ---------------------------------------------------------------------------------------------
# Cases.

case_upload_stores_a_verified_agreement() {
    upload "$AG/agreement.yaml" "$AG/agreement.yaml.p7s"
    assert_status 201
    assert_json .id AG-000001
    assert_json .agreement byod-v3
    assert_json .user sam@example.com
    assert_json .device_id BYOD-0042
    assert_json .device_serial C02XYZ123
    assert_json .terms_sha256 "$TERMS_SHA256"
    assert_json .document_sha256 "$(sha256sum "$AG/agreement.yaml" | cut -d' ' -f1)"
    assert_json .signer.email sam@example.com
    assert_json .signer.fingerprint "$(openssl x509 -in "$PKI_DIR/user-sam.crt" -outform DER | sha256sum | cut -d' ' -f1)"
    assert_json_string .signer.subject
    assert_json_string .signed_at
    assert_json .verification.result verified
    assert_json .uploaded_by admin@example.com

    # The same bytes again: the same agreement, 200.
    upload "$AG/agreement.yaml" "$AG/agreement.yaml.p7s"
    assert_status 200
    assert_json .id AG-000001

    ctl admin agreement upload --document "$AG/agreement.yaml" --signature "$AG/agreement.yaml.p7s"
    assert_ctl 0
    assert_match "${CTL_OUT%%$'\n'*}" '^id: +AG-000001 \(already stored\)$' "first line of exemptctl agreement upload"

    ctl helpdesk agreement show AG-000001
    assert_ctl 0
    assert_match "$CTL_OUT" $'template: +byod-v3\n' "agreement show: template"
    assert_match "$CTL_OUT" $'user: +sam@example.com\n' "agreement show: user"
    assert_match "$CTL_OUT" $'device: +BYOD-0042\n' "agreement show: device"
    assert_match "$CTL_OUT" $'serial: +C02XYZ123\n' "agreement show: serial"
    assert_match "$CTL_OUT" $'signer email: +sam@example.com\n' "agreement show: signer email"
    assert_match "$CTL_OUT" $'signer fingerprint: +[0-9a-f]{64}\n' "agreement show: signer fingerprint"
    assert_match "$CTL_OUT" $'signed at: +[0-9]{4}-' "agreement show: signed at"
    assert_match "$CTL_OUT" $'verification: +verified\n' "agreement show: verification"

    ctl helpdesk --json agreement show AG-000001
    assert_ctl 0
    assert_json .id AG-000001 "$CTL_OUT"
    assert_json .verification.result verified "$CTL_OUT"

    ctl helpdesk agreement show AG-000404
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: not_found:" "agreement show of an unknown id"
    ctl helpdesk agreement show 'AG/../x'
    assert_ctl 2
}

case_offline_verify_agrees_without_a_server() {
    local fingerprint
    fingerprint="$(openssl x509 -in "$PKI_DIR/user-sam.crt" -outform DER | sha256sum | cut -d' ' -f1)"
    offline_verify "$AG/agreement.yaml" "$AG/agreement.yaml.p7s"
    assert_ctl 0
    assert_eq "verified: sam@example.com signed byod-v3 for BYOD-0042 (signer fingerprint $fingerprint)" \
        "$CTL_OUT" "exemptctl agreement verify"
    offline_verify "$AG/agreement.yaml" "$AG/agreement.yaml.der"
    assert_ctl 0
    assert_contains "$CTL_OUT" "verified: sam@example.com" "offline verify of the DER signature"

    # Unreadable files and a bad policy are exit 2, not a refusal.
    offline_verify "$AG/no-such.yaml" "$AG/agreement.yaml.p7s"
    assert_ctl 2
    assert_contains "$CTL_ERR" "no-such.yaml" "a missing document"
    printf 'controls: [nonsense\n' >"$TEST_TMP/bad-policy.yaml"
    offline_verify "$AG/agreement.yaml" "$AG/agreement.yaml.p7s" "" "$TEST_TMP/bad-policy.yaml"
    assert_ctl 2
    offline_verify "$AG/agreement.yaml" "$AG/agreement.yaml.p7s" "$AG/no-such.crl"
    assert_ctl 1
    assert_match "$CTL_OUT" '^refused: crl_unavailable: ' "a configured CRL that cannot be read fails closed"
}

case_refusals_name_their_reason_and_store_nothing() {
    local entry name doc sig reason before
    audit_count agreement.refused
    before="$AUDIT_COUNT"
    for entry in "${REFUSALS[@]}"; do
        IFS='|' read -r name doc sig reason <<<"$entry"
        upload "$AG/$doc" "$AG/$sig"
        assert_error 422 "$reason"
        ctl admin agreement upload --document "$AG/$doc" --signature "$AG/$sig"
        assert_ctl 1
        assert_match "$CTL_ERR" "^exemptctl: $reason: " "exemptctl agreement upload: $name"
        offline_verify "$AG/$doc" "$AG/$sig"
        assert_ctl 1
        assert_match "$CTL_OUT" "^refused: $reason: " "exemptctl agreement verify: $name"
        note "$name: $reason"
    done
    audit_count agreement.refused
    assert_eq "$((before + 2 * ${#REFUSALS[@]}))" "$AUDIT_COUNT" "agreement.refused audit records"
    for entry in "${REFUSALS[@]}"; do
        IFS='|' read -r name doc sig reason <<<"$entry"
        assert_contains "$AUDIT" "\"action\":\"agreement.refused\",\"subject\":\"agreement\",\"details\":{\"reason\":\"$reason\"" \
            "the audit of the refusal for $name"
    done

    # Not base64: 400 invalid_field, before any verification.
    api admin POST /v1/agreements '{"document": "not base64!", "signature": "AAAA"}'
    assert_error 400 invalid_field
    api admin POST /v1/agreements "{\"document\": \"$(base64 -w0 "$AG/agreement.yaml")\", \"signature\": \"%%%%\"}"
    assert_error 400 invalid_field
    # Only admins upload.
    api helpdesk POST /v1/agreements "$(upload_body "$AG/agreement.yaml" "$AG/agreement.yaml.p7s")"
    assert_error 403 forbidden

    # Nothing was stored after the one good upload.
    api helpdesk GET /v1/agreements/AG-000002
    assert_error 404 not_found
    audit_count agreement.stored
    assert_eq 1 "$AUDIT_COUNT" "agreement.stored audit records"
}

# An empty document is valid base64 ("") of a document that is not an agreement: the brief asks
# for 422 malformed_document, like any other unusable document (and the offline check says so).
case_empty_document_is_malformed() {
    offline_verify "$AG/empty.yaml" "$AG/empty.yaml.p7s"
    assert_ctl 1
    assert_match "$CTL_OUT" '^refused: malformed_document: ' "exemptctl agreement verify of an empty document"
    upload "$AG/empty.yaml" "$AG/empty.yaml.p7s"
    assert_error 422 malformed_document
    api helpdesk GET /v1/agreements/AG-000002
    assert_error 404 not_found
}

case_der_signature_is_accepted() {
    upload "$AG/agreement.yaml" "$AG/agreement.yaml.der"
    assert_status 201
    assert_json .id AG-000002
    assert_json .verification.result verified
    ctl admin agreement upload --document "$AG/agreement.yaml" --signature "$AG/agreement.yaml.der"
    assert_ctl 0
    assert_match "${CTL_OUT%%$'\n'*}" '^id: +AG-000002 \(already stored\)$' "exemptctl upload of the DER form"
}

# The done-when scenario: a BYOD laptop with no MDM is denied until an MDM-01 exemption backed by
# its owner's signed agreement (and compensated by disk encryption) is approved.
case_agreement_backed_exemption_allows_a_byod_laptop() {
    ctl admin device unenroll BYOD-0042 --owner sam@example.com
    assert_ctl 0

    agent endpoint-BYOD-0042 "$(posture_file BYOD-0042)"
    assert_agent 1
    checkin endpoint-BYOD-0042 "$(posture BYOD-0042)"
    assert_status 200
    assert_decision deny noncompliant BYOD-0042
    assert_control MDM-01 status fail

    ctl admin --json exemption request --subject device:BYOD-0042 --control MDM-01 \
        --justification "Personal laptop; sam signed the BYOD agreement." --likelihood low --impact low \
        --mitigation "Disk encryption enforced" --compensating-control ENC-01 --agreement-id AG-000001 \
        --expires-in 30d
    assert_ctl 0
    EX_ID="$(jget "$CTL_OUT" .id)" || fail "exemptctl --json exemption request printed no id: $CTL_OUT"
    assert_match "$EX_ID" '^EX-[0-9]{6}$' "the exemption's id"
    assert_json .agreement_id AG-000001 "$CTL_OUT"
    assert_json .state pending "$CTL_OUT"

    api it-manager POST "/v1/exemptions/$EX_ID/approve" '{"note": "BYOD agreement AG-000001 on file"}'
    assert_status 200
    assert_json .state active

    checkin endpoint-BYOD-0042 "$(posture BYOD-0042 disk_encrypted=true)"
    assert_status 200
    assert_decision allow exempted BYOD-0042
    assert_control MDM-01 status fail
    assert_control MDM-01 covered_by "$EX_ID"
    agent endpoint-BYOD-0042 "$(posture_file BYOD-0042)"
    assert_agent 0
    assert_contains "$AGENT_OUT" "(covered by $EX_ID)" "exempt-agent output"
    printf '%s' "$EX_ID" >"$TEST_TMP/byod-0042-exemption"
}

case_binding_refusals() {
    # sam's BYOD-0042 agreement cannot back another device's exemption.
    ctl admin device unenroll BYOD-0043 --owner sam@example.com
    assert_ctl 0
    api admin POST /v1/exemptions "$(mdm_exemption_body device:BYOD-0043 AG-000001)"
    assert_status 201
    local ex ag
    ex="$(jget "$BODY" .id)"
    api it-manager POST "/v1/exemptions/$ex/approve" '{}'
    assert_error 422 agreement_device_mismatch
    api helpdesk GET "/v1/exemptions/$ex"
    assert_json .state pending

    # A stored agreement that does not exist.
    api admin POST /v1/exemptions "$(mdm_exemption_body device:BYOD-0043 AG-000099)"
    if [[ "$STATUS" == 201 ]]; then
        ex="$(jget "$BODY" .id)"
        api it-manager POST "/v1/exemptions/$ex/approve" '{}'
    fi
    assert_error 422 agreement_not_found

    # sam signed for BYOD-0044, but the registry records jordan as its owner.
    upload "$AG/byod-0044.yaml" "$AG/byod-0044.yaml.p7s"
    assert_status 201
    ag="$(jget "$BODY" .id)"
    ctl admin device unenroll BYOD-0044 --owner jordan@example.com
    assert_ctl 0
    api admin POST /v1/exemptions "$(mdm_exemption_body device:BYOD-0044 "$ag")"
    assert_status 201
    ex="$(jget "$BODY" .id)"
    ctl it-manager exemption approve "$ex"
    assert_ctl 1
    assert_contains "$CTL_ERR" "exemptctl: agreement_owner_mismatch:" "exemptctl exemption approve"
    api it-manager POST "/v1/exemptions/$ex/approve" '{}'
    assert_error 422 agreement_owner_mismatch
}

# Revoking sam on the agreements CRL and reloading (SIGHUP) invalidates the agreement and, with
# it, the exemption it backs.
case_crl_reload_invalidates_agreement_and_exemption() {
    local ex i
    ex="$(<"$TEST_TMP/byod-0042-exemption")" || fail "the done-when case did not record its exemption"
    local invalidated_before
    audit_count agreement.invalidated
    invalidated_before="$AUDIT_COUNT"
    "$MAKE_PKI" "$PKI_DIR" revoke user-sam || fail "could not revoke user-sam"
    "$MAKE_PKI" "$PKI_DIR" crl || fail "could not re-issue the CRL"
    cp "$PKI_DIR/agreements.crl" "$DAEMON_DIR/agreements.crl.new"
    mv -f "$DAEMON_DIR/agreements.crl.new" "$DAEMON_DIR/agreements.crl"
    kill -HUP "$DAEMON_PID"
    for ((i = 0; i < 50; i++)); do
        sleep 0.1
        api helpdesk GET /v1/agreements/AG-000001
        [[ "$(jget "$BODY" .verification.result)" == invalid ]] && break
    done
    assert_status 200
    assert_json .verification.result invalid
    assert_json .verification.reason signer_revoked
    assert_json_string .verification.invalidated_at

    ctl helpdesk agreement show AG-000001
    assert_ctl 0
    assert_match "$CTL_OUT" $'verification: +invalid: signer_revoked' "agreement show after the revocation"

    api helpdesk GET /v1/devices/BYOD-0042/decision
    assert_status 200
    assert_json .decision deny
    assert_control MDM-01 status fail
    control_index "$BODY" MDM-01
    if jlookup "$BODY" "$CONTROL_AT.covered_by"; then
        assert_ne "\"$ex\"" "$JVAL" "MDM-01 covered_by after the revocation"
    fi

    # The exemption can never be valid again: exemptd revoked it, and says why.
    api helpdesk GET "/v1/exemptions/$ex"
    assert_status 200
    assert_json .state revoked
    assert_json .revoked_by exemptd
    assert_match "$(jget "$BODY" .revoked_reason)" '^agreement AG-000001 is no longer valid: signer_revoked$' \
        "the exemption's revoked_reason"

    audit_count agreement.invalidated
    ((AUDIT_COUNT > invalidated_before)) || fail "no new agreement.invalidated audit record"
    assert_contains "$AUDIT" '"action":"agreement.invalidated","subject":"agreement:AG-000001"' "the audit"
    assert_contains "$AUDIT" "\"action\":\"exemption.agreement_invalidated\",\"subject\":\"exemption:$ex\"" "the audit"

    # The offline check agrees, with the same CRL.
    offline_verify "$AG/agreement.yaml" "$AG/agreement.yaml.p7s"
    assert_ctl 1
    assert_match "$CTL_OUT" '^refused: signer_revoked: ' "offline verify after the revocation"
    # And sam's signature is refused on upload too, even for bytes already stored.
    upload "$AG/agreement.yaml" "$AG/agreement.yaml.der"
    assert_error 422 signer_revoked
}

# A CRL that starts revoking a signer while exemptd is stopped ends that signer's agreements at
# the next start, before the daemon serves. On a daemon of its own (this case stops it).
case_crl_changed_while_stopped_invalidates_at_start() {
    local dir="$TEST_TMP/restart" ag
    mkdir -p "$dir"
    write_config "$dir/exemptd.yaml"
    cp "$PKI_DIR/agreements.crl" "$dir/agreements.crl"
    sed -i "s|^agreements: .*|agreements: {ca: $PKI_DIR/agreements-ca.crt, crl: $dir/agreements.crl}|" "$dir/exemptd.yaml"
    start_daemon "$dir"
    document "$AG/byod-0043.yaml" jordan@example.com BYOD-0043
    sign "$AG/byod-0043.yaml" "$AG/byod-0043.yaml.p7s" user-jordan
    upload "$AG/byod-0043.yaml" "$AG/byod-0043.yaml.p7s"
    assert_status 201
    assert_json .verification.result verified
    ag="$(jget "$BODY" .id)"
    stop_daemon || exit 1

    "$MAKE_PKI" "$PKI_DIR" revoke user-jordan || fail "could not revoke user-jordan"
    "$MAKE_PKI" "$PKI_DIR" crl || fail "could not re-issue the CRL"
    cp "$PKI_DIR/agreements.crl" "$dir/agreements.crl"
    start_daemon "$dir"
    api helpdesk GET "/v1/agreements/$ag"
    assert_status 200
    assert_json .verification.result invalid
    assert_json .verification.reason signer_revoked
    audit_count agreement.invalidated
    assert_contains "$AUDIT" "\"action\":\"agreement.invalidated\",\"subject\":\"agreement:$ag\"" "the audit"
    stop_daemon || exit 1
}

# ---------------------------------------------------------------------------------------------

mkdir -p "$TEST_TMP/daemon"
write_config "$TEST_TMP/daemon/exemptd.yaml"
cp "$PKI_DIR/agreements.crl" "$TEST_TMP/daemon/agreements.crl"
sed -i "s|^agreements: .*|agreements: {ca: $PKI_DIR/agreements-ca.crt, crl: $TEST_TMP/daemon/agreements.crl}|" \
    "$TEST_TMP/daemon/exemptd.yaml"
start_daemon "$TEST_TMP/daemon"
run_case "an upload stores a verified agreement; the same bytes again answer 200" case_upload_stores_a_verified_agreement
run_case "exemptctl agreement verify runs offline and agrees" case_offline_verify_agrees_without_a_server
run_case "every refusal names its reason, is audited and stores nothing" case_refusals_name_their_reason_and_store_nothing
run_case "an empty document is refused as malformed_document" case_empty_document_is_malformed
run_case "a DER signature is accepted" case_der_signature_is_accepted
run_case "an MDM-01 exemption backed by the owner's agreement allows a BYOD laptop" \
    case_agreement_backed_exemption_allows_a_byod_laptop
run_case "an agreement backs only its own device and owner" case_binding_refusals
run_case "a CRL reload revoking the signer invalidates the agreement and the exemption" \
    case_crl_reload_invalidates_agreement_and_exemption
run_case "a CRL changed while exemptd was stopped invalidates the agreement at start-up" \
    case_crl_changed_while_stopped_invalidates_at_start
finish
