#include "exemptd/json_reader.hpp"

#include <boost/json/parse.hpp>

#include <algorithm>

namespace exemptd {

ApiResult<boost::json::object> parse_json_object(std::string_view body, boost::json::storage_ptr storage)
{
    boost::system::error_code ec;
    boost::json::value value = boost::json::parse(body, ec, std::move(storage), request_parse_options());
    if (ec || !value.is_object()) return malformed_json(ec);
    return std::move(value.as_object());
}

boost::json::parse_options request_parse_options()
{
    boost::json::parse_options options;
    options.max_depth = 32;
    return options;
}

ApiError malformed_json(boost::system::error_code const& ec)
{
    if (ec) return api_error(400, "malformed_json", "The request body is not valid JSON: " + ec.message() + ".");
    return api_error(400, "malformed_json", "The request body must be a JSON object.");
}

Checked<std::string_view> check_string(FieldText field, Need need, std::size_t max_len)
{
    using Kind = FieldText::Kind;
    if (field.kind == Kind::absent) return {{}, need == Need::required ? "is required" : ""};
    if (field.kind != Kind::string) return {{}, "must be a string"};
    if (field.text.size() > max_len) return {{}, "is longer than " + std::to_string(max_len) + " characters"};
    if (need == Need::required && field.text.empty()) return {{}, "must not be empty"};
    return {field.text, {}};
}

Checked<std::optional<TimePoint>> check_time(FieldText field, Need need)
{
    using Kind = FieldText::Kind;
    if (field.kind == Kind::absent) return {std::nullopt, need == Need::required ? "is required" : ""};
    auto const parsed = field.kind == Kind::string ? parse_rfc3339(field.text) : std::nullopt;
    if (!parsed) return {std::nullopt, "must be an RFC 3339 time such as 2026-11-27T21:00:00Z"};
    return {parsed, {}};
}

ApiError invalid_field(std::string_view name, std::string_view problem)
{
    return api_error(400, "invalid_field", "Field '" + std::string(name) + "' " + std::string(problem) + ".");
}

namespace {

FieldText field_text(boost::json::value const* value)
{
    if (value == nullptr || value->is_null()) return {};
    if (value->is_string()) return {FieldText::Kind::string, value->as_string()};
    return {FieldText::Kind::other, {}};
}

}  // namespace

std::string string_or_empty(boost::json::object const& object, std::string_view key)
{
    auto const* v = object.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string{};
}

ObjectReader::ObjectReader(boost::json::object const& object, std::string prefix)
    : object_(object), prefix_(std::move(prefix))
{
}

void ObjectReader::fail(std::string_view key, std::string_view what)
{
    if (!error_) error_ = invalid_field(prefix_ + std::string(key), what);
}

void ObjectReader::only(std::initializer_list<std::string_view> known)
{
    for (auto const& entry : object_) {
        if (std::find(known.begin(), known.end(), std::string_view(entry.key())) == known.end())
            fail(entry.key(), "is not a known field");
    }
}

boost::json::value const* ObjectReader::find(std::string_view key, Need need)
{
    auto const* value = object_.if_contains(key);
    if ((value == nullptr || value->is_null()) && need == Need::required) {
        fail(key, "is required");
        return nullptr;
    }
    return value != nullptr && !value->is_null() ? value : nullptr;
}

std::string ObjectReader::string(std::string_view key, Need need, std::size_t max_len)
{
    auto const checked = check_string(field_text(object_.if_contains(key)), need, max_len);
    if (!checked.problem.empty()) fail(key, checked.problem);
    return std::string(checked.value);
}

std::optional<bool> ObjectReader::boolean(std::string_view key, Need need)
{
    auto const* value = find(key, need);
    if (value == nullptr) return std::nullopt;
    if (!value->is_bool()) return fail(key, "must be true or false"), std::nullopt;
    return value->as_bool();
}

std::optional<TimePoint> ObjectReader::time(std::string_view key, Need need)
{
    auto const checked = check_time(field_text(object_.if_contains(key)), need);
    if (!checked.problem.empty()) fail(key, checked.problem);
    return checked.value;
}

std::vector<std::string> ObjectReader::strings(std::string_view key, Need need, std::size_t max_items,
                                               std::size_t max_len)
{
    auto const* value = find(key, need);
    if (value == nullptr) return {};
    if (!value->is_array()) return fail(key, "must be a list of strings"), std::vector<std::string>{};
    auto const& array = value->as_array();
    if (array.size() > max_items)
        return fail(key, "has more than " + std::to_string(max_items) + " entries"), std::vector<std::string>{};
    std::vector<std::string> out;
    for (auto const& item : array) {
        if (!item.is_string() || item.as_string().empty() || item.as_string().size() > max_len)
            return fail(key, "must be a list of non-empty strings"), std::vector<std::string>{};
        out.emplace_back(item.as_string());
    }
    return out;
}

boost::json::object const* ObjectReader::object(std::string_view key, Need need)
{
    auto const* value = find(key, need);
    if (value == nullptr) return nullptr;
    if (!value->is_object()) return fail(key, "must be an object"), nullptr;
    return &value->as_object();
}

}  // namespace exemptd
