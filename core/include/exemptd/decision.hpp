#pragma once
// The outcome of evaluating a device against the policy (SPEC §4 "Decision").

#include "exemptd/error.hpp"
#include "exemptd/time.hpp"

#include <boost/json/fwd.hpp>

#include <optional>
#include <string>
#include <vector>

namespace exemptd {

enum class Basis { compliant, exempted, grace, noncompliant };

[[nodiscard]] std::string_view to_string(Basis basis) noexcept;

struct ControlResult {
    std::string id;
    std::string title;
    bool pass = false;
    std::string reason;                     // why it failed; empty on pass
    std::string observed;                   // the value seen, as text ("" when absent)
    std::string covered_by;                 // exemption id covering a failure, or empty
    std::optional<TimePoint> failing_since; // first failure of the current streak
    std::optional<TimePoint> grace_until;   // set while a failure is inside grace_hours
};

struct Decision {
    std::string device_id;
    bool allow = false;
    Basis basis = Basis::noncompliant;
    std::vector<ControlResult> controls;
    std::string policy_version;
    TimePoint evaluated_at{};
    int next_checkin_seconds = 900;
    // Not part of the JSON. Evaluated again before this time, from the same facts, registry
    // entry, exemptions and policy, and with this decision's failure streaks, the device gets this
    // same decision but for evaluated_at: no exemption expires and no grace ends before it. The
    // default promises nothing.
    TimePoint stable_until{};
};

// The SPEC JSON for a decision. Thread-safe.
[[nodiscard]] boost::json::object decision_to_json(Decision const& d);
// The same as text: exactly boost::json::serialize(decision_to_json(d)), without the DOM.
// Thread-safe.
[[nodiscard]] std::string encode_decision(Decision const& d);

// Replaces the evaluated_at of `json`, a decision's text as encode_decision writes it, with `at`:
// the text encode_decision writes for the same decision evaluated at `at`. False, with `json`
// unchanged, when it has no evaluated_at of the usual width (20 bytes). Thread-safe.
[[nodiscard]] bool restamp_decision(std::string& json, TimePoint at);

// Parses a decision as the daemon sends it; the client and the store use it. Thread-safe.
[[nodiscard]] Result<Decision> decode_decision(std::string_view json);
[[nodiscard]] Result<Decision> decision_from_json(boost::json::value const& v);

}  // namespace exemptd
