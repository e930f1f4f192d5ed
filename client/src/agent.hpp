#pragma once
// exempt-agent as functions: build a posture report, check in, print the decision, repeat.

#include "client_error.hpp"
#include "connection_settings.hpp"
#include "https_client.hpp"

#include "exemptd/time.hpp"

#include <chrono>
#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>

namespace exemptd::client {

// The agent's command line.
struct AgentOptions {
    ConnectionSettings flags;   // --server --cert --key --ca
    std::string config;         // --config FILE (default /etc/exemptd/agent.yaml)
    std::string device_id;      // --device-id, else the certificate's device URI
    std::string posture_file;   // --posture-file FILE: send this report instead of collecting one
    bool once = false;          // --once: check in once and exit with the decision
    bool json = false;          // --json: print the server's JSON
};

// The agent's default config file.
inline constexpr std::string_view kAgentConfigPath = "/etc/exemptd/agent.yaml";

// Yields the device id when a report needs one; called at most once per report.
using DeviceIdSource = std::function<ClientResult<std::string>()>;

// Completes the JSON report of a posture file: `nonce`, `reported_at` (as `now`) and `device_id`
// (from `device_id`) are filled in when absent or null; everything else is sent as written.
// Fails when the text is not a JSON object. Pure apart from calling `device_id`.
[[nodiscard]] ClientResult<std::string> complete_posture_json(std::string_view text, DeviceIdSource const& device_id,
                                                              std::string const& nonce, TimePoint now);

// The device id to report: `flag` when given (it must be a valid device id), else the one in the
// endpoint certificate at `cert_path`. Reads the certificate; thread-safe.
[[nodiscard]] ClientResult<std::string> resolve_device_id(std::string const& flag, std::string const& cert_path);

// The JSON body of one check-in at `now`: the posture file completed, or a freshly collected
// report. Reads files and runs collectors; thread-safe.
[[nodiscard]] ClientResult<std::string> build_checkin_body(AgentOptions const& options, std::string const& cert_path,
                                                           TimePoint now);

// How one check-in went.
struct CheckinOutcome {
    int exit_code = 2;             // 0 allowed, 1 denied, 2 error
    bool fatal = true;             // a problem that retrying cannot fix (bad posture file, ...)
    std::chrono::seconds wait{0};  // when to check in again
};

// One check-in: builds the report, posts it to /v1/checkin, prints the decision to `out` (the
// server's JSON with options.json) or the problem to `err` as "exempt-agent: ...". Not
// thread-safe (it uses `client`).
[[nodiscard]] CheckinOutcome check_in(HttpsClient& client, AgentOptions const& options, std::string const& cert_path,
                                      std::ostream& out, std::ostream& err);

// Resolves the connection (flags, EXEMPT_AGENT_* through `env`, the config file), then checks in
// once (--once) or forever at the interval the server asks for, retrying failed check-ins after a
// minute. Returns the exit code of the last check-in, or 2 for a usage or setup error.
[[nodiscard]] int run_agent(AgentOptions const& options, std::ostream& out, std::ostream& err, EnvLookup const& env);

}  // namespace exemptd::client
