// exemptd-loadgen: a load generator for POST /v1/checkin over mutual TLS (issue 7).
//
//   exemptd-loadgen MODE --connect 127.0.0.1:PORT --ca server-ca.crt
//                   --clients-ca-cert clients-ca.crt --clients-ca-key clients-ca.key [options]
//
// MODE is one of
//   seed       enrolls every device and gives each "exempted" one an approved OS-01 exemption
//              (--admin-cert/--admin-key request, --approver-cert/--approver-key approve);
//              --no-enroll seeds only the exemptions, for devices bulk-imported before
//   keepalive  N connections, each with its own device certificate, closed loop: a check-in,
//              wait for the answer, the next one, for --duration seconds
//   handshake  one check-in per connection, a full TLS handshake each time (N in parallel)
//   resume     one check-in per connection, resuming the TLS session kept per device
//   fleet      --devices devices each checking in every --interval seconds (open loop, paced),
//              connections kept open between check-ins
//
// It makes its endpoint certificates in-process (EC P-256, signed by the clients CA, the SAN and
// EKU that SPEC §3 asks for) and sends valid posture reports (SPEC §4) with a fresh nonce and
// reported_at = now, for a deterministic mix of device kinds (compliant, grace, exempted,
// denied; see kind_plan). It counts answers by HTTP status and decision basis, treats any non-200
// (and, unless --static, a basis other than the device kind's) as an error, and prints
// requests/s and latency percentiles from every request's latency. Exit code 0 when there were
// no errors, 1 when there were, 2 for bad options or set-up failures.
//
// Raw OpenSSL on non-blocking sockets and one epoll loop per thread (--threads, default 1 so that
// the server keeps the other core). Prints figures only; asserts nothing about speed.

#include <CLI/CLI.hpp>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;

// ---------------------------------------------------------------------------------------------
// OpenSSL handles.

template <auto Free>
struct Deleter {
    template <class T>
    void operator()(T* p) const noexcept
    {
        Free(p);
    }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX_free>>;
using SessionPtr = std::unique_ptr<SSL_SESSION, Deleter<SSL_SESSION_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;

// The OpenSSL error queue as one line (and empties it).
std::string openssl_error()
{
    std::string text;
    while (unsigned long const e = ERR_get_error()) {
        char buffer[256];
        ERR_error_string_n(e, buffer, sizeof buffer);
        text += (text.empty() ? "" : "; ") + std::string(buffer);
    }
    return text.empty() ? "no OpenSSL error" : text;
}

[[noreturn]] void fail_setup(std::string const& what)
{
    throw std::runtime_error(what + ": " + openssl_error());
}

X509Ptr read_certificate(std::string const& path)
{
    std::unique_ptr<FILE, decltype(&std::fclose)> file{std::fopen(path.c_str(), "r"), &std::fclose};
    if (!file) throw std::runtime_error("cannot read " + path);
    X509Ptr cert{PEM_read_X509(file.get(), nullptr, nullptr, nullptr)};
    if (!cert) fail_setup("no certificate in " + path);
    return cert;
}

KeyPtr read_key(std::string const& path)
{
    std::unique_ptr<FILE, decltype(&std::fclose)> file{std::fopen(path.c_str(), "r"), &std::fclose};
    if (!file) throw std::runtime_error("cannot read " + path);
    KeyPtr key{PEM_read_PrivateKey(file.get(), nullptr, nullptr, nullptr)};
    if (!key) fail_setup("no private key in " + path);
    return key;
}

// ---------------------------------------------------------------------------------------------
// Options.

enum class Mode { seed, keepalive, handshake, resume, fleet };
enum class Kind { compliant, grace, exempted, denied };
constexpr std::array<char const*, 4> kKindNames{"compliant", "grace", "exempted", "denied"};
constexpr std::array<char const*, 4> kExpectedBasis{"compliant", "grace", "exempted", "noncompliant"};

struct Options {
    Mode mode = Mode::keepalive;
    std::string connect = "127.0.0.1:8443";
    std::string ca, clients_ca_cert, clients_ca_key;
    std::string admin_cert, admin_key, approver_cert, approver_key;
    std::string sni = "localhost";
    std::string path = "/v1/checkin";
    std::string mix = "compliant=70,grace=10,exempted=10,denied=10";
    unsigned threads = 1;
    unsigned connections = 64;
    unsigned devices = 0;  // 0: as many as connections (fleet: required)
    double duration = 10;
    double interval = 0;   // fleet: seconds between a device's check-ins
    double rate = 0;       // fleet: check-ins per second for the whole fleet (sets interval)
    double timeout = 30;   // a request (and its connection set-up) unanswered after this fails
    double warmup = 0;     // fleet: seconds whose check-ins are made but not counted
    bool is_static = false;
    bool no_enroll = false;  // seed: exemptions only (the devices were imported)
    bool changing_facts = false;          // every report carries an unchecked fact no other has
    bool changing_checked_fact = false;   // every report's screen_lock_seconds differs from the last
};

Options parse_options(int argc, char** argv)
{
    Options o;
    CLI::App app{"exemptd-loadgen: mTLS check-in load for exemptd (and a static nginx baseline)"};
    std::map<std::string, Mode> const modes{{"seed", Mode::seed}, {"keepalive", Mode::keepalive},
                                            {"handshake", Mode::handshake}, {"resume", Mode::resume},
                                            {"fleet", Mode::fleet}};
    app.add_option("mode", o.mode, "seed|keepalive|handshake|resume|fleet")->required()
        ->transform(CLI::CheckedTransformer(modes, CLI::ignore_case))->option_text("MODE");
    app.add_option("--connect", o.connect, "server HOST:PORT (IPv4)");
    app.add_option("--ca", o.ca, "CA file that verifies the server certificate")->required();
    app.add_option("--clients-ca-cert", o.clients_ca_cert, "clients CA certificate (signs device certificates)");
    app.add_option("--clients-ca-key", o.clients_ca_key, "clients CA private key");
    app.add_option("--admin-cert", o.admin_cert, "seed: admin certificate that enrolls and requests");
    app.add_option("--admin-key", o.admin_key, "seed: its key");
    app.add_option("--approver-cert", o.approver_cert, "seed: admin certificate that approves low-risk exemptions");
    app.add_option("--approver-key", o.approver_key, "seed: its key");
    app.add_option("--sni", o.sni, "server name sent and verified (default localhost)");
    app.add_option("--path", o.path, "request path (default /v1/checkin)");
    app.add_option("--mix", o.mix, "device kinds in percent, e.g. compliant=70,grace=10,exempted=10,denied=10");
    app.add_option("--threads", o.threads, "client threads (default 1)")->check(CLI::Range(1, 64));
    app.add_option("--connections,-c", o.connections, "parallel connections (default 64)")->check(CLI::Range(1, 1000000));
    app.add_option("--devices,-d", o.devices, "device certificates (default: --connections)");
    app.add_option("--duration", o.duration, "seconds of load (default 10)")->check(CLI::PositiveNumber);
    app.add_option("--interval", o.interval, "fleet: seconds between one device's check-ins");
    app.add_option("--rate", o.rate, "fleet: check-ins per second for the whole fleet");
    app.add_option("--warmup", o.warmup, "fleet: seconds at the start (connections and handshakes) left out of the figures");
    app.add_option("--timeout", o.timeout, "seconds before an unanswered request fails (default 30)");
    app.add_flag("--no-enroll", o.no_enroll, "seed: only the exemptions, for devices already enrolled (bulk import)");
    app.add_flag("--static", o.is_static, "the server is a static responder (nginx): no basis check, any 200 counts");
    app.add_flag("--changing-facts", o.changing_facts,
                 "add a fact that differs in every report (uptime_seconds), one the policy does not check: "
                 "each check-in still decides again");
    app.add_flag("--changing-checked-fact", o.changing_checked_fact,
                 "vary screen_lock_seconds, a fact the policy checks (60-899 s, within its limit), in every "
                 "report, so that each check-in is evaluated afresh");
    try {
        app.parse(argc, argv);
    } catch (CLI::ParseError const& e) {
        std::exit(app.exit(e));
    }
    if (o.devices == 0) o.devices = o.connections;
    if (o.mode == Mode::fleet && o.interval <= 0) o.interval = o.rate > 0 ? o.devices / o.rate : 60;
    if (o.mode == Mode::keepalive && o.connections > o.devices)
        throw std::invalid_argument("keepalive needs --devices >= --connections (one certificate per connection)");
    return o;
}

// ---------------------------------------------------------------------------------------------
// Devices: ids and the mix of kinds.

std::string device_id(std::size_t index)
{
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "LOAD-%06zu", index + 1);
    return buffer;
}

