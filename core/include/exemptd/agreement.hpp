#pragma once
// Signed BYOD agreements (SPEC §7): a UTF-8 YAML document and a detached CMS SignedData over its
// exact bytes, verified in-process with OpenSSL against the agreements CA and its optional CRL.

#include "exemptd/policy.hpp"
#include "exemptd/time.hpp"

#include <boost/system/result.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace exemptd {

namespace detail {
struct AgreementTrust;  // trust anchors, CRLs and the signature cache; defined in agreement.cpp
}  // namespace detail

// The largest document, and the largest signature, that a verifier reads (after base64 decoding).
inline constexpr std::size_t kMaxAgreementBytes = 64 * 1024;

// The fields of an agreement document, exactly as signed.
struct AgreementDocument {
    std::string agreement;      // template name
    std::string user;           // e-mail address of the signer
    std::string device_id;      // 1-64 of [A-Za-z0-9._:-]
    std::string device_serial;
    std::string terms_sha256;   // 64 hex digits, as written in the document
    TimePoint accepted_at{};
};

// The outcome of one verification. `ok` is true only when every check of SPEC §7 held; otherwise
// `reason` is one refusal slug and `message` a sentence for a person. The other fields are filled
// as far as verification got, so that a refusal can be audited too.
struct AgreementVerification {
    bool ok = false;
    std::string reason;   // malformed_document, malformed_signature, attached_content,
                          // multiple_signers, no_signed_attributes, weak_digest, no_signing_time,
                          // bad_signature, untrusted_signer, signer_expired, signer_not_yet_valid,
                          // signer_revoked, crl_unavailable, not_email_protection, signer_mismatch,
                          // unknown_template, terms_mismatch
    std::string message;
    AgreementDocument document;          // filled when the YAML parsed
    std::string document_sha256;         // lowercase hex of the exact document bytes
    std::string signer_subject;          // RFC 2253, e.g. "CN=sam,O=exemptd dev"
    std::string signer_email;            // the signer certificate's email SAN(s), comma-separated
    std::string signer_fingerprint;      // lowercase hex SHA-256 of the signer certificate's DER
    std::optional<TimePoint> signed_at;  // the signingTime signed attribute
};

// Verifies signed agreements against one agreements CA bundle and an optional CRL. Immutable after
// load(): a CA or CRL change means loading a new verifier. verify() and verify_signer() are
// thread-safe and may run concurrently on one verifier.
//
// Checks, in this order (the first failure is the reason): the document is a YAML mapping of exactly
// the six fields; the signature is a PEM or DER CMS SignedData of data; it is detached; it has
// exactly one SignerInfo, with signed attributes, a SHA-256/384/512 digest and one signingTime; the
// signer certificate is in the CMS; the signature verifies over the exact document bytes and the
// signer chains to the CA for S/MIME signing at signing time; the signer is valid now and not
// revoked (when a CRL is configured); it has extendedKeyUsage emailProtection; its email SAN equals
// `user`; `agreement` names a policy template; `terms_sha256` equals that template's terms hash.
class AgreementVerifier {
public:
    // How many successful signature checks a verifier remembers by default.
    static constexpr std::size_t kDefaultCacheEntries = 4096;

    // Loads the trust anchors from `ca_file` (a PEM bundle of CA certificates) and, when `crl_file`
    // is not empty, the PEM CRL(s) in it. Fails, with a message naming the file and the reason, when
    // the CA bundle cannot be read, holds no certificate or holds a certificate that is not a CA.
    // A configured CRL that is missing, unparsable, without nextUpdate or not signed by a CA in the
    // bundle does not fail the load: the verifier then refuses every agreement with
    // crl_unavailable (fail closed) and crl_problem() says why. `cache_entries` bounds the cache of
    // successful CMS signature checks keyed by the SHA-256 of the document and of the signature;
    // 0 turns the cache off. Thread-safe.
    [[nodiscard]] static boost::system::result<std::shared_ptr<AgreementVerifier const>, std::string>
    load(std::string const& ca_file, std::string const& crl_file, std::size_t cache_entries = kDefaultCacheEntries);

    ~AgreementVerifier();
    AgreementVerifier(AgreementVerifier const&) = delete;
    AgreementVerifier& operator=(AgreementVerifier const&) = delete;

    // Verifies `document` and its detached `signature` (PEM or DER bytes, already base64-decoded)
    // against `policy`'s agreement templates, with validity checked both at the signing time and at
    // `now`. Never throws for bad input; throws std::bad_alloc only when OpenSSL cannot allocate.
    // The cache only skips the CMS signature check: validity now and the CRL are checked on every
    // call. Thread-safe.
    [[nodiscard]] AgreementVerification verify(std::string_view document, std::string_view signature,
                                               Policy const& policy, TimePoint now) const;

    // The same checks as verify() except unknown_template and terms_mismatch: for re-checking a
    // stored agreement when the CRL (a new verifier) or the clock moves on. Thread-safe.
    [[nodiscard]] AgreementVerification verify_signer(std::string_view document, std::string_view signature,
                                                      TimePoint now) const;

    // True when a CRL file was configured (whether or not it could be used).
    [[nodiscard]] bool has_crl() const noexcept;

    // Why the configured CRL cannot be used, or empty when it can (or none is configured).
    [[nodiscard]] std::string const& crl_problem() const noexcept;

private:
    explicit AgreementVerifier(std::unique_ptr<detail::AgreementTrust> trust);

    std::unique_ptr<detail::AgreementTrust const> trust_;
};

// Decodes standard base64 (RFC 4648 §4) strictly, as the document and signature fields of
// POST /v1/agreements need: the length must be a multiple of 4, padding only at the end and only
// as needed, unused bits zero, and no whitespace or characters outside the alphabet. Returns
// nullopt for anything else; "" decodes to "". Thread-safe.
[[nodiscard]] std::optional<std::string> decode_base64(std::string_view text);

}  // namespace exemptd
