#include "agent_app.hpp"

#include "agent.hpp"
#include "cli_support.hpp"
#include "posture_collector.hpp"

#include <CLI/CLI.hpp>

#include <string>

namespace exemptd::client {
namespace {

void add_options(CLI::App& app, AgentOptions& options)
{
    add_connection_options(app, options.flags, options.config, "EXEMPT_AGENT", kAgentConfigPath);
    app.add_option("--device-id", options.device_id, "Device id (default: the certificate's device URI)");
    app.add_option("--posture-file", options.posture_file, "Send this JSON posture report instead of collecting one");
    app.add_flag("--once", options.once, "Check in once, print the decision and exit (0 allowed, 1 denied)");
    app.add_flag("--json", options.json, "Print the server's JSON");
}

}  // namespace

int run_exempt_agent(int argc, char const* const* argv, std::ostream& out, std::ostream& err, EnvLookup const& env)
{
    AgentOptions options;
    CLI::App app{"Report this device's posture to exemptd and print the decision.", "exempt-agent"};
    set_up_cli(app, "exempt-agent", std::string(kAgentVersion));
    add_options(app, options);
    try {
        app.parse(argc, argv);
    } catch (CLI::ParseError const& e) {
        return exit_for_parse_error(app, e, out, err);
    }
    return run_agent(options, out, err, env);
}

}  // namespace exemptd::client
