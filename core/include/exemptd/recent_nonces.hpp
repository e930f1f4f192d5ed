#pragma once
// The nonces of recent check-ins, in memory, so that refusing a replay costs no database lookup.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string_view>
#include <vector>

namespace exemptd {

// A ring of one-minute buckets, each an open-addressing hash table of 8-byte slots: a 56-bit hash
// of device id and nonce, and the second within its bucket at which the nonce was seen. Memory is
// about 8-21 bytes per nonce still remembered (check-ins per second × the TTL). Two different
// nonces of one device share a hash with a chance of about one in 2^56 per remembered nonce; the
// cost of that would be one refused (never one accepted) report. Not thread-safe.
class RecentNonces {
public:
    using Key = std::uint64_t;  // a hash; the top 8 bits are always zero

    [[nodiscard]] static Key key(std::string_view device_id, std::string_view nonce);

    // True when `key` was added at or after `since` (seconds since the epoch) and not forgotten.
    [[nodiscard]] bool contains(Key key, std::int64_t since) const;
    // Remembers `key` as seen at `at`; `seq` is the caller's number for it (a log row), reported
    // by expire(). Throws std::bad_alloc.
    void add(Key key, std::int64_t at, std::int64_t seq);
    // Undoes the latest add of `key` (a check-in that was rolled back).
    void forget(Key key) noexcept;
    // Drops the buckets whose nonces were all seen before `before`; returns the highest seq they
    // held, or 0 when none was dropped.
    std::int64_t expire(std::int64_t before) noexcept;

    [[nodiscard]] std::size_t size() const noexcept;

private:
    struct Bucket {
        std::int64_t first_at = 0;  // offsets count from here
        std::int64_t last_at = 0;   // the latest nonce in it
        std::int64_t max_seq = 0;
        std::size_t used = 0;
        std::vector<std::uint64_t> slots;  // key << 8 | offset; 0 is an empty slot

        static constexpr std::size_t npos = static_cast<std::size_t>(-1);
        // The slot holding `key`, or npos.
        [[nodiscard]] std::size_t find(Key key) const noexcept;
        void insert(Key key, std::uint64_t offset);
    };

    std::deque<Bucket> buckets_;  // oldest first
};

}  // namespace exemptd
