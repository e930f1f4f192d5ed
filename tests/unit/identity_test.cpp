#include "support.hpp"

#include "exemptd/identity.hpp"

#include <catch2/catch.hpp>

using exemptd::Errc;
using exemptd::Role;
using exemptd::test::CertSpec;
using exemptd::test::endpoint_cert;
using exemptd::test::make_certificate;
using exemptd::test::person_cert;

namespace {

exemptd::Result<exemptd::ClientId> identity_of(CertSpec const& spec)
{
    auto const cert = make_certificate(spec);
    return exemptd::identity_from_certificate(cert.get());
}

void check_refused(CertSpec const& spec)
{
    auto const id = identity_of(spec);
    REQUIRE_FALSE(id);
    CHECK(id.error() == exemptd::make_error_code(Errc::peer_not_authorized));
}

}  // namespace

TEST_CASE("An endpoint certificate names its device", "[identity]")
{
    auto const id = identity_of(endpoint_cert("LAPTOP-0042"));
    REQUIRE(id);
    CHECK(id->role == Role::endpoint);
    CHECK(id->device_id == "LAPTOP-0042");
    CHECK(id->email.empty());
}

TEST_CASE("Help desk and admin certificates name a person by email", "[identity]")
{
    SECTION("help desk") {
        auto const id = identity_of(person_cert("helpdesk", "alex@example.com"));
        REQUIRE(id);
        CHECK(id->role == Role::helpdesk);
        CHECK(id->email == "alex@example.com");
        CHECK(id->device_id.empty());
    }
    SECTION("admin") {
        auto const id = identity_of(person_cert("admin", "ciso@example.com"));
        REQUIRE(id);
        CHECK(id->role == Role::admin);
        CHECK(id->email == "ciso@example.com");
    }
}

TEST_CASE("Role and identity come from the SAN, never from the CN", "[identity]")
{
    SECTION("a CN that looks like a role grants nothing") {
        CertSpec spec;
        spec.common_name = "urn:exemptd:role:admin";
        check_refused(spec);
    }
    SECTION("a CN naming another device does not change the device") {
        auto spec = endpoint_cert("LAPTOP-0042");
        spec.common_name = "LAPTOP-9999";
        auto const id = identity_of(spec);
        REQUIRE(id);
        CHECK(id->device_id == "LAPTOP-0042");
    }
}

TEST_CASE("URIs outside the exemptd namespace are ignored", "[identity]")
{
    auto spec = endpoint_cert("LAPTOP-0042");
    spec.uris.push_back("https://example.com/devices/LAPTOP-0042");
    spec.uris.push_back("urn:example:role:admin");
    auto const id = identity_of(spec);
    REQUIRE(id);
    CHECK(id->role == Role::endpoint);
}

TEST_CASE("A certificate without exactly one known role is refused", "[identity]")
{
    SECTION("no SAN at all") {
        check_refused(CertSpec{});
    }
    SECTION("an email but no role") {
        CertSpec spec;
        spec.emails = {"sam@example.com"};
        check_refused(spec);
    }
    SECTION("a device URI but no role") {
        CertSpec spec;
        spec.uris = {"urn:exemptd:device:LAPTOP-0042"};
        check_refused(spec);
    }
    SECTION("two different roles") {
        auto spec = person_cert("admin", "ciso@example.com");
        spec.uris.push_back("urn:exemptd:role:helpdesk");
        check_refused(spec);
    }
    SECTION("an endpoint and a person role") {
        auto spec = endpoint_cert("LAPTOP-0042");
        spec.uris.push_back("urn:exemptd:role:admin");
        spec.emails = {"ciso@example.com"};
        check_refused(spec);
    }
    SECTION("the same role twice") {
        auto spec = person_cert("admin", "ciso@example.com");
        spec.uris.push_back("urn:exemptd:role:admin");
        check_refused(spec);
    }
    SECTION("a role that does not exist") {
        check_refused(person_cert("root", "ciso@example.com"));
        check_refused(person_cert("Admin", "ciso@example.com"));
        check_refused(person_cert("", "ciso@example.com"));
    }
}

TEST_CASE("An unknown urn:exemptd: URI refuses the certificate", "[identity]")
{
    auto spec = person_cert("admin", "ciso@example.com");
    spec.uris.push_back("urn:exemptd:approver:critical");
    check_refused(spec);
}