std::array<double, 4> parse_mix(std::string const& text)
{
    std::array<double, 4> weight{};
    std::size_t start = 0;
    while (start < text.size()) {
        auto const end = std::min(text.find(',', start), text.size());
        auto const item = text.substr(start, end - start);
        auto const eq = item.find('=');
        auto const name = item.substr(0, eq);
        auto const it = std::find(kKindNames.begin(), kKindNames.end(), name);
        if (eq == std::string::npos || it == kKindNames.end())
            throw std::invalid_argument("--mix: expected KIND=PERCENT with KIND one of compliant, grace, exempted, denied");
        weight[static_cast<std::size_t>(it - kKindNames.begin())] = std::stod(item.substr(eq + 1));
        start = end + 1;
    }
    double const total = weight[0] + weight[1] + weight[2] + weight[3];
    if (total <= 0) throw std::invalid_argument("--mix: the weights add up to nothing");
    for (auto& w : weight) w /= total;
    return weight;
}

// Kinds for devices 0..n-1: each device gets the kind furthest behind its share, so every
// prefix of the fleet (and the seed and the load run, given the same --devices and --mix) has
// the same, evenly spread mix.
std::vector<Kind> kind_plan(std::size_t n, std::array<double, 4> const& share)
{
    std::vector<Kind> plan(n);
    std::array<double, 4> assigned{};
    for (std::size_t i = 0; i < n; ++i) {
        std::size_t best = 0;
        for (std::size_t k = 1; k < 4; ++k)
            if (share[k] * double(i + 1) - assigned[k] > share[best] * double(i + 1) - assigned[best]) best = k;
        assigned[best] += 1;
        plan[i] = static_cast<Kind>(best);
    }
    return plan;
}

// ---------------------------------------------------------------------------------------------
// Certificates.

struct Identity {
    KeyPtr key;
    X509Ptr cert;
};

// Signs endpoint certificates with the clients CA, as certs/make-dev-pki.sh's `client` does.
class EndpointIssuer {
public:
    EndpointIssuer(std::string const& ca_cert, std::string const& ca_key)
        : ca_cert_(read_certificate(ca_cert)), ca_key_(read_key(ca_key))
    {
    }

    // A certificate for device_id over key; thread-safe (reads the CA only).
    [[nodiscard]] X509Ptr issue(EVP_PKEY* key, std::string const& device) const
    {
        X509Ptr cert{X509_new()};
        BnPtr serial{BN_new()};
        if (!cert || !serial || !BN_rand(serial.get(), 120, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) ||
            !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())))
            fail_setup("X509_new");
        X509_set_version(cert.get(), X509_VERSION_3);
        X509_gmtime_adj(X509_getm_notBefore(cert.get()), -86400);
        X509_gmtime_adj(X509_getm_notAfter(cert.get()), 30L * 86400);
        X509_NAME* name = X509_get_subject_name(cert.get());
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<unsigned char const*>("exemptd load"), -1, -1, 0);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<unsigned char const*>(device.c_str()), -1, -1, 0);
        X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert_.get()));
        X509_set_pubkey(cert.get(), key);
        add_extensions(cert.get(), device);
        if (X509_sign(cert.get(), ca_key_.get(), EVP_sha256()) <= 0) fail_setup("X509_sign");
        return cert;
    }

private:
    void add_extensions(X509* cert, std::string const& device) const
    {
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, ca_cert_.get(), cert, nullptr, nullptr, 0);
        std::string const san = "URI:urn:exemptd:role:endpoint, URI:urn:exemptd:device:" + device;
        std::pair<int, char const*> const extensions[] = {
            {NID_basic_constraints, "critical,CA:FALSE"},
            {NID_key_usage, "critical,digitalSignature"},
            {NID_ext_key_usage, "clientAuth"},
            {NID_subject_alt_name, san.c_str()},
            {NID_subject_key_identifier, "hash"},
            {NID_authority_key_identifier, "keyid"},
        };
        for (auto const& [nid, value] : extensions) {
            ExtPtr ext{X509V3_EXT_conf_nid(nullptr, &ctx, nid, value)};
            if (!ext || !X509_add_ext(cert, ext.get(), -1)) fail_setup("certificate extension " + std::string(value));
        }
    }

    X509Ptr ca_cert_;
    KeyPtr ca_key_;
};

// Runs body(i) for i in [0, n) on `threads` threads.
void parallel_for(std::size_t n, unsigned threads, std::function<void(std::size_t)> const& body)
{
    std::atomic<std::size_t> next{0};
    std::vector<std::jthread> pool;
    for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&] {
            for (std::size_t i = next++; i < n; i = next++) body(i);
        });
}

