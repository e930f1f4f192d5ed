#include "exemptd/store.hpp"
#include "exemptd/thread_signals.hpp"

#include <catch2/catch.hpp>
#include <pthread.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>

namespace {

sigset_t current_mask()
{
    sigset_t mask;
    pthread_sigmask(SIG_SETMASK, nullptr, &mask);
    return mask;
}

// Whether the calling thread blocks `signal`.
bool blocked_here(int signal)
{
    sigset_t const mask = current_mask();
    return sigismember(&mask, signal) == 1;
}

std::set<std::string> task_ids()
{
    std::set<std::string> ids;
    for (auto const& entry : std::filesystem::directory_iterator("/proc/self/task")) ids.insert(entry.path().filename());
    return ids;
}

// Whether thread `tid` of this process blocks `signal`, from its SigBlk line in /proc.
bool task_blocks(std::string const& tid, int signal)
{
    std::ifstream status("/proc/self/task/" + tid + "/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("SigBlk:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> (signal - 1)) & 1U;
    }
    FAIL("no SigBlk line for thread " << tid);
    return false;
}

}  // namespace

TEST_CASE("A thread started under ScopedSignalBlock never takes SIGTERM, and the caller's mask comes back",
          "[signals]")
{
    REQUIRE_FALSE(blocked_here(SIGTERM));
    sigset_t in_thread{};
    {
        exemptd::ScopedSignalBlock const block;
        CHECK(blocked_here(SIGTERM));
        std::thread([&in_thread] { in_thread = current_mask(); }).join();
    }
    for (int const s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGPIPE}) {
        INFO("signal " << s);
        CHECK(sigismember(&in_thread, s) == 1);
        CHECK_FALSE(blocked_here(s));
    }
    // Faults must still reach their handlers (and the sanitizers' reports).
    for (int const s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
        INFO("signal " << s);
        CHECK(sigismember(&in_thread, s) == 0);
    }
}

TEST_CASE("The store's threads block the daemon's stop signals", "[signals][store]")
{
    auto const before = task_ids();
    auto store = exemptd::open_sqlite_store(":memory:");
    REQUIRE(store);
    int started = 0;
    for (auto const& tid : task_ids()) {
        if (before.contains(tid)) continue;
        ++started;
        INFO("thread " << tid);
        CHECK(task_blocks(tid, SIGTERM));
        CHECK(task_blocks(tid, SIGHUP));
    }
    CHECK(started == 2);  // the committer and the checkpointer
}
