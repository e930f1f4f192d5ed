// exemptd-hold-connections: opens many client connections to a server and holds them, for the
// hostile integration test (tests/integration/hostile_test.sh). A loop of `openssl s_client`
// processes would cost a process and a handshake's worth of fork/exec each; this holds
// thousands from one process.
//
//   exemptd-hold-connections PORT COUNT HOLD_SECONDS [CA CERT KEY [CHECKINS DEVICE_ID]]
//   exemptd-hold-connections upload PORT CA CERT KEY HEAD_FILE BODY_BYTES
//
// Opens COUNT TCP connections to 127.0.0.1:PORT one after the other; with CA, CERT and KEY it
// also completes a TLS handshake on each (a refused or closed one counts as failed). Prints
// `opened=N failed=M` once all are tried, then holds them for HOLD_SECONDS (or until SIGUSR1),
// prints `open=N closed=M` (closed: the server ended it), and exits. With CHECKINS, a SIGUSR2
// while holding sends one POST /v1/checkin for DEVICE_ID (a fresh nonce each) on each of the
// first CHECKINS connections, reads the answers and prints `checked_in=N statuses=S,...`; the
// connections stay open (for bench/idle.sh). Exit code 0, or 2 for bad arguments or set-up
// failures.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <string>
#include <string_view>
#include <algorithm>
#include <vector>