TEST_CASE("An endpoint certificate needs exactly one valid device URI", "[identity]")
{
    SECTION("no device URI") {
        CertSpec spec;
        spec.uris = {"urn:exemptd:role:endpoint"};
        check_refused(spec);
    }
    SECTION("two device URIs") {
        auto spec = endpoint_cert("LAPTOP-0042");
        spec.uris.push_back("urn:exemptd:device:LAPTOP-0043");
        check_refused(spec);
    }
    SECTION("the same device URI twice") {
        auto spec = endpoint_cert("LAPTOP-0042");
        spec.uris.push_back("urn:exemptd:device:LAPTOP-0042");
        check_refused(spec);
    }
    SECTION("an invalid device id") {
        for (std::string const& id : std::vector<std::string>{"", "LAPTOP 0042", "LAPTOP/0042", "a?b", std::string(65, 'x')}) {
            INFO("device id: \"" << id << '"');
            check_refused(endpoint_cert(id));
        }
    }
    SECTION("the longest valid device id") {
        auto const id = identity_of(endpoint_cert(std::string(64, 'x')));
        REQUIRE(id);
        CHECK(id->device_id == std::string(64, 'x'));
    }
}

TEST_CASE("A help desk or admin certificate needs exactly one email", "[identity]")
{
    for (auto const* role : {"helpdesk", "admin"}) {
        INFO("role: " << role);
        SECTION(std::string("no email for ") + role) {
            auto spec = person_cert(role, "x@example.com");
            spec.emails.clear();
            check_refused(spec);
        }
        SECTION(std::string("two emails for ") + role) {
            auto spec = person_cert(role, "x@example.com");
            spec.emails.push_back("y@example.com");
            check_refused(spec);
        }
        SECTION(std::string("an empty email for ") + role) {
            check_refused(person_cert(role, ""));
        }
        SECTION(std::string("a device URI on a person certificate for ") + role) {
            auto spec = person_cert(role, "x@example.com");
            spec.uris.push_back("urn:exemptd:device:LAPTOP-0042");
            check_refused(spec);
        }
    }
}

TEST_CASE("A certificate without the clientAuth extended key usage is refused", "[identity]")
{
    SECTION("no extended key usage at all") {
        auto spec = person_cert("admin", "ciso@example.com");
        spec.client_auth = false;
        check_refused(spec);
    }
    SECTION("serverAuth only") {
        auto spec = endpoint_cert("LAPTOP-0042");
        spec.client_auth = false;
        spec.server_auth = true;
        check_refused(spec);
    }
    SECTION("serverAuth and clientAuth together are fine") {
        auto spec = endpoint_cert("LAPTOP-0042");
        spec.server_auth = true;
        CHECK(identity_of(spec));
    }
}

TEST_CASE("A CA certificate is never a client identity", "[identity]")
{
    auto spec = person_cert("admin", "ciso@example.com");
    SECTION("CA:TRUE is refused") {
        spec.ca = true;
        check_refused(spec);
    }
    SECTION("CA:FALSE is accepted") {
        spec.ca = false;
        CHECK(identity_of(spec));
    }
}

TEST_CASE("No certificate is no identity", "[identity]")
{
    auto const id = exemptd::identity_from_certificate(nullptr);
    REQUIRE_FALSE(id);
    CHECK(id.error() == exemptd::make_error_code(Errc::peer_not_authorized));
}

TEST_CASE("A device id is 1-64 characters of [A-Za-z0-9._:-]", "[identity]")
{
    for (std::string const& id : std::vector<std::string>{"a", "Z", "0", "LAPTOP-0042", "host.example.com", "aa:bb:cc:dd:ee:ff", "x_y",
                                 std::string(64, '9')}) {
        INFO("valid: " << id);
        CHECK(exemptd::is_valid_device_id(id));
    }
    for (std::string const& id : std::vector<std::string>{"", std::string(65, '9'), "a b", "a/b", "a\\b", "a@b", "a#b", "a%20b", "é",
                                 std::string("a\0b", 3), "a\nb"}) {
        INFO("invalid: " << id);
        CHECK_FALSE(exemptd::is_valid_device_id(id));
    }
}

TEST_CASE("Roles have their API names", "[identity]")
{
    CHECK(exemptd::to_string(Role::endpoint) == "endpoint");
    CHECK(exemptd::to_string(Role::helpdesk) == "helpdesk");
    CHECK(exemptd::to_string(Role::admin) == "admin");
}
