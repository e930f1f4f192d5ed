#!/usr/bin/env bash
# Makes a complete development PKI for exemptd with the openssl CLI (OpenSSL 3.0 or later).
# The identity scheme it encodes is described in certs/README.md. Never use these keys in production.
#
#   make-dev-pki.sh DIR                        the whole PKI; does nothing if DIR/server.crt exists
#   make-dev-pki.sh DIR endpoint DEVICE_ID     DIR/endpoint-DEVICE_ID.{crt,key}
#   make-dev-pki.sh DIR admin EMAIL NAME       DIR/NAME.{crt,key}, role admin
#   make-dev-pki.sh DIR helpdesk EMAIL NAME    DIR/NAME.{crt,key}, role help desk
#   make-dev-pki.sh DIR user EMAIL NAME        DIR/user-NAME.{crt,key}, agreement signer
#   make-dev-pki.sh DIR revoke NAME            puts DIR/NAME.crt (an agreement signer) on agreements.crl
#   make-dev-pki.sh DIR crl                    re-issues agreements.crl (nextUpdate in 30 days)
#
# The extra modes make the whole PKI first when it is missing, and leave a NAME.crt that already
# exists alone (so they are idempotent too). Quiet on success; errors go to stderr with exit 1
# (exit 2 for bad arguments).
set -euo pipefail
umask 077

readonly kLeafDays=397
readonly kCaDays=3650
readonly kCrlDays=30
readonly kDevIdRe='^[A-Za-z0-9._:-]{1,64}$'
readonly kNameRe='^[A-Za-z0-9._-]{1,64}$'
readonly kEmailRe='^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$'

usage() {
    echo "usage:" >&2
    sed -n '5,11s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

die() {
    echo "make-dev-pki.sh: $*" >&2
    exit 1
}

# A time N days from now (negative for the past) in the form `openssl ca -startdate` takes.
when() {
    date -u -d "$1 days" +%Y%m%d%H%M%SZ
}

# Writes a minimal `openssl ca` configuration with its database in $1 (a scratch folder unless
# the agreements CA's own database is meant). Nothing from the system openssl.cnf is used.
write_ca_config() {
    local db="$1" cfg="$2"
    [[ -f "$db.index" ]] || : >"$db.index"
    [[ -f "$db.crlnumber" ]] || echo 01 >"$db.crlnumber"
    cat >"$cfg" <<EOF
[ca]
default_ca = dev_ca
[dev_ca]
database = $db.index
new_certs_dir = $WORK
serial = $WORK/serial
crlnumber = $db.crlnumber
default_md = sha256
default_crl_days = $kCrlDays
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
crl_extensions = crl_ext
[policy_any]
commonName = supplied
organizationName = optional
organizationalUnitName = optional
[crl_ext]
authorityKeyIdentifier = keyid:always
[req]
distinguished_name = req_dn
prompt = no
[req_dn]
CN = unused
EOF
}

new_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -pkeyopt ec_param_enc:named_curve -out "$1" 2>/dev/null
    chmod 600 "$1"
}

# sign OUT_NAME ISSUER(empty for self-signed) SUBJECT START END EXTENSIONS...
# Makes $WORK/OUT_NAME.key and $WORK/OUT_NAME.crt. The issuer's files are looked up in $WORK
# first (during a full run) and then in $DIR.
sign() {
    local name="$1" issuer="$2" subject="$3" start="$4" end="$5"
    shift 5
    local cfg="$WORK/$name.cnf" ext="$WORK/$name.ext" csr="$WORK/$name.csr"
    write_ca_config "$WORK/$name.db" "$cfg"
    openssl rand -hex 15 | sed 's/^/41/' >"$WORK/serial"   # 128 positive random bits
    { echo "[ext]"; printf '%s\n' "$@"; } >"$ext"
    new_key "$WORK/$name.key"
    openssl req -new -config "$cfg" -key "$WORK/$name.key" -subj "$subject" -out "$csr"
    local -a signer
    if [[ -z "$issuer" ]]; then
        signer=(-selfsign -keyfile "$WORK/$name.key")
    else
        local src="$WORK"
        [[ -f "$WORK/$issuer.crt" ]] || src="$DIR"
        signer=(-cert "$src/$issuer.crt" -keyfile "$src/$issuer.key")
    fi
    openssl ca -batch -notext -preserveDN -config "$cfg" "${signer[@]}" -in "$csr" \
        -out "$WORK/$name.crt" -startdate "$start" -enddate "$end" \
        -extfile "$ext" -extensions ext 2>"$WORK/$name.err" \
        || { cat "$WORK/$name.err" >&2; die "could not sign $name"; }
}

