// Benchmark: the store's check-in path without the network, against raw SQLite in the same run.
//
// Prints two figures, each run in this process for --seconds on its own database file:
//   baseline  raw SQLite: upserting one row per check-in (device id, facts, time) into a
//             WITHOUT ROWID table, --clients rows per transaction, WAL and synchronous=NORMAL
//             (the cheapest write a check-in could be);
//   store     SqliteStore::check_in_async with --clients check-ins in flight (closed loop) over
//             --devices imported devices, a mix of compliant, grace and denied reports,
//             evaluated against policies/default.yaml;
// then the ratio store/baseline and the process CPU per check-in. No assertions: the machine is
// shared and noisy.
//
//   build/bench/exemptd_store_bench [--devices 1000] [--clients 64] [--seconds 5] [--dir DIR]

#include "exemptd/evaluator.hpp"
#include "exemptd/policy.hpp"
#include "exemptd/store.hpp"

#include <sqlite3.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Steady = std::chrono::steady_clock;

struct Options {
    int devices = 1000;
    int clients = 64;
    double seconds = 5;
    std::string dir;
};

double cpu_seconds()
{
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    auto const tv = [](timeval t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return tv(u.ru_utime) + tv(u.ru_stime);
}

std::string device_id(int i)
{
    char id[32];
    std::snprintf(id, sizeof id, "LOAD-%06d", i);
    return id;
}

// Every tenth device reports an unpatched OS (grace under default.yaml), every tenth another an
// unencrypted disk (denied); the rest comply.
exemptd::Facts facts_of(int device)
{
    exemptd::Facts f{{"disk_encrypted", true},
                     {"firewall_enabled", true},
                     {"screen_lock_seconds", std::int64_t{300}},
                     {"os_patch_age_days", std::int64_t{12}}};
    if (device % 10 == 1) f["os_patch_age_days"] = std::int64_t{45};
    if (device % 10 == 2) f["disk_encrypted"] = false;
    return f;
}

void check(int rc, sqlite3* db, char const* what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        throw std::runtime_error(std::string(what) + ": " + sqlite3_errmsg(db));
}

// Rows per second for batches of `batch` single-row upserts.
double raw_upserts(std::string const& path, Options const& o)
{
    sqlite3* db = nullptr;
    check(sqlite3_open(path.c_str(), &db), db, "open");
    check(sqlite3_exec(db,
                       "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                       "CREATE TABLE devices (device_id TEXT PRIMARY KEY, facts TEXT, at INTEGER) WITHOUT ROWID;",
                       nullptr, nullptr, nullptr),
          db, "schema");
    sqlite3_stmt* upsert = nullptr;
    check(sqlite3_prepare_v2(db,
                             "INSERT INTO devices VALUES (?1, ?2, ?3) ON CONFLICT (device_id) DO UPDATE SET "
                             "facts = ?2, at = ?3",
                             -1, &upsert, nullptr),
          db, "prepare");
    std::string const facts = R"({"disk_encrypted":true,"firewall_enabled":true,"os_patch_age_days":12,"screen_lock_seconds":300})";
    std::int64_t rows = 0;
    auto const start = Steady::now();
    auto const end = start + std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(o.seconds));
    while (Steady::now() < end) {
        check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
        for (int i = 0; i < o.clients; ++i, ++rows) {
            auto const id = device_id(static_cast<int>(rows % o.devices));
            sqlite3_bind_text(upsert, 1, id.c_str(), -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(upsert, 2, facts.c_str(), -1, SQLITE_STATIC);
            sqlite3_bind_int64(upsert, 3, rows);
            check(sqlite3_step(upsert), db, "upsert");
            sqlite3_reset(upsert);
        }
        check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
    }
    auto const elapsed = std::chrono::duration<double>(Steady::now() - start).count();
    sqlite3_finalize(upsert);
    sqlite3_close(db);
    return static_cast<double>(rows) / elapsed;
}

// Keeps `clients` check-ins in flight until the deadline; each answer sends the next report.
class CheckinLoop {
public:
    CheckinLoop(exemptd::Store& store, exemptd::Evaluate evaluate, Options const& o)
        : store_(store), evaluate_(std::move(evaluate)), options_(o)
    {
    }

    // Check-ins answered per second; throws when one is refused.
    double run()
    {
        deadline_ = Steady::now() + std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(options_.seconds));
        auto const start = Steady::now();
        in_flight_ = options_.clients;
        for (int i = 0; i < options_.clients; ++i) send();
        std::unique_lock lock(mutex_);
        finished_.wait(lock, [this] { return in_flight_ == 0; });
        if (!failure_.empty()) throw std::runtime_error(failure_);
        auto const elapsed = std::chrono::duration<double>(Steady::now() - start).count();
        return static_cast<double>(answered_.load()) / elapsed;
    }

private:
    void send()
    {
        auto const n = sent_.fetch_add(1);
        int const device = static_cast<int>(n % static_cast<std::uint64_t>(options_.devices));
        auto const now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
        exemptd::PostureReport report{device_id(device), "host", "SERIAL", "Debian", "12", facts_of(device),
                                      "bench", now, "nonce-" + std::to_string(n)};
        store_.check_in_async(std::move(report), evaluate_, now, std::chrono::seconds{660},
                              [this](exemptd::ApiResult<exemptd::EncodedDecision> decision) { answered(decision); });
    }

    void answered(exemptd::ApiResult<exemptd::EncodedDecision> const& decision)
    {
        if (decision) ++answered_;
        if (decision && Steady::now() < deadline_) return send();
        std::lock_guard lock(mutex_);
        if (!decision && failure_.empty()) failure_ = "check-in refused: " + decision.error().message;
        if (--in_flight_ == 0) finished_.notify_one();
    }

    exemptd::Store& store_;
    exemptd::Evaluate evaluate_;
    Options const& options_;
    Steady::time_point deadline_;
    static inline std::atomic<std::uint64_t> sent_{0};  // shared by every loop: nonces stay fresh
    std::atomic<std::uint64_t> answered_{0};
    std::mutex mutex_;
    std::condition_variable finished_;
    int in_flight_ = 0;
    std::string failure_;
};

