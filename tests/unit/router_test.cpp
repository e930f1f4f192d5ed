#include "router_fixture.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include <memory>

using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using exemptd::ClientId;
using exemptd::Role;
using exemptd::daemon::HttpResponse;
using exemptd::test::PostureJson;

namespace {

ClientId const kEndpoint{Role::endpoint, "LAPTOP-0042", {}};
ClientId const kOtherEndpoint{Role::endpoint, "LAPTOP-0043", {}};
ClientId const kHelpdesk{Role::helpdesk, {}, "alex@example.com"};
ClientId const kAdmin{Role::admin, {}, "it-admin@example.com"};

constexpr char const* kEnrollBody = R"({"enrolled": true, "owner": "sam@example.com", "source": "mdm"})";

// A router over a fresh in-memory store, the standard policy and a clock the test moves.
struct Api : exemptd::test::RouterFixture {
    using RouterFixture::RouterFixture;

    HttpResponse check_in(ClientId const& client, PostureJson const& posture) const
    {
        return call(client, "POST", "/v1/checkin", posture.str());
    }
    // A compliant report from LAPTOP-0042 at the clock's time.
    [[nodiscard]] PostureJson posture(std::string const& nonce = "nonce-0001") const
    {
        PostureJson p{"LAPTOP-0042", clock.now()};
        p.nonce(nonce);
        return p;
    }
};

boost::json::object body_of(HttpResponse const& response)
{
    INFO("body: " << response.body);
    auto value = boost::json::parse(response.body);
    REQUIRE(value.is_object());
    return std::move(value.as_object());
}

// Requires the SPEC error shape with `status` and `code`.
void check_error(HttpResponse const& response, int status, std::string const& code)
{
    INFO("status " << response.status << ", body: " << response.body);
    CHECK(response.status == status);
    CHECK(response.content_type == "application/json");
    auto const body = body_of(response);
    REQUIRE(body.size() == 1);
    REQUIRE(body.contains("error"));
    REQUIRE(body.at("error").is_object());
    auto const& error = body.at("error").as_object();
    CHECK(error.size() == 2);
    REQUIRE(error.contains("code"));
    REQUIRE(error.contains("message"));
    REQUIRE(error.at("code").is_string());
    REQUIRE(error.at("message").is_string());
    CHECK(error.at("code").as_string() == code);
    CHECK_FALSE(error.at("message").as_string().empty());
}

void check_precheck(exemptd::daemon::Router const& router, ClientId const& client, std::string const& method,
                    std::string const& target, int status, std::string const& code)
{
    INFO(exemptd::to_string(client.role) << " " << method << " " << target);
    auto const answer = router.admit(client, method, target);
    REQUIRE_FALSE(answer);
    check_error(exemptd::daemon::error_response(answer.error()), status, code);
}

void check_allowed(exemptd::daemon::Router const& router, ClientId const& client, std::string const& method,
                   std::string const& target)
{
    INFO(exemptd::to_string(client.role) << " " << method << " " << target);
    auto const answer = router.admit(client, method, target);
    INFO("refused: " << (answer ? std::string("no") : answer.error().code));
    CHECK(answer);
}

std::string string_at(boost::json::object const& o, std::string_view key)
{
    auto const* v = o.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string("<missing>");
}

}  // namespace

TEST_CASE("An endpoint may only check in and read its own device", "[router]")
{
    Api api;
    auto const& r = api.router;
    check_allowed(r, kEndpoint, "POST", "/v1/checkin");
    check_allowed(r, kEndpoint, "GET", "/v1/devices/LAPTOP-0042");
    check_allowed(r, kEndpoint, "GET", "/v1/devices/LAPTOP-0042/decision");
    check_precheck(r, kEndpoint, "GET", "/v1/devices/LAPTOP-0043", 403, "forbidden");
    check_precheck(r, kEndpoint, "GET", "/v1/devices/LAPTOP-0043/decision", 403, "forbidden");
    check_precheck(r, kEndpoint, "GET", "/v1/devices/laptop-0042/decision", 403, "forbidden");
    check_precheck(r, kEndpoint, "GET", "/v1/devices", 403, "forbidden");
    check_precheck(r, kEndpoint, "GET", "/v1/devices?state=denied", 403, "forbidden");
    check_precheck(r, kEndpoint, "PUT", "/v1/devices/LAPTOP-0042/enrollment", 403, "forbidden");
}

