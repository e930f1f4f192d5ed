#pragma once
// Strict reading of JSON request bodies into typed fields, with one clear error for the first
// field that is missing or of the wrong type.

#include "exemptd/error.hpp"
#include "exemptd/time.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse_options.hpp>
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

// How a request body is parsed (at most 32 levels deep), by parse_json_object and by decoders
// with a boost::json handler of their own.
[[nodiscard]] boost::json::parse_options request_parse_options();

// The same refusal for a decoder that reads the body with its own boost::json handler: `ec`
// from the parser, or no error when the body parsed but is not an object.
[[nodiscard]] ApiError malformed_json(boost::system::error_code const& ec);

// The string at object[key], or "" when it is absent or not a string: for reading JSON this
// process wrote itself (stored records, server answers), where a missing field reads as empty.
[[nodiscard]] std::string string_or_empty(boost::json::object const& object, std::string_view key);

enum class Need { required, optional };

// A field as a decoder met it: absent (null counts as absent), a string, or another JSON type.
struct FieldText {
    enum class Kind { absent, string, other };
    Kind kind = Kind::absent;
    std::string_view text;  // when kind is string
};

// A field's value once checked, and what is wrong with it ("is required"), empty when nothing.
template <class T>
struct Checked {
    T value{};
    std::string problem;
};

// The rules ObjectReader applies, for decoders that collect fields themselves (no DOM).
[[nodiscard]] Checked<std::string_view> check_string(FieldText field, Need need, std::size_t max_len);
[[nodiscard]] Checked<std::optional<TimePoint>> check_time(FieldText field, Need need);

// 400 `invalid_field`: "Field '<name>' <problem>."
[[nodiscard]] ApiError invalid_field(std::string_view name, std::string_view problem);

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
