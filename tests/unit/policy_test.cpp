#include "support.hpp"

#include "exemptd/digest.hpp"
#include "exemptd/policy.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

using Catch::Matchers::Contains;
using exemptd::FactValue;
using exemptd::LoadError;
using exemptd::RiskLevel;
using exemptd::SubjectKind;
using exemptd::test::policy_dir;

namespace {

constexpr char const* kExemptions = R"(exemptions:
  max_days: {low: 180, medium: 90, high: 30, critical: 7}
  review_every_days: {low: 90, medium: 30, high: 7, critical: 7}
)";

constexpr char const* kOneControl = R"(  - id: ENC-01
    title: Disk encryption is on
    check: {fact: disk_encrypted, equals: true}
)";

// A policy whose `controls` list starts on line 3; `tail` starts on line 6 + lines of `controls`.
std::string policy_with(std::string const& controls, std::string const& tail = "")
{
    return "version: 1\ncontrols:\n" + controls + kExemptions + tail;
}

LoadError refused(std::string const& yaml)
{
    auto const parsed = exemptd::parse_policy(yaml, "test.yaml", policy_dir());
    INFO("policy:\n" << yaml);
    REQUIRE_FALSE(parsed);
    CHECK(parsed.error().file == "test.yaml");
    CHECK_FALSE(parsed.error().reason.empty());
    return parsed.error();
}

LoadError refused_file(std::string const& name)
{
    auto const path = exemptd::test::data_path("policies/" + name);
    auto const parsed = exemptd::load_policy_file(path);
    REQUIRE_FALSE(parsed);
    CHECK(parsed.error().file == path);
    return parsed.error();
}

}  // namespace

TEST_CASE("A complete policy file loads with every rule it states", "[policy]")
{
    auto const path = exemptd::test::data_path("policies/valid.yaml");
    auto const loaded = exemptd::load_policy_file(path);
    if (!loaded) FAIL(loaded.error().to_string());
    auto const& p = *loaded;

    REQUIRE(p.controls.size() == 4);
    CHECK(p.controls[0].id == "MDM-01");
    CHECK(p.controls[0].title == "Device is enrolled in MDM");
    REQUIRE(p.controls[0].check);
    CHECK(p.controls[0].check->enrolled == true);
    CHECK(p.controls[0].requires_agreement == "byod-v3");

    auto const& enc = p.controls[1];
    REQUIRE(enc.check);
    CHECK_FALSE(enc.check->enrolled);
    CHECK(enc.check->fact == "disk_encrypted");
    CHECK(enc.check->equals == FactValue{true});
    CHECK(enc.grace_hours == 72);
    CHECK(enc.applies_to == SubjectKind::device);
    CHECK(enc.requires_agreement.empty());

    REQUIRE(p.controls[2].check);
    CHECK(p.controls[2].check->max == 30.0);
    CHECK_FALSE(p.controls[2].check->min);
    CHECK(p.controls[2].grace_hours == 0);

    CHECK(p.controls[3].applies_to == SubjectKind::user);
    CHECK_FALSE(p.controls[3].check);

    CHECK(p.exemptions.max_days.at(RiskLevel::low) == 180);
    CHECK(p.exemptions.max_days.at(RiskLevel::critical) == 7);
    CHECK(p.exemptions.review_every_days.at(RiskLevel::medium) == 30);
    CHECK(p.exemptions.max_renewals == 2);
    CHECK(p.exemptions.approvers.at(RiskLevel::high) ==
          std::vector<std::string>{"ciso@example.com", "security-lead@example.com"});

    CHECK(p.checkin.interval_seconds == 900);
    CHECK(p.checkin.stale_after_hours == 48);
    CHECK(p.checkin.max_clock_skew_seconds == 120);

    SECTION("the terms file resolves next to the policy and is hashed") {
        REQUIRE(p.agreements.contains("byod-v3"));
        auto const& t = p.agreements.at("byod-v3");
        CHECK(t.name == "byod-v3");
        CHECK(std::filesystem::path(t.terms_file).is_absolute());
        CHECK(std::filesystem::equivalent(t.terms_file, exemptd::test::data_path("policies/byod-v3.txt")));
        CHECK(t.terms_sha256 == exemptd::sha256_hex(exemptd::test::read_text(t.terms_file)));
        CHECK(t.terms_sha256.size() == 64);
    }
    SECTION("the version is the SHA-256 of the file's bytes and the source is the file") {
        CHECK(p.version == "sha256:" + exemptd::sha256_hex(exemptd::test::read_text(path)));
        CHECK(p.source == path);
    }
}

