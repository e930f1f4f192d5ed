#include "exemption_view.hpp"

#include "exemptctl_app.hpp"
#include "fixtures.hpp"

#include <catch2/catch.hpp>

#include <boost/json/parse.hpp>

#include <sstream>
#include <vector>

using namespace exemptd;
using namespace exemptd::client;

namespace {

// As exemption_to_json writes it: an approved, reviewed, renewed exemption whose review is due.
constexpr char kActive[] = R"({"id":"EX-000007","subject":"device:LAPTOP-0042","controls":["OS-01","FW-01"],
  "justification":"Vendor driver blocks the 12.9 update.\nFix expected in March.",
  "risk":{"likelihood":"medium","impact":"high","level":"high"},
  "mitigations":["Office network only","Weekly malware scan"],"compensating_controls":["ENC-01"],
  "evidence":"TICKET-1234","agreement_id":null,
  "requested_by":"admin@example.com","requested_at":"2026-11-20T10:00:00Z",
  "approved_by":"security-lead@example.com","approved_at":"2026-11-20T11:00:00Z",
  "rejected_by":null,"rejected_at":null,"decision_note":"ok for a month",
  "expires_at":"2026-12-20T00:00:00Z","next_review_at":"2026-11-27T11:00:00Z",
  "reviews":[{"by":"ciso@example.com","at":"2026-11-21T09:00:00Z","note":"still needed"}],
  "renewals":[{"by":"ciso@example.com","at":"2026-11-22T09:00:00Z","note":"driver late",
               "previous_expires_at":"2026-12-10T00:00:00Z","expires_at":"2026-12-20T00:00:00Z"}],
  "revoked_by":null,"revoked_at":null,"revoked_reason":null,"state":"active","review_overdue":true})";

constexpr char kRevoked[] = R"({"id":"EX-000008","subject":"account:aws-root","controls":["IAM-01"],
  "justification":"Break-glass account","risk":{"likelihood":"low","impact":"low","level":"low"},
  "mitigations":[],"compensating_controls":[],"evidence":"","agreement_id":null,
  "requested_by":"admin@example.com","requested_at":"2026-11-20T10:00:00Z",
  "approved_by":null,"approved_at":null,"rejected_by":null,"rejected_at":null,"decision_note":null,
  "expires_at":"2027-01-01T00:00:00Z","next_review_at":null,"reviews":[],"renewals":[],
  "revoked_by":"ciso@example.com","revoked_at":"2026-11-21T08:00:00Z","revoked_reason":"account deleted",
  "state":"revoked","review_overdue":false})";

constexpr char kRejected[] = R"({"id":"EX-000009","subject":"user:jordan@example.com","controls":["HR-03"],
  "justification":"x","risk":{"likelihood":"high","impact":"high","level":"critical"},
  "requested_by":"admin@example.com","requested_at":"2026-11-20T10:00:00Z",
  "rejected_by":"ciso@example.com","rejected_at":"2026-11-20T12:00:00Z","decision_note":"no",
  "expires_at":"2026-11-25T00:00:00Z","state":"rejected"})";

struct Run {
    int code;
    std::string err;
};

// Runs exemptctl with no connection settings at all: whatever it refuses before connecting
// shows in `err`; anything that gets as far as connecting fails on the missing server.
Run exemptctl(std::vector<char const*> args)
{
    exemptd::client::test::ScratchDir home;
    args.insert(args.begin(), "exemptctl");
    std::ostringstream out;
    std::ostringstream err;
    auto const env = [&home](std::string const& name) -> std::optional<std::string> {
        if (name == "HOME") return home.path().string();
        return std::nullopt;
    };
    int const code = run_exemptctl(static_cast<int>(args.size()), args.data(), out, err, env);
    return {code, err.str()};
}

TimePoint at(char const* text)
{
    auto const t = parse_rfc3339(text);
    REQUIRE(t);
    return *t;
}

}  // namespace

