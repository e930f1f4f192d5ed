// exemptctl report exemptions --format csv|json [--state S]
#include "command_context.hpp"
#include "commands.hpp"
#include "exemption_view.hpp"
#include "output.hpp"

#include "exemptd/time.hpp"

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace exemptd::client {
namespace {

struct ReportOptions {
    std::string format;
    std::string state;
};

std::string join(std::vector<std::string> const& items)
{
    std::string out;
    for (auto const& item : items) {
        if (!out.empty()) out += ';';
        out += item;
    }
    return out;
}

std::string time_text(std::optional<TimePoint> const& t)
{
    return t ? format_rfc3339(*t) : std::string();
}

std::vector<std::string> const& report_header()
{
    static std::vector<std::string> const header{
        "id",           "subject",        "controls",        "justification",      "likelihood",
        "impact",       "level",          "requested_by",    "requested_at",       "approved_by",
        "approved_at",  "rejected_by",    "rejected_at",     "decision_note",      "expires_at",
        "next_review_at", "review_overdue", "mitigations",   "compensating_controls", "evidence",
        "agreement_id", "state",          "reviews",         "last_review_at",     "last_review_by",
        "last_review_note", "renewals",   "revoked_by",      "revoked_at",         "revoked_reason"};
    return header;
}

std::string format_register_csv(std::vector<ExemptionRecord> const& exemptions)
{
    std::string out = csv_row(report_header());
    for (auto const& e : exemptions) {
        Review const* last = e.reviews.empty() ? nullptr : &e.reviews.back();
        out += csv_row({e.id,
                        e.subject,
                        join(e.controls),
                        e.justification,
                        e.likelihood,
                        e.impact,
                        e.level,
                        e.requested_by,
                        time_text(e.requested_at),
                        e.approved_by,
                        time_text(e.approved_at),
                        e.rejected_by,
                        time_text(e.rejected_at),
                        e.decision_note,
                        time_text(e.expires_at),
                        time_text(e.next_review_at),
                        e.review_overdue ? "true" : "false",
                        join(e.mitigations),
                        join(e.compensating_controls),
                        e.evidence,
                        e.agreement_id,
                        e.state,
                        std::to_string(e.reviews.size()),
                        last != nullptr ? format_rfc3339(last->at) : std::string(),
                        last != nullptr ? last->by : std::string(),
                        last != nullptr ? last->note : std::string(),
                        std::to_string(e.renewals.size()),
                        e.revoked_by,
                        time_text(e.revoked_at),
                        e.revoked_reason});
    }
    return out;
}

int run_report(CommandContext& ctx, ReportOptions const& options)
{
    bool const json = options.format == "json" || (options.format.empty() && ctx.options().json);
    if (!json && options.format != "csv") return ctx.fail("report exemptions needs --format csv or --format json");
    ExemptionFilter filter;
    filter.state = options.state;
    auto answer = ctx.call("GET", "/v1/exemptions" + exemption_list_query(filter));
    if (!answer) return answer.error().exit_code;
    auto parsed = exemption_list_from_body(answer->body);
    if (!parsed) return ctx.fail(parsed.error().message);
    if (json) return ctx.print_json(answer->body);
    ctx.out() << format_register_csv(*parsed);
    return 0;
}

}  // namespace

void add_report_commands(CLI::App& app, CommandContext& ctx)
{
    auto* report = app.add_subcommand("report", "Reports for auditors");
    report->require_subcommand(1);
    auto options = std::make_shared<ReportOptions>();
    auto* cmd = report->add_subcommand("exemptions", "The exceptions register: every exemption with every field");
    cmd->add_option("--format", options->format, "csv or json")->check(CLI::IsMember({"csv", "json"}));
    cmd->add_option("--state", options->state, "Only exemptions in this state")
        ->check(CLI::IsMember({"pending", "active", "rejected", "expired", "revoked"}));
    cmd->callback([&ctx, options] { ctx.exit_code = run_report(ctx, *options); });
}

}  // namespace exemptd::client
