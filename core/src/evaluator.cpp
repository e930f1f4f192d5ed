#include "exemptd/evaluator.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>

namespace exemptd {
namespace {

std::optional<double> as_number(FactValue const& v)
{
    if (auto const* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
    if (auto const* d = std::get_if<double>(&v)) return *d;
    return std::nullopt;
}

bool fact_equals(FactValue const& seen, FactValue const& wanted)
{
    auto const a = as_number(seen), b = as_number(wanted);
    if (a && b) return *a == *b;
    return seen == wanted;
}

std::string format_number(double d)
{
    return fact_to_string(FactValue{d});
}

// Fills pass/reason/observed for a fact check.
void check_fact(Check const& check, Facts const& facts, ControlResult& out)
{
    auto const it = facts.find(check.fact);
    if (it == facts.end()) {
        out.reason = check.fact + " was not reported";
        return;
    }
    out.observed = fact_to_string(it->second);
    if (check.equals && !fact_equals(it->second, *check.equals)) {
        out.reason = check.fact + " is " + out.observed + ", policy requires " + fact_to_string(*check.equals);
        return;
    }
    auto const value = as_number(it->second);
    if ((check.min || check.max) && !value) {
        out.reason = check.fact + " is " + out.observed + ", policy requires a number";
        return;
    }
    if (check.min && *value < *check.min) {
        out.reason = check.fact + " is " + out.observed + ", policy requires at least " + format_number(*check.min);
        return;
    }
    if (check.max && *value > *check.max) {
        out.reason = check.fact + " is " + out.observed + ", policy requires at most " + format_number(*check.max);
        return;
    }
    out.pass = true;
}

ControlResult check_control(Control const& control, DeviceFacts const& device)
{
    ControlResult out;
    out.id = control.id;
    out.title = control.title;
    Check const& check = *control.check;
    if (check.enrolled) {
        out.observed = device.enrolled ? "enrolled" : "not enrolled";
        out.pass = device.enrolled == *check.enrolled;
        if (!out.pass) out.reason = device.enrolled ? "device is enrolled in MDM" : "device is not enrolled in MDM";
        return out;
    }
    check_fact(check, device.facts, out);
    return out;
}

bool passes(std::vector<ControlResult> const& results, std::string const& id)
{
    return std::any_of(results.begin(), results.end(), [&](auto const& r) { return r.id == id && r.pass; });
}

// The first exemption that covers a failure of `control_id` at `now`, or nullptr.
CoveringExemption const* find_cover(std::span<CoveringExemption const> exemptions, std::string const& control_id,
                                    std::vector<ControlResult> const& results, TimePoint now)
{
    for (auto const& ex : exemptions) {
        if (now >= ex.expires_at) continue;
        if (std::find(ex.controls.begin(), ex.controls.end(), control_id) == ex.controls.end()) continue;
        bool const compensated = std::all_of(ex.compensating_controls.begin(), ex.compensating_controls.end(),
                                             [&](auto const& id) { return passes(results, id); });
        if (compensated) return &ex;
    }
    return nullptr;
}

// Exactly the same fact: its type and value, and a double's sign of zero too (a decision shows the
// value it saw: 0 and -0 are shown apart).
bool same_fact(FactValue const& a, FactValue const& b)
{
    if (auto const* x = std::get_if<double>(&a)) {
        auto const* y = std::get_if<double>(&b);
        return y != nullptr && std::bit_cast<std::uint64_t>(*x) == std::bit_cast<std::uint64_t>(*y);
    }
    return a == b;
}

bool same_facts(Facts const& a, Facts const& b)
{
    return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                      [](auto const& x, auto const& y) { return x.first == y.first && same_fact(x.second, y.second); });
}

}  // namespace

bool Evaluate::same_input(Facts const& a, Facts const& b) const
{
    if (!policy_ || !policy_->checked_facts) return same_facts(a, b);
    for (auto const& name : *policy_->checked_facts) {
        auto const x = a.find(name);
        auto const y = b.find(name);
        if ((x == a.end()) != (y == b.end())) return false;
        if (x != a.end() && !same_fact(x->second, y->second)) return false;
    }
    return true;
}

Decision evaluate(Policy const& policy, DeviceFacts const& device, std::span<CoveringExemption const> exemptions,
                  TimePoint now)
{
    Decision decision;
    decision.device_id = device.device_id;
    decision.policy_version = policy.version;
    decision.evaluated_at = now;
    decision.next_checkin_seconds = policy.checkin.interval_seconds;
    std::vector<Control const*> applied;
    decision.controls.reserve(policy.controls.size());
    applied.reserve(policy.controls.size());
    for (auto const& control : policy.controls) {
        if (control.applies_to != SubjectKind::device) continue;
        decision.controls.push_back(check_control(control, device));
        applied.push_back(&control);
    }
    bool uncovered = false, covered = false, in_grace = false;
    for (std::size_t i = 0; i < applied.size(); ++i) {
        ControlResult& result = decision.controls[i];
        if (result.pass) continue;
        auto const since = device.failing_since.find(result.id);
        result.failing_since = since == device.failing_since.end() ? now : since->second;
        if (auto const* cover = find_cover(exemptions, result.id, decision.controls, now)) {
            result.covered_by = cover->id;
            covered = true;
            continue;
        }
        auto const grace_end = *result.failing_since + std::chrono::hours{applied[i]->grace_hours};
        if (now < grace_end) {
            result.grace_until = grace_end;
            in_grace = true;
            continue;
        }
        uncovered = true;
    }
    decision.allow = !uncovered;
    decision.basis = uncovered ? Basis::noncompliant : in_grace ? Basis::grace : covered ? Basis::exempted : Basis::compliant;
    // The only comparisons with `now` above: an exemption's expiry and a grace's end.
    decision.stable_until = TimePoint::max();
    for (auto const& ex : exemptions) {
        if (ex.expires_at > now) decision.stable_until = std::min(decision.stable_until, ex.expires_at);
    }
    for (auto const& c : decision.controls) {
        if (c.grace_until) decision.stable_until = std::min(decision.stable_until, *c.grace_until);
    }
    return decision;
}

std::map<std::string, TimePoint> failure_streaks(Decision const& decision)
{
    std::map<std::string, TimePoint> out;
    for (auto const& c : decision.controls) {
        if (!c.pass && c.failing_since) out.emplace(c.id, *c.failing_since);
    }
    return out;
}

Evaluate policy_evaluator(std::shared_ptr<Policy const> policy, TimePoint now)
{
    // Evaluate owns the policy, which the function may then point to: with a pointer and a time
    // it is small enough for std::function to hold without an allocation (a check-in makes one).
    Policy const* p = policy.get();
    auto function = [policy = p, now](DeviceFacts const& facts, std::vector<Exemption> const& active) {
        std::vector<CoveringExemption> covers;
        for (auto const& e : active) {
            CoveringExemption cover{e.id, {}, e.compensating_controls, e.expires_at};
            auto const agreement = facts.agreements.find(e.agreement_id);
            AgreementRecord const* backing = agreement == facts.agreements.end() ? nullptr : &agreement->second;
            for (auto const& id : e.controls) {
                auto const* control = policy->find_control(id);
                if (control == nullptr) continue;
                if (!control->requires_agreement.empty() &&
                    check_agreement_binding(e, control->requires_agreement, backing, facts.owner))
                    continue;
                cover.controls.push_back(id);
            }
            covers.push_back(std::move(cover));
        }
        return evaluate(*policy, facts, covers, now);
    };
    return Evaluate(std::move(function), std::move(policy));
}

}  // namespace exemptd
