#include "support.hpp"

#include "exemptd/time.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using exemptd::format_rfc3339;
using exemptd::parse_duration;
using exemptd::parse_rfc3339;
using exemptd::TimePoint;

namespace {

TimePoint civil(int y, unsigned mo, unsigned d, int h, int mi, int s)
{
    using namespace std::chrono;
    return sys_days{year{y} / month{mo} / day{d}} + hours{h} + minutes{mi} + seconds{s};
}

}  // namespace

TEST_CASE("An RFC 3339 UTC time parses to the instant it names", "[time]")
{
    auto const t = parse_rfc3339("2026-11-27T21:00:00Z");
    REQUIRE(t);
    CHECK(*t == civil(2026, 11, 27, 21, 0, 0));

    SECTION("lowercase t and z are accepted as RFC 3339 allows") {
        CHECK(parse_rfc3339("2026-11-27t21:00:00z") == t);
    }
    SECTION("the epoch is the zero time point") {
        CHECK(parse_rfc3339("1970-01-01T00:00:00Z") == TimePoint{});
    }
    SECTION("29 February exists only in leap years") {
        CHECK(parse_rfc3339("2028-02-29T12:00:00Z") == civil(2028, 2, 29, 12, 0, 0));
        CHECK_FALSE(parse_rfc3339("2026-02-29T12:00:00Z"));
    }
}

TEST_CASE("An RFC 3339 offset is normalised to UTC", "[time]")
{
    auto const expected = civil(2026, 11, 27, 21, 0, 0);
    CHECK(parse_rfc3339("2026-11-27T22:30:00+01:30") == expected);
    CHECK(parse_rfc3339("2026-11-27T16:00:00-05:00") == expected);
    CHECK(parse_rfc3339("2026-11-27T21:00:00+00:00") == expected);
    SECTION("an offset can move the instant to another day") {
        CHECK(parse_rfc3339("2026-11-28T01:00:00+04:00") == expected);
    }
}

// Found by fuzz_posture: the offset carried the instant into year 10000, which format_rfc3339
// cannot write as four digits, so an accepted report did not decode again after encoding.
TEST_CASE("A time whose offset or leap second leaves years 0000-9999 is refused", "[time]")
{
    CHECK_FALSE(parse_rfc3339("9999-12-31T23:59:60-23:59"));
    CHECK_FALSE(parse_rfc3339("9999-12-31T23:00:00-01:00"));
    CHECK_FALSE(parse_rfc3339("9999-12-31T23:59:60Z"));
    CHECK_FALSE(parse_rfc3339("0000-01-01T00:00:00+00:01"));
    for (auto const* text : {"9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z", "9999-12-31T23:00:00+01:00"}) {
        INFO("input: " << text);
        auto const parsed = parse_rfc3339(text);
        REQUIRE(parsed);
        CHECK(parse_rfc3339(format_rfc3339(*parsed)) == parsed);
    }
}

TEST_CASE("Fractional seconds are accepted and dropped", "[time]")
{
    CHECK(parse_rfc3339("2026-11-27T21:00:00.999Z") == civil(2026, 11, 27, 21, 0, 0));
    CHECK(parse_rfc3339("2026-11-27T21:00:00.5+01:00") == civil(2026, 11, 27, 20, 0, 0));
    CHECK_FALSE(parse_rfc3339("2026-11-27T21:00:00.Z"));
}

TEST_CASE("Text that is not an RFC 3339 time is refused", "[time]")
{
    char const* const bad[] = {
        "",
        "2026-11-27",
        "2026-11-27T21:00:00",           // no zone
        "2026-11-27T21:00Z",             // no seconds
        "2026/11/27T21:00:00Z",
        "2026-13-01T00:00:00Z",          // month 13
        "2026-11-31T00:00:00Z",          // 31 November
        "2026-11-27T24:00:00Z",          // hour 24
        "2026-11-27T21:60:00Z",          // minute 60
        "2026-11-27T21:00:61Z",          // second 61
        "2026-11-27T21:00:00+24:00",     // offset hour 24
        "2026-11-27T21:00:00+01:60",     // offset minute 60
        "2026-11-27T21:00:00+0100",      // offset without colon
        "2026-11-27T21:00:00Zjunk",      // trailing text
        "2026-11-27T21:00:00 Z",
        "+026-11-27T21:00:00Z",
        "2026-1a-27T21:00:00Z",
        "tomorrow at nine o'clock please",
    };
    for (auto const* text : bad) {
        INFO("input: \"" << text << '"');
        CHECK_FALSE(parse_rfc3339(text));
    }
}

TEST_CASE("A time is formatted as whole-second RFC 3339 UTC", "[time]")
{
    CHECK(format_rfc3339(civil(2026, 11, 27, 21, 0, 1)) == "2026-11-27T21:00:01Z");
    CHECK(format_rfc3339(TimePoint{}) == "1970-01-01T00:00:00Z");
    CHECK(format_rfc3339(civil(2028, 2, 29, 23, 59, 59)) == "2028-02-29T23:59:59Z");
    CHECK(format_rfc3339(civil(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z");
    CHECK(format_rfc3339(civil(0, 1, 1, 0, 0, 0)) == "0000-01-01T00:00:00Z");
    CHECK(format_rfc3339(civil(9999, 12, 31, 23, 59, 59)) == "9999-12-31T23:59:59Z");
    CHECK(format_rfc3339(civil(7, 10, 9, 10, 9, 7)) == "0007-10-09T10:09:07Z");
    // Outside four digits nothing is cut: such a time is written whole (and never parses back).
    CHECK(format_rfc3339(civil(10000, 1, 1, 0, 0, 0)) == "10000-01-01T00:00:00Z");
    CHECK(format_rfc3339(civil(-1, 12, 31, 23, 59, 59)) == "-001-12-31T23:59:59Z");

    SECTION("formatting and parsing round-trip") {
        for (auto const* text : {"2026-11-27T21:00:00Z", "1999-12-31T23:59:59Z", "2038-01-19T03:14:08Z",
                                 "2100-03-01T00:00:00Z"}) {
            auto const parsed = parse_rfc3339(text);
            REQUIRE(parsed);
            CHECK(format_rfc3339(*parsed) == text);
        }
    }
    SECTION("the test helper fixed_time agrees with the parser and refuses typos") {
        CHECK(exemptd::test::fixed_time("2026-11-27T21:00:00Z") == civil(2026, 11, 27, 21, 0, 0));
        CHECK_THROWS_AS(exemptd::test::fixed_time("2026-11-27"), std::invalid_argument);
    }
}

TEST_CASE("A duration with a unit suffix parses to seconds", "[time]")
{
    CHECK(parse_duration("14d") == std::chrono::seconds{14 * 86400});
    CHECK(parse_duration("12h") == std::chrono::seconds{12h});
    CHECK(parse_duration("30m") == std::chrono::seconds{30min});
    CHECK(parse_duration("45s") == 45s);
    CHECK(parse_duration("0s") == 0s);
    CHECK(parse_duration("365d") == std::chrono::seconds{365 * 86400});
}

TEST_CASE("A malformed duration is refused", "[time]")
{
    char const* const bad[] = {"", "d", "14", "14w", "-1d", "1.5d", "d14", " 14d", "14d ", "14 d", "+14d",
                               "1e3s", "99999999999999999999d", "200000000d"};
    for (auto const* text : bad) {
        INFO("input: \"" << text << '"');
        CHECK_FALSE(parse_duration(text));
    }
}
