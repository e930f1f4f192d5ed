#include "exemptd/config.hpp"

#include "yaml_util.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <filesystem>

namespace exemptd {
namespace {

using yaml::expect_keys;
using yaml::integer;
using yaml::refuse;

// Reads a path and resolves it against the configuration file's folder.
std::string path(YAML::Node const& node, std::string_view what, std::filesystem::path const& base)
{
    if (!node.IsScalar() || node.Scalar().empty()) refuse(node, std::string(what) + " must be a path");
    std::filesystem::path p = node.Scalar();
    return (p.is_relative() ? base / p : p).lexically_normal().string();
}

// 127.0.0.0/8 or ::1, written as an address (the listener takes no names).
bool is_loopback_address(std::string const& host)
{
    in_addr v4{};
    if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    in6_addr v6{};
    return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

Endpoint endpoint(YAML::Node const& node, std::string_view what)
{
    auto const parsed = node.IsScalar() ? parse_endpoint(node.Scalar()) : std::nullopt;
    if (!parsed) refuse(node, std::string(what) + " must be host:port, such as 127.0.0.1:8443");
    return *parsed;
}

void read_tls(YAML::Node const& tls, std::filesystem::path const& base, DaemonConfig& config)
{
    expect_keys(tls, "tls", {"cert", "key", "client_ca", "client_crl"});
    for (auto const* key : {"cert", "key", "client_ca"}) {
        if (!tls[key]) refuse(tls, std::string("tls needs ") + key);
    }
    config.tls_cert = path(tls["cert"], "tls.cert", base);
    config.tls_key = path(tls["key"], "tls.key", base);
    config.client_ca = path(tls["client_ca"], "tls.client_ca", base);
    if (tls["client_crl"]) config.client_crl = path(tls["client_crl"], "tls.client_crl", base);
}

void read_limits(YAML::Node const& limits, DaemonConfig& config)
{
    expect_keys(limits, "limits", {"max_body_bytes", "max_header_bytes", "handshake_timeout_seconds",
                                   "request_timeout_seconds", "idle_timeout_seconds", "max_connections",
                                   "max_connections_per_address", "checkin_rate_per_minute"});
    auto& l = config.limits;
    if (limits["max_body_bytes"]) l.max_body_bytes = integer(limits["max_body_bytes"], "max_body_bytes", 1024, 16 << 20);
    if (limits["max_header_bytes"])
        l.max_header_bytes = integer(limits["max_header_bytes"], "max_header_bytes", 1024, 1 << 20);
    if (limits["handshake_timeout_seconds"])
        l.handshake_timeout = std::chrono::seconds{integer(limits["handshake_timeout_seconds"], "handshake_timeout_seconds", 1, 300)};
    if (limits["request_timeout_seconds"])
        l.request_timeout = std::chrono::seconds{integer(limits["request_timeout_seconds"], "request_timeout_seconds", 1, 300)};
    if (limits["idle_timeout_seconds"])
        l.idle_timeout = std::chrono::seconds{integer(limits["idle_timeout_seconds"], "idle_timeout_seconds", 1, 3600)};
    if (limits["max_connections"])
        l.max_connections = static_cast<std::size_t>(integer(limits["max_connections"], "max_connections", 1, 1'000'000));
    if (limits["max_connections_per_address"])
        l.max_connections_per_address = static_cast<std::size_t>(
            integer(limits["max_connections_per_address"], "max_connections_per_address", 0, 1'000'000));
    if (limits["checkin_rate_per_minute"])
        l.checkin_rate_per_minute =
            static_cast<int>(integer(limits["checkin_rate_per_minute"], "checkin_rate_per_minute", 0, 6000));
}

DaemonConfig parse_config(YAML::Node const& root, std::filesystem::path const& base)
{
    expect_keys(root, "the configuration", {"listen", "tls", "database", "policy", "agreements", "metrics_listen",
                                            "log_level", "threads", "handler_threads", "limits", "sweep_interval_seconds",
                                            "audit_checkpoint"});
    for (auto const* key : {"tls", "database", "policy"}) {
        if (!root[key]) refuse(root, std::string("the configuration needs ") + key);
    }
    DaemonConfig config;
    if (root["listen"]) config.listen = endpoint(root["listen"], "listen");
    read_tls(root["tls"], base, config);
    config.database = path(root["database"], "database", base);
    config.policy = path(root["policy"], "policy", base);
    if (auto const agreements = root["agreements"]) {
        expect_keys(agreements, "agreements", {"ca", "crl"});
        if (!agreements["ca"]) refuse(agreements, "agreements needs ca");
        config.agreements_ca = path(agreements["ca"], "agreements.ca", base);
        if (agreements["crl"]) config.agreements_crl = path(agreements["crl"], "agreements.crl", base);
    }
    if (root["metrics_listen"]) {
        config.metrics_listen = endpoint(root["metrics_listen"], "metrics_listen");
        // /healthz and /metrics answer anyone who connects, without TLS (SPEC §4: a loopback
        // listener); a scraper elsewhere reaches them through a proxy or tunnel of its own.
        if (!is_loopback_address(config.metrics_listen.host))
            refuse(root["metrics_listen"], "metrics_listen must be a loopback address (127.0.0.1 or [::1]): it has no TLS");
    }
    if (auto const level = root["log_level"]) {
        static constexpr std::string_view kLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
        if (!level.IsScalar() || std::find(std::begin(kLevels), std::end(kLevels), level.Scalar()) == std::end(kLevels))
            refuse(level, "log_level must be trace, debug, info, warn, error, critical or off");
        config.log_level = level.Scalar();
    }
    if (root["threads"]) config.threads = static_cast<int>(integer(root["threads"], "threads", 0, 256));
    if (root["handler_threads"])
        config.handler_threads = static_cast<int>(integer(root["handler_threads"], "handler_threads", 1, 1024));
    if (root["limits"]) read_limits(root["limits"], config);
    config.checkpoint_file = config.database + ".checkpoints";
    if (auto const cp = root["audit_checkpoint"]) {
        expect_keys(cp, "audit_checkpoint", {"file", "interval_seconds"});
        if (cp["file"]) config.checkpoint_file = path(cp["file"], "audit_checkpoint.file", base);
        if (cp["interval_seconds"])
            config.checkpoint_interval = std::chrono::seconds{integer(cp["interval_seconds"], "interval_seconds", 1, 900)};
    }
    if (root["sweep_interval_seconds"])
        config.sweep_interval = std::chrono::seconds{integer(root["sweep_interval_seconds"], "sweep_interval_seconds", 1, 3600)};
    return config;
}

}  // namespace

std::optional<Endpoint> parse_endpoint(std::string_view text)
{
    auto const colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    std::string_view host = text.substr(0, colon);
    if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    auto const port_text = text.substr(colon + 1);
    unsigned port = 0;
    auto const [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (host.empty() || ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535)
        return std::nullopt;
    return Endpoint{std::string(host), static_cast<std::uint16_t>(port)};
}

boost::system::result<DaemonConfig, LoadError> load_config_file(std::string const& path)
{
    try {
        auto const base = std::filesystem::absolute(path).parent_path();
        return parse_config(YAML::LoadFile(path), base);
    } catch (yaml::Refusal const& r) {
        return LoadError{path, r.line, r.reason};
    } catch (YAML::BadFile const&) {
        return LoadError{path, 0, "cannot read the file"};
    } catch (YAML::Exception const& e) {
        return LoadError{path, e.mark.is_null() ? 0 : e.mark.line + 1, e.msg};
    }
}

}  // namespace exemptd
