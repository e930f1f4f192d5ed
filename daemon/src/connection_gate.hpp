#pragma once
// Admission of client connections: a cap on open connections, overall and per peer address.

#include <boost/system/result.hpp>

#include <atomic>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace exemptd::daemon {

// Why a connection was closed right after accept.
enum class ConnectionRefusal {
    max_connections,              // the daemon holds limits.max_connections already
    max_connections_per_address,  // its address holds limits.max_connections_per_address already
};

[[nodiscard]] std::string_view to_string(ConnectionRefusal reason) noexcept;

// Counts open client connections. The caller takes a ticket for each accepted connection and
// keeps it for the connection's life; the ticket gives its place back when destroyed. Every
// member is thread-safe; tickets may be released on any thread.
class ConnectionGate {
public:
    // `max_per_address` 0 means no per-address cap (and no per-address bookkeeping).
    ConnectionGate(std::size_t max_total, std::size_t max_per_address) : max_total_(max_total), max_per_address_(max_per_address)
    {
    }
    ConnectionGate(ConnectionGate const&) = delete;
    ConnectionGate& operator=(ConnectionGate const&) = delete;

    // A place taken by one connection; movable, released by its destructor.
    class Ticket {
    public:
        Ticket() = default;
        Ticket(Ticket&& other) noexcept : gate_(other.gate_), address_(std::move(other.address_)) { other.gate_ = nullptr; }
        Ticket& operator=(Ticket&&) = delete;
        Ticket(Ticket const&) = delete;
        Ticket& operator=(Ticket const&) = delete;
        ~Ticket();

    private:
        friend class ConnectionGate;
        Ticket(ConnectionGate* gate, std::string address) : gate_(gate), address_(std::move(address)) {}
        ConnectionGate* gate_ = nullptr;
        std::string address_;  // empty when there is no per-address cap
    };

    // Admits one more connection from `address` (a textual IP address): its ticket, or the cap
    // it would exceed.
    [[nodiscard]] boost::system::result<Ticket, ConnectionRefusal> admit(std::string_view address);

    // Connections holding a ticket now.
    [[nodiscard]] std::size_t open() const noexcept { return open_.load(); }

private:
    void release(std::string const& address) noexcept;

    std::size_t const max_total_;
    std::size_t const max_per_address_;
    std::atomic<std::size_t> open_{0};
    std::mutex mutex_;
    std::unordered_map<std::string, std::size_t> per_address_;
};

}  // namespace exemptd::daemon
