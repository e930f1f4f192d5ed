#include "tls_engine.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <catch2/catch.hpp>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

namespace {

namespace net = boost::asio;
using exemptd::daemon::TlsEngine;

struct CtxFree {
    void operator()(SSL_CTX* ctx) const noexcept { SSL_CTX_free(ctx); }
};
using Ctx = std::unique_ptr<SSL_CTX, CtxFree>;

// A server context with a fresh self-signed P-256 certificate; the client verifies nothing
// (the engine's job is moving records, not trust: integration.tls covers that).
Ctx server_context()
{
    Ctx ctx{SSL_CTX_new(TLS_server_method())};
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<unsigned char const*>("engine-test"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
    REQUIRE(SSL_CTX_use_certificate(ctx.get(), cert) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey(ctx.get(), key) == 1);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ctx;
}

// Moves what `from` produced onto the wire, and from the wire as much as `to` may take.
void transfer(TlsEngine& from, std::string& wire, TlsEngine& to)
{
    auto const out = from.output();
    wire.append(static_cast<char const*>(out.data()), out.size());
    from.release_output();
    if (wire.empty() || to.has_input()) return;
    auto const space = to.input_space();
    std::size_t const n = std::min(space.size(), wire.size());
    std::memcpy(space.data(), wire.data(), n);
    wire.erase(0, n);
    to.commit_input(n);
}

// Runs `server_step` and `client_step` until both finish; false if they do not within 100 rounds.
template <class ServerStep, class ClientStep>
bool run_both(TlsEngine& server, TlsEngine& client, ServerStep server_step, ClientStep client_step)
{
    std::string to_server;
    std::string to_client;
    for (int round = 0; round < 100; ++round) {
        auto const s = server_step(server);
        auto const c = client_step(client);
        transfer(server, to_client, client);
        transfer(client, to_server, server);
        if (s.ec || c.ec) return false;
        if (s.want == TlsEngine::Want::nothing && c.want == TlsEngine::Want::nothing) return true;
    }
    return false;
}

// Runs a handshake between `server` and `client` to its end; false if it fails.
bool handshake(TlsEngine& server, TlsEngine& client)
{
    server.start_handshake(true);
    client.start_handshake(false);
    auto const step = [](TlsEngine& e) { return e.handshake(); };
    return run_both(server, client, step, step);
}

}  // namespace

TEST_CASE("A TLS engine pair handshakes and carries data, holding no buffer between operations", "[tls]")
{
    auto const server_ctx = server_context();
    Ctx const client_ctx{SSL_CTX_new(TLS_client_method())};
    SECTION("TLS 1.2") { SSL_CTX_set_max_proto_version(client_ctx.get(), TLS1_2_VERSION); }
    SECTION("TLS 1.3") { SSL_CTX_set_min_proto_version(client_ctx.get(), TLS1_3_VERSION); }
    TlsEngine server{server_ctx.get()};
    TlsEngine client{client_ctx.get()};
    REQUIRE(handshake(server, client));

    std::string const request = "GET /v1/ping HTTP/1.1\r\n\r\n";
    auto const sent = client.write(net::buffer(request));
    REQUIRE_FALSE(sent.ec);
    CHECK(sent.bytes == request.size());
    char received[64] = {};
    auto read = [&received](TlsEngine& e) { return e.read(net::buffer(received)); };
    std::string wire;
    transfer(client, wire, server);
    TlsEngine::Step got;
    for (int round = 0; round < 10 && (got = read(server)).want == TlsEngine::Want::input; ++round)
        transfer(client, wire, server);
    REQUIRE_FALSE(got.ec);
    CHECK(std::string(received, got.bytes) == request);

    server.trim_input();
    CHECK_FALSE(server.has_input());
    CHECK(server.output().size() == 0);

    SECTION("an end of stream without close_notify is a truncation")
    {
        CHECK(server.map_eof(net::error::eof) == net::ssl::error::stream_truncated);
    }
    SECTION("close_notify reads as an end of stream")
    {
        (void)client.shutdown();
        transfer(client, wire, server);
        auto const end = server.read(net::buffer(received));
        CHECK(end.ec == net::error::eof);
        CHECK(server.map_eof(net::error::eof) == net::error::eof);
    }
}

TEST_CASE("A small record is read whole in one socket read while waiting for the next record", "[tls]")
{
    auto const server_ctx = server_context();
    Ctx const client_ctx{SSL_CTX_new(TLS_client_method())};
    TlsEngine server{server_ctx.get()};
    TlsEngine client{client_ctx.get()};
    REQUIRE(handshake(server, client));
    auto const size = GENERATE(600, 5000);
    std::string const request(static_cast<std::size_t>(size), 'r');
    REQUIRE_FALSE(client.write(net::buffer(request)).ec);
    auto const out = client.output();
    std::string wire(static_cast<char const*>(out.data()), out.size());
    client.release_output();

    server.expect_record_header();
    auto const space = server.input_space();
    std::size_t const n = std::min(space.size(), wire.size());
    std::memcpy(space.data(), wire.data(), n);
    wire.erase(0, n);
    server.commit_input(n);
    std::string received(request.size(), '\0');
    auto got = server.read(net::buffer(received));
    if (size == 600) {
        CHECK(wire.empty());
        CHECK(got.want == TlsEngine::Want::nothing);
    } else {
        CHECK(got.want == TlsEngine::Want::input);  // the rest of the record takes a read of its own
        auto const rest = server.input_space();
        REQUIRE(rest.size() >= wire.size());
        std::memcpy(rest.data(), wire.data(), wire.size());
        server.commit_input(wire.size());
        got = server.read(net::buffer(received));
    }
    REQUIRE_FALSE(got.ec);
    CHECK(received.substr(0, got.bytes) == request);
}
