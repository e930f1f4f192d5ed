// The exemption routes of the router (SPEC §4, §6): request, register, life cycle, and how an
// approved exemption shows in a device's decision.

#include "router_fixture.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include <memory>

using namespace std::chrono_literals;
using exemptd::ClientId;
using exemptd::Role;
using exemptd::TimePoint;
using exemptd::daemon::HttpResponse;
using exemptd::test::fixed_time;
using exemptd::test::PostureJson;

namespace {

TimePoint const t0 = fixed_time("2026-11-27T21:00:00Z");
constexpr auto kDay = std::chrono::seconds{24h};

ClientId const kAdmin{Role::admin, {}, "admin@example.com"};             // requests; approves nothing
ClientId const kManager{Role::admin, {}, "it-manager@example.com"};      // approves medium and low
ClientId const kCiso{Role::admin, {}, "ciso@example.com"};               // approves every level
ClientId const kHelpdesk{Role::helpdesk, {}, "helpdesk@example.com"};
ClientId const kEndpoint{Role::endpoint, "LAPTOP-0042", {}};

// A router over a fresh database file, the standard policy and a clock the test moves.
// On a database file: exemption reads go through the store's own read connections.
struct DatabaseDir {
    exemptd::test::TempDir dir;
};

struct Api : DatabaseDir, exemptd::test::RouterFixture {
    Api() : RouterFixture(dir.file("exemptd.db")) {}

    HttpResponse post(ClientId const& client, std::string const& target, boost::json::object const& body) const
    {
        return call(client, "POST", target, boost::json::serialize(body));
    }
    HttpResponse change(ClientId const& client, std::string const& id, std::string const& verb,
                        boost::json::object const& body) const
    {
        return post(client, "/v1/exemptions/" + id + "/" + verb, body);
    }
    HttpResponse approve(std::string const& id, ClientId const& approver = kManager) const
    {
        return change(approver, id, "approve", {{"note", "risk accepted"}});
    }
};

// A valid request body: OS-01 for LAPTOP-0042, medium risk (90 days at most), compensated by ENC-01.
boost::json::object request_body(TimePoint now, std::string const& control = "OS-01",
                                 std::string const& subject = "device:LAPTOP-0042")
{
    return {{"subject", subject},
            {"controls", boost::json::array{boost::json::value(control)}},
            {"justification", "vendor tool pins the OS version"},
            {"risk", {{"likelihood", "medium"}, {"impact", "medium"}}},
            {"mitigations", boost::json::array{"network access limited to email", "weekly manual scan"}},
            {"compensating_controls", subject.starts_with("device:") && control != "ENC-01" ? boost::json::array{"ENC-01"}
                                                                                           : boost::json::array{}},
            {"evidence", "ticket SEC-42"},
            {"expires_at", exemptd::format_rfc3339(now + 30 * kDay)}};
}

boost::json::object body_of(HttpResponse const& response)
{
    INFO("body: " << response.body);
    auto value = boost::json::parse(response.body);
    REQUIRE(value.is_object());
    return std::move(value.as_object());
}

// Requires the SPEC error shape with `status` and `code`.
void check_error(HttpResponse const& response, int status, std::string const& code)
{
    INFO("status " << response.status << ", body: " << response.body);
    CHECK(response.status == status);
    CHECK(response.content_type == "application/json");
    auto const body = body_of(response);
    REQUIRE(body.size() == 1);
    REQUIRE(body.contains("error"));
    auto const& error = body.at("error").as_object();
    REQUIRE(error.contains("code"));
    REQUIRE(error.contains("message"));
    CHECK(error.at("code").as_string() == code);
    CHECK_FALSE(error.at("message").as_string().empty());
}

std::string string_at(boost::json::object const& o, std::string_view key)
{
    auto const* v = o.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string("<missing>");
}

// Requests an exemption as admin@example.com and answers its id.
std::string request(Api const& api, boost::json::object const& body, ClientId const& requester = kAdmin)
{
    auto const response = api.post(requester, "/v1/exemptions", body);
    INFO(response.body);
    REQUIRE(response.status == 201);
    return string_at(body_of(response), "id");
}

std::string request_approved(Api const& api, boost::json::object const& body, ClientId const& approver = kManager)
{
    auto const id = request(api, body);
    auto const approved = api.approve(id, approver);
    INFO(approved.body);
    REQUIRE(approved.status == 200);
    return id;
}

boost::json::object show(Api const& api, std::string const& id)
{
    auto const response = api.call(kHelpdesk, "GET", "/v1/exemptions/" + id);
    INFO(response.body);
    REQUIRE(response.status == 200);
    return body_of(response);
}

std::vector<std::string> listed(Api const& api, std::string const& target)
{
    auto const response = api.call(kHelpdesk, "GET", target);
    INFO(target << " -> " << response.body);
    REQUIRE(response.status == 200);
    auto const body = body_of(response);
    REQUIRE(body.size() == 1);
    std::vector<std::string> ids;
    for (auto const& e : body.at("exemptions").as_array()) ids.push_back(string_at(e.as_object(), "id"));
    return ids;
}

// Enrolls LAPTOP-0042 and checks it in with `posture` at the clock's time.
void enroll_and_check_in(Api const& api, PostureJson const& posture)
{
    REQUIRE(api.call(kAdmin, "PUT", "/v1/devices/LAPTOP-0042/enrollment",
                     R"({"enrolled": true, "owner": "sam@example.com", "source": "mdm"})")
                .status == 201);
    auto const response = api.call(kEndpoint, "POST", "/v1/checkin", posture.str());
    INFO(response.body);
    REQUIRE(response.status == 200);
}

PostureJson unpatched(Api const& api, std::string const& nonce = "nonce-0001")
{
    PostureJson p{"LAPTOP-0042", api.clock.now()};
    p.nonce(nonce).fact("os_patch_age_days", 45);
    return p;
}

boost::json::object decision(Api const& api)
{
    auto const response = api.call(kHelpdesk, "GET", "/v1/devices/LAPTOP-0042/decision");
    INFO(response.body);
    REQUIRE(response.status == 200);
    return body_of(response);
}

boost::json::object control_of(boost::json::object const& decision_body, std::string const& id)
{
    for (auto const& c : decision_body.at("controls").as_array()) {
        if (string_at(c.as_object(), "id") == id) return c.as_object();
    }
    FAIL("no control " << id << " in " << boost::json::serialize(decision_body));
    return {};
}

using Ids = std::vector<std::string>;

}  // namespace

