#include "exemptd/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <memory>

namespace exemptd {
namespace {

constexpr char kTls12Ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                                 "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:"
                                 "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305";
constexpr unsigned char kSessionContext[] = "exemptd";

using Failure = boost::system::result<SslCtxPtr, std::string>;

std::string failed(std::string const& what, std::string const& file)
{
    return what + " " + file + ": " + openssl_error();
}

SslCtxPtr base_context(SSL_METHOD const* method)
{
    SslCtxPtr ctx{SSL_CTX_new(method)};
    if (!ctx) return ctx;
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_cipher_list(ctx.get(), kTls12Ciphers);
    return ctx;
}

bool load_crl(SSL_CTX* ctx, std::string const& crl_file)
{
    std::unique_ptr<FILE, decltype(&std::fclose)> file{std::fopen(crl_file.c_str(), "r"), &std::fclose};
    if (!file) return false;
    X509_CRL* crl = PEM_read_X509_CRL(file.get(), nullptr, nullptr, nullptr);
    if (crl == nullptr) return false;
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    bool const added = X509_STORE_add_crl(store, crl) == 1;
    X509_CRL_free(crl);
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    return added;
}

bool use_identity(SSL_CTX* ctx, std::string const& cert, std::string const& key)
{
    return SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) == 1 &&
           SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) == 1 && SSL_CTX_check_private_key(ctx) == 1;
}

}  // namespace

void SslCtxFree::operator()(SSL_CTX* ctx) const noexcept
{
    SSL_CTX_free(ctx);
}

std::string openssl_error()
{
    unsigned long const code = ERR_get_error();
    ERR_clear_error();
    if (code == 0) return "unknown error";
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    return buffer;
}

Failure make_server_tls(ServerTlsFiles const& files)
{
    auto ctx = base_context(TLS_server_method());
    if (!ctx) return "cannot create a TLS context: " + openssl_error();
    if (!use_identity(ctx.get(), files.cert, files.key)) return failed("cannot load server certificate/key", files.cert);
    if (SSL_CTX_load_verify_locations(ctx.get(), files.client_ca.c_str(), nullptr) != 1)
        return failed("cannot load client CA", files.client_ca);
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.client_ca.c_str());
    if (names == nullptr) return failed("cannot read client CA names", files.client_ca);
    SSL_CTX_set_client_CA_list(ctx.get(), names);
    if (!files.client_crl.empty() && !load_crl(ctx.get(), files.client_crl))
        return failed("cannot load client CRL", files.client_crl);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    X509_VERIFY_PARAM_set_purpose(SSL_CTX_get0_param(ctx.get()), X509_PURPOSE_SSL_CLIENT);
    SSL_CTX_set_session_id_context(ctx.get(), kSessionContext, sizeof kSessionContext - 1);
    // Resumption from a cache the server holds: with SSL_OP_NO_TICKET a TLS 1.3 ticket is only
    // the id of a cached session (stateful), not the session (and client certificate) encrypted
    // under a key, and a reload (SIGHUP) starts an empty cache, so every client then presents
    // its certificate again against the new CA and CRL.
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx.get(), 20000);
    return ctx;
}

Failure make_client_tls(ClientTlsFiles const& files)
{
    auto ctx = base_context(TLS_client_method());
    if (!ctx) return "cannot create a TLS context: " + openssl_error();
    if (!use_identity(ctx.get(), files.cert, files.key)) return failed("cannot load client certificate/key", files.cert);
    if (SSL_CTX_load_verify_locations(ctx.get(), files.server_ca.c_str(), nullptr) != 1)
        return failed("cannot load server CA", files.server_ca);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    return ctx;
}

}  // namespace exemptd
