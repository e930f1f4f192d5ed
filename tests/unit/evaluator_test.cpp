#include "support.hpp"

#include "exemptd/evaluator.hpp"

#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using exemptd::Basis;
using exemptd::ControlResult;
using exemptd::CoveringExemption;
using exemptd::Decision;
using exemptd::DeviceFacts;
using exemptd::FactValue;
using exemptd::test::fixed_time;

namespace {

exemptd::TimePoint const kNow = fixed_time("2026-11-27T21:00:00Z");

DeviceFacts compliant_device()
{
    DeviceFacts d;
    d.device_id = "LAPTOP-0042";
    d.enrolled = true;
    d.facts = {{"disk_encrypted", FactValue{true}},
               {"screen_lock_seconds", FactValue{std::int64_t{300}}},
               {"os_patch_age_days", FactValue{std::int64_t{12}}}};
    return d;
}

exemptd::Policy const& policy()
{
    static exemptd::Policy const p = exemptd::test::standard_policy();
    return p;
}

Decision decide(DeviceFacts const& device, std::vector<CoveringExemption> const& exemptions = {},
                  exemptd::TimePoint now = kNow)
{
    return exemptd::evaluate(policy(), device, exemptions, now);
}

ControlResult const& control(Decision const& d, std::string const& id)
{
    auto const it = std::find_if(d.controls.begin(), d.controls.end(), [&](auto const& c) { return c.id == id; });
    if (it == d.controls.end()) throw std::runtime_error("no control " + id + " in the decision");
    return *it;
}

// The result of `fact` = `value` against the standard policy, all else compliant.
ControlResult fact_result(std::string const& control_id, std::string const& fact, FactValue value)
{
    auto device = compliant_device();
    device.facts[fact] = std::move(value);
    return control(decide(device), control_id);
}

CoveringExemption exemption(std::string id, std::vector<std::string> controls, exemptd::TimePoint expires_at,
                            std::vector<std::string> compensating = {})
{
    return CoveringExemption{std::move(id), std::move(controls), std::move(compensating), expires_at};
}

}  // namespace

TEST_CASE("A device that passes every control is allowed as compliant", "[evaluator]")
{
    auto const d = decide(compliant_device());
    CHECK(d.allow);
    CHECK(d.basis == Basis::compliant);
    CHECK(d.device_id == "LAPTOP-0042");
    CHECK(d.policy_version == policy().version);
    CHECK(d.evaluated_at == kNow);
    CHECK(d.next_checkin_seconds == 600);
    for (auto const& c : d.controls) {
        INFO(c.id);
        CHECK(c.pass);
        CHECK(c.reason.empty());
        CHECK(c.covered_by.empty());
        CHECK_FALSE(c.failing_since);
        CHECK_FALSE(c.grace_until);
    }
    CHECK(exemptd::failure_streaks(d).empty());
}

TEST_CASE("Every device control is reported in policy order and documentary ones are skipped", "[evaluator]")
{
    auto const d = decide(compliant_device());
    std::vector<std::string> ids;
    for (auto const& c : d.controls) ids.push_back(c.id);
    CHECK(ids == std::vector<std::string>{"MDM-01", "ENC-01", "LOCK-01", "OS-01"});
    CHECK(control(d, "ENC-01").title == "Disk encryption is on");
}

TEST_CASE("Enrollment comes from the registry view of the device", "[evaluator]")
{
    auto device = compliant_device();
    SECTION("enrolled passes") {
        auto const d = decide(device);
        auto const& mdm = control(d, "MDM-01");
        CHECK(mdm.pass);
        CHECK(mdm.observed == "enrolled");
    }
    SECTION("not enrolled fails with no grace and denies") {
        device.enrolled = false;
        device.facts["enrolled"] = FactValue{true};  // a self-reported fact must change nothing
        auto const d = decide(device);
        auto const& mdm = control(d, "MDM-01");
        CHECK_FALSE(mdm.pass);
        CHECK(mdm.reason == "device is not enrolled in MDM");
        CHECK(mdm.observed == "not enrolled");
        CHECK(mdm.failing_since == kNow);
        CHECK_FALSE(mdm.grace_until);
        CHECK_FALSE(d.allow);
        CHECK(d.basis == Basis::noncompliant);
    }
    SECTION("a check for enrolled: false passes only when not enrolled") {
        auto const p = exemptd::test::policy_from_yaml(
            "version: 1\ncontrols:\n  - id: LAB-01\n    title: Lab devices stay out of MDM\n"
            "    check: {enrolled: false}\n"
            "exemptions:\n  max_days: {low: 1, medium: 1, high: 1, critical: 1}\n"
            "  review_every_days: {low: 1, medium: 1, high: 1, critical: 1}\n");
        device.enrolled = false;
        CHECK(exemptd::evaluate(p, device, {}, kNow).allow);
        device.enrolled = true;
        CHECK_FALSE(exemptd::evaluate(p, device, {}, kNow).allow);
    }
}