TEST_CASE("Requesting an exemption answers 201 with the whole exemption, pending", "[router-exemption]")
{
    Api api;
    auto const response = api.post(kAdmin, "/v1/exemptions", request_body(t0));
    REQUIRE(response.status == 201);
    CHECK(response.content_type == "application/json");
    auto const body = body_of(response);
    CHECK(string_at(body, "id") == "EX-000001");
    CHECK(string_at(body, "subject") == "device:LAPTOP-0042");
    CHECK(body.at("controls").as_array() == boost::json::array{"OS-01"});
    CHECK(string_at(body, "justification") == "vendor tool pins the OS version");
    auto const& risk = body.at("risk").as_object();
    CHECK(string_at(risk, "likelihood") == "medium");
    CHECK(string_at(risk, "impact") == "medium");
    CHECK(string_at(risk, "level") == "medium");
    CHECK(body.at("mitigations").as_array() ==
          boost::json::array{"network access limited to email", "weekly manual scan"});
    CHECK(body.at("compensating_controls").as_array() == boost::json::array{"ENC-01"});
    CHECK(string_at(body, "evidence") == "ticket SEC-42");
    CHECK(body.at("agreement_id").is_null());
    CHECK(string_at(body, "requested_by") == "admin@example.com");
    CHECK(string_at(body, "requested_at") == "2026-11-27T21:00:00Z");
    CHECK(body.at("approved_by").is_null());
    CHECK(body.at("approved_at").is_null());
    CHECK(string_at(body, "expires_at") == "2026-12-27T21:00:00Z");
    CHECK(body.at("next_review_at").is_null());
    CHECK(body.at("reviews").as_array().empty());
    CHECK(body.at("renewals").as_array().empty());
    CHECK(body.at("revoked_by").is_null());
    CHECK(body.at("revoked_at").is_null());
    CHECK(string_at(body, "state") == "pending");
    CHECK_FALSE(body.at("review_overdue").as_bool());

    {  // the register shows the same object
        CHECK(show(api, "EX-000001") == body);
        CHECK(listed(api, "/v1/exemptions") == Ids{"EX-000001"});
    }
    {  // the next request gets the next id
        CHECK(request(api, request_body(t0, "LOCK-01")) == "EX-000002");
        CHECK(request(api, request_body(t0, "HR-03", "user:jordan@example.com")) == "EX-000003");
        CHECK(request(api, request_body(t0, "IAM-01", "account:aws-root")) == "EX-000004");
    }
    {  // a device the registry has never seen may be named
        CHECK(request(api, request_body(t0, "OS-01", "device:NEW-LAPTOP")) == "EX-000005");
    }
    {  // the risk level is derived; a stated level must agree with it
        auto claimed = request_body(t0);
        claimed["risk"] = {{"likelihood", "high"}, {"impact", "high"}, {"level", "low"}};
        claimed["expires_at"] = exemptd::format_rfc3339(t0 + 7 * kDay);
        auto const wrong = api.post(kAdmin, "/v1/exemptions", claimed);
        CHECK(wrong.status == 422);
        CHECK(string_at(body_of(wrong).at("error").as_object(), "code") == "risk_level_mismatch");
        claimed["risk"] = {{"likelihood", "high"}, {"impact", "high"}, {"level", "critical"}};
        auto const critical = api.post(kAdmin, "/v1/exemptions", claimed);
        REQUIRE(critical.status == 201);
        CHECK(string_at(body_of(critical).at("risk").as_object(), "level") == "critical");
    }
}

TEST_CASE("The exemption JSON names the revocation reason as SPEC §6 does", "[router-exemption][spec]")
{
    // SPEC §6 lists `revoked_by`/`at`/`reason`, as it lists `requested_by`/`at`: revoked_reason.
    Api api;
    auto const id = request(api, request_body(t0));
    auto const revoked = api.change(kCiso, id, "revoke", {{"reason", "laptop replaced"}});
    REQUIRE(revoked.status == 200);
    auto const body = body_of(revoked);
    CHECK(string_at(body, "revoked_reason") == "laptop replaced");
}