double store_checkins(std::string const& path, Options const& o, double& cpu_us_per_checkin)
{
    auto policy = exemptd::load_policy_file(EXEMPTD_SOURCE_DIR "/policies/default.yaml");
    if (!policy) throw std::runtime_error("policies/default.yaml: " + policy.error().to_string());
    auto const shared = std::make_shared<exemptd::Policy const>(std::move(*policy));
    auto const now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
    auto const evaluate = exemptd::policy_evaluator(shared, now);

    auto store = exemptd::open_sqlite_store(path);
    std::vector<exemptd::EnrollmentRow> rows;
    for (int i = 0; i < o.devices; ++i) rows.push_back({device_id(i), true, "", "bench", 0});
    if (!store->import_enrollments(rows, {"bench", now, std::string(64, '0')}, evaluate))
        throw std::runtime_error("seeding the devices failed");

    CheckinLoop warmup(*store, evaluate, Options{o.devices, o.clients, 1, o.dir});
    warmup.run();  // every device has checked in once: later check-ins change no decision
    auto const cpu0 = cpu_seconds();
    auto const start = Steady::now();
    double const rate = CheckinLoop(*store, evaluate, o).run();
    auto const elapsed = std::chrono::duration<double>(Steady::now() - start).count();
    cpu_us_per_checkin = (cpu_seconds() - cpu0) * 1e6 / (rate * elapsed);
    return rate;
}

Options parse(int argc, char** argv)
{
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string const arg = argv[i];
        if (i + 1 >= argc) throw std::runtime_error("usage: exemptd_store_bench [--devices N] [--clients C] [--seconds S] [--dir DIR]");
        char const* value = argv[++i];
        if (arg == "--devices") o.devices = std::atoi(value);
        else if (arg == "--clients") o.clients = std::atoi(value);
        else if (arg == "--seconds") o.seconds = std::atof(value);
        else if (arg == "--dir") o.dir = value;
        else throw std::runtime_error("unknown option " + arg);
    }
    if (o.devices < 1 || o.clients < 1 || o.seconds <= 0) throw std::runtime_error("options must be positive");
    return o;
}

}  // namespace

int main(int argc, char** argv)
try {
    auto o = parse(argc, argv);
    namespace fs = std::filesystem;
    bool const own_dir = o.dir.empty();
    if (own_dir) {
        std::string templ = (fs::temp_directory_path() / "exemptd-store-bench.XXXXXX").string();
        if (mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        o.dir = templ;
    }
    // As the store's connections do; it must come before the baseline's first sqlite3_open.
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    double const baseline = raw_upserts(o.dir + "/raw.db", o);
    std::printf("baseline  raw SQLite upserts, %d per transaction: %.0f rows/s\n", o.clients, baseline);
    double cpu_us = 0;
    double const store = store_checkins(o.dir + "/store.db", o, cpu_us);
    std::printf("store     check-ins, %d in flight, %d devices:   %.0f /s (%.1f us CPU each)\n", o.clients, o.devices,
                store, cpu_us);
    std::printf("store_vs_raw_upserts=%.3f\n", store / baseline);
    if (own_dir) fs::remove_all(o.dir);
    return 0;
} catch (std::exception const& e) {
    std::fprintf(stderr, "exemptd_store_bench: %s\n", e.what());
    return 1;
}
