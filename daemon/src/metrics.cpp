#include "metrics.hpp"

#include "exemptd/store.hpp"
#include "exemptd/time.hpp"

#include <fmt/format.h>

namespace exemptd::daemon {
namespace {

constexpr auto kExpiringWindow = std::chrono::days{14};

std::string_view failure_name(HandshakeFailure reason)
{
    switch (reason) {
    case HandshakeFailure::no_certificate: return "no_certificate";
    case HandshakeFailure::certificate_revoked: return "certificate_revoked";
    case HandshakeFailure::certificate_expired: return "certificate_expired";
    case HandshakeFailure::untrusted_certificate: return "untrusted_certificate";
    case HandshakeFailure::invalid_identity: return "invalid_identity";
    case HandshakeFailure::protocol_error: return "protocol_error";
    case HandshakeFailure::timeout: return "timeout";
    case HandshakeFailure::connection_closed: return "connection_closed";
    }
    return "unknown";
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help)
{
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

// One histogram's series: cumulative buckets, sum (seconds) and count. `labels` is either empty
// or `key="value",` ready to prefix the le label.
void histogram(std::string& out, std::string_view name, std::string_view labels, LatencyHistogram::Snapshot const& s)
{
    auto it = std::back_inserter(out);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < LatencyHistogram::kBounds.size(); ++i) {
        cumulative += s.counts[i];
        fmt::format_to(it, "{}_bucket{{{}le=\"{}\"}} {}\n", name, labels, LatencyHistogram::kBounds[i], cumulative);
    }
    cumulative += s.counts.back();
    auto const plain = labels.empty() ? std::string{} : fmt::format("{{{}}}", labels.substr(0, labels.size() - 1));
    fmt::format_to(it, "{}_bucket{{{}le=\"+Inf\"}} {}\n{}_sum{} {}\n{}_count{} {}\n", name, labels, cumulative, name,
                   plain, static_cast<double>(s.sum_ns) / 1e9, name, plain, cumulative);
}

}  // namespace

void Metrics::count_checkin(Basis basis) noexcept
{
    checkins_[static_cast<std::size_t>(basis)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::observe_request(std::optional<Action> route, int status, std::chrono::nanoseconds elapsed) noexcept
{
    if (status >= 0 && static_cast<std::size_t>(status) < responses_.size())
        responses_[static_cast<std::size_t>(status)].fetch_add(1, std::memory_order_relaxed);
    request_latency_[route ? static_cast<std::size_t>(*route) : kActionCount].observe(elapsed);
}

void Metrics::count_handshake_failure(HandshakeFailure reason) noexcept
{
    handshake_failures_[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_connection_refused(ConnectionRefusal reason) noexcept
{
    connections_refused_[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_agreement_verification(std::string_view result)
{
    std::lock_guard lock(agreements_mutex_);
    auto found = agreement_verifications_.find(result);
    if (found == agreement_verifications_.end()) found = agreement_verifications_.emplace(std::string(result), 0).first;
    ++found->second;
}

std::string Metrics::render() const
{
    std::string out;
    auto it = std::back_inserter(out);

    header(out, "exemptd_checkins_total", "counter", "Check-ins answered, by decision and basis.");
    for (Basis const basis : {Basis::compliant, Basis::exempted, Basis::grace, Basis::noncompliant}) {
        fmt::format_to(it, "exemptd_checkins_total{{decision=\"{}\",basis=\"{}\"}} {}\n",
                       basis == Basis::noncompliant ? "deny" : "allow", to_string(basis),
                       checkins_[static_cast<std::size_t>(basis)].load(std::memory_order_relaxed));
    }

    header(out, "exemptd_http_responses_total", "counter", "API answers, by HTTP status code.");
    for (std::size_t status = 0; status < responses_.size(); ++status) {
        if (auto const n = responses_[status].load(std::memory_order_relaxed); n > 0)
            fmt::format_to(it, "exemptd_http_responses_total{{code=\"{}\"}} {}\n", status, n);
    }

    header(out, "exemptd_http_request_duration_seconds", "histogram",
           "Time from a request's headers to the end of its answer, by route (none: refused before routing).");
    for (std::size_t i = 0; i <= kActionCount; ++i) {
        auto const name = i < kActionCount ? action_name(static_cast<Action>(i)) : std::string_view{"none"};
        histogram(out, "exemptd_http_request_duration_seconds", fmt::format("route=\"{}\",", name),
                  request_latency_[i].snapshot());
    }

    header(out, "exemptd_tls_handshake_failures_total", "counter",
           "Client connections refused before their first request, by reason.");
    for (std::size_t i = 0; i < handshake_failures_.size(); ++i) {
        fmt::format_to(it, "exemptd_tls_handshake_failures_total{{reason=\"{}\"}} {}\n",
                       failure_name(static_cast<HandshakeFailure>(i)),
                       handshake_failures_[i].load(std::memory_order_relaxed));
    }

    header(out, "exemptd_connections_refused_total", "counter",
           "Client connections closed right after accept because they were over a cap, by the cap.");
    for (auto const reason : {ConnectionRefusal::max_connections, ConnectionRefusal::max_connections_per_address}) {
        fmt::format_to(it, "exemptd_connections_refused_total{{reason=\"{}\"}} {}\n", to_string(reason),
                       connections_refused_[static_cast<std::size_t>(reason)].load(std::memory_order_relaxed));
    }

    header(out, "exemptd_agreement_verifications_total", "counter",
           "Uploaded BYOD agreements verified, by result (verified or the refusal code).");
    {
        std::lock_guard lock(agreements_mutex_);
        for (auto const& [result, n] : agreement_verifications_)
            fmt::format_to(it, "exemptd_agreement_verifications_total{{result=\"{}\"}} {}\n", result, n);
    }

    header(out, "exemptd_open_connections", "gauge", "Client connections currently open.");
    fmt::format_to(it, "exemptd_open_connections {}\n", open_connections_.load(std::memory_order_relaxed));

    if (store_ == nullptr) return out;
    auto const now = system_now();
    if (auto const counts = store_->exemption_counts(now, now + kExpiringWindow)) {
        header(out, "exemptd_exemptions", "gauge", "Open exemptions in the register, by effective state.");
        fmt::format_to(it, "exemptd_exemptions{{state=\"pending\"}} {}\nexemptd_exemptions{{state=\"active\"}} {}\n",
                       counts->pending, counts->active);
        header(out, "exemptd_exemptions_expiring", "gauge", "Active exemptions that expire within 14 days.");
        fmt::format_to(it, "exemptd_exemptions_expiring {}\n", counts->expiring);
    }
    header(out, "exemptd_store_commit_duration_seconds", "histogram",
           "Time to commit one group of writes durably (synchronous=FULL).");
    histogram(out, "exemptd_store_commit_duration_seconds", "", store_->commit_latency().snapshot());
    return out;
}

}  // namespace exemptd::daemon
