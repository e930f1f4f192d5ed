#pragma once
// The router as the router tests drive it: a real SQLite store, the standard policy, fresh metrics
// and a clock the test moves.

#include "support.hpp"

#include "metrics.hpp"
#include "router.hpp"

#include <memory>
#include <string>

namespace exemptd::test {

struct RouterFixture {
    // `database` is a file path or ":memory:".
    explicit RouterFixture(std::string const& database = ":memory:") : store(open_sqlite_store(database)) {}

    TestClock clock{fixed_time("2026-11-27T21:00:00Z")};
    std::unique_ptr<Store> store;
    daemon::Metrics metrics;
    daemon::Router router{std::make_shared<Policy const>(standard_policy()), *store, metrics, clock.clock()};

    // A whole request, admitted then handled, as the server hands it over.
    [[nodiscard]] daemon::HttpResponse call(ClientId const& client, std::string method, std::string target,
                                            std::string body = {}) const
    {
        return router.handle(client, daemon::HttpRequest{std::move(method), std::move(target), std::move(body)});
    }
};

}  // namespace exemptd::test
