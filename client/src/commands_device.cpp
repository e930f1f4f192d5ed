// exemptctl device enroll|unenroll|list|show
#include "command_context.hpp"
#include "commands.hpp"
#include "device_view.hpp"

#include "exemptd/identity.hpp"

#include <CLI/CLI.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <memory>
#include <optional>
#include <string>

namespace exemptd::client {
namespace {

struct EnrollmentOptions {
    std::string device_id;
    std::string owner;
    std::string source = "manual";
};

struct ListOptions {
    std::string state;
};

struct ShowOptions {
    std::string device_id;
};

// The exit code after refusing, before anything is sent, an id the daemon would refuse (the id
// also goes into the URL path); nullopt for a valid id.
std::optional<int> refuse_invalid_id(CommandContext& ctx, std::string const& device_id)
{
    if (is_valid_device_id(device_id)) return std::nullopt;
    return ctx.fail("invalid device id \"" + device_id + "\": use 1-64 characters of A-Z a-z 0-9 . _ : -");
}

int put_enrollment(CommandContext& ctx, std::string const& device_id, boost::json::object const& body)
{
    if (auto const refused = refuse_invalid_id(ctx, device_id)) return *refused;
    auto answer = ctx.call("PUT", "/v1/devices/" + device_id + "/enrollment", boost::json::serialize(body));
    if (!answer) return answer.error().exit_code;
    bool const created = answer->status == 201;
    auto const format = [created](DeviceRecord const& device) { return format_enrollment_change(device, created); };
    return ctx.print_answer(*answer, device_from_body, format);
}

int run_enroll(CommandContext& ctx, EnrollmentOptions const& options)
{
    return put_enrollment(ctx, options.device_id,
                          {{"enrolled", true}, {"owner", options.owner}, {"source", options.source}});
}

int run_unenroll(CommandContext& ctx, EnrollmentOptions const& options)
{
    boost::json::object body{{"enrolled", false}, {"source", options.source}};
    if (!options.owner.empty()) body["owner"] = options.owner;
    return put_enrollment(ctx, options.device_id, body);
}

int run_list(CommandContext& ctx, ListOptions const& options)
{
    std::string const query = options.state.empty() ? std::string() : "?state=" + options.state;
    auto answer = ctx.call("GET", "/v1/devices" + query);
    if (!answer) return answer.error().exit_code;
    return ctx.print_answer(*answer, device_list_from_body, format_device_table);
}

int run_show(CommandContext& ctx, ShowOptions const& options)
{
    if (auto const refused = refuse_invalid_id(ctx, options.device_id)) return *refused;
    auto answer = ctx.call("GET", "/v1/devices/" + options.device_id);
    if (!answer) return answer.error().exit_code;
    return ctx.print_answer(*answer, device_from_body, format_device);
}

void add_enroll(CLI::App& device, CommandContext& ctx)
{
    auto options = std::make_shared<EnrollmentOptions>();
    auto* cmd = device.add_subcommand("enroll", "Record that a device is enrolled in MDM");
    cmd->add_option("DEVICE", options->device_id, "Device id")->required();
    cmd->add_option("--owner", options->owner, "Email of the person responsible for the device")->required();
    cmd->add_option("--source", options->source, "Where the enrollment comes from (mdm, manual, ...)")
        ->capture_default_str();
    cmd->callback([&ctx, options] { ctx.exit_code = run_enroll(ctx, *options); });
}

void add_unenroll(CLI::App& device, CommandContext& ctx)
{
    auto options = std::make_shared<EnrollmentOptions>();
    auto* cmd = device.add_subcommand(
        "unenroll", "Record that a device is not enrolled in MDM (with --owner: a personal device's owner)");
    cmd->add_option("DEVICE", options->device_id, "Device id")->required();
    cmd->add_option("--owner", options->owner, "Email of the device's owner (BYOD)");
    cmd->add_option("--source", options->source, "Where the information comes from")->capture_default_str();
    cmd->callback([&ctx, options] { ctx.exit_code = run_unenroll(ctx, *options); });
}

void add_list(CLI::App& device, CommandContext& ctx)
{
    auto options = std::make_shared<ListOptions>();
    auto* cmd = device.add_subcommand("list", "List devices with their enrollment and latest decision");
    cmd->add_option("--state", options->state, "Only devices in this state")
        ->check(CLI::IsMember({"allowed", "denied", "exempted", "unenrolled", "stale"}));
    cmd->callback([&ctx, options] { ctx.exit_code = run_list(ctx, *options); });
}

void add_show(CLI::App& device, CommandContext& ctx)
{
    auto options = std::make_shared<ShowOptions>();
    auto* cmd = device.add_subcommand("show", "Show a device and the controls of its latest decision");
    cmd->add_option("DEVICE", options->device_id, "Device id")->required();
    cmd->callback([&ctx, options] { ctx.exit_code = run_show(ctx, *options); });
}

}  // namespace

void add_device_commands(CLI::App& app, CommandContext& ctx)
{
    auto* device = app.add_subcommand("device", "Enroll devices and look at their decisions");
    device->require_subcommand(1);
    add_enroll(*device, ctx);
    add_unenroll(*device, ctx);
    add_list(*device, ctx);
    add_show(*device, ctx);
}

}  // namespace exemptd::client
