#include "support.hpp"

#include "checkin_limiter.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using exemptd::daemon::CheckinLimiter;
using exemptd::test::fixed_time;

TEST_CASE("A device may check in its rate at once, then once every 60/N seconds", "[limits]")
{
    CheckinLimiter limiter{12};
    auto const t0 = fixed_time("2026-11-27T21:00:00Z");
    for (int i = 0; i < 12; ++i) {
        INFO("check-in " << i);
        CHECK_FALSE(limiter.acquire("LAPTOP-0042", t0));
    }
    auto const wait = limiter.acquire("LAPTOP-0042", t0);
    REQUIRE(wait);
    CHECK(*wait == 5s);
    SECTION("a refused check-in is not counted") {
        CHECK(limiter.acquire("LAPTOP-0042", t0 + 4s) == std::optional{1s});
        CHECK_FALSE(limiter.acquire("LAPTOP-0042", t0 + 5s));
        CHECK(limiter.acquire("LAPTOP-0042", t0 + 5s) == std::optional{5s});
    }
    SECTION("other devices have their own budget") {
        CHECK_FALSE(limiter.acquire("LAPTOP-0043", t0));
    }
    SECTION("after a quiet minute the whole burst is back") {
        for (int i = 0; i < 12; ++i) CHECK_FALSE(limiter.acquire("LAPTOP-0042", t0 + 60s));
        CHECK(limiter.acquire("LAPTOP-0042", t0 + 60s));
    }
}

TEST_CASE("A steady check-in at the rate is never refused", "[limits]")
{
    CheckinLimiter limiter{12};
    auto t = fixed_time("2026-11-27T21:00:00Z");
    for (int i = 0; i < 100; ++i, t += 5s) CHECK_FALSE(limiter.acquire("LAPTOP-0042", t));
}

TEST_CASE("Rates that do not divide a minute still allow the rate per minute", "[limits]")
{
    CheckinLimiter limiter{7};
    auto const t0 = fixed_time("2026-11-27T21:00:00Z");
    for (int i = 0; i < 7; ++i) CHECK_FALSE(limiter.acquire("D", t0));
    auto const wait = limiter.acquire("D", t0);
    REQUIRE(wait);
    CHECK(*wait == 9s);  // 60/7 = 8.57 s, rounded up
    CHECK_FALSE(limiter.acquire("D", t0 + 9s));
}

TEST_CASE("Rate 0 never refuses and keeps no state", "[limits]")
{
    CheckinLimiter limiter{0};
    auto const t0 = fixed_time("2026-11-27T21:00:00Z");
    for (int i = 0; i < 1000; ++i) CHECK_FALSE(limiter.acquire("LAPTOP-0042", t0));
    CHECK(limiter.size() == 0);
    SECTION("turning the limit off forgets every device") {
        limiter.set_rate(1);
        CHECK_FALSE(limiter.acquire("LAPTOP-0042", t0));
        CHECK(limiter.acquire("LAPTOP-0042", t0));
        limiter.set_rate(0);
        CHECK(limiter.size() == 0);
        CHECK_FALSE(limiter.acquire("LAPTOP-0042", t0));
    }
}

TEST_CASE("Devices whose bucket is full again are pruned", "[limits]")
{
    CheckinLimiter limiter{12};
    auto const t0 = fixed_time("2026-11-27T21:00:00Z");
    CHECK_FALSE(limiter.acquire("A", t0));
    for (int i = 0; i < 12; ++i) CHECK_FALSE(limiter.acquire("B", t0));
    REQUIRE(limiter.size() == 2);
    CHECK(limiter.prune(t0 + 4s) == 0);
    CHECK(limiter.prune(t0 + 5s) == 1);  // A: one check-in, refilled after 5 s
    CHECK(limiter.size() == 1);
    CHECK(limiter.prune(t0 + 60s) == 1);
    CHECK(limiter.size() == 0);
}

TEST_CASE("A shard prunes itself as it grows, so memory stays bounded without the sweep", "[limits]")
{
    CheckinLimiter limiter{60};
    auto t = fixed_time("2026-11-27T21:00:00Z");
    // 100,000 devices, each checking in once, one new device every 10 ms of (test) time: at most
    // about a second of them (plus the shards' slack) can be remembered.
    for (int i = 0; i < 100'000; ++i) {
        if (i % 100 == 99) t += 1s;
        REQUIRE_FALSE(limiter.acquire("DEV-" + std::to_string(i), t));
    }
    CHECK(limiter.size() < 16 * 2 * 1024);
}
