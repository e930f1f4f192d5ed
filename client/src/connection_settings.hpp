#pragma once
// Where a tool finds its connection settings: flags, else environment variables, else a config file.

#include "client_error.hpp"
#include "https_client.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace exemptd::client {

// Looks up one environment variable; the tools pass a wrapper around getenv, tests a map.
using EnvLookup = std::function<std::optional<std::string>(std::string const& name)>;

// The process environment as an EnvLookup. Thread-safe as long as nobody calls setenv.
[[nodiscard]] EnvLookup process_environment();

// Reads the keys server, cert, key and ca (all optional strings) from config-file YAML; relative
// paths resolve against `base_dir`. Refuses other keys and non-string values with
// "FILE:LINE: reason". Pure and thread-safe.
[[nodiscard]] ClientResult<ConnectionSettings> parse_connection_yaml(std::string_view yaml,
                                                                     std::string const& file_name,
                                                                     std::string const& base_dir);

// Reads PREFIX_SERVER, PREFIX_CERT, PREFIX_KEY and PREFIX_CA; unset or empty variables stay empty.
[[nodiscard]] ConnectionSettings settings_from_env(std::string_view prefix, EnvLookup const& lookup);

// Field by field, the first non-empty value of `flags`, `env` and `file`. Pure.
[[nodiscard]] ConnectionSettings merge_settings(ConnectionSettings const& flags, ConnectionSettings const& env,
                                                ConnectionSettings const& file);

// Succeeds when every field is set; otherwise names the first missing one and the three places it
// can come from, e.g. "no server given: use --server, EXEMPTCTL_SERVER or server: in FILE". Pure.
[[nodiscard]] ClientResult<void> require_complete(ConnectionSettings const& settings, std::string_view env_prefix,
                                                  std::string const& config_path);

// "$XDG_CONFIG_HOME/exemptd/FILE", else "$HOME/.config/exemptd/FILE", else "" when neither is
// set. Pure.
[[nodiscard]] std::string default_user_config_path(std::string_view file_name,
                                                   std::optional<std::string> const& xdg_config_home,
                                                   std::optional<std::string> const& home);

// What a tool knows before resolving its connection.
struct ConnectionSources {
    ConnectionSettings flags;
    std::string config_flag;          // --config FILE; such a file must exist
    std::string default_config_path;  // used when --config is absent; may be missing
    std::string env_prefix;           // "EXEMPTCTL" or "EXEMPT_AGENT"
};

// The whole chain: flags, then PREFIX_* variables, then the config file; fails when the config
// file cannot be read or parsed, or when a setting is still missing. Reads files; thread-safe.
[[nodiscard]] ClientResult<ConnectionSettings> resolve_connection(ConnectionSources const& sources,
                                                                  EnvLookup const& lookup);

}  // namespace exemptd::client