TEST_CASE("An exemption object is read with its risk, history and times", "[exemption]")
{
    auto const e = exemption_from_body(kActive);
    REQUIRE(e);
    CHECK(e->id == "EX-000007");
    CHECK(e->controls == std::vector<std::string>{"OS-01", "FW-01"});
    CHECK(e->likelihood == "medium");
    CHECK(e->level == "high");
    CHECK(e->mitigations.size() == 2);
    CHECK(e->compensating_controls == std::vector<std::string>{"ENC-01"});
    CHECK(e->agreement_id.empty());
    CHECK(e->approved_at == at("2026-11-20T11:00:00Z"));
    CHECK_FALSE(e->rejected_at);
    CHECK(e->review_overdue);
    REQUIRE(e->reviews.size() == 1);
    CHECK(e->reviews[0].note == "still needed");
    REQUIRE(e->renewals.size() == 1);
    CHECK(e->renewals[0].previous_expires_at == at("2026-12-10T00:00:00Z"));

    SECTION("fields a minimal object leaves out read as empty") {
        auto const rejected = exemption_from_body(kRejected);
        REQUIRE(rejected);
        CHECK(rejected->mitigations.empty());
        CHECK(rejected->reviews.empty());
        CHECK_FALSE(rejected->next_review_at);
        CHECK_FALSE(rejected->review_overdue);
    }
}

TEST_CASE("A malformed exemption answer is refused with a reason", "[exemption]")
{
    CHECK_FALSE(exemption_from_body("not json"));
    CHECK_FALSE(exemption_from_body("[]"));
    CHECK_FALSE(exemption_from_body(R"({"state":"active"})"));
    CHECK_FALSE(exemption_from_body(R"({"id":"EX-000001"})"));
    CHECK_FALSE(exemption_from_body(R"({"id":"EX-000001","state":"active","controls":"OS-01"})"));
    CHECK_FALSE(exemption_from_body(R"({"id":"EX-000001","state":"active","controls":[1]})"));
    CHECK_FALSE(exemption_from_body(R"({"id":"EX-000001","state":"active","expires_at":"soon"})"));
    CHECK_FALSE(exemption_from_body(R"({"id":"EX-000001","state":"active","reviews":[{"at":"then"}]})"));
    auto const list = exemption_list_from_body(R"({"devices":[]})");
    REQUIRE_FALSE(list);
    CHECK(list.error().message.find("\"exemptions\"") != std::string::npos);
    auto const bad = exemption_from_body("{}");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message.starts_with("unexpected exemption object from the server: "));
}

TEST_CASE("The exemption table shows one row per exemption and marks overdue reviews", "[exemption]")
{
    auto const list = exemption_list_from_body(std::string(R"({"exemptions":[)") + kActive + "," + kRevoked + "]}");
    REQUIRE(list);
    REQUIRE(list->size() == 2);
    auto const table = format_exemption_table(*list);
    CHECK(table ==
          "ID         SUBJECT             CONTROLS     RISK  STATE    EXPIRES               NEXT REVIEW\n"
          "EX-000007  device:LAPTOP-0042  OS-01,FW-01  high  active   2026-12-20T00:00:00Z  2026-11-27T11:00:00Z (overdue)\n"
          "EX-000008  account:aws-root    IAM-01       low   revoked  2027-01-01T00:00:00Z  -\n");
    CHECK(format_exemption_table({}) == "ID  SUBJECT  CONTROLS  RISK  STATE  EXPIRES  NEXT REVIEW\n");
}

