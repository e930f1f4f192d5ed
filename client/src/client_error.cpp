#include "client_error.hpp"

#include <boost/system/errc.hpp>

#include <stdexcept>
#include <utility>

namespace exemptd::client {

void throw_exception_from_error(ClientError const& e, boost::source_location const&)
{
    throw std::runtime_error(e.message);
}

ClientError client_error(std::string message)
{
    return ClientError{boost::system::errc::make_error_code(boost::system::errc::invalid_argument),
                       std::move(message)};
}

}  // namespace exemptd::client
