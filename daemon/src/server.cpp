#include "server.hpp"

#include "connection_gate.hpp"
#include "deadline_socket.hpp"
#include "exemptd/identity.hpp"
#include "exemptd/thread_signals.hpp"
#include "metrics.hpp"
#include "router.hpp"
#include "tls_stream.hpp"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <unordered_set>

namespace exemptd::daemon {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

using Token = net::as_tuple_t<net::use_awaitable_t<>>;
using TcpStream = Token::as_default_on_t<beast::tcp_stream>;  // the metrics listener's
// An API connection's socket names its io_context's executor type rather than the type-erased
// any_io_executor: every composed operation on it (a TLS step, an HTTP read, a write) takes a work
// guard on that executor, which for any_io_executor is a type-erased copy and destroy (3% of an
// I/O thread's time).
using WorkerSocket = net::basic_stream_socket<tcp, net::io_context::executor_type>;
using ApiTcpSocket = Token::as_default_on_t<WorkerSocket>;
using ApiSocket = DeadlineSocket<ApiTcpSocket>;
// Our own TLS stream, not beast::ssl_stream: Asio's holds 70 KB of buffers per connection for
// its whole life (README, "Idle connections").
using SessionStream = TlsStream<ApiSocket>;
using Acceptor = Token::as_default_on_t<tcp::acceptor>;

constexpr auto kShutdownTimeout = std::chrono::seconds{2};
constexpr auto kDrainTimeout = std::chrono::seconds{2};
// How often each worker closes the connections past their deadline (DeadlineSocket): timeouts
// take effect up to this much late.
constexpr auto kReapInterval = std::chrono::milliseconds{250};
// How long the accept loop pauses after a failed accept (out of file descriptors): the
// connection waits in the backlog rather than the loop spinning.
constexpr auto kAcceptBackoff = std::chrono::milliseconds{100};

auto log_if_thrown(std::string_view what)
{
    return [what](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (std::exception const& ex) {
            spdlog::error("event=coroutine_failed what={} reason=\"{}\"", what, ex.what());
        }
    };
}

std::string peer_string(WorkerSocket const& socket)
{
    boost::system::error_code ec;
    auto const ep = socket.remote_endpoint(ec);
    return ec ? std::string("unknown") : ep.address().to_string() + ":" + std::to_string(ep.port());
}

std::string certificate_subject(SSL* ssl)
{
    X509* cert = SSL_get0_peer_certificate(ssl);
    if (cert == nullptr) return {};
    char buffer[256];
    X509_NAME_oneline(X509_get_subject_name(cert), buffer, sizeof buffer);
    return buffer;
}

// Sorts a failed handshake for the metrics: the certificate check's verdict first, then how
// the connection failed.
HandshakeFailure classify_handshake_failure(SSL* ssl, boost::system::error_code const& ec)
{
    if (ec == beast::error::timeout) return HandshakeFailure::timeout;
    switch (SSL_get_verify_result(ssl)) {
    case X509_V_OK: break;
    case X509_V_ERR_CERT_REVOKED: return HandshakeFailure::certificate_revoked;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID: return HandshakeFailure::certificate_expired;
    default: return HandshakeFailure::untrusted_certificate;
    }
    if (ec.category() == net::error::get_ssl_category() &&
        ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        return HandshakeFailure::no_certificate;
    if (ec == net::error::eof || ec == ssl::error::stream_truncated || ec == net::error::connection_reset ||
        ec == net::error::broken_pipe)
        return HandshakeFailure::connection_closed;
    return HandshakeFailure::protocol_error;
}

tcp::endpoint to_asio(Endpoint const& e)
{
    return {net::ip::make_address(e.host), e.port};
}

// Runs `work` on `pool` and resumes the awaiting coroutine on its own executor with the result,
// so a request that waits for a database commit never blocks an I/O thread.
template <class Work>
net::awaitable<HttpResponse> run_on(net::thread_pool& pool, Work work)
{
    return net::async_initiate<net::use_awaitable_t<> const, void(HttpResponse)>(
        [&pool](auto handler, Work w) {
            auto io = net::prefer(net::get_associated_executor(handler), net::execution::outstanding_work.tracked);
            net::post(pool, [handler = std::move(handler), w = std::move(w), io = std::move(io)]() mutable {
                net::post(io, [handler = std::move(handler), answer = w()]() mutable { std::move(handler)(std::move(answer)); });
            });
        },
        net::use_awaitable, std::move(work));
}

// A pool of `threads` (at least one) for request handlers. Its threads never take SIGTERM or
// SIGHUP: those belong to the server's signal_set, and a SIGTERM landing on a pool thread after the
// signal_set is gone, while the pool is being joined, would kill the process (exit 143).
net::thread_pool make_handler_pool(int threads)
{
    ScopedSignalBlock const no_signals;
    return net::thread_pool{static_cast<std::size_t>(std::max(1, threads))};
}

// Lets one warning a second through and counts the ones it holds back, so that a flood (of
// refused connections, of failed accepts) cannot flood the log. Not thread-safe: one per loop.
class WarnThrottle {
public:
    // True when a warning may be logged now; `held_back` is then how many were not logged
    // since the last one that was.
    bool allow(std::uint64_t& held_back)
    {
        auto const now = std::chrono::steady_clock::now();
        if (now < next_) {
            ++held_;
            return false;
        }
        next_ = now + std::chrono::seconds{1};
        held_back = std::exchange(held_, 0);
        return true;
    }

private:
    std::chrono::steady_clock::time_point next_{};
    std::uint64_t held_ = 0;
};

// What resumes a session's coroutine with its check-in's answer.
using CheckinHandler = net::async_result<net::use_awaitable_t<>, void(HttpResponse)>::handler_type;

// Check-in outcomes from the store's commit thread on their way to one worker's sessions. The
// commit thread gives a batch's outcomes one after another; the first of them posts one drain
// and the rest join it, so that a batch wakes the worker's thread once rather than once per
// check-in (each wake is a reactor interrupt, and often a contended lock, on both threads). The
// answer is made from the outcome on the worker's thread. put() is thread-safe; drain() runs on
// the worker's thread.
class CheckinInbox {
public:
    CheckinInbox(net::io_context& ioc, Router const& router) : ioc_(ioc), router_(router) {}

    void put(CheckinHandler handler, ApiResult<EncodedDecision> outcome)
    {
        bool first = false;
        {
            std::lock_guard lock(mutex_);
            first = waiting_.empty();
            waiting_.push_back({std::move(handler), std::move(outcome)});
        }
        if (first) net::post(ioc_, [this] { drain(); });
    }

private:
    struct Waiting {
        CheckinHandler handler;
        ApiResult<EncodedDecision> outcome;
    };

    void drain()
    {
        {
            std::lock_guard lock(mutex_);
            std::swap(draining_, waiting_);
        }
        for (auto& w : draining_) {
            // An answer that cannot be made (only std::bad_alloc is possible) must not stop the
            // rest, nor leave draining_ full: the next swap would put its leftovers in waiting_, and
            // no put() would ever post a drain again. Its session ends unanswered: destroying a
            // handler that was never called destroys the coroutine, which closes the connection.
            try {
                std::move(w.handler)(router_.checkin_response(std::move(w.outcome)));
            } catch (std::exception const& e) {
                spdlog::error("event=checkin_answer_failed reason=\"{}\"", e.what());
            }
        }
        draining_.clear();  // keeps its capacity for the next batch
    }

    net::io_context& ioc_;
    Router const& router_;
    std::mutex mutex_;
    std::vector<Waiting> waiting_;
    std::vector<Waiting> draining_;  // the worker's thread only
};

// One io_context and the sessions living on it; touched only from its own thread.
struct Worker {
    struct Slot {
        ApiSocket* stream;
        bool idle;
    };
    explicit Worker(Router const& router) : checkins(ioc, router) {}

    net::io_context ioc{1};
    net::executor_work_guard<net::io_context::executor_type> guard{ioc.get_executor()};
    std::unordered_set<Slot*> sessions;
    CheckinInbox checkins;
};

}  // namespace

struct Server::Impl {
    Impl(ServerOptions o, SslCtxPtr tls_ctx, Router const& r, Metrics& m)
        : options(std::move(o)), tls(std::make_shared<ssl::context>(tls_ctx.release())), router(r), metrics(m)
    {
        for (int i = 0; i < std::max(1, options.threads); ++i) workers.push_back(std::make_unique<Worker>(router));
    }
    ~Impl()
    {
        handlers.join();
        // The store outlives the server and answers every queued check-in soon.
        while (checkins_in_store.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds{1});
    }

