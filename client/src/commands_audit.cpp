// exemptctl audit list|verify|export
#include "command_context.hpp"
#include "commands.hpp"
#include "output.hpp"

#include "exemptd/checkpoint.hpp"

#include "exemptd/audit.hpp"

#include <CLI/CLI.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace exemptd::client {
namespace {

// The largest page GET /v1/audit gives.
constexpr std::int64_t kPageLimit = 10000;

struct ListOptions {
    std::int64_t after = 0;
    std::optional<std::int64_t> limit;
};

struct ExportOptions {
    std::string format;
};

// One record as the API shows it, with the details both as the stored text (what the hash
// covers) and as compact JSON for printing.
struct ListedRecord {
    AuditRecord record;
    boost::json::value json;  // the record object as the server sent it
};

std::string text_field(boost::json::object const& o, std::string_view key, bool& ok)
{
    auto const* v = o.if_contains(key);
    if (v == nullptr || !v->is_string()) {
        ok = false;
        return {};
    }
    return std::string(v->as_string());
}

// The stored details text: the API embeds details as an object (compact JSON on the server, so
// serialising it again gives the same bytes), or as a string when the stored text no longer parses.
std::string details_text(boost::json::value const& details)
{
    if (details.is_string()) return std::string(details.as_string());
    return boost::json::serialize(details);
}

ClientResult<std::vector<ListedRecord>> records_from_body(std::string_view body)
{
    auto const bad = [](std::string const& why) {
        return client_error("unexpected audit records from the server: " + why);
    };
    boost::system::error_code ec;
    auto value = boost::json::parse(body, ec);
    if (ec || !value.is_object()) return bad("not a JSON object");
    auto const* records = value.as_object().if_contains("records");
    if (records == nullptr || !records->is_array()) return bad("no \"records\" array");
    std::vector<ListedRecord> out;
    out.reserve(records->as_array().size());
    for (auto const& item : records->as_array()) {
        if (!item.is_object()) return bad("a record is not an object");
        auto const& o = item.as_object();
        ListedRecord r;
        bool ok = true;
        auto const* seq = o.if_contains("seq");
        if (seq == nullptr || !seq->is_int64()) return bad("a record without a numeric seq");
        r.record.seq = seq->as_int64();
        r.record.at = text_field(o, "at", ok);
        r.record.actor = text_field(o, "actor", ok);
        r.record.action = text_field(o, "action", ok);
        r.record.subject = text_field(o, "subject", ok);
        r.record.prev_hash = text_field(o, "prev_hash", ok);
        r.record.hash = text_field(o, "hash", ok);
        auto const* details = o.if_contains("details");
        if (details == nullptr) ok = false;
        if (!ok) return bad("record " + std::to_string(r.record.seq) + " lacks a field");
        // The stored bytes, when the server sends them, make this check independent of how
        // JSON is re-serialised here.
        auto const* stored = o.if_contains("details_text");
        r.record.details = stored != nullptr && stored->is_string() ? std::string(stored->as_string()) : details_text(*details);
        r.json = item;
        out.push_back(std::move(r));
    }
    return out;
}

std::string list_target(std::int64_t after, std::int64_t limit)
{
    return "/v1/audit?after=" + std::to_string(after) + "&limit=" + std::to_string(limit);
}

// Every record, page by page. Fails with the exit code already reported.
Reply<std::vector<ListedRecord>> fetch_all(CommandContext& ctx)
{
    std::vector<ListedRecord> all;
    std::int64_t after = 0;
    for (;;) {
        auto answer = ctx.call("GET", list_target(after, kPageLimit));
        if (!answer) return answer.error();
        auto page = records_from_body(answer->body);
        if (!page) return Reported{ctx.fail(page.error().message)};
        if (page->empty()) break;
        auto const last = page->back().record.seq;
        if (last <= after) return Reported{ctx.fail("the server's audit pages do not advance past seq " + std::to_string(after))};
        auto const size = static_cast<std::int64_t>(page->size());
        for (auto& r : *page) all.push_back(std::move(r));
        after = last;
        if (size < kPageLimit) break;
    }
    return all;
}

std::string format_record_table(std::vector<ListedRecord> const& records)
{
    Table table({"SEQ", "AT", "ACTOR", "ACTION", "SUBJECT", "DETAILS"});
    for (auto const& r : records)
        table.add_row({std::to_string(r.record.seq), r.record.at, r.record.actor, r.record.action,
                       or_dash(r.record.subject), r.record.details});
    return table.render();
}

int run_list(CommandContext& ctx, ListOptions const& options)
{
    std::string target = "/v1/audit?after=" + std::to_string(options.after);
    if (options.limit) target += "&limit=" + std::to_string(*options.limit);
    auto answer = ctx.call("GET", target);
    if (!answer) return answer.error().exit_code;
    return ctx.print_answer(*answer, records_from_body, format_record_table);
}

// The server's own chain check, GET /v1/audit/verify.
struct ServerCheck {
    bool ok = false;
    std::int64_t records = 0;
    std::optional<std::int64_t> first_bad_seq;
    std::string reason;
    boost::json::value json;
};

ClientResult<ServerCheck> server_check_from_body(std::string_view body)
{
    boost::system::error_code ec;
    auto value = boost::json::parse(body, ec);
    if (ec || !value.is_object()) return client_error("unexpected answer to GET /v1/audit/verify: not a JSON object");
    auto const& o = value.as_object();
    ServerCheck check;
    auto const* ok = o.if_contains("ok");
    auto const* records = o.if_contains("records");
    auto const* bad = o.if_contains("first_bad_seq");
    if (ok == nullptr || !ok->is_bool() || records == nullptr || !records->is_int64() ||
        (bad != nullptr && !bad->is_null() && !bad->is_int64()))
        return client_error("unexpected answer to GET /v1/audit/verify: ok, records or first_bad_seq missing");
    check.ok = ok->as_bool();
    check.records = records->as_int64();
    if (bad != nullptr && bad->is_int64()) check.first_bad_seq = bad->as_int64();
    if (auto const* reason = o.if_contains("reason"); reason != nullptr && reason->is_string())
        check.reason = std::string(reason->as_string());
    check.json = value;
    return check;
}

struct VerifyOptions {
    std::string checkpoint;       // a file of checkpoint lines written by exemptd
    std::string checkpoint_cert;  // the certificate whose key signed them (the server's)
};

// The chain as fetched, checked against the latest checkpoint of options.checkpoint: the
// refusal (first missing or changed seq and why), nullopt when consistent. Throws CheckpointError
// for unreadable files.
struct CheckpointError {
    std::string message;
};

std::optional<std::pair<std::int64_t, std::string>> checkpoint_refusal(VerifyOptions const& options,
                                                                       std::vector<ListedRecord> const& records,
                                                                       AuditChainChecker const& checker)
{
    auto const checkpoint = latest_checkpoint(options.checkpoint);
    if (!checkpoint) throw CheckpointError{"no checkpoint found in " + options.checkpoint};
    auto key = load_certificate_key(options.checkpoint_cert);
    if (!key) throw CheckpointError{key.error()};
    if (!verify_checkpoint_signature(key->get(), *checkpoint))
        return std::pair{checkpoint->seq, std::string("the checkpoint's signature does not verify with ") + options.checkpoint_cert};
    std::optional<std::string> hash_at_seq;
    for (auto const& r : records) {
        if (r.record.seq == checkpoint->seq) hash_at_seq = r.record.hash;
    }
    auto problem = check_against_checkpoint(*checkpoint, checker.last_seq(), hash_at_seq);
    if (!problem) return std::nullopt;
    return std::pair{std::min(checker.last_seq() + 1, checkpoint->seq), *problem};
}

int run_verify(CommandContext& ctx, VerifyOptions const& options)
{
    auto records = fetch_all(ctx);
    if (!records) return records.error().exit_code;
    AuditChainChecker checker;
    for (auto const& r : *records) {
        checker.feed(r.record);
        if (!checker.result().ok) break;
    }
    auto answer = ctx.call("GET", "/v1/audit/verify");
    if (!answer) return answer.error().exit_code;
    auto server = server_check_from_body(answer->body);
    if (!server) return ctx.fail(server.error().message);

    auto const& local = checker.result();
    if (local.ok && !options.checkpoint.empty()) {
        try {
            if (auto const refusal = checkpoint_refusal(options, *records, checker)) {
                ctx.out() << "broken at seq " << refusal->first << ": " << refusal->second << '\n';
                return 1;
            }
        } catch (CheckpointError const& e) {
            return ctx.fail(e.message);
        }
    }
    bool const ok = local.ok && server->ok;
    if (ctx.options().json) {
        boost::json::object out{{"ok", ok},
                                {"records", local.records},
                                {"first_bad_seq", local.first_bad_seq ? boost::json::value(*local.first_bad_seq)
                                                                      : boost::json::value(nullptr)},
                                {"reason", local.ok ? "the chain is intact" : local.reason},
                                {"head", checker.head_hash()},
                                {"server", server->json}};
        ctx.out() << boost::json::serialize(out) << '\n';
        return ok ? 0 : 1;
    }
    if (!local.ok) {
        ctx.out() << "broken at seq " << *local.first_bad_seq << ": " << local.reason << '\n';
        if (server->ok)
            ctx.out() << "note: the server's own check (GET /v1/audit/verify) reports the chain intact\n";
        else if (server->first_bad_seq != local.first_bad_seq)
            ctx.out() << "note: the server's own check names seq "
                      << (server->first_bad_seq ? std::to_string(*server->first_bad_seq) : std::string("?")) << ": "
                      << server->reason << '\n';
        return 1;
    }
    if (!server->ok) {
        ctx.out() << "broken at seq "
                  << (server->first_bad_seq ? std::to_string(*server->first_bad_seq) : std::string("?")) << ": "
                  << server->reason << " (found by the server's check; the records as served verify locally)\n";
        return 1;
    }
    if (server->records != local.records)
        ctx.out() << "note: the server checked " << server->records << " records, this client " << local.records
                  << " (records appended in between?)\n";
    ctx.out() << "ok: " << local.records << " records, head " << checker.head_hash() << '\n';
    return 0;
}

int run_export(CommandContext& ctx, ExportOptions const& options)
{
    bool const json = options.format == "json" || (options.format.empty() && ctx.options().json);
    if (!json && options.format != "csv") return ctx.fail("audit export needs --format csv or --format json");
    auto records = fetch_all(ctx);
    if (!records) return records.error().exit_code;
    if (json) {
        boost::json::array out;
        out.reserve(records->size());
        for (auto const& r : *records) out.push_back(r.json);
        ctx.out() << boost::json::serialize(boost::json::object{{"records", std::move(out)}}) << '\n';
        return 0;
    }
    ctx.out() << csv_row({"seq", "at", "actor", "action", "subject", "details", "prev_hash", "hash"});
    for (auto const& r : *records) {
        auto const& a = r.record;
        auto const& details = r.json.as_object().at("details");
        ctx.out() << csv_row({std::to_string(a.seq), a.at, a.actor, a.action, a.subject,
                              boost::json::serialize(details), a.prev_hash, a.hash});
    }
    return 0;
}

void add_list(CLI::App& audit, CommandContext& ctx)
{
    auto options = std::make_shared<ListOptions>();
    auto* cmd = audit.add_subcommand("list", "List audit records in order");
    cmd->add_option("--after", options->after, "Only records after this sequence number")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--limit", options->limit, "At most this many records (1-10000; the server's default is 1000)")
        ->check(CLI::Range(std::int64_t{1}, kPageLimit));
    cmd->callback([&ctx, options] { ctx.exit_code = run_list(ctx, *options); });
}

void add_verify(CLI::App& audit, CommandContext& ctx)
{
    auto* cmd = audit.add_subcommand(
        "verify", "Fetch every record and check the hash chain here, and ask the server to check it too");
    auto options = std::make_shared<VerifyOptions>();
    cmd->add_option("--checkpoint", options->checkpoint,
                    "Also check the chain against the latest checkpoint in this file (written by exemptd)");
    cmd->add_option("--checkpoint-cert", options->checkpoint_cert,
                    "Certificate that verifies the checkpoints (the server's TLS certificate)");
    cmd->callback([&ctx, options] {
        if (!options->checkpoint.empty() && options->checkpoint_cert.empty()) {
            ctx.exit_code = ctx.fail("--checkpoint needs --checkpoint-cert");
            return;
        }
        ctx.exit_code = run_verify(ctx, *options);
    });
}

void add_export(CLI::App& audit, CommandContext& ctx)
{
    auto options = std::make_shared<ExportOptions>();
    auto* cmd = audit.add_subcommand("export", "Print every audit record as CSV or JSON");
    cmd->add_option("--format", options->format, "csv or json")->check(CLI::IsMember({"csv", "json"}));
    cmd->callback([&ctx, options] { ctx.exit_code = run_export(ctx, *options); });
}

}  // namespace

void add_audit_commands(CLI::App& app, CommandContext& ctx)
{
    auto* audit = app.add_subcommand("audit", "Read, verify and export the tamper-evident audit trail");
    audit->require_subcommand(1);
    add_list(*audit, ctx);
    add_verify(*audit, ctx);
    add_export(*audit, ctx);
}

}  // namespace exemptd::client
