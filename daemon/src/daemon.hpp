#pragma once
// Start-up and life cycle of the exemptd process, kept out of main() so it is testable.

#include <string>

namespace exemptd::daemon {

// Loads the configuration and policy, opens the store, serves until SIGTERM and returns the
// process exit code (0 after a clean stop, 1 when start-up fails, with the reason logged).
// When `ready_file` is not empty, writes the bound ports to it once serving.
[[nodiscard]] int run_daemon(std::string const& config_path, std::string const& ready_file);

// Loads the configuration and its policy (or, for a file with `controls:`, just that policy),
// prints what is wrong, and returns 0 when everything loads, 1 otherwise.
[[nodiscard]] int check_config(std::string const& path);

// Loads a policy file, prints what is wrong (file:line: reason), returns 0 when valid, else 1.
[[nodiscard]] int check_policy(std::string const& path);

// Copies the database named by the configuration at `config_path` to `destination` with
// backup_sqlite_database (safe while another exemptd serves it), prints the outcome and returns 0
// on success, 1 with the reason on stderr otherwise.
[[nodiscard]] int backup(std::string const& config_path, std::string const& destination);

}  // namespace exemptd::daemon