TEST_CASE("A malformed exemption request is refused with 400 and stores nothing", "[router-exemption]")
{
    Api api;
    auto const refused = [&](boost::json::object const& body) { return api.post(kAdmin, "/v1/exemptions", body); };
    auto const with = [](std::string_view key, boost::json::value value) {
        auto body = request_body(t0);
        body[key] = std::move(value);
        return body;
    };
    auto const without = [](std::string_view key) {
        auto body = request_body(t0);
        body.erase(key);
        return body;
    };

    {  // not JSON, or not an object
        for (auto const* text : {"", "{", "{\"subject\": }", "[]", "null", "\"device:LAPTOP-0042\""}) {
            INFO(text);
            check_error(api.call(kAdmin, "POST", "/v1/exemptions", text), 400, "malformed_json");
        }
    }
    {  // wrong types
        check_error(refused(with("subject", 42)), 400, "invalid_field");
        check_error(refused(with("controls", "OS-01")), 400, "invalid_field");
        check_error(refused(with("controls", boost::json::array{1})), 400, "invalid_field");
        check_error(refused(with("justification", true)), 400, "invalid_field");
        check_error(refused(with("risk", "medium")), 400, "invalid_field");
        check_error(refused(with("risk", {{"likelihood", 2}, {"impact", "medium"}})), 400, "invalid_field");
        check_error(refused(with("risk", {{"likelihood", "critical"}, {"impact", "medium"}})), 400, "invalid_field");
        check_error(refused(with("risk", {{"likelihood", "medium"}, {"impact", "severe"}})), 400, "invalid_field");
        check_error(refused(with("mitigations", "network access limited")), 400, "invalid_field");
        check_error(refused(with("mitigations", boost::json::array{1, 2})), 400, "invalid_field");
        check_error(refused(with("compensating_controls", "ENC-01")), 400, "invalid_field");
        check_error(refused(with("evidence", boost::json::array{"SEC-42"})), 400, "invalid_field");
        check_error(refused(with("agreement_id", 1)), 400, "invalid_field");
        check_error(refused(with("expires_at", "next month")), 400, "invalid_field");
        check_error(refused(with("expires_at", 1798405200)), 400, "invalid_field");
    }
    {  // unknown fields
        check_error(refused(with("expiry", "2026-12-27T21:00:00Z")), 400, "invalid_field");
        check_error(refused(with("state", "active")), 400, "invalid_field");
        check_error(refused(with("risk", {{"likelihood", "low"}, {"impact", "low"}, {"score", 1}})), 400,
                    "invalid_field");
    }
    {  // missing required fields
        for (auto const* key : {"subject", "controls", "justification", "risk", "expires_at"}) {
            INFO(key);
            check_error(refused(without(key)), 400, "invalid_field");
        }
        check_error(refused(with("justification", "")), 400, "invalid_field");
        check_error(refused(with("risk", {{"likelihood", "low"}})), 400, "invalid_field");
    }
    CHECK(listed(api, "/v1/exemptions").empty());
}

TEST_CASE("A malformed life-cycle body is refused with 400 and changes nothing", "[router-exemption]")
{
    Api api;
    auto const pending = request(api, request_body(t0));
    auto const active = request_approved(api, request_body(t0, "LOCK-01"));
    auto const pending_before = show(api, pending);
    auto const active_before = show(api, active);

    {  // not JSON
        check_error(api.call(kManager, "POST", "/v1/exemptions/" + pending + "/approve", "{"), 400, "malformed_json");
        check_error(api.call(kCiso, "POST", "/v1/exemptions/" + active + "/revoke", "reason"), 400, "malformed_json");
    }
    {  // wrong types
        check_error(api.change(kManager, pending, "approve", {{"note", 1}}), 400, "invalid_field");
        check_error(api.change(kManager, pending, "reject", {{"note", boost::json::array{"no"}}}), 400, "invalid_field");
        check_error(api.change(kCiso, active, "revoke", {{"reason", false}}), 400, "invalid_field");
        check_error(api.change(kCiso, active, "renew", {{"expires_at", "soon"}, {"note", "x"}}), 400, "invalid_field");
        check_error(api.change(kCiso, active, "review", {{"note", 7}}), 400, "invalid_field");
    }
    {  // unknown fields
        check_error(api.change(kManager, pending, "approve", {{"note", "ok"}, {"expires_at", "2027-01-01T00:00:00Z"}}),
                    400, "invalid_field");
        check_error(api.change(kCiso, active, "revoke", {{"reason", "done"}, {"note", "x"}}), 400, "invalid_field");
        check_error(api.change(kCiso, active, "review", {{"notes", "fine"}}), 400, "invalid_field");
    }
    {  // a review without a note
        check_error(api.change(kCiso, active, "review", {}), 400, "invalid_field");
        check_error(api.change(kCiso, active, "review", {{"note", ""}}), 400, "invalid_field");
        check_error(api.call(kCiso, "POST", "/v1/exemptions/" + active + "/review"), 400, "invalid_field");
    }
    {  // a revocation without a reason
        check_error(api.change(kCiso, active, "revoke", {}), 400, "invalid_field");
        check_error(api.change(kCiso, active, "revoke", {{"reason", ""}}), 400, "invalid_field");
        check_error(api.change(kCiso, pending, "revoke", {{"reason", nullptr}}), 400, "invalid_field");
    }
    {  // a renewal without a new expiry
        check_error(api.change(kCiso, active, "renew", {{"note", "still needed"}}), 400, "invalid_field");
    }
    CHECK(show(api, pending) == pending_before);
    CHECK(show(api, active) == active_before);
}

TEST_CASE("Only admins write the register, and endpoints do not read it", "[router-exemption]")
{
    Api api;
    auto const id = request(api, request_body(t0));
    auto const before = show(api, id);
    auto const target = "/v1/exemptions/" + id;

    for (auto const& client : {kHelpdesk, kEndpoint}) {
        INFO(exemptd::to_string(client.role));
        auto const admitted = api.router.admit(client, "POST", "/v1/exemptions");
        REQUIRE_FALSE(admitted);
        CHECK(admitted.error().status == 403);
        check_error(api.post(client, "/v1/exemptions", request_body(t0)), 403, "forbidden");
        check_error(api.call(client, "POST", "/v1/exemptions", "{"), 403, "forbidden");  // role before body
        for (auto const* verb : {"approve", "reject", "renew", "review", "revoke"}) {
            INFO(verb);
            auto const answer = api.router.admit(client, "POST", target + "/" + verb);
            REQUIRE_FALSE(answer);
            CHECK(answer.error().code == "forbidden");
            check_error(api.change(client, id, verb, {{"note", "x"}}), 403, "forbidden");
        }
    }
    check_error(api.call(kEndpoint, "GET", "/v1/exemptions"), 403, "forbidden");
    check_error(api.call(kEndpoint, "GET", "/v1/exemptions?subject=device:LAPTOP-0042"), 403, "forbidden");
    check_error(api.call(kEndpoint, "GET", target), 403, "forbidden");
    check_error(api.call(kEndpoint, "GET", "/v1/exemptions/EX-000099"), 403, "forbidden");

    CHECK(api.router.admit(kHelpdesk, "GET", "/v1/exemptions"));
    CHECK(api.router.admit(kHelpdesk, "GET", target));
    CHECK(api.router.admit(kAdmin, "POST", target + "/approve"));
    CHECK(show(api, id) == before);
    CHECK(listed(api, "/v1/exemptions") == Ids{id});
}

