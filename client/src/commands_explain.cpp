// exemptctl explain DEVICE [--at TIME]
#include "command_context.hpp"
#include "commands.hpp"
#include "exemption_view.hpp"
#include "output.hpp"

#include "exemptd/identity.hpp"
#include "exemptd/time.hpp"

#include <CLI/CLI.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace exemptd::client {
namespace {

struct ExplainOptions {
    std::string device_id;
    std::string at;
};

// The explain answer (daemon/src/explain.cpp), kept as JSON: the formatter reads what it shows.
struct Explanation {
    boost::json::object root;
};

ClientResult<Explanation> explanation_from_body(std::string_view body)
{
    boost::system::error_code ec;
    auto value = boost::json::parse(body, ec);
    if (ec || !value.is_object()) return client_error("unexpected explanation from the server: not a JSON object");
    auto& o = value.as_object();
    for (auto const* key : {"device_id", "decision", "basis"}) {
        auto const* v = o.if_contains(key);
        if (v == nullptr || !v->is_string())
            return client_error(std::string("unexpected explanation from the server: no \"") + key + "\"");
    }
    auto const* controls = o.if_contains("controls");
    if (controls == nullptr || !controls->is_array())
        return client_error("unexpected explanation from the server: no \"controls\" array");
    for (auto const& c : controls->as_array())
        if (!c.is_object()) return client_error("unexpected explanation from the server: a control is not an object");
    return Explanation{std::move(o)};
}

// A string member, or "" when it is absent, null or not a string.
std::string text(boost::json::object const& o, std::string_view key)
{
    auto const* v = o.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::string join(std::vector<std::string> const& items, std::string_view separator)
{
    std::string out;
    for (auto const& item : items) {
        if (!out.empty()) out += separator;
        out += item;
    }
    return out;
}

std::string time_or_dash(std::optional<TimePoint> const& t)
{
    return t ? format_rfc3339(*t) : std::string("-");
}

std::string enrollment_line(boost::json::object const& root)
{
    auto const* e = root.if_contains("enrollment");
    if (e == nullptr || !e->is_object()) return "no enrollment record";
    auto const& o = e->as_object();
    auto const* enrolled = o.if_contains("enrolled");
    bool const yes = enrolled != nullptr && enrolled->is_bool() && enrolled->as_bool();
    std::string line = yes ? "enrolled" : "not enrolled";
    std::vector<std::string> parts;
    if (auto owner = text(o, "owner"); !owner.empty()) parts.push_back("owner " + owner);
    if (auto source = text(o, "source"); !source.empty()) parts.push_back("source " + source);
    if (!parts.empty()) line += " (" + join(parts, ", ") + ")";
    return line;
}

// The lines under a failing control: reason, failure streak, grace, and the covering exemption.
void describe_failure(std::ostringstream& out, boost::json::object const& c)
{
    constexpr std::string_view in = "      ";
    if (auto reason = text(c, "reason"); !reason.empty()) out << in << "reason:        " << reason << '\n';
    if (auto since = text(c, "failing_since"); !since.empty()) out << in << "failing since: " << since << '\n';
    if (auto grace = text(c, "grace_until"); !grace.empty())
        out << in << "grace until:   " << grace << " (allowed until then)\n";
    auto const covered_by = text(c, "covered_by");
    if (covered_by.empty()) return;
    out << in << "covered by:    " << covered_by << '\n';
    auto const* ex = c.if_contains("exemption");
    if (ex == nullptr || !ex->is_object()) return;
    // Compensating controls come back as [{id, status}]; the exemption reader wants strings.
    boost::json::value copy = *ex;
    std::vector<std::string> compensating;
    if (auto* cc = copy.as_object().if_contains("compensating_controls"); cc != nullptr && cc->is_array()) {
        boost::json::array ids;
        for (auto const& item : cc->as_array()) {
            if (!item.is_object()) continue;
            auto const id = text(item.as_object(), "id");
            auto const status = text(item.as_object(), "status");
            compensating.push_back(id + " (" + (status.empty() ? "unknown" : status) + " now)");
            ids.push_back(boost::json::value(id));
        }
        *cc = std::move(ids);
    }
    auto parsed = exemption_from_json(copy);
    if (!parsed) {
        out << in << "  (the exemption could not be read: " << parsed.error().message << ")\n";
        return;
    }
    auto const& e = *parsed;
    std::string const sub = std::string(in) + "  ";
    out << sub << "justification:  " << e.justification << '\n';
    out << sub << "risk:           " << e.level << " (likelihood " << e.likelihood << ", impact " << e.impact << ")\n";
    out << sub << "requested:      " << or_dash(e.requested_by) << " at " << time_or_dash(e.requested_at) << '\n';
    out << sub << "approved:       " << or_dash(e.approved_by) << " at " << time_or_dash(e.approved_at) << '\n';
    out << sub << "expires:        " << time_or_dash(e.expires_at) << '\n';
    out << sub << "next review:    " << time_or_dash(e.next_review_at) << (e.review_overdue ? " (overdue)" : "") << '\n';
    out << sub << "mitigations:    " << or_dash(join(e.mitigations, "; ")) << '\n';
    out << sub << "compensating:   " << or_dash(join(compensating, "; ")) << '\n';
    out << sub << "agreement:      " << or_dash(e.agreement_id) << '\n';
    out << sub << "state:          " << e.state << '\n';
}

std::string format_explanation(Explanation const& x)
{
    auto const& root = x.root;
    std::ostringstream out;
    out << "device:     " << text(root, "device_id") << '\n';
    out << "at:         " << or_dash(text(root, "at"));
    if (auto source = text(root, "source"); source == "history")
        out << " (from the decision history)";
    else if (source == "live")
        out << " (current decision)";
    out << '\n';
    out << "decision:   " << text(root, "decision") << '\n';
    out << "basis:      " << text(root, "basis") << '\n';
    out << "evaluated:  " << or_dash(text(root, "evaluated_at")) << '\n';
    out << "policy:     " << or_dash(text(root, "policy_version")) << '\n';
    out << "enrollment: " << enrollment_line(root) << '\n';
    out << '\n';

    auto const& controls = root.at("controls").as_array();
    Table table({"STATUS", "ID", "TITLE", "RULE", "OBSERVED"});
    for (auto const& v : controls) {
        auto const& c = v.as_object();
        auto const status = text(c, "status");
        table.add_row({status == "pass" ? "PASS" : status == "fail" ? "FAIL" : status, text(c, "id"),
                       or_dash(text(c, "title")), or_dash(text(c, "rule")), or_dash(text(c, "observed"))});
    }
    out << table.render();

    for (auto const& v : controls) {
        auto const& c = v.as_object();
        if (text(c, "status") == "pass") continue;
        out << '\n' << "FAIL  " << text(c, "id") << '\n';
        describe_failure(out, c);
    }

    auto const* to_allow = root.if_contains("to_allow");
    if (to_allow != nullptr && to_allow->is_array() && !to_allow->as_array().empty()) {
        out << "\nto allow this device:\n";
        for (auto const& line : to_allow->as_array())
            if (line.is_string()) out << "  " << std::string_view(line.as_string()) << '\n';
    }
    return out.str();
}

int run_explain(CommandContext& ctx, ExplainOptions const& options)
{
    if (!is_valid_device_id(options.device_id))
        return ctx.fail("invalid device id \"" + options.device_id + "\": use 1-64 characters of A-Z a-z 0-9 . _ : -");
    std::string target = "/v1/devices/" + options.device_id + "/explain";
    if (!options.at.empty()) {
        auto const at = parse_rfc3339(options.at);
        if (!at) return ctx.fail("--at \"" + options.at + "\" is not an RFC 3339 time such as 2026-11-27T21:00:00Z");
        target += "?at=" + format_rfc3339(*at);  // normalised to UTC: nothing to percent-encode
    }
    auto answer = ctx.call("GET", target);
    if (!answer) return answer.error().exit_code;
    return ctx.print_answer(*answer, explanation_from_body, format_explanation);
}

}  // namespace

void add_explain_commands(CLI::App& app, CommandContext& ctx)
{
    auto options = std::make_shared<ExplainOptions>();
    auto* cmd = app.add_subcommand("explain", "Explain a device's decision, now or at a past instant");
    cmd->add_option("DEVICE", options->device_id, "Device id")->required();
    cmd->add_option("--at", options->at, "Explain the decision in force at this RFC 3339 time");
    cmd->callback([&ctx, options] { ctx.exit_code = run_explain(ctx, *options); });
}

}  // namespace exemptd::client
