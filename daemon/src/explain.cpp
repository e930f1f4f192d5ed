#include "explain.hpp"

#include <boost/json/array.hpp>

namespace exemptd::daemon {
namespace {

std::string status_of(Decision const& d, std::string const& control_id)
{
    for (auto const& c : d.controls) {
        if (c.id == control_id) return c.pass ? "pass" : "fail";
    }
    return "not evaluated";
}

// The covering exemption in full, with the current status of its compensating controls.
boost::json::object cover_json(Exemption const& e, Decision const& decision, TimePoint at)
{
    auto out = exemption_to_json(e, at);
    boost::json::array compensating;
    for (auto const& id : e.compensating_controls)
        compensating.push_back({{"id", id}, {"status", status_of(decision, id)}});
    out["compensating_controls"] = std::move(compensating);
    return out;
}

// What would allow a device whose control fails without cover or grace.
std::string remedy(Control const* control, ControlResult const& result)
{
    std::string const fix = control != nullptr && control->check && control->check->enrolled
                                ? "enroll the device in MDM"
                                : "fix it on the device (" + result.reason + ")";
    std::string exemption = "or request an exemption for " + result.id;
    if (control != nullptr && !control->requires_agreement.empty())
        exemption += " backed by a signed " + control->requires_agreement + " agreement";
    return result.id + ": " + fix + ", " + exemption + ".";
}

boost::json::object control_json(Policy const& policy, ControlResult const& result, Decision const& decision,
                                 ExemptionLookup const& lookup, TimePoint at)
{
    auto const* control = policy.find_control(result.id);
    boost::json::object out{{"id", result.id},
                            {"title", result.title},
                            {"status", result.pass ? "pass" : "fail"},
                            {"rule", control != nullptr && control->check ? describe_check(*control->check) : ""},
                            {"observed", result.observed}};
    if (!result.reason.empty()) out["reason"] = result.reason;
    if (result.failing_since) out["failing_since"] = format_rfc3339(*result.failing_since);
    if (result.grace_until) out["grace_until"] = format_rfc3339(*result.grace_until);
    if (!result.covered_by.empty()) {
        auto const cover = lookup(result.covered_by);
        out["covered_by"] = result.covered_by;
        if (cover) out["exemption"] = cover_json(*cover, decision, at);
    }
    return out;
}

}  // namespace

boost::json::object explain(Policy const& policy, DeviceRecord const& device, Decision const& decision,
                            ExemptionLookup const& lookup, TimePoint at, bool historical)
{
    boost::json::array controls;
    boost::json::array to_allow;
    for (auto const& result : decision.controls) {
        controls.push_back(control_json(policy, result, decision, lookup, at));
        if (!result.pass && result.covered_by.empty() && !result.grace_until)
            to_allow.push_back(boost::json::value(remedy(policy.find_control(result.id), result)));
    }
    boost::json::object out{{"device_id", device.device_id},
                            {"at", format_rfc3339(at)},
                            {"source", historical ? "history" : "live"},
                            {"decision", decision.allow ? "allow" : "deny"},
                            {"basis", to_string(decision.basis)},
                            {"evaluated_at", format_rfc3339(decision.evaluated_at)},
                            {"policy_version", decision.policy_version},
                            {"controls", std::move(controls)},
                            {"to_allow", std::move(to_allow)}};
    if (device.enrollment)
        out["enrollment"] = {{"enrolled", device.enrollment->enrolled}, {"owner", device.enrollment->owner},
                             {"source", device.enrollment->source}};
    else
        out["enrollment"] = nullptr;
    return out;
}

}  // namespace exemptd::daemon
