#include "router.hpp"

#include "exemptd/exemption_rules.hpp"
#include "exemptd/json_reader.hpp"

#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <vector>

namespace exemptd::daemon {

namespace {

enum class Action {
    checkin,
    device_list,
    device_show,
    device_decision,
    device_enrollment,
    exemption_request,
    exemption_list,
    exemption_show,
    exemption_change,
};

// A request line resolved to an action, with the id it names (device or exemption), the
// life-cycle verb for exemption changes, and the query string.
struct Route {
    Action action;
    std::string id;
    std::string_view query;
    std::string_view verb;
};

HttpResponse json_response(int status, boost::json::value const& body)
{
    return {status, boost::json::serialize(body)};
}

std::vector<std::string_view> split_path(std::string_view path)
{
    std::vector<std::string_view> out;
    while (!path.empty()) {
        auto const slash = path.find('/');
        auto const part = path.substr(0, slash);
        if (!part.empty()) out.push_back(part);
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
    }
    return out;
}

ApiError method_not_allowed()
{
    return api_error(405, "method_not_allowed", "This route does not accept that method.");
}

ApiError unknown_route()
{
    return api_error(404, "not_found", "There is no such route.");
}

// Resolves /v1/devices/{id}[/decision|/enrollment].
boost::system::result<Route, ApiError> resolve_device(std::string_view method,
                                                               std::vector<std::string_view> const& parts)
{
    std::string const id(parts[2]);
    if (parts.size() == 3) {
        if (method != "GET") return method_not_allowed();
        return Route{Action::device_show, id, {}, {}};
    }
    if (parts.size() != 4) return unknown_route();
    if (parts[3] == "decision") {
        if (method != "GET") return method_not_allowed();
        return Route{Action::device_decision, id, {}, {}};
    }
    if (parts[3] == "enrollment") {
        if (method != "PUT") return method_not_allowed();
        return Route{Action::device_enrollment, id, {}, {}};
    }
    return unknown_route();
}

bool is_exemption_id(std::string_view id)
{
    return id.size() >= 9 && id.size() <= 16 && id.starts_with("EX-") &&
           id.find_first_not_of("0123456789", 3) == std::string_view::npos;
}

// Resolves /v1/exemptions[/{id}[/{verb}]].
boost::system::result<Route, ApiError> resolve_exemption(std::string_view method,
                                                         std::vector<std::string_view> const& parts,
                                                         std::string_view query)
{
    if (parts.size() == 2) {
        if (method == "POST") return Route{Action::exemption_request, {}, query, {}};
        if (method == "GET") return Route{Action::exemption_list, {}, query, {}};
        return method_not_allowed();
    }
    if (!is_exemption_id(parts[2])) return api_error(404, "not_found", "No exemption " + std::string(parts[2]) + " exists.");
    std::string const id(parts[2]);
    if (parts.size() == 3) {
        if (method != "GET") return method_not_allowed();
        return Route{Action::exemption_show, id, {}, {}};
    }
    static constexpr std::string_view kVerbs[] = {"approve", "reject", "renew", "review", "revoke"};
    if (parts.size() != 4 || std::find(std::begin(kVerbs), std::end(kVerbs), parts[3]) == std::end(kVerbs))
        return unknown_route();
    if (method != "POST") return method_not_allowed();
    return Route{Action::exemption_change, id, {}, parts[3]};
}

boost::system::result<Route, ApiError> resolve(std::string_view method, std::string_view target)
{
    auto const question = target.find('?');
    auto const path = target.substr(0, question);
    auto const query = question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);
    auto const parts = split_path(path);
    if (parts.size() < 2 || parts[0] != "v1") return unknown_route();
    if (parts[1] == "checkin" && parts.size() == 2) {
        if (method != "POST") return method_not_allowed();
        return Route{Action::checkin, {}, query, {}};
    }
    if (parts[1] == "exemptions" && parts.size() <= 4) return resolve_exemption(method, parts, query);
    if (parts[1] != "devices") return unknown_route();
    if (parts.size() == 2) {
        if (method != "GET") return method_not_allowed();
        return Route{Action::device_list, {}, query, {}};
    }
    return resolve_device(method, parts);
}

ApiError forbidden(std::string message)
{
    return api_error(403, "forbidden", std::move(message));
}

std::optional<ApiError> authorize_role(ClientId const& client, Route const& route)
{
    switch (route.action) {
    case Action::checkin:
        if (client.role != Role::endpoint) return forbidden("Only endpoint certificates may check in.");
        return std::nullopt;
    case Action::device_show:
    case Action::device_decision:
        if (client.role == Role::endpoint && client.device_id != route.id)
            return forbidden("An endpoint may only read its own device.");
        return std::nullopt;
    case Action::device_list:
        if (client.role == Role::endpoint) return forbidden("Endpoints may not list devices.");
        return std::nullopt;
    case Action::device_enrollment:
        if (client.role != Role::admin) return forbidden("Only admins may change enrollment.");
        return std::nullopt;
    case Action::exemption_list:
    case Action::exemption_show:
        if (client.role == Role::endpoint) return forbidden("Endpoints may not read the exemption register.");
        return std::nullopt;
    case Action::exemption_request:
    case Action::exemption_change:
        if (client.role != Role::admin) return forbidden("Only admins may request or change exemptions.");
        return std::nullopt;
    }
    return forbidden("This request is not allowed.");
}

// Role rules of SPEC §4: endpoints report and read only their own device; help desk reads;
// admins read and write. The role comes first, then the syntax of the id in the path.
std::optional<ApiError> authorize(ClientId const& client, Route const& route)
{
    auto const refusal = authorize_role(client, route);
    bool const names_device = route.action == Action::device_show || route.action == Action::device_decision ||
                              route.action == Action::device_enrollment;
    if (refusal || !names_device || is_valid_device_id(route.id)) return refusal;
    return api_error(400, "invalid_device_id", "A device id is 1-64 characters of A-Z a-z 0-9 . _ : -.");
}

char hex_value(char c)
{
    if (c >= '0' && c <= '9') return static_cast<char>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<char>(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return static_cast<char>(c - 'A' + 10);
    return -1;
}

// The percent-decoded value of `key` in a query string, or nullopt when absent.
std::optional<std::string> query_param(std::string_view query, std::string_view key)
{
    while (!query.empty()) {
        auto const amp = query.find('&');
        auto const pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        auto const eq = pair.find('=');
        if (pair.substr(0, eq) != key) continue;
        auto const raw = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
        std::string out;
        for (std::size_t i = 0; i < raw.size(); ++i) {
            if (raw[i] == '+') out.push_back(' ');
            else if (raw[i] != '%') out.push_back(raw[i]);
            else if (i + 2 < raw.size() && hex_value(raw[i + 1]) >= 0 && hex_value(raw[i + 2]) >= 0) {
                out.push_back(static_cast<char>(hex_value(raw[i + 1]) * 16 + hex_value(raw[i + 2])));
                i += 2;
            } else {
                out.push_back('%');  // kept as is, so the value fails its own validation
            }
        }
        return out;
    }
    return std::nullopt;
}

std::optional<DeviceState> device_state_from_string(std::string_view s)
{
    if (s == "allowed") return DeviceState::allowed;
    if (s == "denied") return DeviceState::denied;
    if (s == "exempted") return DeviceState::exempted;
    if (s == "unenrolled") return DeviceState::unenrolled;
    if (s == "stale") return DeviceState::stale;
    return std::nullopt;
}

ApiError storage_error(boost::system::error_code const& ec)
{
    spdlog::error("event=storage_error reason=\"{}\"", ec.message());
    return api_error(503, "storage_unavailable", "The database could not complete the request; try again.");
}

bool looks_like_email(std::string_view s)
{
    auto const at = s.find('@');
    return at != std::string_view::npos && at > 0 && at + 1 < s.size() && s.find_first_of(" \t\r\n<>") == s.npos;
}

}  // namespace

HttpResponse error_response(ApiError const& error)
{
    return json_response(error.status, {{"error", {{"code", error.code}, {"message", error.message}}}});
}

Router::Router(std::shared_ptr<Policy const> policy, Store& store, Metrics& metrics, Clock clock)
    : policy_(std::move(policy)), store_(store), metrics_(metrics), clock_(std::move(clock))
{
}

void Router::set_policy(std::shared_ptr<Policy const> policy)
{
    policy_.store(std::move(policy));
}

std::shared_ptr<Policy const> Router::policy() const
{
    return policy_.load();
}

std::optional<HttpResponse> Router::precheck(ClientId const& client, std::string_view method,
                                             std::string_view target) const
{
    auto const route = resolve(method, target);
    if (!route) return error_response(route.error());
    if (auto const denied = authorize(client, *route)) return error_response(*denied);
    return std::nullopt;
}

HttpResponse Router::handle(ClientId const& client, HttpRequest const& request) const
{
    HttpResponse response;
    try {
        response = dispatch(client, request);
    } catch (std::exception const& e) {
        // A bug, not a client error: answer 500 and keep serving.
        spdlog::error("event=handler_failed target=\"{}\" reason=\"{}\"", request.target, e.what());
        response = error_response(api_error(500, "internal_error", "The daemon failed to handle the request."));
    }
    metrics_.count_response(response.status);
    return response;
}

HttpResponse Router::dispatch(ClientId const& client, HttpRequest const& request) const
{
    auto const route = resolve(request.method, request.target);
    if (!route) return error_response(route.error());
    if (auto const denied = authorize(client, *route)) return error_response(*denied);
    switch (route->action) {
    case Action::checkin: return checkin(client, request);
    case Action::device_list: return device_list(route->query);
    case Action::device_show: return device_show(route->id);
    case Action::device_decision: return device_decision(route->id);
    case Action::device_enrollment: return put_enrollment(client, route->id, request.body);
    case Action::exemption_request: return exemption_request(client, request.body);
    case Action::exemption_list: return exemption_list(route->query);
    case Action::exemption_show: return exemption_show(route->id);
    case Action::exemption_change: return exemption_change(client, route->id, route->verb, request.body);
    }
    return error_response(unknown_route());
}

HttpResponse Router::checkin(ClientId const& client, HttpRequest const& request) const
{
    auto report = decode_posture(request.body);
    if (!report) return error_response(report.error());
    if (report->device_id != client.device_id)
        return error_response(forbidden("The report's device_id is not the device in the client certificate."));
    auto const policy = policy_.load();
    auto const now = clock_();
    std::chrono::seconds const skew{policy->checkin.max_clock_skew_seconds};
    if (report->reported_at < now - skew || report->reported_at > now + skew)
        return error_response(api_error(422, "clock_skew",
                                        "reported_at is more than " + std::to_string(skew.count()) +
                                            " seconds away from the server's clock; fix the endpoint's time."));
    auto decision = store_.check_in(*report, evaluator(now), now, 2 * skew + std::chrono::seconds{60});
    if (!decision) return error_response(decision.error());
    metrics_.count_checkin(*decision);
    spdlog::debug("event=checkin device={} decision={} basis={}", decision->device_id,
                  decision->allow ? "allow" : "deny", to_string(decision->basis));
    return json_response(200, decision_to_json(*decision));
}

// Evaluated afresh from the latest facts, so that an expired or revoked exemption stops counting
// at once rather than at the next check-in.
HttpResponse Router::device_decision(std::string const& device_id) const
{
    auto decision = store_.current_decision(device_id, evaluator(clock_()));
    if (!decision && decision.error() == Errc::not_found)
        return error_response(api_error(404, "not_found", "No device " + device_id + " is known."));
    if (!decision) return error_response(storage_error(decision.error()));
    if (!*decision)
        return error_response(api_error(404, "no_decision", "Device " + device_id + " has not checked in yet."));
    return json_response(200, decision_to_json(**decision));
}

Evaluate Router::evaluator(TimePoint now) const
{
    return [policy = policy_.load(), now](DeviceFacts const& facts, std::vector<Exemption> const& active) {
        std::vector<CoveringExemption> covers;
        for (auto const& e : active) {
            CoveringExemption cover{e.id, {}, e.compensating_controls, e.expires_at};
            for (auto const& id : e.controls) {
                auto const* control = policy->find_control(id);
                // Agreement-backed coverage arrives with agreement verification; until then such
                // a control is never covered.
                if (control != nullptr && control->requires_agreement.empty()) cover.controls.push_back(id);
            }
            covers.push_back(std::move(cover));
        }
        return evaluate(*policy, facts, covers, now);
    };
}

Result<SweepResult> Router::sweep() const
{
    auto const now = clock_();
    return store_.sweep(now, evaluator(now));
}

HttpResponse Router::device_show(std::string const& device_id) const
{
    auto device = store_.get_device(device_id);
    if (!device && device.error() == Errc::not_found)
        return error_response(api_error(404, "not_found", "No device " + device_id + " is known."));
    if (!device) return error_response(storage_error(device.error()));
    return json_response(200, device_to_json(*device));
}

HttpResponse Router::device_list(std::string_view query) const
{
    DeviceQuery filter;
    if (auto const state = query_param(query, "state")) {
        auto const parsed = device_state_from_string(*state);
        if (!parsed)
            return error_response(api_error(400, "invalid_field",
                                            "state must be allowed, denied, exempted, unenrolled or stale."));
        filter.state = *parsed;
    }
    filter.stale_before = clock_() - std::chrono::hours{policy_.load()->checkin.stale_after_hours};
    auto devices = store_.list_devices(filter);
    if (!devices) return error_response(storage_error(devices.error()));
    boost::json::array out;
    out.reserve(devices->size());
    for (auto const& d : *devices) out.emplace_back(device_to_json(d));
    return json_response(200, {{"devices", std::move(out)}});
}

HttpResponse Router::put_enrollment(ClientId const& client, std::string const& device_id,
                                    std::string const& body) const
{
    auto object = parse_json_object(body);
    if (!object) return error_response(object.error());
    ObjectReader reader(*object);
    reader.only({"enrolled", "owner", "source"});
    Enrollment enrollment;
    enrollment.enrolled = reader.boolean("enrolled").value_or(false);
    enrollment.owner = reader.string("owner", Need::optional, 254);
    enrollment.source = reader.string("source", Need::optional, 64);
    if (!enrollment.owner.empty() && !looks_like_email(enrollment.owner)) reader.fail("owner", "must be an email address");
    if (reader.error()) return error_response(*reader.error());
    if (enrollment.source.empty()) enrollment.source = "manual";
    enrollment.updated_at = clock_();
    enrollment.updated_by = client.email;
    auto outcome = store_.put_enrollment(device_id, enrollment, evaluator(enrollment.updated_at));
    if (!outcome) return error_response(storage_error(outcome.error()));
    if (outcome->changed)
        spdlog::info("event=enrollment device={} enrolled={} actor={}", device_id, enrollment.enrolled, client.email);
    return json_response(outcome->created ? 201 : 200, device_to_json(outcome->device));
}

HttpResponse Router::exemption_request(ClientId const& client, std::string const& body) const
{
    auto const now = clock_();
    auto draft = request_exemption(*policy_.load(), body, client.email, now);
    if (!draft) return error_response(draft.error());
    auto created = store_.create_exemption(std::move(*draft));
    if (!created) return error_response(storage_error(created.error()));
    spdlog::info("event=exemption_requested id={} subject={} actor={}", created->id, created->subject, client.email);
    return json_response(201, exemption_to_json(*created, now));
}

HttpResponse Router::exemption_show(std::string const& id) const
{
    auto found = store_.get_exemption(id);
    if (!found && found.error() == Errc::not_found)
        return error_response(api_error(404, "not_found", "No exemption " + id + " exists."));
    if (!found) return error_response(storage_error(found.error()));
    return json_response(200, exemption_to_json(*found, clock_()));
}

HttpResponse Router::exemption_list(std::string_view query) const
{
    ExemptionQuery filter;
    filter.now = clock_();
    filter.subject = query_param(query, "subject").value_or("");
    filter.control = query_param(query, "control").value_or("");
    if (auto const state = query_param(query, "state"); state && !state->empty()) {
        filter.state = exemption_state_from_string(*state);
        if (!filter.state)
            return error_response(api_error(400, "invalid_field",
                                            "state must be pending, active, rejected, expired or revoked."));
    }
    if (auto const within = query_param(query, "expiring_within"); within && !within->empty()) {
        auto const duration = parse_duration(*within);
        if (!duration)
            return error_response(api_error(400, "invalid_field", "expiring_within must be a duration such as 14d or 12h."));
        filter.expiring_before = filter.now + *duration;
    }
    auto found = store_.list_exemptions(filter);
    if (!found) return error_response(storage_error(found.error()));
    boost::json::array out;
    out.reserve(found->size());
    for (auto const& e : *found) out.emplace_back(exemption_to_json(e, filter.now));
    return json_response(200, {{"exemptions", std::move(out)}});
}

namespace {

// The body of a life-cycle request: {"note"}, {"reason"} or {"expires_at", "note"}.
struct ChangeBody {
    std::string note;
    std::string reason;
    std::optional<TimePoint> expires_at;
};

ApiResult<ChangeBody> read_change_body(std::string_view verb, std::string const& body)
{
    auto object = parse_json_object(body.empty() ? std::string_view("{}") : std::string_view(body));
    if (!object) return object.error();
    ObjectReader reader(*object);
    ChangeBody out;
    if (verb == "revoke") {
        reader.only({"reason"});
        out.reason = reader.string("reason", Need::required, 4000);
    } else if (verb == "renew") {
        reader.only({"expires_at", "note"});
        out.expires_at = reader.time("expires_at");
        out.note = reader.string("note", Need::optional, 4000);
    } else {
        reader.only({"note"});
        out.note = reader.string("note", Need::optional, 4000);
    }
    if (reader.error()) return *reader.error();
    return out;
}

std::optional<ApiError> agreement_unavailable(Exemption const& e, std::string const& template_name)
{
    if (e.agreement_id.empty())
        return api_error(422, "agreement_required",
                         "A control of this exemption requires a verified " + template_name + " agreement; set agreement_id.");
    return api_error(422, "agreement_not_verified",
                     "Agreement " + e.agreement_id + " is not a verified " + template_name + " agreement for this subject.");
}

}  // namespace

HttpResponse Router::exemption_change(ClientId const& client, std::string const& id, std::string_view verb,
                                      std::string const& body) const
{
    auto change = read_change_body(verb, body);
    if (!change) return error_response(change.error());
    auto const policy = policy_.load();
    auto const now = clock_();
    auto const& actor = client.email;
    Transition const transition = [&](Exemption const& current) -> ApiResult<Exemption> {
        if (verb == "approve") return approve_exemption(*policy, current, actor, change->note, now, agreement_unavailable);
        if (verb == "reject") return reject_exemption(*policy, current, actor, change->note, now);
        if (verb == "renew") return renew_exemption(*policy, current, actor, change->expires_at, change->note, now);
        if (verb == "review") return review_exemption(*policy, current, actor, change->note, now);
        return revoke_exemption(current, actor, change->reason, now);
    };
    std::string const action = "exemption." + std::string(verb == "approve" ? "approved"
                                                          : verb == "reject" ? "rejected"
                                                          : verb == "renew"  ? "renewed"
                                                          : verb == "review" ? "reviewed"
                                                                             : "revoked");
    auto result = store_.transition_exemption(id, action, actor, now, transition, evaluator(now));
    if (!result) return error_response(result.error());
    spdlog::info("event={} id={} actor={}", action, id, actor);
    return json_response(200, exemption_to_json(*result, now));
}

}  // namespace exemptd::daemon
