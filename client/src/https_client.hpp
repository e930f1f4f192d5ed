#pragma once
// A small HTTPS/1.1 client with mutual TLS, shared by exemptctl and exempt-agent. This header keeps
// Boost.Asio and Beast out of the tools' translation units; only https_client.cpp includes them.

#include "client_error.hpp"

#include <memory>
#include <string>
#include <string_view>

namespace exemptd::client {

// Where and how to connect: the server URL and the PEM files for mutual TLS.
struct ConnectionSettings {
    std::string server;  // "https://host:port"
    std::string cert;    // the client certificate (chain), PEM
    std::string key;     // the client private key, PEM
    std::string ca;      // the CA the server certificate must chain to, PEM
};

// The host and port named by a server URL. `host` has no brackets, even for IPv6.
struct ServerAddress {
    std::string host;
    std::string port;
};

// Parses "https://host[:port][/]" ("[::1]:8443" for IPv6; the port defaults to 443). Refuses any
// other scheme, a path, user info, or an empty or non-numeric port. Pure and thread-safe.
[[nodiscard]] ClientResult<ServerAddress> parse_server_url(std::string_view url);

// An HTTP answer of any status.
struct HttpResponse {
    int status = 0;
    std::string body;
};

// One keep-alive connection to the server, opened on the first request and reopened when the server
// has closed it. Not thread-safe: use one client per thread.
class HttpsClient {
public:
    // Checks the URL and loads the certificate, key and CA into a TLS 1.2+ client context that
    // verifies the server's chain and its host name or IP address. Fails with a message naming the
    // file that could not be loaded. `user_agent` is sent as the User-Agent header.
    [[nodiscard]] static ClientResult<std::unique_ptr<HttpsClient>> create(ConnectionSettings const& settings,
                                                                          std::string user_agent);

    // Closes the connection, sending a TLS close_notify (bounded by a short timeout).
    ~HttpsClient();
    HttpsClient(HttpsClient const&) = delete;
    HttpsClient& operator=(HttpsClient const&) = delete;
    HttpsClient(HttpsClient&&) = delete;
    HttpsClient& operator=(HttpsClient&&) = delete;

    // Sends one request (`body`, when not empty, as `content_type`) and waits for the answer.
    // Connect, handshake and each exchange time out after about 10 s. A request on a reused
    // connection that the server had already closed is sent again once on a new connection. Fails
    // with "cannot connect to URL: reason" when no answer arrives; any HTTP status is a success.
    [[nodiscard]] ClientResult<HttpResponse> request(std::string_view method, std::string_view target,
                                                     std::string_view body = {},
                                                     std::string_view content_type = "application/json");

private:
    struct Impl;
    explicit HttpsClient(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace exemptd::client
