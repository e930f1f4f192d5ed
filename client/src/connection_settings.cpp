#include "connection_settings.hpp"

#include "file_util.hpp"

#include <yaml-cpp/yaml.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <utility>

namespace exemptd::client {
namespace {

namespace fs = std::filesystem;

struct Field {
    std::string_view key;       // the config-file key
    std::string_view suffix;    // the environment variable suffix
    std::string_view flag;      // the command-line flag
    std::string ConnectionSettings::*member;
    bool is_path;
};

constexpr std::array<Field, 4> kFields{{
    {"server", "_SERVER", "--server", &ConnectionSettings::server, false},
    {"cert", "_CERT", "--cert", &ConnectionSettings::cert, true},
    {"key", "_KEY", "--key", &ConnectionSettings::key, true},
    {"ca", "_CA", "--ca", &ConnectionSettings::ca, true},
}};

Field const* find_field(std::string_view key)
{
    for (auto const& field : kFields)
        if (field.key == key) return &field;
    return nullptr;
}

ClientError yaml_error(std::string const& file_name, int zero_based_line, std::string const& reason)
{
    return client_error(file_name + ":" + std::to_string(zero_based_line + 1) + ": " + reason);
}

std::string resolve_against(std::string const& value, std::string const& base_dir)
{
    fs::path const path(value);
    if (path.is_absolute() || base_dir.empty()) return value;
    return (fs::path(base_dir) / path).lexically_normal().string();
}

ClientResult<ConnectionSettings> read_mapping(YAML::Node const& root, std::string const& file_name,
                                              std::string const& base_dir)
{
    ConnectionSettings out;
    for (auto const& entry : root) {
        auto const key = entry.first.as<std::string>();
        Field const* field = find_field(key);
        if (field == nullptr)
            return yaml_error(file_name, entry.first.Mark().line,
                              "unknown key \"" + key + "\" (expected server, cert, key or ca)");
        if (!entry.second.IsScalar())
            return yaml_error(file_name, entry.second.Mark().line, key + " must be a string");
        auto value = entry.second.as<std::string>();
        out.*(field->member) = field->is_path ? resolve_against(value, base_dir) : std::move(value);
    }
    return out;
}

}  // namespace

EnvLookup process_environment()
{
    return [](std::string const& name) -> std::optional<std::string> {
        char const* value = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe)
        if (value == nullptr) return std::nullopt;
        return std::string(value);
    };
}

ClientResult<ConnectionSettings> parse_connection_yaml(std::string_view yaml, std::string const& file_name,
                                                       std::string const& base_dir)
{
    try {
        YAML::Node const root = YAML::Load(std::string(yaml));
        if (!root.IsDefined() || root.IsNull()) return ConnectionSettings{};
        if (!root.IsMap())
            return yaml_error(file_name, root.Mark().line, "expected a mapping with server, cert, key and ca");
        return read_mapping(root, file_name, base_dir);
    } catch (YAML::Exception const& e) {
        return yaml_error(file_name, e.mark.line, e.msg);
    }
}

ConnectionSettings settings_from_env(std::string_view prefix, EnvLookup const& lookup)
{
    ConnectionSettings out;
    for (auto const& field : kFields) {
        auto value = lookup(std::string(prefix) + std::string(field.suffix));
        if (value) out.*(field.member) = std::move(*value);
    }
    return out;
}

ConnectionSettings merge_settings(ConnectionSettings const& flags, ConnectionSettings const& env,
                                  ConnectionSettings const& file)
{
    ConnectionSettings out;
    for (auto const& field : kFields) {
        for (auto const* source : {&flags, &env, &file}) {
            if (!(source->*(field.member)).empty()) {
                out.*(field.member) = source->*(field.member);
                break;
            }
        }
    }
    return out;
}

ClientResult<void> require_complete(ConnectionSettings const& settings, std::string_view env_prefix,
                                    std::string const& config_path)
{
    for (auto const& field : kFields) {
        if (!(settings.*(field.member)).empty()) continue;
        std::string const where = config_path.empty() ? std::string("a config file") : config_path;
        return client_error("no " + std::string(field.key) + " given: use " + std::string(field.flag) + ", " +
                            std::string(env_prefix) + std::string(field.suffix) + " or " +
                            std::string(field.key) + ": in " + where);
    }
    return {};
}

std::string default_user_config_path(std::string_view file_name, std::optional<std::string> const& xdg_config_home,
                                     std::optional<std::string> const& home)
{
    // The XDG base directory spec says to ignore a relative XDG_CONFIG_HOME.
    if (xdg_config_home && !xdg_config_home->empty() && fs::path(*xdg_config_home).is_absolute())
        return (fs::path(*xdg_config_home) / "exemptd" / file_name).string();
    if (home && !home->empty()) return (fs::path(*home) / ".config" / "exemptd" / file_name).string();
    return {};
}

ClientResult<ConnectionSettings> resolve_connection(ConnectionSources const& sources, EnvLookup const& lookup)
{
    std::string const config_path = sources.config_flag.empty() ? sources.default_config_path : sources.config_flag;
    ConnectionSettings file;
    std::error_code ignored;
    bool const wanted = !sources.config_flag.empty() || (!config_path.empty() && fs::exists(config_path, ignored));
    if (wanted) {
        auto text = read_file(config_path);
        if (!text) return text.error();
        auto parsed = parse_connection_yaml(*text, config_path, fs::path(config_path).parent_path().string());
        if (!parsed) return parsed.error();
        file = std::move(*parsed);
    }
    auto merged = merge_settings(sources.flags, settings_from_env(sources.env_prefix, lookup), file);
    if (auto complete = require_complete(merged, sources.env_prefix, config_path); !complete) return complete.error();
    return merged;
}

}  // namespace exemptd::client