TEST_CASE("Unknown or malformed exemption ids answer 404, wrong methods 405", "[router-exemption]")
{
    Api api;
    auto const id = request(api, request_body(t0));

    check_error(api.call(kHelpdesk, "GET", "/v1/exemptions/EX-000099"), 404, "not_found");
    check_error(api.call(kHelpdesk, "GET", "/v1/exemptions/EX-000000"), 404, "not_found");
    check_error(api.change(kCiso, "EX-000099", "approve", {{"note", "ok"}}), 404, "not_found");
    check_error(api.change(kCiso, "EX-000099", "reject", {}), 404, "not_found");
    check_error(api.change(kCiso, "EX-000099", "revoke", {{"reason", "x"}}), 404, "not_found");
    check_error(api.change(kCiso, "EX-000099", "review", {{"note", "x"}}), 404, "not_found");
    check_error(api.change(kCiso, "EX-000099", "renew", {{"expires_at", exemptd::format_rfc3339(t0 + kDay)}}), 404,
                "not_found");

    for (auto const* bad : {"EX-1", "ex-000001", "EX-00000A", "EX000001", "LAPTOP-0042", "EX-000001x",
                            "EX-%30%30%30%30%30%31", "EX-0000000000000001"}) {
        INFO(bad);
        check_error(api.call(kAdmin, "GET", std::string("/v1/exemptions/") + bad), 404, "not_found");
        check_error(api.change(kCiso, bad, "approve", {{"note", "ok"}}), 404, "not_found");
    }
    check_error(api.change(kCiso, id, "delete", {}), 404, "not_found");
    check_error(api.call(kAdmin, "GET", "/v1/exemptions/" + id + "/approve/now"), 404, "not_found");
    check_error(api.call(kAdmin, "GET", "/v1/exemptions/" + id + "/history"), 404, "not_found");

    check_error(api.call(kAdmin, "PUT", "/v1/exemptions", "{}"), 405, "method_not_allowed");
    check_error(api.call(kAdmin, "DELETE", "/v1/exemptions"), 405, "method_not_allowed");
    check_error(api.call(kAdmin, "POST", "/v1/exemptions/" + id, "{}"), 405, "method_not_allowed");
    check_error(api.call(kAdmin, "DELETE", "/v1/exemptions/" + id), 405, "method_not_allowed");
    check_error(api.call(kAdmin, "PUT", "/v1/exemptions/" + id, "{}"), 405, "method_not_allowed");
    for (auto const* verb : {"approve", "reject", "renew", "review", "revoke"}) {
        INFO(verb);
        check_error(api.call(kAdmin, "GET", "/v1/exemptions/" + id + "/" + verb), 405, "method_not_allowed");
        check_error(api.call(kAdmin, "PUT", "/v1/exemptions/" + id + "/" + verb, "{}"), 405, "method_not_allowed");
    }
    CHECK(string_at(show(api, id), "state") == "pending");
}

TEST_CASE("Illegal transitions answer 409 with their codes and change nothing", "[router-exemption]")
{
    Api api;
    auto const pending = request(api, request_body(t0));
    auto const active = request_approved(api, request_body(t0, "LOCK-01"));
    auto const rejected = request(api, request_body(t0, "ENC-01"));
    REQUIRE(api.change(kManager, rejected, "reject", {{"note", "no"}}).status == 200);
    auto const revoked = request(api, request_body(t0, "HR-03", "user:jordan@example.com"));
    REQUIRE(api.change(kCiso, revoked, "revoke", {{"reason", "left the company"}}).status == 200);

    auto const renew = boost::json::object{{"expires_at", exemptd::format_rfc3339(t0 + 60 * kDay)}, {"note", "more"}};
    check_error(api.approve(active, kCiso), 409, "exemption_not_pending");
    check_error(api.change(kCiso, active, "reject", {{"note", "no"}}), 409, "exemption_not_pending");
    check_error(api.change(kCiso, pending, "renew", renew), 409, "exemption_not_active");
    check_error(api.change(kCiso, pending, "review", {{"note", "fine"}}), 409, "exemption_not_active");
    check_error(api.approve(rejected, kCiso), 409, "exemption_not_pending");
    check_error(api.change(kCiso, rejected, "reject", {{"note", "again"}}), 409, "exemption_not_pending");
    check_error(api.change(kCiso, rejected, "review", {{"note", "fine"}}), 409, "exemption_not_active");
    check_error(api.change(kCiso, rejected, "revoke", {{"reason", "x"}}), 409, "exemption_closed");
    check_error(api.approve(revoked, kCiso), 409, "exemption_not_pending");
    check_error(api.change(kCiso, revoked, "renew", renew), 409, "exemption_not_active");
    check_error(api.change(kCiso, revoked, "revoke", {{"reason", "again"}}), 409, "exemption_closed");

    SECTION("once its expiry has passed, before any sweep, nothing moves an open exemption") {
        api.clock.advance(30 * kDay);
        check_error(api.approve(pending, kCiso), 409, "exemption_not_pending");
        check_error(api.change(kCiso, active, "review", {{"note", "fine"}}), 409, "exemption_not_active");
        check_error(api.change(kCiso, active, "renew", {{"expires_at", exemptd::format_rfc3339(t0 + 60 * kDay)}}), 409,
                    "exemption_not_active");
        check_error(api.change(kCiso, active, "revoke", {{"reason", "x"}}), 409, "exemption_closed");
        CHECK(string_at(show(api, pending), "state") == "expired");
        CHECK(string_at(show(api, active), "state") == "expired");
    }
    CHECK(string_at(show(api, rejected), "state") == "rejected");
    CHECK(string_at(show(api, revoked), "state") == "revoked");
}