// Makes one key and certificate per device; prints key generation and signing times apart.
std::vector<Identity> make_device_pool(Options const& o)
{
    if (o.clients_ca_cert.empty() || o.clients_ca_key.empty())
        throw std::invalid_argument("--clients-ca-cert and --clients-ca-key are needed to make device certificates");
    EndpointIssuer const issuer(o.clients_ca_cert, o.clients_ca_key);
    std::vector<Identity> pool(o.devices);
    unsigned const threads = std::max(1U, std::min(o.threads, std::thread::hardware_concurrency()));
    auto const t0 = Clock::now();
    parallel_for(pool.size(), threads, [&](std::size_t i) {
        pool[i].key.reset(EVP_EC_gen("P-256"));
        if (!pool[i].key) fail_setup("EVP_EC_gen");
    });
    auto const t1 = Clock::now();
    parallel_for(pool.size(), threads, [&](std::size_t i) { pool[i].cert = issuer.issue(pool[i].key.get(), device_id(i)); });
    auto const t2 = Clock::now();
    double const keygen = Seconds(t1 - t0).count(), signing = Seconds(t2 - t1).count();
    std::printf("certificates: %zu EC P-256 keys in %.3f s (%.0f/s), signed in %.3f s (%.0f/s), %u thread(s)\n",
                pool.size(), keygen, double(pool.size()) / keygen, signing, double(pool.size()) / signing, threads);
    return pool;
}

Identity read_identity(std::string const& cert, std::string const& key, char const* what)
{
    if (cert.empty() || key.empty()) throw std::invalid_argument(std::string("seed needs --") + what + "-cert and --" + what + "-key");
    return {read_key(key), read_certificate(cert)};
}

// ---------------------------------------------------------------------------------------------
// Results.

struct Stats {
    std::map<int, std::uint64_t> by_status;
    std::map<std::string, std::uint64_t> by_basis;
    std::map<std::string, std::uint64_t> errors;  // by kind: connect, tls, io, timeout, http_NNN, basis…
    std::vector<std::uint32_t> latency_us;
    std::vector<std::uint32_t> send_lag_us;  // fleet: how late the load generator sent each check-in
    std::uint64_t handshakes = 0, resumed = 0, idle_closed = 0, retries = 0, late_starts = 0;
    std::uint64_t missed = 0;  // fleet: answered after the next check-in was due, or not at all
    std::uint64_t clock_backwards = 0;  // latencies below zero, recorded as 0

    void error(std::string const& kind) { ++errors[kind]; }
    [[nodiscard]] std::uint64_t error_total() const
    {
        std::uint64_t n = 0;
        for (auto const& [kind, count] : errors) n += count;
        return n;
    }
    void merge(Stats const& other)
    {
        for (auto const& [k, v] : other.by_status) by_status[k] += v;
        for (auto const& [k, v] : other.by_basis) by_basis[k] += v;
        for (auto const& [k, v] : other.errors) errors[k] += v;
        latency_us.insert(latency_us.end(), other.latency_us.begin(), other.latency_us.end());
        send_lag_us.insert(send_lag_us.end(), other.send_lag_us.begin(), other.send_lag_us.end());
        handshakes += other.handshakes;
        resumed += other.resumed;
        idle_closed += other.idle_closed;
        retries += other.retries;
        missed += other.missed;
        late_starts += other.late_starts;
        clock_backwards += other.clock_backwards;
    }
};

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 response reading: just enough for status, Content-Length, Connection and the basis.

class ResponseReader {
public:
    void reset()
    {
        buffer_.clear();
        header_end_ = std::string::npos;
        content_length_ = 0;
    }
    // Appends bytes; returns false when the header is malformed.
    bool feed(char const* data, std::size_t n)
    {
        buffer_.append(data, n);
        if (header_end_ == std::string::npos) {
            auto const end = buffer_.find("\r\n\r\n");
            if (end == std::string::npos) return buffer_.size() < 65536;
            header_end_ = end + 4;
            return parse_header();
        }
        return true;
    }
    [[nodiscard]] bool started() const { return !buffer_.empty(); }
    [[nodiscard]] bool complete() const
    {
        return header_end_ != std::string::npos && buffer_.size() >= header_end_ + content_length_;
    }
    [[nodiscard]] int status() const { return status_; }
    [[nodiscard]] bool server_closes() const { return close_; }
    [[nodiscard]] std::string_view body() const { return std::string_view(buffer_).substr(header_end_, content_length_); }

    // The string value of "key" in the body (no unescaping: ids and enums only), or "".
    [[nodiscard]] std::string json_string(std::string_view key) const
    {
        auto const b = body();
        std::string const needle = "\"" + std::string(key) + "\"";
        auto at = b.find(needle);
        if (at == std::string_view::npos) return {};
        at = b.find('"', b.find(':', at + needle.size()));
        if (at == std::string_view::npos) return {};
        auto const end = b.find('"', at + 1);
        return end == std::string_view::npos ? std::string{} : std::string(b.substr(at + 1, end - at - 1));
    }

private:
    bool parse_header()
    {
        std::string_view const head(buffer_.data(), header_end_);
        if (head.size() < 12 || head.substr(0, 7) != "HTTP/1.") return false;
        status_ = std::atoi(head.substr(9, 3).data());
        close_ = head.substr(0, 8) == "HTTP/1.0";
        bool has_length = false;
        for (std::size_t at = head.find("\r\n") + 2; at < head.size();) {
            auto const eol = head.find("\r\n", at);
            auto const line = head.substr(at, eol - at);
            at = eol + 2;
            auto const colon = line.find(':');
            if (colon == std::string_view::npos) continue;
            std::string name(line.substr(0, colon));
            std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return char(std::tolower(c)); });
            auto value = line.substr(colon + 1);
            while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
            if (name == "content-length") {
                content_length_ = std::strtoull(std::string(value).c_str(), nullptr, 10);
                has_length = true;
            } else if (name == "connection") {
                close_ = value.find("close") != std::string_view::npos || value.find("Close") != std::string_view::npos;
            } else if (name == "transfer-encoding") {
                return false;  // neither exemptd nor the nginx baseline chunk these answers
            }
        }
        return has_length || status_ == 204 || status_ == 304;
    }

    std::string buffer_;
    std::size_t header_end_ = std::string::npos;
    std::size_t content_length_ = 0;
    int status_ = 0;
    bool close_ = false;
};

// ---------------------------------------------------------------------------------------------
// Connections and the event loop.

struct SessionSlot {
    std::mutex mutex;
    SessionPtr session;
};

struct Conn {
    enum class State { waiting, connecting, handshaking, writing, reading, idle, done };
    State state = State::waiting;
    int fd = -1;
    SSL* ssl = nullptr;
    Identity const* identity = nullptr;
    SessionSlot* session = nullptr;  // resume: where this connection's device keeps its session
    std::size_t device = 0;          // index into the pool (bench) or a work item (seed)
    std::size_t slot = 0;            // connection number within the run
    std::size_t uses = 0;            // connections opened by this slot so far
    std::uint32_t interest = 0;
    bool reused = false;             // the connection already carried a request
    bool retried = false;
    std::uint64_t timer_gen = 0;
    std::uint32_t index = 0;         // position in its loop
    std::uint32_t socket_gen = 0;    // tells events of this socket from those of an earlier one
    Clock::time_point connect_at, sent_at, scheduled_at, deadline;
    std::string out;
    std::size_t out_done = 0;
    ResponseReader in;
    std::size_t item = 0;            // the driver's notion of what the request was
};

