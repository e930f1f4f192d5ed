#!/usr/bin/env bash
# The systemd units and snippets in systemd/ (SPEC §2): `systemd-analyze verify` finds nothing to
# say about them, `systemd-analyze security --offline=true` rates each service at or below its
# allowed exposure, and the sysusers/tmpfiles snippets make the user and folders in a scratch root.
# Starts no daemon and needs no PKI.
source "$(dirname "$0")/lib.sh"

UNIT_DIR="$SOURCE_DIR/systemd"
# The highest exposure each service may have (0.0 best, 10.0 worst). The agent runs as root with
# CAP_NET_ADMIN and the real /dev, because it must read the firewall ruleset, the DMI serial and
# the root disk's device-mapper stack; see docs/operations.md.
declare -A MAX_EXPOSURE=([exemptd.service]=1.5 [exempt-agent.service]=2.0)
UNITS=(exemptd.service exempt-agent.service exempt-agent.timer)

command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (apt-get install systemd)"

# Copies of the units whose ExecStart names the binaries of this build, because `verify` checks
# that every command exists and is executable. Nothing else in them changes.
make_verifiable_copies() {
    [[ -x "$EXEMPT_AGENT_BIN" ]] || fail "exempt-agent is not built (EXEMPT_AGENT_BIN='$EXEMPT_AGENT_BIN')"
    mkdir -p "$TEST_TMP/units"
    local unit
    for unit in "${UNITS[@]}"; do
        sed -e "s|/usr/sbin/exemptd|$EXEMPTD_BIN|g" -e "s|/usr/bin/exempt-agent|$EXEMPT_AGENT_BIN|g" \
            "$UNIT_DIR/$unit" >"$TEST_TMP/units/$unit"
    done
}

case_units_verify_cleanly() {
    make_verifiable_copies
    local out rc=0
    out="$(cd "$TEST_TMP/units" && systemd-analyze verify "${UNITS[@]/#/$TEST_TMP/units/}" 2>&1)" || rc=$?
    note "verified ${UNITS[*]}"
    [[ "$rc" == 0 && -z "$out" ]] || fail "systemd-analyze verify: exit $rc: $out"
}

# exposure UNIT — prints the overall exposure of UNIT (e.g. 1.1).
exposure() {
    local out level
    out="$(systemd-analyze security --offline=true "$UNIT_DIR/$1" 2>&1)" \
        || fail "systemd-analyze security --offline=true $1 failed: $(printf '%.600s' "$out")"
    level="$(sed -n 's/.*Overall exposure level for .*: \([0-9][0-9]*\.[0-9]\).*/\1/p' <<<"$out")"
    [[ -n "$level" ]] || fail "no overall exposure level in: $(printf '%.600s' "$out")"
    printf '%s' "$level"
}

case_services_are_hardened() {
    local unit level
    for unit in "${!MAX_EXPOSURE[@]}"; do
        level="$(exposure "$unit")"
        note "$unit: exposure $level (at most ${MAX_EXPOSURE[$unit]})"
        awk -v l="$level" -v m="${MAX_EXPOSURE[$unit]}" 'BEGIN { exit !(l <= m) }' \
            || fail "$unit: exposure $level is above ${MAX_EXPOSURE[$unit]}: $(systemd-analyze security --offline=true "$UNIT_DIR/$unit" 2>&1 | grep '✗')"
    done
}

case_daemon_unit_keeps_its_contract() {
    local unit="$UNIT_DIR/exemptd.service" line
    for line in "Type=notify" "NotifyAccess=main" "WatchdogSec=30s" \
        "ExecStart=/usr/sbin/exemptd --config /etc/exemptd/exemptd.yaml" \
        "ExecReload=/bin/kill -HUP \$MAINPID" "User=exemptd" "StateDirectory=exemptd" \
        "ConfigurationDirectory=exemptd" "UMask=0077" "CapabilityBoundingSet=" "ProtectSystem=strict"; do
        grep -qxF "$line" "$unit" || fail "exemptd.service lacks the line '$line'"
    done
    ! grep -q '^DynamicUser=yes' "$unit" || fail "exemptd.service must use the sysusers user, not DynamicUser"
    grep -qxF "ExecStart=/usr/bin/exempt-agent --once" "$UNIT_DIR/exempt-agent.service" \
        || fail "exempt-agent.service should run /usr/bin/exempt-agent --once"
}

# The snippets in a scratch root: systemd-sysusers makes the user, systemd-tmpfiles the folders
# with the owners and modes the unit and docs/operations.md rely on. Changing owners needs root.
case_sysusers_and_tmpfiles_make_user_and_folders() {
    if [[ "$EUID" != 0 ]]; then
        note "skipped: needs root to create files owned by another user"
        return 0
    fi
    local root="$TEST_TMP/root" uid gid
    mkdir -p "$root/etc"
    systemd-sysusers --root="$root" "$UNIT_DIR/exemptd.sysusers" >/dev/null 2>&1 \
        || fail "systemd-sysusers failed: $(systemd-sysusers --root="$root" "$UNIT_DIR/exemptd.sysusers" 2>&1)"
    uid="$(awk -F: '$1 == "exemptd" { print $3 }' "$root/etc/passwd")"
    gid="$(awk -F: '$1 == "exemptd" { print $3 }' "$root/etc/group")"
    [[ -n "$uid" && -n "$gid" ]] || fail "systemd-sysusers made no exemptd user and group: $(cat "$root/etc/passwd")"
    assert_match "$(grep '^exemptd:' "$root/etc/passwd")" ':/var/lib/exemptd:/usr/sbin/nologin$' "the exemptd account"
    systemd-tmpfiles --root="$root" --create "$UNIT_DIR/exemptd.tmpfiles" \
        || fail "systemd-tmpfiles --create failed"
    assert_eq "750 0 $gid" "$(stat -c '%a %u %g' "$root/etc/exemptd/tls")" "/etc/exemptd/tls mode, owner, group"
    assert_eq "700 $uid $gid" "$(stat -c '%a %u %g' "$root/var/lib/exemptd")" "/var/lib/exemptd mode, owner, group"
    assert_eq "750 $uid $gid" "$(stat -c '%a %u %g' "$root/var/log/exemptd")" "/var/log/exemptd mode, owner, group"
}

run_case "systemd-analyze verify is clean for every unit" case_units_verify_cleanly
run_case "each service's exposure is within its limit" case_services_are_hardened
run_case "exemptd.service keeps its contract" case_daemon_unit_keeps_its_contract
run_case "the sysusers and tmpfiles snippets make the user and folders" case_sysusers_and_tmpfiles_make_user_and_folders
finish
