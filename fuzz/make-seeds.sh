#!/usr/bin/env bash
# Makes the fuzzing trust store and the certificate and agreement seeds with the openssl CLI, the
# way tests/unit/make_agreement_fixtures.sh and certs/make-dev-pki.sh do, but with a 100-year
# validity so that the committed seeds keep verifying. Run once; the output is committed and the
# private keys are thrown away with the scratch folder (they are never committed).
#
#   fuzz/make-seeds.sh            (from the repository root) rewrites fuzz/data and the seeds below
#
# Writes:
#   fuzz/data/fuzz-ca.pem            the fuzzing agreements CA (also signs the client certificates)
#   fuzz/data/fuzz-ca-crl.pem        its CRL, revoking the "revoked" signer (nextUpdate in 100 years)
#   fuzz/data/agreement.yaml         sam@example.com's byod-v3 agreement for LAPTOP-0042
#   fuzz/data/agreement.sig.pem      its detached CMS signature (PEM), as SPEC §7 shows
#   fuzz/corpus/agreement_verify/*   document + "\n--SIGNATURE--\n" + signature, good and refused
#   fuzz/corpus/identity/*.der       client certificates with different SANs, DER
#   fuzz/corpus/router/agreement-*   POST /v1/agreements requests with these agreements
set -euo pipefail
umask 022

cd "$(dirname "$0")/.."
readonly root=$PWD
readonly out_data=fuzz/data
readonly corpus=fuzz/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

readonly kStart=20250101000000Z    # well before the fuzzers' fixed clock (2027-01-01)
readonly kEnd=21250101000000Z      # 100 years on
readonly kSep=$'\n--SIGNATURE--\n'

run() { openssl "$@" 2>"$work/openssl.err" || { cat "$work/openssl.err" >&2; exit 1; }; }

ca_config() {   # NAME
    : >"$work/$1.index"
    echo 1000 >"$work/$1.serial"
    echo 01 >"$work/$1.crlnumber"
    cat >"$work/$1.cnf" <<CNF
[ca]
default_ca = fuzz_ca
[fuzz_ca]
database = $work/$1.index
new_certs_dir = $work/issued
serial = $work/$1.serial
crlnumber = $work/$1.crlnumber
default_md = sha256
default_crl_days = 36500
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
[req_dn]
CN = unused
CNF
}

make_ca() {   # NAME CN
    ca_config "$1"
    run genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$1.key"
    run req -new -config "$work/$1.cnf" -key "$work/$1.key" -subj "/O=exemptd fuzz/CN=$2" -out "$work/$1.csr"
    printf '[ext]\nbasicConstraints = critical, CA:TRUE, pathlen:0\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n' >"$work/$1.ext"
    run ca -batch -notext -selfsign -config "$work/$1.cnf" -keyfile "$work/$1.key" -in "$work/$1.csr" \
        -out "$work/$1.crt" -startdate "$kStart" -enddate "$kEnd" -extfile "$work/$1.ext" -extensions ext
}

# leaf NAME CA CN START END EXTENSION-LINES... — a certificate for the shared user key
leaf() {
    local name="$1" ca="$2" cn="$3" start="$4" end="$5"
    shift 5
    { echo "[ext]"; printf '%s\n' "$@"; } >"$work/$name.ext"
    run req -new -config "$work/$ca.cnf" -key "$work/user.key" -subj "/O=exemptd fuzz/CN=$cn" -out "$work/$name.csr"
    run ca -batch -notext -config "$work/$ca.cnf" -cert "$work/$ca.crt" -keyfile "$work/$ca.key" \
        -in "$work/$name.csr" -out "$work/$name.crt" -startdate "$start" -enddate "$end" \
        -extfile "$work/$name.ext" -extensions ext
}

