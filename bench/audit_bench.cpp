// Benchmark: verifying a 1,000,000-record audit chain (issue: at most 10 s here).
//
// Prints three figures, each run in this process on the same records:
//   baseline  SHA-256 over each record's canonical bytes, nothing else (the floor);
//   memory    AuditChainChecker over records held in memory;
//   store     SqliteStore::verify_audit() over a database file holding the chain.
// and the ratio of each to the baseline. No assertions: the machine is shared and noisy.
//
//   build/bench/exemptd_audit_bench [--records N] [--db PATH]

#include "exemptd/audit.hpp"
#include "exemptd/digest.hpp"
#include "exemptd/store.hpp"

#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start)
{
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// A chain shaped like the daemon's: check-in decisions, enrollments and exemption changes.
std::vector<exemptd::AuditRecord> make_chain(std::int64_t n)
{
    std::vector<exemptd::AuditRecord> chain;
    chain.reserve(static_cast<std::size_t>(n));
    std::string prev(exemptd::kGenesisHash);
    for (std::int64_t seq = 1; seq <= n; ++seq) {
        exemptd::AuditRecord r{seq, "2026-11-27T21:00:00Z", "exemptd", "decision.changed",
                               "device:LAPTOP-" + std::to_string(seq % 100000),
                               R"({"decision":"allow","basis":"exempted","previous":"deny"})", prev, {}};
        r.hash = exemptd::audit_hash(prev, r);
        prev = r.hash;
        chain.push_back(std::move(r));
    }
    return chain;
}

void write_chain(std::string const& path, std::vector<exemptd::AuditRecord> const& chain)
{
    { auto store = exemptd::open_sqlite_store(path); }  // creates the schema
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db, "INSERT INTO audit VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", -1, &stmt, nullptr);
    for (auto const& r : chain) {
        sqlite3_bind_int64(stmt, 1, r.seq);
        std::string const* texts[] = {&r.at, &r.actor, &r.action, &r.subject, &r.details, &r.prev_hash, &r.hash};
        for (int i = 0; i < 7; ++i)
            sqlite3_bind_text(stmt, i + 2, texts[i]->c_str(), static_cast<int>(texts[i]->size()), SQLITE_STATIC);
        sqlite3_step(stmt);
        sqlite3_reset(stmt);
    }
    sqlite3_finalize(stmt);
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    sqlite3_close(db);
}

}  // namespace

int main(int argc, char** argv)
{
    std::int64_t records = 1'000'000;
    std::string db_path = (std::filesystem::temp_directory_path() / "exemptd-audit-bench.db").string();
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--records") == 0) records = std::stoll(argv[i + 1]);
        if (std::strcmp(argv[i], "--db") == 0) db_path = argv[i + 1];
    }
    auto const chain = make_chain(records);

    auto start = Clock::now();
    std::size_t sink = 0;
    for (auto const& r : chain) sink += exemptd::sha256_hex(r.prev_hash + exemptd::audit_canonical_bytes(r)).size();
    double const baseline = seconds_since(start);

    start = Clock::now();
    exemptd::AuditChainChecker checker;
    for (auto const& r : chain) checker.feed(r);
    double const memory = seconds_since(start);

    std::filesystem::remove(db_path);
    write_chain(db_path, chain);
    auto store = exemptd::open_sqlite_store(db_path);
    start = Clock::now();
    auto const check = store->verify_audit();
    double const stored = seconds_since(start);

    std::printf("records            %lld\n", static_cast<long long>(records));
    std::printf("baseline sha256    %.2f s  (%.0f records/s)\n", baseline, records / baseline);
    std::printf("memory chain check %.2f s  (%.0f records/s)  ratio %.2f  ok=%d\n", memory, records / memory,
                memory / baseline, checker.result().ok);
    std::printf("store verify_audit %.2f s  (%.0f records/s)  ratio %.2f  ok=%d\n", stored, records / stored,
                stored / baseline, check && check->ok);
    std::filesystem::remove(db_path);
    return sink == 0;
}