TEST_CASE("exemption show lists every field, id first", "[exemption]")
{
    auto const e = exemption_from_body(kActive);
    REQUIRE(e);
    auto const text = format_exemption(*e);
    CHECK(text.starts_with("id:                     EX-000007\n"));
    CHECK(text.find("justification:          Vendor driver blocks the 12.9 update.\n"
                    "                        Fix expected in March.\n") != std::string::npos);
    CHECK(text.find("risk:                   high (likelihood medium, impact high)\n") != std::string::npos);
    CHECK(text.find("mitigations:            - Office network only\n"
                    "                        - Weekly malware scan\n") != std::string::npos);
    CHECK(text.find("compensating controls:  ENC-01 (must pass for the exemption to cover)\n") != std::string::npos);
    CHECK(text.find("agreement:              -\n") != std::string::npos);
    CHECK(text.find("requested:              2026-11-20T10:00:00Z by admin@example.com\n") != std::string::npos);
    CHECK(text.find("approved:               2026-11-20T11:00:00Z by security-lead@example.com\n") != std::string::npos);
    CHECK(text.find("decision note:          ok for a month\n") != std::string::npos);
    CHECK(text.find("next review:            2026-11-27T11:00:00Z (overdue)\n") != std::string::npos);
    CHECK(text.find("reviews:                2026-11-21T09:00:00Z by ciso@example.com: still needed\n") !=
          std::string::npos);
    CHECK(text.find("renewals:               2026-11-22T09:00:00Z by ciso@example.com: expiry "
                    "2026-12-10T00:00:00Z -> 2026-12-20T00:00:00Z: driver late\n") != std::string::npos);
    CHECK(text.ends_with("revoked:                -\n"));

    SECTION("a revoked one names who, when and why") {
        auto const revoked = exemption_from_body(kRevoked);
        REQUIRE(revoked);
        auto const out = format_exemption(*revoked);
        CHECK(out.ends_with("revoked:                2026-11-21T08:00:00Z by ciso@example.com: account deleted\n"));
        CHECK(out.find("approved:               -\n") != std::string::npos);
        CHECK(out.find("mitigations:            -\n") != std::string::npos);
    }
    SECTION("a rejected one shows the rejection instead of an approval") {
        auto const rejected = exemption_from_body(kRejected);
        REQUIRE(rejected);
        auto const out = format_exemption(*rejected);
        CHECK(out.find("rejected:               2026-11-20T12:00:00Z by ciso@example.com\n") != std::string::npos);
        CHECK(out.find("approved:") == std::string::npos);
        CHECK(out.find("decision note:          no\n") != std::string::npos);
    }
}

TEST_CASE("The expiry comes from --expires-at or from now plus --expires-in", "[exemption]")
{
    auto const now = at("2026-11-20T10:00:00Z");
    CHECK(resolve_expiry("2026-12-31T00:00:00Z", "", now).value() == "2026-12-31T00:00:00Z");
    CHECK(resolve_expiry("2026-12-31T01:00:00+01:00", "", now).value() == "2026-12-31T00:00:00Z");
    CHECK(resolve_expiry("", "30d", now).value() == "2026-12-20T10:00:00Z");
    CHECK(resolve_expiry("", "6s", now).value() == "2026-11-20T10:00:06Z");
    CHECK(resolve_expiry("", "12h", now).value() == "2026-11-20T22:00:00Z");

    auto const both = resolve_expiry("2026-12-31T00:00:00Z", "30d", now);
    REQUIRE_FALSE(both);
    CHECK(both.error().message == "give either --expires-at or --expires-in, not both");
    auto const neither = resolve_expiry("", "", now);
    REQUIRE_FALSE(neither);
    CHECK(neither.error().message == "--expires-at or --expires-in is required");
    auto const bad_time = resolve_expiry("next tuesday", "", now);
    REQUIRE_FALSE(bad_time);
    CHECK(bad_time.error().message.starts_with("invalid --expires-at \"next tuesday\""));
    auto const bad_duration = resolve_expiry("", "30 days", now);
    REQUIRE_FALSE(bad_duration);
    CHECK(bad_duration.error().message.starts_with("invalid --expires-in \"30 days\""));
}

