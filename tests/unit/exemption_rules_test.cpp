#include "exemptd/exemption_rules.hpp"

#include "support.hpp"

#include <boost/json/serialize.hpp>

using namespace exemptd;
using namespace std::chrono_literals;
using test::fixed_time;

namespace {

TimePoint const kNow = fixed_time("2026-11-27T12:00:00Z");

std::string request_body(std::string const& subject, std::string const& control, std::string const& likelihood,
                         std::string const& impact, TimePoint expires_at)
{
    boost::json::object body{{"subject", subject},
                             {"controls", boost::json::array{boost::json::value(control)}},
                             {"justification", "vendor tool pins the OS version"},
                             {"risk", {{"likelihood", likelihood}, {"impact", impact}}},
                             {"mitigations", boost::json::array{"network access limited to email"}},
                             {"evidence", "ticket SEC-42"},
                             {"expires_at", format_rfc3339(expires_at)}};
    return boost::json::serialize(body);
}

// A pending medium-risk exemption of OS-01 for LAPTOP-0042, requested by admin@example.com.
Exemption pending_exemption(Policy const& policy)
{
    auto e = request_exemption(policy, request_body("device:LAPTOP-0042", "OS-01", "medium", "medium", kNow + 30 * 24h),
                               "admin@example.com", kNow);
    REQUIRE(e);
    e->id = "EX-000001";
    return *e;
}

std::optional<ApiError> no_agreement_needed(Exemption const&, std::string const&)
{
    return std::nullopt;
}

Exemption in_state(Policy const& policy, ExemptionState state)
{
    auto e = pending_exemption(policy);
    e.state = state;
    if (state == ExemptionState::active) {
        e.decided_by = "it-manager@example.com";
        e.decided_at = kNow;
        e.next_review_at = kNow + 30 * 24h;
    }
    return e;
}

enum class Verb { approve, reject, renew, review, revoke };

ApiResult<Exemption> apply(Policy const& policy, Verb verb, Exemption const& e)
{
    std::string const actor = "it-manager@example.com";
    switch (verb) {
    case Verb::approve: return approve_exemption(policy, e, actor, "ok", kNow, no_agreement_needed);
    case Verb::reject: return reject_exemption(policy, e, actor, "no", kNow);
    case Verb::renew: return renew_exemption(policy, e, actor, e.expires_at + 24h, "still needed", kNow);
    case Verb::review: return review_exemption(policy, e, actor, "still valid", kNow);
    case Verb::revoke: return revoke_exemption(e, actor, "no longer needed", kNow);
    }
    FAIL("unknown verb");
    return e;
}

}  // namespace

TEST_CASE("The risk level is derived from likelihood times impact", "[exemption]")
{
    using enum RiskLevel;
    CHECK(risk_level(low, low) == low);
    CHECK(risk_level(low, medium) == low);
    CHECK(risk_level(medium, low) == low);
    CHECK(risk_level(low, high) == medium);
    CHECK(risk_level(medium, medium) == medium);
    CHECK(risk_level(medium, high) == high);
    CHECK(risk_level(high, medium) == high);
    CHECK(risk_level(high, high) == critical);
}

TEST_CASE("Every state answers every life-cycle action by the table", "[exemption][state-machine]")
{
    auto const policy = test::standard_policy();
    using enum ExemptionState;
    struct Row {
        ExemptionState from;
        Verb verb;
        int status;  // 0: allowed
        ExemptionState to;
    };
    // clang-format off
    Row const table[] = {
        {pending,  Verb::approve, 0,   active},   {pending,  Verb::reject, 0,   rejected},
        {pending,  Verb::renew,   409, pending},  {pending,  Verb::review, 409, pending},
        {pending,  Verb::revoke,  0,   revoked},
        {active,   Verb::approve, 409, active},   {active,   Verb::reject, 409, active},
        {active,   Verb::renew,   0,   active},   {active,   Verb::review, 0,   active},
        {active,   Verb::revoke,  0,   revoked},
        {rejected, Verb::approve, 409, rejected}, {rejected, Verb::reject, 409, rejected},
        {rejected, Verb::renew,   409, rejected}, {rejected, Verb::review, 409, rejected},
        {rejected, Verb::revoke,  409, rejected},
        {expired,  Verb::approve, 409, expired},  {expired,  Verb::reject, 409, expired},
        {expired,  Verb::renew,   409, expired},  {expired,  Verb::review, 409, expired},
        {expired,  Verb::revoke,  409, expired},
        {revoked,  Verb::approve, 409, revoked},  {revoked,  Verb::reject, 409, revoked},
        {revoked,  Verb::renew,   409, revoked},  {revoked,  Verb::review, 409, revoked},
        {revoked,  Verb::revoke,  409, revoked},
    };
    // clang-format on
    for (auto const& row : table) {
        INFO("from " << to_string(row.from) << " action " << static_cast<int>(row.verb));
        auto const result = apply(policy, row.verb, in_state(policy, row.from));
        if (row.status == 0) {
            REQUIRE(result);
            CHECK(result->state == row.to);
        } else {
            REQUIRE_FALSE(result);
            CHECK(result.error().status == row.status);
            CHECK_FALSE(result.error().code.empty());
        }
    }
}