TEST_CASE("The help desk reads but never writes", "[router]")
{
    Api api;
    auto const& r = api.router;
    check_allowed(r, kHelpdesk, "GET", "/v1/devices");
    check_allowed(r, kHelpdesk, "GET", "/v1/devices?state=stale");
    check_allowed(r, kHelpdesk, "GET", "/v1/devices/LAPTOP-0042");
    check_allowed(r, kHelpdesk, "GET", "/v1/devices/LAPTOP-0042/decision");
    check_precheck(r, kHelpdesk, "PUT", "/v1/devices/LAPTOP-0042/enrollment", 403, "forbidden");
    check_precheck(r, kHelpdesk, "POST", "/v1/checkin", 403, "forbidden");
}

TEST_CASE("An admin reads and changes enrollment but does not check in", "[router]")
{
    Api api;
    auto const& r = api.router;
    check_allowed(r, kAdmin, "GET", "/v1/devices");
    check_allowed(r, kAdmin, "GET", "/v1/devices/LAPTOP-0042/decision");
    check_allowed(r, kAdmin, "PUT", "/v1/devices/LAPTOP-0042/enrollment");
    check_precheck(r, kAdmin, "POST", "/v1/checkin", 403, "forbidden");
}

TEST_CASE("Unknown routes answer 404 and wrong methods 405", "[router]")
{
    Api api;
    auto const& r = api.router;
    for (auto const& client : {kEndpoint, kHelpdesk, kAdmin}) {
        check_precheck(r, client, "GET", "/", 404, "not_found");
        check_precheck(r, client, "GET", "/healthz", 404, "not_found");
        check_precheck(r, client, "GET", "/v1", 404, "not_found");
        check_precheck(r, client, "GET", "/v2/devices", 404, "not_found");
        check_precheck(r, client, "GET", "/v1/nothing", 404, "not_found");
        check_precheck(r, client, "GET", "/v1/devices/LAPTOP-0042/history", 404, "not_found");
        check_precheck(r, client, "GET", "/v1/devices/LAPTOP-0042/decision/extra", 404, "not_found");
        check_precheck(r, client, "GET", "/v1/checkin", 405, "method_not_allowed");
        check_precheck(r, client, "PUT", "/v1/checkin", 405, "method_not_allowed");
        check_precheck(r, client, "POST", "/v1/devices", 405, "method_not_allowed");
        check_precheck(r, client, "DELETE", "/v1/devices/LAPTOP-0042", 405, "method_not_allowed");
        check_precheck(r, client, "POST", "/v1/devices/LAPTOP-0042/decision", 405, "method_not_allowed");
        check_precheck(r, client, "GET", "/v1/devices/LAPTOP-0042/enrollment", 405, "method_not_allowed");
        check_precheck(r, client, "POST", "/v1/devices/LAPTOP-0042/enrollment", 405, "method_not_allowed");
    }
}

TEST_CASE("A device id in a path outside the allowed syntax answers 400 invalid_device_id", "[router]")
{
    Api api;
    for (std::string const& id : std::vector<std::string>{std::string(65, 'A'), "bad!id", "LAPTOP%2042", "a,b"}) {
        check_precheck(api.router, kAdmin, "GET", "/v1/devices/" + id, 400, "invalid_device_id");
        check_precheck(api.router, kAdmin, "GET", "/v1/devices/" + id + "/decision", 400, "invalid_device_id");
        check_precheck(api.router, kAdmin, "PUT", "/v1/devices/" + id + "/enrollment", 400, "invalid_device_id");
        check_error(api.call(kAdmin, "PUT", "/v1/devices/" + id + "/enrollment", kEnrollBody), 400, "invalid_device_id");
    }
}

