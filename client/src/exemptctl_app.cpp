#include "exemptctl_app.hpp"

#include "cli_support.hpp"
#include "command_context.hpp"
#include "commands.hpp"

#include <CLI/CLI.hpp>

#include <ostream>
#include <string>

namespace exemptd::client {
namespace {

void add_global_options(CLI::App& app, GlobalOptions& options)
{
    add_connection_options(app, options.flags, options.config, "EXEMPTCTL",
                           "$XDG_CONFIG_HOME/exemptd/exemptctl.yaml or ~/.config/exemptd/exemptctl.yaml");
    app.add_flag("--json", options.json, "Print the server's JSON instead of tables");
}

}  // namespace

int run_exemptctl(int argc, char const* const* argv, std::ostream& out, std::ostream& err, EnvLookup const& env)
{
    CommandContext ctx(out, err, env);
    CLI::App app{"Manage devices and exemptions on an exemptd server.", std::string(kExemptctl)};
    set_up_cli(app, std::string(kExemptctl), EXEMPTD_VERSION);
    app.require_subcommand(1);
    app.fallthrough();  // global options work after the command too; subcommands inherit this
    add_global_options(app, ctx.options());
    add_device_commands(app, ctx);
    add_exemption_commands(app, ctx);
    add_explain_commands(app, ctx);
    add_audit_commands(app, ctx);
    add_report_commands(app, ctx);
    add_agreement_commands(app, ctx);
    try {
        app.parse(argc, argv);
    } catch (CLI::ParseError const& e) {
        return exit_for_parse_error(app, e, out, err);
    }
    return ctx.exit_code;
}

}  // namespace exemptd::client