TEST_CASE("The shipped default policy loads", "[policy]")
{
    auto const loaded = exemptd::load_policy_file(std::string(EXEMPTD_SOURCE_DIR) + "/policies/default.yaml");
    if (!loaded) FAIL(loaded.error().to_string());
    CHECK(loaded->find_control("MDM-01") != nullptr);
    // A patch age below zero is no patch age: it must not pass OS-01.
    auto const* os = loaded->find_control("OS-01");
    REQUIRE(os != nullptr);
    REQUIRE(os->check);
    CHECK(os->check->min == 0.0);
    CHECK(os->check->max == 30.0);
}

TEST_CASE("Optional policy sections take their documented defaults", "[policy]")
{
    auto const p = exemptd::test::policy_from_yaml(policy_with(kOneControl));
    CHECK(p.checkin.interval_seconds == 900);
    CHECK(p.checkin.stale_after_hours == 72);
    CHECK(p.checkin.max_clock_skew_seconds == 300);
    CHECK(p.exemptions.max_renewals == 0);
    CHECK(p.exemptions.approvers.empty());
    CHECK(p.agreements.empty());
    CHECK(p.controls.at(0).grace_hours == 0);
    CHECK(p.controls.at(0).applies_to == SubjectKind::device);
}

TEST_CASE("A policy's version changes with any change to its bytes", "[policy]")
{
    auto const a = exemptd::test::policy_from_yaml(policy_with(kOneControl));
    auto const b = exemptd::test::policy_from_yaml(policy_with(kOneControl) + "# a comment\n");
    CHECK(a.version.starts_with("sha256:"));
    CHECK(a.version != b.version);
}

TEST_CASE("A check's equals value keeps its YAML type", "[policy]")
{
    auto const equals_of = [](std::string const& value) {
        auto const p = exemptd::test::policy_from_yaml(
            policy_with("  - id: X-1\n    title: t\n    check: {fact: f, equals: " + value + "}\n"));
        return p.controls.at(0).check->equals.value();
    };
    CHECK(equals_of("true") == FactValue{true});
    CHECK(equals_of("false") == FactValue{false});
    CHECK(equals_of("3") == FactValue{std::int64_t{3}});
    CHECK(equals_of("-7") == FactValue{std::int64_t{-7}});
    CHECK(equals_of("12.5") == FactValue{12.5});
    CHECK(equals_of("debian") == FactValue{std::string("debian")});
    SECTION("quoted text stays a string even when it looks like a number or boolean") {
        CHECK(equals_of("\"12\"") == FactValue{std::string("12")});
        CHECK(equals_of("'true'") == FactValue{std::string("true")});
    }
}

TEST_CASE("A YAML 1.2 boolean spelt True is never read as text", "[policy]")
{
    // `equals: True` compared as the string "True" would fail every device that reports the
    // boolean true; the policy must read it as a boolean or refuse it.
    for (auto const* spelling : {"True", "TRUE"}) {
        INFO("equals: " << spelling);
        auto const parsed = exemptd::parse_policy(
            policy_with("  - id: ENC-01\n    title: t\n    check: {fact: disk_encrypted, equals: " +
                        std::string(spelling) + "}\n"),
            "test.yaml", policy_dir());
        if (parsed) CHECK(parsed->controls.at(0).check->equals == FactValue{true});
    }
}