TEST_CASE("A route's role is checked before its body is read", "[router]")
{
    Api api;
    check_error(api.call(kAdmin, "POST", "/v1/checkin", "this is not JSON"), 403, "forbidden");
    check_error(api.call(kHelpdesk, "PUT", "/v1/devices/LAPTOP-0042/enrollment", "{"), 403, "forbidden");
    check_error(api.call(kEndpoint, "PUT", "/v1/devices/LAPTOP-0042/enrollment", kEnrollBody), 403, "forbidden");
    CHECK_FALSE(api.store->get_device("LAPTOP-0042"));
}

TEST_CASE("A check-in answers the SPEC decision and stores it", "[router]")
{
    Api api;
    SECTION("a device the registry does not know is denied on MDM-01") {
        auto const response = api.check_in(kEndpoint, api.posture());
        REQUIRE(response.status == 200);
        CHECK(response.content_type == "application/json");
        auto const body = body_of(response);
        CHECK(string_at(body, "device_id") == "LAPTOP-0042");
        CHECK(string_at(body, "decision") == "deny");
        CHECK(string_at(body, "basis") == "noncompliant");
        CHECK(string_at(body, "evaluated_at") == "2026-11-27T21:00:00Z");
        CHECK(string_at(body, "policy_version") == api.router.policy()->version);
        CHECK(body.at("next_checkin_seconds").as_int64() == 600);
        auto const& controls = body.at("controls").as_array();
        REQUIRE(controls.size() == 4);
        auto const& mdm = controls.at(0).as_object();
        CHECK(string_at(mdm, "id") == "MDM-01");
        CHECK(string_at(mdm, "status") == "fail");
        CHECK(string_at(mdm, "reason") == "device is not enrolled in MDM");
        CHECK(string_at(controls.at(1).as_object(), "status") == "pass");

        auto const stored = api.call(kEndpoint, "GET", "/v1/devices/LAPTOP-0042/decision");
        CHECK(stored.status == 200);
        CHECK(body_of(stored) == body);
    }
    SECTION("an enrolled, compliant device is allowed") {
        REQUIRE(api.call(kAdmin, "PUT", "/v1/devices/LAPTOP-0042/enrollment", kEnrollBody).status == 201);
        auto const body = body_of(api.check_in(kEndpoint, api.posture()));
        CHECK(string_at(body, "decision") == "allow");
        CHECK(string_at(body, "basis") == "compliant");
    }
    SECTION("an enrolled device with a failing control in grace is allowed on grace") {
        REQUIRE(api.call(kAdmin, "PUT", "/v1/devices/LAPTOP-0042/enrollment", kEnrollBody).status == 201);
        auto const body = body_of(api.check_in(kEndpoint, api.posture().fact("disk_encrypted", false)));
        CHECK(string_at(body, "decision") == "allow");
        CHECK(string_at(body, "basis") == "grace");
        auto const& enc = body.at("controls").as_array().at(1).as_object();
        CHECK(string_at(enc, "failing_since") == "2026-11-27T21:00:00Z");
        CHECK(string_at(enc, "grace_until") == "2026-11-30T21:00:00Z");

        SECTION("and denied once grace is over") {
            api.clock.advance(72h);
            auto const later = body_of(api.check_in(kEndpoint, api.posture("nonce-0002").fact("disk_encrypted", false)));
            CHECK(string_at(later, "decision") == "deny");
            CHECK(string_at(later, "basis") == "noncompliant");
        }
    }
}

TEST_CASE("Enrolling a device that was denied allows it without waiting for its next check-in", "[router]")
{
    Api api;
    REQUIRE(api.check_in(kEndpoint, api.posture()).status == 200);
    CHECK(string_at(body_of(api.call(kEndpoint, "GET", "/v1/devices/LAPTOP-0042/decision")), "decision") == "deny");
    api.clock.advance(5min);
    REQUIRE(api.call(kAdmin, "PUT", "/v1/devices/LAPTOP-0042/enrollment", kEnrollBody).status == 201);
    auto const decision = body_of(api.call(kEndpoint, "GET", "/v1/devices/LAPTOP-0042/decision"));
    CHECK(string_at(decision, "decision") == "allow");
    CHECK(string_at(decision, "basis") == "compliant");
    auto const shown = body_of(api.call(kHelpdesk, "GET", "/v1/devices/LAPTOP-0042"));
    CHECK(string_at(shown.at("decision").as_object(), "decision") == "allow");
}