enum class After { send_next, reconnect, wait, close };

// What a mode does with a connection; one driver per loop (thread).
class Driver {
public:
    virtual ~Driver() = default;
    // Called before a slot's connection is opened: picks the device and identity (and session).
    virtual void prepare(Conn& conn) = 0;
    // The next request for conn (sets conn.out), or false when conn is finished.
    virtual bool next(Conn& conn, Clock::time_point now) = 0;
    // A complete answer; returns what to do next (for wait, conn.scheduled_at is the time).
    virtual After answered(Conn& conn, Clock::time_point now, Stats& stats) = 0;
    // The request failed (already counted as an error); returns what to do next.
    virtual After failed(Conn& conn, Clock::time_point now, Stats& stats) = 0;
};

struct Target {
    sockaddr_in address{};
    std::string sni;
};

Target parse_target(std::string const& text, std::string const& sni)
{
    Target t;
    auto const colon = text.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument("--connect: expected HOST:PORT");
    t.address.sin_family = AF_INET;
    t.address.sin_port = htons(static_cast<std::uint16_t>(std::stoi(text.substr(colon + 1))));
    if (inet_pton(AF_INET, text.substr(0, colon).c_str(), &t.address.sin_addr) != 1)
        throw std::invalid_argument("--connect: expected an IPv4 address, got " + text.substr(0, colon));
    t.sni = sni;
    return t;
}

int new_session_callback(SSL* ssl, SSL_SESSION* session)
{
    auto* conn = static_cast<Conn*>(SSL_get_app_data(ssl));
    if (conn == nullptr || conn->session == nullptr) return 0;
    std::lock_guard lock(conn->session->mutex);
    conn->session->session.reset(session);  // keeps the newest ticket
    return 1;
}

