#include "fixtures.hpp"
#include "https_client.hpp"

#include <catch2/catch.hpp>

using namespace exemptd::client;
using exemptd::client::test::ScratchDir;

TEST_CASE("A server URL gives host and port", "[https]")
{
    auto const plain = parse_server_url("https://exemptd.example.com:8443");
    REQUIRE(plain);
    CHECK(plain->host == "exemptd.example.com");
    CHECK(plain->port == "8443");

    auto const default_port = parse_server_url("https://127.0.0.1/");
    REQUIRE(default_port);
    CHECK(default_port->host == "127.0.0.1");
    CHECK(default_port->port == "443");

    auto const v6 = parse_server_url("https://[::1]:8443");
    REQUIRE(v6);
    CHECK(v6->host == "::1");
    CHECK(v6->port == "8443");
}

TEST_CASE("A server URL that is not https://host[:port] is refused", "[https]")
{
    for (char const* bad : {"http://h:1", "h:8443", "https://", "https://:8443", "https://h:", "https://h:0",
                            "https://h:65536", "https://h:84x3", "https://h:1/v1", "https://u@h:1", "https://::1:8443",
                            "https://[::1", "https://[::1]8443"}) {
        INFO(bad);
        CHECK_FALSE(parse_server_url(bad));
    }
    auto const scheme = parse_server_url("http://h:1");
    REQUIRE_FALSE(scheme);
    CHECK(scheme.error().message == "invalid server URL \"http://h:1\": it must start with https://");
}

TEST_CASE("A client is not made from unreadable or unusable TLS files", "[https]")
{
    ScratchDir dir;
    auto const garbage = dir.write("garbage.pem", "not a certificate\n").string();
    auto const missing = (dir.path() / "missing.pem").string();

    auto const no_ca = HttpsClient::create({"https://127.0.0.1:1", garbage, garbage, missing}, "test");
    REQUIRE_FALSE(no_ca);
    CHECK(no_ca.error().message == "cannot read CA certificate " + missing + ": No such file or directory");

    auto const bad_cert = HttpsClient::create({"https://127.0.0.1:1", garbage, garbage, garbage}, "test");
    REQUIRE_FALSE(bad_cert);
    CHECK(bad_cert.error().message.starts_with("cannot load client certificate/key " + garbage));

    auto const bad_url = HttpsClient::create({"ftp://x", garbage, garbage, garbage}, "test");
    REQUIRE_FALSE(bad_url);
    CHECK(bad_url.error().message.starts_with("invalid server URL"));
}
