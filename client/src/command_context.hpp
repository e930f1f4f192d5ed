#pragma once
// What every exemptctl command shares: the global options, the output streams and one connection.

#include "client_error.hpp"
#include "connection_settings.hpp"
#include "https_client.hpp"

#include <boost/system/result.hpp>

#include <ostream>
#include <memory>
#include <string>
#include <string_view>

namespace exemptd::client {

// The options every exemptctl command accepts, before or after its name.
struct GlobalOptions {
    ConnectionSettings flags;  // --server --cert --key --ca
    std::string config;        // --config FILE
    bool json = false;         // --json: print the server's JSON instead of tables
};

// A failure a command has already explained on stderr; what remains is the exit code.
struct Reported {
    int exit_code = 2;
};

// Throws std::runtime_error; only reached through .value() on a failed Reply.
[[noreturn]] void throw_exception_from_error(Reported const& e, boost::source_location const& loc);

template <class T>
using Reply = boost::system::result<T, Reported>;

// Shared state of one exemptctl run. Commands are registered with a reference to it and run one
// after parsing. Not thread-safe.
class CommandContext {
public:
    // Writes results to `out` and problems to `err`; reads EXEMPTCTL_* through `env`.
    CommandContext(std::ostream& out, std::ostream& err, EnvLookup env);
    ~CommandContext();
    CommandContext(CommandContext const&) = delete;
    CommandContext& operator=(CommandContext const&) = delete;
    CommandContext(CommandContext&&) = delete;
    CommandContext& operator=(CommandContext&&) = delete;

    // The options CLI11 fills in.
    [[nodiscard]] GlobalOptions& options() noexcept { return options_; }

    [[nodiscard]] std::ostream& out() noexcept { return out_; }
    [[nodiscard]] std::ostream& err() noexcept { return err_; }

    // Sends a request on the (lazily opened) connection and returns a 2xx answer. Otherwise prints
    // "exemptctl: <code>: <message>" for an error answer, or the connection problem, and fails
    // with the exit code: 1 for a refusal (4xx but 400), 2 for missing settings, a connection
    // error, 400 or 5xx.
    [[nodiscard]] Reply<HttpResponse> call(std::string_view method, std::string const& target,
                                           std::string_view body = {},
                                           std::string_view content_type = "application/json");

    // Prints "exemptctl: <message>" and returns 2: for bad usage found before anything was sent,
    // missing settings, a connection error or an answer the tool cannot read.
    [[nodiscard]] int fail(std::string_view message);

    // Prints a JSON answer as the server sent it (--json) and returns 0.
    [[nodiscard]] int print_json(std::string_view body);

    // Prints a successful answer: as sent with --json, else format(*parse(body)). Returns 0, or 2
    // (through fail) when `parse` refuses the body. `parse` returns a ClientResult.
    template <class Parse, class Format>
    [[nodiscard]] int print_answer(HttpResponse const& answer, Parse const& parse, Format const& format)
    {
        if (options_.json) return print_json(answer.body);
        auto parsed = parse(answer.body);
        if (!parsed) return fail(parsed.error().message);
        out_ << format(*parsed);
        return 0;
    }

    // The exit code of the command that ran (0 when none did).
    int exit_code = 0;

private:
    [[nodiscard]] Reply<HttpsClient*> client();

    std::ostream& out_;
    std::ostream& err_;
    EnvLookup env_;
    GlobalOptions options_;
    std::unique_ptr<HttpsClient> client_;
};

// The program name used in messages.
inline constexpr std::string_view kExemptctl = "exemptctl";

}  // namespace exemptd::client
