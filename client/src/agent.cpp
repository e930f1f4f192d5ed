#include "agent.hpp"

#include "api_answer.hpp"
#include "output.hpp"
#include "file_util.hpp"
#include "posture_collector.hpp"

#include "exemptd/decision.hpp"
#include "exemptd/identity.hpp"
#include "exemptd/posture.hpp"

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <ostream>
#include <thread>

namespace exemptd::client {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kAgent = "exempt-agent";
constexpr std::chrono::seconds kRetryAfter = 60s;
constexpr std::chrono::seconds kMinInterval = 10s;  // never hammer the server, whatever it says
constexpr std::chrono::seconds kMaxInterval = 24h;

bool absent(boost::json::object const& obj, std::string_view key)
{
    auto const* value = obj.if_contains(key);
    return value == nullptr || value->is_null();
}

CheckinOutcome report_failure(std::ostream& err, std::string_view message, bool fatal)
{
    err << kAgent << ": " << message << "\n";
    return CheckinOutcome{2, fatal, kRetryAfter};
}

std::chrono::seconds next_interval(Decision const& decision)
{
    return std::clamp(std::chrono::seconds{decision.next_checkin_seconds}, kMinInterval, kMaxInterval);
}

}  // namespace

ClientResult<std::string> complete_posture_json(std::string_view text, DeviceIdSource const& device_id,
                                                std::string const& nonce, TimePoint now)
{
    auto value = parse_answer_json(text);
    if (!value || !value->is_object()) return client_error("the posture file must hold one JSON object");
    auto& report = value->as_object();
    if (absent(report, "nonce")) report["nonce"] = nonce;
    if (absent(report, "reported_at")) report["reported_at"] = format_rfc3339(now);
    if (absent(report, "device_id")) {
        auto id = device_id();
        if (!id) return id.error();
        report["device_id"] = *id;
    }
    return boost::json::serialize(report);
}

ClientResult<std::string> resolve_device_id(std::string const& flag, std::string const& cert_path)
{
    if (flag.empty()) return device_id_from_certificate(cert_path);
    if (!is_valid_device_id(flag))
        return client_error("invalid --device-id \"" + flag + "\": use 1-64 characters of A-Z a-z 0-9 . _ : -");
    return flag;
}

ClientResult<std::string> build_checkin_body(AgentOptions const& options, std::string const& cert_path, TimePoint now)
{
    auto const device_id = [&] { return resolve_device_id(options.device_id, cert_path); };
    if (options.posture_file.empty()) {
        auto id = device_id();
        if (!id) return id.error();
        auto report = collect_posture(*id, now);
        if (!report) return report.error();
        return encode_posture(*report);
    }
    auto text = read_file(options.posture_file);
    if (!text) return text.error();
    auto nonce = random_nonce();
    if (!nonce) return nonce.error();
    auto body = complete_posture_json(*text, device_id, *nonce, now);
    if (!body) return client_error(options.posture_file + ": " + body.error().message);
    return body;
}

CheckinOutcome check_in(HttpsClient& client, AgentOptions const& options, std::string const& cert_path,
                        std::ostream& out, std::ostream& err)
{
    auto const body = build_checkin_body(options, cert_path, system_now());
    if (!body) return report_failure(err, body.error().message, true);
    auto const answer = client.request("POST", "/v1/checkin", *body);
    if (!answer) return report_failure(err, answer.error().message, false);
    if (answer->status != 200) {
        auto const error = parse_api_error(answer->status, answer->body);
        return report_failure(err, error.code + ": " + error.message, false);
    }
    auto const decision = decode_decision(answer->body);
    if (!decision) return report_failure(err, "the server sent an unreadable decision", false);
    if (options.json)
        out << answer->body << (answer->body.ends_with('\n') ? "" : "\n");
    else
        out << format_decision(*decision);
    out.flush();
    return CheckinOutcome{decision->allow ? 0 : 1, false, next_interval(*decision)};
}

int run_agent(AgentOptions const& options, std::ostream& out, std::ostream& err, EnvLookup const& env)
{
    ConnectionSources const sources{options.flags, options.config, std::string(kAgentConfigPath), "EXEMPT_AGENT"};
    auto const settings = resolve_connection(sources, env);
    if (!settings) return report_failure(err, settings.error().message, true).exit_code;
    auto const client = HttpsClient::create(*settings, std::string(kAgent) + "/" + std::string(kAgentVersion));
    if (!client) return report_failure(err, client.error().message, true).exit_code;
    for (;;) {
        auto const outcome = check_in(**client, options, settings->cert, out, err);
        if (options.once || outcome.fatal) return outcome.exit_code;
        std::this_thread::sleep_for(outcome.wait);
    }
}

}  // namespace exemptd::client