signer() {   # NAME CA EMAIL EKU [START END]
    leaf "$1" "$2" "$1" "${5:-$kStart}" "${6:-$kEnd}" "basicConstraints = critical, CA:FALSE" \
        "keyUsage = critical, digitalSignature, nonRepudiation" "extendedKeyUsage = $4" \
        "subjectAltName = email:$3" "subjectKeyIdentifier = hash" "authorityKeyIdentifier = keyid"
}

client() {   # NAME SAN [EKU] [CA:TRUE|FALSE]
    leaf "$1" fuzz-ca "$1" "$kStart" "$kEnd" "basicConstraints = critical, CA:${4:-FALSE}" \
        "keyUsage = critical, digitalSignature" "extendedKeyUsage = ${3:-clientAuth}" \
        "subjectAltName = $2" "subjectKeyIdentifier = hash" "authorityKeyIdentifier = keyid"
}

document() {   # USER DEVICE [TEMPLATE]
    cat <<DOC
agreement: ${3:-byod-v3}
user: $1
device_id: $2
device_serial: C02XYZ123
terms_sha256: $(sha256sum policies/byod-v3.txt | cut -d' ' -f1)
accepted_at: 2026-11-20T10:00:00Z
DOC
}

sign() {   # DOC SIGNER OUTFORM [EXTRA...]
    local doc="$1" who="$2" form="$3"
    shift 3
    run cms -sign -binary -md sha256 -in "$work/$doc" -signer "$work/$who.crt" -inkey "$work/user.key" \
        -outform "$form" -out "$work/sig" "$@"
    cat "$work/sig"
}

seed() {   # NAME DOC SIGNATURE-BYTES-FILE — one agreement_verify seed
    { cat "$work/$2"; printf '%s' "$kSep"; cat "$3"; } >"$corpus/agreement_verify/$1"
}

mkdir -p "$work/issued" "$out_data" "$corpus/agreement_verify" "$corpus/identity" "$corpus/router"
make_ca fuzz-ca "exemptd fuzz CA"
make_ca rogue-ca "exemptd fuzz CA"   # the same name, another key
run genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/user.key"

signer sam fuzz-ca sam@example.com emailProtection
signer revoked fuzz-ca sam@example.com emailProtection
signer noeku fuzz-ca sam@example.com clientAuth
signer expired fuzz-ca sam@example.com emailProtection 20200101000000Z 20210101000000Z
signer rogue rogue-ca sam@example.com emailProtection
run ca -batch -config "$work/fuzz-ca.cnf" -cert "$work/fuzz-ca.crt" -keyfile "$work/fuzz-ca.key" -revoke "$work/revoked.crt"
run ca -batch -config "$work/fuzz-ca.cnf" -cert "$work/fuzz-ca.crt" -keyfile "$work/fuzz-ca.key" -gencrl \
    -crl_lastupdate "$kStart" -crldays 36500 -out "$work/crl.pem"

document sam@example.com LAPTOP-0042 >"$work/agreement.yaml"
document jordan@example.com LAPTOP-0042 >"$work/jordan.yaml"
document sam@example.com LAPTOP-0043 >"$work/other-device.yaml"
document sam@example.com LAPTOP-0042 byod-v9 >"$work/unknown-template.yaml"

cp "$work/fuzz-ca.crt" "$out_data/fuzz-ca.pem"
cp "$work/crl.pem" "$out_data/fuzz-ca-crl.pem"
cp "$work/agreement.yaml" "$out_data/agreement.yaml"
sign agreement.yaml sam PEM >"$out_data/agreement.sig.pem"

