#include "exemptd/posture.hpp"

#include "exemptd/identity.hpp"
#include "exemptd/json_reader.hpp"
#include "json_writer.hpp"

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <cmath>

namespace exemptd {
namespace {

constexpr std::size_t kMaxFacts = 64;
constexpr std::size_t kMaxFactKey = 64;
constexpr std::size_t kMaxFactString = 256;

bool is_printable_ascii(std::string_view s)
{
    for (char const c : s) {
        if (c < 0x21 || c > 0x7e) return false;
    }
    return true;
}

// Converts one JSON fact; nullopt for types a fact may not have (arrays, objects, null).
std::optional<FactValue> fact_from_json(boost::json::value const& v)
{
    if (v.is_bool()) return FactValue{v.as_bool()};
    if (v.is_int64()) return FactValue{v.as_int64()};
    if (v.is_uint64()) return std::nullopt;  // beyond int64: no real fact is that large
    if (v.is_double() && std::isfinite(v.as_double())) return FactValue{v.as_double()};
    if (v.is_string() && v.as_string().size() <= kMaxFactString) return FactValue{std::string(v.as_string())};
    return std::nullopt;
}

void read_facts(boost::json::object const* facts, ObjectReader& reader, PostureReport& out)
{
    if (facts == nullptr) return;
    if (facts->size() > kMaxFacts) return reader.fail("facts", "has more than 64 entries");
    for (auto const& [key, value] : *facts) {
        if (key.empty() || key.size() > kMaxFactKey) return reader.fail("facts", "has an empty or overlong name");
        auto fact = fact_from_json(value);
        if (!fact) return reader.fail("facts." + std::string(key), "must be a boolean, number or short string");
        out.facts.emplace(std::string(key), std::move(*fact));
    }
}

}  // namespace

ApiResult<PostureReport> decode_posture(std::string_view body)
{
    // A report (about 600 bytes) parses into the buffer; a larger one spills to the heap.
    unsigned char buffer[8192];
    boost::json::monotonic_resource arena(buffer, sizeof buffer);
    auto object = parse_json_object(body, &arena);
    if (!object) return object.error();
    ObjectReader reader(*object);
    PostureReport report;
    report.device_id = reader.string("device_id", Need::required, 64);
    if (!reader.error() && !is_valid_device_id(report.device_id))
        reader.fail("device_id", "must be 1-64 characters of A-Z a-z 0-9 . _ : -");
    report.hostname = reader.string("hostname", Need::optional);
    report.serial = reader.string("serial", Need::optional);
    if (auto const* os = reader.object("os", Need::optional)) {
        ObjectReader os_reader(*os, "os.");
        report.os_name = os_reader.string("name", Need::optional, 64);
        report.os_version = os_reader.string("version", Need::optional, 64);
        if (os_reader.error()) return *os_reader.error();
    }
    read_facts(reader.object("facts", Need::optional), reader, report);
    report.agent_version = reader.string("agent_version", Need::optional, 64);
    report.reported_at = reader.time("reported_at").value_or(TimePoint{});
    report.nonce = reader.string("nonce", Need::required, 128);
    if (!reader.error() && (report.nonce.size() < 8 || !is_printable_ascii(report.nonce)))
        reader.fail("nonce", "must be 8-128 printable characters");
    if (reader.error()) return *reader.error();
    return report;
}

boost::json::value fact_to_json(FactValue const& value)
{
    return std::visit([](auto const& v) { return boost::json::value(v); }, value);
}

std::string fact_to_string(FactValue const& value)
{
    if (auto const* s = std::get_if<std::string>(&value)) return *s;
    if (auto const* d = std::get_if<double>(&value)) {
        char buffer[32];
        auto const [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, *d);  // shortest: 30, 12.8
        return ec == std::errc{} ? std::string(buffer, end) : std::string("?");
    }
    if (auto const* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
    return std::to_string(std::get<std::int64_t>(value));
}

namespace {

boost::json::object facts_object(Facts const& facts)
{
    boost::json::object out;
    for (auto const& [key, value] : facts) out[key] = fact_to_json(value);
    return out;
}

void append_fact(std::string& out, FactValue const& value)
{
    if (auto const* s = std::get_if<std::string>(&value)) return json_writer::append_string(out, *s);
    // boost::json's own text for a double (2.5E1): written shortest, it would read back as an integer.
    if (auto const* d = std::get_if<double>(&value)) out += boost::json::serialize(boost::json::value(*d));
    else out += fact_to_string(value);
}

}  // namespace

std::string facts_to_json(Facts const& facts)
{
    std::string out = "{";
    for (auto const& [key, value] : facts) {
        json_writer::append_key(out, key);
        append_fact(out, value);
    }
    out.push_back('}');
    return out;
}

Facts facts_from_json(std::string_view json)
{
    Facts out;
    boost::system::error_code ec;
    auto const value = boost::json::parse(json, ec);
    if (ec || !value.is_object()) return out;
    for (auto const& [key, v] : value.as_object()) {
        if (auto fact = fact_from_json(v)) out.emplace(std::string(key), std::move(*fact));
    }
    return out;
}

std::string encode_posture(PostureReport const& report)
{
    auto facts = facts_object(report.facts);
    boost::json::object out{{"device_id", report.device_id},
                            {"hostname", report.hostname},
                            {"serial", report.serial},
                            {"os", {{"name", report.os_name}, {"version", report.os_version}}},
                            {"facts", std::move(facts)},
                            {"agent_version", report.agent_version},
                            {"reported_at", format_rfc3339(report.reported_at)},
                            {"nonce", report.nonce}};
    return boost::json::serialize(out);
}

}  // namespace exemptd
