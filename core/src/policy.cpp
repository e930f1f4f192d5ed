#include "exemptd/policy.hpp"

#include "exemptd/digest.hpp"
#include "yaml_util.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

namespace exemptd {
namespace {

using yaml::expect_keys;
using yaml::integer;
using yaml::refuse;
using yaml::scalar;

constexpr RiskLevel kLevels[] = {RiskLevel::low, RiskLevel::medium, RiskLevel::high, RiskLevel::critical};

double number(YAML::Node const& node, std::string_view what)
{
    auto const text = scalar(node, what);
    double value = 0;
    auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) refuse(node, std::string(what) + " must be a number");
    return value;
}

// A YAML scalar as a fact value: quoted text stays a string; plain true/false, integers and
// reals become booleans and numbers.
FactValue fact_value(YAML::Node const& node, std::string_view what)
{
    auto const text = scalar(node, what);
    if (node.Tag() == "!") return text;
    if (text == "true" || text == "True" || text == "TRUE") return true;  // the YAML core schema's booleans
    if (text == "false" || text == "False" || text == "FALSE") return false;
    std::int64_t i = 0;
    if (auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
        ec == std::errc{} && end == text.data() + text.size())
        return i;
    double d = 0;
    if (auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
        ec == std::errc{} && end == text.data() + text.size())
        return d;
    return text;
}

bool boolean(YAML::Node const& node, std::string_view what)
{
    auto const value = fact_value(node, what);
    if (auto const* b = std::get_if<bool>(&value)) return *b;
    refuse(node, std::string(what) + " must be true or false");
}

RiskLevel level_key(YAML::Node const& key)
{
    auto const level = risk_level_from_string(key.Scalar());
    if (!level) refuse(key, "'" + key.Scalar() + "' is not a risk level (low, medium, high, critical)");
    return *level;
}

Check parse_check(YAML::Node const& node)
{
    expect_keys(node, "check", {"enrolled", "fact", "equals", "min", "max"});
    Check check;
    if (node["enrolled"]) {
        if (node.size() != 1) refuse(node, "an enrolled check takes no other keys");
        check.enrolled = boolean(node["enrolled"], "check.enrolled");
        return check;
    }
    if (!node["fact"]) refuse(node, "check needs 'enrolled' or 'fact'");
    check.fact = scalar(node["fact"], "check.fact");
    if (node["equals"]) check.equals = fact_value(node["equals"], "check.equals");
    if (node["min"]) check.min = number(node["min"], "check.min");
    if (node["max"]) check.max = number(node["max"], "check.max");
    if (!check.equals && !check.min && !check.max) refuse(node, "a fact check needs 'equals', 'min' or 'max'");
    if (check.min && check.max && *check.min > *check.max) refuse(node, "check.min is greater than check.max");
    return check;
}

SubjectKind subject_kind(YAML::Node const& node)
{
    auto const text = scalar(node, "applies_to");
    if (text == "device") return SubjectKind::device;
    if (text == "user") return SubjectKind::user;
    if (text == "account") return SubjectKind::account;
    refuse(node, "applies_to must be device, user or account");
}

Control parse_control(YAML::Node const& node)
{
    expect_keys(node, "a control", {"id", "title", "check", "applies_to", "grace_hours", "exemption"});
    static std::regex const kIdPattern{"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}"};
    Control control;
    if (!node["id"]) refuse(node, "a control needs an id");
    control.id = scalar(node["id"], "id");
    if (!std::regex_match(control.id, kIdPattern))
        refuse(node["id"], "control id must be 1-32 characters of letters, digits, '.', '_' or '-'");
    if (!node["title"]) refuse(node, "control " + control.id + " needs a title");
    control.title = scalar(node["title"], "title");
    if (node["applies_to"]) control.applies_to = subject_kind(node["applies_to"]);
    if (node["check"]) control.check = parse_check(node["check"]);
    if (control.applies_to == SubjectKind::device && !control.check)
        refuse(node, "device control " + control.id + " needs a check");
    if (control.applies_to != SubjectKind::device && control.check)
        refuse(node["check"], "control " + control.id + " applies to " + std::string(to_string(control.applies_to)) +
                                  "s and is documentary: it takes no check");
    if (node["grace_hours"]) control.grace_hours = static_cast<int>(integer(node["grace_hours"], "grace_hours", 0, 8760));
    if (auto const exemption = node["exemption"]) {
        expect_keys(exemption, "exemption", {"requires_agreement"});
        if (exemption["requires_agreement"])
            control.requires_agreement = scalar(exemption["requires_agreement"], "requires_agreement");
    }
    return control;
}

// The facts that the device controls among `controls` check, sorted, each once.
std::vector<std::string> checked_facts(std::vector<Control> const& controls)
{
    std::vector<std::string> names;
    for (auto const& control : controls) {
        if (control.applies_to == SubjectKind::device && control.check && !control.check->fact.empty())
            names.push_back(control.check->fact);
    }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    return names;
}

std::vector<Control> parse_controls(YAML::Node const& node)
{
    if (!node.IsSequence() || node.size() == 0) refuse(node, "controls must be a non-empty list");
    std::vector<Control> controls;
    std::set<std::string> seen;
    for (auto const& item : node) {
        controls.push_back(parse_control(item));
        if (!seen.insert(controls.back().id).second) refuse(item, "duplicate control id " + controls.back().id);
    }
    return controls;
}

std::map<RiskLevel, int> per_level_days(YAML::Node const& node, std::string_view what)
{
    expect_keys(node, what, {"low", "medium", "high", "critical"});
    std::map<RiskLevel, int> out;
    for (RiskLevel const level : kLevels) {
        auto const value = node[std::string(to_string(level))];
        if (!value) refuse(node, std::string(what) + " needs a value for " + std::string(to_string(level)));
        out[level] = static_cast<int>(integer(value, what, 1, 3650));
    }
    return out;
}

std::map<RiskLevel, std::vector<std::string>> parse_approvers(YAML::Node const& node)
{
    if (!node.IsMap()) refuse(node, "approvers must be a mapping of risk level to a list of emails");
    std::map<RiskLevel, std::vector<std::string>> out;
    for (auto const& entry : node) {
        RiskLevel const level = level_key(entry.first);
        if (!entry.second.IsSequence()) refuse(entry.second, "approvers of a level must be a list of emails");
        for (auto const& email : entry.second) {
            auto const text = scalar(email, "approver");
            if (text.find('@') == std::string::npos) refuse(email, "approver '" + text + "' is not an email address");
            out[level].push_back(text);
        }
    }
    return out;
}

ExemptionRules parse_exemption_rules(YAML::Node const& node)
{
    expect_keys(node, "exemptions", {"max_days", "review_every_days", "approvers", "max_renewals"});
    ExemptionRules rules;
    if (!node["max_days"]) refuse(node, "exemptions needs max_days");
    if (!node["review_every_days"]) refuse(node, "exemptions needs review_every_days");
    rules.max_days = per_level_days(node["max_days"], "max_days");
    rules.review_every_days = per_level_days(node["review_every_days"], "review_every_days");
    if (node["approvers"]) rules.approvers = parse_approvers(node["approvers"]);
    if (node["max_renewals"]) rules.max_renewals = static_cast<int>(integer(node["max_renewals"], "max_renewals", 0, 100));
    return rules;
}

std::string read_file(std::string const& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::ostringstream buffer;
    buffer << in.rdbuf();
    return std::move(buffer).str();
}

AgreementTemplate parse_template(std::string const& name, YAML::Node const& node, std::string const& base_dir)
{
    expect_keys(node, "agreement " + name, {"terms_file"});
    if (!node["terms_file"]) refuse(node, "agreement " + name + " needs terms_file");
    std::filesystem::path path = scalar(node["terms_file"], "terms_file");
    if (path.is_relative()) path = std::filesystem::path(base_dir) / path;
    AgreementTemplate t{name, path.lexically_normal().string(), {}};
    try {
        t.terms_sha256 = sha256_hex(read_file(t.terms_file));
    } catch (std::exception const&) {
        refuse(node["terms_file"], "cannot read terms file " + t.terms_file);
    }
    return t;
}

CheckinRules parse_checkin(YAML::Node const& node)
{
    expect_keys(node, "checkin", {"interval_seconds", "stale_after_hours", "max_clock_skew_seconds"});
    CheckinRules rules;
    if (node["interval_seconds"])
        rules.interval_seconds = static_cast<int>(integer(node["interval_seconds"], "interval_seconds", 10, 86400));
    if (node["stale_after_hours"])
        rules.stale_after_hours = static_cast<int>(integer(node["stale_after_hours"], "stale_after_hours", 1, 8760));
    if (node["max_clock_skew_seconds"])
        rules.max_clock_skew_seconds =
            static_cast<int>(integer(node["max_clock_skew_seconds"], "max_clock_skew_seconds", 1, 3600));
    return rules;
}

// Refuses references that point nowhere: agreement templates named by controls.
void check_references(Policy const& policy, YAML::Node const& controls)
{
    for (std::size_t i = 0; i < policy.controls.size(); ++i) {
        auto const& name = policy.controls[i].requires_agreement;
        if (!name.empty() && !policy.agreements.contains(name))
            refuse(controls[i]["exemption"]["requires_agreement"],
                   "control " + policy.controls[i].id + " requires agreement '" + name + "', which agreements does not define");
    }
}

Policy parse_root(YAML::Node const& root, std::string const& base_dir)
{
    expect_keys(root, "the policy", {"version", "controls", "exemptions", "agreements", "checkin"});
    if (!root["version"] || integer(root["version"], "version", 1, 1) != 1) refuse(root, "policy needs version: 1");
    if (!root["controls"]) refuse(root, "policy needs controls");
    if (!root["exemptions"]) refuse(root, "policy needs exemptions");
    Policy policy;
    policy.controls = parse_controls(root["controls"]);
    policy.checked_facts = checked_facts(policy.controls);
    policy.exemptions = parse_exemption_rules(root["exemptions"]);
    if (auto const agreements = root["agreements"]) {
        if (!agreements.IsMap()) refuse(agreements, "agreements must be a mapping of template name to its terms");
        for (auto const& entry : agreements) {
            auto const name = entry.first.Scalar();
            policy.agreements.emplace(name, parse_template(name, entry.second, base_dir));
        }
    }
    if (root["checkin"]) policy.checkin = parse_checkin(root["checkin"]);
    check_references(policy, root["controls"]);
    return policy;
}

}  // namespace

