// exemptctl device enroll|unenroll|list|show|import
#include "api_answer.hpp"
#include "command_context.hpp"
#include "commands.hpp"
#include "device_view.hpp"

#include "exemptd/identity.hpp"
#include "exemptd/mdm_import.hpp"
#include "file_util.hpp"

#include <CLI/CLI.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
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
    std::string after;
    std::optional<std::int64_t> limit;
};

constexpr std::int64_t kPageLimit = 10000;  // the server's largest page

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

std::string list_target(ListOptions const& options, std::string const& after, std::int64_t limit)
{
    std::string target = "/v1/devices?limit=" + std::to_string(limit);
    if (!options.state.empty()) target += "&state=" + options.state;
    if (!after.empty()) target += "&after=" + after;
    return target;
}

// A page's devices and the cursor of the next page (empty on the last one).
struct DevicePage {
    boost::json::array devices;
    std::string next_after;
};

std::optional<DevicePage> device_page(std::string const& body)
{
    boost::system::error_code ec;
    auto value = boost::json::parse(body, ec);
    auto* object = ec ? nullptr : value.if_object();
    auto const* devices = object ? object->if_contains("devices") : nullptr;
    if (devices == nullptr || !devices->is_array()) return std::nullopt;
    DevicePage page{devices->as_array(), {}};
    if (auto const* next = object->if_contains("next_after"); next && next->is_string())
        page.next_after = next->as_string();
    return page;
}

// With --limit, that one page (and where the next one starts, on stderr); without, every page,
// printed as one list.
int run_list(CommandContext& ctx, ListOptions const& options)
{
    if (!options.after.empty()) {
        if (auto const refused = refuse_invalid_id(ctx, options.after)) return *refused;
    }
    if (options.limit) {
        auto answer = ctx.call("GET", list_target(options, options.after, *options.limit));
        if (!answer) return answer.error().exit_code;
        int const code = ctx.print_answer(*answer, device_list_from_body, format_device_table);
        auto const page = device_page(answer->body);
        if (code == 0 && page && !page->next_after.empty())
            ctx.err() << "more devices follow: exemptctl device list --after " << page->next_after << '\n';
        return code;
    }
    boost::json::array all;
    std::string after = options.after;
    for (;;) {
        auto answer = ctx.call("GET", list_target(options, after, kPageLimit));
        if (!answer) return answer.error().exit_code;
        auto page = device_page(answer->body);
        if (!page) return ctx.fail("the answer has no \"devices\" list");
        for (auto& d : page->devices) all.push_back(std::move(d));
        if (page->next_after.empty()) break;
        if (page->next_after <= after) return ctx.fail("the server's device pages do not advance past " + after);
        after = page->next_after;
    }
    HttpResponse merged{200, boost::json::serialize(boost::json::object{{"devices", std::move(all)}, {"next_after", nullptr}})};
    return ctx.print_answer(merged, device_list_from_body, format_device_table);
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
    cmd->add_option("--after", options->after, "Only devices whose id sorts after this one");
    cmd->add_option("--limit", options->limit, "One page of at most this many devices (1-10000); without it, every page")
        ->check(CLI::Range(std::int64_t{1}, kPageLimit));
    cmd->callback([&ctx, options] { ctx.exit_code = run_list(ctx, *options); });
}

void add_show(CLI::App& device, CommandContext& ctx)
{
    auto options = std::make_shared<ShowOptions>();
    auto* cmd = device.add_subcommand("show", "Show a device and the controls of its latest decision");
    cmd->add_option("DEVICE", options->device_id, "Device id")->required();
    cmd->callback([&ctx, options] { ctx.exit_code = run_show(ctx, *options); });
}


struct ImportOptions {
    std::string file;
    std::size_t rows_per_request = 50'000;
};

// The counts of one import answer, or the sum of several.
struct ImportCounts {
    std::int64_t created = 0;
    std::int64_t changed = 0;
    std::int64_t unchanged = 0;
    std::int64_t rows = 0;
};