TEST_CASE("Relative terms files resolve against the base folder, absolute ones stay", "[policy]")
{
    exemptd::test::TempDir dir;
    auto const terms = dir.write("terms.txt", "the terms\n");
    auto const yaml = policy_with(kOneControl, "agreements:\n  rel: {terms_file: terms.txt}\n  abs: {terms_file: " +
                                                   terms + "}\n");
    auto const parsed = exemptd::parse_policy(yaml, "p.yaml", dir.path().string());
    if (!parsed) FAIL(parsed.error().to_string());
    CHECK(parsed->agreements.at("rel").terms_file == terms);
    CHECK(parsed->agreements.at("abs").terms_file == terms);
    CHECK(parsed->agreements.at("rel").terms_sha256 == exemptd::sha256_hex("the terms\n"));
}

TEST_CASE("Policy fixtures with a mistake are refused with file, line and reason", "[policy]")
{
    SECTION("an unknown key") {
        auto const e = refused_file("unknown_key.yaml");
        CHECK(e.line == 9);
        CHECK_THAT(e.reason, Contains("grace_hour"));
    }
    SECTION("a wrong type") {
        auto const e = refused_file("wrong_type.yaml");
        CHECK(e.line == 7);
        CHECK_THAT(e.reason, Contains("grace_hours"));
    }
    SECTION("a dangling requires_agreement") {
        auto const e = refused_file("dangling_agreement.yaml");
        CHECK(e.line == 7);
        CHECK_THAT(e.reason, Contains("byod-v4"));
    }
    SECTION("a missing terms file") {
        auto const e = refused_file("missing_terms_file.yaml");
        CHECK(e.line == 12);
        CHECK_THAT(e.reason, Contains("no-such-terms.txt"));
    }
    SECTION("a duplicate control id") {
        auto const e = refused_file("duplicate_control.yaml");
        CHECK(e.line == 10);
        CHECK_THAT(e.reason, Contains("duplicate") && Contains("ENC-01"));
    }
    SECTION("a file that does not exist") {
        auto const e = refused_file("no-such-policy.yaml");
        CHECK(e.line == 0);
        CHECK_FALSE(e.reason.empty());
    }
}

TEST_CASE("A refusal reads as file:line: reason", "[policy]")
{
    CHECK(LoadError{"policy.yaml", 12, "unknown key 'x'"}.to_string() == "policy.yaml:12: unknown key 'x'");
}

TEST_CASE("An unknown key anywhere in a policy is refused at its line", "[policy]")
{
    SECTION("at the top level") {
        auto const e = refused(policy_with(kOneControl, "owner: it-team\n"));
        CHECK(e.line == 9);
        CHECK_THAT(e.reason, Contains("owner"));
    }
    SECTION("in a control") {
        auto const e = refused(policy_with("  - id: ENC-01\n    title: t\n    severity: high\n    check: {fact: f, max: 1}\n"));
        CHECK(e.line == 5);
        CHECK_THAT(e.reason, Contains("severity"));
    }
    SECTION("in a check") {
        auto const e = refused(policy_with("  - id: ENC-01\n    title: t\n    check: {fact: f, equal: true}\n"));
        CHECK(e.line == 5);
        CHECK_THAT(e.reason, Contains("equal"));
    }
    SECTION("in a control's exemption block") {
        auto const e = refused(policy_with(std::string(kOneControl) + "    exemption: {requires: byod-v3}\n"));
        CHECK(e.line == 6);
        CHECK_THAT(e.reason, Contains("requires"));
    }
    SECTION("in exemptions") {
        auto const e = refused(policy_with(kOneControl) + "  max_renewal: 2\n");
        CHECK(e.line == 9);
        CHECK_THAT(e.reason, Contains("max_renewal"));
    }
    SECTION("in max_days") {
        auto const yaml = "version: 1\ncontrols:\n" + std::string(kOneControl) +
                          "exemptions:\n  max_days: {low: 180, medium: 90, high: 30, critical: 7, severe: 1}\n"
                          "  review_every_days: {low: 90, medium: 30, high: 7, critical: 7}\n";
        CHECK_THAT(refused(yaml).reason, Contains("severe"));
    }
    SECTION("in checkin") {
        auto const e = refused(policy_with(kOneControl, "checkin: {interval_seconds: 900, jitter: 5}\n"));
        CHECK(e.line == 9);
        CHECK_THAT(e.reason, Contains("jitter"));
    }
    SECTION("in an agreement template") {
        auto const e = refused(policy_with(kOneControl, "agreements:\n  byod-v3: {terms_file: byod-v3.txt, url: x}\n"));
        CHECK(e.line == 10);
        CHECK_THAT(e.reason, Contains("url"));
    }
}

