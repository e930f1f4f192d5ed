#include "metrics.hpp"

#include <fmt/format.h>

namespace exemptd::daemon {

void Metrics::count_checkin(Decision const& decision) noexcept
{
    checkins_[static_cast<std::size_t>(decision.basis)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_response(int status) noexcept
{
    auto const index = static_cast<std::size_t>(status / 100);
    if (index < responses_.size()) responses_[index].fetch_add(1, std::memory_order_relaxed);
}

std::string Metrics::render() const
{
    std::string out;
    out += "# HELP exemptd_checkins_total Check-ins answered, by decision and basis.\n"
           "# TYPE exemptd_checkins_total counter\n";
    for (Basis const basis : {Basis::compliant, Basis::exempted, Basis::grace, Basis::noncompliant}) {
        out += fmt::format("exemptd_checkins_total{{decision=\"{}\",basis=\"{}\"}} {}\n",
                           basis == Basis::noncompliant ? "deny" : "allow", to_string(basis),
                           checkins_[static_cast<std::size_t>(basis)].load(std::memory_order_relaxed));
    }
    out += "# HELP exemptd_http_responses_total HTTP answers, by status class.\n"
           "# TYPE exemptd_http_responses_total counter\n";
    for (std::size_t i = 1; i < responses_.size(); ++i)
        out += fmt::format("exemptd_http_responses_total{{class=\"{}xx\"}} {}\n", i,
                           responses_[i].load(std::memory_order_relaxed));
    out += fmt::format("# HELP exemptd_tls_handshake_failures_total TLS handshakes that failed.\n"
                       "# TYPE exemptd_tls_handshake_failures_total counter\n"
                       "exemptd_tls_handshake_failures_total {}\n"
                       "# HELP exemptd_open_connections Client connections currently open.\n"
                       "# TYPE exemptd_open_connections gauge\n"
                       "exemptd_open_connections {}\n",
                       handshake_failures_.load(std::memory_order_relaxed),
                       open_connections_.load(std::memory_order_relaxed));
    return out;
}

}  // namespace exemptd::daemon
