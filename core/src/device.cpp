#include "exemptd/device.hpp"

#include <boost/json/object.hpp>

namespace exemptd {

boost::json::object device_to_json(DeviceRecord const& device)
{
    boost::json::object out{{"device_id", device.device_id}};
    if (device.enrollment) {
        auto const& e = *device.enrollment;
        out["enrollment"] = {{"enrolled", e.enrolled},
                             {"owner", e.owner},
                             {"source", e.source},
                             {"updated_at", format_rfc3339(e.updated_at)},
                             {"updated_by", e.updated_by}};
    } else {
        out["enrollment"] = nullptr;
    }
    out["hostname"] = device.hostname;
    out["serial"] = device.serial;
    out["os"] = {{"name", device.os_name}, {"version", device.os_version}};
    if (device.last_checkin)
        out["last_checkin"] = format_rfc3339(*device.last_checkin);
    else
        out["last_checkin"] = nullptr;
    if (device.latest_decision)
        out["decision"] = decision_to_json(*device.latest_decision);
    else
        out["decision"] = nullptr;
    return out;
}

bool looks_like_email(std::string_view s) noexcept
{
    auto const at = s.find('@');
    return at != std::string_view::npos && at > 0 && at + 1 < s.size() && s.find_first_of(" \t\r\n<>") == s.npos;
}

}  // namespace exemptd