make_ca() {   # NAME CN
    sign "$1" "" "/O=exemptd dev/CN=$2" "$(when -730)" "$(when "$kCaDays")" \
        "basicConstraints = critical, CA:TRUE, pathlen:0" \
        "keyUsage = critical, keyCertSign, cRLSign" \
        "subjectKeyIdentifier = hash"
}

# leaf NAME ISSUER CN EKU KEY_USAGE SAN [START END]
leaf() {
    sign "$1" "$2" "/O=exemptd dev/CN=$3" "${7:-$(when -1)}" "${8:-$(when "$kLeafDays")}" \
        "basicConstraints = critical, CA:FALSE" \
        "keyUsage = critical, $5" \
        "extendedKeyUsage = $4" \
        "subjectAltName = $6" \
        "subjectKeyIdentifier = hash" \
        "authorityKeyIdentifier = keyid"
}

client() {    # NAME SAN [START END] — a client certificate from the clients CA
    leaf "$1" clients-ca "$1" clientAuth digitalSignature "$2" "${3:-}" "${4:-}"
}

endpoint_san() { echo "URI:urn:exemptd:role:endpoint, URI:urn:exemptd:device:$1"; }
person_san() { echo "URI:urn:exemptd:role:$1, email:$2"; }
agreement_signer() {    # NAME EMAIL ISSUER [START END] — an agreement signing certificate
    leaf "$1" "$3" "$1" emailProtection "digitalSignature, nonRepudiation" "email:$2" \
        "${4:-}" "${5:-}"
}

# gen_crl — (re)issues DIR/agreements.crl from the agreements CA's database in DIR.
gen_crl() {
    local src="$WORK"
    [[ -f "$WORK/agreements-ca.crt" ]] || src="$DIR"
    write_ca_config "$DIR/agreements-ca" "$WORK/crl.cnf"
    openssl ca -batch -config "$WORK/crl.cnf" -gencrl -cert "$src/agreements-ca.crt" \
        -keyfile "$src/agreements-ca.key" -crl_lastupdate "$(when -1)" -crldays "$kCrlDays" \
        -out "$WORK/agreements.crl" 2>"$WORK/crl.err" \
        || { cat "$WORK/crl.err" >&2; die "could not issue agreements.crl"; }
    mv -f "$WORK/agreements.crl" "$DIR/agreements.crl"
    chmod 644 "$DIR/agreements.crl"
}

# install NAME... — moves finished pairs from $WORK into $DIR, key before certificate.
install_pairs() {
    local n
    for n in "$@"; do
        mv -f "$WORK/$n.key" "$DIR/$n.key"
        chmod 644 "$WORK/$n.crt"
        mv -f "$WORK/$n.crt" "$DIR/$n.crt"
    done
}

