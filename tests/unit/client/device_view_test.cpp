#include "device_view.hpp"

#include "fixtures.hpp"

#include <catch2/catch.hpp>

using namespace exemptd;
using namespace exemptd::client;

namespace {

constexpr char kDevice[] = R"({"device_id":"LAPTOP-0042",
  "enrollment":{"enrolled":false,"owner":"sam@example.com","source":"manual",
                "updated_at":"2026-11-20T09:00:00Z","updated_by":"alex@example.com"},
  "hostname":"sam-laptop","serial":"C02XYZ123","os":{"name":"debian","version":"12.8"},
  "last_checkin":"2026-11-27T21:00:00Z",
  "decision":{"device_id":"LAPTOP-0042","decision":"allow","basis":"exempted",
    "controls":[{"id":"MDM-01","status":"fail","reason":"device is not enrolled in MDM","covered_by":"EX-000007"},
                {"id":"ENC-01","status":"pass"}],
    "policy_version":"sha256:abc","evaluated_at":"2026-11-27T21:00:01Z","next_checkin_seconds":900}})";

constexpr char kNewDevice[] = R"({"device_id":"PC-7","enrollment":null,"hostname":"","serial":"",
  "os":{"name":"","version":""},"last_checkin":null,"decision":null})";

}  // namespace

TEST_CASE("A device object is read with its enrollment and decision", "[device]")
{
    auto const device = device_from_body(kDevice);
    REQUIRE(device);
    CHECK(device->device_id == "LAPTOP-0042");
    CHECK(device->hostname == "sam-laptop");
    CHECK(device->os_version == "12.8");
    REQUIRE(device->enrollment);
    CHECK_FALSE(device->enrollment->enrolled);
    CHECK(device->enrollment->owner == "sam@example.com");
    CHECK(device->enrollment->updated_at == parse_rfc3339("2026-11-20T09:00:00Z"));
    CHECK(device->last_checkin == parse_rfc3339("2026-11-27T21:00:00Z"));
    REQUIRE(device->latest_decision);
    CHECK(device->latest_decision->basis == Basis::exempted);
    CHECK(device->latest_decision->controls.size() == 2);

    SECTION("nulls read as absent") {
        auto const fresh = device_from_body(kNewDevice);
        REQUIRE(fresh);
        CHECK_FALSE(fresh->enrollment);
        CHECK_FALSE(fresh->last_checkin);
        CHECK_FALSE(fresh->latest_decision);
    }
}

TEST_CASE("A malformed device answer is refused with a reason", "[device]")
{
    CHECK_FALSE(device_from_body("not json"));
    CHECK_FALSE(device_from_body("[]"));
    CHECK_FALSE(device_from_body(R"({"hostname":"x"})"));
    CHECK_FALSE(device_from_body(R"({"device_id":"A","enrollment":{"enrolled":"yes"}})"));
    CHECK_FALSE(device_from_body(R"({"device_id":"A","last_checkin":"yesterday"})"));
    CHECK_FALSE(device_from_body(R"({"device_id":"A","decision":{"decision":"allow"}})"));
    auto const list = device_list_from_body(R"({"records":[]})");
    REQUIRE_FALSE(list);
    CHECK(list.error().message == "unexpected device object from the server: the answer has no \"devices\" list");
}

TEST_CASE("The device list is a table with one row per device", "[device]")
{
    auto const devices = device_list_from_body(std::string(R"({"devices":[)") + kDevice + "," + kNewDevice + "]}");
    REQUIRE(devices);
    CHECK(format_device_table(*devices) ==
          "DEVICE       ENROLLED  OWNER            DECISION  BASIS     LAST CHECK-IN\n"
          "LAPTOP-0042  no        sam@example.com  allow     exempted  2026-11-27T21:00:00Z\n"
          "PC-7         -         -                -         -         never\n");
    CHECK(format_device_table({}) == "DEVICE  ENROLLED  OWNER  DECISION  BASIS  LAST CHECK-IN\n");
}

TEST_CASE("device show prints the device and its latest decision's controls", "[device]")
{
    auto const device = device_from_body(kDevice);
    REQUIRE(device);
    CHECK(format_device(*device) ==
          "device:        LAPTOP-0042\n"
          "hostname:      sam-laptop\n"
          "serial:        C02XYZ123\n"
          "os:            debian 12.8\n"
          "enrolled:      no, owner sam@example.com, source manual (updated 2026-11-20T09:00:00Z by "
          "alex@example.com)\n"
          "last check-in: 2026-11-27T21:00:00Z\n"
          "decision:      allow (exempted)\n"
          "evaluated at:  2026-11-27T21:00:01Z\n"
          "policy:        sha256:abc\n"
          "controls:\n"
          "  MDM-01  fail  device is not enrolled in MDM  (covered by EX-000007)\n"
          "  ENC-01  pass\n");
    auto const fresh = device_from_body(kNewDevice);
    REQUIRE(fresh);
    CHECK(format_device(*fresh) == "device:        PC-7\n"
                                   "hostname:      -\n"
                                   "serial:        -\n"
                                   "os:            -\n"
                                   "enrolled:      not in the registry\n"
                                   "last check-in: never\n"
                                   "decision:      none yet (no check-in)\n");
}

TEST_CASE("An enrollment change says what was recorded", "[device]")
{
    auto const device = device_from_body(kDevice);
    REQUIRE(device);
    CHECK(format_enrollment_change(*device, true) ==
          "LAPTOP-0042: not enrolled, owner sam@example.com, source manual (recorded)\n");
    CHECK(format_enrollment_change(*device, false) ==
          "LAPTOP-0042: not enrolled, owner sam@example.com, source manual (already recorded)\n");
}
