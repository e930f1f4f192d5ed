#pragma once
// Error vocabulary shared by every exemptd component.

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <string>
#include <type_traits>
#include <utility>

namespace exemptd {

// Failures that the core library reports through error_code.
enum class Errc {
    not_found = 1,
    conflict,
    request_invalid,
    peer_not_authorized,
    policy_invalid,
    storage_failure,
};

// Category for Errc; message() gives a short English description. Thread-safe.
boost::system::error_category const& exemptd_category() noexcept;

// Category for SQLite extended result codes; message() is sqlite3_errstr(). Thread-safe.
boost::system::error_category const& sqlite_category() noexcept;

inline boost::system::error_code make_error_code(Errc e) noexcept
{
    return {static_cast<int>(e), exemptd_category()};
}

template <class T>
using Result = boost::system::result<T>;

// An error as the HTTP API reports it: status, a stable slug and a sentence for a person.
struct ApiError {
    int status = 500;
    std::string code;
    std::string message;
    int retry_after_seconds = 0;  // > 0: when to try again (a 429's Retry-After header)
};

// Throws a std::runtime_error carrying the API error; used only by .value() on an ApiResult.
[[noreturn]] void throw_exception_from_error(ApiError const& e, boost::source_location const& loc);

template <class T>
using ApiResult = boost::system::result<T, ApiError>;

inline ApiError api_error(int status, std::string code, std::string message)
{
    return ApiError{status, std::move(code), std::move(message)};
}

}  // namespace exemptd

template <>
struct boost::system::is_error_code_enum<exemptd::Errc> : std::true_type {};
