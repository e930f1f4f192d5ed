#include "support.hpp"

#include "exemptd/identity.hpp"
#include "exemptd/json_reader.hpp"
#include "exemptd/posture.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <variant>
#include <vector>

using Catch::Matchers::Contains;
using exemptd::FactValue;
using exemptd::test::fixed_time;
using exemptd::test::PostureJson;

namespace {

// Decodes `body` and requires a 400 with `code`; returns the message for further checks.
std::string refusal(std::string const& body, std::string const& code)
{
    auto const decoded = exemptd::decode_posture(body);
    INFO("body: " << body);
    REQUIRE_FALSE(decoded);
    CHECK(decoded.error().status == 400);
    CHECK(decoded.error().code == code);
    CHECK_FALSE(decoded.error().message.empty());
    return decoded.error().message;
}

std::string deep_json(int depth)
{
    std::string body;
    for (int i = 0; i < depth; ++i) body += "{\"a\":";
    body += "1";
    body += std::string(static_cast<std::size_t>(depth), '}');
    return body;
}

// The reading decode_posture replaced: a boost::json DOM read with ObjectReader, the first problem
// in field order. The scanner must answer every body exactly as this does.
exemptd::ApiResult<exemptd::PostureReport> decode_with_dom(std::string_view body)
{
    using exemptd::Need;
    auto const object = exemptd::parse_json_object(body);
    if (!object) return object.error();
    exemptd::ObjectReader reader(*object);
    exemptd::PostureReport r;
    r.device_id = reader.string("device_id", Need::required, 64);
    if (!reader.error() && !exemptd::is_valid_device_id(r.device_id))
        reader.fail("device_id", "must be 1-64 characters of A-Z a-z 0-9 . _ : -");
    r.hostname = reader.string("hostname", Need::optional);
    r.serial = reader.string("serial", Need::optional);
    if (auto const* os = reader.object("os", Need::optional)) {
        exemptd::ObjectReader os_reader(*os, "os.");
        r.os_name = os_reader.string("name", Need::optional, 64);
        r.os_version = os_reader.string("version", Need::optional, 64);
        if (os_reader.error() && !reader.error()) return *os_reader.error();
    }
    if (auto const* facts = reader.object("facts", Need::optional)) {
        if (facts->size() > 64) reader.fail("facts", "has more than 64 entries");
        for (auto const& [key, v] : *facts) {
            if (key.empty() || key.size() > 64) reader.fail("facts", "has an empty or overlong name");
            std::optional<FactValue> fact;
            if (v.is_bool()) fact = FactValue{v.as_bool()};
            if (v.is_int64()) fact = FactValue{v.as_int64()};
            if (v.is_double() && std::isfinite(v.as_double())) fact = FactValue{v.as_double()};
            if (v.is_string() && v.as_string().size() <= 256) fact = FactValue{std::string(v.as_string())};
            if (!fact) reader.fail("facts." + std::string(key), "must be a boolean, number or short string");
            if (!reader.error()) r.facts.emplace(std::string(key), *fact);
        }
    }
    r.agent_version = reader.string("agent_version", Need::optional, 64);
    r.reported_at = reader.time("reported_at").value_or(exemptd::TimePoint{});
    r.nonce = reader.string("nonce", Need::required, 128);
    auto const printable = std::all_of(r.nonce.begin(), r.nonce.end(), [](char c) { return c > 0x20 && c < 0x7f; });
    if (!reader.error() && (r.nonce.size() < 8 || !printable)) reader.fail("nonce", "must be 8-128 printable characters");
    if (reader.error()) return *reader.error();
    return r;
}

std::string outcome(exemptd::ApiResult<exemptd::PostureReport> const& r)
{
    if (!r) return exemptd::test::describe(r.error());
    std::string out;
    for (auto const& field : {r->device_id, r->hostname, r->serial, r->os_name, r->os_version, r->agent_version,
                              exemptd::format_rfc3339(r->reported_at), r->nonce})
        out.append(field).append("|");
    for (auto const& [key, value] : r->facts)
        out.append(key).append("=").append(std::to_string(value.index())).append(":").append(exemptd::fact_to_string(value)).append("|");
    return out;
}

// `{"k":v,...}` in the order given, duplicates and all.
std::string object_text(std::vector<std::pair<std::string, std::string>> const& members)
{
    std::string out = "{";
    for (auto const& [key, value] : members) {
        if (out.size() > 1) out += ',';
        out.append(boost::json::serialize(boost::json::string(key))).append(":").append(value);
    }
    return out + "}";
}

std::string many_facts(int n, bool with_duplicate)
{
    std::vector<std::pair<std::string, std::string>> facts;
    for (int i = 0; i < n; ++i) facts.emplace_back(std::string("f").append(std::to_string(i)), std::to_string(i));
    if (with_duplicate) facts.emplace_back("f0", "\"again\"");
    return object_text(facts);
}

}  // namespace