SslCtxPtr make_client_context(std::string const& ca_file)
{
    SslCtxPtr ctx{SSL_CTX_new(TLS_client_method())};
    if (!ctx) fail_setup("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    if (SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1) fail_setup("cannot load " + ca_file);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx.get(), new_session_callback);
    return ctx;
}

// One thread's epoll loop over its connections.
class Loop {
public:
    Loop(Target const& target, SSL_CTX* ctx, Driver& driver, Stats& stats, Seconds timeout)
        : target_(target), ctx_(ctx), driver_(driver), stats_(stats), timeout_(timeout), epoll_(epoll_create1(EPOLL_CLOEXEC))
    {
        if (epoll_ < 0) throw std::runtime_error("epoll_create1 failed");
    }
    ~Loop()
    {
        for (auto& c : conns_) close_socket(*c);
        ::close(epoll_);
    }
    Loop(Loop const&) = delete;
    Loop& operator=(Loop const&) = delete;

    // Adds a connection slot that starts at `at`.
    void add(std::size_t slot, Clock::time_point at)
    {
        auto& c = *conns_.emplace_back(std::make_unique<Conn>());
        c.index = std::uint32_t(conns_.size() - 1);
        c.slot = slot;
        c.scheduled_at = at;
        schedule(c, at);
    }

    // Runs until every slot is done or hard_stop; what is in flight then counts as unfinished.
    void run(Clock::time_point hard_stop)
    {
        std::array<epoll_event, 256> events;
        auto next_sweep = Clock::now() + std::chrono::seconds{1};
        while (done_ < conns_.size() && Clock::now() < hard_stop) {
            int const n = epoll_wait(epoll_, events.data(), int(events.size()), wait_ms());
            for (int i = 0; i < n; ++i) {
                auto const tag = events[std::size_t(i)].data.u64;
                auto& c = *conns_[tag >> 32];
                // An event fetched for a socket that an earlier event in this batch closed.
                if (std::uint32_t(tag) == c.socket_gen && c.fd >= 0) on_event(c);
            }
            fire_timers();
            if (Clock::now() >= next_sweep) {
                sweep_timeouts();
                next_sweep = Clock::now() + std::chrono::seconds{1};
            }
        }
        for (auto& c : conns_)
            if (c->state != Conn::State::done && c->state != Conn::State::idle && c->state != Conn::State::waiting)
                stats_.error("unfinished");
    }

private:
    struct Timer {
        Clock::time_point at;
        Conn* conn;
        std::uint64_t gen;
        bool operator>(Timer const& o) const { return at > o.at; }
    };

    int wait_ms()
    {
        if (timers_.empty()) return 100;
        auto const ms = std::chrono::ceil<std::chrono::milliseconds>(timers_.top().at - Clock::now()).count();
        return int(std::clamp<long long>(ms, 0, 100));
    }

    void schedule(Conn& c, Clock::time_point at) { timers_.push({at, &c, ++c.timer_gen}); }

    void fire_timers()
    {
        auto const now = Clock::now();
        while (!timers_.empty() && timers_.top().at <= now) {
            auto const t = timers_.top();
            timers_.pop();
            if (t.gen != t.conn->timer_gen) continue;
            if (t.conn->state == Conn::State::waiting || t.conn->state == Conn::State::idle) begin(*t.conn);
        }
    }

    void sweep_timeouts()
    {
        auto const now = Clock::now();
        for (auto& c : conns_) {
            bool const busy = c->state == Conn::State::connecting || c->state == Conn::State::handshaking ||
                              c->state == Conn::State::writing || c->state == Conn::State::reading;
            if (busy && now > c->deadline) fail(*c, "timeout");
        }
    }

    // Sends the next request: on the open connection, or on a new one.
    void begin(Conn& c)
    {
        if (c.fd >= 0 && c.ssl != nullptr) return send_next(c);
        driver_.prepare(c);
        open(c);
    }

    void open(Conn& c)
    {
        c.connect_at = Clock::now();
        c.deadline = c.connect_at + std::chrono::duration_cast<Clock::duration>(timeout_);
        c.reused = false;
        ++c.socket_gen;
        c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ++c.uses;
        if (c.fd < 0 || (::connect(c.fd, reinterpret_cast<sockaddr const*>(&target_.address), sizeof target_.address) != 0 &&
                         errno != EINPROGRESS))
            return fail(c, "connect");
        c.state = Conn::State::connecting;
        want(c, EPOLLOUT);
    }

    void on_event(Conn& c)
    {
        switch (c.state) {
        case Conn::State::connecting: return connected(c);
        case Conn::State::handshaking: return handshake(c);
        case Conn::State::writing: return write(c);
        case Conn::State::reading: return read(c);
        case Conn::State::idle: return idle_readable(c);
        default: return;
        }
    }

    void connected(Conn& c)
    {
        int error = 0;
        socklen_t len = sizeof error;
        if (::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0) return fail(c, "connect");
        c.ssl = SSL_new(ctx_);
        SSL_set_app_data(c.ssl, &c);
        SSL_set_fd(c.ssl, c.fd);
        SSL_set_tlsext_host_name(c.ssl, target_.sni.c_str());
        SSL_set1_host(c.ssl, target_.sni.c_str());
        if (SSL_use_certificate(c.ssl, c.identity->cert.get()) != 1 || SSL_use_PrivateKey(c.ssl, c.identity->key.get()) != 1)
            return fail(c, "tls_setup");
        if (c.session != nullptr) {
            std::lock_guard lock(c.session->mutex);
            if (c.session->session) SSL_set_session(c.ssl, c.session->session.get());
        }
        SSL_set_connect_state(c.ssl);
        c.state = Conn::State::handshaking;
        handshake(c);
    }

    // Maps an OpenSSL result to epoll interest; false when the operation failed for good.
    bool retry_later(Conn& c, int result)
    {
        switch (SSL_get_error(c.ssl, result)) {
        case SSL_ERROR_WANT_READ: want(c, EPOLLIN); return true;
        case SSL_ERROR_WANT_WRITE: want(c, EPOLLOUT); return true;
        default: return false;
        }
    }

    void handshake(Conn& c)
    {
        int const r = SSL_do_handshake(c.ssl);
        if (r != 1) {
            if (!retry_later(c, r)) fail(c, "tls_handshake");
            return;
        }
        ++stats_.handshakes;
        if (SSL_session_reused(c.ssl)) ++stats_.resumed;
        send_next(c);
    }

    void send_next(Conn& c)
    {
        auto const now = Clock::now();
        if (!driver_.next(c, now)) return finish(c);
        c.sent_at = now;
        if (c.reused) c.deadline = now + std::chrono::duration_cast<Clock::duration>(timeout_);
        c.out_done = 0;
        c.in.reset();
        c.state = Conn::State::writing;
        write(c);
    }

    void write(Conn& c)
    {
        int const r = SSL_write(c.ssl, c.out.data() + c.out_done, int(c.out.size() - c.out_done));
        if (r <= 0) {
            if (!retry_later(c, r)) fail(c, "io_write");
            return;
        }
        c.out_done += std::size_t(r);
        if (c.out_done < c.out.size()) return write(c);
        // The answer is read when epoll reports it: reading here at once would recurse through
        // answered() and send_next() for as long as a fast server keeps answering in time.
        c.state = Conn::State::reading;
        want(c, EPOLLIN);
    }

    void read(Conn& c)
    {
        std::array<char, 16384> buffer;
        for (;;) {
            int const r = SSL_read(c.ssl, buffer.data(), int(buffer.size()));
            if (r <= 0) {
                if (!retry_later(c, r)) fail(c, c.in.started() ? "io_read" : "closed_before_answer");
                return;
            }
            if (!c.in.feed(buffer.data(), std::size_t(r))) return fail(c, "bad_http");
            if (c.in.complete()) return answered(c);
        }
    }

    void answered(Conn& c)
    {
        auto const now = Clock::now();
        c.reused = true;
        c.retried = false;
        After const after = driver_.answered(c, now, stats_);
        bool const closes = c.in.server_closes();
        if (closes || after == After::reconnect || after == After::close) shutdown(c);
        switch (after) {
        case After::send_next: return closes ? begin(c) : send_next(c);
        case After::reconnect: return begin(c);
        case After::wait: return wait_until(c, c.scheduled_at);
        case After::close: return finish(c);
        }
    }

    void wait_until(Conn& c, Clock::time_point at)
    {
        c.state = c.fd >= 0 ? Conn::State::idle : Conn::State::waiting;
        if (c.fd >= 0) want(c, EPOLLIN);  // notices the server closing an idle connection
        schedule(c, at);
    }

    void idle_readable(Conn& c)
    {
        std::array<char, 4096> buffer;
        int const r = SSL_read(c.ssl, buffer.data(), int(buffer.size()));
        if (r > 0 || retry_later(c, r)) return;  // session tickets and the like
        ++stats_.idle_closed;
        close_socket(c);
        c.state = Conn::State::waiting;
    }

    void fail(Conn& c, char const* kind)
    {
        // A reused connection that the server closed just before the request: retry once on a new one.
        bool const retry = c.reused && !c.retried && !c.in.started() && c.state != Conn::State::connecting &&
                           std::string_view(kind) != "timeout";
        close_socket(c);
        if (retry) {
            ++stats_.retries;
            c.retried = true;
            c.state = Conn::State::waiting;
            return begin(c);
        }
        stats_.error(kind);
        c.retried = false;
        auto const now = Clock::now();
        switch (driver_.failed(c, now, stats_)) {
        case After::send_next:
        case After::reconnect:  // not at once: a refusing server would spin the loop
            c.state = Conn::State::waiting;
            return schedule(c, now + std::chrono::milliseconds{100});
        case After::wait: c.state = Conn::State::waiting; return schedule(c, c.scheduled_at);
        case After::close: return mark_done(c);
        }
    }

    void finish(Conn& c)
    {
        if (c.ssl != nullptr) shutdown(c);
        close_socket(c);
        mark_done(c);
    }

    void mark_done(Conn& c)
    {
        if (c.state != Conn::State::done) ++done_;
        c.state = Conn::State::done;
    }

    // Sends close_notify (without waiting for the server's) and closes.
    void shutdown(Conn& c)
    {
        if (c.ssl != nullptr) SSL_shutdown(c.ssl);
        close_socket(c);
    }

    void close_socket(Conn& c)
    {
        if (c.ssl != nullptr) SSL_free(c.ssl);
        c.ssl = nullptr;
        if (c.fd >= 0) ::close(c.fd);  // also leaves the epoll set
        c.fd = -1;
        c.interest = 0;
    }

    void want(Conn& c, std::uint32_t events)
    {
        if (c.interest == events) return;
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = (std::uint64_t(c.index) << 32) | c.socket_gen;
        ::epoll_ctl(epoll_, c.interest == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c.fd, &ev);
        c.interest = events;
    }

    Target const& target_;
    SSL_CTX* ctx_;
    Driver& driver_;
    Stats& stats_;
    Seconds timeout_;
    int epoll_;
    std::vector<std::unique_ptr<Conn>> conns_;
    std::size_t done_ = 0;
    std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
};

// ---------------------------------------------------------------------------------------------
// Requests.

std::string http_request(char const* method, std::string const& path, std::string const& host, std::string const& body)
{
    std::string r;
    r.reserve(160 + body.size());
    r.append(method).append(" ").append(path).append(" HTTP/1.1\r\nHost: ").append(host);
    r.append("\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: ");
    r.append(std::to_string(body.size())).append("\r\n\r\n").append(body);
    return r;
}

std::string rfc3339(std::time_t t)
{
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buffer[32];
    std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buffer;
}

// Posture reports (SPEC §4) for one thread: a fresh 128-bit random nonce each, reported_at = now.
// With `changing_facts`, the facts also hold an uptime_seconds that no other report has (a fact
// the policy does not check); with `changing_checked_fact`, screen_lock_seconds takes another value
// in each report, always within LOCK-01's limit. Either way the decision stays the kind's.
class PostureWriter {
public:
    PostureWriter(std::uint64_t seed, bool changing_facts, bool changing_checked_fact)
        : random_(seed), changing_facts_(changing_facts), changing_checked_fact_(changing_checked_fact)
    {
    }

    std::string report(std::string const& device, Kind kind)
    {
        std::string_view facts = kind == Kind::grace ? kGraceFacts : kind == Kind::compliant ? kCompliantFacts : kUnpatchedFacts;
        char nonce[33];
        std::snprintf(nonce, sizeof nonce, "%016" PRIx64 "%016" PRIx64, random_(), random_());
        std::string body;
        body.reserve(352);
        body.append(R"({"device_id":")").append(device).append(R"(","hostname":"host-)").append(device);
        body.append(R"(","serial":"SN-)").append(device).append(R"(","os":{"name":"debian","version":"12.8"},"facts":)");
        ++reports_;
        if (changing_checked_fact_) {
            constexpr std::string_view lock = R"("screen_lock_seconds":300)";
            auto const at = facts.find(lock);
            if (at == std::string_view::npos) throw std::logic_error("a fact set without screen_lock_seconds 300");
            body.append(facts.substr(0, at)).append(R"("screen_lock_seconds":)").append(std::to_string(60 + reports_ % 840));
            facts.remove_prefix(at + lock.size());
        }
        if (changing_facts_) {
            facts.remove_suffix(1);  // the closing brace
            body.append(facts).append(R"(,"uptime_seconds":)").append(std::to_string(reports_)).append("}");
        } else {
            body.append(facts);
        }
        body.append(R"(,"agent_version":"0.1.0","reported_at":")").append(now());
        body.append(R"(","nonce":")").append(nonce).append("\"}");
        return body;
    }

private:
    // ENC-01 fails (grace_hours 72): allowed on basis grace for three days after the first failure.
    static constexpr char kGraceFacts[] =
        R"({"disk_encrypted":false,"firewall_enabled":true,"screen_lock_seconds":300,"os_patch_age_days":12})";
    static constexpr char kCompliantFacts[] =
        R"({"disk_encrypted":true,"firewall_enabled":true,"screen_lock_seconds":300,"os_patch_age_days":12})";
    // OS-01 fails (max 30 days, no grace): denied, unless an exemption covers OS-01.
    static constexpr char kUnpatchedFacts[] =
        R"({"disk_encrypted":true,"firewall_enabled":true,"screen_lock_seconds":300,"os_patch_age_days":45})";

    std::string const& now()
    {
        std::time_t const t = std::time(nullptr);
        if (t != cached_at_) {
            cached_at_ = t;
            cached_ = rfc3339(t);
        }
        return cached_;
    }

    std::mt19937_64 random_;
    bool changing_facts_;
    bool changing_checked_fact_;
    std::uint64_t reports_ = 0;
    std::time_t cached_at_ = 0;
    std::string cached_;
};

// ---------------------------------------------------------------------------------------------
// Check-in drivers: keepalive, handshake, resume, fleet.

struct BenchShared {
    Options const& options;
    std::vector<Identity> const& pool;
    std::vector<Kind> const& kinds;
    std::vector<SessionSlot>& sessions;
    Clock::time_point start, stop;
};

class CheckinDriver final : public Driver {
public:
    CheckinDriver(BenchShared const& shared, std::uint64_t seed)
        : s_(shared), writer_(seed, shared.options.changing_facts, shared.options.changing_checked_fact)
    {
    }

    void prepare(Conn& c) override
    {
        auto const& o = s_.options;
        // One device per slot, except in handshake mode: there slot j's k-th connection is device
        // (j + k·N) mod D, which spreads the check-ins over all D devices. Resume keeps the device
        // so that every connection after a slot's first can resume that device's session.
        c.device = o.mode == Mode::handshake ? (c.slot + c.uses * o.connections) % o.devices : c.slot;
        c.identity = &s_.pool[c.device];
        c.session = o.mode == Mode::resume ? &s_.sessions[c.device] : nullptr;
    }

    bool next(Conn& c, Clock::time_point now) override
    {
        if (s_.options.mode != Mode::fleet && now >= s_.stop) return false;
        if (s_.options.mode == Mode::fleet && c.scheduled_at >= s_.stop) return false;
        if (s_.options.mode == Mode::fleet && now - c.scheduled_at > std::chrono::seconds{1}) ++late_starts_;
        c.out = http_request("POST", s_.options.path, s_.options.sni,
                             writer_.report(device_id(c.device), s_.kinds[c.device]));
        return true;
    }

    After answered(Conn& c, Clock::time_point now, Stats& stats) override
    {
        stats.late_starts += std::exchange(late_starts_, 0);
        record(c, now, stats);
        switch (s_.options.mode) {
        case Mode::keepalive: return After::send_next;
        case Mode::handshake:
        case Mode::resume: return now >= s_.stop ? After::close : After::reconnect;
        default: break;
        }
        auto const interval = std::chrono::duration_cast<Clock::duration>(Seconds(s_.options.interval));
        if (now - c.scheduled_at > interval) ++stats.missed;  // answered after the next check-in was due
        c.scheduled_at += interval;
        while (c.scheduled_at < now) c.scheduled_at += interval;  // skipped check-ins are missed too
        return c.scheduled_at >= s_.stop ? After::close : After::wait;
    }

    After failed(Conn& c, Clock::time_point now, Stats& stats) override
    {
        if (s_.options.mode != Mode::fleet) return now >= s_.stop ? After::close : After::reconnect;
        ++stats.missed;  // a check-in that got no answer missed its deadline too
        auto const interval = std::chrono::duration_cast<Clock::duration>(Seconds(s_.options.interval));
        c.scheduled_at += interval;
        while (c.scheduled_at < now) c.scheduled_at += interval;
        return c.scheduled_at >= s_.stop ? After::close : After::wait;
    }

private:
    void record(Conn& c, Clock::time_point now, Stats& stats) const
    {
        auto const& o = s_.options;
        if (o.mode == Mode::fleet && c.scheduled_at < s_.start + std::chrono::duration_cast<Clock::duration>(Seconds(o.warmup)))
            return;
        auto const from = o.mode == Mode::fleet ? c.scheduled_at
                          : o.mode == Mode::keepalive ? c.sent_at
                                                      : c.connect_at;
        stats.latency_us.push_back(elapsed_us(from, now, stats));
        // Part of a fleet check-in's latency is the load generator's own: it sent late.
        if (o.mode == Mode::fleet) stats.send_lag_us.push_back(elapsed_us(c.scheduled_at, c.sent_at, stats));
        ++stats.by_status[c.in.status()];
        if (c.in.status() != 200) return stats.error("http_" + std::to_string(c.in.status()));
        auto basis = c.in.json_string("basis");
        ++stats.by_basis[basis.empty() ? "(none)" : basis];
        if (!o.is_static && basis != kExpectedBasis[std::size_t(s_.kinds[c.device])])
            stats.error(std::string("basis_not_") + kExpectedBasis[std::size_t(s_.kinds[c.device])]);
    }

    static std::uint32_t elapsed_us(Clock::time_point from, Clock::time_point to, Stats& stats)
    {
        auto const micros = std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
        if (micros < 0) {  // seen on this VM: steady_clock a few µs behind after a CPU migration
            ++stats.clock_backwards;
            return 0;
        }
        return std::uint32_t(std::min<std::int64_t>(micros, UINT32_MAX));
    }

    BenchShared const& s_;
    PostureWriter writer_;
    std::uint64_t late_starts_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Seeding: enrollment for every device, an approved OS-01 exemption for each exempted one.

struct SeedItem {
    std::string request;
    std::size_t device;
    bool is_exemption;
};

struct SeedShared {
    std::vector<SeedItem> items;
    std::atomic<std::size_t> next{0};
    Identity const* identity;
    std::mutex mutex;
    std::vector<std::string> exemption_ids;  // filled by the request phase
    std::map<int, std::uint64_t> failures;   // status → count (0: no answer)
};

class SeedDriver final : public Driver {
public:
    explicit SeedDriver(SeedShared& shared) : s_(shared) {}

    void prepare(Conn& c) override { c.identity = s_.identity; }

    bool next(Conn& c, Clock::time_point) override
    {
        c.item = s_.next++;
        if (c.item >= s_.items.size()) return false;
        c.out = s_.items[c.item].request;
        return true;
    }

    After answered(Conn& c, Clock::time_point, Stats& stats) override
    {
        ++stats.by_status[c.in.status()];
        auto const& item = s_.items[c.item];
        int const status = c.in.status();
        bool const ok = status == 200 || status == 201;
        if (!ok) {
            stats.error("http_" + std::to_string(status));
            std::lock_guard lock(s_.mutex);
            if (s_.failures[status]++ == 0)
                std::fprintf(stderr, "seed: %s answered %d: %.300s\n", device_id(item.device).c_str(), status,
                             std::string(c.in.body()).c_str());
        } else if (item.is_exemption) {
            std::lock_guard lock(s_.mutex);
            s_.exemption_ids.push_back(c.in.json_string("id"));
        }
        return After::send_next;
    }

    After failed(Conn&, Clock::time_point, Stats&) override { return After::reconnect; }

private:
    SeedShared& s_;
};

std::string enrollment_body()
{
    return R"({"enrolled": true, "owner": "load@example.com", "source": "mdm"})";
}

std::string exemption_body(std::string const& device)
{
    return R"({"subject": "device:)" + device + R"(", "controls": ["OS-01"], )"
           R"("justification": "Load test device: OS patching deferred for the benchmark.", )"
           R"("risk": {"likelihood": "low", "impact": "low"}, )"
           R"("mitigations": ["Synthetic device used only by exemptd-loadgen"], "compensating_controls": [], )"
           R"("evidence": "exemptd-loadgen seed", "expires_at": ")" + rfc3339(std::time(nullptr) + 30L * 86400) + R"("})";
}

// ---------------------------------------------------------------------------------------------
// Running.

struct RunResult {
    Stats stats;
    double seconds = 0;
    double cpu_seconds = 0;  // this process, user + system, during the run
};

double process_cpu_seconds()
{
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    auto const seconds = [](timeval const& t) { return double(t.tv_sec) + double(t.tv_usec) * 1e-6; };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// Runs one loop per thread; slot j goes to thread j mod T. make_driver(t) makes thread t's driver.
RunResult run_loops(Options const& o, std::size_t slots, std::function<Clock::time_point(std::size_t)> const& start_of,
                    std::function<std::unique_ptr<Driver>(unsigned)> const& make_driver, Clock::time_point hard_stop)
{
    auto const target = parse_target(o.connect, o.sni);
    auto const ctx = make_client_context(o.ca);
    unsigned const threads = unsigned(std::min<std::size_t>(o.threads, std::max<std::size_t>(1, slots)));
    std::vector<Stats> stats(threads);
    double const cpu_begin = process_cpu_seconds();
    auto const begin = Clock::now();
    {
        std::vector<std::jthread> pool;
        for (unsigned t = 0; t < threads; ++t)
            pool.emplace_back([&, t] {
                auto driver = make_driver(t);
                Loop loop(target, ctx.get(), *driver, stats[t], Seconds(o.timeout));
                for (std::size_t j = t; j < slots; j += threads) loop.add(j, start_of(j));
                loop.run(hard_stop);
            });
    }
    RunResult result;
    result.seconds = Seconds(Clock::now() - begin).count();
    result.cpu_seconds = process_cpu_seconds() - cpu_begin;
    for (auto const& s : stats) result.stats.merge(s);
    return result;
}

std::vector<SeedItem> seed_requests(Options const& o, std::vector<Kind> const& kinds)
{
    std::vector<SeedItem> items;
    for (std::size_t i = 0; i < kinds.size(); ++i) {
        auto const id = device_id(i);
        if (!o.no_enroll)
            items.push_back({http_request("PUT", "/v1/devices/" + id + "/enrollment", o.sni, enrollment_body()), i, false});
        if (kinds[i] == Kind::exempted)
            items.push_back({http_request("POST", "/v1/exemptions", o.sni, exemption_body(id)), i, true});
    }
    return items;
}

// One seeding phase over a few keep-alive connections; returns the number of failed requests.
std::uint64_t seed_phase(Options const& o, SeedShared& shared, char const* what)
{
    std::size_t const connections = std::min<std::size_t>(std::max(1U, std::min(o.connections, 8U)), shared.items.size());
    auto const now = Clock::now();
    auto const r = run_loops(o, connections, [now](std::size_t) { return now; },
                             [&](unsigned) { return std::make_unique<SeedDriver>(shared); }, now + std::chrono::hours{1});
    std::printf("seed: %-34s %6zu requests in %.3f s (%.0f/s) over %zu connection(s), %" PRIu64 " failed\n", what,
                shared.items.size(), r.seconds, double(shared.items.size()) / r.seconds, connections, r.stats.error_total());
    return r.stats.error_total();
}

int run_seed(Options const& o, std::vector<Kind> const& kinds)
{
    Identity const admin = read_identity(o.admin_cert, o.admin_key, "admin");
    Identity const approver = read_identity(o.approver_cert, o.approver_key, "approver");
    SeedShared requests;
    requests.items = seed_requests(o, kinds);
    requests.identity = &admin;
    std::uint64_t failed = seed_phase(o, requests, "enrollments and exemption requests");
    SeedShared approvals;
    approvals.identity = &approver;
    for (auto const& id : requests.exemption_ids)
        approvals.items.push_back({http_request("POST", "/v1/exemptions/" + id + "/approve", o.sni,
                                                R"({"note": "approved by exemptd-loadgen seed"})"), 0, false});
    if (!approvals.items.empty()) failed += seed_phase(o, approvals, "approvals");
    std::printf("seed: %zu devices enrolled, %zu exemptions approved\n", o.no_enroll ? 0 : kinds.size(),
                approvals.items.size());
    return failed == 0 ? 0 : 1;
}

double percentile_ms(std::vector<std::uint32_t> const& sorted, double p)
{
    if (sorted.empty()) return 0;
    auto const rank = std::size_t(std::ceil(p / 100.0 * double(sorted.size())));
    return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1] / 1000.0;
}

char const* mode_name(Mode m)
{
    switch (m) {
    case Mode::seed: return "seed";
    case Mode::keepalive: return "keepalive";
    case Mode::handshake: return "handshake";
    case Mode::resume: return "resume";
    case Mode::fleet: return "fleet";
    }
    return "?";
}

void print_counts(Stats const& s)
{
    std::printf("by status:");
    for (auto const& [status, n] : s.by_status) std::printf(" %d=%" PRIu64, status, n);
    std::printf("\nby basis:");
    for (auto const& [basis, n] : s.by_basis) std::printf(" %s=%" PRIu64, basis.c_str(), n);
    std::printf("\nerrors: %" PRIu64, s.error_total());
    for (auto const& [kind, n] : s.errors) std::printf(" %s=%" PRIu64, kind.c_str(), n);
    std::printf("\n");
}

// Prints the figures; the last line is one `result …` line of key=value pairs for scripts.
void report(Options const& o, RunResult& r)
{
    auto& s = r.stats;
    std::sort(s.latency_us.begin(), s.latency_us.end());
    std::sort(s.send_lag_us.begin(), s.send_lag_us.end());
    double const elapsed = r.seconds;  // the whole run, warm-up included: what server CPU is spent over
    if (o.mode == Mode::fleet) r.seconds -= std::min(o.warmup, r.seconds / 2);  // the counted part
    double const rps = double(s.latency_us.size()) / r.seconds;
    print_counts(s);
    std::printf("TLS: %" PRIu64 " handshakes, %" PRIu64 " resumed (%.3f), %" PRIu64 " idle connections closed by the server, %" PRIu64
                " retried\n", s.handshakes, s.resumed, s.handshakes ? double(s.resumed) / double(s.handshakes) : 0.0,
                s.idle_closed, s.retries);
    if (o.mode == Mode::fleet) {
        std::printf("fleet: %u devices every %.3g s, planned %.1f/s, achieved %.1f/s, %" PRIu64 " missed deadlines, %" PRIu64
                    " late starts (sent >1 s after the scheduled time; on a new connection, connect and handshake count)\n", o.devices, o.interval, o.devices / o.interval, rps, s.missed, s.late_starts);
        std::printf("send lag ms (sent after the scheduled time, part of the latency): p50 %.3f  p99 %.3f  p99.9 %.3f\n",
                    percentile_ms(s.send_lag_us, 50), percentile_ms(s.send_lag_us, 99), percentile_ms(s.send_lag_us, 99.9));
    }
    std::printf("latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", percentile_ms(s.latency_us, 50),
                percentile_ms(s.latency_us, 90), percentile_ms(s.latency_us, 99), percentile_ms(s.latency_us, 99.9),
                percentile_ms(s.latency_us, 100));
    if (s.clock_backwards != 0)
        std::printf("warning: %" PRIu64 " latencies were negative (steady_clock went back), counted as 0\n", s.clock_backwards);
    std::printf("result mode=%s requests=%zu seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f errors=%" PRIu64
                " handshakes=%" PRIu64 " resumed=%.3f missed=%" PRIu64 " cpu_s=%.2f elapsed_s=%.3f\n",
                mode_name(o.mode), s.latency_us.size(), r.seconds, rps, percentile_ms(s.latency_us, 50),
                percentile_ms(s.latency_us, 99), percentile_ms(s.latency_us, 99.9), s.error_total(), s.handshakes,
                s.handshakes ? double(s.resumed) / double(s.handshakes) : 0.0, s.missed, r.cpu_seconds, elapsed);
}

int run_bench(Options const& o, std::vector<Kind> const& kinds)
{
    auto const pool = make_device_pool(o);
    std::vector<SessionSlot> sessions(o.mode == Mode::resume ? o.devices : 0);
    auto const start = Clock::now();
    BenchShared const shared{o, pool, kinds, sessions, start,
                             start + std::chrono::duration_cast<Clock::duration>(Seconds(o.duration))};
    bool const fleet = o.mode == Mode::fleet;
    std::size_t const slots = fleet ? o.devices : o.connections;
    auto const spread = std::chrono::duration_cast<Clock::duration>(Seconds(o.interval));
    auto start_of = [&](std::size_t j) {
        return fleet ? start + std::chrono::duration_cast<Clock::duration>(spread * (double(j) / double(o.devices))) : start;
    };
    std::printf("%s: %zu %s, %u devices, %.1f s, %u thread(s), %s%s\n", mode_name(o.mode), slots,
                fleet ? "devices (one connection each)" : "connections", o.devices, o.duration, o.threads, o.connect.c_str(),
                o.is_static ? ", static server" : "");
    auto result = run_loops(o, slots, start_of,
                            [&](unsigned t) { return std::make_unique<CheckinDriver>(shared, std::random_device{}() ^ (std::uint64_t(t) << 32)); },
                            shared.stop + std::chrono::duration_cast<Clock::duration>(Seconds(o.timeout)));
    report(o, result);
    return result.stats.error_total() == 0 && !result.stats.latency_us.empty() ? 0 : 1;
}

// Many connections (fleet mode) need many descriptors.
void raise_file_limit()
{
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

}  // namespace

int main(int argc, char** argv)
{
    try {
        Options const o = parse_options(argc, argv);
        raise_file_limit();
        auto const kinds = kind_plan(o.devices, o.is_static ? std::array<double, 4>{1, 0, 0, 0} : parse_mix(o.mix));
        if (o.mode == Mode::seed) return o.is_static ? 0 : run_seed(o, kinds);
        return run_bench(o, kinds);
    } catch (std::exception const& e) {
        std::fprintf(stderr, "exemptd-loadgen: %s\n", e.what());
        return 2;
    }
}
