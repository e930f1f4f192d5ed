#pragma once
// A lock-free latency histogram with fixed buckets, for the Prometheus exposition.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace exemptd {

class LatencyHistogram {
public:
    // Upper bounds in seconds; one more bucket counts everything above the last (+Inf).
    static constexpr std::array<double, 15> kBounds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                   0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0};

    struct Snapshot {
        std::array<std::uint64_t, kBounds.size() + 1> counts{};  // per bucket, not cumulative
        std::uint64_t sum_ns = 0;
    };

    // Thread-safe, wait-free.
    void observe(std::chrono::nanoseconds elapsed) noexcept
    {
        auto const seconds = std::chrono::duration<double>(elapsed).count();
        auto const bucket = static_cast<std::size_t>(
            std::lower_bound(kBounds.begin(), kBounds.end(), seconds) - kBounds.begin());
        counts_[bucket].fetch_add(1, std::memory_order_relaxed);
        sum_ns_.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(0, elapsed.count())),
                          std::memory_order_relaxed);
    }

    // Counts read one by one: a scrape racing an update may be off by that update.
    [[nodiscard]] Snapshot snapshot() const noexcept
    {
        Snapshot s;
        for (std::size_t i = 0; i < counts_.size(); ++i) s.counts[i] = counts_[i].load(std::memory_order_relaxed);
        s.sum_ns = sum_ns_.load(std::memory_order_relaxed);
        return s;
    }

private:
    std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> counts_{};
    std::atomic<std::uint64_t> sum_ns_{0};
};

}  // namespace exemptd