std::string_view to_string(SubjectKind kind) noexcept
{
    switch (kind) {
    case SubjectKind::device: return "device";
    case SubjectKind::user: return "user";
    case SubjectKind::account: return "account";
    }
    return "device";
}

std::string_view to_string(RiskLevel level) noexcept
{
    switch (level) {
    case RiskLevel::low: return "low";
    case RiskLevel::medium: return "medium";
    case RiskLevel::high: return "high";
    case RiskLevel::critical: return "critical";
    }
    return "critical";
}

std::optional<RiskLevel> risk_level_from_string(std::string_view text) noexcept
{
    for (RiskLevel const level : kLevels) {
        if (to_string(level) == text) return level;
    }
    return std::nullopt;
}

Control const* Policy::find_control(std::string_view id) const noexcept
{
    for (auto const& control : controls) {
        if (control.id == id) return &control;
    }
    return nullptr;
}

bool Policy::may_approve(std::string_view approver, RiskLevel level) const
{
    for (auto const& [listed_level, emails] : exemptions.approvers) {
        if (listed_level < level) continue;
        if (std::find(emails.begin(), emails.end(), approver) != emails.end()) return true;
    }
    return false;
}

std::string LoadError::to_string() const
{
    return file + ":" + std::to_string(line) + ": " + reason;
}

