#pragma once
// The posture report an endpoint sends with each check-in (SPEC §4).

#include "exemptd/error.hpp"
#include "exemptd/time.hpp"

#include <boost/json/fwd.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <variant>

namespace exemptd {

// A posture fact: a boolean, an integer, a real number or a string.
using FactValue = std::variant<bool, std::int64_t, double, std::string>;
using Facts = std::map<std::string, FactValue, std::less<>>;

struct PostureReport {
    std::string device_id;
    std::string hostname;
    std::string serial;
    std::string os_name;
    std::string os_version;
    Facts facts;
    std::string agent_version;
    TimePoint reported_at{};
    std::string nonce;
};

// Decodes a report from a JSON request body. Answers 400 `malformed_json` when the body does not
// parse, 400 `invalid_field` naming the field when a field is missing, of the wrong type, or out
// of range (device id syntax, nonce 8-128 printable characters, RFC 3339 time). Thread-safe.
[[nodiscard]] ApiResult<PostureReport> decode_posture(std::string_view body);

// Encodes a report as the JSON the agent sends. Thread-safe.
[[nodiscard]] std::string encode_posture(PostureReport const& report);

// Facts as a JSON object and back (the store keeps the latest report's facts). Thread-safe.
[[nodiscard]] std::string facts_to_json(Facts const& facts);
[[nodiscard]] Facts facts_from_json(std::string_view json);

// Converts one fact to JSON and back; used by the codec, the store and explain output.
[[nodiscard]] boost::json::value fact_to_json(FactValue const& value);

// Human text for a fact value ("true", "300", "12.8", "abc").
[[nodiscard]] std::string fact_to_string(FactValue const& value);

}  // namespace exemptd
