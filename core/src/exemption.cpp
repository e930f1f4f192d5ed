#include "exemptd/exemption.hpp"

#include "exemptd/json_reader.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace exemptd {
namespace {

int rank(RiskLevel r) noexcept
{
    return static_cast<int>(r) + 1;
}

boost::json::array to_array(std::vector<std::string> const& items)
{
    return boost::json::array(items.begin(), items.end());
}

boost::json::value optional_time(std::optional<TimePoint> t)
{
    return t ? boost::json::value(format_rfc3339(*t)) : boost::json::value(nullptr);
}

boost::json::value optional_text(std::string const& s)
{
    return s.empty() ? boost::json::value(nullptr) : boost::json::value(s);
}

boost::json::object base_json(Exemption const& e)
{
    boost::json::array reviews, renewals;
    for (auto const& r : e.reviews) reviews.push_back({{"by", r.by}, {"at", format_rfc3339(r.at)}, {"note", r.note}});
    for (auto const& r : e.renewals)
        renewals.push_back({{"by", r.by},
                            {"at", format_rfc3339(r.at)},
                            {"note", r.note},
                            {"previous_expires_at", format_rfc3339(r.previous_expires_at)},
                            {"expires_at", format_rfc3339(r.expires_at)}});
    bool const approved = e.decided_at && e.state != ExemptionState::rejected && e.state != ExemptionState::pending;
    bool const rejected = e.state == ExemptionState::rejected;
    return {{"id", e.id},
            {"subject", e.subject},
            {"controls", to_array(e.controls)},
            {"justification", e.justification},
            {"risk", {{"likelihood", to_string(e.likelihood)}, {"impact", to_string(e.impact)}, {"level", to_string(e.level)}}},
            {"mitigations", to_array(e.mitigations)},
            {"compensating_controls", to_array(e.compensating_controls)},
            {"evidence", e.evidence},
            {"agreement_id", optional_text(e.agreement_id)},
            {"requested_by", e.requested_by},
            {"requested_at", format_rfc3339(e.requested_at)},
            {"approved_by", approved ? optional_text(e.decided_by) : nullptr},
            {"approved_at", approved ? optional_time(e.decided_at) : nullptr},
            {"rejected_by", rejected ? optional_text(e.decided_by) : nullptr},
            {"rejected_at", rejected ? optional_time(e.decided_at) : nullptr},
            {"decision_note", optional_text(e.decision_note)},
            {"expires_at", format_rfc3339(e.expires_at)},
            {"next_review_at", optional_time(e.next_review_at)},
            {"reviews", std::move(reviews)},
            {"renewals", std::move(renewals)},
            {"revoked_by", optional_text(e.revoked_by)},
            {"revoked_at", optional_time(e.revoked_at)},
            {"revoked_reason", optional_text(e.revoked_reason)},
            {"state", to_string(e.state)}};
}

// Helpers that read the storage form; a missing or mistyped field reads as empty.
struct RecordReader {
    boost::json::object const& o;

    std::string text(std::string_view key) const { return string_or_empty(o, key); }
    std::optional<TimePoint> time(std::string_view key) const { return parse_rfc3339(text(key)); }
    std::vector<std::string> list(std::string_view key) const
    {
        std::vector<std::string> out;
        auto const* v = o.if_contains(key);
        if (v == nullptr || !v->is_array()) return out;
        for (auto const& item : v->as_array()) {
            if (item.is_string()) out.emplace_back(item.as_string());
        }
        return out;
    }
    boost::json::array const* array(std::string_view key) const
    {
        auto const* v = o.if_contains(key);
        return v != nullptr && v->is_array() ? &v->as_array() : nullptr;
    }
};

void read_history(RecordReader const& r, Exemption& e)
{
    if (auto const* reviews = r.array("reviews")) {
        for (auto const& item : *reviews) {
            if (!item.is_object()) continue;
            RecordReader const rr{item.as_object()};
            e.reviews.push_back({rr.text("by"), rr.time("at").value_or(TimePoint{}), rr.text("note")});
        }
    }
    if (auto const* renewals = r.array("renewals")) {
        for (auto const& item : *renewals) {
            if (!item.is_object()) continue;
            RecordReader const rr{item.as_object()};
            e.renewals.push_back({rr.text("by"), rr.time("at").value_or(TimePoint{}), rr.text("note"),
                                  rr.time("previous_expires_at").value_or(TimePoint{}),
                                  rr.time("expires_at").value_or(TimePoint{})});
        }
    }
}

}  // namespace

