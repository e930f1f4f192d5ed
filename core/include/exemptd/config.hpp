#pragma once
// The daemon's configuration file (SPEC §9).

#include "exemptd/policy.hpp"

#include <chrono>
#include <cstdint>
#include <string>

namespace exemptd {

struct Endpoint {
    std::string host;
    std::uint16_t port = 0;  // 0: an ephemeral port
};

// Limits that protect the daemon from slow or oversized clients.
struct Limits {
    std::size_t max_body_bytes = 64 * 1024;
    std::size_t max_header_bytes = 16 * 1024;
    std::chrono::seconds handshake_timeout{10};
    std::chrono::seconds request_timeout{15};
    std::chrono::seconds idle_timeout{60};
    // Open client connections, overall and from one address (0: no per-address cap). A
    // connection over a cap is closed right after accept, before its TLS handshake.
    std::size_t max_connections = 20000;
    std::size_t max_connections_per_address = 0;
    // Check-ins one device may make per minute (a burst of that many, then one every 60/N s);
    // 0: no limit.
    int checkin_rate_per_minute = 12;
};

struct DaemonConfig {
    Endpoint listen{"127.0.0.1", 8443};
    std::string tls_cert;
    std::string tls_key;
    std::string client_ca;
    std::string client_crl;  // optional
    std::string database;
    std::string policy;
    std::string agreements_ca;
    std::string agreements_crl;  // optional
    Endpoint metrics_listen{"127.0.0.1", 9464};
    std::string log_level = "info";
    int threads = 0;  // I/O threads; 0: one per core
    int handler_threads = 32;  // run requests, which may wait for the database
    std::chrono::seconds sweep_interval{60};
    std::string checkpoint_file;  // default: the database path + ".checkpoints"
    std::chrono::seconds checkpoint_interval{10 * 60};  // SPEC: at least every 15 minutes
    Limits limits;
};

// Parses "host:port" ("127.0.0.1:8443", "[::1]:8443"). Thread-safe.
[[nodiscard]] std::optional<Endpoint> parse_endpoint(std::string_view text);

// Loads the YAML configuration strictly (unknown keys and wrong types are refused with file,
// line and reason); relative paths resolve against the file's folder. Thread-safe.
[[nodiscard]] boost::system::result<DaemonConfig, LoadError> load_config_file(std::string const& path);

}  // namespace exemptd
