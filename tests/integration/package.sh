#!/usr/bin/env bash
# The Debian packages (packaging/CMakeLists.txt): cpack builds exemptd_VERSION_amd64.deb and
# exempt-agent_VERSION_amd64.deb from the build folder; their metadata, contents, conffiles and
# maintainer scripts are as documented; and the binaries extracted from them serve and check in,
# with the packaged configuration pointed at a scratch root.
source "$(dirname "$0")/lib.sh"

: "${BUILD_DIR:?BUILD_DIR must point at the CMake build folder}"
for tool in cpack dpkg-deb dpkg-shlibdeps; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install cmake dpkg-dev)"
done

VERSION="$("$EXEMPTD_BIN" --version | awk '{ print $2 }')"
DEBS="$TEST_TMP/debs"
ROOT="$TEST_TMP/root"
SERVER_DEB="$DEBS/exemptd_${VERSION}_amd64.deb"
AGENT_DEB="$DEBS/exempt-agent_${VERSION}_amd64.deb"

case_cpack_builds_two_packages() {
    local out rc=0
    out="$(cd "$BUILD_DIR" && cpack -G DEB -B "$DEBS" 2>&1)" || rc=$?
    assert_eq 0 "$rc" "cpack exit code (output: $(printf '%.1500s' "$out"))"
    [[ -f "$SERVER_DEB" && -f "$AGENT_DEB" ]] || fail "expected $(basename "$SERVER_DEB") and $(basename "$AGENT_DEB"), got: $(ls "$DEBS")"
}

# field DEB NAME — a control field.
field() {
    dpkg-deb -f "$1" "$2"
}

case_server_package_metadata() {
    assert_eq exemptd "$(field "$SERVER_DEB" Package)" "Package"
    assert_eq "$VERSION" "$(field "$SERVER_DEB" Version)" "Version"
    assert_eq amd64 "$(field "$SERVER_DEB" Architecture)" "Architecture"
    local depends dep
    depends="$(field "$SERVER_DEB" Depends)"
    for dep in libc6 libssl3 libsqlite3-0 libsystemd0 libyaml-cpp; do
        assert_contains "$depends" "$dep" "exemptd's Depends"
    done
    assert_eq "/etc/exemptd/exemptd.yaml
/etc/exemptd/policy.yaml
/etc/exemptd/terms/byod-v3.txt" "$(dpkg-deb --ctrl-tarfile "$SERVER_DEB" | tar -xOf - ./conffiles | sort)" "conffiles"
    local info
    info="$(dpkg-deb -I "$SERVER_DEB")"
    assert_contains "$info" "postinst" "the control archive"
    assert_contains "$(dpkg-deb --ctrl-tarfile "$SERVER_DEB" | tar -xOf - ./postinst)" "systemd-sysusers" "postinst"
    ! grep -v '^[[:space:]]*#' <(dpkg-deb --ctrl-tarfile "$SERVER_DEB" | tar -xOf - ./postinst) \
        | grep -Eq 'systemctl (enable|start)|deb-systemd-invoke' \
        || fail "postinst must enable and start nothing"
}

# assert_paths DEB PATH... — the package holds each PATH.
assert_paths() {
    local deb="$1" listing path
    shift
    listing="$(dpkg-deb -c "$deb" | awk '{ print $6 }')"
    for path in "$@"; do
        grep -qxF ".$path" <<<"$listing" || fail "$(basename "$deb") lacks $path; it holds:
$listing"
    done
}

case_server_package_contents() {
    assert_paths "$SERVER_DEB" /usr/sbin/exemptd /usr/bin/exemptctl /etc/exemptd/exemptd.yaml \
        /etc/exemptd/policy.yaml /etc/exemptd/terms/byod-v3.txt /usr/lib/systemd/system/exemptd.service \
        /usr/lib/sysusers.d/exemptd.conf /usr/lib/tmpfiles.d/exemptd.conf /usr/share/doc/exemptd/operations.md
    ! dpkg-deb -c "$SERVER_DEB" | grep -q 'exempt-agent' || fail "the exemptd package holds agent files"
}

case_agent_package() {
    assert_eq exempt-agent "$(field "$AGENT_DEB" Package)" "Package"
    assert_contains "$(field "$AGENT_DEB" Depends)" "libssl3" "exempt-agent's Depends"
    assert_paths "$AGENT_DEB" /usr/bin/exempt-agent /usr/lib/systemd/system/exempt-agent.service \
        /usr/lib/systemd/system/exempt-agent.timer /usr/share/doc/exempt-agent/agent.yaml.example
    ! dpkg-deb -c "$AGENT_DEB" | grep -Eq 'sbin/exemptd|bin/exemptctl|/etc/' || fail "the agent package holds server files"
}

# The packaged configuration, its paths moved into the scratch root and its listeners onto
# ephemeral loopback ports; the dev PKI where an admin puts it (/etc/exemptd/tls).
install_into_root() {
    dpkg -x "$SERVER_DEB" "$ROOT"
    dpkg -x "$AGENT_DEB" "$ROOT"
    mkdir -p "$ROOT/etc/exemptd/tls" "$ROOT/var/lib/exemptd" "$ROOT/var/log/exemptd" "$TEST_TMP/daemon"
    cp "$PKI_DIR"/{server.crt,server.key,clients-ca.crt,agreements-ca.crt} "$ROOT/etc/exemptd/tls/"
    sed -e "s|/etc/exemptd|$ROOT/etc/exemptd|g" -e "s|/var/lib/exemptd|$ROOT/var/lib/exemptd|g" \
        -e "s|/var/log/exemptd|$ROOT/var/log/exemptd|g" \
        -e "s|^listen: .*|listen: 127.0.0.1:0|" -e "s|^metrics_listen: .*|metrics_listen: 127.0.0.1:0|" \
        "$ROOT/etc/exemptd/exemptd.yaml" >"$TEST_TMP/daemon/exemptd.yaml"
}

case_extracted_daemon_serves() {
    install_into_root
    local out rc=0
    out="$("$ROOT/usr/sbin/exemptd" --check-config "$TEST_TMP/daemon/exemptd.yaml" 2>&1)" || rc=$?
    assert_eq 0 "$rc" "--check-config of the packaged configuration (output: $out)"
    start_daemon "$TEST_TMP/daemon"
    ctl admin device enroll LAPTOP-0042 --owner sam@example.com --source mdm
    assert_ctl 0
    posture LAPTOP-0042 >"$TEST_TMP/posture.json"
    agent endpoint-LAPTOP-0042 "$TEST_TMP/posture.json"
    assert_agent 0
    [[ -s "$ROOT/var/lib/exemptd/exemptd.db" ]] || fail "no database at the packaged path"
    [[ -s "$ROOT/var/log/exemptd/audit.checkpoints" ]] || fail "no audit checkpoints at the packaged path"
    stop_daemon || exit 1
}

run_case "cpack builds exemptd and exempt-agent packages" case_cpack_builds_two_packages
run_case "the exemptd package's metadata, conffiles and postinst" case_server_package_metadata
run_case "the exemptd package installs the documented paths" case_server_package_contents
run_case "the exempt-agent package holds the agent and its units only" case_agent_package
# From here on the extracted binaries (also for the clean-up, which stops daemons by binary).
EXEMPTD_BIN="$ROOT/usr/sbin/exemptd"
EXEMPTCTL_BIN="$ROOT/usr/bin/exemptctl"
EXEMPT_AGENT_BIN="$ROOT/usr/bin/exempt-agent"
run_case "the extracted exemptd serves, exemptctl enrolls and exempt-agent checks in" case_extracted_daemon_serves
finish