TEST_CASE("The request body carries the SPEC fields and leaves out empty optional ones", "[exemption]")
{
    ExemptionRequest request{"device:LAPTOP-0042", {"OS-01"}, "why", "medium", "high", {"m1"}, {"ENC-01"}, "", "",
                             "2026-12-31T00:00:00Z"};
    auto const body = boost::json::parse(exemption_request_body(request)).as_object();
    CHECK(body.at("subject") == "device:LAPTOP-0042");
    CHECK(body.at("controls") == boost::json::array{"OS-01"});
    CHECK(body.at("risk") == boost::json::object{{"likelihood", "medium"}, {"impact", "high"}});
    CHECK(body.at("mitigations") == boost::json::array{"m1"});
    CHECK(body.at("compensating_controls") == boost::json::array{"ENC-01"});
    CHECK(body.at("expires_at") == "2026-12-31T00:00:00Z");
    CHECK_FALSE(body.contains("evidence"));
    CHECK_FALSE(body.contains("agreement_id"));

    request.evidence = "TICKET-1";
    request.agreement_id = "AG-000001";
    auto const full = boost::json::parse(exemption_request_body(request)).as_object();
    CHECK(full.at("evidence") == "TICKET-1");
    CHECK(full.at("agreement_id") == "AG-000001");
}

TEST_CASE("List filters become a percent-encoded query string", "[exemption]")
{
    CHECK(exemption_list_query({}) == "");
    CHECK(exemption_list_query({"user:jordan+x@example.com", "", "active", ""}) ==
          "?subject=user%3Ajordan%2Bx%40example.com&state=active");
    CHECK(exemption_list_query({"", "OS-01", "", "14d"}) == "?control=OS-01&expiring_within=14d");
}

TEST_CASE("Only ids that are safe in a URL path are sent", "[exemption]")
{
    CHECK(is_plausible_exemption_id("EX-000001"));
    CHECK(is_plausible_exemption_id("EX-1"));
    CHECK_FALSE(is_plausible_exemption_id(""));
    CHECK_FALSE(is_plausible_exemption_id("../devices"));
    CHECK_FALSE(is_plausible_exemption_id("EX-1?state=x"));
    CHECK_FALSE(is_plausible_exemption_id(std::string(65, 'A')));
}

TEST_CASE("exemptctl exemption refuses bad usage with exit code 2 before connecting", "[exemption][exemptctl]")
{
    std::vector<char const*> const request{"exemption", "request", "--subject", "device:LAPTOP-0042", "--control",
                                           "OS-01", "--justification", "why", "--likelihood", "low", "--impact", "low"};
    auto const no_expiry = exemptctl(request);
    CHECK(no_expiry.code == 2);
    CHECK(no_expiry.err == "exemptctl: --expires-at or --expires-in is required\n");

    auto both = request;
    for (char const* arg : {"--expires-at", "2026-12-31T00:00:00Z", "--expires-in", "30d"}) both.push_back(arg);
    CHECK(exemptctl(both).code == 2);
    auto bad_time = request;
    for (char const* arg : {"--expires-at", "tomorrow"}) bad_time.push_back(arg);
    auto const bad = exemptctl(bad_time);
    CHECK(bad.code == 2);
    CHECK(bad.err.starts_with("exemptctl: invalid --expires-at \"tomorrow\""));
    auto critical = request;
    critical[9] = "critical";
    CHECK(exemptctl(critical).code == 2);

    CHECK(exemptctl({"exemption"}).code == 2);
    CHECK(exemptctl({"exemption", "review", "EX-000001"}).code == 2);   // --note is required
    CHECK(exemptctl({"exemption", "revoke", "EX-000001"}).code == 2);   // --reason is required
    CHECK(exemptctl({"exemption", "renew", "EX-000001"}).code == 2);    // no expiry
    CHECK(exemptctl({"exemption", "list", "--state", "happy"}).code == 2);
    CHECK(exemptctl({"exemption", "list", "--expiring-within", "soon"}).code == 2);
    auto const path = exemptctl({"exemption", "show", "../devices"});
    CHECK(path.code == 2);
    CHECK(path.err.starts_with("exemptctl: invalid exemption id \"../devices\""));
    auto const unconfigured = exemptctl({"exemption", "approve", "EX-000001", "--note", "ok"});
    CHECK(unconfigured.code == 2);
    CHECK(unconfigured.err.starts_with("exemptctl: no server given"));
}
