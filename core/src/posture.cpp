#include "exemptd/posture.hpp"

#include "exemptd/identity.hpp"
#include "exemptd/json_reader.hpp"
#include "json_writer.hpp"

#include <boost/container/small_vector.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <forward_list>
#include <functional>
#include <vector>

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

// The bounds of a fact's value, for the stored facts' reader and the report's scanner alike: a
// real number must be finite and a string at most 256 bytes. (An integer beyond int64 is
// refused too: no real fact is that large.)
std::optional<FactValue> fact_from_double(double d)
{
    return std::isfinite(d) ? std::optional<FactValue>(d) : std::nullopt;
}

std::optional<FactValue> fact_from_string(std::string_view s)
{
    return s.size() <= kMaxFactString ? std::optional<FactValue>(std::in_place, std::in_place_type<std::string>, s)
                                      : std::nullopt;
}

// Converts one JSON fact; nullopt for types a fact may not have (arrays, objects, null).
std::optional<FactValue> fact_from_json(boost::json::value const& v)
{
    if (v.is_bool()) return FactValue{v.as_bool()};
    if (v.is_int64()) return FactValue{v.as_int64()};
    if (v.is_double()) return fact_from_double(v.as_double());
    if (v.is_string()) return fact_from_string(v.as_string());
    return std::nullopt;
}

// Whether `part` is a view into `whole`: text the parser handed over from the body itself.
bool is_inside(std::string_view part, std::string_view whole)
{
    return std::less_equal<char const*>{}(whole.data(), part.data()) &&
           std::less_equal<char const*>{}(part.data() + part.size(), whole.data() + whole.size());
}

// A report's field as the scanner met it. A later duplicate key replaces an earlier one, as it
// does in a parsed boost::json object. The text is a view into the body when the parser handed it
// over from there (a string without escapes, in one piece), and a copy of its own otherwise: the
// report takes one copy of each field, not two.
struct SeenField {
    enum class Kind { absent, string, object, other };  // null counts as absent
    Kind kind = Kind::absent;
    std::string_view text;
    std::string copy;  // the text, when it is not in the body

    SeenField() = default;
    SeenField(SeenField const&) = delete;  // text may point into copy
    SeenField& operator=(SeenField const&) = delete;

    // A value other than a string, or none (absent).
    void set(Kind k)
    {
        kind = k;
        text = {};
    }
    // A string value, `s`, met while parsing `body`.
    void set_string(std::string_view s, std::string_view body)
    {
        kind = Kind::string;
        if (s.empty() || is_inside(s, body)) {
            text = s;
        } else {
            copy.assign(s);
            text = copy;
        }
    }
    [[nodiscard]] FieldText as_text() const
    {
        if (kind == Kind::absent) return {};
        if (kind == Kind::string) return {FieldText::Kind::string, text};
        return {FieldText::Kind::other, {}};
    }
};

// One entry of "facts": its name (a view into the body, or into the scanner's copies of names
// that were not in it), and its value, or nullopt when a fact may not have its type.
struct SeenFact {
    std::string_view name;
    std::optional<FactValue> value;
};

enum class Field { device_id, hostname, serial, os, facts, agent_version, reported_at, nonce, count, unknown = count };

Field field_named(std::string_view name)
{
    // Told apart by their first letter, then compared once: this runs for every root key.
    auto const is = [name](std::string_view known, Field f) { return name == known ? f : Field::unknown; };
    switch (name.empty() ? '\0' : name.front()) {
    case 'd': return is("device_id", Field::device_id);
    case 'h': return is("hostname", Field::hostname);
    case 's': return is("serial", Field::serial);
    case 'o': return is("os", Field::os);
    case 'f': return is("facts", Field::facts);
    case 'a': return is("agent_version", Field::agent_version);
    case 'r': return is("reported_at", Field::reported_at);
    case 'n': return is("nonce", Field::nonce);
    default: return Field::unknown;
    }
}

// A boost::json parser handler that picks a report's fields out of the body as it is parsed,
// without building a DOM (a check-in's largest cost once was that DOM). It only collects; the
// fields are checked afterwards, in order, by the same rules as ObjectReader's, so a body gets
// the same answer it would from the DOM: the first problem in field order, the last of
// duplicate keys, unknown fields ignored.
class ReportScanner {
public:
    static constexpr std::size_t max_object_size = std::size_t(-1);
    static constexpr std::size_t max_array_size = std::size_t(-1);
    static constexpr std::size_t max_key_size = std::size_t(-1);
    static constexpr std::size_t max_string_size = std::size_t(-1);

    // A scanner of `body`, which must outlive it and the report's checks.
    explicit ReportScanner(std::string_view body) : body_(body) {}

