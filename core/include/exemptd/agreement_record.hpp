#pragma once
// A verified BYOD agreement as the daemon stores it, and the binding rule that lets it back an
// exemption (SPEC §6-7).

#include "exemptd/error.hpp"
#include "exemptd/time.hpp"

#include <boost/json/fwd.hpp>

#include <optional>
#include <string>

namespace exemptd {

struct Exemption;

struct AgreementRecord {
    std::string id;  // AG-000001
    std::string template_name;
    std::string user;
    std::string device_id;
    std::string device_serial;
    std::string terms_sha256;
    TimePoint accepted_at{};
    std::string document_sha256;
    std::string signature_sha256;
    std::string signer_subject;
    std::string signer_email;
    std::string signer_fingerprint;
    std::optional<TimePoint> signed_at;
    TimePoint verified_at{};
    std::string uploaded_by;
    bool valid = true;            // false once the signer is revoked (CRL reload)
    std::string invalid_reason;   // why it stopped being valid
    std::optional<TimePoint> invalidated_at;
    std::string document;         // the exact bytes that were verified
    std::string signature;        // the signature as uploaded (PEM or DER)
};

// The API's JSON: every field but the raw signature; the document as text. Thread-safe.
[[nodiscard]] boost::json::object agreement_to_json(AgreementRecord const& a);

// Whether `agreement` backs exemption `e` for a control requiring `template_name`: it must exist,
// still be valid, be of that template, name the exemption's device, and be signed by the
// device's owner when the registry records one (`owner` empty: none recorded). Answers the
// refusal (422 agreement_required, agreement_not_found, agreement_invalid,
// agreement_template_mismatch, agreement_device_mismatch, agreement_owner_mismatch) or nullopt.
[[nodiscard]] std::optional<ApiError> check_agreement_binding(Exemption const& e, std::string const& template_name,
                                                              AgreementRecord const* agreement,
                                                              std::string const& owner);

}  // namespace exemptd
