#include "http_types.hpp"

#include <ostream>  // before Beast's header, which uses std::ostream without including it

#include <boost/beast/http/status.hpp>

namespace exemptd::daemon {

std::string encode_response(HttpResponse const& r, unsigned version, bool keep_alive)
{
    namespace http = boost::beast::http;
    std::string out;
    out.reserve(160 + r.body.size());
    out += version >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ";
    out += std::to_string(r.status);
    out += ' ';
    out += http::obsolete_reason(static_cast<http::status>(r.status));
    out += "\r\nServer: exemptd\r\nContent-Type: ";
    out += r.content_type;
    out += "\r\nCache-Control: no-store\r\n";
    // What each version assumes without the header: 1.1 keeps the connection, 1.0 closes it.
    if (version >= 11 && !keep_alive) out += "Connection: close\r\n";
    if (version < 11 && keep_alive) out += "Connection: keep-alive\r\n";
    if (r.retry_after_seconds > 0) {
        out += "Retry-After: ";
        out += std::to_string(r.retry_after_seconds);
        out += "\r\n";
    }
    out += "Content-Length: ";
    out += std::to_string(r.body.size());
    out += "\r\n\r\n";
    out += r.body;
    return out;
}

}  // namespace exemptd::daemon
