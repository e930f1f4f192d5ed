#pragma once
// Strict reading of JSON request bodies into typed fields, with one clear error for the first
// field that is missing or of the wrong type.

#include "exemptd/error.hpp"
#include "exemptd/time.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace exemptd {

// Parses a request body that must be a JSON object (at most 32 levels deep). Answers 400
// `malformed_json` otherwise. Thread-safe.
// The object's memory comes from `storage` (default: the heap); a caller that reads the object
// at once can pass a monotonic_resource over a stack buffer and skip malloc altogether.
[[nodiscard]] ApiResult<boost::json::object> parse_json_object(std::string_view body,
                                                               boost::json::storage_ptr storage = {});

// The string at object[key], or "" when it is absent or not a string: for reading JSON this
// process wrote itself (stored records, server answers), where a missing field reads as empty.
[[nodiscard]] std::string string_or_empty(boost::json::object const& object, std::string_view key);

enum class Need { required, optional };

// Reads fields of one JSON object. Each accessor returns an empty value and records an error
// (400 `invalid_field`, naming the field) when the field is missing but required, has the wrong
// type or breaks its bound; only the first error is kept. Not thread-safe; one per request.
class ObjectReader {
public:
    explicit ObjectReader(boost::json::object const& object, std::string prefix = {});

    [[nodiscard]] std::string string(std::string_view key, Need need = Need::required, std::size_t max_len = 256);
    [[nodiscard]] std::optional<bool> boolean(std::string_view key, Need need = Need::required);
    [[nodiscard]] std::optional<TimePoint> time(std::string_view key, Need need = Need::required);
    [[nodiscard]] std::vector<std::string> strings(std::string_view key, Need need = Need::required,
                                                   std::size_t max_items = 64, std::size_t max_len = 1024);
    [[nodiscard]] boost::json::object const* object(std::string_view key, Need need = Need::required);

    // Records an error about `key` that the caller detected (a bad format, say).
    void fail(std::string_view key, std::string_view what);

    // Refuses any key not in `known` (an unknown field is likely a typo in a write request).
    void only(std::initializer_list<std::string_view> known);

    [[nodiscard]] std::optional<ApiError> const& error() const noexcept { return error_; }

private:
    boost::json::value const* find(std::string_view key, Need need);

    boost::json::object const& object_;
    std::string prefix_;
    std::optional<ApiError> error_;
};

}  // namespace exemptd
