// exemptctl exemption request|approve|reject|renew|review|revoke|list|show
#include "command_context.hpp"
#include "commands.hpp"
#include "exemption_view.hpp"

#include <CLI/CLI.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace exemptd::client {
namespace {

struct RequestOptions {
    ExemptionRequest request;
    std::string expires_at;
    std::string expires_in;
};

// The options of every life-cycle command; each uses the ones its verb takes.
struct ChangeOptions {
    std::string id;
    std::string note;
    std::string reason;
    std::string expires_at;
    std::string expires_in;
};

struct ShowOptions {
    std::string id;
};

// The exit code after refusing, before anything is sent, an id that cannot go into the URL
// path; nullopt for an id the server can judge.
std::optional<int> refuse_invalid_id(CommandContext& ctx, std::string const& id)
{
    if (is_plausible_exemption_id(id)) return std::nullopt;
    return ctx.fail("invalid exemption id \"" + id + "\": expected an id such as EX-000001");
}

int print_exemption(CommandContext& ctx, HttpResponse const& answer)
{
    return ctx.print_answer(answer, exemption_from_body, format_exemption);
}

int run_request(CommandContext& ctx, RequestOptions options)
{
    auto expiry = resolve_expiry(options.expires_at, options.expires_in, system_now());
    if (!expiry) return ctx.fail(expiry.error().message);
    options.request.expires_at = std::move(*expiry);
    auto answer = ctx.call("POST", "/v1/exemptions", exemption_request_body(options.request));
    if (!answer) return answer.error().exit_code;
    return print_exemption(ctx, *answer);
}

// The body SPEC §6 names for `verb`: {"note"} (approve, reject, review), {"reason"} (revoke) or
// {"expires_at", "note"} (renew). An empty note is left out.
ClientResult<std::string> change_body(std::string_view verb, ChangeOptions const& options)
{
    boost::json::object body;
    if (verb == "revoke") {
        body["reason"] = options.reason;
        return boost::json::serialize(body);
    }
    if (verb == "renew") {
        auto expiry = resolve_expiry(options.expires_at, options.expires_in, system_now());
        if (!expiry) return expiry.error();
        body["expires_at"] = *expiry;
    }
    if (!options.note.empty()) body["note"] = options.note;
    return boost::json::serialize(body);
}

int run_change(CommandContext& ctx, std::string_view verb, ChangeOptions const& options)
{
    if (auto const refused = refuse_invalid_id(ctx, options.id)) return *refused;
    auto body = change_body(verb, options);
    if (!body) return ctx.fail(body.error().message);
    auto answer = ctx.call("POST", "/v1/exemptions/" + options.id + "/" + std::string(verb), *body);
    if (!answer) return answer.error().exit_code;
    return print_exemption(ctx, *answer);
}

int run_list(CommandContext& ctx, ExemptionFilter const& filter)
{
    auto answer = ctx.call("GET", "/v1/exemptions" + exemption_list_query(filter));
    if (!answer) return answer.error().exit_code;
    return ctx.print_answer(*answer, exemption_list_from_body, format_exemption_table);
}

int run_show(CommandContext& ctx, ShowOptions const& options)
{
    if (auto const refused = refuse_invalid_id(ctx, options.id)) return *refused;
    auto answer = ctx.call("GET", "/v1/exemptions/" + options.id);
    if (!answer) return answer.error().exit_code;
    return print_exemption(ctx, *answer);
}

// A repeatable option taking one value per occurrence: --control A --control B.
CLI::Option* add_repeatable(CLI::App& cmd, std::string const& name, std::vector<std::string>& into,
                            std::string const& help)
{
    return cmd.add_option(name, into, help)->allow_extra_args(false);
}

void add_expiry_options(CLI::App& cmd, std::string& expires_at, std::string& expires_in)
{
    auto* at = cmd.add_option("--expires-at", expires_at, "Expiry, RFC 3339 UTC (2026-12-31T00:00:00Z)");
    auto* in = cmd.add_option("--expires-in", expires_in, "Expiry counted from now: 30d, 12h, 90m or 45s");
    at->excludes(in);
}

void add_request(CLI::App& exemption, CommandContext& ctx)
{
    auto options = std::make_shared<RequestOptions>();
    auto& r = options->request;
    auto* cmd = exemption.add_subcommand("request", "Request an exemption (it starts pending)");
    cmd->add_option("--subject", r.subject, "device:ID, user:EMAIL or account:NAME")->required();
    add_repeatable(*cmd, "--control", r.controls, "A control the exemption covers (repeatable)")->required();
    cmd->add_option("--justification", r.justification, "Why the exemption is needed")->required();
    cmd->add_option("--likelihood", r.likelihood, "Risk likelihood")
        ->required()->check(CLI::IsMember({"low", "medium", "high"}));
    cmd->add_option("--impact", r.impact, "Risk impact")->required()->check(CLI::IsMember({"low", "medium", "high"}));
    add_repeatable(*cmd, "--mitigation", r.mitigations, "A mitigation, one sentence (repeatable)");
    add_repeatable(*cmd, "--compensating-control", r.compensating_controls,
                   "A control that must pass for the exemption to cover (repeatable)");
    cmd->add_option("--evidence", r.evidence, "Evidence for auditors (ticket, document, ...)");
    cmd->add_option("--agreement-id", r.agreement_id, "A verified BYOD agreement, AG-000001");
    add_expiry_options(*cmd, options->expires_at, options->expires_in);
    cmd->callback([&ctx, options] { ctx.exit_code = run_request(ctx, *options); });
}

// approve, reject, review, renew and revoke: ID plus the options of `verb`.
void add_change(CLI::App& exemption, CommandContext& ctx, std::string const& verb, std::string const& help)
{
    auto options = std::make_shared<ChangeOptions>();
    auto* cmd = exemption.add_subcommand(verb, help);
    cmd->add_option("ID", options->id, "Exemption id, EX-000001")->required();
    if (verb == "revoke") {
        cmd->add_option("--reason", options->reason, "Why it is revoked")->required();
    } else {
        auto* note = cmd->add_option("--note", options->note, verb == "review" ? "What the review found" : "A note");
        if (verb == "review") note->required();
    }
    if (verb == "renew") add_expiry_options(*cmd, options->expires_at, options->expires_in);
    cmd->callback([&ctx, options, verb] { ctx.exit_code = run_change(ctx, verb, *options); });
}

void add_list(CLI::App& exemption, CommandContext& ctx)
{
    auto filter = std::make_shared<ExemptionFilter>();
    auto* cmd = exemption.add_subcommand("list", "List the exemption register");
    cmd->add_option("--subject", filter->subject, "Only this subject (device:ID, user:EMAIL, account:NAME)");
    cmd->add_option("--control", filter->control, "Only exemptions covering this control");
    cmd->add_option("--state", filter->state, "Only exemptions in this state")
        ->check(CLI::IsMember({"pending", "active", "rejected", "expired", "revoked"}));
    cmd->add_option("--expiring-within", filter->expiring_within, "Only active ones expiring within 14d, 12h, ...")
        ->check([](std::string const& text) {
            return parse_duration(text) ? std::string() : "use a duration such as 14d, 12h, 90m or 45s";
        });
    cmd->callback([&ctx, filter] { ctx.exit_code = run_list(ctx, *filter); });
}

void add_show(CLI::App& exemption, CommandContext& ctx)
{
    auto options = std::make_shared<ShowOptions>();
    auto* cmd = exemption.add_subcommand("show", "Show every field of one exemption, with its history");
    cmd->add_option("ID", options->id, "Exemption id, EX-000001")->required();
    cmd->callback([&ctx, options] { ctx.exit_code = run_show(ctx, *options); });
}

}  // namespace

void add_exemption_commands(CLI::App& app, CommandContext& ctx)
{
    auto* exemption = app.add_subcommand("exemption", "Request, decide, renew, review, revoke and list exemptions");
    exemption->require_subcommand(1);
    add_request(*exemption, ctx);
    add_change(*exemption, ctx, "approve", "Approve a pending exemption (not as its requester)");
    add_change(*exemption, ctx, "reject", "Reject a pending exemption");
    add_change(*exemption, ctx, "renew", "Move an active exemption's expiry later (--expires-at or --expires-in)");
    add_change(*exemption, ctx, "review", "Record a review of an active exemption; moves its next review");
    add_change(*exemption, ctx, "revoke", "Revoke a pending or active exemption");
    add_list(*exemption, ctx);
    add_show(*exemption, ctx);
}

}  // namespace exemptd::client