namespace {

struct Connection {
    int fd = -1;
    SSL* ssl = nullptr;
};

int connect_to(int port, int send_buffer = 0)
{
    int const fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (send_buffer > 0) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer);
    timeval timeout{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

SSL_CTX* client_context(char const* ca, char const* cert, char const* key)
{
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == nullptr || SSL_CTX_load_verify_locations(ctx, ca, nullptr) != 1 ||
        SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        return nullptr;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    return ctx;
}

// True when the server has closed (or reset) the connection. POLLRDHUP reports the server's FIN
// even behind data nobody read (a TLS 1.3 session ticket), where a peek would see the data.
bool closed_by_server(Connection const& c)
{
    pollfd p{c.fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if ((p.revents & (POLLHUP | POLLERR | POLLRDHUP)) != 0) return true;
    char byte = 0;
    ssize_t const n = ::recv(c.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    // TLS 1.3 session tickets arrive after the handshake: data is not a close.
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

volatile std::sig_atomic_t g_release = 0;
volatile std::sig_atomic_t g_check_in = 0;

// A posture report for `device` with a nonce of its own; `i` tells the connections apart.
std::string checkin_request(std::string const& device, int i)
{
    char at[32];
    std::time_t const now = std::time(nullptr);
    std::strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    std::string const body = R"({"device_id": ")" + device + R"(", "hostname": "host", "serial": "SN-1", )" +
                             R"("os": {"name": "debian", "version": "12.8"}, "facts": {"disk_encrypted": true, )" +
                             R"("firewall_enabled": true, "os_patch_age_days": 12, "screen_lock_seconds": 300}, )" +
                             R"("agent_version": "0.1.0", "reported_at": ")" + at + R"(", "nonce": "hold-)" +
                             std::to_string(now) + "-" + std::to_string(i) + R"("})";
    return "POST /v1/checkin HTTP/1.1\r\nHost: exemptd\r\nContent-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Sends `request` on `c` and reads the whole answer (Content-Length framed); its status code,
// or "000" when the exchange failed.
std::string exchange(Connection const& c, std::string const& request)
{
    if (SSL_write(c.ssl, request.data(), static_cast<int>(request.size())) != static_cast<int>(request.size()))
        return "000";
    std::string answer;
    char chunk[4096];
    for (;;) {
        auto const end = answer.find("\r\n\r\n");
        if (end != std::string::npos) {
            auto const at = answer.find("Content-Length: ");
            std::size_t const length = at < end ? std::strtoul(answer.c_str() + at + 16, nullptr, 10) : 0;
            if (answer.size() >= end + 4 + length) break;
        }
        int const n = SSL_read(c.ssl, chunk, sizeof chunk);
        if (n <= 0) return "000";
        answer.append(chunk, static_cast<std::size_t>(n));
    }
    return answer.size() > 12 && answer.compare(0, 5, "HTTP/") == 0 ? answer.substr(9, 3) : "000";
}

// One check-in on each of the first `count` connections; prints how they were answered.
void check_in_on(std::vector<Connection> const& open, int count, std::string const& device)
{
    std::map<std::string, int> statuses;
    int done = 0;
    for (int i = 0; i < count && i < static_cast<int>(open.size()); ++i, ++done)
        ++statuses[exchange(open[static_cast<std::size_t>(i)], checkin_request(device, i))];
    std::string summary;
    for (auto const& [status, n] : statuses) summary += (summary.empty() ? "" : ",") + status + ":" + std::to_string(n);
    std::printf("checked_in=%d statuses=%s\n", done, summary.c_str());
    std::fflush(stdout);
}

// Holds for `seconds` or until SIGUSR1; a SIGUSR2 meanwhile runs `on_check_in` once.
template <class OnCheckIn>
void wait_for(int seconds, OnCheckIn on_check_in)
{
    auto const until = std::chrono::steady_clock::now() + std::chrono::seconds{seconds};
    while (g_release == 0 && std::chrono::steady_clock::now() < until) {
        if (g_check_in != 0) {
            g_check_in = 0;
            on_check_in();
        }
        ::usleep(50'000);
    }
}

int upload(int argc, char** argv)
{
    if (argc != 8) {
        std::fprintf(stderr, "usage: %s upload PORT CA CERT KEY HEAD_FILE BODY_BYTES\n", argv[0]);
        return 2;
    }
    SSL_CTX* ctx = client_context(argv[3], argv[4], argv[5]);
    std::FILE* head_file = std::fopen(argv[6], "rb");
    if (ctx == nullptr || head_file == nullptr) {
        std::fprintf(stderr, "cannot load the client certificate, key, CA or head file\n");
        return 2;
    }
    std::string head(65536, '\0');
    head.resize(std::fread(head.data(), 1, head.size(), head_file));
    std::fclose(head_file);
    long long const body_bytes = std::atoll(argv[7]);
    int const fd = connect_to(std::atoi(argv[2]), 8192);
    SSL* ssl = fd < 0 ? nullptr : SSL_new(ctx);
    if (ssl == nullptr || (SSL_set_fd(ssl, fd), SSL_connect(ssl)) != 1) {
        std::printf("sent=0 status=000\n");
        return 0;
    }
    long long sent = 0;
    if (SSL_write(ssl, head.data(), static_cast<int>(head.size())) == static_cast<int>(head.size())) {
        std::string const chunk(16384, 'x');
        while (sent < body_bytes) {
            int const n = static_cast<int>(std::min<long long>(static_cast<long long>(chunk.size()), body_bytes - sent));
            if (SSL_write(ssl, chunk.data(), n) != n) break;
            sent += n;
        }
    }
    char answer[13] = {};
    int const got = SSL_read(ssl, answer, 12);
    std::string const status = got == 12 && std::string_view(answer, 5) == "HTTP/" ? std::string(answer + 9, 3) : "000";
    std::printf("sent=%lld status=%s\n", sent, status.c_str());
    SSL_free(ssl);
    ::close(fd);
    SSL_CTX_free(ctx);
    return 0;
}

}  // namespace

int main(int argc, char** argv)
{
    std::signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && std::string_view(argv[1]) == "upload") return upload(argc, argv);
    if (argc != 4 && argc != 7 && argc != 9) {
        std::fprintf(stderr, "usage: %s PORT COUNT HOLD_SECONDS [CA CERT KEY [CHECKINS DEVICE_ID]]\n", argv[0]);
        return 2;
    }
    int const port = std::atoi(argv[1]);
    int const count = std::atoi(argv[2]);
    int const hold = std::atoi(argv[3]);
    int const checkins = argc == 9 ? std::atoi(argv[7]) : 0;
    std::string const device = argc == 9 ? argv[8] : "";
    std::signal(SIGUSR1, [](int) { g_release = 1; });
    std::signal(SIGUSR2, [](int) { g_check_in = 1; });
    rlimit fds{};
    if (::getrlimit(RLIMIT_NOFILE, &fds) == 0 && fds.rlim_cur < fds.rlim_max) {
        fds.rlim_cur = fds.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &fds);
    }
    SSL_CTX* ctx = nullptr;
    if (argc >= 7 && (ctx = client_context(argv[4], argv[5], argv[6])) == nullptr) {
        std::fprintf(stderr, "cannot load the client certificate, key or CA\n");
        return 2;
    }
    std::vector<Connection> open;
    int failed = 0;
    for (int i = 0; i < count; ++i) {
        Connection c{connect_to(port), nullptr};
        if (c.fd >= 0 && ctx != nullptr) {
            c.ssl = SSL_new(ctx);
            SSL_set_fd(c.ssl, c.fd);
            if (SSL_connect(c.ssl) != 1) {
                ERR_clear_error();
                SSL_free(c.ssl);
                ::close(c.fd);
                c.fd = -1;
            }
        }
        if (c.fd < 0) ++failed;
        else open.push_back(c);
    }
    std::printf("opened=%zu failed=%d\n", open.size(), failed);
    std::fflush(stdout);
    wait_for(hold, [&] {
        if (ctx != nullptr && checkins > 0) check_in_on(open, checkins, device);
    });
    int closed = 0;
    for (auto const& c : open) closed += closed_by_server(c) ? 1 : 0;
    std::printf("open=%d closed=%d\n", static_cast<int>(open.size()) - closed, closed);
    std::fflush(stdout);
    for (auto& c : open) {
        if (c.ssl != nullptr) SSL_free(c.ssl);
        ::close(c.fd);
    }
    if (ctx != nullptr) SSL_CTX_free(ctx);
    return 0;
}