TEST_CASE("A fact check with equals compares value and kind", "[evaluator]")
{
    CHECK(fact_result("ENC-01", "disk_encrypted", FactValue{true}).pass);
    SECTION("a different boolean fails and says what was seen") {
        auto const r = fact_result("ENC-01", "disk_encrypted", FactValue{false});
        CHECK_FALSE(r.pass);
        CHECK(r.observed == "false");
        CHECK_THAT(r.reason, Contains("disk_encrypted") && Contains("false") && Contains("true"));
    }
    SECTION("a number or a string is not a boolean") {
        CHECK_FALSE(fact_result("ENC-01", "disk_encrypted", FactValue{std::int64_t{1}}).pass);
        CHECK_FALSE(fact_result("ENC-01", "disk_encrypted", FactValue{std::string("true")}).pass);
    }
    SECTION("numbers compare by value whether integer or real") {
        auto const p = exemptd::test::policy_from_yaml(
            "version: 1\ncontrols:\n  - id: V-1\n    title: t\n    check: {fact: level, equals: 3}\n"
            "  - id: V-2\n    title: t\n    check: {fact: os, equals: debian}\n"
            "exemptions:\n  max_days: {low: 1, medium: 1, high: 1, critical: 1}\n"
            "  review_every_days: {low: 1, medium: 1, high: 1, critical: 1}\n");
        DeviceFacts device;
        device.facts = {{"level", FactValue{3.0}}, {"os", FactValue{std::string("debian")}}};
        CHECK(exemptd::evaluate(p, device, {}, kNow).allow);
        device.facts["level"] = FactValue{3.5};
        CHECK_FALSE(exemptd::evaluate(p, device, {}, kNow).controls.at(0).pass);
        device.facts["level"] = FactValue{std::int64_t{3}};
        device.facts["os"] = FactValue{std::string("Debian")};
        CHECK_FALSE(exemptd::evaluate(p, device, {}, kNow).controls.at(1).pass);
    }
}

TEST_CASE("A fact check with min and max holds at both bounds and fails outside", "[evaluator]")
{
    CHECK(fact_result("LOCK-01", "screen_lock_seconds", FactValue{std::int64_t{1}}).pass);
    CHECK(fact_result("LOCK-01", "screen_lock_seconds", FactValue{std::int64_t{900}}).pass);
    CHECK(fact_result("LOCK-01", "screen_lock_seconds", FactValue{899.5}).pass);
    CHECK(fact_result("OS-01", "os_patch_age_days", FactValue{std::int64_t{30}}).pass);
    SECTION("below min") {
        auto const r = fact_result("LOCK-01", "screen_lock_seconds", FactValue{std::int64_t{0}});
        CHECK_FALSE(r.pass);
        CHECK_THAT(r.reason, Contains("at least 1"));
        CHECK_FALSE(fact_result("OS-01", "os_patch_age_days", FactValue{std::int64_t{-5}}).pass);
    }
    SECTION("above max") {
        auto const r = fact_result("LOCK-01", "screen_lock_seconds", FactValue{std::int64_t{901}});
        CHECK_FALSE(r.pass);
        CHECK(r.observed == "901");
        CHECK_THAT(r.reason, Contains("at most 900"));
        CHECK_FALSE(fact_result("OS-01", "os_patch_age_days", FactValue{30.5}).pass);
    }
    SECTION("a boolean or a string is not a number") {
        CHECK_FALSE(fact_result("OS-01", "os_patch_age_days", FactValue{true}).pass);
        auto const r = fact_result("OS-01", "os_patch_age_days", FactValue{std::string("12")});
        CHECK_FALSE(r.pass);
        CHECK_THAT(r.reason, Contains("number"));
    }
}