TEST_CASE("A request that breaks a rule answers 422 with the rule's code", "[router-exemption]")
{
    Api api;
    auto const submit = [&](boost::json::object const& body) { return api.post(kAdmin, "/v1/exemptions", body); };
    auto const expiring = [](TimePoint at, std::string const& likelihood = "medium", std::string const& impact = "medium") {
        auto body = request_body(t0);
        body["expires_at"] = exemptd::format_rfc3339(at);
        body["risk"] = {{"likelihood", likelihood}, {"impact", impact}};
        return body;
    };

    {  // an expiry that is not in the future
        check_error(submit(expiring(t0 - 1s)), 422, "expiry_in_past");
        check_error(submit(expiring(t0)), 422, "expiry_in_past");
        CHECK(listed(api, "/v1/exemptions").empty());
    }
    {  // a control the policy does not have
        check_error(submit(request_body(t0, "XYZ-01")), 422, "unknown_control");
        auto body = request_body(t0);
        body["compensating_controls"] = boost::json::array{"XYZ-02"};
        check_error(submit(body), 422, "unknown_control");
        CHECK(listed(api, "/v1/exemptions").empty());
    }
    {  // a control for another kind of subject
        check_error(submit(request_body(t0, "OS-01", "user:jordan@example.com")), 422, "subject_kind_mismatch");
        check_error(submit(request_body(t0, "HR-03", "device:LAPTOP-0042")), 422, "subject_kind_mismatch");
        check_error(submit(request_body(t0, "HR-03", "account:aws-root")), 422, "subject_kind_mismatch");
        check_error(submit(request_body(t0, "IAM-01", "user:jordan@example.com")), 422, "subject_kind_mismatch");
        CHECK(listed(api, "/v1/exemptions").empty());
    }
    {  // an expiry beyond max_days for the derived level
        check_error(submit(expiring(t0 + 90 * kDay + 1s)), 422, "expiry_too_far");                // medium: 90
        check_error(submit(expiring(t0 + 180 * kDay + 1s, "low", "low")), 422, "expiry_too_far");  // low: 180
        check_error(submit(expiring(t0 + 31 * kDay, "high", "medium")), 422, "expiry_too_far");    // high: 30
        check_error(submit(expiring(t0 + 8 * kDay, "high", "high")), 422, "expiry_too_far");       // critical: 7
        CHECK(listed(api, "/v1/exemptions").empty());
        CHECK(submit(expiring(t0 + 90 * kDay)).status == 201);  // exactly at the limit
        CHECK(submit(expiring(t0 + 7 * kDay, "high", "high")).status == 201);
        CHECK(listed(api, "/v1/exemptions").size() == 2);
    }
}

TEST_CASE("Approval needs someone other than the requester with the level, and a verified agreement where required",
          "[router-exemption]")
{
    Api api;
    {  // self approval
        auto const id = request(api, request_body(t0), kManager);
        check_error(api.approve(id, kManager), 422, "self_approval");
        CHECK(string_at(show(api, id), "state") == "pending");
        CHECK(api.approve(id, kCiso).status == 200);
    }
    {  // an admin listed for no level, or for a lower one
        auto high = request_body(t0);
        high["risk"] = {{"likelihood", "high"}, {"impact", "medium"}};
        auto const id = request(api, high, kCiso);
        check_error(api.approve(id, kAdmin), 422, "approver_not_authorized");
        check_error(api.approve(id, kManager), 422, "approver_not_authorized");
        check_error(api.change(kManager, id, "reject", {{"note", "no"}}), 422, "approver_not_authorized");
        CHECK(string_at(show(api, id), "state") == "pending");
        auto const approved = api.approve(id, ClientId{Role::admin, {}, "security-lead@example.com"});
        CHECK(approved.status == 200);
        CHECK(string_at(body_of(approved), "approved_by") == "security-lead@example.com");
    }
    {  // a higher level's approver approves a lower level
        auto low = request_body(t0);
        low["risk"] = {{"likelihood", "low"}, {"impact", "low"}};
        CHECK(api.approve(request(api, low), kCiso).status == 200);
        CHECK(api.approve(request(api, low), kManager).status == 200);
        check_error(api.approve(request(api, low), ClientId{Role::admin, {}, "someone@example.com"}), 422,
                    "approver_not_authorized");
    }
    {  // MDM-01 requires a verified BYOD agreement
        auto const id = request(api, request_body(t0, "MDM-01"));
        check_error(api.approve(id, kCiso), 422, "agreement_required");
        auto with_agreement = request_body(t0, "MDM-01");
        with_agreement["agreement_id"] = "AG-000001";
        auto const referenced = request(api, with_agreement);
        auto const refused = api.approve(referenced, kCiso);
        CHECK(refused.status == 422);
        CHECK(string_at(show(api, id), "state") == "pending");
        CHECK(string_at(show(api, referenced), "state") == "pending");
    }
}

