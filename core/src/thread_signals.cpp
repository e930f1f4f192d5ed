#include "exemptd/thread_signals.hpp"

#include <pthread.h>

#include <initializer_list>

namespace exemptd {

ScopedSignalBlock::ScopedSignalBlock() noexcept
{
    sigset_t blocked;
    sigfillset(&blocked);
    // A fault raised while its signal is blocked kills the process without running any handler
    // (and so without a sanitizer report): leave the synchronous signals alone.
    for (int const s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT}) sigdelset(&blocked, s);
    pthread_sigmask(SIG_BLOCK, &blocked, &previous_);
}

ScopedSignalBlock::~ScopedSignalBlock()
{
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
}

}  // namespace exemptd
