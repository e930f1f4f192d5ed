#include "daemon.hpp"

#include "exemptd/checkpoint.hpp"
#include "exemptd/config.hpp"
#include "exemptd/logging.hpp"
#include "exemptd/store.hpp"
#include "exemptd/thread_signals.hpp"
#include "exemptd/tls.hpp"
#include "metrics.hpp"
#include "router.hpp"
#include "server.hpp"

#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <sys/resource.h>

#include <atomic>
#include <stop_token>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

namespace exemptd::daemon {
namespace {

ServerTlsFiles tls_files(DaemonConfig const& config)
{
    return {config.tls_cert, config.tls_key, config.client_ca, config.client_crl};
}

// Writes the bound ports where a supervisor or a test can read them, atomically.
void write_ready_file(std::string const& path, Endpoint const& api, Endpoint const& metrics)
{
    auto const tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << "listen=" << api.host << ":" << api.port << "\n"
            << "metrics_listen=" << metrics.host << ":" << metrics.port << "\n";
    }
    std::filesystem::rename(tmp, path);
}

void audit_policy_load(Store& store, Policy const& policy)
{
    boost::json::object const details{{"version", policy.version}, {"source", policy.source},
                                      {"controls", policy.controls.size()}};
    auto const recorded = store.record({system_now(), "exemptd", "policy.loaded", "policy", boost::json::serialize(details)});
    if (!recorded) spdlog::error("event=audit_failed action=policy.loaded reason=\"{}\"", recorded.error().message());
}

// Loads the agreements CA and CRL; a failure keeps the verifier in force (none at start-up).
bool load_agreement_verifier(DaemonConfig const& config, Router& router)
{
    if (config.agreements_ca.empty()) return true;
    auto verifier = AgreementVerifier::load(config.agreements_ca, config.agreements_crl);
    if (!verifier) {
        spdlog::error("event=agreements_trust_refused reason=\"{}\"", verifier.error());
        return false;
    }
    if (!(*verifier)->crl_problem().empty())
        spdlog::error("event=agreements_crl_unusable reason=\"{}\" effect=\"uploads refused until fixed\"",
                      (*verifier)->crl_problem());
    router.set_agreement_verifier(std::move(*verifier));
    return true;
}

// Ends the stored agreements (and their cover) whose signer the agreements CRL now revokes. Runs
// on reload and at start-up: the CRL file may have changed while the daemon was stopped.
void revalidate_agreements(Router const& router)
{
    if (auto revoked = router.revalidate_agreements(); !revoked)
        spdlog::error("event=agreement_revalidation_failed reason=\"{}\"", revoked.error().message());
}

// SIGHUP: a new policy, agreements CA/CRL and TLS files; anything that fails to load leaves the
// old one in force. A new CRL ends the agreements (and their cover) whose signer it revokes.
SslCtxPtr reload(DaemonConfig const& config, Router& router, Store& store)
{
    sd_notify(0, "RELOADING=1");
    auto policy = load_policy_file(config.policy);
    if (!policy) {
        spdlog::error("event=policy_reload_refused reason=\"{}\"", policy.error().to_string());
    } else if (policy->version != router.policy()->version) {
        spdlog::info("event=policy_loaded version={} source={}", policy->version, policy->source);
        audit_policy_load(store, *policy);
        router.set_policy(std::make_shared<Policy const>(std::move(*policy)));
    }
    load_agreement_verifier(config, router);
    revalidate_agreements(router);
    auto tls = make_server_tls(tls_files(config));
    if (!tls) spdlog::error("event=tls_reload_refused reason=\"{}\"", tls.error());
    sd_notify(0, "READY=1");
    return tls ? std::move(*tls) : nullptr;
}

// Expires due exemptions and flags overdue reviews; runs at start-up and then periodically.
void sweep(Router const& router)
{
    auto const result = router.sweep();
    if (!result) {
        spdlog::error("event=sweep_failed reason=\"{}\"", result.error().message());
        return;
    }
    if (result->expired > 0 || result->reviews_overdue > 0 || result->redecided > 0)
        spdlog::info("event=sweep expired={} reviews_overdue={} redecided={}", result->expired, result->reviews_overdue,
                     result->redecided);
}

// Signs the audit chain's head and appends it to the checkpoint file (and the log), at start-up,
// every checkpoint_interval and on shutdown, so that verification can detect cut-off records.
class Checkpointer {
public:
    Checkpointer(DaemonConfig const& config, PkeyPtr key, Store const& store)
        : file_(config.checkpoint_file), key_(std::move(key)), store_(store)
    {
    }

    // Stops signing: a trail that disagrees with its last checkpoint must not get a fresh one
    // that would hide the damage. Thread-safe.
    void halt() { halted_ = true; }