TEST_CASE("Renewals move the expiry, need the authority and are capped by max_renewals", "[router-exemption]")
{
    Api api;
    auto const id = request_approved(api, request_body(t0));  // medium, expires t0+30d
    auto const renew = [&](ClientId const& who, TimePoint expires_at) {
        return api.change(who, id, "renew", {{"expires_at", exemptd::format_rfc3339(expires_at)}, {"note", "still needed"}});
    };
    api.clock.advance(kDay);

    check_error(renew(kAdmin, t0 + 60 * kDay), 422, "self_approval");
    check_error(renew(kCiso, t0 + 30 * kDay), 422, "expiry_not_extended");
    check_error(renew(kCiso, t0 + kDay + 90 * kDay + 1s), 422, "expiry_too_far");

    auto const first = renew(kManager, t0 + 60 * kDay);
    REQUIRE(first.status == 200);
    auto const body = body_of(first);
    CHECK(string_at(body, "expires_at") == exemptd::format_rfc3339(t0 + 60 * kDay));
    CHECK(string_at(body, "state") == "active");
    auto const& renewals = body.at("renewals").as_array();
    REQUIRE(renewals.size() == 1);
    auto const& renewal = renewals.at(0).as_object();
    CHECK(string_at(renewal, "by") == "it-manager@example.com");
    CHECK(string_at(renewal, "previous_expires_at") == exemptd::format_rfc3339(t0 + 30 * kDay));
    CHECK(string_at(renewal, "expires_at") == exemptd::format_rfc3339(t0 + 60 * kDay));

    REQUIRE(renew(kCiso, t0 + 80 * kDay).status == 200);
    check_error(renew(kCiso, t0 + 85 * kDay), 422, "max_renewals_reached");
    auto const after = show(api, id);
    CHECK(after.at("renewals").as_array().size() == 2);
    CHECK(string_at(after, "expires_at") == exemptd::format_rfc3339(t0 + 80 * kDay));
}

TEST_CASE("Each life-cycle answer is the whole exemption", "[router-exemption]")
{
    Api api;
    auto const id = request(api, request_body(t0));
    auto const refused = request(api, request_body(t0, "LOCK-01"));
    api.clock.advance(1h);

    auto const response = api.approve(id);
    REQUIRE(response.status == 200);
    auto const body = body_of(response);
    CHECK(string_at(body, "state") == "active");
    CHECK(string_at(body, "approved_by") == "it-manager@example.com");
    CHECK(string_at(body, "approved_at") == "2026-11-27T22:00:00Z");
    CHECK(string_at(body, "next_review_at") == "2026-12-27T22:00:00Z");  // medium: every 30 days
    CHECK(string_at(body, "justification") == "vendor tool pins the OS version");
    CHECK(body == show(api, id));

    api.clock.advance(kDay);
    auto const reviewed = api.change(kCiso, id, "review", {{"note", "scan results clean"}});
    REQUIRE(reviewed.status == 200);
    auto const after_review = body_of(reviewed);
    auto const& reviews = after_review.at("reviews").as_array();
    REQUIRE(reviews.size() == 1);
    CHECK(string_at(reviews.at(0).as_object(), "by") == "ciso@example.com");
    CHECK(string_at(reviews.at(0).as_object(), "at") == "2026-11-28T22:00:00Z");
    CHECK(string_at(reviews.at(0).as_object(), "note") == "scan results clean");
    CHECK(string_at(after_review, "next_review_at") == "2026-12-28T22:00:00Z");
    CHECK(string_at(after_review, "state") == "active");
    CHECK(after_review == show(api, id));

    api.clock.advance(1h);
    auto const revoked = api.change(kAdmin, id, "revoke", {{"reason", "laptop replaced"}});
    REQUIRE(revoked.status == 200);
    auto const after_revoke = body_of(revoked);
    CHECK(string_at(after_revoke, "state") == "revoked");
    CHECK(string_at(after_revoke, "revoked_by") == "admin@example.com");
    CHECK(string_at(after_revoke, "revoked_at") == "2026-11-28T23:00:00Z");
    CHECK(string_at(after_revoke, "approved_by") == "it-manager@example.com");  // history is kept
    CHECK(after_revoke.at("reviews").as_array().size() == 1);
    CHECK(after_revoke == show(api, id));

    auto const rejected = api.change(kManager, refused, "reject", {{"note", "not justified"}});
    REQUIRE(rejected.status == 200);
    auto const after_reject = body_of(rejected);
    CHECK(string_at(after_reject, "state") == "rejected");
    CHECK(after_reject.at("approved_by").is_null());
    CHECK(after_reject.at("approved_at").is_null());
    CHECK(after_reject.at("next_review_at").is_null());
    CHECK(after_reject == show(api, refused));
}

