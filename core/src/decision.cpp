#include "exemptd/decision.hpp"

#include "exemptd/json_reader.hpp"
#include "json_writer.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace exemptd {
namespace {

using json_writer::append_member;

boost::json::object control_to_json(ControlResult const& c)
{
    boost::json::object out{{"id", c.id}, {"status", c.pass ? "pass" : "fail"}};
    if (!c.title.empty()) out["title"] = c.title;
    if (!c.reason.empty()) out["reason"] = c.reason;
    if (!c.observed.empty()) out["observed"] = c.observed;
    if (!c.covered_by.empty()) out["covered_by"] = c.covered_by;
    if (c.failing_since) out["failing_since"] = format_rfc3339(*c.failing_since);
    if (c.grace_until) out["grace_until"] = format_rfc3339(*c.grace_until);
    return out;
}

std::optional<TimePoint> time_or_none(boost::json::object const& o, std::string_view key)
{
    auto const* v = o.if_contains(key);
    return v != nullptr && v->is_string() ? parse_rfc3339(v->as_string()) : std::nullopt;
}

Result<ControlResult> control_from_json(boost::json::value const& v)
{
    if (!v.is_object()) return make_error_code(Errc::request_invalid);
    auto const& o = v.as_object();
    ControlResult c;
    c.id = string_or_empty(o, "id");
    c.title = string_or_empty(o, "title");
    c.pass = string_or_empty(o, "status") == "pass";
    c.reason = string_or_empty(o, "reason");
    c.observed = string_or_empty(o, "observed");
    c.covered_by = string_or_empty(o, "covered_by");
    c.failing_since = time_or_none(o, "failing_since");
    c.grace_until = time_or_none(o, "grace_until");
    if (c.id.empty()) return make_error_code(Errc::request_invalid);
    return c;
}

std::optional<Basis> basis_from_string(std::string_view s)
{
    for (Basis b : {Basis::compliant, Basis::exempted, Basis::grace, Basis::noncompliant}) {
        if (to_string(b) == s) return b;
    }
    return std::nullopt;
}

}  // namespace

std::string_view to_string(Basis basis) noexcept
{
    switch (basis) {
    case Basis::compliant: return "compliant";
    case Basis::exempted: return "exempted";
    case Basis::grace: return "grace";
    case Basis::noncompliant: return "noncompliant";
    }
    return "noncompliant";
}

boost::json::object decision_to_json(Decision const& d)
{
    boost::json::array controls;
    controls.reserve(d.controls.size());
    for (auto const& c : d.controls) controls.emplace_back(control_to_json(c));
    return {{"device_id", d.device_id},
            {"decision", d.allow ? "allow" : "deny"},
            {"basis", to_string(d.basis)},
            {"controls", std::move(controls)},
            {"policy_version", d.policy_version},
            {"evaluated_at", format_rfc3339(d.evaluated_at)},
            {"next_checkin_seconds", d.next_checkin_seconds}};
}

// The same text as serialize(decision_to_json(d)), written directly: every check-in encodes its
// decision (stored, and sent as the answer), and a DOM costs an allocation per value.
std::string encode_decision(Decision const& d)
{
    json_writer::Text out(256 + 160 * d.controls.size());
    out.raw('{');
    append_member(out, "device_id", d.device_id);
    append_member(out, "decision", d.allow ? "allow" : "deny");
    append_member(out, "basis", to_string(d.basis));
    out.raw(",\"controls\":[");
    for (auto const& c : d.controls) {
        out.raw(out.back() == '[' ? "{" : ",{");
        append_member(out, "id", c.id);
        append_member(out, "status", c.pass ? "pass" : "fail");
        if (!c.title.empty()) append_member(out, "title", c.title);
        if (!c.reason.empty()) append_member(out, "reason", c.reason);
        if (!c.observed.empty()) append_member(out, "observed", c.observed);
        if (!c.covered_by.empty()) append_member(out, "covered_by", c.covered_by);
        if (c.failing_since) append_member(out, "failing_since", Rfc3339Text(*c.failing_since).view());
        if (c.grace_until) append_member(out, "grace_until", Rfc3339Text(*c.grace_until).view());
        out.raw('}');
    }
    out.raw(']');
    append_member(out, "policy_version", d.policy_version);
    append_member(out, "evaluated_at", Rfc3339Text(d.evaluated_at).view());
    append_member(out, "next_checkin_seconds", std::int64_t{d.next_checkin_seconds});
    out.raw('}');
    return std::move(out).take();
}

bool restamp_decision(std::string& json, TimePoint at)
{
    // A string value escapes its quotes, so `,"evaluated_at":"` is found only as the member.
    static constexpr std::string_view kMember = R"(,"evaluated_at":")";
    static constexpr std::size_t kWidth = 20;  // 2026-11-27T21:00:00Z
    auto const member = json.rfind(kMember);
    if (member == std::string::npos) return false;
    auto const value = member + kMember.size();
    Rfc3339Text const text(at);
    if (value + kWidth >= json.size() || json[value + kWidth] != '"' || text.view().size() != kWidth) return false;
    json.replace(value, kWidth, text.view());
    return true;
}

Result<Decision> decision_from_json(boost::json::value const& v)
{
    if (!v.is_object()) return make_error_code(Errc::request_invalid);
    auto const& o = v.as_object();
    Decision d;
    d.device_id = string_or_empty(o, "device_id");
    d.allow = string_or_empty(o, "decision") == "allow";
    auto const basis = basis_from_string(string_or_empty(o, "basis"));
    auto const evaluated_at = time_or_none(o, "evaluated_at");
    auto const* controls = o.if_contains("controls");
    if (!basis || !evaluated_at || controls == nullptr || !controls->is_array())
        return make_error_code(Errc::request_invalid);
    d.basis = *basis;
    d.evaluated_at = *evaluated_at;
    d.policy_version = string_or_empty(o, "policy_version");
    if (auto const* n = o.if_contains("next_checkin_seconds"); n != nullptr && n->is_int64())
        d.next_checkin_seconds = static_cast<int>(n->as_int64());
    for (auto const& c : controls->as_array()) {
        auto control = control_from_json(c);
        if (!control) return control.error();
        d.controls.push_back(std::move(*control));
    }
    return d;
}

Result<Decision> decode_decision(std::string_view json)
{
    boost::system::error_code ec;
    auto const value = boost::json::parse(json, ec);
    if (ec) return ec;
    return decision_from_json(value);
}

}  // namespace exemptd
