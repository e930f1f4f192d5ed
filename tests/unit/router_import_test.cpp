#include "router_fixture.hpp"

#include "exemptd/digest.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include <memory>

using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using exemptd::ClientId;
using exemptd::Role;
using exemptd::daemon::HttpResponse;
using exemptd::daemon::Router;
using exemptd::test::PostureJson;

namespace {

ClientId const kEndpoint{Role::endpoint, "LAPTOP-0042", {}};
ClientId const kHelpdesk{Role::helpdesk, {}, "alex@example.com"};
ClientId const kAdmin{Role::admin, {}, "it-admin@example.com"};

// A router over a fresh in-memory store and the standard policy.
struct Api : exemptd::test::RouterFixture {
    // POST /v1/devices/import as the server would hand it over: admitted, then handled.
    HttpResponse import(ClientId const& client, std::string const& csv, std::string_view type = "text/csv") const
    {
        auto const route = router.admit(client, "POST", "/v1/devices/import");
        if (!route) return exemptd::daemon::error_response(route.error());
        return router.handle(client, *route, csv, type);
    }
    HttpResponse check_in(PostureJson const& posture) const
    {
        return router.handle(kEndpoint, {"POST", "/v1/checkin", posture.str()});
    }
    [[nodiscard]] std::vector<exemptd::AuditRecord> audit() const { return store->list_audit(0, 1000).value(); }
};

boost::json::object body_of(HttpResponse const& response)
{
    INFO("body: " << response.body);
    auto value = boost::json::parse(response.body);
    REQUIRE(value.is_object());
    return std::move(value.as_object());
}

void check_counts(HttpResponse const& response, std::int64_t created, std::int64_t changed, std::int64_t unchanged)
{
    INFO("body: " << response.body);
    REQUIRE(response.status == 200);
    auto const body = body_of(response);
    CHECK(body.at("created").as_int64() == created);
    CHECK(body.at("changed").as_int64() == changed);
    CHECK(body.at("unchanged").as_int64() == unchanged);
    CHECK(body.at("rows").as_int64() == created + changed + unchanged);
}

constexpr char const* kFile = "device_id,enrolled,owner,source\n"
                              "LAPTOP-0001,true,sam@example.com,jamf\n"
                              "LAPTOP-0002,false,jordan@example.com,\n";

}  // namespace

TEST_CASE("An import creates, changes or leaves each device and audits once", "[router][import]")
{
    Api api;
    check_counts(api.import(kAdmin, kFile), 2, 0, 0);
    auto const device = api.store->get_device("LAPTOP-0002").value();
    REQUIRE(device.enrollment);
    CHECK_FALSE(device.enrollment->enrolled);
    CHECK(device.enrollment->owner == "jordan@example.com");
    CHECK(device.enrollment->source == "mdm-import");
    CHECK(device.enrollment->updated_by == "it-admin@example.com");
    auto const audit = api.audit();
    REQUIRE(audit.size() == 1);
    CHECK(audit[0].action == "devices.imported");
    CHECK(audit[0].actor == "it-admin@example.com");
    CHECK_THAT(audit[0].details, Contains("\"created\":2") && Contains(exemptd::sha256_hex(kFile)));

    SECTION("the same file again changes nothing and is not audited") {
        check_counts(api.import(kAdmin, kFile), 0, 0, 2);
        CHECK(api.audit().size() == 1);
    }
    SECTION("a changed row updates only that device") {
        check_counts(api.import(kAdmin, "device_id,enrolled,owner,source\n"
                                        "LAPTOP-0001,true,sam@example.com,jamf\n"
                                        "LAPTOP-0002,true,jordan@example.com,\n"
                                        "LAPTOP-0003,1,,\n"),
                     1, 1, 1);
        CHECK(api.store->get_device("LAPTOP-0002").value().enrollment->enrolled);
        CHECK(api.audit().size() == 2);
    }
}

TEST_CASE("An import re-evaluates a device that has checked in", "[router][import]")
{
    Api api;
    REQUIRE(api.import(kAdmin, "device_id,enrolled\nLAPTOP-0042,true\n").status == 200);
    PostureJson posture{"LAPTOP-0042", api.clock.now()};
    auto const first = api.check_in(posture.nonce("nonce-0001"));
    INFO("check-in: " << first.body);
    REQUIRE(body_of(first).at("decision").as_string() == "allow");
    check_counts(api.import(kAdmin, "device_id,enrolled\nLAPTOP-0042,false\n"), 0, 1, 0);
    auto const device = api.store->get_device("LAPTOP-0042").value();
    REQUIRE(device.latest_decision);
    CHECK_FALSE(device.latest_decision->allow);
    auto const audit = api.audit();
    REQUIRE(audit.size() >= 2);
    CHECK(audit[audit.size() - 2].action == "devices.imported");
    CHECK(audit.back().action == "decision.changed");
}

TEST_CASE("A refused import writes nothing", "[router][import]")
{
    Api api;
    SECTION("an invalid row") {
        auto const response = api.import(kAdmin, "device_id,enrolled\nLAPTOP-0001,true\nLAPTOP 2,true\n");
        CHECK(response.status == 422);
        CHECK_THAT(response.body, Contains("invalid_row") && Contains("line 3"));
    }
    SECTION("broken CSV") {
        CHECK(api.import(kAdmin, "device_id,enrolled\nLAPTOP-0001,\"true\n").status == 400);
    }
    SECTION("another content type") {
        CHECK(api.import(kAdmin, kFile, "application/json").status == 415);
        CHECK(api.import(kAdmin, kFile, "").status == 415);
    }
    SECTION("a caller who is not an admin") {
        CHECK(api.import(kHelpdesk, kFile).status == 403);
        CHECK(api.import(kEndpoint, kFile).status == 403);
    }
    CHECK_FALSE(api.store->get_device("LAPTOP-0001"));
    CHECK(api.audit().empty());
}

TEST_CASE("Only the import route takes a body above the configured limit", "[router][import]")
{
    CHECK(Router::body_limit(exemptd::daemon::Action::device_import, 65536) == exemptd::kMaxImportBytes);
    CHECK(Router::body_limit(exemptd::daemon::Action::checkin, 65536) == 65536);
    CHECK(Router::largest_body_limit(65536) == exemptd::kMaxImportBytes);
    Api api;
    auto const route = api.router.admit(kAdmin, "POST", "/v1/devices/import");
    REQUIRE(route.has_value());
    CHECK(route->action == exemptd::daemon::Action::device_import);
    // "import" is also a valid device id: reading it still reads that device.
    auto const show = api.router.admit(kHelpdesk, "GET", "/v1/devices/import");
    REQUIRE(show.has_value());
    CHECK(show->action == exemptd::daemon::Action::device_show);
}