ClientResult<ImportCounts> import_counts_from_body(std::string_view body)
{
    auto value = parse_answer_json(body);
    if (!value) return value.error();
    auto const* object = value->if_object();
    ImportCounts counts;
    std::pair<char const*, std::int64_t*> const fields[] = {
        {"created", &counts.created}, {"changed", &counts.changed}, {"unchanged", &counts.unchanged}, {"rows", &counts.rows}};
    for (auto const& [key, slot] : fields) {
        auto const* field = object != nullptr ? object->if_contains(key) : nullptr;
        if (field == nullptr || !field->is_int64()) return client_error(std::string("the import answer has no ") + key + " count");
        *slot = field->get_int64();
    }
    return counts;
}

std::string format_counts(ImportCounts const& c)
{
    std::ostringstream out;
    out << c.rows << " rows: " << c.created << " created, " << c.changed << " changed, " << c.unchanged << " unchanged";
    return out.str();
}

// A file refused before anything is sent, with the exit code the daemon's refusal would give.
int refuse_file(CommandContext& ctx, std::string const& file, ApiError const& error)
{
    ctx.err() << kExemptctl << ": " << error.code << ": " << file << ": " << error.message << "\n";
    return exemptctl_exit_code(error.status);
}

void print_import_totals(CommandContext& ctx, ImportCounts const& total, std::size_t requests)
{
    if (ctx.options().json) {
        ctx.out() << boost::json::serialize(boost::json::object{{"created", total.created}, {"changed", total.changed},
                                                                {"unchanged", total.unchanged}, {"rows", total.rows},
                                                                {"requests", requests}})
                  << "\n";
        return;
    }
    ctx.out() << "imported " << format_counts(total) << " (" << requests << (requests == 1 ? " request" : " requests") << ")\n";
}

// The whole file is checked first with the daemon's own rules, so that a bad row near the end
// cannot leave the earlier requests applied; each request is then an all-or-nothing import.
int run_import(CommandContext& ctx, ImportOptions const& options)
{
    auto text = read_file(options.file);
    if (!text) return ctx.fail(text.error().message);
    if (auto rows = parse_mdm_csv(*text, std::numeric_limits<std::size_t>::max()); !rows)
        return refuse_file(ctx, options.file, rows.error());
    auto chunks = chunk_csv(*text, options.rows_per_request);
    if (!chunks) return refuse_file(ctx, options.file, chunks.error());
    ImportCounts total;
    for (std::size_t i = 0; i < chunks->size(); ++i) {
        auto const& chunk = (*chunks)[i];
        std::string const where = "request " + std::to_string(i + 1) + "/" + std::to_string(chunks->size()) + " (lines " +
                                  std::to_string(chunk.first_line) + "-" + std::to_string(chunk.last_line) + ")";
        auto answer = ctx.call("POST", "/v1/devices/import", chunk.text, "text/csv");
        auto counts = answer ? import_counts_from_body(answer->body) : ClientResult<ImportCounts>(client_error(""));
        if (!counts) {
            if (answer) (void)ctx.fail(counts.error().message);
            ctx.err() << kExemptctl << ": import stopped at " << where << "; the requests before it were applied ("
                      << format_counts(total) << "); running the same file again is safe\n";
            return answer ? 2 : answer.error().exit_code;
        }
        total = {total.created + counts->created, total.changed + counts->changed,
                 total.unchanged + counts->unchanged, total.rows + counts->rows};
        if (chunks->size() > 1) ctx.err() << kExemptctl << ": " << where << ": " << format_counts(*counts) << "\n";
    }
    print_import_totals(ctx, total, chunks->size());
    return 0;
}

void add_import(CLI::App& device, CommandContext& ctx)
{
    auto options = std::make_shared<ImportOptions>();
    auto* cmd = device.add_subcommand(
        "import", "Import enrollments from an MDM export (CSV with the header device_id,enrolled,owner,source)");
    cmd->add_option("FILE", options->file, "The CSV file")->required();
    cmd->add_option("--rows-per-request", options->rows_per_request,
                    "Rows per request; each request is imported all or nothing")
        ->check(CLI::Range(std::size_t{1}, kMaxImportRows))
        ->capture_default_str();
    cmd->callback([&ctx, options] { ctx.exit_code = run_import(ctx, *options); });
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
    add_import(*device, ctx);
}

}  // namespace exemptd::client
