#include "exemptd/error.hpp"

#include <sqlite3.h>

#include <stdexcept>

namespace exemptd {
namespace {

// Boost declares error_category's destructor protected and non-virtual on purpose: categories
// are static singletons never deleted through a base pointer.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"

class ExemptdCategory final : public boost::system::error_category {
public:
    char const* name() const noexcept override { return "exemptd"; }
    std::string message(int ev) const override
    {
        switch (static_cast<Errc>(ev)) {
        case Errc::not_found: return "not found";
        case Errc::conflict: return "conflicts with the current state";
        case Errc::request_invalid: return "invalid request";
        case Errc::peer_not_authorized: return "peer is not authorized";
        case Errc::policy_invalid: return "policy is invalid";
        case Errc::storage_failure: return "storage failure";
        }
        return "unknown exemptd error";
    }
};

class SqliteCategory final : public boost::system::error_category {
public:
    char const* name() const noexcept override { return "sqlite"; }
    std::string message(int ev) const override { return sqlite3_errstr(ev); }
};
#pragma GCC diagnostic pop

}  // namespace

boost::system::error_category const& exemptd_category() noexcept
{
    static ExemptdCategory const category;
    return category;
}

boost::system::error_category const& sqlite_category() noexcept
{
    static SqliteCategory const category;
    return category;
}

void throw_exception_from_error(ApiError const& e, boost::source_location const&)
{
    throw std::runtime_error(e.code + ": " + e.message);
}

}  // namespace exemptd