    bool on_document_begin(boost::system::error_code&) { return true; }
    bool on_document_end(boost::system::error_code&) { return true; }
    bool on_object_begin(boost::system::error_code&) { return begin_container(true); }
    bool on_array_begin(boost::system::error_code&) { return begin_container(false); }
    bool on_object_end(std::size_t, boost::system::error_code&) { return --depth_, true; }
    bool on_array_end(std::size_t, boost::system::error_code&) { return --depth_, true; }
    bool on_key_part(boost::json::string_view s, std::size_t, boost::system::error_code&) { return part(s); }
    bool on_key(boost::json::string_view s, std::size_t, boost::system::error_code&) { return key(whole(s)); }
    bool on_string_part(boost::json::string_view s, std::size_t, boost::system::error_code&) { return part(s); }
    bool on_string(boost::json::string_view s, std::size_t, boost::system::error_code&);
    bool on_number_part(boost::json::string_view, boost::system::error_code&) { return true; }
    bool on_int64(std::int64_t i, boost::json::string_view, boost::system::error_code&) { return value(FactValue{i}); }
    bool on_uint64(std::uint64_t, boost::json::string_view, boost::system::error_code&) { return value(std::nullopt); }
    bool on_double(double d, boost::json::string_view, boost::system::error_code&);
    bool on_bool(bool b, boost::system::error_code&) { return value(FactValue{b}); }
    bool on_null(boost::system::error_code&);
    bool on_comment_part(boost::json::string_view, boost::system::error_code&) { return true; }
    bool on_comment(boost::json::string_view, boost::system::error_code&) { return true; }

    // The report, or the first problem with its fields. Call once the whole body parsed.
    [[nodiscard]] ApiResult<PostureReport> report();

private:
    enum class Inside { other, os, facts };  // the object a depth-2 value belongs to

    bool begin_container(bool is_object);
    bool key(std::string_view name);
    bool value(std::optional<FactValue> fact);  // a number or a boolean
    bool part(std::string_view s) { return partial_.append(s), true; }
    std::string_view whole(std::string_view last);
    SeenField* field_here();
    SeenFact* fact_here();

    std::string_view body_;
    std::size_t depth_ = 0;
    bool root_is_object_ = false;
    Inside inside_ = Inside::other;
    Field field_ = Field::unknown;    // the root member being read
    SeenField* os_member_ = nullptr;  // the "os" member being read, if known
    std::size_t fact_ = 0;            // the fact being read: an index into facts_, or past its end
    std::string partial_;             // a key or string that arrived in parts
    std::array<SeenField, static_cast<std::size_t>(Field::count)> fields_;
    SeenField os_name_;
    SeenField os_version_;
    boost::container::small_vector<SeenFact, 16> facts_;  // a report's facts, usually without an allocation
    std::forward_list<std::string> fact_names_;          // names not in the body; never moved, nothing allocated until one
    bool too_many_facts_ = false;
};

bool ReportScanner::begin_container(bool is_object)
{
    if (depth_ == 0) root_is_object_ = is_object;
    if (depth_ == 1) {
        inside_ = Inside::other;
        if (is_object && field_ == Field::os) {
            inside_ = Inside::os;
            os_name_.set(SeenField::Kind::absent);
            os_version_.set(SeenField::Kind::absent);
        } else if (is_object && field_ == Field::facts) {
            inside_ = Inside::facts;
            facts_.clear();
            too_many_facts_ = false;
        }
    }
    auto const kind = is_object && inside_ != Inside::other ? SeenField::Kind::object : SeenField::Kind::other;
    if (auto* f = field_here()) f->set(kind);  // an os or facts object, or a value of the wrong type
    if (auto* f = fact_here()) f->value.reset();
    ++depth_;
    return true;
}

std::string_view ReportScanner::whole(std::string_view last)
{
    if (partial_.empty()) return last;
    partial_.append(last);
    return partial_;
}

bool ReportScanner::key(std::string_view name)
{
    if (depth_ == 1) field_ = field_named(name);
    if (depth_ == 2 && inside_ == Inside::os) {
        os_member_ = name == "name" ? &os_name_ : name == "version" ? &os_version_ : nullptr;
    }
    if (depth_ == 2 && inside_ == Inside::facts) {
        auto const same = std::find_if(facts_.begin(), facts_.end(), [&](auto const& f) { return f.name == name; });
        fact_ = static_cast<std::size_t>(same - facts_.begin());  // a duplicate's value replaces the first's
        if (same == facts_.end()) {
            if (facts_.size() < kMaxFacts) facts_.push_back({is_inside(name, body_) ? name : fact_names_.emplace_front(name), std::nullopt});
            else too_many_facts_ = true;  // a 65th name, not kept: fact_here() is null for its value
        }
    }
    partial_.clear();
    return true;
}

SeenField* ReportScanner::field_here()
{
    if (depth_ == 1 && field_ != Field::unknown) return &fields_[static_cast<std::size_t>(field_)];
    if (depth_ == 2 && inside_ == Inside::os) return os_member_;
    return nullptr;
}

