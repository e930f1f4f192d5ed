#pragma once
// The error type of the client library: an error code plus a sentence for the person at the terminal.

#include <boost/assert/source_location.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <string>

namespace exemptd::client {

// Why a client-side step failed. `message` is complete enough to print after "exemptctl: ".
struct ClientError {
    boost::system::error_code code;
    std::string message;
};

// Throws std::runtime_error(e.message); only reached through .value() on a failed ClientResult.
[[noreturn]] void throw_exception_from_error(ClientError const& e, boost::source_location const& loc);

template <class T>
using ClientResult = boost::system::result<T, ClientError>;

// A ClientError with a generic "invalid argument" code and the given message. Thread-safe.
[[nodiscard]] ClientError client_error(std::string message);

}  // namespace exemptd::client
