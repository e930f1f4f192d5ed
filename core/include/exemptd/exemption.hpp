#pragma once
// An exemption: a documented, approved, expiring exception to one or more controls (SPEC §6).

#include "exemptd/error.hpp"
#include "exemptd/policy.hpp"
#include "exemptd/time.hpp"

#include <boost/json/fwd.hpp>

#include <optional>
#include <string>
#include <vector>

namespace exemptd {

enum class ExemptionState { pending, active, rejected, expired, revoked };

[[nodiscard]] std::string_view to_string(ExemptionState state) noexcept;
[[nodiscard]] std::optional<ExemptionState> exemption_state_from_string(std::string_view text) noexcept;

// Likelihood and impact are each low, medium or high (RiskLevel::critical is not allowed).
// The level comes from the product of their ranks 1-3: 1-2 low, 3-4 medium, 6 high, 9 critical.
[[nodiscard]] RiskLevel risk_level(RiskLevel likelihood, RiskLevel impact) noexcept;

struct Review {
    std::string by;
    TimePoint at{};
    std::string note;
};

struct Renewal {
    std::string by;
    TimePoint at{};
    std::string note;
    TimePoint previous_expires_at{};
    TimePoint expires_at{};
};

struct Exemption {
    std::string id;       // EX-000001
    std::string subject;  // device:LAPTOP-0042, user:jordan@example.com, account:aws-root
    std::vector<std::string> controls;
    std::string justification;
    RiskLevel likelihood = RiskLevel::low;
    RiskLevel impact = RiskLevel::low;
    RiskLevel level = RiskLevel::low;
    std::vector<std::string> mitigations;
    std::vector<std::string> compensating_controls;
    std::string evidence;
    std::string agreement_id;
    std::string requested_by;
    TimePoint requested_at{};
    std::string decided_by;  // approver or rejecter
    std::optional<TimePoint> decided_at;
    std::string decision_note;
    TimePoint expires_at{};
    std::optional<TimePoint> next_review_at;
    std::vector<Review> reviews;
    std::vector<Renewal> renewals;
    std::string revoked_by;
    std::optional<TimePoint> revoked_at;
    std::string revoked_reason;
    ExemptionState state = ExemptionState::pending;
    std::optional<TimePoint> overdue_review_flagged;  // the review date the sweeper last flagged
};

// The subject's kind and id: "device:X" -> {device, "X"}. nullopt when malformed.
struct Subject {
    SubjectKind kind;
    std::string id;
};
[[nodiscard]] std::optional<Subject> parse_subject(std::string_view text);

// The state as of `now`: an active or pending exemption whose expires_at has passed is expired
// even before the sweeper records it.
[[nodiscard]] ExemptionState effective_state(Exemption const& e, TimePoint now) noexcept;

// True when an active review date has passed.
[[nodiscard]] bool review_overdue(Exemption const& e, TimePoint now) noexcept;

// The API's JSON for an exemption as of `now` (state is the effective state). Thread-safe.
[[nodiscard]] boost::json::object exemption_to_json(Exemption const& e, TimePoint now);

// Storage form: every field, with the recorded (not effective) state.
[[nodiscard]] std::string encode_exemption_record(Exemption const& e);
[[nodiscard]] Result<Exemption> decode_exemption_record(std::string_view json);

}  // namespace exemptd
