// The only translation unit of the client that includes Boost.Asio and Beast (they are slow to compile).
#include "https_client.hpp"

#include "exemptd/tls.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <optional>
#include <utility>

namespace exemptd::client {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using boost::system::error_code;
using namespace std::chrono_literals;

using Token = net::as_tuple_t<net::use_awaitable_t<>>;
using TcpStream = Token::as_default_on_t<beast::tcp_stream>;
using TlsStream = beast::ssl_stream<TcpStream>;
using Resolver = Token::as_default_on_t<net::ip::tcp::resolver>;
using Request = http::request<http::string_body>;

constexpr auto kConnectTimeout = 10s;
constexpr auto kHandshakeTimeout = 10s;
constexpr auto kExchangeTimeout = 10s;
constexpr auto kShutdownTimeout = 2s;
constexpr std::uint64_t kMaxBodyBytes = 64ULL * 1024 * 1024;
constexpr std::string_view kScheme = "https://";

ClientError bad_url(std::string_view url, std::string_view why)
{
    return client_error("invalid server URL \"" + std::string(url) + "\": " + std::string(why));
}

// Splits "host", "host:port", "[v6]" or "[v6]:port"; `port` stays empty when none is given.
ClientResult<ServerAddress> split_host_port(std::string_view url, std::string_view authority)
{
    ServerAddress out;
    std::string_view port;
    if (authority.starts_with('[')) {
        auto const close = authority.find(']');
        if (close == std::string_view::npos) return bad_url(url, "an IPv6 address needs a closing ]");
        out.host = authority.substr(1, close - 1);
        auto const after = authority.substr(close + 1);
        if (!after.empty() && !after.starts_with(':')) return bad_url(url, "expected :port after ]");
        port = after.empty() ? after : after.substr(1);
        if (after == ":") return bad_url(url, "the port is empty");
    } else if (auto const colon = authority.rfind(':'); colon != std::string_view::npos) {
        if (authority.find(':') != colon) return bad_url(url, "write an IPv6 address as [address]:port");
        out.host = authority.substr(0, colon);
        port = authority.substr(colon + 1);
        if (port.empty()) return bad_url(url, "the port is empty");
    } else {
        out.host = authority;
    }
    out.port = port;
    return out;
}

bool is_valid_port(std::string_view port)
{
    if (port.empty() || port.size() > 5) return false;
    unsigned value = 0;
    for (char const c : port) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    return value >= 1 && value <= 65535;
}

std::string host_header(ServerAddress const& address)
{
    bool const v6 = address.host.find(':') != std::string::npos;
    return (v6 ? "[" + address.host + "]" : address.host) + ":" + address.port;
}

// Fails with the operating system's reason when `path` cannot be read: clearer than OpenSSL's.
ClientResult<void> check_readable(std::string_view what, std::string const& path)
{
    if (path.empty()) return client_error("no " + std::string(what) + " file given");
    if (::access(path.c_str(), R_OK) == 0) return {};
    int const err = errno;
    return ClientError{error_code(err, boost::system::system_category()),
                       "cannot read " + std::string(what) + " " + path + ": " + std::strerror(err)};
}

// The core's mutual-TLS client context, wrapped for Asio (which then owns it).
ClientResult<std::unique_ptr<ssl::context>> make_tls(ConnectionSettings const& settings)
{
    if (auto readable = check_readable("CA certificate", settings.ca); !readable) return readable.error();
    if (auto readable = check_readable("client certificate", settings.cert); !readable) return readable.error();
    if (auto readable = check_readable("client key", settings.key); !readable) return readable.error();
    auto ctx = make_client_tls(ClientTlsFiles{settings.cert, settings.key, settings.ca});
    if (!ctx) return client_error(ctx.error());
    return std::make_unique<ssl::context>(ctx->release());
}

// Makes the handshake verify that the server certificate names `host` (a DNS name or an IP address).
bool expect_server_name(SSL* ssl, std::string const& host)
{
    error_code not_ip;
    [[maybe_unused]] auto const ip = net::ip::make_address(host, not_ip);
    if (!not_ip) return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) == 1;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set_tlsext_host_name(ssl, host.c_str()) == 1 && SSL_set1_host(ssl, host.c_str()) == 1;
}