TEST_CASE("A request is refused when it breaks a rule of the policy", "[exemption]")
{
    auto const policy = test::standard_policy();
    auto const request = [&](std::string const& subject, std::string const& control, std::string const& likelihood,
                             std::string const& impact, TimePoint expires) {
        return request_exemption(policy, request_body(subject, control, likelihood, impact, expires), "admin@example.com",
                                 kNow);
    };
    SECTION("an expiry in the past")
    {
        auto r = request("device:LAPTOP-0042", "OS-01", "low", "low", kNow - 1s);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == "expiry_in_past");
    }
    SECTION("an expiry beyond max_days of the derived level: high is 30 days")
    {
        CHECK(request("device:LAPTOP-0042", "OS-01", "medium", "high", kNow + 30 * 24h));
        auto r = request("device:LAPTOP-0042", "OS-01", "medium", "high", kNow + 30 * 24h + 1s);
        REQUIRE_FALSE(r);
        CHECK(r.error().status == 422);
        CHECK(r.error().code == "expiry_too_far");
    }
    SECTION("an unknown control")
    {
        auto r = request("device:LAPTOP-0042", "NOPE-1", "low", "low", kNow + 24h);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == "unknown_control");
    }
    SECTION("a control of another subject kind")
    {
        auto r = request("user:jordan@example.com", "OS-01", "low", "low", kNow + 24h);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == "subject_kind_mismatch");
        auto a = request("device:LAPTOP-0042", "IAM-01", "low", "low", kNow + 24h);
        REQUIRE_FALSE(a);
        CHECK(a.error().code == "subject_kind_mismatch");
    }
    SECTION("documentary user and account controls are accepted for their own kinds")
    {
        CHECK(request("user:jordan@example.com", "HR-03", "low", "medium", kNow + 24h));
        CHECK(request("account:aws-root", "IAM-01", "low", "high", kNow + 24h));
    }
    SECTION("a malformed subject")
    {
        for (auto const* subject : {"LAPTOP-0042", "device:", "device:bad id", "user:not-an-email", "group:x"}) {
            INFO(subject);
            auto r = request(subject, "OS-01", "low", "low", kNow + 24h);
            REQUIRE_FALSE(r);
            CHECK(r.error().code == "invalid_subject");
        }
    }
    SECTION("a critical likelihood is not a likelihood")
    {
        auto r = request("device:LAPTOP-0042", "OS-01", "critical", "low", kNow + 24h);
        REQUIRE_FALSE(r);
        CHECK(r.error().status == 400);
    }
    SECTION("wrong types and unknown fields are 400")
    {
        auto r = request_exemption(policy, R"({"subject": 5})", "admin@example.com", kNow);
        REQUIRE_FALSE(r);
        CHECK(r.error().status == 400);
        auto u = request_exemption(policy, R"({"subjekt": "device:X"})", "admin@example.com", kNow);
        REQUIRE_FALSE(u);
        CHECK(u.error().status == 400);
    }
}

TEST_CASE("Approval needs an approver of the right level who is not the requester", "[exemption]")
{
    auto const policy = test::standard_policy();
    auto const e = pending_exemption(policy);  // medium
    auto const approve = [&](std::string const& who) {
        return approve_exemption(policy, e, who, "", kNow, no_agreement_needed);
    };
    CHECK(approve("it-manager@example.com"));
    CHECK(approve("security-lead@example.com"));  // listed for high, so medium too
    CHECK(approve("ciso@example.com"));
    auto stranger = approve("someone@example.com");
    REQUIRE_FALSE(stranger);
    CHECK(stranger.error().code == "approver_not_authorized");
    auto self = approve("admin@example.com");
    REQUIRE_FALSE(self);
    CHECK(self.error().code == "self_approval");

    SECTION("a critical exemption only by the CISO")
    {
        auto critical = request_exemption(policy, request_body("device:X1", "OS-01", "high", "high", kNow + 24h),
                                          "admin@example.com", kNow);
        REQUIRE(critical);
        CHECK_FALSE(approve_exemption(policy, *critical, "security-lead@example.com", "", kNow, no_agreement_needed));
        CHECK(approve_exemption(policy, *critical, "ciso@example.com", "", kNow, no_agreement_needed));
    }
    SECTION("approval sets the review date from review_every_days")
    {
        auto approved = approve("it-manager@example.com");
        REQUIRE(approved);
        CHECK(approved->next_review_at == kNow + 30 * 24h);
        CHECK(approved->decided_by == "it-manager@example.com");
    }
    SECTION("a pending request whose expiry passed can no longer be approved")
    {
        auto late = approve_exemption(policy, e, "it-manager@example.com", "", e.expires_at, no_agreement_needed);
        REQUIRE_FALSE(late);
        CHECK(late.error().status == 409);
    }
}