TEST_CASE("A fact that was not reported fails its control", "[evaluator]")
{
    auto device = compliant_device();
    device.facts.erase("os_patch_age_days");
    auto const d = decide(device);
    auto const& os = control(d, "OS-01");
    CHECK_FALSE(os.pass);
    CHECK(os.observed.empty());
    CHECK_THAT(os.reason, Contains("os_patch_age_days") && Contains("not reported"));
    CHECK_FALSE(d.allow);
}

TEST_CASE("A failure inside its grace_hours allows on basis grace", "[evaluator]")
{
    auto device = compliant_device();
    device.facts["disk_encrypted"] = FactValue{false};

    SECTION("a first failure starts its streak now and is in grace") {
        auto const d = decide(device);
        auto const& enc = control(d, "ENC-01");
        CHECK_FALSE(enc.pass);
        CHECK(enc.failing_since == kNow);
        CHECK(enc.grace_until == kNow + 72h);
        CHECK(d.allow);
        CHECK(d.basis == Basis::grace);
        CHECK(exemptd::failure_streaks(d) == std::map<std::string, exemptd::TimePoint>{{"ENC-01", kNow}});
    }
    SECTION("grace is counted from the stored start of the streak") {
        device.failing_since["ENC-01"] = kNow - 71h;
        auto const d = decide(device);
        CHECK(control(d, "ENC-01").failing_since == kNow - 71h);
        CHECK(control(d, "ENC-01").grace_until == kNow + 1h);
        CHECK(d.basis == Basis::grace);
    }
    SECTION("one second before the end of grace still allows") {
        device.failing_since["ENC-01"] = kNow - 72h + 1s;
        CHECK(decide(device).allow);
    }
    SECTION("at exactly grace_hours the failure denies") {
        device.failing_since["ENC-01"] = kNow - 72h;
        auto const d = decide(device);
        CHECK_FALSE(d.allow);
        CHECK(d.basis == Basis::noncompliant);
        CHECK_FALSE(control(d, "ENC-01").grace_until);
        CHECK(control(d, "ENC-01").failing_since == kNow - 72h);
    }
    SECTION("a control without grace_hours denies at once") {
        device.facts["os_patch_age_days"] = FactValue{std::int64_t{45}};
        auto const d = decide(device);
        CHECK_FALSE(d.allow);
        CHECK(d.basis == Basis::noncompliant);
        CHECK(control(d, "ENC-01").grace_until);  // ENC-01 is still in its grace
        CHECK_FALSE(control(d, "OS-01").grace_until);
    }
    SECTION("a stored streak for a control that now passes is dropped") {
        device.facts["disk_encrypted"] = FactValue{true};
        device.failing_since["ENC-01"] = kNow - 10h;
        auto const d = decide(device);
        CHECK_FALSE(control(d, "ENC-01").failing_since);
        CHECK(exemptd::failure_streaks(d).empty());
    }
}

TEST_CASE("A valid exemption covers a failure, which is still reported as a failure", "[evaluator]")
{
    auto device = compliant_device();
    device.enrolled = false;
    auto const ex = exemption("EX-000007", {"MDM-01"}, kNow + 24h);

    auto const d = decide(device, {ex});
    auto const& mdm = control(d, "MDM-01");
    CHECK(d.allow);
    CHECK(d.basis == Basis::exempted);
    CHECK_FALSE(mdm.pass);
    CHECK(mdm.covered_by == "EX-000007");
    CHECK(mdm.reason == "device is not enrolled in MDM");
    CHECK(mdm.failing_since == kNow);
    CHECK(exemptd::failure_streaks(d).count("MDM-01") == 1);
    CHECK(control(d, "ENC-01").covered_by.empty());
}

