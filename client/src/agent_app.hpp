#pragma once
// exempt-agent as a function, so that main() stays a one-liner and tests can run it.

#include "connection_settings.hpp"

#include <iosfwd>

namespace exemptd::client {

// Parses the command line and runs the agent (see run_agent); returns its exit code, 0 for --help
// and --version, 2 for a command line CLI11 refuses. Without --once it returns only on a fatal
// error. Not thread-safe.
[[nodiscard]] int run_exempt_agent(int argc, char const* const* argv, std::ostream& out, std::ostream& err,
                                   EnvLookup const& env);

}  // namespace exemptd::client