    // Signs and appends a checkpoint of the current head. Called by one thread at a time.
    void write()
    {
        if (halted_) return;
        auto const now = system_now();
        auto head = store_.audit_head();
        if (!head) return spdlog::error("event=checkpoint_failed reason=\"{}\"", head.error().message());
        auto checkpoint = sign_checkpoint(key_.get(), head->first, head->second, now);
        if (!checkpoint) return spdlog::error("event=checkpoint_failed reason=\"{}\"", checkpoint.error());
        if (auto written = append_checkpoint(file_, *checkpoint); !written)
            return spdlog::error("event=checkpoint_failed reason=\"{}\"", written.error());
        spdlog::info("event=audit_checkpoint {}", checkpoint_to_line(*checkpoint));
    }

private:
    std::string file_;
    PkeyPtr key_;
    Store const& store_;
    std::atomic<bool> halted_{false};
};

// Runs the integrity check that the store deferred at open (the previous run stopped cleanly) on
// a thread of its own while the daemon serves. Damage found is logged with the reason start-up
// would give, the store already refuses writes, and `on_damage` stops the server; run_daemon then
// exits 1 so that the supervisor restarts exemptd into the check at open, which refuses the file.
class BackgroundCheck {
public:
    explicit BackgroundCheck(Store& store) : store_(store) {}

    // Starts the check, unless the store checked at open. Call once.
    void start(std::function<void()> on_damage)
    {
        if (!store_.integrity_check_deferred()) return;
        ScopedSignalBlock const no_signals;  // SIGTERM belongs to the server's signal_set
        thread_ = std::jthread([this, on_damage = std::move(on_damage)](std::stop_token stop) {
            if (run(stop)) on_damage();
        });
    }

    // Interrupts a check in progress and waits for it; must come before the server goes.
    void stop()
    {
        if (!thread_.joinable()) return;
        thread_.request_stop();
        thread_.join();
    }

    // True once a check has found damage.
    [[nodiscard]] bool found_damage() const { return damaged_; }

private:
    bool run(std::stop_token const& stop)
    {
        auto const started = std::chrono::steady_clock::now();
        auto const found = store_.check_integrity(stop);
        auto const ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
        if (!found) {
            if (!stop.stop_requested())
                spdlog::warn("event=integrity_check_failed reason=\"{}\" effect=\"the next start checks the file first\"",
                             found.error().message());
            return false;
        }
        if (!*found) {
            spdlog::info("event=integrity_checked result=ok check_ms={}", ms.count());
            return false;
        }
        spdlog::critical("event=database_corrupt reason=\"{}\" effect=\"writes refused, stopping; the restart "
                         "refuses the file\"", **found);
        damaged_ = true;
        return true;
    }

    Store& store_;
    std::atomic<bool> damaged_{false};
    std::jthread thread_;
};

// Half the WatchdogSec that systemd asks for, or nullopt when no watchdog is on.
std::optional<std::chrono::milliseconds> watchdog_interval()
{
    std::uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
    return std::max(std::chrono::milliseconds{1}, std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::microseconds{usec / 2}));
}

// File descriptors the daemon needs besides client connections: listeners, the database and
// its WAL per thread, the metrics listener's sessions, logs.
constexpr rlim_t kReservedFds = 256;

// Raises the soft RLIMIT_NOFILE to the hard limit, and warns when max_connections does not fit
// in it: the connections beyond it would fail at accept instead of being refused cleanly.
void raise_fd_limit(Limits const& limits)
{
    rlimit fds{};
    if (getrlimit(RLIMIT_NOFILE, &fds) != 0) return;
    if (fds.rlim_cur < fds.rlim_max) {
        rlimit raised = fds;
        raised.rlim_cur = fds.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) fds = raised;
    }
    if (fds.rlim_cur != RLIM_INFINITY && limits.max_connections + kReservedFds > fds.rlim_cur) {
        spdlog::warn("event=fd_limit_low max_connections={} nofile={} reserved={} effect=\"accepts fail (and are "
                     "retried) above about {} connections; raise LimitNOFILE= or lower limits.max_connections\"",
                     limits.max_connections, fds.rlim_cur, kReservedFds,
                     fds.rlim_cur > kReservedFds ? fds.rlim_cur - kReservedFds : 0);
    } else {
        spdlog::info("event=fd_limit nofile={} max_connections={}", fds.rlim_cur, limits.max_connections);
    }
}

int thread_count(DaemonConfig const& config)
{
    if (config.threads > 0) return config.threads;
    return static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
}

}  // namespace