TEST_CASE("A malformed check-in is refused with 400 and stores nothing", "[router]")
{
    Api api;
    SECTION("not JSON") {
        check_error(api.call(kEndpoint, "POST", "/v1/checkin", "{\"device_id\":"), 400, "malformed_json");
    }
    SECTION("an empty body") {
        check_error(api.call(kEndpoint, "POST", "/v1/checkin", ""), 400, "malformed_json");
    }
    SECTION("a wrong type") {
        check_error(api.check_in(kEndpoint, api.posture().set("nonce", 12345678)), 400, "invalid_field");
    }
    SECTION("a missing field") {
        check_error(api.check_in(kEndpoint, api.posture().erase("reported_at")), 400, "invalid_field");
    }
    CHECK_FALSE(api.store->get_device("LAPTOP-0042"));
}

TEST_CASE("A check-in for another device than the certificate's is forbidden", "[router]")
{
    Api api;
    check_error(api.check_in(kOtherEndpoint, api.posture()), 403, "forbidden");
    CHECK_FALSE(api.store->get_device("LAPTOP-0042"));
    CHECK_FALSE(api.store->get_device("LAPTOP-0043"));
}

TEST_CASE("A report outside the allowed clock skew answers 422 clock_skew", "[router]")
{
    Api api;
    auto const now = api.clock.now();
    SECTION("too old") {
        check_error(api.check_in(kEndpoint, api.posture().reported_at(now - 301s)), 422, "clock_skew");
        CHECK_FALSE(api.store->get_device("LAPTOP-0042"));
    }
    SECTION("too far ahead") {
        check_error(api.check_in(kEndpoint, api.posture().reported_at(now + 301s)), 422, "clock_skew");
        CHECK_FALSE(api.store->get_device("LAPTOP-0042"));
    }
    SECTION("exactly at the limit either way") {
        CHECK(api.check_in(kEndpoint, api.posture("nonce-0001").reported_at(now - 300s)).status == 200);
        CHECK(api.check_in(kEndpoint, api.posture("nonce-0002").reported_at(now + 300s)).status == 200);
    }
    SECTION("the skew follows the injected clock, not the system clock") {
        api.clock.advance(24h);
        check_error(api.check_in(kEndpoint, api.posture("nonce-0003").reported_at(now)), 422, "clock_skew");
        CHECK(api.check_in(kEndpoint, api.posture("nonce-0004")).status == 200);
    }
}

TEST_CASE("A replayed check-in answers 409 replay", "[router]")
{
    Api api;
    auto const posture = api.posture();
    REQUIRE(api.check_in(kEndpoint, posture).status == 200);
    api.clock.advance(10s);
    check_error(api.check_in(kEndpoint, posture), 409, "replay");
    auto const device = api.store->get_device("LAPTOP-0042");
    REQUIRE(device);
    CHECK(device->last_checkin == api.clock.now() - 10s);
}

TEST_CASE("Reading a device's decision distinguishes unknown devices from silent ones", "[router]")
{
    Api api;
    check_error(api.call(kHelpdesk, "GET", "/v1/devices/LAPTOP-0042/decision"), 404, "not_found");
    check_error(api.call(kHelpdesk, "GET", "/v1/devices/LAPTOP-0042"), 404, "not_found");
    check_error(api.call(kEndpoint, "GET", "/v1/devices/LAPTOP-0042/decision"), 404, "not_found");
    REQUIRE(api.call(kAdmin, "PUT", "/v1/devices/LAPTOP-0042/enrollment", kEnrollBody).status == 201);
    check_error(api.call(kHelpdesk, "GET", "/v1/devices/LAPTOP-0042/decision"), 404, "no_decision");
    CHECK(api.call(kHelpdesk, "GET", "/v1/devices/LAPTOP-0042").status == 200);
}

