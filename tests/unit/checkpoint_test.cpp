#include "exemptd/checkpoint.hpp"

#include "support.hpp"

#include <openssl/ec.h>
#include <openssl/evp.h>

#include <fstream>

using namespace exemptd;

namespace {

PkeyPtr make_key()
{
    PkeyPtr key{EVP_EC_gen("P-256")};
    REQUIRE(key);
    return key;
}

}  // namespace

TEST_CASE("A signed checkpoint verifies only with its key and unchanged", "[checkpoint]")
{
    auto const key = make_key();
    auto const other = make_key();
    auto signed_cp = sign_checkpoint(key.get(), 42, std::string(64, 'a'), test::fixed_time("2026-11-27T12:00:00Z"));
    REQUIRE(signed_cp);
    CHECK(verify_checkpoint_signature(key.get(), *signed_cp));
    CHECK_FALSE(verify_checkpoint_signature(other.get(), *signed_cp));
    auto moved = *signed_cp;
    moved.seq = 41;
    CHECK_FALSE(verify_checkpoint_signature(key.get(), moved));
    auto rehashed = *signed_cp;
    rehashed.head_hash = std::string(64, 'b');
    CHECK_FALSE(verify_checkpoint_signature(key.get(), rehashed));
    auto garbled = *signed_cp;
    garbled.signature = "not base64!";
    CHECK_FALSE(verify_checkpoint_signature(key.get(), garbled));
}

TEST_CASE("Checkpoint lines round-trip and the file's last good line wins", "[checkpoint]")
{
    auto const key = make_key();
    test::TempDir dir;
    auto const file = dir.file("checkpoints");
    auto first = sign_checkpoint(key.get(), 1, std::string(64, 'a'), test::fixed_time("2026-11-27T12:00:00Z"));
    auto second = sign_checkpoint(key.get(), 7, std::string(64, 'c'), test::fixed_time("2026-11-27T12:15:00Z"));
    REQUIRE(first);
    REQUIRE(second);
    REQUIRE(append_checkpoint(file, *first));
    REQUIRE(append_checkpoint(file, *second));
    auto const latest = latest_checkpoint(file);
    REQUIRE(latest);
    CHECK(latest->seq == 7);
    CHECK(verify_checkpoint_signature(key.get(), *latest));
    CHECK_FALSE(checkpoint_from_line("{\"seq\":\"7\"}"));
    CHECK_FALSE(latest_checkpoint(dir.file("missing")));
}

TEST_CASE("A chain is checked against the checkpoint: cut-off records and rewritten heads are named", "[checkpoint]")
{
    Checkpoint const cp{10, std::string(64, 'd'), test::fixed_time("2026-11-27T12:00:00Z"), {}};
    CHECK_FALSE(check_against_checkpoint(cp, 10, std::string(64, 'd')));
    CHECK_FALSE(check_against_checkpoint(cp, 12, std::string(64, 'd')));  // records added since
    auto const truncated = check_against_checkpoint(cp, 8, std::nullopt);
    REQUIRE(truncated);
    CHECK_THAT(*truncated, Catch::Contains("cut off"));
    auto const rewritten = check_against_checkpoint(cp, 10, std::string(64, 'e'));
    REQUIRE(rewritten);
    CHECK_THAT(*rewritten, Catch::Contains("record 10"));
}

TEST_CASE("The latest checkpoint is found from the end of a long file, past a torn last line", "[checkpoint]")
{
    auto const key = make_key();
    test::TempDir dir;
    auto const file = dir.file("checkpoints");
    auto const at = test::fixed_time("2026-11-27T12:00:00Z");
    for (std::int64_t seq = 1; seq <= 300; ++seq) {  // about 75 KB: many of the reader's blocks
        auto cp = sign_checkpoint(key.get(), seq, std::string(64, 'a'), at + std::chrono::minutes{seq});
        REQUIRE(cp);
        REQUIRE(append_checkpoint(file, *cp));
    }
    auto const whole = latest_checkpoint(file);
    REQUIRE(whole);
    CHECK(whole->seq == 300);
    CHECK(verify_checkpoint_signature(key.get(), *whole));

    SECTION("a line cut off by a crash is skipped") {
        std::ofstream(file, std::ios::app) << "{\"seq\":301,\"head_hash\":\"aaaa";
        auto const latest = latest_checkpoint(file);
        REQUIRE(latest);
        CHECK(latest->seq == 300);
    }
    SECTION("a garbage tail longer than a block is skipped") {
        std::ofstream(file, std::ios::app) << std::string(20000, 'x') << "\n" << std::string(9000, 'y');
        auto const latest = latest_checkpoint(file);
        REQUIRE(latest);
        CHECK(latest->seq == 300);
    }
    SECTION("a file with no good line has none") {
        std::ofstream(file, std::ios::trunc) << std::string(20000, 'x') << "\n\n";
        CHECK_FALSE(latest_checkpoint(file));
    }
}