TEST_CASE("An exemption stops covering exactly at expires_at", "[evaluator]")
{
    auto device = compliant_device();
    device.enrolled = false;
    auto const expires = kNow + 1h;
    std::vector<CoveringExemption> const exemptions{exemption("EX-000001", {"MDM-01"}, expires)};

    auto const before = exemptd::evaluate(policy(), device, exemptions, expires - 1s);
    CHECK(before.allow);
    CHECK(control(before, "MDM-01").covered_by == "EX-000001");

    auto const at = exemptd::evaluate(policy(), device, exemptions, expires);
    CHECK_FALSE(at.allow);
    CHECK(at.basis == Basis::noncompliant);
    CHECK(control(at, "MDM-01").covered_by.empty());

    CHECK_FALSE(exemptd::evaluate(policy(), device, exemptions, expires + 1h).allow);
}

TEST_CASE("An exemption covers only the controls it names", "[evaluator]")
{
    auto device = compliant_device();
    device.enrolled = false;
    device.facts["os_patch_age_days"] = FactValue{std::int64_t{90}};

    SECTION("a different control") {
        auto const d = decide(device, {exemption("EX-000002", {"OS-01"}, kNow + 24h)});
        CHECK_FALSE(d.allow);
        CHECK(control(d, "OS-01").covered_by == "EX-000002");
        CHECK(control(d, "MDM-01").covered_by.empty());
    }
    SECTION("both failures named in one exemption") {
        auto const d = decide(device, {exemption("EX-000003", {"MDM-01", "OS-01"}, kNow + 24h)});
        CHECK(d.allow);
        CHECK(d.basis == Basis::exempted);
        CHECK(control(d, "OS-01").covered_by == "EX-000003");
        CHECK(control(d, "MDM-01").covered_by == "EX-000003");
    }
    SECTION("an exemption for a passing control changes nothing") {
        auto const d = decide(compliant_device(), {exemption("EX-000004", {"ENC-01"}, kNow + 24h)});
        CHECK(d.basis == Basis::compliant);
        CHECK(control(d, "ENC-01").covered_by.empty());
    }
}

TEST_CASE("An exemption with compensating controls covers only while they pass", "[evaluator]")
{
    auto device = compliant_device();
    device.enrolled = false;
    auto const ex = exemption("EX-000005", {"MDM-01"}, kNow + 24h, {"ENC-01"});

    SECTION("the compensating control passes") {
        auto const d = decide(device, {ex});
        CHECK(d.allow);
        CHECK(control(d, "MDM-01").covered_by == "EX-000005");
    }
    SECTION("the compensating control fails, even inside its own grace") {
        device.facts["disk_encrypted"] = FactValue{false};
        auto const d = decide(device, {ex});
        CHECK_FALSE(d.allow);
        CHECK(d.basis == Basis::noncompliant);
        CHECK(control(d, "MDM-01").covered_by.empty());
    }
    SECTION("a compensating control that is not reported counts as failing") {
        device.facts.erase("disk_encrypted");
        CHECK_FALSE(decide(device, {ex}).allow);
    }
    SECTION("a compensating control that is not a device control never passes") {
        CHECK_FALSE(decide(device, {exemption("EX-000006", {"MDM-01"}, kNow + 24h, {"HR-03"})}).allow);
    }
}

TEST_CASE("The first exemption that still covers a failure is the one reported", "[evaluator]")
{
    auto device = compliant_device();
    device.enrolled = false;
    std::vector<CoveringExemption> const exemptions{
        exemption("EX-000010", {"MDM-01"}, kNow - 1s),                 // expired
        exemption("EX-000011", {"MDM-01"}, kNow + 24h, {"OS-01"}),     // compensated
        exemption("EX-000012", {"MDM-01"}, kNow + 48h)};
    CHECK(control(decide(device, exemptions), "MDM-01").covered_by == "EX-000011");
    device.facts["os_patch_age_days"] = FactValue{std::int64_t{31}};
    auto const d = decide(device, exemptions);
    CHECK(control(d, "MDM-01").covered_by == "EX-000012");
    CHECK_FALSE(d.allow);  // OS-01 itself is still failing and uncovered
}

TEST_CASE("An uncovered failure denies even when other failures are covered", "[evaluator]")
{
    auto device = compliant_device();
    device.enrolled = false;
    device.facts["screen_lock_seconds"] = FactValue{std::int64_t{3600}};
    auto const d = decide(device, {exemption("EX-000008", {"MDM-01"}, kNow + 24h)});
    CHECK_FALSE(d.allow);
    CHECK(d.basis == Basis::noncompliant);
    CHECK(control(d, "MDM-01").covered_by == "EX-000008");
    CHECK_FALSE(control(d, "LOCK-01").pass);
}

