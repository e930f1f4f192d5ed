#include "connection_gate.hpp"

#include <catch2/catch.hpp>

#include <vector>

using exemptd::daemon::ConnectionGate;
using exemptd::daemon::ConnectionRefusal;

TEST_CASE("The connection gate refuses connections over the overall cap until one closes", "[limits]")
{
    ConnectionGate gate{3, 0};
    std::vector<ConnectionGate::Ticket> open;
    for (int i = 0; i < 3; ++i) {
        auto ticket = gate.admit("10.0.0." + std::to_string(i));
        REQUIRE(ticket.has_value());
        open.push_back(std::move(*ticket));
    }
    CHECK(gate.open() == 3);
    auto refused = gate.admit("10.0.0.9");
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error() == ConnectionRefusal::max_connections);
    CHECK(gate.open() == 3);
    open.pop_back();
    CHECK(gate.open() == 2);
    CHECK(gate.admit("10.0.0.9").has_value());
    CHECK(gate.open() == 2);  // that ticket was a temporary
}

TEST_CASE("The per-address cap counts each address apart", "[limits]")
{
    ConnectionGate gate{100, 2};
    auto a1 = gate.admit("192.0.2.1");
    auto a2 = gate.admit("192.0.2.1");
    REQUIRE(a1.has_value());
    REQUIRE(a2.has_value());
    auto a3 = gate.admit("192.0.2.1");
    REQUIRE_FALSE(a3.has_value());
    CHECK(a3.error() == ConnectionRefusal::max_connections_per_address);
    CHECK(gate.admit("192.0.2.2").has_value());
    CHECK(gate.open() == 2);
    { auto released = std::move(*a1); }
    CHECK(gate.admit("192.0.2.1").has_value());
    CHECK(exemptd::daemon::to_string(ConnectionRefusal::max_connections_per_address) == "max_connections_per_address");
}