std::string_view to_string(ExemptionState state) noexcept
{
    switch (state) {
    case ExemptionState::pending: return "pending";
    case ExemptionState::active: return "active";
    case ExemptionState::rejected: return "rejected";
    case ExemptionState::expired: return "expired";
    case ExemptionState::revoked: return "revoked";
    }
    return "pending";
}

std::optional<ExemptionState> exemption_state_from_string(std::string_view text) noexcept
{
    for (auto const s : {ExemptionState::pending, ExemptionState::active, ExemptionState::rejected,
                         ExemptionState::expired, ExemptionState::revoked}) {
        if (to_string(s) == text) return s;
    }
    return std::nullopt;
}

RiskLevel risk_level(RiskLevel likelihood, RiskLevel impact) noexcept
{
    int const product = rank(likelihood) * rank(impact);
    if (product <= 2) return RiskLevel::low;
    if (product <= 4) return RiskLevel::medium;
    if (product <= 6) return RiskLevel::high;
    return RiskLevel::critical;
}

std::optional<Subject> parse_subject(std::string_view text)
{
    auto const colon = text.find(':');
    if (colon == std::string_view::npos || colon + 1 >= text.size()) return std::nullopt;
    auto const kind = text.substr(0, colon);
    std::string id(text.substr(colon + 1));
    if (kind == "device") return Subject{SubjectKind::device, std::move(id)};
    if (kind == "user") return Subject{SubjectKind::user, std::move(id)};
    if (kind == "account") return Subject{SubjectKind::account, std::move(id)};
    return std::nullopt;
}

ExemptionState effective_state(Exemption const& e, TimePoint now) noexcept
{
    bool const open = e.state == ExemptionState::active || e.state == ExemptionState::pending;
    return open && now >= e.expires_at ? ExemptionState::expired : e.state;
}

bool review_overdue(Exemption const& e, TimePoint now) noexcept
{
    return effective_state(e, now) == ExemptionState::active && e.next_review_at && now >= *e.next_review_at;
}

boost::json::object exemption_to_json(Exemption const& e, TimePoint now)
{
    auto out = base_json(e);
    out["state"] = to_string(effective_state(e, now));
    out["review_overdue"] = review_overdue(e, now);
    return out;
}

std::string encode_exemption_record(Exemption const& e)
{
    auto record = base_json(e);
    // The storage form keeps the decider whatever the outcome.
    record["decided_by"] = e.decided_by;
    record["decided_at"] = optional_time(e.decided_at);
    record["overdue_review_flagged"] = optional_time(e.overdue_review_flagged);
    return boost::json::serialize(record);
}

Result<Exemption> decode_exemption_record(std::string_view json)
{
    boost::system::error_code ec;
    auto const value = boost::json::parse(json, ec);
    if (ec) return ec;
    if (!value.is_object()) return make_error_code(Errc::storage_failure);
    RecordReader const r{value.as_object()};
    Exemption e;
    e.id = r.text("id");
    e.subject = r.text("subject");
    e.controls = r.list("controls");
    e.justification = r.text("justification");
    if (auto const* risk = value.as_object().if_contains("risk"); risk != nullptr && risk->is_object()) {
        RecordReader const rr{risk->as_object()};
        e.likelihood = risk_level_from_string(rr.text("likelihood")).value_or(RiskLevel::high);
        e.impact = risk_level_from_string(rr.text("impact")).value_or(RiskLevel::high);
        e.level = risk_level_from_string(rr.text("level")).value_or(RiskLevel::critical);
    }
    e.mitigations = r.list("mitigations");
    e.compensating_controls = r.list("compensating_controls");
    e.evidence = r.text("evidence");
    e.agreement_id = r.text("agreement_id");
    e.requested_by = r.text("requested_by");
    e.requested_at = r.time("requested_at").value_or(TimePoint{});
    e.decided_by = r.text("decided_by");
    e.decided_at = r.time("decided_at");
    e.decision_note = r.text("decision_note");
    e.expires_at = r.time("expires_at").value_or(TimePoint{});
    e.next_review_at = r.time("next_review_at");
    read_history(r, e);
    e.revoked_by = r.text("revoked_by");
    e.revoked_at = r.time("revoked_at");
    e.revoked_reason = r.text("revoked_reason");
    e.overdue_review_flagged = r.time("overdue_review_flagged");
    auto const state = exemption_state_from_string(r.text("state"));
    if (e.id.empty() || !state) return make_error_code(Errc::storage_failure);
    e.state = *state;
    return e;
}

}  // namespace exemptd
