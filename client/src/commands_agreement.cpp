// exemptctl agreement upload|show|verify (SPEC §7, §9)
#include "api_answer.hpp"
#include "command_context.hpp"
#include "commands.hpp"
#include "file_util.hpp"

#include "exemptd/agreement.hpp"
#include "exemptd/policy.hpp"
#include "exemptd/time.hpp"

#include <CLI/CLI.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

namespace exemptd::client {
namespace {

struct UploadOptions {
    std::string document;
    std::string signature;
};

struct ShowOptions {
    std::string id;
};

struct VerifyOptions {
    std::string document;
    std::string signature;
    std::string ca;
    std::string crl;
    std::string policy;
};

// Standard base64 (RFC 4648 §4) with padding, as POST /v1/agreements expects it.
std::string encode_base64(std::string_view bytes)
{
    static constexpr std::string_view kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    auto const byte = [&](std::size_t at) { return static_cast<unsigned>(static_cast<unsigned char>(bytes[at])); };
    for (; i + 3 <= bytes.size(); i += 3) {
        unsigned const n = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
        out += kAlphabet[(n >> 18) & 63];
        out += kAlphabet[(n >> 12) & 63];
        out += kAlphabet[(n >> 6) & 63];
        out += kAlphabet[n & 63];
    }
    std::size_t const rest = bytes.size() - i;
    if (rest == 1) {
        unsigned const n = byte(i) << 16;
        out += kAlphabet[(n >> 18) & 63];
        out += kAlphabet[(n >> 12) & 63];
        out += "==";
    } else if (rest == 2) {
        unsigned const n = (byte(i) << 16) | (byte(i + 1) << 8);
        out += kAlphabet[(n >> 18) & 63];
        out += kAlphabet[(n >> 12) & 63];
        out += kAlphabet[(n >> 6) & 63];
        out += '=';
    }
    return out;
}

// An id that can go into the URL path as it is: 1-64 of [A-Za-z0-9-].
bool is_plausible_agreement_id(std::string_view id) noexcept
{
    if (id.empty() || id.size() > 64) return false;
    for (char const c : id)
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return true;
}

// The text of a JSON string, "-" for null or absent, other values serialized.
std::string text_of(boost::json::object const& obj, std::string_view key)
{
    auto const* v = obj.if_contains(key);
    if (v == nullptr || v->is_null()) return "-";
    if (v->is_string()) return std::string(v->get_string());
    return boost::json::serialize(*v);
}

boost::json::object const& object_at(boost::json::object const& obj, std::string_view key)
{
    static boost::json::object const empty;
    auto const* v = obj.if_contains(key);
    return v != nullptr && v->is_object() ? v->get_object() : empty;
}

ClientResult<boost::json::object> agreement_from_body(std::string_view body)
{
    auto value = parse_answer_json(body);
    if (!value) return value.error();
    if (!value->is_object() || !value->get_object().contains("id"))
        return client_error("unexpected agreement object: expected an object with an id");
    return value->get_object();
}

// The human-readable form of a stored agreement (GET /v1/agreements/{id}), id first.
std::string format_agreement(boost::json::object const& a, std::string_view note = {})
{
    auto const& signer = object_at(a, "signer");
    auto const& verification = object_at(a, "verification");
    std::string result = text_of(verification, "result");
    if (result != "verified") {
        auto const reason = text_of(verification, "reason");
        if (reason != "-") result += ": " + reason;
        auto const when = text_of(verification, "invalidated_at");
        if (when != "-") result += " (since " + when + ")";
    }
    std::ostringstream out;
    auto const line = [&](std::string_view label, std::string const& value) {
        out << label << std::string(label.size() < 20 ? 20 - label.size() : 1, ' ') << value << "\n";
    };
    line("id:", text_of(a, "id") + (note.empty() ? "" : " (" + std::string(note) + ")"));
    line("template:", text_of(a, "agreement"));
    line("user:", text_of(a, "user"));
    line("device:", text_of(a, "device_id"));
    line("serial:", text_of(a, "device_serial"));
    line("accepted at:", text_of(a, "accepted_at"));
    line("terms sha256:", text_of(a, "terms_sha256"));
    line("document sha256:", text_of(a, "document_sha256"));
    line("signer subject:", text_of(signer, "subject"));
    line("signer email:", text_of(signer, "email"));
    line("signer fingerprint:", text_of(signer, "fingerprint"));
    line("signed at:", text_of(a, "signed_at"));
    line("verification:", result);
    line("verified at:", text_of(verification, "verified_at"));
    line("uploaded by:", text_of(a, "uploaded_by"));
    return out.str();
}

int run_upload(CommandContext& ctx, UploadOptions const& options)
{
    auto document = read_file(options.document);
    if (!document) return ctx.fail(document.error().message);
    auto signature = read_file(options.signature);
    if (!signature) return ctx.fail(signature.error().message);
    boost::json::object const body{{"document", encode_base64(*document)}, {"signature", encode_base64(*signature)}};
    auto answer = ctx.call("POST", "/v1/agreements", boost::json::serialize(body));
    if (!answer) return answer.error().exit_code;
    std::string_view const note = answer->status == 201 ? "stored" : "already stored";
    return ctx.print_answer(*answer, agreement_from_body,
                            [note](boost::json::object const& a) { return format_agreement(a, note); });
}

int run_show(CommandContext& ctx, ShowOptions const& options)
{
    if (!is_plausible_agreement_id(options.id))
        return ctx.fail("invalid agreement id \"" + options.id + "\": expected an id such as AG-000001");
    auto answer = ctx.call("GET", "/v1/agreements/" + options.id);
    if (!answer) return answer.error().exit_code;
    return ctx.print_answer(*answer, agreement_from_body,
                            [](boost::json::object const& a) { return format_agreement(a); });
}

boost::json::object verification_to_json(AgreementVerification const& v)
{
    boost::json::object out{{"result", v.ok ? "verified" : "refused"},
                            {"reason", v.ok ? boost::json::value(nullptr) : boost::json::value(v.reason)},
                            {"message", v.message},
                            {"agreement", v.document.agreement},
                            {"user", v.document.user},
                            {"device_id", v.document.device_id},
                            {"device_serial", v.document.device_serial},
                            {"terms_sha256", v.document.terms_sha256},
                            {"document_sha256", v.document_sha256},
                            {"signer", {{"subject", v.signer_subject},
                                        {"email", v.signer_email},
                                        {"fingerprint", v.signer_fingerprint}}},
                            {"signed_at", v.signed_at ? boost::json::value(format_rfc3339(*v.signed_at))
                                                      : boost::json::value(nullptr)}};
    return out;
}

// The offline check: the same AgreementVerifier the daemon runs, against local files only. Never
// opens a connection, so it needs no connection settings.
int run_verify(CommandContext& ctx, VerifyOptions const& options)
{
    auto document = read_file(options.document);
    if (!document) return ctx.fail(document.error().message);
    auto signature = read_file(options.signature);
    if (!signature) return ctx.fail(signature.error().message);
    if (document->size() > kMaxAgreementBytes)
        return ctx.fail(options.document + " is larger than " + std::to_string(kMaxAgreementBytes) + " bytes");
    if (signature->size() > kMaxAgreementBytes)
        return ctx.fail(options.signature + " is larger than " + std::to_string(kMaxAgreementBytes) + " bytes");
    auto policy = load_policy_file(options.policy);
    if (!policy) return ctx.fail("cannot load the policy: " + policy.error().to_string());
    auto verifier = AgreementVerifier::load(options.ca, options.crl, 0);
    if (!verifier) return ctx.fail(verifier.error());
    auto const v = (*verifier)->verify(*document, *signature, *policy, system_now());
    if (ctx.options().json) {
        ctx.out() << boost::json::serialize(verification_to_json(v)) << "\n";
    } else if (v.ok) {
        ctx.out() << "verified: " << v.document.user << " signed " << v.document.agreement << " for "
                  << v.document.device_id << " (signer fingerprint " << v.signer_fingerprint << ")\n";
    } else {
        ctx.out() << "refused: " << v.reason << ": " << v.message << "\n";
    }
    return v.ok ? 0 : 1;
}

void add_upload(CLI::App& agreement, CommandContext& ctx)
{
    auto options = std::make_shared<UploadOptions>();
    auto* cmd = agreement.add_subcommand("upload", "Upload a signed BYOD agreement (stored only when it verifies)");
    cmd->add_option("--document", options->document, "The agreement YAML, exactly as signed")->required();
    cmd->add_option("--signature", options->signature, "Its detached CMS signature, PEM or DER")->required();
    cmd->callback([&ctx, options] { ctx.exit_code = run_upload(ctx, *options); });
}

void add_show(CLI::App& agreement, CommandContext& ctx)
{
    auto options = std::make_shared<ShowOptions>();
    auto* cmd = agreement.add_subcommand("show", "Show a stored agreement and its verification result");
    cmd->add_option("ID", options->id, "Agreement id, AG-000001")->required();
    cmd->callback([&ctx, options] { ctx.exit_code = run_show(ctx, *options); });
}

void add_verify(CLI::App& agreement, CommandContext& ctx)
{
    auto options = std::make_shared<VerifyOptions>();
    auto* cmd = agreement.add_subcommand(
        "verify", "Check a signed agreement offline, as the server would (no connection needed)");
    cmd->add_option("--document", options->document, "The agreement YAML, exactly as signed")->required();
    cmd->add_option("--signature", options->signature, "Its detached CMS signature, PEM or DER")->required();
    // Not --ca/--crl: --ca is the global option naming the server's CA.
    cmd->add_option("--agreements-ca", options->ca, "The agreements CA bundle (PEM)")->required();
    cmd->add_option("--agreements-crl", options->crl, "The agreements CRL (PEM); optional");
    cmd->add_option("--policy", options->policy, "The policy whose agreement templates apply")->required();
    cmd->callback([&ctx, options] { ctx.exit_code = run_verify(ctx, *options); });
}

}  // namespace

void add_agreement_commands(CLI::App& app, CommandContext& ctx)
{
    auto* agreement = app.add_subcommand("agreement", "Upload, show and verify signed BYOD agreements");
    agreement->require_subcommand(1);
    add_upload(*agreement, ctx);
    add_show(*agreement, ctx);
    add_verify(*agreement, ctx);
}

}  // namespace exemptd::client