TEST_CASE("Every body gets the answer a DOM reading of it would give", "[posture]")
{
    std::vector<std::pair<std::string, std::string>> const valid{
        {"device_id", "\"LAPTOP-0042\""},
        {"hostname", "\"sam-laptop\""},
        {"serial", "\"C02XYZ123\""},
        {"os", R"({"name":"debian","version":"12.8"})"},
        {"facts", R"({"disk_encrypted":true,"screen_lock_seconds":300,"kernel":"6.1.0","battery":0.87})"},
        {"agent_version", "\"0.1.0\""},
        {"reported_at", "\"2026-11-27T21:00:00Z\""},
        {"nonce", "\"4f1c2a9e7b3d5a60\""}};
    auto const quoted = [](std::string const& s) { return boost::json::serialize(boost::json::string(s)); };
    std::vector<std::string> const values{
        "null", "\"\"", "\"LAPTOP-9\"", quoted(std::string(65, 'x')), quoted(std::string(129, 'x')),
        quoted(std::string(257, 'x')), "\"bad id!\"", "\"2026-11-27T21:00:00Z\"", "\"4f1c2a9e7b3d5a60\"", "\"short\"",
        R"("tab\there 12345")", R"("caf\u00e9 \"q\"")", "42", "-7", "18446744073709551615", "1.5", "1e400", "true",
        "[]", R"(["a",{"b":[1]}])", "{}", R"({"name":"debian","version":"12"})", R"({"name":5})",
        R"({"name":null,"version":[1],"name":"deb"})", R"({"version":"1","version":{}})", R"({"a":{"b":1}})",
        R"({"":1})", "{" + quoted(std::string(65, 'k')) + ":1}", R"({"k":)" + quoted(std::string(257, 'v')) + "}",
        R"({"k":18446744073709551615,"j":1e400})", R"({"k":null})", R"({"k":1,"k":[1]})", R"({"k":[1],"k":2.5})",
        R"({"k":"v","j":false,"k":"w"})", many_facts(64, false), many_facts(65, false), many_facts(64, true)};

    std::vector<std::string> bodies;
    auto names = valid;
    names.emplace_back("extra", "0");
    for (std::size_t f = 0; f < names.size(); ++f) {
        auto without = valid;
        if (f < valid.size()) without.erase(without.begin() + static_cast<std::ptrdiff_t>(f));
        bodies.push_back(object_text(without));
        for (auto const& v : values) {
            auto replaced = valid;
            if (f < valid.size()) replaced[f].second = v;
            else replaced.emplace_back(names[f].first, v);
            bodies.push_back(object_text(replaced));
            auto first = valid;  // a duplicate before: the valid value, last, wins
            first.insert(first.begin(), {names[f].first, v});
            bodies.push_back(object_text(first));
            auto last = valid;  // a duplicate after: it wins
            last.emplace_back(names[f].first, v);
            bodies.push_back(object_text(last));
        }
    }
    for (std::size_t a = 0; a < valid.size(); ++a) {  // two bad fields: the first in field order is named
        for (std::size_t b = 0; b < valid.size(); ++b) {
            auto two = valid;
            two[a].second = "42";
            two[b].second = b == 3 || b == 4 ? R"({"name":[],"k":[]})" : "[]";
            bodies.push_back(object_text(two));
        }
    }
    // Every string escaped: the parser unescapes each into a buffer of its own, which the next reuses.
    auto const escaped = object_text({{"device_id", R"("LAPTOP\u002d0042")"},
                                  {"hostname", R"("sam\u002dlaptop")"},
                                  {"serial", R"("C02\u0058YZ123")"},
                                  {"os", R"({"name":"deb\u0069an","version":"12\u002e8"})"},
                                  {"facts", R"({"k\u0065rnel":"6\u002e1\u002e0"})"},
                                  {"agent_version", R"("0\u002e1\u002e0")"},
                                  {"reported_at", R"("2026\u002d11-27T21:00:00Z")"},
                                  {"nonce", R"("4f1c\u0032a9e7b3d5a60")"}});
    bodies.push_back(escaped);
    auto const whole = object_text(valid);
    for (std::size_t n = 0; n < whole.size(); ++n) bodies.push_back(whole.substr(0, n));  // every truncation
    for (std::string const tail : {" ", "x", "{}", ",", " \n"}) bodies.push_back(whole + tail);
    bodies.insert(bodies.end(), {"[]", "[" + whole + "]", "42", "\"LAPTOP-0042\"", "null", "true", " "});  // not objects
    for (int depth : {30, 31, 32, 33}) {
        auto deep = valid;
        deep[4].second = deep_json(depth);  // inside facts
        bodies.push_back(object_text(deep));
        deep[4].second = valid[4].second;
        deep.emplace_back("extra", deep_json(depth));
        bodies.push_back(object_text(deep));
    }
    for (auto const& body : bodies) {
        INFO("body: " << body);
        REQUIRE(outcome(exemptd::decode_posture(body)) == outcome(decode_with_dom(body)));
    }
    CHECK(bodies.size() > 1000);
    auto const unescaped = exemptd::decode_posture(escaped);
    REQUIRE(unescaped);
    CHECK(outcome(unescaped) == "LAPTOP-0042|sam-laptop|C02XYZ123|debian|12.8|0.1.0|2026-11-27T21:00:00Z|4f1c2a9e7b3d5a60|kernel=3:6.1.0|");
}