// True when a reused connection failed because the server had closed it while it was idle.
bool is_stale_connection(error_code const& ec)
{
    return ec == http::error::end_of_stream || ec == net::error::eof || ec == ssl::error::stream_truncated ||
           ec == net::error::connection_reset || ec == net::error::broken_pipe ||
           ec == net::error::connection_aborted;
}

// True for the TLS alerts a server sends when it refuses the client certificate.
bool is_certificate_alert(error_code const& ec)
{
    if (ec.category() != net::error::get_ssl_category()) return false;
    switch (ERR_GET_REASON(static_cast<unsigned long>(ec.value()))) {
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED: return true;
    default: return false;
    }
}

// Runs one coroutine on `ioc` to completion and rethrows what it threw.
template <class Function>
void run_to_completion(net::io_context& ioc, Function&& function)
{
    ioc.restart();
    std::exception_ptr thrown;
    net::co_spawn(ioc, std::forward<Function>(function), [&thrown](std::exception_ptr e) { thrown = e; });
    ioc.run();
    if (thrown) std::rethrow_exception(thrown);
}

}  // namespace

ClientResult<ServerAddress> parse_server_url(std::string_view url)
{
    if (!url.starts_with(kScheme)) return bad_url(url, "it must start with https://");
    auto authority = url.substr(kScheme.size());
    if (authority.ends_with('/')) authority.remove_suffix(1);
    if (authority.find_first_of("/?#@ ") != std::string_view::npos)
        return bad_url(url, "give only https://host:port");
    auto address = split_host_port(url, authority);
    if (!address) return address.error();
    if (address->host.empty()) return bad_url(url, "the host is empty");
    if (address->port.empty()) address->port = "443";
    if (!is_valid_port(address->port)) return bad_url(url, "the port must be a number from 1 to 65535");
    return address;
}

struct HttpsClient::Impl {
    Impl(ConnectionSettings s, ServerAddress a, std::string ua, std::unique_ptr<ssl::context> context)
        : settings(std::move(s)), address(std::move(a)), user_agent(std::move(ua)), tls(std::move(context))
    {
    }

    ConnectionSettings settings;
    ServerAddress address;
    std::string user_agent;
    net::io_context ioc{1};
    std::unique_ptr<ssl::context> tls;  // outlives `stream`, which refers to it
    std::optional<TlsStream> stream;
    beast::flat_buffer buffer;

    // "cannot connect to URL: <stage>: <reason>", with the certificate check's verdict when the
    // handshake failed on it. Call before resetting the stream.
    ClientError failure(std::string_view stage, error_code const& ec)
    {
        std::string reason = ec.message();
        if (ec == beast::error::timeout) reason = "timed out";
        if (ec == http::error::end_of_stream || ec == net::error::eof || ec == ssl::error::stream_truncated)
            reason = "the server closed the connection";
        if (ec.category() == net::error::get_ssl_category() && stream) {
            long const verdict = SSL_get_verify_result(stream->native_handle());
            if (verdict != X509_V_OK)
                reason = std::string("server certificate rejected: ") + X509_verify_cert_error_string(verdict);
        }
        std::string where = stage.empty() ? std::string() : std::string(stage) + ": ";
        if (is_certificate_alert(ec)) {
            // With TLS 1.3 this arrives after the handshake, on the first read; the stage misleads.
            where.clear();
            char const* alert = ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
            reason = "the server refused the client certificate " + settings.cert + " (" +
                     (alert != nullptr ? std::string(alert) : ec.message()) + ")";
        }
        return ClientError{ec, "cannot connect to " + settings.server + ": " + where + reason};
    }

    Request make_request(http::verb verb, std::string_view target, std::string_view body,
                         std::string_view content_type) const
    {
        Request req{verb, target, 11};
        req.set(http::field::host, host_header(address));
        req.set(http::field::user_agent, user_agent);
        req.set(http::field::accept, "application/json");
        if (!body.empty()) {
            req.set(http::field::content_type, content_type);
            req.body() = body;
        }
        req.keep_alive(true);
        req.prepare_payload();
        return req;
    }

