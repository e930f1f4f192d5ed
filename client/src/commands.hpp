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

}  // namespace exemptd::client