SeenFact* ReportScanner::fact_here()
{
    return depth_ == 2 && inside_ == Inside::facts && fact_ < facts_.size() ? &facts_[fact_] : nullptr;
}

bool ReportScanner::on_string(boost::json::string_view s, std::size_t, boost::system::error_code&)
{
    auto const text = whole(s);
    if (auto* f = field_here()) f->set_string(text, body_);
    if (auto* f = fact_here()) f->value = fact_from_string(text);
    partial_.clear();
    return true;
}

bool ReportScanner::on_double(double d, boost::json::string_view, boost::system::error_code&)
{
    return value(fact_from_double(d));
}

bool ReportScanner::on_null(boost::system::error_code&)
{
    if (auto* f = field_here()) f->set(SeenField::Kind::absent);
    if (auto* f = fact_here()) f->value.reset();
    return true;
}

bool ReportScanner::value(std::optional<FactValue> fact)
{
    if (auto* f = field_here()) f->set(SeenField::Kind::other);
    if (auto* f = fact_here()) f->value = std::move(fact);
    return true;
}

ApiResult<PostureReport> ReportScanner::report()
{
    if (!root_is_object_) return malformed_json({});
    std::optional<ApiError> error;
    auto const fail = [&](std::string_view name, std::string_view problem) {
        if (!error) error = invalid_field(name, problem);
    };
    auto const field = [&](Field f) -> SeenField const& { return fields_[static_cast<std::size_t>(f)]; };
    auto const string = [&](SeenField const& seen, std::string_view name, Need need, std::size_t max_len) {
        auto const checked = check_string(seen.as_text(), need, max_len);
        if (!checked.problem.empty()) fail(name, checked.problem);
        return std::string(checked.value);
    };
    auto const object = [&](Field f, std::string_view name) {
        if (field(f).kind == SeenField::Kind::other || field(f).kind == SeenField::Kind::string)
            fail(name, "must be an object");
        return field(f).kind == SeenField::Kind::object;
    };

    PostureReport report;
    report.device_id = string(field(Field::device_id), "device_id", Need::required, 64);
    if (!error && !is_valid_device_id(report.device_id))
        fail("device_id", "must be 1-64 characters of A-Z a-z 0-9 . _ : -");
    report.hostname = string(field(Field::hostname), "hostname", Need::optional, 256);
    report.serial = string(field(Field::serial), "serial", Need::optional, 256);
    if (object(Field::os, "os")) {
        report.os_name = string(os_name_, "os.name", Need::optional, 64);
        report.os_version = string(os_version_, "os.version", Need::optional, 64);
    }
    if (object(Field::facts, "facts")) {
        if (too_many_facts_) fail("facts", "has more than 64 entries");
        for (auto& [name, value] : facts_) {
            if (name.empty() || name.size() > kMaxFactKey) fail("facts", "has an empty or overlong name");
            if (!value) fail("facts." + std::string(name), "must be a boolean, number or short string");
            if (!error) report.facts.emplace(name, std::move(*value));
        }
    }
    report.agent_version = string(field(Field::agent_version), "agent_version", Need::optional, 64);
    auto const reported_at = check_time(field(Field::reported_at).as_text(), Need::required);
    if (!reported_at.problem.empty()) fail("reported_at", reported_at.problem);
    report.reported_at = reported_at.value.value_or(TimePoint{});
    report.nonce = string(field(Field::nonce), "nonce", Need::required, 128);
    if (!error && (report.nonce.size() < 8 || !is_printable_ascii(report.nonce)))
        fail("nonce", "must be 8-128 printable characters");
    if (error) return *error;
    return report;
}

}  // namespace

ApiResult<PostureReport> decode_posture(std::string_view body)
{
    boost::json::basic_parser<ReportScanner> parser(request_parse_options(), body);
    boost::system::error_code ec;
    auto const used = parser.write_some(false, body.data(), body.size(), ec);
    if (!ec && used < body.size()) ec = boost::json::error::extra_data;
    if (ec) return malformed_json(ec);
    return parser.handler().report();
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

void append_fact(json_writer::Text& out, FactValue const& value)
{
    if (auto const* s = std::get_if<std::string>(&value)) return json_writer::append_string(out, *s);
    // boost::json's own text for a double (2.5E1): written shortest, it would read back as an integer.
    if (auto const* d = std::get_if<double>(&value)) out.raw(boost::json::serialize(boost::json::value(*d)));
    else out.raw(fact_to_string(value));
}

}  // namespace

std::string facts_to_json(Facts const& facts)
{
    json_writer::Text out(64 * facts.size() + 2);
    out.raw('{');
    for (auto const& [key, value] : facts) {
        json_writer::append_key(out, key);
        append_fact(out, value);
    }
    out.raw('}');
    return std::move(out).take();
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
