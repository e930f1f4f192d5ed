#include "agent.hpp"
#include "agent_app.hpp"
#include "fixtures.hpp"
#include "posture_collector.hpp"

#include "exemptd/posture.hpp"

#include <catch2/catch.hpp>

#include <boost/json/parse.hpp>

#include <sstream>
#include <vector>

using namespace exemptd;
using namespace exemptd::client;

namespace {

TimePoint const kNow = *parse_rfc3339("2026-11-27T21:00:00Z");

std::string const kReport = R"({"hostname":"sam-laptop","serial":"C02XYZ123","os":{"name":"debian","version":"12.8"},
  "facts":{"disk_encrypted":true,"firewall_enabled":true,"screen_lock_seconds":300,"os_patch_age_days":12},
  "agent_version":"0.1.0"})";

std::string data(std::string const& name)
{
    return (std::filesystem::path(EXEMPTD_CLIENT_TEST_DATA) / name).string();
}

}  // namespace

TEST_CASE("A posture file gets a fresh nonce, time and device id when it has none", "[agent]")
{
    int asked = 0;
    auto const device = [&asked]() -> ClientResult<std::string> {
        ++asked;
        return std::string("LAPTOP-0042");
    };
    auto const body = complete_posture_json(kReport, device, "4f1c2a9e7b3d5a60", kNow);
    REQUIRE(body);
    auto const report = decode_posture(*body);
    REQUIRE(report);
    CHECK(report->device_id == "LAPTOP-0042");
    CHECK(report->nonce == "4f1c2a9e7b3d5a60");
    CHECK(report->reported_at == kNow);
    CHECK(asked == 1);

    SECTION("fields the file sets are kept as written") {
        std::string const file = R"({"device_id":"PC-1","nonce":"aaaaaaaa","reported_at":"2020-01-01T00:00:00Z"})";
        auto const kept = complete_posture_json(file, device, "bbbbbbbb", kNow);
        REQUIRE(kept);
        auto const obj = boost::json::parse(*kept).as_object();
        CHECK(obj.at("device_id") == "PC-1");
        CHECK(obj.at("nonce") == "aaaaaaaa");
        CHECK(obj.at("reported_at") == "2020-01-01T00:00:00Z");
        CHECK(asked == 1);  // the certificate was not needed
    }
    SECTION("a device id that cannot be found fails the report") {
        auto const failing = []() -> ClientResult<std::string> { return client_error("no device"); };
        auto const refused = complete_posture_json(kReport, failing, "n", kNow);
        REQUIRE_FALSE(refused);
        CHECK(refused.error().message == "no device");
    }
    SECTION("a file that is not a JSON object is refused") {
        CHECK_FALSE(complete_posture_json("[1,2]", device, "n", kNow));
        CHECK_FALSE(complete_posture_json("{", device, "n", kNow));
    }
}

TEST_CASE("The device id comes from --device-id or the endpoint certificate", "[agent]")
{
    auto const given = resolve_device_id("PC-1", "/nonexistent");
    REQUIRE(given);
    CHECK(*given == "PC-1");
    auto const invalid = resolve_device_id("bad id!", "/nonexistent");
    REQUIRE_FALSE(invalid);
    CHECK(invalid.error().message.starts_with("invalid --device-id \"bad id!\""));

    exemptd::client::test::ScratchDir dir;
    auto const endpoint =
        dir.make_certificate("endpoint", "URI:urn:exemptd:role:endpoint,URI:urn:exemptd:device:LAPTOP-0042");
    auto const from_cert = resolve_device_id("", endpoint.string());
    REQUIRE(from_cert);
    CHECK(*from_cert == "LAPTOP-0042");

    auto const admin = device_id_from_certificate(
        dir.make_certificate("admin", "URI:urn:exemptd:role:admin,email:alex@example.com").string());
    REQUIRE_FALSE(admin);
    CHECK(admin.error().message.find("is not an endpoint certificate") != std::string::npos);

    auto const not_pem = device_id_from_certificate(data("dpkg.log"));
    REQUIRE_FALSE(not_pem);
    CHECK(not_pem.error().message.find("not a PEM certificate") != std::string::npos);
}

TEST_CASE("Nonces are 32 fresh hex digits", "[agent]")
{
    auto const a = random_nonce();
    auto const b = random_nonce();
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->size() == 32);
    CHECK(a->find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(*a != *b);
}

TEST_CASE("A collected report is one the daemon's decoder accepts", "[agent]")
{
    auto const report = collect_posture("LAPTOP-0042", kNow);
    REQUIRE(report);
    CHECK(report->agent_version == "0.1.0");
    auto const decoded = decode_posture(encode_posture(*report));
    INFO(encode_posture(*report));
    REQUIRE(decoded);
    CHECK(decoded->device_id == "LAPTOP-0042");
    CHECK(decoded->reported_at == kNow);
}

TEST_CASE("The agent stops with exit code 2 when it has no connection settings", "[agent]")
{
    std::ostringstream out;
    std::ostringstream err;
    AgentOptions options;
    options.config = data("missing-agent.yaml");
    options.once = true;
    auto const none = [](std::string const&) -> std::optional<std::string> { return std::nullopt; };
    CHECK(run_agent(options, out, err, none) == 2);
    CHECK(err.str().starts_with("exempt-agent: cannot read "));
    CHECK(out.str().empty());
}

TEST_CASE("exempt-agent refuses a bad command line with exit code 2", "[agent]")
{
    std::ostringstream out;
    std::ostringstream err;
    std::vector<char const*> args{"exempt-agent", "--once", "--bogus"};
    auto const none = [](std::string const&) -> std::optional<std::string> { return std::nullopt; };
    CHECK(run_exempt_agent(static_cast<int>(args.size()), args.data(), out, err, none) == 2);
    CHECK(err.str().starts_with("exempt-agent: The following argument was not expected: --bogus\n"));
}
