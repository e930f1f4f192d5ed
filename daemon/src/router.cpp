#include "router.hpp"

#include "exemptd/exemption_rules.hpp"
#include "explain.hpp"
#include "exemptd/device.hpp"
#include "exemptd/digest.hpp"
#include "exemptd/json_reader.hpp"
#include "exemptd/mdm_import.hpp"

#include <boost/container/small_vector.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <future>
#include <vector>

namespace exemptd::daemon {

namespace {

HttpResponse json_response(int status, boost::json::value const& body)
{
    return {status, boost::json::serialize(body)};
}

// A request path's segments: a route has at most four, so they stay inline (this runs for every
// request).
using PathParts = boost::container::small_vector<std::string_view, 6>;

PathParts split_path(std::string_view path)
{
    PathParts out;
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
                                                               PathParts const& parts,
                                                               std::string_view query)
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
    if (parts[3] == "explain") {
        if (method != "GET") return method_not_allowed();
        return Route{Action::device_explain, id, std::string(query), {}};
    }
    if (parts[3] == "enrollment") {
        if (method != "PUT") return method_not_allowed();
        return Route{Action::device_enrollment, id, {}, {}};
    }
    return unknown_route();
}

// An id from the request path as an error message may quote it. Answers are JSON, which must be
// UTF-8, and a request target may carry any byte from 0x80 up, so only printable ASCII is quoted.
std::string path_id_for_message(std::string_view id)
{
    bool const printable = std::all_of(id.begin(), id.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
    return printable ? std::string(id) : std::string("with that id");
}

bool is_exemption_id(std::string_view id)
{
    return id.size() >= 9 && id.size() <= 16 && id.starts_with("EX-") &&
           id.find_first_not_of("0123456789", 3) == std::string_view::npos;
}

// Resolves /v1/exemptions[/{id}[/{verb}]].
boost::system::result<Route, ApiError> resolve_exemption(std::string_view method,
                                                         PathParts const& parts,
                                                         std::string_view query)
{
    if (parts.size() == 2) {
        if (method == "POST") return Route{Action::exemption_request, {}, std::string(query), {}};
        if (method == "GET") return Route{Action::exemption_list, {}, std::string(query), {}};
        return method_not_allowed();
    }
    if (!is_exemption_id(parts[2])) return api_error(404, "not_found", "No exemption " + path_id_for_message(parts[2]) + " exists.");
    std::string const id(parts[2]);
    if (parts.size() == 3) {
        if (method != "GET") return method_not_allowed();
        return Route{Action::exemption_show, id, {}, {}};
    }
    static constexpr std::string_view kVerbs[] = {"approve", "reject", "renew", "review", "revoke"};
    auto const* verb = parts.size() == 4 ? std::find(std::begin(kVerbs), std::end(kVerbs), parts[3]) : std::end(kVerbs);
    if (verb == std::end(kVerbs)) return unknown_route();
    if (method != "POST") return method_not_allowed();
    return Route{Action::exemption_change, id, {}, *verb};
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
        return Route{Action::checkin, {}, std::string(query), {}};
    }
    if (parts[1] == "exemptions" && parts.size() <= 4) return resolve_exemption(method, parts, query);
    if (parts[1] == "agreements" && parts.size() <= 3) {
        if (parts.size() == 2) {
            if (method != "POST") return method_not_allowed();
            return Route{Action::agreement_upload, {}, std::string(query), {}};
        }
        if (method != "GET") return method_not_allowed();
        return Route{Action::agreement_show, std::string(parts[2]), std::string(query), {}};
    }
    if (parts[1] == "audit" && parts.size() <= 3) {
        if (method != "GET") return method_not_allowed();
        if (parts.size() == 2) return Route{Action::audit_list, {}, std::string(query), {}};
        if (parts[2] == "verify") return Route{Action::audit_verify, {}, std::string(query), {}};
        return unknown_route();
    }
    if (parts[1] != "devices") return unknown_route();
    // "import" is also a valid device id: GET /v1/devices/import still shows that device.
    if (parts.size() == 3 && parts[2] == "import" && method == "POST")
        return Route{Action::device_import, {}, std::string(query), {}};
    if (parts.size() == 2) {
        if (method != "GET") return method_not_allowed();
        return Route{Action::device_list, {}, std::string(query), {}};
    }
    return resolve_device(method, parts, query);
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
    case Action::device_import:
        if (client.role != Role::admin) return forbidden("Only admins may import enrollments.");
        return std::nullopt;
    case Action::exemption_list:
    case Action::exemption_show:
    case Action::device_explain:
    case Action::agreement_show:
    case Action::audit_list:
    case Action::audit_verify:
        if (client.role == Role::endpoint) return forbidden("Endpoints may not read the register or the audit trail.");
        return std::nullopt;
    case Action::exemption_request:
    case Action::exemption_change:
    case Action::agreement_upload:
        if (client.role != Role::admin) return forbidden("Only admins may change exemptions or upload agreements.");
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
                              route.action == Action::device_enrollment || route.action == Action::device_explain;
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

// Lists page: the default and the largest number of items per answer.
constexpr std::int64_t kDefaultPageLimit = 1000, kMaxPageLimit = 10000;

// A list read with one item more than its page of `limit` tells whether another page follows:
// drops that item and says so.
template <class T>
bool trim_to_page(std::vector<T>& items, std::int64_t limit)
{
    bool const more = items.size() > static_cast<std::size_t>(limit);
    if (more) items.erase(items.begin() + limit, items.end());
    return more;
}

// The non-negative integer value of `key` in a query string, `fallback` when absent or empty,
// nullopt when it is not a number.
std::optional<std::int64_t> query_number(std::string_view query, std::string_view key, std::int64_t fallback)
{
    auto const text = query_param(query, key);
    if (!text || text->empty()) return fallback;
    std::int64_t value = 0;
    auto const [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc{} || end != text->data() + text->size() || value < 0) return std::nullopt;
    return value;
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

}  // namespace

std::string_view action_name(Action action) noexcept
{
    switch (action) {
    case Action::checkin: return "checkin";
    case Action::device_list: return "device_list";
    case Action::device_show: return "device_show";
    case Action::device_decision: return "device_decision";
    case Action::device_enrollment: return "device_enrollment";
    case Action::device_explain: return "device_explain";
    case Action::exemption_request: return "exemption_request";
    case Action::exemption_list: return "exemption_list";
    case Action::exemption_show: return "exemption_show";
    case Action::exemption_change: return "exemption_change";
    case Action::agreement_upload: return "agreement_upload";
    case Action::agreement_show: return "agreement_show";
    case Action::audit_list: return "audit_list";
    case Action::audit_verify: return "audit_verify";
    case Action::device_import: return "device_import";
    }
    return "unknown";
}

HttpResponse error_response(ApiError const& error)
{
    auto response = json_response(error.status, {{"error", {{"code", error.code}, {"message", error.message}}}});
    response.retry_after_seconds = error.retry_after_seconds;
    return response;
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

boost::system::result<Route, ApiError> Router::admit(ClientId const& client, std::string_view method,
                                                     std::string_view target) const
{
    auto route = resolve(method, target);
    if (!route) return route.error();
    if (auto denied = authorize(client, *route)) return std::move(*denied);
    if (route->action == Action::checkin) {
        if (auto const wait = checkin_limiter_.acquire(client.device_id, clock_())) {
            auto refusal = api_error(429, "rate_limited",
                                     "This device checks in too often; try again in " + std::to_string(wait->count()) +
                                         " seconds.");
            refusal.retry_after_seconds = static_cast<int>(wait->count());
            return refusal;
        }
    }
    return route;
}

void Router::set_checkin_rate(int per_minute)
{
    checkin_limiter_.set_rate(per_minute);
}

HttpResponse Router::handle(ClientId const& client, Route const& route, std::string const& body) const
{
    return handle(client, route, body, {});
}

HttpResponse Router::handle(ClientId const& client, Route const& route, std::string const& body,
                            std::string_view content_type) const
{
    try {
        return dispatch(client, route, body, content_type);
    } catch (std::exception const& e) {
        // A bug, not a client error: answer 500 and keep serving.
        spdlog::error("event=handler_failed route={} reason=\"{}\"", action_name(route.action), e.what());
        return error_response(api_error(500, "internal_error", "The daemon failed to handle the request."));
    }
}

HttpResponse Router::handle(ClientId const& client, HttpRequest const& request) const
{
    auto const route = admit(client, request.method, request.target);
    if (!route) return error_response(route.error());
    return handle(client, *route, request.body);
}

HttpResponse Router::dispatch(ClientId const& client, Route const& route, std::string const& body,
                              std::string_view content_type) const
{
    switch (route.action) {
    case Action::checkin: return checkin(client, body);
    case Action::device_list: return device_list(route.query);
    case Action::device_show: return device_show(route.id);
    case Action::device_decision: return device_decision(route.id);
    case Action::device_enrollment: return put_enrollment(client, route.id, body);
    case Action::exemption_request: return exemption_request(client, body);
    case Action::exemption_list: return exemption_list(route.query);
    case Action::exemption_show: return exemption_show(route.id);
    case Action::exemption_change: return exemption_change(client, route.id, route.verb, body);
    case Action::device_explain: return device_explain(route.id, route.query);
    case Action::agreement_upload: return agreement_upload(client, body);
    case Action::agreement_show: return agreement_show(route.id);
    case Action::audit_list: return audit_list(route.query);
    case Action::audit_verify: return audit_verify();
    case Action::device_import: return device_import(client, content_type, body);
    }
    return error_response(unknown_route());
}

void Router::check_in_async(ClientId const& client, std::string const& body, CheckinDone done) const
{
    auto report = decode_posture(body);
    if (!report) return done(report.error());
    if (report->device_id != client.device_id)
        return done(forbidden("The report's device_id is not the device in the client certificate."));
    auto const policy = policy_.load();
    auto const now = clock_();
    std::chrono::seconds const skew{policy->checkin.max_clock_skew_seconds};
    if (report->reported_at < now - skew || report->reported_at > now + skew)
        return done(api_error(422, "clock_skew",
                              "reported_at is more than " + std::to_string(skew.count()) +
                                  " seconds away from the server's clock; fix the endpoint's time."));
    // A nonce must be remembered for as long as a report carrying it passes the skew check.
    auto const nonce_ttl = 2 * skew + std::chrono::seconds{60};
    store_.check_in_async(std::move(*report), evaluator(now), now, nonce_ttl, std::move(done));
}

HttpResponse Router::checkin_response(ApiResult<EncodedDecision> outcome) const
{
    if (!outcome) return error_response(outcome.error());
    metrics_.count_checkin(outcome->basis);
    spdlog::debug("event=checkin device={} decision={} basis={}", outcome->device_id, outcome->allow ? "allow" : "deny",
                  to_string(outcome->basis));
    return {200, std::move(outcome->json)};
}

HttpResponse Router::checkin(ClientId const& client, std::string const& body) const
{
    std::promise<ApiResult<EncodedDecision>> outcome;
    auto result = outcome.get_future();
    check_in_async(client, body, [&outcome](ApiResult<EncodedDecision> r) { outcome.set_value(std::move(r)); });
    return checkin_response(result.get());
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
    return policy_evaluator(policy_.load(), now);
}

AgreementCheck Router::agreement_binding() const
{
    return [this](Exemption const& e, std::string const& template_name) -> std::optional<ApiError> {
        std::optional<AgreementRecord> agreement;
        if (!e.agreement_id.empty()) {
            auto found = store_.get_agreement(e.agreement_id);
            if (!found && found.error() != Errc::not_found) return storage_error(found.error());
            if (found) agreement = std::move(*found);
        }
        std::string owner;
        if (auto const subject = parse_subject(e.subject); subject && subject->kind == SubjectKind::device) {
            auto device = store_.get_device(subject->id);
            if (device && device->enrollment) owner = device->enrollment->owner;
        }
        return check_agreement_binding(e, template_name, agreement ? &*agreement : nullptr, owner);
    };
}

Result<SweepResult> Router::sweep() const
{
    auto const now = clock_();
    checkin_limiter_.prune(now);  // devices that have not checked in for a minute
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
    filter.after = query_param(query, "after").value_or("");
    if (!filter.after.empty() && !is_valid_device_id(filter.after))
        return error_response(api_error(400, "invalid_field", "after must be a device id."));
    auto const limit = query_number(query, "limit", kDefaultPageLimit);
    if (!limit || *limit == 0 || *limit > kMaxPageLimit)
        return error_response(api_error(400, "invalid_field", "limit must be 1-10000."));
    filter.limit = static_cast<std::size_t>(*limit) + 1;  // one more tells whether another page follows
    auto devices = store_.list_devices(filter);
    if (!devices) return error_response(storage_error(devices.error()));
    bool const more = trim_to_page(*devices, *limit);
    boost::json::array out;
    out.reserve(devices->size());
    for (auto const& d : *devices) out.emplace_back(device_to_json(d));
    boost::json::value next = more ? boost::json::value(devices->back().device_id) : boost::json::value(nullptr);
    return json_response(200, {{"devices", std::move(out)}, {"next_after", std::move(next)}});
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
        if (verb == "approve") return approve_exemption(*policy, current, actor, change->note, now, agreement_binding());
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

HttpResponse Router::device_explain(std::string const& device_id, std::string_view query) const
{
    auto const now = clock_();
    std::optional<TimePoint> at;
    if (auto const text = query_param(query, "at"); text && !text->empty()) {
        at = parse_rfc3339(*text);
        if (!at) return error_response(api_error(400, "invalid_field", "at must be an RFC 3339 time."));
    }
    auto device = store_.get_device(device_id);
    if (!device && device.error() == Errc::not_found)
        return error_response(api_error(404, "not_found", "No device " + device_id + " is known."));
    if (!device) return error_response(storage_error(device.error()));
    bool const historical = at && *at < now;
    auto decision = historical ? store_.decision_at(device_id, *at) : store_.current_decision(device_id, evaluator(now));
    if (!decision) return error_response(storage_error(decision.error()));
    if (!*decision)
        return error_response(api_error(404, "no_decision", historical ? "Device " + device_id + " had no decision at that time."
                                                                       : "Device " + device_id + " has not checked in yet."));
    ExemptionLookup const lookup = [this](std::string const& id) -> std::optional<Exemption> {
        auto found = store_.get_exemption(id);
        return found ? std::optional<Exemption>(std::move(*found)) : std::nullopt;
    };
    return json_response(200, explain(*policy_.load(), *device, **decision, lookup, at.value_or(now), historical));
}

void Router::set_agreement_verifier(std::shared_ptr<AgreementVerifier const> verifier)
{
    verifier_.store(std::move(verifier));
}

namespace {

AgreementRecord record_of(AgreementVerification const& v, std::string document, std::string signature,
                          std::string const& uploaded_by, TimePoint now)
{
    AgreementRecord a;
    a.template_name = v.document.agreement;
    a.user = v.document.user;
    a.device_id = v.document.device_id;
    a.device_serial = v.document.device_serial;
    a.terms_sha256 = v.document.terms_sha256;
    a.accepted_at = v.document.accepted_at;
    a.document_sha256 = v.document_sha256;
    a.signature_sha256 = sha256_hex(signature);
    a.signer_subject = v.signer_subject;
    a.signer_email = v.signer_email;
    a.signer_fingerprint = v.signer_fingerprint;
    a.signed_at = v.signed_at;
    a.verified_at = now;
    a.uploaded_by = uploaded_by;
    a.document = std::move(document);
    a.signature = std::move(signature);
    return a;
}

}  // namespace

HttpResponse Router::agreement_upload(ClientId const& client, std::string const& body) const
{
    auto const verifier = verifier_.load();
    if (!verifier)
        return error_response(api_error(503, "agreements_not_configured",
                                        "This daemon has no agreements CA configured (agreements: in the configuration)."));
    auto object = parse_json_object(body);
    if (!object) return error_response(object.error());
    ObjectReader reader(*object);
    reader.only({"document", "signature"});
    // Empty strings are read as given: the verifier refuses them as malformed, and audits it.
    auto const document_b64 = reader.string("document", Need::optional, 2 * kMaxAgreementBytes);
    auto const signature_b64 = reader.string("signature", Need::optional, 2 * kMaxAgreementBytes);
    if (!object->contains("document")) reader.fail("document", "is required");
    if (!object->contains("signature")) reader.fail("signature", "is required");
    if (reader.error()) return error_response(*reader.error());
    auto document = document_b64.empty() ? std::optional<std::string>("") : decode_base64(document_b64);
    auto signature = signature_b64.empty() ? std::optional<std::string>("") : decode_base64(signature_b64);
    if (!document) reader.fail("document", "must be base64");
    if (!signature) reader.fail("signature", "must be base64");
    if (reader.error()) return error_response(*reader.error());
    auto const now = clock_();
    auto const verification = verifier->verify(*document, *signature, *policy_.load(), now);
    metrics_.count_agreement_verification(verification.ok ? "verified" : verification.reason);
    if (!verification.ok) {
        boost::json::object const details{{"reason", verification.reason}, {"document_sha256", sha256_hex(*document)},
                                          {"signer_email", verification.signer_email}};
        auto const recorded = store_.record({now, client.email, "agreement.refused", "agreement", boost::json::serialize(details)});
        if (!recorded) return error_response(storage_error(recorded.error()));
        spdlog::info("event=agreement_refused reason={} actor={}", verification.reason, client.email);
        return error_response(api_error(422, verification.reason, verification.message));
    }
    auto stored = store_.put_agreement(record_of(verification, std::move(*document), std::move(*signature), client.email, now));
    if (!stored) return error_response(storage_error(stored.error()));
    if (stored->second) spdlog::info("event=agreement_stored id={} user={} actor={}", stored->first.id, stored->first.user, client.email);
    return json_response(stored->second ? 201 : 200, agreement_to_json(stored->first));
}

HttpResponse Router::agreement_show(std::string const& id) const
{
    auto found = store_.get_agreement(id);
    if (!found && found.error() == Errc::not_found)
        return error_response(api_error(404, "not_found", "No agreement " + path_id_for_message(id) + " exists."));
    if (!found) return error_response(storage_error(found.error()));
    return json_response(200, agreement_to_json(*found));
}

Result<int> Router::revalidate_agreements() const
{
    auto const verifier = verifier_.load();
    if (!verifier || !verifier->has_crl()) return 0;  // without a CRL no signer is revoked
    auto agreements = store_.list_valid_agreements();
    if (!agreements) return agreements.error();
    auto const now = clock_();
    int invalidated = 0;
    for (auto const& a : *agreements) {
        auto const check = verifier->verify_signer(a.document, a.signature, now);
        if (check.ok || check.reason != "signer_revoked") continue;
        if (auto done = store_.invalidate_agreement(a.id, check.reason, now, evaluator(now)); !done) return done.error();
        spdlog::warn("event=agreement_invalidated id={} reason={}", a.id, check.reason);
        ++invalidated;
    }
    return invalidated;
}

HttpResponse Router::audit_list(std::string_view query) const
{
    auto const after = query_number(query, "after", 0);
    auto const limit = query_number(query, "limit", kDefaultPageLimit);
    if (!after || !limit || *limit == 0 || *limit > kMaxPageLimit)
        return error_response(api_error(400, "invalid_field", "after must be a sequence number and limit 1-10000."));
    // One more tells whether another page follows: a reader that did not ask for a page must not
    // take the first 1,000 records for the whole trail.
    auto records = store_.list_audit(*after, static_cast<std::size_t>(*limit) + 1);
    if (!records) return error_response(storage_error(records.error()));
    bool const more = trim_to_page(*records, *limit);
    boost::json::array out;
    out.reserve(records->size());
    for (auto const& r : *records) out.emplace_back(audit_record_to_json(r));
    boost::json::value next = more ? boost::json::value(records->back().seq) : boost::json::value(nullptr);
    return json_response(200, {{"records", std::move(out)}, {"next_after", std::move(next)}});
}

void Router::set_checkpoints(std::string file, std::shared_ptr<EVP_PKEY> key)
{
    checkpoint_file_ = std::move(file);
    checkpoint_key_ = std::move(key);
}

Result<std::optional<std::string>> Router::checkpoint_problem(Checkpoint const& checkpoint, std::int64_t last_seq) const
{
    if (!verify_checkpoint_signature(checkpoint_key_.get(), checkpoint))
        return std::optional<std::string>("the latest checkpoint's signature does not verify");
    std::optional<std::string> hash_at_seq;
    auto at_seq = store_.list_audit(checkpoint.seq - 1, 1);
    if (!at_seq) return at_seq.error();
    if (!at_seq->empty() && at_seq->front().seq == checkpoint.seq) hash_at_seq = at_seq->front().hash;
    return check_against_checkpoint(checkpoint, last_seq, hash_at_seq);
}

Result<std::optional<std::string>> Router::checkpoint_problem() const
{
    auto const checkpoint = checkpoint_file_.empty() ? std::nullopt : latest_checkpoint(checkpoint_file_);
    if (!checkpoint) return std::optional<std::string>{};
    auto head = store_.audit_head();
    if (!head) return head.error();
    return checkpoint_problem(*checkpoint, head->first);
}

HttpResponse Router::audit_verify() const
{
    auto check = store_.verify_audit();
    if (!check) return error_response(storage_error(check.error()));
    auto const checkpoint = checkpoint_file_.empty() ? std::nullopt : latest_checkpoint(checkpoint_file_);
    if (check->ok && checkpoint) {
        auto problem = checkpoint_problem(*checkpoint, check->records);
        if (!problem) return error_response(storage_error(problem.error()));
        if (*problem) {
            check->ok = false;
            check->first_bad_seq = std::min(check->records + 1, checkpoint->seq);
            check->reason = **problem;
        }
    }
    auto body = audit_check_to_json(*check);
    if (checkpoint)
        body["checkpoint"] = {{"seq", checkpoint->seq}, {"head_hash", checkpoint->head_hash}, {"at", format_rfc3339(checkpoint->at)}};
    else
        body["checkpoint"] = nullptr;
    if (!check->ok) spdlog::error("event=audit_chain_broken first_bad_seq={} reason=\"{}\"", *check->first_bad_seq, check->reason);
    return json_response(200, body);
}

}  // namespace exemptd::daemon

namespace exemptd::daemon {

std::size_t Router::body_limit(Action action, std::size_t fallback) noexcept
{
    return action == Action::device_import ? std::max(fallback, kMaxImportBytes) : fallback;
}

std::size_t Router::largest_body_limit(std::size_t fallback) noexcept
{
    return std::max(fallback, kMaxImportBytes);
}

namespace {

// text/csv, with or without parameters (charset=utf-8), in any case.
bool is_csv(std::string_view content_type)
{
    auto const type = content_type.substr(0, content_type.find(';'));
    auto const end = type.find_last_not_of(" \t");
    auto const trimmed = end == std::string_view::npos ? std::string_view{} : type.substr(0, end + 1);
    return trimmed.size() == 8 && std::equal(trimmed.begin(), trimmed.end(), "text/csv", [](char a, char b) {
               return std::tolower(static_cast<unsigned char>(a)) == b;
           });
}

}  // namespace

// Every row is validated before anything is written; the store applies the rows in one
// transaction and audits the import once.
HttpResponse Router::device_import(ClientId const& client, std::string_view content_type, std::string const& body) const
{
    if (!is_csv(content_type))
        return error_response(api_error(415, "unsupported_media_type",
                                        "An import is a CSV file sent with Content-Type: text/csv."));
    auto rows = parse_mdm_csv(body);
    if (!rows) return error_response(rows.error());
    auto const now = clock_();
    ImportAudit const audit{client.email, now, sha256_hex(body)};
    auto outcome = store_.import_enrollments(*rows, audit, evaluator(now));
    if (!outcome) return error_response(storage_error(outcome.error()));
    spdlog::info("event=devices_imported rows={} created={} changed={} unchanged={} reevaluated={} sha256={} actor={}",
                 outcome->rows, outcome->created, outcome->changed, outcome->unchanged, outcome->reevaluated,
                 audit.file_sha256, client.email);
    return json_response(200, {{"created", outcome->created},
                               {"changed", outcome->changed},
                               {"unchanged", outcome->unchanged},
                               {"rows", outcome->rows}});
}

}  // namespace exemptd::daemon
