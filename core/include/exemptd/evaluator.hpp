#pragma once
// Evaluates one device against the policy: every device control, then exemption coverage.

#include "exemptd/agreement_record.hpp"
#include "exemptd/decision.hpp"
#include "exemptd/exemption.hpp"
#include "exemptd/policy.hpp"
#include "exemptd/posture.hpp"

#include <concepts>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace exemptd {

// What the evaluator knows about a device besides its report.
struct DeviceFacts {
    std::string device_id;
    bool enrolled = false;                             // from the registry, never the report
    Facts facts;                                       // from the latest report
    std::map<std::string, TimePoint> failing_since;    // control id -> start of its failure streak
    std::string owner;                                 // the registry's owner, empty when none
    std::map<std::string, AgreementRecord> agreements; // agreements named by the device's exemptions
};

// An exemption as the evaluator needs it. The caller passes only exemptions for this device
// whose state is active and whose agreement binding (if any) holds.
struct CoveringExemption {
    std::string id;
    std::vector<std::string> controls;
    std::vector<std::string> compensating_controls;
    TimePoint expires_at{};
};

// Evaluates every device control. A failure is covered by the first exemption that names the
// control, has not expired at `now`, and whose compensating controls all pass; an uncovered
// failure inside the control's grace_hours (counted from failing_since) allows with basis
// grace. The returned decision's failing_since values are the streaks to store. Pure and
// thread-safe.
[[nodiscard]] Decision evaluate(Policy const& policy, DeviceFacts const& device,
                                std::span<CoveringExemption const> exemptions, TimePoint now);

// The failure streaks to remember after `decision`: failing controls keep their start time.
[[nodiscard]] std::map<std::string, TimePoint> failure_streaks(Decision const& decision);

// Evaluates a device inside a store's write transaction: the store supplies the registry view,
// the latest facts and the device's exemptions recorded as active (the evaluator checks expiry).
// Made from any callable of that shape.
class Evaluate {
public:
    using Function = std::function<Decision(DeviceFacts const&, std::vector<Exemption> const& active)>;

    Evaluate() = default;
    template <class F>
        requires(!std::same_as<std::remove_cvref_t<F>, Evaluate> &&
                 std::is_invocable_r_v<Decision, F const&, DeviceFacts const&, std::vector<Exemption> const&>)
    Evaluate(F function, std::shared_ptr<Policy const> policy = nullptr)  // NOLINT: implicit
        : function_(std::move(function)), policy_(std::move(policy))
    {
    }

    Decision operator()(DeviceFacts const& device, std::vector<Exemption> const& active) const
    {
        return function_(device, active);
    }
    // The version of the policy it evaluates against (Policy::version), when it names that
    // policy; empty otherwise. Within a decision's stable_until, a store may take that decision
    // again for the same inputs under the same version rather than evaluating them again.
    [[nodiscard]] std::string const& policy_version() const noexcept
    {
        static std::string const none;
        return policy_ ? policy_->version : none;
    }
    // Whether two reports are the same input to its decisions: the same facts (types and values,
    // present or absent) under each name the policy checks (Policy::checked_facts), or, when it
    // names no policy that lists them, the same facts altogether.
    [[nodiscard]] bool same_input(Facts const& a, Facts const& b) const;

private:
    Function function_;
    std::shared_ptr<Policy const> policy_;  // may also own what function_ evaluates against
};

// `evaluate` against `policy` at `now`. An active exemption covers only the controls the policy
// knows, and a control that requires a BYOD agreement only while the exemption's agreement
// (looked up in DeviceFacts::agreements) still binds: a revoked signer or a new owner ends the
// cover at once.
[[nodiscard]] Evaluate policy_evaluator(std::shared_ptr<Policy const> policy, TimePoint now);

}  // namespace exemptd
