#pragma once
// The per-device check-in rate limit: in memory, keyed by the certificate's device id.

#include "exemptd/time.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace exemptd::daemon {

// A token bucket per device, kept as one "theoretical arrival time" (the generic cell rate
// algorithm): with a rate of N a minute a device may check in N times at once and then once
// every 60/N seconds. A device whose bucket is full again holds no state; prune() drops those,
// and each shard also prunes itself when it has grown to twice its size after the last prune.
// Every member is thread-safe; devices are spread over shards, each with its own mutex.
class CheckinLimiter {
public:
    // `per_minute` 0 disables the limit.
    explicit CheckinLimiter(int per_minute = 0) { set_rate(per_minute); }
    CheckinLimiter(CheckinLimiter const&) = delete;
    CheckinLimiter& operator=(CheckinLimiter const&) = delete;

    // Changes the rate for later calls; 0 disables the limit (and forgets every device).
    void set_rate(int per_minute);

    // Counts one check-in by `device` at `now`: nullopt when it is allowed, otherwise how long
    // the device must wait (at least 1 s) before its next check-in is allowed. A refused
    // check-in is not counted.
    [[nodiscard]] std::optional<std::chrono::seconds> acquire(std::string_view device, TimePoint now);

    // Forgets every device whose bucket is full again at `now`; returns how many were dropped.
    std::size_t prune(TimePoint now);

    // How many devices have state (for tests and metrics).
    [[nodiscard]] std::size_t size() const;

private:
    using Millis = std::chrono::milliseconds;
    using Instant = std::chrono::sys_time<Millis>;
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    struct Shard {
        mutable std::mutex mutex;
        std::unordered_map<std::string, Instant, Hash, std::equal_to<>> next;  // theoretical arrival time
        std::size_t prune_at = kMinPruneSize;
    };
    static constexpr std::size_t kShards = 16;
    static constexpr std::size_t kMinPruneSize = 1024;

    static std::size_t prune_shard(Shard& shard, Instant now);

    std::atomic<std::int64_t> interval_ms_{0};   // 60 s / rate; 0: no limit
    std::atomic<std::int64_t> tolerance_ms_{0};  // (rate - 1) intervals: how far ahead a device may be
    std::array<Shard, kShards> shards_;
};

}  // namespace exemptd::daemon