TEST_CASE("A value of the wrong type or out of range is refused at its line", "[policy]")
{
    auto const control_with = [](std::string const& line) {
        return policy_with("  - id: ENC-01\n    title: t\n    check: {fact: f, equals: true}\n" + line + "\n");
    };
    SECTION("grace_hours as text") {
        auto const e = refused(control_with("    grace_hours: soon"));
        CHECK(e.line == 6);
        CHECK_THAT(e.reason, Contains("grace_hours"));
    }
    SECTION("grace_hours negative, fractional, too large or a list") {
        for (auto const* v : {"-1", "1.5", "8761", "[1]", "''"}) {
            INFO("grace_hours: " << v);
            auto const e = refused(control_with(std::string("    grace_hours: ") + v));
            CHECK(e.line == 6);
        }
    }
    SECTION("check.enrolled not true or false") {
        auto const e = refused(policy_with("  - id: MDM-01\n    title: t\n    check: {enrolled: yes}\n"));
        CHECK(e.line == 5);
        CHECK_THAT(e.reason, Contains("enrolled"));
    }
    SECTION("check.max not a number") {
        auto const e = refused(policy_with("  - id: OS-01\n    title: t\n    check: {fact: f, max: thirty}\n"));
        CHECK(e.line == 5);
        CHECK_THAT(e.reason, Contains("max"));
    }
    SECTION("check.equals a list") {
        CHECK_THAT(refused(policy_with("  - id: X\n    title: t\n    check: {fact: f, equals: [1, 2]}\n")).reason,
                   Contains("equals"));
    }
    SECTION("a title that is a mapping") {
        auto const e = refused(policy_with("  - id: X\n    title: {en: t}\n    check: {fact: f, max: 1}\n"));
        CHECK(e.line == 4);
    }
    SECTION("applies_to something other than device, user or account") {
        auto const e = refused(policy_with("  - id: X\n    title: t\n    applies_to: group\n"));
        CHECK(e.line == 5);
        CHECK_THAT(e.reason, Contains("applies_to"));
    }
    SECTION("controls not a list, or an empty one") {
        CHECK(refused("version: 1\ncontrols: {id: X}\n" + std::string(kExemptions)).line == 2);
        CHECK(refused("version: 1\ncontrols: []\n" + std::string(kExemptions)).line == 2);
    }
    SECTION("a max_days value of zero") {
        auto const yaml = "version: 1\ncontrols:\n" + std::string(kOneControl) +
                          "exemptions:\n  max_days: {low: 0, medium: 90, high: 30, critical: 7}\n"
                          "  review_every_days: {low: 90, medium: 30, high: 7, critical: 7}\n";
        auto const e = refused(yaml);
        CHECK(e.line == 7);
        CHECK_THAT(e.reason, Contains("max_days"));
    }
    SECTION("max_days missing a level") {
        auto const yaml = "version: 1\ncontrols:\n" + std::string(kOneControl) +
                          "exemptions:\n  max_days: {low: 180, medium: 90, high: 30}\n"
                          "  review_every_days: {low: 90, medium: 30, high: 7, critical: 7}\n";
        CHECK_THAT(refused(yaml).reason, Contains("critical"));
    }
    SECTION("max_renewals negative") {
        auto const e = refused(policy_with(kOneControl) + "  max_renewals: -1\n");
        CHECK(e.line == 9);
    }
    SECTION("an approver level that is not a risk level") {
        auto const e = refused(policy_with(kOneControl) + "  approvers:\n    severe: [ciso@example.com]\n");
        CHECK(e.line == 10);
        CHECK_THAT(e.reason, Contains("severe"));
    }
    SECTION("an approver that is not an email") {
        auto const e = refused(policy_with(kOneControl) + "  approvers:\n    high: [ciso]\n");
        CHECK(e.line == 10);
        CHECK_THAT(e.reason, Contains("ciso"));
    }
    SECTION("approvers of a level not a list") {
        CHECK(refused(policy_with(kOneControl) + "  approvers:\n    high: ciso@example.com\n").line == 10);
    }
    SECTION("check-in numbers out of range") {
        CHECK(refused(policy_with(kOneControl, "checkin: {interval_seconds: 5}\n")).line == 9);
        CHECK(refused(policy_with(kOneControl, "checkin: {max_clock_skew_seconds: 0}\n")).line == 9);
        CHECK(refused(policy_with(kOneControl, "checkin: {stale_after_hours: many}\n")).line == 9);
    }
    SECTION("agreements not a mapping") {
        CHECK(refused(policy_with(kOneControl, "agreements: [byod-v3]\n")).line == 9);
    }
}

