#include "exemptd/agreement_record.hpp"

#include "exemptd/exemption.hpp"

#include <boost/json/object.hpp>

namespace exemptd {
namespace {

ApiError refuse(std::string code, std::string message)
{
    return api_error(422, std::move(code), std::move(message));
}

}  // namespace

boost::json::object agreement_to_json(AgreementRecord const& a)
{
    auto const time_or_null = [](std::optional<TimePoint> t) {
        return t ? boost::json::value(format_rfc3339(*t)) : boost::json::value(nullptr);
    };
    return {{"id", a.id},
            {"agreement", a.template_name},
            {"user", a.user},
            {"device_id", a.device_id},
            {"device_serial", a.device_serial},
            {"terms_sha256", a.terms_sha256},
            {"accepted_at", format_rfc3339(a.accepted_at)},
            {"document_sha256", a.document_sha256},
            {"signer", {{"subject", a.signer_subject}, {"email", a.signer_email}, {"fingerprint", a.signer_fingerprint}}},
            {"signed_at", time_or_null(a.signed_at)},
            {"verification", {{"result", a.valid ? "verified" : "invalid"},
                              {"verified_at", format_rfc3339(a.verified_at)},
                              {"reason", a.valid ? boost::json::value(nullptr) : boost::json::value(a.invalid_reason)},
                              {"invalidated_at", time_or_null(a.invalidated_at)}}},
            {"uploaded_by", a.uploaded_by},
            {"document", a.document}};
}

std::optional<ApiError> check_agreement_binding(Exemption const& e, std::string const& template_name,
                                                AgreementRecord const* agreement, std::string const& owner)
{
    if (e.agreement_id.empty())
        return refuse("agreement_required",
                      "A control of this exemption requires a verified " + template_name + " agreement; set agreement_id.");
    if (agreement == nullptr) return refuse("agreement_not_found", "No agreement " + e.agreement_id + " is stored.");
    if (!agreement->valid)
        return refuse("agreement_invalid", "Agreement " + agreement->id + " is no longer valid: " + agreement->invalid_reason + ".");
    if (agreement->template_name != template_name)
        return refuse("agreement_template_mismatch",
                      "Agreement " + agreement->id + " is a " + agreement->template_name + " agreement, not " + template_name + ".");
    auto const subject = parse_subject(e.subject);
    if (!subject || subject->kind != SubjectKind::device || subject->id != agreement->device_id)
        return refuse("agreement_device_mismatch",
                      "Agreement " + agreement->id + " is for device " + agreement->device_id + ", not " + e.subject + ".");
    if (!owner.empty() && agreement->signer_email != owner)
        return refuse("agreement_owner_mismatch", "Agreement " + agreement->id + " was signed by " +
                                                      agreement->signer_email + ", but the device's owner is " + owner + ".");
    return std::nullopt;
}

}  // namespace exemptd