seed good-pem agreement.yaml "$out_data/agreement.sig.pem"
sign agreement.yaml sam DER >"$work/s" && seed good-der agreement.yaml "$work/s"
sign agreement.yaml sam PEM -md sha512 >"$work/s" && seed sha512 agreement.yaml "$work/s"
sign agreement.yaml sam PEM -nodetach >"$work/s" && seed attached agreement.yaml "$work/s"
sign agreement.yaml sam PEM -md sha1 >"$work/s" && seed sha1 agreement.yaml "$work/s"
sign agreement.yaml sam PEM -noattr >"$work/s" && seed no-signed-attributes agreement.yaml "$work/s"
sign agreement.yaml sam PEM -nocerts >"$work/s" && seed no-certificates agreement.yaml "$work/s"
sign agreement.yaml sam DER -signer "$work/noeku.crt" -inkey "$work/user.key" >"$work/s" && seed two-signers agreement.yaml "$work/s"
for who in revoked noeku expired rogue; do
    sign agreement.yaml "$who" PEM >"$work/s" && seed "signer-$who" agreement.yaml "$work/s"
done
sign jordan.yaml sam PEM >"$work/s" && seed signer-mismatch jordan.yaml "$work/s"
sign unknown-template.yaml sam PEM >"$work/s" && seed unknown-template unknown-template.yaml "$work/s"
sign other-device.yaml sam DER >"$work/s" && seed other-device other-device.yaml "$work/s"
run cms -data_create -in "$work/agreement.yaml" -outform PEM -out "$work/s" && seed data-not-signed agreement.yaml "$work/s"

# POST /v1/agreements from an admin: header byte 0x03 (it-admin, raw target), then the request.
upload() {   # NAME DOC SIGNATURE-FILE
    printf '\x03POST /v1/agreements\n{"document": "%s", "signature": "%s"}' \
        "$(base64 -w0 "$work/$2")" "$(base64 -w0 "$3")" >"$corpus/router/$1"
}
upload agreement-upload-pem agreement.yaml "$out_data/agreement.sig.pem"
sign agreement.yaml sam DER >"$work/s" && upload agreement-upload-der agreement.yaml "$work/s"
sign jordan.yaml sam PEM >"$work/s" && upload agreement-upload-mismatch jordan.yaml "$work/s"

# Client certificates for identity_from_certificate, as DER (and one PEM).
client endpoint "URI:urn:exemptd:role:endpoint, URI:urn:exemptd:device:LAPTOP-0042"
client admin "URI:urn:exemptd:role:admin, email:it-admin@example.com"
client helpdesk "URI:urn:exemptd:role:helpdesk, email:alex@example.com"
client no-role "URI:urn:exemptd:device:LAPTOP-0042, email:sam@example.com"
client two-roles "URI:urn:exemptd:role:admin, URI:urn:exemptd:role:helpdesk, email:it-admin@example.com"
client two-devices "URI:urn:exemptd:role:endpoint, URI:urn:exemptd:device:A, URI:urn:exemptd:device:B"
client bad-device "URI:urn:exemptd:role:endpoint, URI:urn:exemptd:device:LAPTOP/0042"
client unknown-urn "URI:urn:exemptd:role:admin, URI:urn:exemptd:team:x, email:it-admin@example.com"
client two-emails "URI:urn:exemptd:role:admin, email:a@example.com, email:b@example.com"
client server-eku "URI:urn:exemptd:role:admin, email:it-admin@example.com" serverAuth
client ca-flag "URI:urn:exemptd:role:admin, email:it-admin@example.com" clientAuth TRUE
client mixed "URI:https://example.com/x, DNS:laptop.example.com, IP:127.0.0.1, URI:urn:exemptd:role:endpoint, URI:urn:exemptd:device:LAPTOP-0042"
for name in endpoint admin helpdesk no-role two-roles two-devices bad-device unknown-urn two-emails server-eku ca-flag mixed; do
    run x509 -in "$work/$name.crt" -outform DER -out "$corpus/identity/$name.der"
done
cp "$work/endpoint.crt" "$corpus/identity/endpoint.pem"
run x509 -in "$work/fuzz-ca.crt" -outform DER -out "$corpus/identity/ca.der"
run x509 -in "$work/sam.crt" -outform DER -out "$corpus/identity/agreement-signer.der"
echo "make-seeds.sh: wrote $out_data and the seeds under $corpus" >&2