TEST_CASE("The SPEC's posture report decodes field by field", "[posture]")
{
    auto const decoded = exemptd::decode_posture(exemptd::test::read_text(exemptd::test::data_path("posture/laptop-0042.json")));
    REQUIRE(decoded);
    auto const& r = *decoded;
    CHECK(r.device_id == "LAPTOP-0042");
    CHECK(r.hostname == "sam-laptop");
    CHECK(r.serial == "C02XYZ123");
    CHECK(r.os_name == "debian");
    CHECK(r.os_version == "12.8");
    CHECK(r.agent_version == "0.1.0");
    CHECK(r.reported_at == fixed_time("2026-11-27T21:00:00Z"));
    CHECK(r.nonce == "4f1c2a9e7b3d5a60");
    REQUIRE(r.facts.size() == 6);
    CHECK(r.facts.at("disk_encrypted") == FactValue{true});
    CHECK(r.facts.at("screen_lock_seconds") == FactValue{std::int64_t{300}});
    CHECK(r.facts.at("os_patch_age_days") == FactValue{std::int64_t{12}});
    CHECK(r.facts.at("kernel") == FactValue{std::string("6.1.0-28-amd64")});
    CHECK(r.facts.at("battery_health") == FactValue{0.87});
}

TEST_CASE("Optional posture fields may be left out", "[posture]")
{
    PostureJson body;
    body.erase("hostname").erase("serial").erase("os").erase("facts").erase("agent_version");
    auto const decoded = exemptd::decode_posture(body.str());
    REQUIRE(decoded);
    CHECK(decoded->hostname.empty());
    CHECK(decoded->os_name.empty());
    CHECK(decoded->facts.empty());
    CHECK(decoded->device_id == "LAPTOP-0042");
}

TEST_CASE("A body that is not a JSON object is refused as malformed_json", "[posture]")
{
    for (std::string const& body : std::vector<std::string>{"", "{", "not json", "[]", "\"LAPTOP-0042\"", "42", "null",
                                   "{\"device_id\": \"LAPTOP-0042\",}"}) {
        refusal(body, "malformed_json");
    }
    SECTION("nesting deeper than 32 levels is refused, not recursed into") {
        refusal(deep_json(40), "malformed_json");
    }
}