make_all() {
    make_ca server-ca "exemptd dev server CA"
    make_ca clients-ca "exemptd dev clients CA"
    make_ca agreements-ca "exemptd dev agreements CA"
    # Same name as the clients CA but another key: only a signature check tells them apart.
    make_ca rogue-ca "exemptd dev clients CA"

    leaf server server-ca localhost serverAuth digitalSignature "DNS:localhost, IP:127.0.0.1"

    client admin "$(person_san admin admin@example.com)"
    client ciso "$(person_san admin ciso@example.com)"
    client security-lead "$(person_san admin security-lead@example.com)"
    client it-manager "$(person_san admin it-manager@example.com)"
    client helpdesk "$(person_san helpdesk helpdesk@example.com)"
    local dev
    for dev in LAPTOP-0042 LAPTOP-0043 DESKTOP-0001; do
        client "endpoint-$dev" "$(endpoint_san "$dev")"
    done
    agreement_signer user-sam sam@example.com agreements-ca
    agreement_signer user-jordan jordan@example.com agreements-ca

    # Certificates every client-facing check must refuse.
    leaf rogue-endpoint rogue-ca rogue-endpoint clientAuth digitalSignature \
        "$(endpoint_san LAPTOP-0042)"
    leaf noeku-endpoint clients-ca noeku-endpoint serverAuth digitalSignature \
        "$(endpoint_san LAPTOP-0042)"
    client expired-endpoint "$(endpoint_san LAPTOP-0042)" "$(when -90)" "$(when -30)"
    client two-roles "URI:urn:exemptd:role:admin, URI:urn:exemptd:role:endpoint, email:admin@example.com, URI:urn:exemptd:device:LAPTOP-0042"
    client two-devices "URI:urn:exemptd:role:endpoint, URI:urn:exemptd:device:LAPTOP-0042, URI:urn:exemptd:device:LAPTOP-0043"
    # The CN claims a role; identity must come from the SAN only.
    leaf norole clients-ca "urn:exemptd:role:admin" clientAuth digitalSignature "email:admin@example.com"
    agreement_signer rogue-user-sam sam@example.com rogue-ca
    agreement_signer expired-user-sam sam@example.com agreements-ca "$(when -90)" "$(when -30)"

    local -a pairs=(server-ca clients-ca agreements-ca rogue-ca admin ciso security-lead
        it-manager helpdesk endpoint-LAPTOP-0042 endpoint-LAPTOP-0043 endpoint-DESKTOP-0001
        user-sam user-jordan rogue-endpoint noeku-endpoint expired-endpoint two-roles
        two-devices norole rogue-user-sam expired-user-sam)
    rm -f "$DIR/agreements-ca.index" "$DIR/agreements-ca.index.attr" "$DIR/agreements-ca.crlnumber"
    install_pairs "${pairs[@]}"
    gen_crl
    install_pairs server   # last: its presence means the PKI is complete
}

# mint NAME SIGN_FUNCTION ARGS... — one extra pair, unless NAME.crt is already there.
mint() {
    local name="$1"
    shift
    [[ -f "$DIR/$name.crt" && -f "$DIR/$name.key" ]] && return 0
    "$@"
    install_pairs "$name"
}

check() {     # VALUE REGEX WHAT
    [[ "$1" =~ $2 ]] || { echo "make-dev-pki.sh: invalid $3: '$1'" >&2; exit 2; }
}

main() {
    (($# >= 1)) || usage
    command -v openssl >/dev/null || die "openssl is not installed"
    DIR="$1"
    local mode="${2:-all}"
    shift $(($# >= 2 ? 2 : 1))
    case "$mode" in
        all) (($# == 0)) || usage ;;
        endpoint) (($# == 1)) || usage; check "$1" "$kDevIdRe" "device id" ;;
        admin | helpdesk | user)
            (($# == 2)) || usage; check "$1" "$kEmailRe" email; check "$2" "$kNameRe" name ;;
        revoke) (($# == 1)) || usage; check "$1" "$kNameRe" name ;;
        crl) (($# == 0)) || usage ;;
        *) usage ;;
    esac

    (umask 022 && mkdir -p "$DIR")
    DIR="$(cd "$DIR" && pwd)"
    WORK="$(mktemp -d "$DIR/.make-dev-pki.XXXXXX")"
    trap 'rm -rf "$WORK"' EXIT
    [[ -f "$DIR/server.crt" ]] || make_all
    case "$mode" in
        endpoint) mint "endpoint-$1" client "endpoint-$1" "$(endpoint_san "$1")" ;;
        admin | helpdesk) mint "$2" client "$2" "$(person_san "$mode" "$1")" ;;
        user) mint "user-$2" agreement_signer "user-$2" "$1" agreements-ca ;;
        revoke)
            [[ -f "$DIR/$1.crt" ]] || die "no certificate $DIR/$1.crt"
            write_ca_config "$DIR/agreements-ca" "$WORK/revoke.cnf"
            openssl ca -batch -config "$WORK/revoke.cnf" -cert "$DIR/agreements-ca.crt" \
                -keyfile "$DIR/agreements-ca.key" -revoke "$DIR/$1.crt" 2>"$WORK/revoke.err" \
                || { cat "$WORK/revoke.err" >&2; die "could not revoke $1"; }
            gen_crl ;;
        crl) gen_crl ;;
    esac
}

main "$@"