TEST_CASE("Enrollment answers 201 when new and 200 when already so", "[router]")
{
    Api api;
    auto const created = api.call(kAdmin, "PUT", "/v1/devices/LAPTOP-0042/enrollment", kEnrollBody);
    REQUIRE(created.status == 201);
    auto const body = body_of(created);
    CHECK(string_at(body, "device_id") == "LAPTOP-0042");
    auto const& enrollment = body.at("enrollment").as_object();
    CHECK(enrollment.at("enrolled").as_bool());
    CHECK(string_at(enrollment, "owner") == "sam@example.com");
    CHECK(string_at(enrollment, "source") == "mdm");
    CHECK(string_at(enrollment, "updated_by") == "it-admin@example.com");
    CHECK(string_at(enrollment, "updated_at") == "2026-11-27T21:00:00Z");

    SECTION("the same enrollment again answers 200 with the existing object") {
        api.clock.advance(1h);
        auto const again = api.call(kAdmin, "PUT", "/v1/devices/LAPTOP-0042/enrollment", kEnrollBody);
        CHECK(again.status == 200);
        CHECK(body_of(again) == body);
    }
    SECTION("a changed enrollment answers 200 with the new values") {
        auto const changed = api.call(kAdmin, "PUT", "/v1/devices/LAPTOP-0042/enrollment",
                                      R"({"enrolled": false, "owner": "sam@example.com"})");
        CHECK(changed.status == 200);
        auto const changed_body = body_of(changed);
        auto const& e = changed_body.at("enrollment").as_object();
        CHECK_FALSE(e.at("enrolled").as_bool());
        CHECK(string_at(e, "source") == "manual");
    }
    SECTION("the help desk sees it") {
        auto const shown = api.call(kHelpdesk, "GET", "/v1/devices/LAPTOP-0042");
        CHECK(shown.status == 200);
        CHECK(body_of(shown) == body);
    }
}

TEST_CASE("A bad enrollment body is refused with 400 and stores nothing", "[router]")
{
    Api api;
    auto const put = [&](std::string const& body) {
        return api.call(kAdmin, "PUT", "/v1/devices/LAPTOP-0042/enrollment", body);
    };
    SECTION("not JSON") { check_error(put("{enrolled: true}"), 400, "malformed_json"); }
    SECTION("not an object") { check_error(put("[true]"), 400, "malformed_json"); }
    SECTION("enrolled missing") { check_error(put(R"({"owner": "sam@example.com"})"), 400, "invalid_field"); }
    SECTION("enrolled not a boolean") { check_error(put(R"({"enrolled": "yes"})"), 400, "invalid_field"); }
    SECTION("an unknown field") { check_error(put(R"({"enrolled": true, "enroled": true})"), 400, "invalid_field"); }
    SECTION("an owner that is not an email") {
        check_error(put(R"({"enrolled": false, "owner": "sam"})"), 400, "invalid_field");
    }
    SECTION("a source that is not a string") {
        check_error(put(R"({"enrolled": true, "source": 7})"), 400, "invalid_field");
    }
    CHECK_FALSE(api.store->get_device("LAPTOP-0042"));
}