TEST_CASE("A missing or mistyped required posture field is refused naming the field", "[posture]")
{
    SECTION("device_id missing") {
        CHECK_THAT(refusal(PostureJson{}.erase("device_id").str(), "invalid_field"), Contains("device_id"));
    }
    SECTION("device_id null") {
        CHECK_THAT(refusal(PostureJson{}.set("device_id", nullptr).str(), "invalid_field"), Contains("device_id"));
    }
    SECTION("device_id a number") {
        CHECK_THAT(refusal(PostureJson{}.set("device_id", 42).str(), "invalid_field"), Contains("device_id"));
    }
    SECTION("nonce missing") {
        CHECK_THAT(refusal(PostureJson{}.erase("nonce").str(), "invalid_field"), Contains("nonce"));
    }
    SECTION("reported_at missing") {
        CHECK_THAT(refusal(PostureJson{}.erase("reported_at").str(), "invalid_field"), Contains("reported_at"));
    }
    SECTION("reported_at not a time") {
        CHECK_THAT(refusal(PostureJson{}.set("reported_at", "yesterday").str(), "invalid_field"),
                   Contains("reported_at"));
    }
    SECTION("reported_at a number of seconds") {
        CHECK_THAT(refusal(PostureJson{}.set("reported_at", 1795813200).str(), "invalid_field"),
                   Contains("reported_at"));
    }
    SECTION("hostname a boolean") {
        CHECK_THAT(refusal(PostureJson{}.set("hostname", true).str(), "invalid_field"), Contains("hostname"));
    }
    SECTION("hostname longer than 256 characters") {
        CHECK_THAT(refusal(PostureJson{}.set("hostname", boost::json::value(std::string(257, 'h'))).str(), "invalid_field"),
                   Contains("hostname"));
    }
    SECTION("os not an object") {
        CHECK_THAT(refusal(PostureJson{}.set("os", "debian 12").str(), "invalid_field"), Contains("os"));
    }
    SECTION("os.name a number") {
        CHECK_THAT(refusal(PostureJson{}.set("os", {{"name", 12}}).str(), "invalid_field"), Contains("os.name"));
    }
}

TEST_CASE("A device id outside 1-64 characters of [A-Za-z0-9._:-] is refused", "[posture]")
{
    for (std::string const& id : std::vector<std::string>{"", "LAPTOP 0042", "LAPTOP/0042", "laptop#1", "LAPTÖP", std::string(65, 'a')}) {
        CHECK_THAT(refusal(PostureJson{}.set("device_id", boost::json::value(id)).str(), "invalid_field"),
                   Contains("device_id"));
    }
    SECTION("every allowed character and the full 64 are accepted") {
        for (std::string const& id : std::vector<std::string>{"a", "A.b_c:d-9", std::string(64, 'Z')}) {
            auto const decoded = exemptd::decode_posture(PostureJson{id}.str());
            REQUIRE(decoded);
            CHECK(decoded->device_id == id);
        }
    }
}

TEST_CASE("A nonce must be 8-128 printable characters", "[posture]")
{
    SECTION("7 characters are too few") {
        CHECK_THAT(refusal(PostureJson{}.nonce("1234567").str(), "invalid_field"), Contains("nonce"));
    }
    SECTION("129 characters are too many") {
        CHECK_THAT(refusal(PostureJson{}.nonce(std::string(129, 'n')).str(), "invalid_field"), Contains("nonce"));
    }
    SECTION("a space or control character is not printable") {
        CHECK_THAT(refusal(PostureJson{}.nonce("abcd efgh").str(), "invalid_field"), Contains("nonce"));
        CHECK_THAT(refusal(PostureJson{}.nonce("abcd\tefgh").str(), "invalid_field"), Contains("nonce"));
    }
    SECTION("a number is not a nonce") {
        CHECK_THAT(refusal(PostureJson{}.set("nonce", 1234567890).str(), "invalid_field"), Contains("nonce"));
    }
    SECTION("8 and 128 characters are accepted") {
        CHECK(exemptd::decode_posture(PostureJson{}.nonce("12345678").str()));
        CHECK(exemptd::decode_posture(PostureJson{}.nonce(std::string(128, 'n')).str()));
    }
}

TEST_CASE("A fact must be a boolean, a number or a short string", "[posture]")
{
    SECTION("facts not an object") {
        CHECK_THAT(refusal(PostureJson{}.set("facts", boost::json::array{1, 2}).str(), "invalid_field"),
                   Contains("facts"));
    }
    SECTION("an array fact") {
        CHECK_THAT(refusal(PostureJson{}.fact("ports", boost::json::array{22, 443}).str(), "invalid_field"),
                   Contains("facts.ports"));
    }
    SECTION("an object fact") {
        CHECK_THAT(refusal(PostureJson{}.fact("disk", {{"encrypted", true}}).str(), "invalid_field"),
                   Contains("facts.disk"));
    }
    SECTION("a null fact") {
        CHECK_THAT(refusal(PostureJson{}.fact("disk_encrypted", nullptr).str(), "invalid_field"),
                   Contains("facts.disk_encrypted"));
    }
    SECTION("an integer beyond int64") {
        auto body = PostureJson{}.str();
        auto const at = body.find("\"os_patch_age_days\":12");
        REQUIRE(at != std::string::npos);
        body.replace(at, 22, "\"os_patch_age_days\":18446744073709551615");
        CHECK_THAT(refusal(body, "invalid_field"), Contains("facts.os_patch_age_days"));
    }
    SECTION("a string longer than 256 characters") {
        CHECK_THAT(refusal(PostureJson{}.fact("kernel", boost::json::value(std::string(257, 'k'))).str(),
                           "invalid_field"),
                   Contains("facts.kernel"));
    }
    SECTION("an empty fact name") {
        CHECK_THAT(refusal(PostureJson{}.fact("", true).str(), "invalid_field"), Contains("facts"));
    }
    SECTION("more than 64 facts") {
        PostureJson body;
        for (int i = 0; i < 65; ++i) body.fact("fact_" + std::to_string(i), i);
        CHECK_THAT(refusal(body.str(), "invalid_field"), Contains("facts"));
    }
    SECTION("a negative number and a 256-character string are fine") {
        auto const decoded =
            exemptd::decode_posture(PostureJson{}.fact("offset", -3).fact("note", boost::json::value(std::string(256, 'x'))).str());
        REQUIRE(decoded);
        CHECK(decoded->facts.at("offset") == FactValue{std::int64_t{-3}});
    }
}