TEST_CASE("An approved exemption covers a failing control in the decision, until it expires", "[router-exemption]")
{
    Api api;
    enroll_and_check_in(api, unpatched(api));
    REQUIRE(string_at(decision(api), "decision") == "deny");
    auto const id = request(api, request_body(t0));
    CHECK(string_at(decision(api), "decision") == "deny");  // pending covers nothing
    REQUIRE(api.approve(id).status == 200);

    auto const covered = decision(api);
    CHECK(string_at(covered, "decision") == "allow");
    CHECK(string_at(covered, "basis") == "exempted");
    auto const os = control_of(covered, "OS-01");
    CHECK(string_at(os, "status") == "fail");  // never hidden
    CHECK(string_at(os, "covered_by") == id);
    CHECK(string_at(os, "reason") != "<missing>");
    CHECK_FALSE(control_of(covered, "ENC-01").contains("covered_by"));
    CHECK(string_at(control_of(covered, "ENC-01"), "status") == "pass");
    // The endpoint itself reads the same.
    CHECK(body_of(api.call(kEndpoint, "GET", "/v1/devices/LAPTOP-0042/decision")) == covered);
    // The device record shows the stored decision, re-evaluated on approval.
    auto const device = body_of(api.call(kHelpdesk, "GET", "/v1/devices/LAPTOP-0042"));
    CHECK(string_at(device.at("decision").as_object(), "basis") == "exempted");

    // At its expiry the decision is deny at once, with no sweep.
    api.clock.set(t0 + 30 * kDay - 1s);
    CHECK(string_at(decision(api), "decision") == "allow");
    api.clock.set(t0 + 30 * kDay);
    auto const expired = decision(api);
    CHECK(string_at(expired, "decision") == "deny");
    CHECK(string_at(expired, "basis") == "noncompliant");
    CHECK(string_at(control_of(expired, "OS-01"), "status") == "fail");
    CHECK_FALSE(control_of(expired, "OS-01").contains("covered_by"));
    CHECK(string_at(show(api, id), "state") == "expired");

    // The sweep then records it.
    auto const swept = api.router.sweep();
    REQUIRE(swept);
    CHECK(swept->expired == 1);
    CHECK(string_at(show(api, id), "state") == "expired");
    auto const stored = body_of(api.call(kHelpdesk, "GET", "/v1/devices/LAPTOP-0042"));
    CHECK(string_at(stored.at("decision").as_object(), "decision") == "deny");
    CHECK(api.router.sweep()->expired == 0);

    // A new exemption covers again, and revoking it denies at once.
    auto const renewed = request_approved(api, request_body(api.clock.now()));
    CHECK(string_at(control_of(decision(api), "OS-01"), "covered_by") == renewed);
    REQUIRE(api.change(kCiso, renewed, "revoke", {{"reason", "patched by hand"}}).status == 200);
    auto const revoked = decision(api);
    CHECK(string_at(revoked, "decision") == "deny");
    CHECK_FALSE(control_of(revoked, "OS-01").contains("covered_by"));
}

TEST_CASE("An exemption covers only while its compensating controls pass", "[router-exemption]")
{
    Api api;
    // ENC-01 (72 h grace) and OS-01 both fail; the exemption of OS-01 needs ENC-01 to pass.
    enroll_and_check_in(api, unpatched(api).fact("disk_encrypted", false));
    auto const id = request_approved(api, request_body(t0));

    {  // a compensating control in its grace period does not pass, so nothing is covered
        auto const d = decision(api);
        CHECK(string_at(d, "decision") == "deny");
        CHECK(string_at(d, "basis") == "noncompliant");
        CHECK_FALSE(control_of(d, "OS-01").contains("covered_by"));
        CHECK(string_at(control_of(d, "ENC-01"), "status") == "fail");
    }
    {  // a compensating control failing beyond its grace: not covered, deny
        api.clock.advance(73h);
        auto const check_in = api.call(kEndpoint, "POST", "/v1/checkin",
                                       unpatched(api, "nonce-0002").fact("disk_encrypted", false).str());
        REQUIRE(check_in.status == 200);
        CHECK(string_at(body_of(check_in), "decision") == "deny");
        auto const d = decision(api);
        CHECK(string_at(d, "decision") == "deny");
        CHECK(string_at(d, "basis") == "noncompliant");
        CHECK_FALSE(control_of(d, "OS-01").contains("covered_by"));
        CHECK_FALSE(control_of(d, "ENC-01").contains("covered_by"));
    }
    {  // once the compensating control passes again the exemption covers
        api.clock.advance(1h);
        auto const check_in = api.call(kEndpoint, "POST", "/v1/checkin", unpatched(api, "nonce-0003").str());
        REQUIRE(check_in.status == 200);
        auto const d = decision(api);
        CHECK(string_at(d, "decision") == "allow");
        CHECK(string_at(d, "basis") == "exempted");
        CHECK(string_at(control_of(d, "OS-01"), "covered_by") == id);
    }
}

TEST_CASE("A control that requires an agreement is never covered without one", "[router-exemption]")
{
    Api api;
    // Not enrolled: MDM-01 fails. An MDM-01 exemption forced active behind the router's back.
    auto const check_in = api.call(kEndpoint, "POST", "/v1/checkin", PostureJson{"LAPTOP-0042", t0}.str());
    REQUIRE(check_in.status == 200);
    auto const id = request(api, request_body(t0, "MDM-01"));
    auto const forced = api.store->transition_exemption(
        id, "exemption.approved", "ciso@example.com", t0, [](exemptd::Exemption e) -> exemptd::ApiResult<exemptd::Exemption> {
            e.state = exemptd::ExemptionState::active;
            e.decided_by = "ciso@example.com";
            e.decided_at = t0;
            return e;
        },
        api.router.evaluator(t0));
    REQUIRE(forced);
    auto const d = decision(api);
    CHECK(string_at(d, "decision") == "deny");
    CHECK(string_at(control_of(d, "MDM-01"), "status") == "fail");
    CHECK_FALSE(control_of(d, "MDM-01").contains("covered_by"));
}

