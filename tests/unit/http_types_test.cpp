#include "http_types.hpp"

#include <catch2/catch.hpp>

using exemptd::daemon::encode_response;
using exemptd::daemon::HttpResponse;

TEST_CASE("A response is written as HTTP/1.1 with its headers and body", "[http]")
{
    HttpResponse const ok{200, R"({"decision":"allow"})"};
    CHECK(encode_response(ok, 11, true) ==
          "HTTP/1.1 200 OK\r\nServer: exemptd\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
          "Content-Length: 20\r\n\r\n{\"decision\":\"allow\"}");

    SECTION("a connection that closes says so in HTTP/1.1") {
        CHECK(encode_response({404, "{}"}, 11, false) ==
              "HTTP/1.1 404 Not Found\r\nServer: exemptd\r\nContent-Type: application/json\r\n"
              "Cache-Control: no-store\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}");
    }
    SECTION("HTTP/1.0 names keep-alive and leaves close implicit") {
        CHECK(encode_response(ok, 10, true).starts_with("HTTP/1.0 200 OK\r\n"));
        CHECK(encode_response(ok, 10, true).find("Connection: keep-alive\r\n") != std::string::npos);
        CHECK(encode_response(ok, 10, false).find("Connection:") == std::string::npos);
    }
    SECTION("Retry-After, other content types, an empty body") {
        HttpResponse const busy{503, "", "text/plain", 5};
        CHECK(encode_response(busy, 11, true) ==
              "HTTP/1.1 503 Service Unavailable\r\nServer: exemptd\r\nContent-Type: text/plain\r\n"
              "Cache-Control: no-store\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n");
        CHECK(encode_response({431, "{}"}, 11, false).starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        CHECK(encode_response({429, "{}"}, 11, true).starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
    }
}
