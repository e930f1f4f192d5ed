#pragma once
// CLI11 conventions both tools share: "PROGRAM: message" errors and exit code 2 for bad usage.

#include "https_client.hpp"

#include <iosfwd>
#include <string>
#include <string_view>

namespace CLI {
class App;
class ParseError;
}  // namespace CLI

namespace exemptd::client {

// Sets up `app` for `program`: --version printing "PROGRAM VERSION", and parse errors printed as
// "PROGRAM: message" followed by a --help hint.
void set_up_cli(CLI::App& app, std::string const& program, std::string const& version);

// Registers --server, --cert, --key, --ca (into `flags`) and --config (into `config`), grouped
// under a title that names the ENV_PREFIX_* variables; `default_config` is shown in the help.
void add_connection_options(CLI::App& app, ConnectionSettings& flags, std::string& config,
                            std::string_view env_prefix, std::string_view default_config);

// Prints a parse error (or the --help / --version text) and returns the exit code: 0 for help
// and version, 2 for every real parse error.
[[nodiscard]] int exit_for_parse_error(CLI::App const& app, CLI::ParseError const& e, std::ostream& out,
                                       std::ostream& err);

}  // namespace exemptd::client
