#pragma once
// The API's routes as the router resolves them; metrics label requests by route name.

#include <cstddef>
#include <string>
#include <string_view>

namespace exemptd::daemon {

enum class Action {
    checkin,
    device_list,
    device_show,
    device_decision,
    device_enrollment,
    device_explain,
    exemption_request,
    exemption_list,
    exemption_show,
    exemption_change,
    agreement_upload,
    agreement_show,
    audit_list,
    audit_verify,
    device_import,
};

inline constexpr std::size_t kActionCount = static_cast<std::size_t>(Action::device_import) + 1;

// A stable label for metrics and logs: "checkin", "device_list", ...
[[nodiscard]] std::string_view action_name(Action action) noexcept;

// A request line resolved to an action, with the id it names (device, exemption or agreement),
// the life-cycle verb of an exemption change, and the raw query string.
struct Route {
    Action action;
    std::string id;
    std::string query;
    std::string_view verb;  // one of the router's static verbs, or empty
};

}  // namespace exemptd::daemon
