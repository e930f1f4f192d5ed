#pragma once
// Logging set-up: spdlog to stderr in key=value form, which systemd sends to the journal.

#include <string>

namespace exemptd {

// Installs the default stderr logger at `level` ("info", "debug", ...). Call once at start-up.
void setup_logging(std::string const& level);

}  // namespace exemptd
