#!/usr/bin/env bash
# Makes the signed BYOD agreement fixtures (SPEC §7) with the openssl CLI, for
# tests/unit/agreement_test.cpp and bench/agreement_bench.cpp. Test keys only; never commit the output.
#
#   make_agreement_fixtures.sh DIR
#
# DIR (created) receives:
#   agreements-ca.crt      the agreements CA ("/O=exemptd test/CN=exemptd test agreements CA")
#   rogue-ca.crt           another CA with the same name and another key
#   byod-v3.txt            the terms file; agreement.yaml carries its SHA-256
#   agreement.yaml         sam@example.com's agreement for LAPTOP-0042
#   jordan.yaml            the same agreement in jordan@example.com's name
#   sam.crt                good signer: emailProtection, email:sam@example.com, valid -1d..+397d
#   expired.crt            valid -90d..-30d
#   notyet.crt             valid +30d..+400d (openssl ca -startdate in the future)
#   noeku.crt              extendedKeyUsage clientAuth only
#   anyuse.crt             no extendedKeyUsage extension at all
#   revoked.crt            on crl-revoked.pem
#   rogue.crt              issued by rogue-ca
#   crl-empty.pem          the agreements CA's CRL before revoked.crt was revoked (nextUpdate +30d)
#   crl-revoked.pem        the agreements CA's CRL listing revoked.crt (nextUpdate +30d)
#   crl-rogue.pem          an empty CRL signed by rogue-ca
#   user.key               the key of every sam certificate
#   agreement.yaml.p7s     `openssl cms -sign -binary -md sha256 ... -outform PEM` by sam.crt (SPEC §7)
#   agreement.yaml.der.p7s the same, DER
#   attached.p7s           -nodetach               sha1.p7s     -md sha1
#   sha512.p7s             -md sha512
#   noattr.p7s             -noattr                 two-signers.p7s  sam.crt and noeku.crt
#   nocerts.p7s            -nocerts (the signer certificate is not included)
#   expired.p7s notyet.p7s noeku.p7s anyuse.p7s revoked.p7s rogue.p7s   signed by that certificate
#   jordan.yaml.p7s        jordan.yaml signed by sam.crt
#   data.p7s               a CMS ContentInfo of type data (not SignedData)
#
# Quiet on success; on failure openssl's messages go to stderr and the exit code is 1.
set -euo pipefail
umask 077

(($# == 1)) || { echo "usage: make_agreement_fixtures.sh DIR" >&2; exit 2; }
mkdir -p "$1"
cd "$1"

readonly kCaName="/O=exemptd test/CN=exemptd test agreements CA"

when() {   # a time N days from now in the form `openssl ca -startdate` takes
    date -u -d "$1 days" +%Y%m%d%H%M%SZ
}

run() {    # runs openssl quietly, showing its messages only when it fails
    openssl "$@" 2>openssl.err || { cat openssl.err >&2; echo "make_agreement_fixtures.sh: openssl $1 failed" >&2; exit 1; }
}

ca_config() {   # NAME — a minimal `openssl ca`/`openssl req` configuration; the system one is not used
    : >"$1.index"
    echo 1000 >"$1.serial"
    echo 01 >"$1.crlnumber"
    cat >"$1.cnf" <<EOF
[ca]
default_ca = test_ca
[test_ca]
database = $1.index
new_certs_dir = issued
serial = $1.serial
crlnumber = $1.crlnumber
default_md = sha256
default_crl_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
crl_extensions = crl_ext
[policy_any]
commonName = supplied
organizationName = optional
[crl_ext]
authorityKeyIdentifier = keyid:always
[req]
distinguished_name = req_dn
prompt = no
x509_extensions = ca_ext
[req_dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[signer]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = emailProtection
subjectAltName = email:sam@example.com
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[noeku]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = clientAuth
subjectAltName = email:sam@example.com
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[anyuse]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
subjectAltName = email:sam@example.com
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    run req -x509 -new -config "$1.cnf" -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1.key" -out "$1.crt" -subj "$kCaName" -days 3650
}

issue() {   # NAME CA EXTENSIONS START END — a certificate for sam's key
    run ca -batch -notext -config "$2.cnf" -cert "$2.crt" -keyfile "$2.key" -in user.csr -out "$1.crt" \
        -extensions "$3" -startdate "$4" -enddate "$5"
}

sign() {    # OUT SIGNER [EXTRA OPENSSL CMS OPTIONS...] — signs agreement.yaml the way SPEC §7 shows
    local out="$1" signer="$2"
    shift 2
    run cms -sign -binary -md sha256 -in agreement.yaml -signer "$signer.crt" -inkey user.key \
        -outform PEM -out "$out" "$@"
}

document() {   # USER
    cat <<EOF
agreement: byod-v3
user: $1
device_id: LAPTOP-0042
device_serial: C02XYZ123
terms_sha256: $(sha256sum byod-v3.txt | cut -d' ' -f1)
accepted_at: 2026-11-20T10:00:00Z
EOF
}

mkdir -p issued
ca_config agreements-ca
ca_config rogue-ca
run genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out user.key
run req -new -config agreements-ca.cnf -key user.key -subj "/O=exemptd test/CN=sam" -out user.csr

issue sam agreements-ca signer "$(when -1)" "$(when 397)"
issue expired agreements-ca signer "$(when -90)" "$(when -30)"
issue notyet agreements-ca signer "$(when 30)" "$(when 400)"
issue noeku agreements-ca noeku "$(when -1)" "$(when 397)"
issue anyuse agreements-ca anyuse "$(when -1)" "$(when 397)"
issue revoked agreements-ca signer "$(when -1)" "$(when 397)"
issue rogue rogue-ca signer "$(when -1)" "$(when 397)"

run ca -batch -config agreements-ca.cnf -cert agreements-ca.crt -keyfile agreements-ca.key -gencrl -out crl-empty.pem
run ca -batch -config agreements-ca.cnf -cert agreements-ca.crt -keyfile agreements-ca.key -revoke revoked.crt
run ca -batch -config agreements-ca.cnf -cert agreements-ca.crt -keyfile agreements-ca.key -gencrl -out crl-revoked.pem
run ca -batch -config rogue-ca.cnf -cert rogue-ca.crt -keyfile rogue-ca.key -gencrl -out crl-rogue.pem

printf 'BYOD agreement v3\n\nI agree to keep disk encryption and the screen lock on while this device reaches company data.\n' \
    >byod-v3.txt
document sam@example.com >agreement.yaml
document jordan@example.com >jordan.yaml

sign agreement.yaml.p7s sam
run cms -sign -binary -md sha256 -in agreement.yaml -signer sam.crt -inkey user.key -outform DER \
    -out agreement.yaml.der.p7s
sign attached.p7s sam -nodetach
sign sha1.p7s sam -md sha1
sign sha512.p7s sam -md sha512
sign noattr.p7s sam -noattr
sign two-signers.p7s sam -signer noeku.crt -inkey user.key
sign nocerts.p7s sam -nocerts
for name in expired notyet noeku anyuse revoked rogue; do
    sign "$name.p7s" "$name"
done
run cms -sign -binary -md sha256 -in jordan.yaml -signer sam.crt -inkey user.key -outform PEM \
    -out jordan.yaml.p7s
run cms -data_create -in agreement.yaml -outform PEM -out data.p7s

rm -rf issued ./*.old ./*.attr ./*.csr openssl.err
chmod 644 ./*.crt ./*.pem ./*.p7s ./*.yaml ./*.txt
