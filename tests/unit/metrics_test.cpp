#include "support.hpp"

#include "exemptd/store.hpp"
#include "metrics.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <sstream>

using namespace std::chrono_literals;
using exemptd::daemon::Action;
using exemptd::daemon::HandshakeFailure;
using exemptd::daemon::Metrics;

namespace {

// The value of the sample whose name and labels are exactly `series`, or -1 when absent.
double sample(std::string const& text, std::string const& series)
{
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
    }
    return -1;
}

}  // namespace

TEST_CASE("Request latency lands in cumulative per-route buckets", "[metrics]")
{
    Metrics metrics;
    metrics.observe_request(Action::checkin, 200, 300us);
    metrics.observe_request(Action::checkin, 200, 3ms);
    metrics.observe_request(Action::checkin, 409, 7s);
    metrics.observe_request(std::nullopt, 404, 50us);
    auto const text = metrics.render();

    std::string const checkin = "exemptd_http_request_duration_seconds_bucket{route=\"checkin\",le=";
    CHECK(sample(text, checkin + "\"0.00025\"}") == 0);
    CHECK(sample(text, checkin + "\"0.0005\"}") == 1);
    CHECK(sample(text, checkin + "\"0.005\"}") == 2);
    CHECK(sample(text, checkin + "\"5\"}") == 2);
    CHECK(sample(text, checkin + "\"+Inf\"}") == 3);
    CHECK(sample(text, "exemptd_http_request_duration_seconds_count{route=\"checkin\"}") == 3);
    CHECK(sample(text, "exemptd_http_request_duration_seconds_sum{route=\"checkin\"}") == Approx(7.0033));
    CHECK(sample(text, "exemptd_http_request_duration_seconds_count{route=\"none\"}") == 1);
    CHECK(sample(text, "exemptd_http_request_duration_seconds_count{route=\"audit_verify\"}") == 0);
    CHECK(sample(text, "exemptd_http_responses_total{code=\"200\"}") == 2);
    CHECK(sample(text, "exemptd_http_responses_total{code=\"409\"}") == 1);
    CHECK(sample(text, "exemptd_http_responses_total{code=\"500\"}") == -1);  // never seen: not listed
}

TEST_CASE("Check-ins, handshake failures and agreement verifications are counted by label", "[metrics]")
{
    Metrics metrics;
    metrics.count_checkin(exemptd::Basis::grace);
    metrics.count_handshake_failure(HandshakeFailure::certificate_revoked);
    metrics.count_handshake_failure(HandshakeFailure::certificate_revoked);
    metrics.count_agreement_verification("verified");
    metrics.count_agreement_verification("agreement_signer_revoked");
    metrics.count_agreement_verification("verified");
    metrics.connection_opened();
    auto const text = metrics.render();

    CHECK(sample(text, "exemptd_checkins_total{decision=\"allow\",basis=\"grace\"}") == 1);
    CHECK(sample(text, "exemptd_checkins_total{decision=\"deny\",basis=\"noncompliant\"}") == 0);
    CHECK(sample(text, "exemptd_tls_handshake_failures_total{reason=\"certificate_revoked\"}") == 2);
    CHECK(sample(text, "exemptd_tls_handshake_failures_total{reason=\"no_certificate\"}") == 0);
    CHECK(sample(text, "exemptd_agreement_verifications_total{result=\"verified\"}") == 2);
    CHECK(sample(text, "exemptd_agreement_verifications_total{result=\"agreement_signer_revoked\"}") == 1);
    CHECK(sample(text, "exemptd_open_connections") == 1);
    // Without a store there are no register gauges.
    CHECK(sample(text, "exemptd_exemptions{state=\"active\"}") == -1);
}

TEST_CASE("Every metric family has HELP and TYPE before its samples", "[metrics]")
{
    auto store = exemptd::open_sqlite_store(":memory:");
    Metrics metrics(store.get());
    auto const text = metrics.render();
    std::istringstream lines(text);
    std::string line;
    std::set<std::string> typed;
    while (std::getline(lines, line)) {
        INFO(line);
        if (line.starts_with("# HELP ")) continue;
        if (line.starts_with("# TYPE ")) {
            auto const name = line.substr(7, line.find(' ', 7) - 7);
            typed.insert(name);
            continue;
        }
        auto name = line.substr(0, line.find_first_of("{ "));
        for (std::string const suffix : {"_bucket", "_sum", "_count"}) {
            if (!typed.contains(name) && name.ends_with(suffix)) name.resize(name.size() - suffix.size());
        }
        CHECK(typed.contains(name));
        CHECK(name.starts_with("exemptd_"));
    }
    CHECK(sample(text, "exemptd_exemptions{state=\"pending\"}") == 0);
    CHECK(sample(text, "exemptd_exemptions_expiring") == 0);
    CHECK(sample(text, "exemptd_store_commit_duration_seconds_count") >= 0);
}
