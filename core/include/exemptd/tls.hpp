#pragma once
// TLS contexts for mutual TLS, built with OpenSSL directly so that no Asio header is needed here.

#include "exemptd/error.hpp"

#include <memory>
#include <string>

using SSL_CTX = struct ssl_ctx_st;

namespace exemptd {

struct SslCtxFree {
    void operator()(SSL_CTX* ctx) const noexcept;
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

struct ServerTlsFiles {
    std::string cert;       // PEM chain
    std::string key;        // PEM private key
    std::string client_ca;  // PEM bundle of CAs that client certificates must chain to
    std::string client_crl; // optional PEM CRL of the client CA
};

// A server context: TLS 1.2 minimum, client certificate required and verified against the client
// CA for the clientAuth purpose (and against the CRL when given), a server-side session cache,
// renegotiation off. On failure the message names the file and OpenSSL's reason. Thread-safe.
[[nodiscard]] boost::system::result<SslCtxPtr, std::string> make_server_tls(ServerTlsFiles const& files);

struct ClientTlsFiles {
    std::string cert;
    std::string key;
    std::string server_ca;
};

// A client context: TLS 1.2 minimum, sends the client certificate and verifies the server against
// `server_ca` (the caller sets the expected host name on each connection). Thread-safe.
[[nodiscard]] boost::system::result<SslCtxPtr, std::string> make_client_tls(ClientTlsFiles const& files);

// OpenSSL's most recent error as text, clearing the error queue.
[[nodiscard]] std::string openssl_error();

}  // namespace exemptd
