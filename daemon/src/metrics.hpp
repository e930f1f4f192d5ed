#pragma once
// Process-wide counters exposed on /metrics in the Prometheus text format.

#include "exemptd/decision.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace exemptd::daemon {

// Lock-free counters; every member is safe to update from any thread.
class Metrics {
public:
    // Counts one check-in answered with `decision`.
    void count_checkin(Decision const& decision) noexcept;
    // Counts one HTTP answer with `status`.
    void count_response(int status) noexcept;
    void count_handshake_failure() noexcept { handshake_failures_.fetch_add(1, std::memory_order_relaxed); }
    void connection_opened() noexcept { open_connections_.fetch_add(1, std::memory_order_relaxed); }
    void connection_closed() noexcept { open_connections_.fetch_sub(1, std::memory_order_relaxed); }

    // The Prometheus exposition of every counter.
    [[nodiscard]] std::string render() const;

private:
    static constexpr std::size_t kBases = 4;
    std::array<std::atomic<std::uint64_t>, kBases> checkins_{};  // indexed by Basis
    std::array<std::atomic<std::uint64_t>, 6> responses_{};       // indexed by status / 100
    std::atomic<std::uint64_t> handshake_failures_{0};
    std::atomic<std::int64_t> open_connections_{0};
};

}  // namespace exemptd::daemon
