#pragma once
// Keeping process signals (SIGTERM, SIGHUP, ...) off the threads that do not handle them.

#include <csignal>

namespace exemptd {

// While alive, blocks every asynchronous signal in the calling thread; the destructor restores the
// previous mask. A thread started meanwhile inherits the blocked mask, so a signal sent to the
// process never lands on it: the kernel picks a thread that handles the signal, or keeps it
// pending when none does. Synchronous signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS,
// SIGABRT) stay deliverable, so crashes and sanitizer reports still work. Affects the calling
// thread only.
class ScopedSignalBlock {
public:
    ScopedSignalBlock() noexcept;
    ~ScopedSignalBlock();
    ScopedSignalBlock(ScopedSignalBlock const&) = delete;
    ScopedSignalBlock& operator=(ScopedSignalBlock const&) = delete;

private:
    sigset_t previous_{};
};

}  // namespace exemptd
