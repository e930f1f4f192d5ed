#include "connection_settings.hpp"
#include "fixtures.hpp"

#include <catch2/catch.hpp>

#include <map>

using namespace exemptd::client;
using exemptd::client::test::ScratchDir;

namespace {

EnvLookup env_of(std::map<std::string, std::string> vars)
{
    return [vars = std::move(vars)](std::string const& name) -> std::optional<std::string> {
        auto const it = vars.find(name);
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

}  // namespace

TEST_CASE("A connection config file names server, cert, key and ca", "[settings]")
{
    auto const settings = parse_connection_yaml("server: https://exemptd.example.com:8443\n"
                                                "cert: certs/admin.crt\nkey: /etc/exemptd/admin.key\nca: ca.crt\n",
                                                "/home/alex/.config/exemptd/exemptctl.yaml",
                                                "/home/alex/.config/exemptd");
    REQUIRE(settings);
    CHECK(settings->server == "https://exemptd.example.com:8443");
    CHECK(settings->cert == "/home/alex/.config/exemptd/certs/admin.crt");  // relative to the file
    CHECK(settings->key == "/etc/exemptd/admin.key");
    CHECK(settings->ca == "/home/alex/.config/exemptd/ca.crt");

    SECTION("an empty file sets nothing") {
        auto const empty = parse_connection_yaml("", "f.yaml", "/x");
        REQUIRE(empty);
        CHECK(empty->server.empty());
    }
}

TEST_CASE("A bad connection config file is refused with file, line and reason", "[settings]")
{
    auto const unknown = parse_connection_yaml("server: https://h:1\nsrever: x\n", "agent.yaml", "/etc");
    REQUIRE_FALSE(unknown);
    CHECK(unknown.error().message == "agent.yaml:2: unknown key \"srever\" (expected server, cert, key or ca)");

    auto const nested = parse_connection_yaml("cert: [a, b]\n", "agent.yaml", "/etc");
    REQUIRE_FALSE(nested);
    CHECK(nested.error().message == "agent.yaml:1: cert must be a string");

    CHECK_FALSE(parse_connection_yaml("- a\n- b\n", "agent.yaml", "/etc"));
    CHECK_FALSE(parse_connection_yaml("server: [unclosed\n", "agent.yaml", "/etc"));
}

TEST_CASE("Flags win over the environment, which wins over the file, field by field", "[settings]")
{
    ConnectionSettings flags{"https://flag:1", "", "", ""};
    auto const env = settings_from_env("EXEMPTCTL", env_of({{"EXEMPTCTL_SERVER", "https://env:2"},
                                                            {"EXEMPTCTL_CERT", "env.crt"},
                                                            {"EXEMPTCTL_KEY", ""},
                                                            {"EXEMPT_AGENT_CA", "agent-ca.crt"}}));
    CHECK(env.server == "https://env:2");
    CHECK(env.ca.empty());
    ConnectionSettings const file{"https://file:3", "file.crt", "file.key", "file-ca.crt"};
    auto const merged = merge_settings(flags, env, file);
    CHECK(merged.server == "https://flag:1");
    CHECK(merged.cert == "env.crt");
    CHECK(merged.key == "file.key");
    CHECK(merged.ca == "file-ca.crt");
}

TEST_CASE("A missing setting is named with the three places it can come from", "[settings]")
{
    auto const missing = require_complete({"https://h:1", "a.crt", "", "ca.crt"}, "EXEMPTCTL", "/etc/x.yaml");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().message == "no key given: use --key, EXEMPTCTL_KEY or key: in /etc/x.yaml");
    CHECK(require_complete({"https://h:1", "a.crt", "a.key", "ca.crt"}, "EXEMPTCTL", ""));
}

TEST_CASE("The user config file follows XDG_CONFIG_HOME, else HOME", "[settings]")
{
    CHECK(default_user_config_path("exemptctl.yaml", "/cfg", "/home/a") == "/cfg/exemptd/exemptctl.yaml");
    CHECK(default_user_config_path("exemptctl.yaml", "relative", "/home/a") ==
          "/home/a/.config/exemptd/exemptctl.yaml");
    CHECK(default_user_config_path("exemptctl.yaml", std::nullopt, "/home/a") ==
          "/home/a/.config/exemptd/exemptctl.yaml");
    CHECK(default_user_config_path("exemptctl.yaml", std::nullopt, std::nullopt).empty());
}

TEST_CASE("Resolving reads the config file, which must exist only when named", "[settings]")
{
    ScratchDir dir;
    auto const file = dir.write("exemptctl.yaml", "server: https://file:3\ncert: a.crt\nkey: a.key\nca: ca.crt\n");
    auto const env = env_of({{"EXEMPTCTL_SERVER", "https://env:2"}});

    auto const from_default = resolve_connection({{}, "", file.string(), "EXEMPTCTL"}, env);
    REQUIRE(from_default);
    CHECK(from_default->server == "https://env:2");
    CHECK(from_default->cert == (dir.path() / "a.crt").string());

    auto const absent_default = resolve_connection({{}, "", (dir.path() / "none.yaml").string(), "EXEMPTCTL"}, env);
    REQUIRE_FALSE(absent_default);
    CHECK(absent_default.error().message.starts_with("no cert given: use --cert, EXEMPTCTL_CERT or cert: in "));

    auto const absent_named = resolve_connection({{}, (dir.path() / "none.yaml").string(), "", "EXEMPTCTL"}, env);
    REQUIRE_FALSE(absent_named);
    CHECK(absent_named.error().message.starts_with("cannot read "));
}
