#pragma once
// The network side of the daemon: the mutual-TLS API listener, the plain loopback listener for
// /healthz and /metrics, one io_context per thread, and signal handling. Beast and Asio stay in
// server.cpp behind this header.

#include "exemptd/config.hpp"
#include "exemptd/tls.hpp"

#include <functional>
#include <memory>
#include <vector>

namespace exemptd::daemon {

class Router;
class Metrics;

// Work the server runs every `every` while serving, one run at a time. Work that waits for the
// disk (the sweeper's durable commit, an audit checkpoint) runs on the handler pool, so that it
// never holds up requests; work on the I/O thread (the systemd watchdog) stalls with it, which
// is what a watchdog is for.
struct PeriodicTask {
    std::chrono::milliseconds every;
    std::function<void()> run;
    bool on_io_thread = false;
};

struct ServerOptions {
    Endpoint listen;
    Endpoint metrics_listen;
    Limits limits;
    int threads = 1;          // I/O threads, one io_context each
    int handler_threads = 8;  // threads that run requests; they may block on the database
    std::chrono::seconds shutdown_grace{10};
    // Called once both listeners are bound, with the ports actually bound.
    std::function<void(Endpoint const& api, Endpoint const& metrics)> on_ready;
    // Called on SIGHUP from an I/O thread; returns a new TLS context to use for new connections,
    // or nullptr to keep the current one.
    std::function<SslCtxPtr()> on_reload;
    // Called on SIGTERM/SIGINT before the listeners close.
    std::function<void()> on_stopping;
    std::vector<PeriodicTask> periodic;
};

class Server {
public:
    // `router` and `metrics` must outlive the server.
    Server(ServerOptions options, SslCtxPtr tls, Router const& router, Metrics& metrics);
    ~Server();
    Server(Server const&) = delete;
    Server& operator=(Server const&) = delete;

    // Binds the listeners, serves until SIGTERM/SIGINT (or stop()), then lets requests in flight
    // finish within the grace period. Blocks; throws std::system_error when a listener cannot bind.
    void run();

    // Starts the same graceful stop as SIGTERM. Thread-safe.
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace exemptd::daemon
