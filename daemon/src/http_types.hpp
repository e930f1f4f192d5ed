#pragma once
// Transport-neutral HTTP request and response, so that routing never sees sockets or Beast.

#include <string>

namespace exemptd::daemon {

struct HttpRequest {
    std::string method;  // "GET", "POST", ...
    std::string target;  // path and query, as sent
    std::string body;
};

struct HttpResponse {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
    int retry_after_seconds = 0;  // > 0: sent as a Retry-After header (429, 503)
};

// `r` as sent on the wire for a request of HTTP `version` (10 or 11): status line, the Server,
// Content-Type, Cache-Control: no-store, Connection (when the version's default is not what
// `keep_alive` says), Retry-After and Content-Length headers, and the body. One piece, written
// in one TLS record, rather than through Beast's serializer.
[[nodiscard]] std::string encode_response(HttpResponse const& r, unsigned version, bool keep_alive);

}  // namespace exemptd::daemon
