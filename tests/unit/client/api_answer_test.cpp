#include "api_answer.hpp"

#include "fixtures.hpp"

#include <catch2/catch.hpp>

using namespace exemptd::client;

TEST_CASE("An error answer yields its code and message", "[answer]")
{
    auto const e = parse_api_error(404, R"({"error":{"code":"not_found","message":"no device LAPTOP-9"}})");
    CHECK(e.status == 404);
    CHECK(e.code == "not_found");
    CHECK(e.message == "no device LAPTOP-9");

    SECTION("a body that is not an error object still gives a readable error") {
        auto const html = parse_api_error(502, "<html>Bad Gateway</html>");
        CHECK(html.code == "http_502");
        CHECK(html.message == "the server answered with HTTP status 502");
        CHECK(parse_api_error(500, R"({"error":"boom"})").code == "http_500");
    }
}

TEST_CASE("exemptctl exit codes: 0 success, 1 refused, 2 bad request or server error", "[answer]")
{
    CHECK(exemptctl_exit_code(200) == 0);
    CHECK(exemptctl_exit_code(201) == 0);
    for (int status : {403, 404, 409, 413, 422}) CHECK(exemptctl_exit_code(status) == 1);
    CHECK(exemptctl_exit_code(400) == 2);
    CHECK(exemptctl_exit_code(500) == 2);
    CHECK(exemptctl_exit_code(503) == 2);
    CHECK(exemptctl_exit_code(302) == 2);
}

TEST_CASE("Answer bodies must be JSON", "[answer]")
{
    CHECK(parse_answer_json(R"({"a":1})"));
    auto const bad = parse_answer_json("{");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message.starts_with("the server sent invalid JSON: "));
}