    std::shared_ptr<ssl::context> current_tls()
    {
        std::lock_guard lock(tls_mutex);
        return tls;
    }

    Worker& next_worker() { return *workers[next++ % workers.size()]; }

    void bind();
    void begin_stop();
    void finish_stop();
    net::awaitable<void> accept_api();
    net::awaitable<void> accept_metrics();
    net::awaitable<void> wait_for_sessions();
    net::awaitable<void> handle_signals();
    net::awaitable<void> repeat(PeriodicTask const& task);
    net::awaitable<void> reap_expired(Worker& worker);
    // A ticket for a connection just accepted, or nullopt after closing it because it is over a
    // connection cap (counted and, at most once a second, logged).
    std::optional<ConnectionGate::Ticket> admit_connection(WorkerSocket& socket);
    net::awaitable<void> run_session(Worker& worker, WorkerSocket socket, std::shared_ptr<ssl::context> tls_ctx,
                                     ConnectionGate::Ticket ticket);
    net::awaitable<void> serve_requests(SessionStream& stream, Worker& worker, Worker::Slot& slot, ClientId const& client);
    net::awaitable<void> run_metrics_session(tcp::socket socket);
    net::awaitable<HttpResponse> check_in(Worker& worker, ClientId const& client, std::string const& body);

    ServerOptions options;
    std::mutex tls_mutex;
    std::shared_ptr<ssl::context> tls;
    Router const& router;
    Metrics& metrics;
    std::vector<std::unique_ptr<Worker>> workers;
    net::thread_pool handlers{make_handler_pool(options.handler_threads)};
    std::size_t next = 0;
    ConnectionGate gate{options.limits.max_connections, options.limits.max_connections_per_address};
    WarnThrottle refusal_warnings;  // accept loop only
    WarnThrottle accept_warnings;   // accept loop only
    std::optional<Acceptor> api_acceptor;
    std::optional<Acceptor> metrics_acceptor;
    std::optional<net::signal_set> signals;
    std::atomic<bool> stopping{false};
    std::atomic<int> active_sessions{0};
    std::atomic<int> checkins_in_store{0};  // check-ins whose answer the store has yet to give
};

namespace {

Acceptor open_acceptor(net::io_context& ioc, Endpoint const& where)
{
    Acceptor acceptor{ioc};
    auto const ep = to_asio(where);
    acceptor.open(ep.protocol());
    acceptor.set_option(net::socket_base::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(net::socket_base::max_listen_connections);
    return acceptor;
}

Endpoint bound(Acceptor const& acceptor)
{
    auto const ep = acceptor.local_endpoint();
    return {ep.address().to_string(), ep.port()};
}

// Counts a session for the graceful stop and registers it with its worker.
class SessionGuard {
public:
    SessionGuard(std::atomic<int>& active, Worker& worker, Worker::Slot& slot) : active_(active), worker_(worker), slot_(slot)
    {
        active_.fetch_add(1);
        worker_.sessions.insert(&slot_);
    }
    ~SessionGuard()
    {
        worker_.sessions.erase(&slot_);
        active_.fetch_sub(1);
    }
    SessionGuard(SessionGuard const&) = delete;
    SessionGuard& operator=(SessionGuard const&) = delete;

private:
    std::atomic<int>& active_;
    Worker& worker_;
    Worker::Slot& slot_;
};

// After refusing a request whose body was not read, reads and discards what the client still
// sends (bounded) so that closing the socket does not reset the connection before the client
// has read the answer.
net::awaitable<void> drain_and_close(ApiSocket& stream, std::size_t max_bytes);

// Waits up to `timeout` for the first bytes of a next request, without a read buffer: an idle
// connection holds no memory for it; false when the connection closed, failed or stayed idle too
// long.
net::awaitable<bool> wait_for_request(SessionStream& stream, std::chrono::seconds timeout)
{
    beast::get_lowest_layer(stream).expires_after(timeout);
    auto [ec] = co_await stream.async_wait_input();
    co_return !ec;
}

// Parses the part of the body that came with the headers (usually all of it) from `buffer`, as
// http::async_read would before reading more, but without its trip through the io_context when
// nothing is left to read. The error async_read would report; none when more bytes are needed.
boost::system::error_code parse_buffered_body(http::request_parser<http::string_body>& parser,
                                              beast::flat_buffer& buffer)
{
    boost::system::error_code ec;
    parser.eager(true);
    while (buffer.size() > 0 && !parser.is_done()) {
        auto const used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        if (ec == http::error::need_more) return {};
        if (ec || used == 0) break;
    }
    return ec;
}

net::awaitable<void> drain_and_close(ApiSocket& stream, std::size_t max_bytes)
{
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.expires_after(kDrainTimeout);
    std::array<char, 16384> sink;
    for (std::size_t total = 0; total < max_bytes;) {
        auto [ec, n] = co_await stream.async_read_some(net::buffer(sink));
        if (ec) break;
        total += n;
    }
    stream.close();
}

}  // namespace

void Server::Impl::bind()
{
    api_acceptor.emplace(open_acceptor(workers[0]->ioc, options.listen));
    metrics_acceptor.emplace(open_acceptor(workers[0]->ioc, options.metrics_listen));
    spdlog::info("event=listening api={}:{} metrics={}:{}", options.listen.host, bound(*api_acceptor).port,
                 options.metrics_listen.host, bound(*metrics_acceptor).port);
    if (options.on_ready) options.on_ready(bound(*api_acceptor), bound(*metrics_acceptor));
}

net::awaitable<void> Server::Impl::accept_api()
{
    net::steady_timer backoff{workers[0]->ioc};
    while (!stopping) {
        Worker& worker = next_worker();
        WorkerSocket socket{worker.ioc};
        auto [ec] = co_await api_acceptor->async_accept(socket);
        if (ec) {
            if (stopping || ec == net::error::operation_aborted) break;
            // Typically out of file descriptors: retrying at once would spin and log in a loop.
            if (std::uint64_t held = 0; accept_warnings.allow(held))
                spdlog::warn("event=accept_failed reason=\"{}\" suppressed={}", ec.message(), held);
            backoff.expires_after(kAcceptBackoff);
            co_await backoff.async_wait(Token{});
            continue;
        }
        auto ticket = admit_connection(socket);
        if (!ticket) continue;
        net::co_spawn(worker.ioc, run_session(worker, std::move(socket), current_tls(), std::move(*ticket)),
                      log_if_thrown("session"));
    }
}

std::optional<ConnectionGate::Ticket> Server::Impl::admit_connection(WorkerSocket& socket)
{
    boost::system::error_code ec;
    auto const ep = socket.remote_endpoint(ec);
    auto ticket = gate.admit(ec ? std::string("unknown") : ep.address().to_string());
    if (ticket) return std::move(*ticket);
    metrics.count_connection_refused(ticket.error());
    if (std::uint64_t held = 0; refusal_warnings.allow(held)) {
        spdlog::warn("event=connection_refused peer={} reason={} open={} suppressed={}", peer_string(socket),
                     to_string(ticket.error()), gate.open(), held);
    }
    socket.close(ec);  // before any TLS work: a flood costs an accept and a close each
    return std::nullopt;
}

net::awaitable<void> Server::Impl::run_session(Worker& worker, WorkerSocket socket, std::shared_ptr<ssl::context> tls_ctx,
                                               [[maybe_unused]] ConnectionGate::Ticket ticket)
{
    auto const peer = peer_string(socket);
    SessionStream stream{ApiSocket{ApiTcpSocket{std::move(socket)}}, *tls_ctx};
    auto& lowest = beast::get_lowest_layer(stream);
    Worker::Slot slot{&lowest, false};
    SessionGuard const guard{active_sessions, worker, slot};
    metrics.connection_opened();
    struct Closed {
        Metrics& m;
        ~Closed() { m.connection_closed(); }
    } const closed{metrics};

    lowest.expires_after(options.limits.handshake_timeout);
    if (auto [ec] = co_await stream.async_handshake(ssl::stream_base::server); ec) {
        metrics.count_handshake_failure(classify_handshake_failure(stream.native_handle(), ec));
        spdlog::info("event=handshake_failed peer={} reason=\"{}\"", peer, ec.message());
        co_return;
    }
    auto const subject = certificate_subject(stream.native_handle());
    auto const client = identity_from_certificate(SSL_get0_peer_certificate(stream.native_handle()));
    if (!client) {
        metrics.count_handshake_failure(HandshakeFailure::invalid_identity);
        spdlog::warn("event=client_refused peer={} subject=\"{}\" reason=\"certificate carries no valid exemptd identity\"",
                     peer, subject);
        co_return;
    }
    spdlog::debug("event=connected peer={} subject=\"{}\" role={}", peer, subject, to_string(client->role));
    co_await serve_requests(stream, worker, slot, *client);
}

net::awaitable<void> Server::Impl::serve_requests(SessionStream& stream, Worker& worker, Worker::Slot& slot,
                                                  ClientId const& client)
{
    auto& lowest = beast::get_lowest_layer(stream);
    auto const& limits = options.limits;
    beast::flat_buffer buffer;
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
        // The route is not known yet: a declared Content-Length is checked against the route's own
        // limit after admit().
        parser.body_limit(Router::largest_body_limit(limits.max_body_bytes));
        slot.idle = buffer.size() == 0;
        // An idle connection keeps no buffer from the last request; this frees a request's worth
        // (up to its largest header or body read) per open connection.
        if (slot.idle) buffer.shrink_to_fit();
        if (stopping && slot.idle) break;
        if (slot.idle && !co_await wait_for_request(stream, limits.idle_timeout)) break;
        slot.idle = false;
        // One deadline from the request's first byte to its last, headers and body together, so
        // a client that trickles bytes is closed at it however it paces them.
        auto const deadline = std::chrono::steady_clock::now() + limits.request_timeout;
        lowest.expires_at(deadline);
        auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser);
        if (hec == http::error::end_of_stream || hec == ssl::error::stream_truncated) break;
        std::optional<HttpResponse> refusal;
        if (hec == http::error::header_limit)
            refusal = error_response(api_error(431, "headers_too_large", "The request headers are too large."));
        else if (hec == http::error::body_limit)  // a declared Content-Length above the limit
            refusal = error_response(api_error(413, "body_too_large", "The request body is larger than the limit."));
        else if (hec && hec.category() == make_error_code(http::error::bad_target).category())
            refusal = error_response(api_error(400, "bad_request", "The request is not valid HTTP/1.1."));
        else if (hec)
            break;  // timeout or connection failure: nothing to answer
        auto const started = std::chrono::steady_clock::now();
        auto& header = parser.get();
        std::optional<Route> route;
        if (!refusal) {
            auto admitted = router.admit(client, header.method_string(), header.target());
            if (admitted) route = std::move(*admitted);
            else refusal = error_response(admitted.error());
            auto const body_limit = route ? Router::body_limit(route->action, limits.max_body_bytes) : limits.max_body_bytes;
            parser.body_limit(body_limit);  // enforced on a chunked body as it is read
            if (route && parser.content_length().value_or(0) > body_limit)
                refusal = error_response(api_error(413, "body_too_large", "The request body is larger than the limit."));
        }
        if (refusal) {
            // The body (if any) stays unread, so the connection cannot carry another request.
            auto const res = encode_response(*refusal, hec ? 11 : header.version(), false);
            lowest.expires_after(limits.request_timeout);
            co_await net::async_write(stream, net::buffer(res));
            metrics.observe_request(std::nullopt, refusal->status, std::chrono::steady_clock::now() - started);
            co_await drain_and_close(lowest, limits.max_body_bytes);
            co_return;
        }
        if (beast::iequals(header[http::field::expect], "100-continue")) {
            http::response<http::empty_body> cont{http::status::continue_, header.version()};
            co_await http::async_write(stream, cont);
        }
        auto bec = parse_buffered_body(parser, buffer);
        if (!bec && !parser.is_done()) {
            lowest.expires_at(deadline);
            auto [ec, n] = co_await http::async_read(stream, buffer, parser);
            bec = ec;
        }
        // The handler's time (a store commit, a large import) is no part of the request's deadline.
        lowest.expires_never();
        HttpResponse answer;
        bool keep_alive = header.keep_alive() && !stopping;
        if (bec == http::error::body_limit) {
            answer = error_response(api_error(413, "body_too_large", "The request body is larger than the limit."));
            keep_alive = false;
        } else if (bec) {
            break;
        } else {
            // Not a conditional expression: g++ 12 destroys a co_await temporary there twice.
            if (route->action == Action::checkin) {
                answer = co_await check_in(worker, client, parser.get().body());
            } else {
                answer = co_await run_on(handlers, [this, &client, &route, &parser] {
                    return router.handle(client, *route, parser.get().body(),
                                         parser.get()[http::field::content_type]);
                });
            }
        }
        auto const res = encode_response(answer, header.version(), keep_alive);
        lowest.expires_after(limits.request_timeout);  // the handler's time (a large import) is not the write's
        auto [wec, wn] = co_await net::async_write(stream, net::buffer(res));
        metrics.observe_request(route->action, answer.status, std::chrono::steady_clock::now() - started);
        if (bec == http::error::body_limit) {
            // The rest of the body is unread, as after a refusal. A TLS shutdown would fail on the
            // client's next record and close at once: the kernel then resets the connection and
            // drops the 413 if it still waits in the send queue (seen under load with ASan).
            co_await drain_and_close(lowest, limits.max_body_bytes);
            co_return;
        }
        if (wec || !keep_alive) break;
    }
    lowest.expires_after(kShutdownTimeout);
    co_await stream.async_shutdown();  // peers may skip close_notify; the result does not matter
}

