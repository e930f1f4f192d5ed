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

}  // namespace exemptd::daemon
