#pragma once
// Reading the daemon's answers: error objects and what they mean for a tool's exit code.

#include "client_error.hpp"

#include "exemptd/error.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace exemptd::client {

// The error an answer carries: its status with `{"error":{"code","message"}}` from the body, or,
// when the body is not such an object, code "http_<status>" and a message naming the status. Pure.
[[nodiscard]] ApiError parse_api_error(int status, std::string_view body);

// exemptctl's exit code for an HTTP status: 0 for 2xx, 1 for a refusal (any 4xx but 400), 2 for
// 400 (a request the tool should not have sent) and for anything else (5xx, unexpected). Pure.
[[nodiscard]] int exemptctl_exit_code(int status) noexcept;

// Parses an answer body that must be JSON; fails with "the server sent invalid JSON: reason". Pure.
[[nodiscard]] ClientResult<boost::json::value> parse_answer_json(std::string_view body);

// The string at obj[key], or "" when it is absent or not a string. Pure.
[[nodiscard]] std::string string_field(boost::json::object const& obj, std::string_view key);

// The items of the list at the answer's `key` ({"devices": [...]}), each read by `read_item`;
// `missing` when the answer has no such list, else the first item's error. Pure.
template <class T, class ReadItem>
[[nodiscard]] ClientResult<std::vector<T>> list_from_body(std::string_view body, std::string_view key,
                                                          ClientError const& missing, ReadItem read_item)
{
    auto value = parse_answer_json(body);
    if (!value) return value.error();
    auto const* list = value->is_object() ? value->get_object().if_contains(key) : nullptr;
    if (list == nullptr || !list->is_array()) return missing;
    std::vector<T> out;
    for (auto const& item : list->get_array()) {
        auto read = read_item(item);
        if (!read) return read.error();
        out.push_back(std::move(*read));
    }
    return out;
}

}  // namespace exemptd::client