// Check-ins skip the handler pool: the store's commit thread answers them, and the outcome goes
// back to this session's worker through its inbox (the worker's guard keeps its io_context
// running meanwhile).
net::awaitable<HttpResponse> Server::Impl::check_in(Worker& worker, ClientId const& client, std::string const& body)
{
    return net::async_initiate<net::use_awaitable_t<> const, void(HttpResponse)>(
        [this, &worker, &client, &body](CheckinHandler handler) {
            // CheckinDone must be copyable; the coroutine's handler is move-only.
            auto shared = std::make_shared<CheckinHandler>(std::move(handler));
            checkins_in_store.fetch_add(1);
            auto reply = [this, &worker, shared](ApiResult<EncodedDecision> outcome) {
                worker.checkins.put(std::move(*shared), std::move(outcome));
                checkins_in_store.fetch_sub(1);
            };
            try {
                router.check_in_async(client, body, reply);
            } catch (std::exception const& e) {
                spdlog::error("event=handler_failed route=checkin reason=\"{}\"", e.what());
                reply(api_error(500, "internal_error", "The daemon failed to handle the request."));
            }
        },
        net::use_awaitable);
}

net::awaitable<void> Server::Impl::accept_metrics()
{
    while (!stopping) {
        tcp::socket socket{workers[0]->ioc};
        auto [ec] = co_await metrics_acceptor->async_accept(socket);
        if (ec) {
            if (stopping || ec == net::error::operation_aborted) break;
            continue;
        }
        net::co_spawn(workers[0]->ioc, run_metrics_session(std::move(socket)), log_if_thrown("metrics session"));
    }
}

