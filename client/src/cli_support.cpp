#include "cli_support.hpp"

#include <CLI/CLI.hpp>

#include <ostream>

namespace exemptd::client {

void set_up_cli(CLI::App& app, std::string const& program, std::string const& version)
{
    app.set_version_flag("--version", program + " " + version);
    app.failure_message([program](CLI::App const*, CLI::Error const& e) {
        return program + ": " + e.what() + "\nRun with --help for more information.\n";
    });
}

void add_connection_options(CLI::App& app, ConnectionSettings& flags, std::string& config,
                            std::string_view env_prefix, std::string_view default_config)
{
    std::string const prefix(env_prefix);
    std::string const group =
        "Connection (else " + prefix + "_SERVER/_CERT/_KEY/_CA, else the config file)";
    app.add_option("--server", flags.server, "Server URL, https://host:port")->group(group);
    app.add_option("--cert", flags.cert, "Client certificate (PEM)")->group(group);
    app.add_option("--key", flags.key, "Client private key (PEM)")->group(group);
    app.add_option("--ca", flags.ca, "CA certificate that the server's certificate chains to (PEM)")->group(group);
    app.add_option("--config", config,
                   "Config file with server, cert, key and ca (default " + std::string(default_config) + ")")
        ->group(group);
}

int exit_for_parse_error(CLI::App const& app, CLI::ParseError const& e, std::ostream& out, std::ostream& err)
{
    return app.exit(e, out, err) == 0 ? 0 : 2;
}

}  // namespace exemptd::client
