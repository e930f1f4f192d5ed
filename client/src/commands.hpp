#pragma once
// exemptctl's command groups. Each group lives in its own commands_<group>.cpp and registers its
// subcommands on the root CLI11 app; a new group adds a file and one line in exemptctl_app.cpp.

namespace CLI {
class App;
}

namespace exemptd::client {

class CommandContext;

// Registers `device enroll|unenroll|list|show` on `app`. The callbacks run against `ctx` (which
// must outlive `app`) and store their exit code in ctx.exit_code.
void add_device_commands(CLI::App& app, CommandContext& ctx);

// Registers `exemption request|approve|reject|renew|review|revoke|list|show` on `app`. Same
// contract as add_device_commands.
void add_exemption_commands(CLI::App& app, CommandContext& ctx);

// Registers `explain DEVICE [--at TIME]` on `app`. Same contract as add_device_commands.
void add_explain_commands(CLI::App& app, CommandContext& ctx);

// Registers `audit list|verify|export` on `app`. Same contract as add_device_commands.
void add_audit_commands(CLI::App& app, CommandContext& ctx);

// Registers `report exemptions` on `app`. Same contract as add_device_commands.
void add_report_commands(CLI::App& app, CommandContext& ctx);

// Registers `agreement upload|show|verify` on `app`. Same contract as add_device_commands; `verify`
// runs offline and never needs connection settings.
void add_agreement_commands(CLI::App& app, CommandContext& ctx);

}  // namespace exemptd::client