    // Resolves, connects and completes the handshake, verifying the server's chain and name.
    net::awaitable<ClientResult<void>> connect()
    {
        auto executor = co_await net::this_coro::executor;
        Resolver resolver{executor};
        auto [rec, endpoints] = co_await resolver.async_resolve(address.host, address.port);
        if (rec) co_return failure("cannot resolve " + address.host, rec);
        stream.emplace(executor, *tls);
        buffer.clear();
        auto& tcp = beast::get_lowest_layer(*stream);
        tcp.expires_after(kConnectTimeout);
        auto [cec, endpoint] = co_await tcp.async_connect(endpoints);
        if (cec) co_return drop(failure("", cec));
        if (!expect_server_name(stream->native_handle(), address.host))
            co_return drop(client_error("cannot set the expected server name " + address.host));
        tcp.expires_after(kHandshakeTimeout);
        auto [hec] = co_await stream->async_handshake(ssl::stream_base::client);
        if (hec) co_return drop(failure("TLS handshake failed", hec));
        tcp.expires_never();
        co_return ClientResult<void>{};
    }

    // One request and its answer on the open connection; the error code is the raw I/O error.
    net::awaitable<ClientResult<HttpResponse>> exchange(Request const& req)
    {
        auto& tcp = beast::get_lowest_layer(*stream);
        tcp.expires_after(kExchangeTimeout);
        auto [wec, written] = co_await http::async_write(*stream, req);
        if (wec) co_return failure("sending the request", wec);
        http::response_parser<http::string_body> parser;
        parser.body_limit(kMaxBodyBytes);
        auto [rec, read] = co_await http::async_read(*stream, buffer, parser);
        if (rec) co_return failure("reading the answer", rec);
        auto response = parser.release();
        tcp.expires_never();
        if (!response.keep_alive()) stream.reset();  // the server said Connection: close
        co_return HttpResponse{static_cast<int>(response.result_int()), std::move(response.body())};
    }

    // One request on the open connection or a new one; see HttpsClient::request.
    net::awaitable<ClientResult<HttpResponse>> send(Request const& req)
    {
        bool const reused = stream.has_value();
        if (!reused) {
            if (auto opened = co_await connect(); !opened) co_return opened.error();
        }
        auto answer = co_await exchange(req);
        if (!answer && reused && is_stale_connection(answer.error().code)) {
            // The server closed the idle keep-alive connection before reading this request.
            stream.reset();
            if (auto opened = co_await connect(); !opened) co_return opened.error();
            answer = co_await exchange(req);
        }
        if (!answer) stream.reset();
        co_return answer;
    }

    // Forgets the connection after a failure and passes the error on.
    ClientError drop(ClientError error)
    {
        stream.reset();
        return error;
    }

    // Sends close_notify and waits briefly for the server's; errors are irrelevant at this point.
    void close() noexcept
    {
        if (!stream) return;
        try {
            run_to_completion(ioc, [this]() -> net::awaitable<void> {
                beast::get_lowest_layer(*stream).expires_after(kShutdownTimeout);
                [[maybe_unused]] auto [ec] = co_await stream->async_shutdown();
            });
        } catch (...) {  // NOLINT(bugprone-empty-catch): closing must not throw
        }
        stream.reset();
    }
};

HttpsClient::HttpsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpsClient::~HttpsClient()
{
    if (impl_) impl_->close();
}

ClientResult<std::unique_ptr<HttpsClient>> HttpsClient::create(ConnectionSettings const& settings,
                                                               std::string user_agent)
{
    auto address = parse_server_url(settings.server);
    if (!address) return address.error();
    auto tls = make_tls(settings);
    if (!tls) return tls.error();
    auto impl = std::make_unique<Impl>(settings, std::move(*address), std::move(user_agent), std::move(*tls));
    return std::unique_ptr<HttpsClient>(new HttpsClient(std::move(impl)));
}

ClientResult<HttpResponse> HttpsClient::request(std::string_view method, std::string_view target,
                                                std::string_view body, std::string_view content_type)
{
    auto const verb = http::string_to_verb(method);
    if (verb == http::verb::unknown) return client_error("unknown HTTP method " + std::string(method));
    auto const req = impl_->make_request(verb, target, body, content_type);
    ClientResult<HttpResponse> answer = client_error("no answer");
    try {
        run_to_completion(impl_->ioc, [this, &req, &answer]() -> net::awaitable<void> {
            answer = co_await impl_->send(req);
        });
    } catch (std::exception const& e) {
        impl_->stream.reset();
        return client_error("cannot connect to " + impl_->settings.server + ": " + e.what());
    }
    return answer;
}

}  // namespace exemptd::client