void throw_exception_from_error(LoadError const& e, boost::source_location const&)
{
    throw std::runtime_error(e.to_string());
}

PolicyResult parse_policy(std::string_view yaml, std::string const& file_name, std::string const& base_dir)
{
    try {
        Policy policy = parse_root(YAML::Load(std::string(yaml)), base_dir);
        policy.version = "sha256:" + sha256_hex(yaml);
        policy.source = file_name;
        return policy;
    } catch (yaml::Refusal const& r) {
        return LoadError{file_name, r.line, r.reason};
    } catch (YAML::Exception const& e) {
        return LoadError{file_name, e.mark.is_null() ? 0 : e.mark.line + 1, e.msg};
    }
}

std::string describe_check(Check const& check)
{
    if (check.enrolled) return *check.enrolled ? "enrolled in MDM" : "not enrolled in MDM";
    std::string out;
    auto const number = [](double d) { return fact_to_string(FactValue{d}); };
    if (check.equals) out = check.fact + " = " + fact_to_string(*check.equals);
    if (check.min || check.max) {
        if (!out.empty()) out += " and ";
        if (check.min) out += number(*check.min) + " <= ";
        out += check.fact;
        if (check.max) out += " <= " + number(*check.max);
    }
    return out;
}

bool looks_like_policy(std::string const& path)
{
    try {
        auto const root = YAML::LoadFile(path);
        return root.IsMap() && root["controls"];
    } catch (YAML::Exception const&) {
        return false;
    }
}

PolicyResult load_policy_file(std::string const& path)
{
    std::string text;
    try {
        text = read_file(path);
    } catch (std::exception const& e) {
        return LoadError{path, 0, e.what()};
    }
    auto const base_dir = std::filesystem::absolute(path).parent_path().string();
    return parse_policy(text, path, base_dir);
}

}  // namespace exemptd
