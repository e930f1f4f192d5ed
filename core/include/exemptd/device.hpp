#pragma once
// A device as the registry and the API see it.

#include "exemptd/decision.hpp"
#include "exemptd/time.hpp"

#include <boost/json/fwd.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace exemptd {

// A device's entry in the enrollment registry.
struct Enrollment {
    bool enrolled = false;
    std::string owner;   // the person responsible (BYOD: the device's owner)
    std::string source;  // "mdm", "manual", "import", ...
    TimePoint updated_at{};
    std::string updated_by;
};

// Everything the daemon keeps about one device.
struct DeviceRecord {
    std::string device_id;
    std::optional<Enrollment> enrollment;  // absent until the registry knows the device
    std::string hostname;
    std::string serial;
    std::string os_name;
    std::string os_version;
    std::optional<TimePoint> last_checkin;
    std::optional<Decision> latest_decision;
};

// The API's JSON for a device. Thread-safe.
[[nodiscard]] boost::json::object device_to_json(DeviceRecord const& device);

// Whether an enrollment owner is shaped like an email address: something, '@', something, and no
// whitespace or angle brackets. A sanity check on registry input, not an RFC 5322 parser.
[[nodiscard]] bool looks_like_email(std::string_view s) noexcept;

}  // namespace exemptd
