#include "exemptctl_app.hpp"
#include "fixtures.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <sstream>
#include <vector>

using namespace exemptd::client;

namespace {

struct Run {
    int code;
    std::string out;
    std::string err;
};

// Runs exemptctl with no EXEMPTCTL_* variables and HOME in an empty scratch folder.
Run exemptctl(std::vector<char const*> args, std::map<std::string, std::string> vars = {})
{
    exemptd::client::test::ScratchDir home;
    vars.emplace("HOME", home.path().string());
    args.insert(args.begin(), "exemptctl");
    std::ostringstream out;
    std::ostringstream err;
    auto const env = [&vars](std::string const& name) -> std::optional<std::string> {
        auto const it = vars.find(name);
        return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
    int const code = run_exemptctl(static_cast<int>(args.size()), args.data(), out, err, env);
    return {code, out.str(), err.str()};
}

}  // namespace

TEST_CASE("exemptctl refuses a bad command line with exit code 2", "[exemptctl]")
{
    auto const none = exemptctl({});
    CHECK(none.code == 2);
    CHECK(none.err.starts_with("exemptctl: "));

    CHECK(exemptctl({"device"}).code == 2);
    CHECK(exemptctl({"device", "frobnicate"}).code == 2);
    auto const no_owner = exemptctl({"device", "enroll", "LAPTOP-0042"});
    CHECK(no_owner.code == 2);
    CHECK(no_owner.err.find("--owner is required") != std::string::npos);
    auto const bad_state = exemptctl({"device", "list", "--state", "happy"});
    CHECK(bad_state.code == 2);
}

TEST_CASE("exemptctl --help and --version succeed", "[exemptctl]")
{
    auto const help = exemptctl({"device", "--help"});
    CHECK(help.code == 0);
    CHECK(help.out.find("enroll") != std::string::npos);
    auto const version = exemptctl({"--version"});
    CHECK(version.code == 0);
    CHECK(version.out.find("exemptctl ") == 0);
}

TEST_CASE("exemptctl explains missing connection settings with exit code 2", "[exemptctl]")
{
    auto const run = exemptctl({"device", "list", "--json"});
    CHECK(run.code == 2);
    CHECK(run.err.starts_with("exemptctl: no server given: use --server, EXEMPTCTL_SERVER or server: in "));
    CHECK(run.err.find("/.config/exemptd/exemptctl.yaml") != std::string::npos);
}

TEST_CASE("exemptctl refuses an invalid device id before connecting", "[exemptctl]")
{
    auto const run = exemptctl({"device", "show", "../../etc"});
    CHECK(run.code == 2);
    CHECK(run.err.starts_with("exemptctl: invalid device id \"../../etc\""));
}

TEST_CASE("exemptctl names a client certificate it cannot load, with exit code 2", "[exemptctl]")
{
    auto const not_a_key = std::string(EXEMPTD_CLIENT_TEST_DATA) + "/dpkg.log";
    exemptd::client::test::ScratchDir dir;
    auto const crt = dir.make_certificate("admin", "URI:urn:exemptd:role:admin,email:alex@example.com").string();
    auto const run = exemptctl({"--server", "https://127.0.0.1:1", "--cert", crt.c_str(), "--key", not_a_key.c_str(),
                                "--ca", crt.c_str(), "device", "list"});
    CHECK(run.code == 2);
    CHECK(run.err.starts_with("exemptctl: cannot load client certificate/key"));
}

TEST_CASE("exemptctl reports a server it cannot reach with exit code 2", "[exemptctl]")
{
    exemptd::client::test::ScratchDir dir;
    auto const crt = dir.make_certificate("admin", "URI:urn:exemptd:role:admin,email:alex@example.com").string();
    auto const key = (dir.path() / "admin.key").string();
    auto const run = exemptctl({"device", "list", "--json"}, {{"EXEMPTCTL_SERVER", "https://127.0.0.1:1"},
                                                              {"EXEMPTCTL_CERT", crt},
                                                              {"EXEMPTCTL_KEY", key},
                                                              {"EXEMPTCTL_CA", crt}});
    CHECK(run.code == 2);
    CHECK(run.err == "exemptctl: cannot connect to https://127.0.0.1:1: Connection refused\n");
    CHECK(run.out.empty());
}