TEST_CASE("encode_decision writes exactly what serializing decision_to_json writes", "[evaluator]")
{
    auto device = compliant_device();
    device.facts["disk_encrypted"] = FactValue{false};
    device.failing_since["ENC-01"] = kNow - 1h;
    auto d = decide(device, {exemption("EX-000007", {"MDM-01"}, kNow + 24h)});
    REQUIRE_FALSE(d.controls.empty());
    // Every byte that needs escaping, and UTF-8 and DEL, which pass through.
    std::string awkward = "q\"b\\s/ \b\f\n\r\t";
    for (char c = 0; c < 0x20; ++c) awkward.push_back(c);
    awkward += "\x7f caf\xc3\xa9 \xe2\x9c\x93";
    d.device_id = awkward;
    d.policy_version = awkward;
    d.controls.front().title = awkward;
    d.controls.front().reason = awkward;
    d.controls.front().observed = awkward;
    d.controls.front().covered_by = awkward;
    CHECK(exemptd::encode_decision(d) == boost::json::serialize(exemptd::decision_to_json(d)));
    d.controls.clear();
    CHECK(exemptd::encode_decision(d) == boost::json::serialize(exemptd::decision_to_json(d)));
}

TEST_CASE("A decision holds until the first exemption expiry or grace end after it", "[evaluator]")
{
    auto device = compliant_device();
    CHECK(decide(device).stable_until == exemptd::TimePoint::max());  // nothing can change with time alone

    device.facts["disk_encrypted"] = FactValue{false};  // ENC-01 in grace until kNow + 72h
    device.enrolled = false;                             // MDM-01 covered until kNow + 24h
    std::vector<CoveringExemption> const exemptions{exemption("EX-000001", {"MDM-01"}, kNow + 24h),
                                                    exemption("EX-000002", {"OS-01"}, kNow + 10h),
                                                    exemption("EX-000003", {"OS-01"}, kNow - 1h)};  // expired
    auto const d = decide(device, exemptions);
    CHECK(d.stable_until == kNow + 10h);  // an exemption that covers nothing yet may start to
    // Evaluated again before then, with its own failure streaks, the device gets the same text.
    device.failing_since = exemptd::failure_streaks(d);
    auto const later = decide(device, exemptions, d.stable_until - 1s);
    auto restamped = exemptd::encode_decision(d);
    REQUIRE(exemptd::restamp_decision(restamped, later.evaluated_at));
    CHECK(restamped == exemptd::encode_decision(later));
    CHECK(decide(device, {exemptions[0]}).stable_until == kNow + 24h);
    CHECK(decide(device, {exemptions[0]}, kNow + 24h).stable_until == kNow + 72h);
}

TEST_CASE("Restamping a decision's text writes what encoding it at that time writes", "[evaluator]")
{
    auto device = compliant_device();
    device.facts["disk_encrypted"] = FactValue{false};
    auto d = decide(device);
    auto text = exemptd::encode_decision(d);
    REQUIRE(exemptd::restamp_decision(text, kNow + 5h + 7s));
    d.evaluated_at = kNow + 5h + 7s;
    CHECK(text == exemptd::encode_decision(d));
    // A title that reads like the member does not fool it.
    d.controls.front().title = R"(,"evaluated_at":"2000-01-01T00:00:00Z")";
    text = exemptd::encode_decision(d);
    REQUIRE(exemptd::restamp_decision(text, kNow));
    d.evaluated_at = kNow;
    CHECK(text == exemptd::encode_decision(d));
    for (std::string bad : {"", "{}", R"({"evaluated_at":"2026-11-27T21:00:00Z"})", R"(,"evaluated_at":"2026")"}) {
        auto const before = bad;
        CHECK_FALSE(exemptd::restamp_decision(bad, kNow));
        CHECK(bad == before);
    }
}

