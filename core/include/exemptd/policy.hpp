#pragma once
// The compliance policy (SPEC §5): controls, exemption rules, agreement templates, check-in timing.

#include "exemptd/posture.hpp"

#include <boost/system/result.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace exemptd {

enum class SubjectKind { device, user, account };
enum class RiskLevel { low, medium, high, critical };

[[nodiscard]] std::string_view to_string(SubjectKind kind) noexcept;
[[nodiscard]] std::string_view to_string(RiskLevel level) noexcept;
[[nodiscard]] std::optional<RiskLevel> risk_level_from_string(std::string_view text) noexcept;

// What a control checks. A check names either enrollment or one posture fact; a fact check
// may combine `equals`, `min` and `max` (all must hold).
struct Check {
    std::optional<bool> enrolled;  // set for {enrolled: true|false}
    std::string fact;              // set for fact checks
    std::optional<FactValue> equals;
    std::optional<double> min;
    std::optional<double> max;
};

struct Control {
    std::string id;
    std::string title;
    SubjectKind applies_to = SubjectKind::device;
    std::optional<Check> check;  // absent for documentary (user/account) controls
    int grace_hours = 0;
    std::string requires_agreement;  // template name, or empty
};

struct ExemptionRules {
    std::map<RiskLevel, int> max_days;
    std::map<RiskLevel, int> review_every_days;
    std::map<RiskLevel, std::vector<std::string>> approvers;
    int max_renewals = 0;
};

struct AgreementTemplate {
    std::string name;
    std::string terms_file;    // absolute path
    std::string terms_sha256;  // lowercase hex of the terms file's bytes
};

struct CheckinRules {
    int interval_seconds = 900;
    int stale_after_hours = 72;
    int max_clock_skew_seconds = 300;
};

struct Policy {
    std::vector<Control> controls;
    ExemptionRules exemptions;
    std::map<std::string, AgreementTemplate, std::less<>> agreements;
    CheckinRules checkin;
    std::string version;  // "sha256:<hex of the policy file's bytes>"
    std::string source;   // the file it came from
    // The facts its device controls check, sorted, each once: a device's decision depends on its
    // report through these alone. Set by the parser; nullopt in a policy made otherwise, which
    // then promises nothing.
    std::optional<std::vector<std::string>> checked_facts;

    // The control with this id, or nullptr.
    [[nodiscard]] Control const* find_control(std::string_view id) const noexcept;

    // True when `approver` is listed for `level` or any higher level.
    [[nodiscard]] bool may_approve(std::string_view approver, RiskLevel level) const;
};

// The rule a check enforces, for people: "enrolled in MDM", "disk_encrypted = true",
// "1 <= screen_lock_seconds <= 900".
[[nodiscard]] std::string describe_check(Check const& check);

// Why a configuration or policy file was refused: the file, the 1-based line (0 when unknown)
// and the reason.
struct LoadError {
    std::string file;
    int line = 0;
    std::string reason;

    // "file:line: reason".
    [[nodiscard]] std::string to_string() const;
};

[[noreturn]] void throw_exception_from_error(LoadError const& e, boost::source_location const& loc);

using PolicyResult = boost::system::result<Policy, LoadError>;

// Parses policy YAML strictly: unknown keys, wrong types, missing required fields and dangling
// references (an unknown compensating or template name, a missing terms file) are refused.
// Relative terms files resolve against `base_dir`. Thread-safe.
[[nodiscard]] PolicyResult parse_policy(std::string_view yaml, std::string const& file_name,
                                        std::string const& base_dir);

// True when the YAML file at `path` is a mapping with a `controls` key, i.e. meant as a policy
// rather than a daemon configuration. Thread-safe.
[[nodiscard]] bool looks_like_policy(std::string const& path);

// Reads and parses a policy file; relative paths inside resolve against the file's folder.
[[nodiscard]] PolicyResult load_policy_file(std::string const& path);

}  // namespace exemptd
