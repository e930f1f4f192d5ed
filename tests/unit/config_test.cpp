#include "support.hpp"

#include "exemptd/config.hpp"

#include <catch2/catch.hpp>

using Catch::Matchers::Contains;
using exemptd::load_config_file;
using exemptd::test::TempDir;

namespace {

constexpr char const* kBase = "tls: {cert: s.crt, key: s.key, client_ca: ca.crt}\ndatabase: x.db\npolicy: p.yaml\n";

}  // namespace

TEST_CASE("The connection and check-in limits have documented defaults", "[config]")
{
    TempDir dir;
    auto const config = load_config_file(dir.write("exemptd.yaml", kBase));
    REQUIRE(config);
    CHECK(config->limits.max_connections == 20000);
    CHECK(config->limits.max_connections_per_address == 0);
    CHECK(config->limits.checkin_rate_per_minute == 12);
    CHECK(config->limits.max_header_bytes == 16 * 1024);
    CHECK(config->limits.request_timeout == std::chrono::seconds{15});
}

TEST_CASE("The connection and check-in limits are read under limits:", "[config]")
{
    TempDir dir;
    auto const config = load_config_file(dir.write(
        "exemptd.yaml", std::string(kBase) + "limits: {max_connections: 50, max_connections_per_address: 4, "
                                             "checkin_rate_per_minute: 0, request_timeout_seconds: 3}\n"));
    REQUIRE(config);
    CHECK(config->limits.max_connections == 50);
    CHECK(config->limits.max_connections_per_address == 4);
    CHECK(config->limits.checkin_rate_per_minute == 0);
    CHECK(config->limits.request_timeout == std::chrono::seconds{3});
}

TEST_CASE("Limits out of range, of a wrong type or unknown are refused with their line", "[config]")
{
    TempDir dir;
    for (auto const* limits : {"{max_connections: 0}", "{max_connections: many}", "{max_connections_per_address: -1}",
                               "{checkin_rate_per_minute: 6001}", "{checkin_rate_per_minute: 1.5}", "{max_conns: 5}"}) {
        INFO(limits);
        auto const config = load_config_file(dir.write("exemptd.yaml", std::string(kBase) + "limits: " + limits + "\n"));
        REQUIRE_FALSE(config);
        CHECK(config.error().line == 4);
    }
}

TEST_CASE("metrics_listen must be a loopback address: its listener has no TLS", "[config]")
{
    TempDir dir;
    for (auto const* host : {"127.0.0.1:9464", "127.1.2.3:0", "[::1]:9464"}) {
        INFO(host);
        auto const config = load_config_file(dir.write("exemptd.yaml", std::string(kBase) + "metrics_listen: '" + host + "'\n"));
        CHECK(config);
    }
    for (auto const* host : {"0.0.0.0:9464", "10.0.0.5:9464", "[::]:9464", "[::ffff:127.0.0.1]:9464", "localhost:9464"}) {
        INFO(host);
        auto const config = load_config_file(dir.write("exemptd.yaml", std::string(kBase) + "metrics_listen: '" + host + "'\n"));
        REQUIRE_FALSE(config);
        CHECK(config.error().line == 4);
        CHECK_THAT(config.error().reason, Contains("loopback"));
    }
}