TEST_CASE("The register filters by subject, control, state and expiring_within", "[router-exemption]")
{
    Api api;
    auto a = request_body(t0);  // EX-000001: OS-01, active until t0+10d
    a["expires_at"] = exemptd::format_rfc3339(t0 + 10 * kDay);
    request_approved(api, a);
    request_approved(api, request_body(t0, "LOCK-01"));  // EX-000002: active until t0+30d
    auto c = request_body(t0, "ENC-01");  // EX-000003: pending until t0+5d
    c["expires_at"] = exemptd::format_rfc3339(t0 + 5 * kDay);
    request(api, c);
    request_approved(api, request_body(t0, "HR-03", "user:jordan@example.com"));  // EX-000004
    auto const rejected = request(api, request_body(t0, "OS-01", "device:LAPTOP-0043"));  // EX-000005
    REQUIRE(api.change(kManager, rejected, "reject", {{"note", "no"}}).status == 200);

    CHECK(listed(api, "/v1/exemptions") == Ids{"EX-000001", "EX-000002", "EX-000003", "EX-000004", "EX-000005"});
    CHECK(listed(api, "/v1/exemptions?subject=device:LAPTOP-0042") == Ids{"EX-000001", "EX-000002", "EX-000003"});
    CHECK(listed(api, "/v1/exemptions?subject=device%3ALAPTOP-0043") == Ids{"EX-000005"});
    CHECK(listed(api, "/v1/exemptions?subject=user:jordan%40example.com") == Ids{"EX-000004"});
    CHECK(listed(api, "/v1/exemptions?control=OS-01") == Ids{"EX-000001", "EX-000005"});
    CHECK(listed(api, "/v1/exemptions?control=OS-01&subject=device:LAPTOP-0042") == Ids{"EX-000001"});
    CHECK(listed(api, "/v1/exemptions?state=active") == Ids{"EX-000001", "EX-000002", "EX-000004"});
    CHECK(listed(api, "/v1/exemptions?state=pending") == Ids{"EX-000003"});
    CHECK(listed(api, "/v1/exemptions?state=rejected") == Ids{"EX-000005"});
    CHECK(listed(api, "/v1/exemptions?state=expired").empty());
    CHECK(listed(api, "/v1/exemptions?expiring_within=14d") == Ids{"EX-000001"});
    CHECK(listed(api, "/v1/exemptions?expiring_within=%31%34d") == Ids{"EX-000001"});
    CHECK(listed(api, "/v1/exemptions?expiring_within=30d") == Ids{"EX-000001", "EX-000002", "EX-000004"});
    CHECK(listed(api, "/v1/exemptions?expiring_within=240h") == Ids{"EX-000001"});
    CHECK(listed(api, "/v1/exemptions?expiring_within=239h").empty());
    CHECK(listed(api, "/v1/exemptions?expiring_within=14d&subject=device:LAPTOP-0043").empty());

    {  // a bad duration or state is refused, not ignored
        for (auto const* target : {"/v1/exemptions?expiring_within=14", "/v1/exemptions?expiring_within=14w",
                                   "/v1/exemptions?expiring_within=d", "/v1/exemptions?expiring_within=-1d",
                                   "/v1/exemptions?expiring_within=1.5d", "/v1/exemptions?expiring_within=two%20weeks",
                                   "/v1/exemptions?expiring_within=14d%", "/v1/exemptions?expiring_within=%zzd",
                                   "/v1/exemptions?state=open", "/v1/exemptions?state=ACTIVE",
                                   "/v1/exemptions?state=%zz"}) {
            INFO(target);
            check_error(api.call(kHelpdesk, "GET", target), 400, "invalid_field");
        }
    }
    {  // states are effective: past its expiry an active one lists as expired
        api.clock.advance(10 * kDay);
        CHECK(listed(api, "/v1/exemptions?state=active") == Ids{"EX-000002", "EX-000004"});
        CHECK(listed(api, "/v1/exemptions?state=expired") == Ids{"EX-000001", "EX-000003"});
        CHECK(listed(api, "/v1/exemptions?state=pending").empty());
        CHECK(listed(api, "/v1/exemptions?expiring_within=14d").empty());
        CHECK(listed(api, "/v1/exemptions?expiring_within=20d") == Ids{"EX-000002", "EX-000004"});
        auto const body = body_of(api.call(kHelpdesk, "GET", "/v1/exemptions?subject=device:LAPTOP-0042"));
        CHECK(string_at(body.at("exemptions").as_array().at(0).as_object(), "state") == "expired");
    }
}

TEST_CASE("review_overdue turns true once next_review_at passes, and a review clears it", "[router-exemption]")
{
    Api api;
    auto body = request_body(t0);
    body["expires_at"] = exemptd::format_rfc3339(t0 + 90 * kDay);
    auto const id = request_approved(api, body);  // medium: review every 30 days
    CHECK(string_at(show(api, id), "next_review_at") == exemptd::format_rfc3339(t0 + 30 * kDay));

    api.clock.set(t0 + 30 * kDay - 1s);
    CHECK_FALSE(show(api, id).at("review_overdue").as_bool());
    api.clock.set(t0 + 30 * kDay);
    CHECK(show(api, id).at("review_overdue").as_bool());
    CHECK(string_at(show(api, id), "state") == "active");  // overdue is not expired
    auto const listed_body = body_of(api.call(kHelpdesk, "GET", "/v1/exemptions?state=active"));
    CHECK(listed_body.at("exemptions").as_array().at(0).as_object().at("review_overdue").as_bool());
    auto const swept = api.router.sweep();
    REQUIRE(swept);
    CHECK(swept->reviews_overdue == 1);
    CHECK(api.router.sweep()->reviews_overdue == 0);

    api.clock.advance(kDay);
    auto const reviewed = api.change(kCiso, id, "review", {{"note", "mitigations verified"}});
    REQUIRE(reviewed.status == 200);
    auto const r = body_of(reviewed);
    CHECK_FALSE(r.at("review_overdue").as_bool());
    CHECK(string_at(r, "next_review_at") == exemptd::format_rfc3339(t0 + 61 * kDay));

    SECTION("an exemption that is no longer active is never overdue") {
        api.clock.set(t0 + 90 * kDay);
        CHECK_FALSE(show(api, id).at("review_overdue").as_bool());
        CHECK(string_at(show(api, id), "state") == "expired");
    }
}