int run_daemon(std::string const& config_path, std::string const& ready_file)
{
    auto config = load_config_file(config_path);
    if (!config) {
        std::cerr << "exemptd: " << config.error().to_string() << "\n";
        return 1;
    }
    setup_logging(config->log_level);
    auto policy = load_policy_file(config->policy);
    if (!policy) {
        spdlog::critical("event=start_failed reason=\"{}\"", policy.error().to_string());
        return 1;
    }
    auto tls = make_server_tls(tls_files(*config));
    if (!tls) {
        spdlog::critical("event=start_failed reason=\"{}\"", tls.error());
        return 1;
    }
    std::unique_ptr<Store> store;
    try {
        store = open_sqlite_store(config->database);
    } catch (std::exception const& e) {
        spdlog::critical("event=start_failed reason=\"{}\"", e.what());
        return 1;
    }
    spdlog::info("event=policy_loaded version={} source={}", policy->version, policy->source);
    audit_policy_load(*store, *policy);
    Metrics metrics(store.get());
    Router router(std::make_shared<Policy const>(std::move(*policy)), *store, metrics);
    if (!load_agreement_verifier(*config, router)) return 1;
    router.set_checkin_rate(config->limits.checkin_rate_per_minute);
    raise_fd_limit(config->limits);
    ServerOptions options;
    options.listen = config->listen;
    options.metrics_listen = config->metrics_listen;
    options.limits = config->limits;
    options.threads = thread_count(*config);
    options.handler_threads = config->handler_threads;
    options.on_reload = [&] { return reload(*config, router, *store); };
    options.on_stopping = [] { sd_notify(0, "STOPPING=1"); };
    auto key = load_private_key(config->tls_key);
    auto cert_key = load_certificate_key(config->tls_cert);
    if (!key || !cert_key) {
        spdlog::critical("event=start_failed reason=\"{}\"", !key ? key.error() : cert_key.error());
        return 1;
    }
    // Checkpoints are signed with the TLS key by default, so the server certificate verifies them.
    router.set_checkpoints(config->checkpoint_file, std::shared_ptr<EVP_PKEY>(cert_key->release(), PkeyFree{}));
    Checkpointer checkpointer(*config, std::move(*key), *store);
    BackgroundCheck integrity(*store);
    Server* serving = nullptr;  // set before run(), which calls on_ready
    options.on_ready = [&](Endpoint const& api, Endpoint const& metrics_endpoint) {
        if (!ready_file.empty()) write_ready_file(ready_file, api, metrics_endpoint);
        sd_notify(0, "READY=1");
        integrity.start([&] {
            checkpointer.halt();  // a head read from a damaged file must not be signed
            serving->stop();
        });
    };
    options.periodic.push_back({config->sweep_interval, [&] { sweep(router); }});
    options.periodic.push_back({config->checkpoint_interval, [&] { checkpointer.write(); }});
    if (auto const interval = watchdog_interval())
        options.periodic.push_back({*interval, [] { sd_notify(0, "WATCHDOG=1"); }, /*on_io_thread=*/true});
    if (auto problem = router.checkpoint_problem(); !problem || *problem) {
        spdlog::critical("event=audit_checkpoint_mismatch reason=\"{}\" effect=\"no new checkpoints until investigated\"",
                         problem ? **problem : problem.error().message());
        checkpointer.halt();
    }
    revalidate_agreements(router);
    sweep(router);
    checkpointer.write();
    Server server(std::move(options), std::move(*tls), router, metrics);
    serving = &server;
    server.run();
    integrity.stop();
    // Stopping already: a second SIGTERM must not cut the final checkpoint (or exit with 143
    // once the server's handlers are gone). The threads still running (the store's committer,
    // the request handler pool until it is joined) block these signals from birth, so blocking
    // them in this thread leaves none to take them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    for (int const s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop_signals, s);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    checkpointer.write();
    if (integrity.found_damage()) {
        spdlog::critical("event=stopped exit=1 reason=\"the database is corrupt\"");
        return 1;
    }
    spdlog::info("event=stopped");
    return 0;
}

int check_policy(std::string const& path)
{
    auto policy = load_policy_file(path);
    if (!policy) {
        std::cerr << "exemptd: " << policy.error().to_string() << "\n";
        return 1;
    }
    std::cout << "exemptd: " << path << " is valid (" << policy->controls.size() << " controls, " << policy->version
              << ")\n";
    return 0;
}

int check_config(std::string const& path)
{
    if (looks_like_policy(path)) return check_policy(path);
    auto config = load_config_file(path);
    if (!config) {
        std::cerr << "exemptd: " << config.error().to_string() << "\n";
        return 1;
    }
    return check_policy(config->policy);
}

int backup(std::string const& config_path, std::string const& destination)
{
    auto config = load_config_file(config_path);
    if (!config) {
        std::cerr << "exemptd: " << config.error().to_string() << "\n";
        return 1;
    }
    setup_logging(config->log_level);
    if (auto copied = backup_sqlite_database(config->database, destination); !copied) {
        auto const reason = copied.error() == make_error_code(Errc::not_found) ? "there is no database file there"
                                                                                : copied.error().message();
        std::cerr << "exemptd: backup of " << config->database << " to " << destination << " failed: " << reason
                  << "\n";
        return 1;
    }
    std::cout << "exemptd: backed up " << config->database << " to " << destination << "\n";
    return 0;
}

}  // namespace exemptd::daemon