TEST_CASE("A control that requires an agreement is approved only when the agreement check passes", "[exemption]")
{
    auto const policy = test::standard_policy();
    auto e = request_exemption(policy, request_body("device:LAPTOP-0042", "MDM-01", "medium", "medium", kNow + 24h),
                               "admin@example.com", kNow);
    REQUIRE(e);
    std::string asked_template;
    auto const refuse = [&](Exemption const&, std::string const& name) -> std::optional<ApiError> {
        asked_template = name;
        return api_error(422, "agreement_required", "no agreement");
    };
    auto r = approve_exemption(policy, *e, "ciso@example.com", "", kNow, refuse);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == "agreement_required");
    CHECK(asked_template == "byod-v3");
}

TEST_CASE("Renewals are capped and stay within max_days", "[exemption]")
{
    auto const policy = test::standard_policy();  // max_renewals: 2, medium max 90 days
    auto e = in_state(policy, ExemptionState::active);
    for (int i = 0; i < 2; ++i) {
        auto renewed = renew_exemption(policy, e, "it-manager@example.com", e.expires_at + 24h, "", kNow);
        REQUIRE(renewed);
        e = *renewed;
    }
    CHECK(e.renewals.size() == 2);
    auto third = renew_exemption(policy, e, "it-manager@example.com", e.expires_at + 24h, "", kNow);
    REQUIRE_FALSE(third);
    CHECK(third.error().code == "max_renewals_reached");

    auto fresh = in_state(policy, ExemptionState::active);
    auto too_far = renew_exemption(policy, fresh, "it-manager@example.com", kNow + 91 * 24h, "", kNow);
    REQUIRE_FALSE(too_far);
    CHECK(too_far.error().code == "expiry_too_far");
    auto shorter = renew_exemption(policy, fresh, "it-manager@example.com", fresh.expires_at - 1s, "", kNow);
    REQUIRE_FALSE(shorter);
    CHECK(shorter.error().code == "expiry_not_extended");
    auto by_requester = renew_exemption(policy, fresh, "admin@example.com", fresh.expires_at + 24h, "", kNow);
    REQUIRE_FALSE(by_requester);
    CHECK(by_requester.error().code == "self_approval");
}

TEST_CASE("A review records who and why and moves the next review date", "[exemption]")
{
    auto const policy = test::standard_policy();
    auto const e = in_state(policy, ExemptionState::active);
    auto const later = kNow + 10 * 24h;
    auto reviewed = review_exemption(policy, e, "security-lead@example.com", "controls still in place", later);
    REQUIRE(reviewed);
    REQUIRE(reviewed->reviews.size() == 1);
    CHECK(reviewed->reviews[0].by == "security-lead@example.com");
    CHECK(reviewed->reviews[0].note == "controls still in place");
    CHECK(reviewed->next_review_at == later + 30 * 24h);
    auto silent = review_exemption(policy, e, "security-lead@example.com", "", later);
    REQUIRE_FALSE(silent);
    CHECK(silent.error().status == 400);
}

TEST_CASE("An exemption counts as expired from the instant its expiry passes", "[exemption]")
{
    auto const policy = test::standard_policy();
    auto e = in_state(policy, ExemptionState::active);
    e.next_review_at = kNow + 7 * 24h;
    CHECK(effective_state(e, e.expires_at - 1s) == ExemptionState::active);
    CHECK(effective_state(e, e.expires_at) == ExemptionState::expired);
    CHECK_FALSE(review_overdue(e, *e.next_review_at - 1s));
    CHECK(review_overdue(e, *e.next_review_at));
}

TEST_CASE("The storage form round-trips every field", "[exemption]")
{
    auto const policy = test::standard_policy();
    auto e = in_state(policy, ExemptionState::active);
    e.reviews.push_back({"ciso@example.com", kNow, "fine"});
    e.renewals.push_back({"ciso@example.com", kNow, "more", kNow, kNow + 24h});
    e.agreement_id = "AG-000001";
    auto const back = decode_exemption_record(encode_exemption_record(e));
    REQUIRE(back);
    CHECK(encode_exemption_record(*back) == encode_exemption_record(e));
}
