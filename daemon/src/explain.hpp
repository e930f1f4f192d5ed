#pragma once
// The help desk's answer to "why is this device allowed (or denied)?": every control with its
// rule and observed value, the full record of each exemption that covers a failure, and what
// would make a denied device allowed.

#include "exemptd/decision.hpp"
#include "exemptd/device.hpp"
#include "exemptd/exemption.hpp"
#include "exemptd/policy.hpp"

#include <boost/json/object.hpp>

#include <functional>
#include <optional>

namespace exemptd::daemon {

// Looks an exemption up by id (nullopt when it cannot be found).
using ExemptionLookup = std::function<std::optional<Exemption>(std::string const& id)>;

// Builds the explanation of `decision` for `device` as of `at`. `historical` marks a decision
// read from the history rather than evaluated now. Pure apart from `lookup`; thread-safe.
[[nodiscard]] boost::json::object explain(Policy const& policy, DeviceRecord const& device, Decision const& decision,
                                          ExemptionLookup const& lookup, TimePoint at, bool historical);

}  // namespace exemptd::daemon