TEST_CASE("The device list answers {devices: [...]} and filters by state", "[router]")
{
    Api api;
    REQUIRE(api.call(kAdmin, "PUT", "/v1/devices/LAPTOP-0042/enrollment", kEnrollBody).status == 201);
    REQUIRE(api.check_in(kEndpoint, api.posture()).status == 200);
    REQUIRE(api.check_in(kOtherEndpoint, PostureJson{"LAPTOP-0043", api.clock.now()}).status == 200);

    auto const listed = [&](std::string const& target) {
        auto const response = api.call(kHelpdesk, "GET", target);
        INFO(target << " -> " << response.body);
        REQUIRE(response.status == 200);
        auto const body = body_of(response);
        REQUIRE(body.size() == 2);
        std::vector<std::string> ids;
        for (auto const& d : body.at("devices").as_array()) ids.push_back(string_at(d.as_object(), "device_id"));
        if (auto const& next = body.at("next_after"); !next.is_null()) ids.push_back("next:" + std::string(next.as_string()));
        return ids;
    };
    using Ids = std::vector<std::string>;
    CHECK(listed("/v1/devices") == Ids{"LAPTOP-0042", "LAPTOP-0043"});
    CHECK(listed("/v1/devices?state=allowed") == Ids{"LAPTOP-0042"});
    CHECK(listed("/v1/devices?state=denied") == Ids{"LAPTOP-0043"});
    CHECK(listed("/v1/devices?state=unenrolled") == Ids{"LAPTOP-0043"});
    CHECK(listed("/v1/devices?state=exempted").empty());
    CHECK(listed("/v1/devices?state=stale").empty());
    CHECK(listed("/v1/devices?other=1&state=%61llowed") == Ids{"LAPTOP-0042"});

    SECTION("pages: limit, then after the last id") {
        CHECK(listed("/v1/devices?limit=1") == Ids{"LAPTOP-0042", "next:LAPTOP-0042"});
        CHECK(listed("/v1/devices?limit=1&after=LAPTOP-0042") == Ids{"LAPTOP-0043"});
        CHECK(listed("/v1/devices?limit=2") == Ids{"LAPTOP-0042", "LAPTOP-0043"});
        CHECK(listed("/v1/devices?after=LAPTOP-0043").empty());
        CHECK(listed("/v1/devices?state=denied&after=LAPTOP-0000&limit=1") == Ids{"LAPTOP-0043"});
        for (auto const* bad : {"/v1/devices?limit=0", "/v1/devices?limit=10001", "/v1/devices?limit=-1",
                                "/v1/devices?limit=two", "/v1/devices?after=%27%20OR%201%3D1"}) {
            INFO(bad);
            check_error(api.call(kHelpdesk, "GET", bad), 400, "invalid_field");
        }
    }
        SECTION("stale follows the injected clock and the policy's stale_after_hours") {
        api.clock.advance(72h);
        CHECK(listed("/v1/devices?state=stale").empty());
        api.clock.advance(1s);
        CHECK(listed("/v1/devices?state=stale") == Ids{"LAPTOP-0042", "LAPTOP-0043"});
    }
    SECTION("an unknown state is refused") {
        for (auto const* target : {"/v1/devices?state=compliant", "/v1/devices?state=", "/v1/devices?state=ALLOWED"}) {
            INFO(target);
            check_error(api.call(kHelpdesk, "GET", target), 400, "invalid_field");
        }
    }
    SECTION("a state value whose percent-encoding is broken is refused, not ignored") {
        // Ignoring it would answer the whole, unfiltered list to a caller who asked for a subset.
        for (auto const* target : {"/v1/devices?state=%zz", "/v1/devices?state=denied%", "/v1/devices?state=%6"}) {
            INFO(target);
            check_error(api.call(kHelpdesk, "GET", target), 400, "invalid_field");
        }
    }
}

TEST_CASE("The device list shows devices enrolled after an earlier read of one device", "[router]")
{
    // The daemon's real set-up: a database file in WAL mode.
    exemptd::test::TempDir dir;
    Api api(dir.file("exemptd.db"));
    REQUIRE(api.call(kAdmin, "PUT", "/v1/devices/LAPTOP-0001/enrollment", kEnrollBody).status == 201);
    REQUIRE(api.call(kHelpdesk, "GET", "/v1/devices/LAPTOP-0001").status == 200);
    REQUIRE(api.call(kAdmin, "PUT", "/v1/devices/LAPTOP-0002/enrollment", kEnrollBody).status == 201);
    auto const body = body_of(api.call(kHelpdesk, "GET", "/v1/devices"));
    std::vector<std::string> ids;
    for (auto const& d : body.at("devices").as_array()) ids.push_back(string_at(d.as_object(), "device_id"));
    CHECK(ids == std::vector<std::string>{"LAPTOP-0001", "LAPTOP-0002"});
}

