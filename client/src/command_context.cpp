#include "command_context.hpp"

#include "api_answer.hpp"

#include <ostream>
#include <stdexcept>
#include <utility>

namespace exemptd::client {

void throw_exception_from_error(Reported const& e, boost::source_location const&)
{
    throw std::runtime_error("command failed with exit code " + std::to_string(e.exit_code));
}

CommandContext::CommandContext(std::ostream& out, std::ostream& err, EnvLookup env)
    : out_(out), err_(err), env_(std::move(env))
{
}

CommandContext::~CommandContext() = default;

Reply<HttpsClient*> CommandContext::client()
{
    if (client_) return client_.get();
    ConnectionSources const sources{
        options_.flags, options_.config,
        default_user_config_path("exemptctl.yaml", env_("XDG_CONFIG_HOME"), env_("HOME")), "EXEMPTCTL"};
    auto settings = resolve_connection(sources, env_);
    if (!settings) return Reported{fail(settings.error().message)};
    auto client = HttpsClient::create(*settings, std::string(kExemptctl) + "/" + EXEMPTD_VERSION);
    if (!client) return Reported{fail(client.error().message)};
    client_ = std::move(*client);
    return client_.get();
}

Reply<HttpResponse> CommandContext::call(std::string_view method, std::string const& target, std::string_view body,
                                         std::string_view content_type)
{
    auto client = this->client();
    if (!client) return client.error();
    auto answer = (*client)->request(method, target, body, content_type);
    if (!answer) return Reported{fail(answer.error().message)};
    int const code = exemptctl_exit_code(answer->status);
    if (code == 0) return std::move(*answer);
    auto const error = parse_api_error(answer->status, answer->body);
    err_ << kExemptctl << ": " << error.code << ": " << error.message << "\n";
    return Reported{code};
}

int CommandContext::fail(std::string_view message)
{
    err_ << kExemptctl << ": " << message << "\n";
    return 2;
}

int CommandContext::print_json(std::string_view body)
{
    out_ << body;
    if (!body.ends_with('\n')) out_ << '\n';
    return 0;
}

}  // namespace exemptd::client
