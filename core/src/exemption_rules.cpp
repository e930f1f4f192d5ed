#include "exemptd/exemption_rules.hpp"

#include "exemptd/identity.hpp"
#include "exemptd/json_reader.hpp"

#include <algorithm>
#include <regex>

namespace exemptd {
namespace {

ApiError rule(std::string code, std::string message)
{
    return api_error(422, std::move(code), std::move(message));
}

ApiError conflict(std::string code, std::string message)
{
    return api_error(409, std::move(code), std::move(message));
}

bool valid_subject_id(Subject const& s)
{
    static std::regex const kEmail{R"([^@\s<>]+@[^@\s<>]+)"};
    static std::regex const kAccount{R"([A-Za-z0-9][A-Za-z0-9._:@/-]{0,127})"};
    switch (s.kind) {
    case SubjectKind::device: return is_valid_device_id(s.id);
    case SubjectKind::user: return s.id.size() <= 254 && std::regex_match(s.id, kEmail);
    case SubjectKind::account: return std::regex_match(s.id, kAccount);
    }
    return false;
}

std::optional<ApiError> check_controls(Policy const& policy, Subject const& subject, Exemption const& e)
{
    if (e.controls.empty()) return rule("no_controls", "An exemption must cover at least one control.");
    for (auto it = e.controls.begin(); it != e.controls.end(); ++it) {
        if (std::find(std::next(it), e.controls.end(), *it) != e.controls.end())
            return rule("duplicate_control", "Control " + *it + " is listed twice.");
    }
    for (auto const& id : e.controls) {
        auto const* control = policy.find_control(id);
        if (control == nullptr) return rule("unknown_control", "The policy has no control " + id + ".");
        if (control->applies_to != subject.kind)
            return rule("subject_kind_mismatch", "Control " + id + " applies to " + std::string(to_string(control->applies_to)) +
                                                     "s, not to a " + std::string(to_string(subject.kind)) + ".");
    }
    for (auto const& id : e.compensating_controls) {
        auto const* control = policy.find_control(id);
        if (control == nullptr) return rule("unknown_control", "The policy has no control " + id + ".");
        if (subject.kind != SubjectKind::device || control->applies_to != SubjectKind::device)
            return rule("invalid_compensating_control",
                        "Compensating control " + id + " must be a device control checked on this device.");
        if (std::find(e.controls.begin(), e.controls.end(), id) != e.controls.end())
            return rule("invalid_compensating_control", "Control " + id + " cannot compensate for itself.");
    }
    return std::nullopt;
}

std::optional<ApiError> check_expiry(Policy const& policy, RiskLevel level, TimePoint expires_at, TimePoint now)
{
    if (expires_at <= now) return rule("expiry_in_past", "expires_at must be in the future.");
    int const max_days = policy.exemptions.max_days.at(level);
    if (expires_at > now + std::chrono::days{max_days})
        return rule("expiry_too_far", "A " + std::string(to_string(level)) + " risk exemption may last at most " +
                                          std::to_string(max_days) + " days.");
    return std::nullopt;
}

std::optional<RiskLevel> likelihood_or_impact(ObjectReader& reader, std::string_view key)
{
    auto const text = reader.string(key, Need::required, 16);
    auto const level = risk_level_from_string(text);
    if (!reader.error() && (!level || level == RiskLevel::critical)) reader.fail(key, "must be low, medium or high");
    return level;
}

// Reads the body's fields into `e`; answers the first field error.
std::optional<ApiError> read_request(boost::json::object const& body, Exemption& e)
{
    ObjectReader reader(body);
    reader.only({"subject", "controls", "justification", "risk", "mitigations", "compensating_controls", "evidence",
                 "agreement_id", "expires_at"});
    e.subject = reader.string("subject", Need::required, 300);
    e.controls = reader.strings("controls", Need::required, 32, 32);
    e.justification = reader.string("justification", Need::required, 4000);
    if (auto const* risk = reader.object("risk")) {
        ObjectReader risk_reader(*risk, "risk.");
        risk_reader.only({"likelihood", "impact", "level"});
        auto const likelihood = likelihood_or_impact(risk_reader, "likelihood");
        auto const impact = likelihood_or_impact(risk_reader, "impact");
        auto const stated = risk_reader.string("level", Need::optional, 16);
        if (risk_reader.error()) return risk_reader.error();
        e.likelihood = *likelihood;
        e.impact = *impact;
        // The level is derived; one stated alongside must agree, or the requester misjudged it.
        if (!stated.empty() && stated != to_string(risk_level(e.likelihood, e.impact)))
            return rule("risk_level_mismatch", "risk.level " + stated + " does not match likelihood x impact, which gives " +
                                                   std::string(to_string(risk_level(e.likelihood, e.impact))) + ".");
    }
    e.mitigations = reader.strings("mitigations", Need::optional, 32, 1000);
    e.compensating_controls = reader.strings("compensating_controls", Need::optional, 32, 32);
    e.evidence = reader.string("evidence", Need::optional, 4000);
    e.agreement_id = reader.string("agreement_id", Need::optional, 32);
    e.expires_at = reader.time("expires_at").value_or(TimePoint{});
    return reader.error();
}

std::optional<ApiError> check_authority(Policy const& policy, Exemption const& e, std::string const& actor,
                                        std::string_view verb)
{
    if (actor == e.requested_by)
        return rule("self_approval", "The requester of an exemption may not " + std::string(verb) + " it.");
    if (!policy.may_approve(actor, e.level))
        return rule("approver_not_authorized", actor + " may not " + std::string(verb) + " a " +
                                                   std::string(to_string(e.level)) + " risk exemption.");
    return std::nullopt;
}

std::optional<ApiError> expect_state(Exemption const& e, ExemptionState wanted, TimePoint now)
{
    auto const state = effective_state(e, now);
    if (state == wanted) return std::nullopt;
    std::string const code = wanted == ExemptionState::pending ? "exemption_not_pending" : "exemption_not_active";
    return conflict(code, "Exemption " + e.id + " is " + std::string(to_string(state)) + ", not " +
                              std::string(to_string(wanted)) + ".");
}

std::chrono::days review_interval(Policy const& policy, RiskLevel level)
{
    return std::chrono::days{policy.exemptions.review_every_days.at(level)};
}

}  // namespace

ApiResult<Exemption> request_exemption(Policy const& policy, std::string_view body, std::string const& requester,
                                       TimePoint now)
{
    auto object = parse_json_object(body);
    if (!object) return object.error();
    Exemption e;
    if (auto const error = read_request(*object, e)) return *error;
    auto const subject = parse_subject(e.subject);
    if (!subject || !valid_subject_id(*subject))
        return rule("invalid_subject", "subject must be device:<id>, user:<email> or account:<name>.");
    e.level = risk_level(e.likelihood, e.impact);
    if (auto const error = check_controls(policy, *subject, e)) return *error;
    if (auto const error = check_expiry(policy, e.level, e.expires_at, now)) return *error;
    e.requested_by = requester;
    e.requested_at = now;
    e.state = ExemptionState::pending;
    return e;
}

ApiResult<Exemption> approve_exemption(Policy const& policy, Exemption e, std::string const& approver,
                                       std::string const& note, TimePoint now, AgreementCheck const& agreement_check)
{
    if (auto const error = expect_state(e, ExemptionState::pending, now)) return *error;
    if (auto const error = check_authority(policy, e, approver, "approve")) return *error;
    for (auto const& id : e.controls) {
        auto const* control = policy.find_control(id);
        if (control == nullptr) return rule("unknown_control", "The policy no longer has control " + id + ".");
        if (control->requires_agreement.empty()) continue;
        if (auto const error = agreement_check(e, control->requires_agreement)) return *error;
    }
    e.state = ExemptionState::active;
    e.decided_by = approver;
    e.decided_at = now;
    e.decision_note = note;
    e.next_review_at = now + review_interval(policy, e.level);
    return e;
}

ApiResult<Exemption> reject_exemption(Policy const& policy, Exemption e, std::string const& actor,
                                      std::string const& note, TimePoint now)
{
    if (auto const error = expect_state(e, ExemptionState::pending, now)) return *error;
    if (!policy.may_approve(actor, e.level))
        return rule("approver_not_authorized",
                    actor + " may not decide a " + std::string(to_string(e.level)) + " risk exemption.");
    e.state = ExemptionState::rejected;
    e.decided_by = actor;
    e.decided_at = now;
    e.decision_note = note;
    return e;
}

ApiResult<Exemption> renew_exemption(Policy const& policy, Exemption e, std::string const& actor,
                                     std::optional<TimePoint> expires_at, std::string const& note, TimePoint now)
{
    if (auto const error = expect_state(e, ExemptionState::active, now)) return *error;
    if (static_cast<int>(e.renewals.size()) >= policy.exemptions.max_renewals)
        return rule("max_renewals_reached", "Exemption " + e.id + " has been renewed the maximum of " +
                                                std::to_string(policy.exemptions.max_renewals) + " times.");
    if (auto const error = check_authority(policy, e, actor, "renew")) return *error;
    if (!expires_at) return api_error(400, "invalid_field", "Field 'expires_at' is required.");
    if (*expires_at <= e.expires_at) return rule("expiry_not_extended", "A renewal must move expires_at later.");
    if (auto const error = check_expiry(policy, e.level, *expires_at, now)) return *error;
    e.renewals.push_back({actor, now, note, e.expires_at, *expires_at});
    e.expires_at = *expires_at;
    return e;
}

ApiResult<Exemption> review_exemption(Policy const& policy, Exemption e, std::string const& actor,
                                      std::string const& note, TimePoint now)
{
    if (auto const error = expect_state(e, ExemptionState::active, now)) return *error;
    if (note.empty()) return api_error(400, "invalid_field", "Field 'note' is required: say what the review found.");
    e.reviews.push_back({actor, now, note});
    e.next_review_at = now + review_interval(policy, e.level);
    return e;
}

ApiResult<Exemption> revoke_exemption(Exemption e, std::string const& actor, std::string const& reason, TimePoint now)
{
    auto const state = effective_state(e, now);
    if (state != ExemptionState::pending && state != ExemptionState::active)
        return conflict("exemption_closed", "Exemption " + e.id + " is already " + std::string(to_string(state)) + ".");
    if (reason.empty()) return api_error(400, "invalid_field", "Field 'reason' is required.");
    e.state = ExemptionState::revoked;
    e.revoked_by = actor;
    e.revoked_at = now;
    e.revoked_reason = reason;
    return e;
}

}  // namespace exemptd