TEST_CASE("A policy that breaks a structural rule is refused", "[policy]")
{
    SECTION("version other than 1") {
        CHECK_THAT(refused("version: 2\ncontrols:\n" + std::string(kOneControl) + kExemptions).reason,
                   Contains("version"));
    }
    SECTION("no version") {
        CHECK_THAT(refused("controls:\n" + std::string(kOneControl) + kExemptions).reason, Contains("version"));
    }
    SECTION("no controls") {
        CHECK_THAT(refused("version: 1\n" + std::string(kExemptions)).reason, Contains("controls"));
    }
    SECTION("no exemptions") {
        CHECK_THAT(refused("version: 1\ncontrols:\n" + std::string(kOneControl)).reason, Contains("exemptions"));
    }
    SECTION("a control without an id or a title") {
        refused(policy_with("  - title: t\n    check: {fact: f, max: 1}\n"));
        CHECK_THAT(refused(policy_with("  - id: X-1\n    check: {fact: f, max: 1}\n")).reason, Contains("X-1"));
    }
    SECTION("a control id with a space or longer than 32 characters") {
        CHECK(refused(policy_with("  - id: ENC 01\n    title: t\n    check: {fact: f, max: 1}\n")).line == 3);
        refused(policy_with("  - id: " + std::string(33, 'A') + "\n    title: t\n    check: {fact: f, max: 1}\n"));
    }
    SECTION("a device control without a check") {
        auto const e = refused(policy_with("  - id: ENC-01\n    title: t\n    grace_hours: 1\n"));
        CHECK(e.line == 3);
        CHECK_THAT(e.reason, Contains("ENC-01"));
    }
    SECTION("a documentary control with a check") {
        auto const e = refused(policy_with("  - id: HR-03\n    title: t\n    applies_to: user\n    check: {fact: f, max: 1}\n"));
        CHECK(e.line == 6);
        CHECK_THAT(e.reason, Contains("HR-03"));
    }
    SECTION("a check with neither enrolled nor fact") {
        CHECK(refused(policy_with("  - id: X\n    title: t\n    check: {equals: true}\n")).line == 5);
    }
    SECTION("an enrolled check combined with a fact") {
        CHECK(refused(policy_with("  - id: X\n    title: t\n    check: {enrolled: true, fact: f}\n")).line == 5);
    }
    SECTION("a fact check with nothing to compare") {
        CHECK(refused(policy_with("  - id: X\n    title: t\n    check: {fact: f}\n")).line == 5);
    }
    SECTION("a fact check whose min is above its max") {
        CHECK_THAT(refused(policy_with("  - id: X\n    title: t\n    check: {fact: f, min: 10, max: 1}\n")).reason,
                   Contains("min"));
    }
    SECTION("an agreement template without terms_file") {
        CHECK(refused(policy_with(kOneControl, "agreements:\n  byod-v3: {}\n")).line == 10);
    }
    SECTION("a requires_agreement with no agreements section at all") {
        auto const e = refused(policy_with(std::string(kOneControl) + "    exemption: {requires_agreement: byod-v3}\n"));
        CHECK(e.line == 6);
        CHECK_THAT(e.reason, Contains("byod-v3"));
    }
    SECTION("a root that is not a mapping, or an empty document") {
        refused("- version: 1\n");
        refused("");
    }
    SECTION("YAML that does not parse reports the line of the error") {
        auto const e = refused("version: 1\ncontrols:\n  - id: [X\n    title: t\n");
        CHECK(e.line > 0);
    }
}

