#include "api_answer.hpp"

#include <boost/json/parse.hpp>

#include <string>

namespace exemptd::client {
ApiError parse_api_error(int status, std::string_view body)
{
    ApiError out{status, "http_" + std::to_string(status),
                 "the server answered with HTTP status " + std::to_string(status)};
    boost::system::error_code ec;
    auto const parsed = boost::json::parse(body, ec);
    if (ec || !parsed.is_object()) return out;
    auto const* error = parsed.get_object().if_contains("error");
    if (error == nullptr || !error->is_object()) return out;
    auto code = string_field(error->get_object(), "code");
    auto message = string_field(error->get_object(), "message");
    if (!code.empty()) out.code = std::move(code);
    if (!message.empty()) out.message = std::move(message);
    return out;
}

int exemptctl_exit_code(int status) noexcept
{
    if (status >= 200 && status < 300) return 0;
    if (status >= 400 && status < 500 && status != 400) return 1;
    return 2;
}

ClientResult<boost::json::value> parse_answer_json(std::string_view body)
{
    boost::system::error_code ec;
    auto value = boost::json::parse(body, ec);
    if (ec) return ClientError{ec, "the server sent invalid JSON: " + ec.message()};
    return value;
}

std::string string_field(boost::json::object const& obj, std::string_view key)
{
    auto const* value = obj.if_contains(key);
    if (value == nullptr || !value->is_string()) return {};
    return std::string(value->get_string());
}

}  // namespace exemptd::client
