#include "connection_gate.hpp"

namespace exemptd::daemon {

std::string_view to_string(ConnectionRefusal reason) noexcept
{
    switch (reason) {
    case ConnectionRefusal::max_connections: return "max_connections";
    case ConnectionRefusal::max_connections_per_address: return "max_connections_per_address";
    }
    return "unknown";
}

ConnectionGate::Ticket::~Ticket()
{
    if (gate_ != nullptr) gate_->release(address_);
}

boost::system::result<ConnectionGate::Ticket, ConnectionRefusal> ConnectionGate::admit(std::string_view address)
{
    if (open_.fetch_add(1) >= max_total_) {
        open_.fetch_sub(1);
        return ConnectionRefusal::max_connections;
    }
    if (max_per_address_ == 0) return Ticket{this, {}};
    std::lock_guard lock(mutex_);
    auto& count = per_address_[std::string(address)];
    if (count >= max_per_address_) {
        open_.fetch_sub(1);
        return ConnectionRefusal::max_connections_per_address;
    }
    ++count;
    return Ticket{this, std::string(address)};
}

void ConnectionGate::release(std::string const& address) noexcept
{
    if (!address.empty()) {
        std::lock_guard lock(mutex_);
        if (auto found = per_address_.find(address); found != per_address_.end() && --found->second == 0)
            per_address_.erase(found);
    }
    open_.fetch_sub(1);
}

}  // namespace exemptd::daemon
