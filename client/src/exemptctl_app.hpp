#pragma once
// exemptctl as a function, so that main() stays a one-liner and tests can run it.

#include "connection_settings.hpp"

#include <iosfwd>

namespace exemptd::client {

// Parses the command line, runs the chosen command and returns the exit code: the command's (0
// success, 1 refused, 2 usage or connection error), 0 for --help and --version, 2 for a command
// line CLI11 refuses. Writes results to `out` and problems to `err`. Not thread-safe.
[[nodiscard]] int run_exemptctl(int argc, char const* const* argv, std::ostream& out, std::ostream& err,
                                EnvLookup const& env);

}  // namespace exemptd::client
