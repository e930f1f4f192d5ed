// Fuzz target: HTTP requests through the daemon's Router, called the way daemon/src/server.cpp
// calls it (precheck on the request line, then handle with the body), over a fresh in-memory
// SQLite store, the default policy and the fuzzing agreements CA.
//
// Input: up to 16 requests separated by the byte 0x1E. Each request is one header byte, then
// "METHOD TARGET\nBODY". Header bits 0-2 pick the caller (kClients), bits 3-5 a route family
// prepended to TARGET (kFamilies), bits 6-7 how far the clock moves on before the request.
// Invariants: nothing throws (handle() answering 500 means a handler threw), every answer has a
// status from 200 to 599 and a JSON body, every error has the SPEC §4 shape, and precheck and
// handle agree on refusing a request line.

#include "fuzz_support.hpp"

#include "exemptd/store.hpp"
#include "metrics.hpp"
#include "router.hpp"

#include <boost/json/parse.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace {

using exemptd::ClientId;
using exemptd::Role;
using exemptd::daemon::HttpRequest;
using exemptd::daemon::HttpResponse;
using exemptd::fuzz::fail;

constexpr std::size_t kMaxRequests = 16;
constexpr char kSeparator = '\x1e';

std::array<ClientId, 8> const kClients{{
    {Role::endpoint, "LAPTOP-0042", {}},
    {Role::endpoint, "LAPTOP-0043", {}},
    {Role::helpdesk, {}, "alex@example.com"},
    {Role::admin, {}, "it-admin@example.com"},
    {Role::admin, {}, "ciso@example.com"},
    {Role::admin, {}, "it-manager@example.com"},
    {Role::admin, {}, "security-lead@example.com"},
    {Role::helpdesk, {}, "sam@example.com"},
}};

std::array<std::string_view, 8> const kFamilies{
    "", "/v1/checkin", "/v1/devices/", "/v1/devices/LAPTOP-0042", "/v1/exemptions", "/v1/exemptions/EX-00000",
    "/v1/agreements", "/v1/audit"};

std::array<std::chrono::seconds, 4> const kClockSteps{std::chrono::seconds{0}, std::chrono::hours{1},
                                                      std::chrono::hours{24 * 8}, std::chrono::hours{24 * 200}};

// Checks one answer's shape; `what` names the request for the report.
void check_response(HttpResponse const& r, std::string_view what)
{
    std::string const where = " (" + std::string(what) + " -> " + std::to_string(r.status) + " " + r.body + ")";
    if (r.status < 200 || r.status > 599) fail("status out of range" + where);
    if (r.status == 500) fail("a handler threw" + where);
    if (r.content_type != "application/json") fail("not JSON" + where);
    boost::system::error_code ec;
    auto const body = boost::json::parse(r.body, ec);
    if (ec || !body.is_object()) fail("the body is not a JSON object" + where);
    if (r.status < 400) return;
    auto const& o = body.as_object();
    auto const* error = o.if_contains("error");
    if (o.size() != 1 || error == nullptr || !error->is_object()) fail("an error without the error object" + where);
    auto const& e = error->as_object();
    auto const* code = e.if_contains("code");
    auto const* message = e.if_contains("message");
    if (e.size() != 2 || code == nullptr || message == nullptr || !code->is_string() || !message->is_string() ||
        code->as_string().empty() || message->as_string().empty())
        fail("an error without code and message" + where);
}

struct Env {
    std::shared_ptr<exemptd::AgreementVerifier const> verifier = exemptd::fuzz::load_verifier(64);
};

Env const& env()
{
    static Env const e = [] {
        exemptd::fuzz::quiet_logging();
        (void)exemptd::fuzz::default_policy();
        return Env{};
    }();
    return e;
}

// Runs one request as server.cpp does.
void run_request(exemptd::daemon::Router const& router, std::string_view raw)
{
    if (raw.empty()) return;
    auto const header = static_cast<unsigned char>(raw.front());
    raw.remove_prefix(1);
    ClientId const& client = kClients[header & 7U];
    auto const line_end = raw.find('\n');
    std::string_view const line = raw.substr(0, line_end);
    std::string body(line_end == std::string_view::npos ? std::string_view{} : raw.substr(line_end + 1));
    auto const space = line.find(' ');
    std::string method(line.substr(0, space));
    std::string target(kFamilies[(header >> 3) & 7U]);
    if (space != std::string_view::npos) target += line.substr(space + 1);

    auto const admitted = router.admit(client, method, target);
    std::string const what = method + " " + target;
    if (!admitted) {
        auto const refusal = exemptd::daemon::error_response(admitted.error());
        check_response(refusal, what);
        if (refusal.status < 400) fail("admit refused with a success status (" + what + ")");
        // handle() must refuse the same request line in the same way.
        auto const handled = router.handle(client, HttpRequest{method, target, body});
        if (handled.status != refusal.status) fail("admit and handle disagree (" + what + ")");
        return;
    }
    // As the server does: the admitted route, then its handler.
    check_response(router.handle(client, *admitted, body), what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    auto const& e = env();
    auto const store = exemptd::open_sqlite_store(":memory:");
    if (!store) fail("cannot open an in-memory store");
    exemptd::daemon::Metrics metrics;
    auto now = std::make_shared<exemptd::TimePoint>(exemptd::fuzz::fixed_now());
    exemptd::daemon::Router router{exemptd::fuzz::default_policy(), *store, metrics, [now] { return *now; }};
    router.set_agreement_verifier(e.verifier);

    std::string_view input = exemptd::fuzz::as_text(data, size);
    for (std::size_t n = 0; n < kMaxRequests && !input.empty(); ++n) {
        auto const end = input.find(kSeparator);
        std::string_view const raw = input.substr(0, end);
        input = end == std::string_view::npos ? std::string_view{} : input.substr(end + 1);
        if (!raw.empty()) *now += kClockSteps[(static_cast<unsigned char>(raw.front()) >> 6) & 3U];
        run_request(router, raw);
    }
    return 0;
}
