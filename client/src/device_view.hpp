#pragma once
// Reading the daemon's device objects (SPEC §4, GET /v1/devices) and showing them to people.

#include "client_error.hpp"

#include "exemptd/device.hpp"

#include <boost/json/fwd.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace exemptd::client {

// Reads one device object: device_id (required), enrollment (object or null), hostname, serial,
// os {name, version}, last_checkin (RFC 3339 or null) and decision (object or null). Missing
// optional strings read as empty. Fails with "unexpected device object: reason". Pure.
[[nodiscard]] ClientResult<DeviceRecord> device_from_json(boost::json::value const& value);

// Reads a body holding one device object. Pure.
[[nodiscard]] ClientResult<DeviceRecord> device_from_body(std::string_view body);

// Reads a body {"devices": [...]}. Pure.
[[nodiscard]] ClientResult<std::vector<DeviceRecord>> device_list_from_body(std::string_view body);

// The table of `exemptctl device list`: DEVICE, ENROLLED (yes/no, "-" when the registry has no
// entry), OWNER, DECISION, BASIS, LAST CHECK-IN ("never" before the first). Pure.
[[nodiscard]] std::string format_device_table(std::vector<DeviceRecord> const& devices);

// The `exemptctl device show` text: identity, enrollment, last check-in and the latest decision
// with one line per control. Pure.
[[nodiscard]] std::string format_device(DeviceRecord const& device);

// One line after an enrollment change, e.g. "LAPTOP-0042: enrolled, owner sam@example.com, source
// mdm (recorded)"; "(already recorded)" when `created` is false. Pure.
[[nodiscard]] std::string format_enrollment_change(DeviceRecord const& device, bool created);

}  // namespace exemptd::client
