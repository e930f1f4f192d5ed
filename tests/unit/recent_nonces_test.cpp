#include "exemptd/recent_nonces.hpp"

#include <catch2/catch.hpp>

#include <string>

using exemptd::RecentNonces;

namespace {

constexpr std::int64_t t0 = 1'800'000'000;

RecentNonces::Key key(int i)
{
    return RecentNonces::key("LAPTOP-0042", "nonce-" + std::to_string(i));
}

}  // namespace

TEST_CASE("A nonce is remembered from when it was seen until it is older than the cut-off", "[nonces]")
{
    RecentNonces nonces;
    nonces.add(key(1), t0, 1);
    CHECK(nonces.contains(key(1), t0 - 660));
    CHECK(nonces.contains(key(1), t0));
    CHECK_FALSE(nonces.contains(key(1), t0 + 1));
    CHECK_FALSE(nonces.contains(key(2), t0 - 660));
    SECTION("the key names the device and the nonce together") {
        CHECK(RecentNonces::key("LAPTOP-0042", "nonce-1") == key(1));
        CHECK(RecentNonces::key("LAPTOP-0043", "nonce-1") != key(1));
        CHECK(RecentNonces::key("LAPTOP-004", "2nonce-1") != key(1));
        CHECK(key(1) >> 56 == 0);
    }
}

TEST_CASE("A forgotten nonce is free again, and adding it again remembers it", "[nonces]")
{
    RecentNonces nonces;
    nonces.add(key(1), t0, 1);
    nonces.add(key(2), t0, 2);
    nonces.forget(key(1));
    CHECK_FALSE(nonces.contains(key(1), t0 - 660));
    CHECK(nonces.contains(key(2), t0 - 660));  // a neighbour in the same table is untouched
    nonces.add(key(1), t0 + 5, 3);
    CHECK(nonces.contains(key(1), t0 + 5));
    SECTION("forget undoes only the latest add") {
        nonces.add(key(2), t0 + 70, 4);  // the same nonce in a later bucket
        nonces.forget(key(2));
        CHECK(nonces.contains(key(2), t0));
        CHECK_FALSE(nonces.contains(key(2), t0 + 1));
    }
}

TEST_CASE("Expiry drops whole minutes and reports the last sequence number they held", "[nonces]")
{
    RecentNonces nonces;
    for (int i = 0; i < 180; ++i) nonces.add(key(i), t0 + i, i + 1);  // three one-minute buckets
    CHECK(nonces.size() == 180);
    CHECK(nonces.expire(t0) == 0);
    CHECK(nonces.expire(t0 + 59) == 0);  // the first minute's last nonce is still wanted
    CHECK(nonces.expire(t0 + 60) == 60);
    CHECK(nonces.size() == 120);
    CHECK_FALSE(nonces.contains(key(10), t0));
    CHECK(nonces.contains(key(60), t0 + 60));
    CHECK(nonces.expire(t0 + 1000) == 180);
    CHECK(nonces.size() == 0);
}

TEST_CASE("A bucket grows past its first table without losing a nonce", "[nonces]")
{
    RecentNonces nonces;
    for (int i = 0; i < 100'000; ++i) nonces.add(key(i), t0 + i % 60, i + 1);
    CHECK(nonces.size() == 100'000);
    int missing = 0;
    for (int i = 0; i < 100'000; ++i) missing += nonces.contains(key(i), t0) ? 0 : 1;
    CHECK(missing == 0);
    int false_hits = 0;
    for (int i = 100'000; i < 200'000; ++i) false_hits += nonces.contains(key(i), t0) ? 1 : 0;
    CHECK(false_hits == 0);
}

TEST_CASE("A clock stepped back files a nonce as seen at its bucket's start, never earlier", "[nonces]")
{
    RecentNonces nonces;
    nonces.add(key(1), t0, 1);
    nonces.add(key(2), t0 - 3600, 2);
    CHECK(nonces.contains(key(2), t0));  // remembered longer than asked, not shorter
    CHECK(nonces.expire(t0) == 0);
    CHECK(nonces.expire(t0 + 1) == 2);
}