TEST_CASE("An approver may approve the levels listed for them and every lower level", "[policy]")
{
    auto const p = exemptd::test::standard_policy();
    SECTION("listed for critical: every level") {
        for (auto const level : {RiskLevel::low, RiskLevel::medium, RiskLevel::high, RiskLevel::critical})
            CHECK(p.may_approve("ciso@example.com", level));
    }
    SECTION("listed for high: high and below, not critical") {
        CHECK(p.may_approve("security-lead@example.com", RiskLevel::low));
        CHECK(p.may_approve("security-lead@example.com", RiskLevel::medium));
        CHECK(p.may_approve("security-lead@example.com", RiskLevel::high));
        CHECK_FALSE(p.may_approve("security-lead@example.com", RiskLevel::critical));
    }
    SECTION("listed for medium: medium and low only") {
        CHECK(p.may_approve("it-manager@example.com", RiskLevel::low));
        CHECK(p.may_approve("it-manager@example.com", RiskLevel::medium));
        CHECK_FALSE(p.may_approve("it-manager@example.com", RiskLevel::high));
        CHECK_FALSE(p.may_approve("it-manager@example.com", RiskLevel::critical));
    }
    SECTION("not listed: nothing, and the match is exact") {
        CHECK_FALSE(p.may_approve("sam@example.com", RiskLevel::low));
        CHECK_FALSE(p.may_approve("CISO@example.com", RiskLevel::low));
        CHECK_FALSE(p.may_approve("", RiskLevel::low));
    }
}

TEST_CASE("A control is found by its exact id", "[policy]")
{
    auto const p = exemptd::test::standard_policy();
    REQUIRE(p.find_control("ENC-01") != nullptr);
    CHECK(p.find_control("ENC-01")->grace_hours == 72);
    CHECK(p.find_control("HR-03")->applies_to == SubjectKind::user);
    CHECK(p.find_control("IAM-01")->applies_to == SubjectKind::account);
    CHECK(p.find_control("enc-01") == nullptr);
    CHECK(p.find_control("") == nullptr);
}

TEST_CASE("Risk levels convert to and from their names", "[policy]")
{
    for (auto const level : {RiskLevel::low, RiskLevel::medium, RiskLevel::high, RiskLevel::critical})
        CHECK(exemptd::risk_level_from_string(exemptd::to_string(level)) == level);
    CHECK_FALSE(exemptd::risk_level_from_string("severe"));
    CHECK_FALSE(exemptd::risk_level_from_string("High"));
}

TEST_CASE("A policy file is told apart from a daemon configuration", "[policy]")
{
    exemptd::test::TempDir dir;
    CHECK(exemptd::looks_like_policy(exemptd::test::data_path("policies/valid.yaml")));
    CHECK_FALSE(exemptd::looks_like_policy(dir.write("config.yaml", "listen: 127.0.0.1:8443\npolicy: default.yaml\n")));
    CHECK_FALSE(exemptd::looks_like_policy(dir.write("broken.yaml", "controls: [\n")));
    CHECK_FALSE(exemptd::looks_like_policy(dir.file("missing.yaml")));
}
