#pragma once
// Process-wide counters and histograms exposed on /metrics in the Prometheus text format.

#include "connection_gate.hpp"
#include "exemptd/decision.hpp"
#include "exemptd/histogram.hpp"
#include "routes.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace exemptd {
class Store;
}

namespace exemptd::daemon {

// Why a client connection ended before its first request could be served.
enum class HandshakeFailure {
    no_certificate,         // the client sent no certificate
    certificate_revoked,    // listed in the client CRL
    certificate_expired,    // outside its validity period
    untrusted_certificate,  // does not chain to the client CA, or fails another X.509 check
    invalid_identity,       // chains, but carries no valid exemptd role and identity
    protocol_error,         // not TLS, no common version or cipher, a bad message
    timeout,                // the handshake did not finish in time
    connection_closed,      // the peer went away
};

// Every member is safe to call from any thread; updates are lock-free except for the rare
// agreement verification counter.
class Metrics {
public:
    // `store`, when given, is read at each scrape for the register gauges and commit latency;
    // it must outlive the metrics.
    explicit Metrics(Store const* store = nullptr) : store_(store) {}

    // Counts one check-in answered with a decision on `basis`.
    void count_checkin(Basis basis) noexcept;
    // Records one answered request: its route (nullopt when the request line was refused before
    // routing), status and the time from its headers to the end of its answer.
    void observe_request(std::optional<Action> route, int status, std::chrono::nanoseconds elapsed) noexcept;
    void count_handshake_failure(HandshakeFailure reason) noexcept;
    // Counts one connection closed right after accept because it was over a cap.
    void count_connection_refused(ConnectionRefusal reason) noexcept;
    // Counts one agreement verification by its result: "verified" or the refusal code.
    void count_agreement_verification(std::string_view result);
    void connection_opened() noexcept { open_connections_.fetch_add(1, std::memory_order_relaxed); }
    void connection_closed() noexcept { open_connections_.fetch_sub(1, std::memory_order_relaxed); }

    // The Prometheus exposition of every metric.
    [[nodiscard]] std::string render() const;

private:
    static constexpr std::size_t kBases = 4;
    static constexpr std::size_t kFailureReasons = static_cast<std::size_t>(HandshakeFailure::connection_closed) + 1;
    static constexpr std::size_t kStatuses = 600;

    Store const* store_;
    std::array<std::atomic<std::uint64_t>, kBases> checkins_{};               // indexed by Basis
    std::array<std::atomic<std::uint64_t>, kStatuses> responses_{};          // indexed by status
    std::array<LatencyHistogram, kActionCount + 1> request_latency_{};       // by Action; last: unrouted
    std::array<std::atomic<std::uint64_t>, kFailureReasons> handshake_failures_{};
    std::atomic<std::int64_t> open_connections_{0};
    std::array<std::atomic<std::uint64_t>, 2> connections_refused_{};  // indexed by ConnectionRefusal
    mutable std::mutex agreements_mutex_;
    std::map<std::string, std::uint64_t, std::less<>> agreement_verifications_;
};

}  // namespace exemptd::daemon
