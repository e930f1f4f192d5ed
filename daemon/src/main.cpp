// exemptd: parses arguments and hands over to run_daemon().

#include "daemon.hpp"

#include <CLI/CLI.hpp>

#include <iostream>

int main(int argc, char** argv)
{
    CLI::App app{"exemptd: device-compliance exemption daemon"};
    std::string config = "/etc/exemptd/exemptd.yaml";
    std::string ready_file, check_config, check_policy, backup;
    bool version = false;
    app.add_option("-c,--config", config, "Configuration file")->capture_default_str();
    app.add_option("--ready-file", ready_file, "Write the bound ports to this file once serving");
    app.add_option("--check-config", check_config, "Check a configuration file and its policy, then exit");
    app.add_option("--check-policy", check_policy, "Check a policy file, then exit");
    app.add_option("--backup", backup,
                   "Copy the configured database to this file (safe while exemptd serves it), then exit");
    app.add_flag("--version", version, "Print the version and exit");
    try {
        app.parse(argc, argv);
        if (version) {
            std::cout << "exemptd " << EXEMPTD_VERSION << "\n";
            return 0;
        }
        if (!check_config.empty()) return exemptd::daemon::check_config(check_config);
        if (!check_policy.empty()) return exemptd::daemon::check_policy(check_policy);
        if (!backup.empty()) return exemptd::daemon::backup(config, backup);
        return exemptd::daemon::run_daemon(config, ready_file);
    } catch (CLI::ParseError const& e) {
        return app.exit(e) == 0 ? 0 : 2;
    } catch (std::exception const& e) {
        std::cerr << "exemptd: fatal: " << e.what() << "\n";
        return 1;
    }
}