TEST_CASE("A decision round-trips through its SPEC JSON", "[evaluator]")
{
    auto device = compliant_device();
    device.enrolled = false;
    device.facts["disk_encrypted"] = FactValue{false};
    auto const d = decide(device, {exemption("EX-000007", {"MDM-01"}, kNow + 24h)});
    auto const json = exemptd::encode_decision(d);
    CHECK_THAT(json, Contains("\"decision\":\"allow\"") && Contains("\"covered_by\":\"EX-000007\"") &&
                         Contains("\"status\":\"fail\"") && Contains("\"evaluated_at\":\"2026-11-27T21:00:00Z\""));
    auto const back = exemptd::decode_decision(json);
    REQUIRE(back);
    CHECK(back->allow == d.allow);
    CHECK(back->basis == d.basis);
    CHECK(back->device_id == d.device_id);
    CHECK(back->evaluated_at == d.evaluated_at);
    CHECK(back->policy_version == d.policy_version);
    CHECK(back->next_checkin_seconds == d.next_checkin_seconds);
    REQUIRE(back->controls.size() == d.controls.size());
    for (std::size_t i = 0; i < d.controls.size(); ++i) {
        INFO(d.controls[i].id);
        CHECK(back->controls[i].id == d.controls[i].id);
        CHECK(back->controls[i].pass == d.controls[i].pass);
        CHECK(back->controls[i].reason == d.controls[i].reason);
        CHECK(back->controls[i].covered_by == d.controls[i].covered_by);
        CHECK(back->controls[i].failing_since == d.controls[i].failing_since);
        CHECK(back->controls[i].grace_until == d.controls[i].grace_until);
    }
}

TEST_CASE("A parsed policy lists the facts its device controls check, and its evaluations compare reports by them alone",
          "[evaluator]")
{
    auto const parsed = std::make_shared<exemptd::Policy const>(exemptd::test::standard_policy());
    REQUIRE(parsed->checked_facts);
    CHECK(*parsed->checked_facts == std::vector<std::string>{"disk_encrypted", "os_patch_age_days", "screen_lock_seconds"});

    auto const base = compliant_device().facts;
    auto with = [&](std::string const& fact, FactValue value) {
        auto facts = base;
        facts[fact] = std::move(value);
        return facts;
    };
    auto without = [&](std::string const& fact) {
        auto facts = base;
        facts.erase(fact);
        return facts;
    };
    auto const uptime = with("uptime_seconds", FactValue{std::int64_t{1234}});

    SECTION("an evaluation against the parsed policy") {
        auto const e = exemptd::policy_evaluator(parsed, kNow);
        CHECK(e.same_input(base, base));
        CHECK(e.same_input(base, uptime));  // a fact no control checks
        CHECK(e.same_input(uptime, with("uptime_seconds", FactValue{std::int64_t{99}})));
        CHECK_FALSE(e.same_input(base, with("screen_lock_seconds", FactValue{std::int64_t{301}})));
        CHECK_FALSE(e.same_input(base, without("os_patch_age_days")));
        CHECK_FALSE(e.same_input(without("os_patch_age_days"), base));
        // The same number of another type, or a string for a bool: the checks may see them apart.
        CHECK_FALSE(e.same_input(base, with("screen_lock_seconds", FactValue{300.0})));
        CHECK_FALSE(e.same_input(base, with("disk_encrypted", FactValue{std::string{"true"}})));
        // A decision shows the value it saw, and 0 and -0 are shown apart.
        CHECK(e.same_input(with("os_patch_age_days", FactValue{0.0}), with("os_patch_age_days", FactValue{0.0})));
        CHECK_FALSE(e.same_input(with("os_patch_age_days", FactValue{0.0}), with("os_patch_age_days", FactValue{-0.0})));
    }
    SECTION("an evaluation that names no policy, or a policy not parsed: every fact counts") {
        auto const function = [](DeviceFacts const& d, std::vector<exemptd::Exemption> const&) { return decide(d); };
        exemptd::Evaluate const plain = function;
        auto unparsed = exemptd::test::standard_policy();
        unparsed.checked_facts.reset();
        exemptd::Evaluate const by_hand(function, std::make_shared<exemptd::Policy const>(std::move(unparsed)));
        for (auto const* e : {&plain, &by_hand}) {
            CHECK(e->same_input(base, base));
            CHECK_FALSE(e->same_input(base, uptime));
            CHECK_FALSE(e->same_input(base, with("screen_lock_seconds", FactValue{300.0})));
        }
    }
}