net::awaitable<void> Server::Impl::run_metrics_session(tcp::socket socket)
{
    TcpStream stream{std::move(socket)};
    beast::flat_buffer buffer;
    http::request_parser<http::empty_body> parser;
    parser.header_limit(8192);
    stream.expires_after(options.limits.request_timeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser);
    if (ec) co_return;
    auto const& req = parser.get();
    HttpResponse answer;
    if (req.method() != http::verb::get)
        answer = error_response(api_error(405, "method_not_allowed", "Only GET is served here."));
    else if (req.target() == "/healthz")
        answer = {200, stopping ? R"({"status":"stopping"})" : R"({"status":"ok"})"};
    else if (req.target() == "/metrics")
        answer = {200, metrics.render(), "text/plain; version=0.0.4"};
    else
        answer = error_response(api_error(404, "not_found", "There is no such route."));
    auto const res = encode_response(answer, req.version(), false);
    co_await net::async_write(stream, net::buffer(res));
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

net::awaitable<void> Server::Impl::handle_signals()
{
    for (;;) {
        auto [ec, signal] = co_await signals->async_wait(Token{});
        if (ec) co_return;
        if (signal != SIGHUP) {
            spdlog::info("event=stopping signal={}", signal);
            begin_stop();
            co_return;
        }
        if (!options.on_reload) continue;
        if (auto fresh = options.on_reload()) {
            std::lock_guard lock(tls_mutex);
            tls = std::make_shared<ssl::context>(fresh.release());
        }
    }
}

net::awaitable<void> Server::Impl::repeat(PeriodicTask const& task)
{
    net::steady_timer timer{workers[0]->ioc};
    while (!stopping) {
        timer.expires_after(task.every);
        auto [ec] = co_await timer.async_wait(Token{});
        if (ec || stopping) break;
        if (task.on_io_thread) {
            task.run();
        } else {
            co_await net::co_spawn(
                handlers, [&task]() -> net::awaitable<void> { task.run(); co_return; }, net::use_awaitable);
        }
    }
}

// Stops accepting, wakes sessions that wait for a next request, and lets the rest finish.
void Server::Impl::begin_stop()
{
    if (stopping.exchange(true)) return;
    if (options.on_stopping) options.on_stopping();
    net::post(workers[0]->ioc, [this] {
        boost::system::error_code ignored;
        api_acceptor->close(ignored);
        metrics_acceptor->close(ignored);
        net::co_spawn(workers[0]->ioc, wait_for_sessions(), log_if_thrown("shutdown"));
    });
    for (auto& worker : workers) {
        net::post(worker->ioc, [w = worker.get()] {
            for (auto* slot : w->sessions) {
                if (slot->idle) slot->stream->cancel();
            }
        });
    }
}

// Closes this worker's connections that are past their deadline, every kReapInterval, until
// the worker stops.
net::awaitable<void> Server::Impl::reap_expired(Worker& worker)
{
    net::steady_timer timer{worker.ioc};
    for (;;) {
        timer.expires_after(kReapInterval);
        if (auto [ec] = co_await timer.async_wait(Token{}); ec) co_return;
        auto const now = std::chrono::steady_clock::now();
        for (auto* slot : worker.sessions) slot->stream->close_if_expired(now);
    }
}

net::awaitable<void> Server::Impl::wait_for_sessions()
{
    net::steady_timer timer{workers[0]->ioc};
    auto const deadline = std::chrono::steady_clock::now() + options.shutdown_grace;
    while (active_sessions.load() > 0 && std::chrono::steady_clock::now() < deadline) {
        timer.expires_after(std::chrono::milliseconds{20});
        co_await timer.async_wait(Token{});
    }
    if (active_sessions.load() > 0)
        spdlog::warn("event=shutdown_grace_expired sessions={}", active_sessions.load());
    finish_stop();
}

void Server::Impl::finish_stop()
{
    for (auto& worker : workers) {
        worker->guard.reset();
        worker->ioc.stop();
    }
}

Server::Server(ServerOptions options, SslCtxPtr tls, Router const& router, Metrics& metrics)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(tls), router, metrics))
{
}

Server::~Server() = default;

void Server::run()
{
    auto& main_ioc = impl_->workers[0]->ioc;
    // Signals are caught before the ready notice, so a SIGTERM right after it stops cleanly.
    impl_->signals.emplace(main_ioc, SIGTERM, SIGINT, SIGHUP);
    impl_->bind();
    net::co_spawn(main_ioc, impl_->accept_api(), log_if_thrown("api acceptor"));
    net::co_spawn(main_ioc, impl_->accept_metrics(), log_if_thrown("metrics acceptor"));
    net::co_spawn(main_ioc, impl_->handle_signals(), log_if_thrown("signals"));
    for (auto const& task : impl_->options.periodic) net::co_spawn(main_ioc, impl_->repeat(task), log_if_thrown("periodic"));
    for (auto& worker : impl_->workers)
        net::co_spawn(worker->ioc, impl_->reap_expired(*worker), log_if_thrown("deadlines"));
    std::vector<std::jthread> threads;
    for (std::size_t i = 1; i < impl_->workers.size(); ++i)
        threads.emplace_back([w = impl_->workers[i].get()] { w->ioc.run(); });
    main_ioc.run();
}

void Server::stop()
{
    impl_->begin_stop();
}

}  // namespace exemptd::daemon