TEST_CASE("An encoded posture report decodes to the same report", "[posture]")
{
    auto const original = PostureJson{}.fact("kernel", "6.1.0").fact("battery_health", 0.5).report();
    auto const decoded = exemptd::decode_posture(exemptd::encode_posture(original));
    REQUIRE(decoded);
    CHECK(decoded->device_id == original.device_id);
    CHECK(decoded->hostname == original.hostname);
    CHECK(decoded->serial == original.serial);
    CHECK(decoded->os_name == original.os_name);
    CHECK(decoded->os_version == original.os_version);
    CHECK(decoded->agent_version == original.agent_version);
    CHECK(decoded->reported_at == original.reported_at);
    CHECK(decoded->nonce == original.nonce);
    CHECK(decoded->facts == original.facts);
}

TEST_CASE("A fact is shown to people as plain text", "[posture]")
{
    CHECK(exemptd::fact_to_string(FactValue{true}) == "true");
    CHECK(exemptd::fact_to_string(FactValue{std::int64_t{300}}) == "300");
    CHECK(exemptd::fact_to_string(FactValue{std::string("abc")}) == "abc");
}

TEST_CASE("Stored facts read back with the same kinds and values", "[posture]")
{
    exemptd::Facts const facts{{"disk_encrypted", FactValue{true}},
                               {"screen_lock_seconds", FactValue{std::int64_t{300}}},
                               {"battery_health", FactValue{2.0}},
                               {"kernel", FactValue{std::string("6.1.0")}}};
    CHECK(exemptd::facts_from_json(exemptd::facts_to_json(facts)) == facts);
    CHECK(exemptd::facts_from_json(exemptd::facts_to_json({})).empty());
    SECTION("written as boost::json writes the same object, escapes and number forms included") {
        exemptd::Facts const odd{{"a\"quote", FactValue{std::string("line\nbreak\t\x01\\ caf\xc3\xa9")}},
                                 {"negative", FactValue{std::int64_t{-42}}},
                                 {"ratio", FactValue{0.1}},
                                 {"whole", FactValue{30.0}},
                                 {"off", FactValue{false}}};
        boost::json::object expected;
        for (auto const& [key, value] : odd) {
            expected[key] = std::visit([](auto const& v) { return boost::json::value(v); }, value);
        }
        CHECK(exemptd::facts_to_json(odd) == boost::json::serialize(expected));
        CHECK(exemptd::facts_from_json(exemptd::facts_to_json(odd)) == odd);
        CHECK(exemptd::facts_to_json({}) == "{}");
    }
    SECTION("escapes are found at every position of a string, whatever its length") {
        // Plain text is scanned eight bytes at a time; bytes to escape may sit anywhere.
        for (char const special : {'"', '\\', '\n', '\x01', '\x1f', '\x7f', '\xc3', ' '}) {
            for (std::size_t length = 1; length <= 24; ++length) {
                for (std::size_t at = 0; at < length; ++at) {
                    std::string text(length, 'a');
                    text[at] = special;
                    if (length > 12) text[(at * 7 + 3) % length] = '\t';  // and a second one
                    exemptd::Facts const one{{text, FactValue{text}}};
                    boost::json::object expected;
                    expected[text] = text;
                    INFO("length " << length << ", byte " << int(special) << " at " << at);
                    REQUIRE(exemptd::facts_to_json(one) == boost::json::serialize(expected));
                }
            }
        }
    }
    SECTION("unreadable storage gives no facts rather than an error") {
        CHECK(exemptd::facts_from_json("not json").empty());
        CHECK(exemptd::facts_from_json("[1, 2]").empty());
    }
}