TEST_CASE("A new policy applies to the next request", "[router]")
{
    Api api;
    auto relaxed = exemptd::test::policy_from_yaml(
        "version: 1\ncontrols:\n  - id: ENC-01\n    title: Disk encryption is on\n"
        "    check: {fact: disk_encrypted, equals: true}\n"
        "exemptions:\n  max_days: {low: 1, medium: 1, high: 1, critical: 1}\n"
        "  review_every_days: {low: 1, medium: 1, high: 1, critical: 1}\n"
        "checkin: {interval_seconds: 1200, max_clock_skew_seconds: 30}\n");
    api.router.set_policy(std::make_shared<exemptd::Policy const>(relaxed));
    CHECK(api.router.policy()->version == relaxed.version);
    auto const body = body_of(api.check_in(kEndpoint, api.posture()));
    CHECK(string_at(body, "decision") == "allow");  // no MDM-01 any more
    CHECK(body.at("next_checkin_seconds").as_int64() == 1200);
    CHECK(string_at(body, "policy_version") == relaxed.version);
    check_error(api.check_in(kEndpoint, api.posture("nonce-0002").reported_at(api.clock.now() - 31s)), 422,
                "clock_skew");
}

TEST_CASE("Every answered check-in is counted by its decision", "[router]")
{
    Api api;
    (void)api.check_in(kEndpoint, api.posture());
    (void)api.check_in(kEndpoint, api.posture());  // a replay: refused, not counted
    auto const text = api.metrics.render();
    CHECK_THAT(text, Contains("exemptd_checkins_total{decision=\"deny\",basis=\"noncompliant\"} 1\n"));
    CHECK_THAT(text, Contains("exemptd_checkins_total{decision=\"allow\",basis=\"compliant\"} 0\n"));
}

TEST_CASE("An error response has the SPEC shape", "[router]")
{
    auto const response = exemptd::daemon::error_response(exemptd::api_error(409, "replay", "Say \"hi\" again."));
    check_error(response, 409, "replay");
    CHECK(body_of(response).at("error").as_object().at("message").as_string() == "Say \"hi\" again.");
}

TEST_CASE("A device that checks in too often gets 429 rate_limited with Retry-After and nothing is written",
          "[router][limits]")
{
    Api api;
    api.router.set_checkin_rate(3);
    for (int i = 0; i < 3; ++i) REQUIRE(api.check_in(kEndpoint, api.posture("burst-000" + std::to_string(i))).status == 200);
    auto const before = api.store->get_device("LAPTOP-0042");
    REQUIRE(before);
    api.clock.advance(1s);

    auto const refused = api.check_in(kEndpoint, api.posture("burst-0003"));
    check_error(refused, 429, "rate_limited");
    CHECK(refused.retry_after_seconds == 19);  // one check-in every 20 s once the burst is spent
    auto const after = api.store->get_device("LAPTOP-0042");
    REQUIRE(after);
    CHECK(after->last_checkin == before->last_checkin);

    SECTION("it is refused at admission, before its body is read") {
        check_precheck(api.router, kEndpoint, "POST", "/v1/checkin", 429, "rate_limited");
    }
    SECTION("another device and other routes are not limited") {
        CHECK(api.check_in(kOtherEndpoint, PostureJson{"LAPTOP-0043", api.clock.now()}).status == 200);
        CHECK(api.call(kEndpoint, "GET", "/v1/devices/LAPTOP-0042/decision").status == 200);
    }
    SECTION("after Retry-After the device may check in again, and the refused nonce was not used up") {
        api.clock.advance(19s);
        CHECK(api.check_in(kEndpoint, api.posture("burst-0003")).status == 200);
    }
}

TEST_CASE("Without a configured rate the router does not limit check-ins", "[router][limits]")
{
    Api api;
    for (int i = 0; i < 50; ++i) CHECK(api.check_in(kEndpoint, api.posture("nonce-00" + std::to_string(i))).status == 200);
}
