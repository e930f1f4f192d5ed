#include "device_view.hpp"

#include "api_answer.hpp"
#include "output.hpp"

#include <boost/json/value.hpp>

#include <utility>

namespace exemptd::client {
namespace {

namespace json = boost::json;

ClientError unexpected(std::string_view what)
{
    return client_error("unexpected device object from the server: " + std::string(what));
}

// An optional time field: absent or null is nullopt; anything else must be RFC 3339.
ClientResult<std::optional<TimePoint>> time_at(json::object const& obj, std::string_view key)
{
    auto const* value = obj.if_contains(key);
    if (value == nullptr || value->is_null()) return std::optional<TimePoint>{};
    auto const parsed = value->is_string() ? parse_rfc3339(value->get_string()) : std::nullopt;
    if (!parsed) return unexpected(std::string(key) + " is not an RFC 3339 time");
    return std::optional<TimePoint>{parsed};
}

ClientResult<std::optional<Enrollment>> enrollment_at(json::object const& obj)
{
    auto const* value = obj.if_contains("enrollment");
    if (value == nullptr || value->is_null()) return std::optional<Enrollment>{};
    if (!value->is_object()) return unexpected("enrollment is not an object");
    auto const& e = value->get_object();
    auto const* enrolled = e.if_contains("enrolled");
    if (enrolled == nullptr || !enrolled->is_bool()) return unexpected("enrollment.enrolled is not a boolean");
    auto const updated_at = time_at(e, "updated_at");
    if (!updated_at) return updated_at.error();
    return std::optional<Enrollment>{Enrollment{enrolled->get_bool(), string_field(e, "owner"),
                                                string_field(e, "source"), updated_at->value_or(TimePoint{}),
                                                string_field(e, "updated_by")}};
}

ClientResult<std::optional<Decision>> decision_at(json::object const& obj)
{
    auto const* value = obj.if_contains("decision");
    if (value == nullptr || value->is_null()) return std::optional<Decision>{};
    auto decision = decision_from_json(*value);
    if (!decision) return unexpected("decision is not a decision object");
    return std::optional<Decision>{std::move(*decision)};
}

std::string enrollment_text(std::optional<Enrollment> const& enrollment)
{
    if (!enrollment) return "not in the registry";
    std::string text = enrollment->enrolled ? "yes" : "no";
    if (!enrollment->owner.empty()) text += ", owner " + enrollment->owner;
    if (!enrollment->source.empty()) text += ", source " + enrollment->source;
    text += " (updated " + format_rfc3339(enrollment->updated_at);
    if (!enrollment->updated_by.empty()) text += " by " + enrollment->updated_by;
    return text + ")";
}

std::string field(std::string_view label, std::string const& value)
{
    constexpr std::size_t kLabelWidth = 15;
    std::string line = std::string(label) + ":";
    line.append(line.size() < kLabelWidth ? kLabelWidth - line.size() : 1, ' ');
    return line + or_dash(value) + "\n";
}

std::string decision_text(Decision const& decision)
{
    std::string out = field("decision", std::string(decision_word(decision)) + " (" +
                                             std::string(to_string(decision.basis)) + ")");
    out += field("evaluated at", format_rfc3339(decision.evaluated_at));
    out += field("policy", decision.policy_version);
    return out + "controls:\n" + format_controls(decision.controls, "  ");
}

}  // namespace

ClientResult<DeviceRecord> device_from_json(json::value const& value)
{
    if (!value.is_object()) return unexpected("not an object");
    auto const& obj = value.get_object();
    DeviceRecord device;
    device.device_id = string_field(obj, "device_id");
    if (device.device_id.empty()) return unexpected("no device_id");
    device.hostname = string_field(obj, "hostname");
    device.serial = string_field(obj, "serial");
    if (auto const* os = obj.if_contains("os"); os != nullptr && os->is_object()) {
        device.os_name = string_field(os->get_object(), "name");
        device.os_version = string_field(os->get_object(), "version");
    }
    auto enrollment = enrollment_at(obj);
    if (!enrollment) return enrollment.error();
    auto last_checkin = time_at(obj, "last_checkin");
    if (!last_checkin) return last_checkin.error();
    auto decision = decision_at(obj);
    if (!decision) return decision.error();
    device.enrollment = std::move(*enrollment);
    device.last_checkin = *last_checkin;
    device.latest_decision = std::move(*decision);
    return device;
}

ClientResult<DeviceRecord> device_from_body(std::string_view body)
{
    auto value = parse_answer_json(body);
    if (!value) return value.error();
    return device_from_json(*value);
}

ClientResult<std::vector<DeviceRecord>> device_list_from_body(std::string_view body)
{
    return list_from_body<DeviceRecord>(body, "devices", unexpected("the answer has no \"devices\" list"),
                                        [](json::value const& item) { return device_from_json(item); });
}

std::string format_device_table(std::vector<DeviceRecord> const& devices)
{
    Table table({"DEVICE", "ENROLLED", "OWNER", "DECISION", "BASIS", "LAST CHECK-IN"});
    for (auto const& d : devices) {
        auto const& e = d.enrollment;
        auto const& decision = d.latest_decision;
        table.add_row({d.device_id, e ? (e->enrolled ? "yes" : "no") : "-", or_dash(e ? e->owner : ""),
                       decision ? std::string(decision_word(*decision)) : "-",
                       decision ? std::string(to_string(decision->basis)) : "-",
                       d.last_checkin ? format_rfc3339(*d.last_checkin) : "never"});
    }
    return table.render();
}

std::string format_device(DeviceRecord const& device)
{
    std::string out = field("device", device.device_id);
    out += field("hostname", device.hostname);
    out += field("serial", device.serial);
    out += field("os", device.os_name + (device.os_version.empty() ? "" : " " + device.os_version));
    out += field("enrolled", enrollment_text(device.enrollment));
    out += field("last check-in", device.last_checkin ? format_rfc3339(*device.last_checkin) : "never");
    if (!device.latest_decision) return out + field("decision", "none yet (no check-in)");
    return out + decision_text(*device.latest_decision);
}

std::string format_enrollment_change(DeviceRecord const& device, bool created)
{
    std::string text = device.device_id + ": ";
    auto const& e = device.enrollment;
    text += e && e->enrolled ? "enrolled" : "not enrolled";
    if (e && !e->owner.empty()) text += ", owner " + e->owner;
    if (e && !e->source.empty()) text += ", source " + e->source;
    return text + (created ? " (recorded)" : " (already recorded)") + "\n";
}

}  // namespace exemptd::client
