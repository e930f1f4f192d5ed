#include "exemption_view.hpp"

#include "api_answer.hpp"
#include "output.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <utility>

namespace exemptd::client {
namespace {

namespace json = boost::json;

// Wide enough for the longest label, "compensating controls:", plus two spaces.
constexpr std::size_t kLabelWidth = 24;

ClientError unexpected(std::string_view what)
{
    return client_error("unexpected exemption object from the server: " + std::string(what));
}

// An optional time field: absent or null is nullopt; anything else must be RFC 3339.
ClientResult<std::optional<TimePoint>> time_at(json::object const& obj, std::string_view key)
{
    auto const* value = obj.if_contains(key);
    if (value == nullptr || value->is_null()) return std::optional<TimePoint>{};
    auto const parsed = value->is_string() ? parse_rfc3339(value->get_string()) : std::nullopt;
    if (!parsed) return unexpected(std::string(key) + " is not an RFC 3339 time");
    return std::optional<TimePoint>{parsed};
}

// A list of strings: absent or null is empty; anything but an array of strings is refused.
ClientResult<std::vector<std::string>> strings_at(json::object const& obj, std::string_view key)
{
    std::vector<std::string> out;
    auto const* value = obj.if_contains(key);
    if (value == nullptr || value->is_null()) return out;
    if (!value->is_array()) return unexpected(std::string(key) + " is not a list");
    for (auto const& item : value->get_array()) {
        if (!item.is_string()) return unexpected(std::string(key) + " holds something other than text");
        out.emplace_back(item.get_string());
    }
    return out;
}

// The elements of the array at obj[key] that are objects; absent or null is empty.
ClientResult<std::vector<json::object const*>> objects_at(json::object const& obj, std::string_view key)
{
    std::vector<json::object const*> out;
    auto const* value = obj.if_contains(key);
    if (value == nullptr || value->is_null()) return out;
    if (!value->is_array()) return unexpected(std::string(key) + " is not a list");
    for (auto const& item : value->get_array()) {
        if (!item.is_object()) return unexpected(std::string(key) + " holds something other than objects");
        out.push_back(&item.get_object());
    }
    return out;
}

ClientResult<std::vector<Review>> reviews_at(json::object const& obj)
{
    auto items = objects_at(obj, "reviews");
    if (!items) return items.error();
    std::vector<Review> out;
    for (auto const* item : *items) {
        auto at = time_at(*item, "at");
        if (!at) return at.error();
        out.push_back({string_field(*item, "by"), at->value_or(TimePoint{}), string_field(*item, "note")});
    }
    return out;
}

ClientResult<std::vector<Renewal>> renewals_at(json::object const& obj)
{
    auto items = objects_at(obj, "renewals");
    if (!items) return items.error();
    std::vector<Renewal> out;
    for (auto const* item : *items) {
        auto at = time_at(*item, "at");
        auto previous = time_at(*item, "previous_expires_at");
        auto expires = time_at(*item, "expires_at");
        if (!at || !previous || !expires) return unexpected("a renewal has a time that is not RFC 3339");
        out.push_back({string_field(*item, "by"), at->value_or(TimePoint{}), string_field(*item, "note"),
                       previous->value_or(TimePoint{}), expires->value_or(TimePoint{})});
    }
    return out;
}

// Reads the fields that are lists or objects: controls, risk, mitigations, compensating
// controls, reviews and renewals.
std::optional<ClientError> read_structured(json::object const& obj, ExemptionRecord& e)
{
    auto controls = strings_at(obj, "controls");
    auto mitigations = strings_at(obj, "mitigations");
    auto compensating = strings_at(obj, "compensating_controls");
    for (auto const* list : {&controls, &mitigations, &compensating})
        if (!*list) return list->error();
    e.controls = std::move(*controls);
    e.mitigations = std::move(*mitigations);
    e.compensating_controls = std::move(*compensating);
    if (auto const* risk = obj.if_contains("risk"); risk != nullptr && risk->is_object()) {
        e.likelihood = string_field(risk->get_object(), "likelihood");
        e.impact = string_field(risk->get_object(), "impact");
        e.level = string_field(risk->get_object(), "level");
    }
    auto reviews = reviews_at(obj);
    if (!reviews) return reviews.error();
    auto renewals = renewals_at(obj);
    if (!renewals) return renewals.error();
    e.reviews = std::move(*reviews);
    e.renewals = std::move(*renewals);
    return std::nullopt;
}

// Reads every time field into `e`.
std::optional<ClientError> read_times(json::object const& obj, ExemptionRecord& e)
{
    std::pair<std::string_view, std::optional<TimePoint>*> const fields[] = {
        {"requested_at", &e.requested_at}, {"approved_at", &e.approved_at},
        {"rejected_at", &e.rejected_at},   {"expires_at", &e.expires_at},
        {"next_review_at", &e.next_review_at}, {"revoked_at", &e.revoked_at}};
    for (auto const& [key, target] : fields) {
        auto value = time_at(obj, key);
        if (!value) return value.error();
        *target = *value;
    }
    return std::nullopt;
}

void read_texts(json::object const& obj, ExemptionRecord& e)
{
    e.subject = string_field(obj, "subject");
    e.justification = string_field(obj, "justification");
    e.evidence = string_field(obj, "evidence");
    e.agreement_id = string_field(obj, "agreement_id");
    e.requested_by = string_field(obj, "requested_by");
    e.approved_by = string_field(obj, "approved_by");
    e.rejected_by = string_field(obj, "rejected_by");
    e.decision_note = string_field(obj, "decision_note");
    e.revoked_by = string_field(obj, "revoked_by");
    e.revoked_reason = string_field(obj, "revoked_reason");
    auto const* overdue = obj.if_contains("review_overdue");
    e.review_overdue = overdue != nullptr && overdue->is_bool() && overdue->get_bool();
}

std::string time_text(std::optional<TimePoint> t)
{
    return t ? format_rfc3339(*t) : std::string();
}

// "label:" padded to kLabelWidth, then the value ("-" when empty); every further line of the
// value is indented to the same column.
std::string field(std::string_view label, std::string const& value)
{
    std::string line = std::string(label) + ":";
    line.append(line.size() < kLabelWidth ? kLabelWidth - line.size() : 1, ' ');
    std::string const indent(kLabelWidth, ' ');
    std::string out = line;
    for (char const c : or_dash(value)) {
        out.push_back(c);
        if (c == '\n') out += indent;
    }
    return out + "\n";
}

std::string join(std::vector<std::string> const& items, std::string_view separator)
{
    std::string out;
    for (auto const& item : items) out += (out.empty() ? "" : std::string(separator)) + item;
    return out;
}

// "TIME by WHO", or "" when there is no time.
std::string when_by(std::optional<TimePoint> at, std::string const& by)
{
    if (!at) return {};
    return format_rfc3339(*at) + (by.empty() ? "" : " by " + by);
}

std::string risk_text(ExemptionRecord const& e)
{
    if (e.level.empty()) return {};
    return e.level + " (likelihood " + or_dash(e.likelihood) + ", impact " + or_dash(e.impact) + ")";
}

std::string mitigations_text(std::vector<std::string> const& mitigations)
{
    std::vector<std::string> lines;
    for (auto const& m : mitigations) lines.push_back("- " + m);
    return join(lines, "\n");
}

std::string compensating_text(std::vector<std::string> const& controls)
{
    if (controls.empty()) return {};
    return join(controls, ", ") + " (must pass for the exemption to cover)";
}

std::string next_review_text(ExemptionRecord const& e)
{
    if (!e.next_review_at || e.state != "active") return {};
    return format_rfc3339(*e.next_review_at) + (e.review_overdue ? " (overdue)" : "");
}

std::string reviews_text(std::vector<Review> const& reviews)
{
    std::vector<std::string> lines;
    for (auto const& r : reviews)
        lines.push_back(when_by(r.at, r.by) + (r.note.empty() ? "" : ": " + r.note));
    return join(lines, "\n");
}

std::string renewals_text(std::vector<Renewal> const& renewals)
{
    std::vector<std::string> lines;
    for (auto const& r : renewals)
        lines.push_back(when_by(r.at, r.by) + ": expiry " + format_rfc3339(r.previous_expires_at) + " -> " +
                        format_rfc3339(r.expires_at) + (r.note.empty() ? "" : ": " + r.note));
    return join(lines, "\n");
}

std::string decision_text(ExemptionRecord const& e)
{
    if (e.rejected_at) return field("rejected", when_by(e.rejected_at, e.rejected_by));
    return field("approved", when_by(e.approved_at, e.approved_by));
}

std::string revocation_text(ExemptionRecord const& e)
{
    if (!e.revoked_at) return {};
    return when_by(e.revoked_at, e.revoked_by) + (e.revoked_reason.empty() ? "" : ": " + e.revoked_reason);
}

bool is_unreserved(char c) noexcept
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

std::string percent_encode(std::string_view text)
{
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (char const c : text) {
        if (is_unreserved(c)) {
            out.push_back(c);
            continue;
        }
        auto const byte = static_cast<unsigned char>(c);
        out += {'%', kHex[byte >> 4], kHex[byte & 0x0F]};
    }
    return out;
}

}  // namespace

ClientResult<ExemptionRecord> exemption_from_json(json::value const& value)
{
    if (!value.is_object()) return unexpected("not an object");
    auto const& obj = value.get_object();
    ExemptionRecord e;
    e.id = string_field(obj, "id");
    if (e.id.empty()) return unexpected("no id");
    e.state = string_field(obj, "state");
    if (e.state.empty()) return unexpected("no state");
    read_texts(obj, e);
    if (auto error = read_structured(obj, e)) return std::move(*error);
    if (auto error = read_times(obj, e)) return std::move(*error);
    return e;
}

ClientResult<ExemptionRecord> exemption_from_body(std::string_view body)
{
    auto value = parse_answer_json(body);
    if (!value) return value.error();
    return exemption_from_json(*value);
}

ClientResult<std::vector<ExemptionRecord>> exemption_list_from_body(std::string_view body)
{
    return list_from_body<ExemptionRecord>(body, "exemptions", unexpected("the answer has no \"exemptions\" list"),
                                           [](boost::json::value const& item) { return exemption_from_json(item); });
}

std::string format_exemption_table(std::vector<ExemptionRecord> const& exemptions)
{
    Table table({"ID", "SUBJECT", "CONTROLS", "RISK", "STATE", "EXPIRES", "NEXT REVIEW"});
    for (auto const& e : exemptions)
        table.add_row({e.id, e.subject, or_dash(join(e.controls, ",")), or_dash(e.level), e.state,
                       or_dash(time_text(e.expires_at)), or_dash(next_review_text(e))});
    return table.render();
}

std::string format_exemption(ExemptionRecord const& e)
{
    std::string out = field("id", e.id);
    out += field("state", e.state);
    out += field("subject", e.subject);
    out += field("controls", join(e.controls, ", "));
    out += field("justification", e.justification);
    out += field("risk", risk_text(e));
    out += field("mitigations", mitigations_text(e.mitigations));
    out += field("compensating controls", compensating_text(e.compensating_controls));
    out += field("evidence", e.evidence);
    out += field("agreement", e.agreement_id);
    out += field("requested", when_by(e.requested_at, e.requested_by));
    out += decision_text(e);
    if (!e.decision_note.empty()) out += field("decision note", e.decision_note);
    out += field("expires", time_text(e.expires_at));
    out += field("next review", next_review_text(e));
    out += field("reviews", reviews_text(e.reviews));
    out += field("renewals", renewals_text(e.renewals));
    return out + field("revoked", revocation_text(e));
}

ClientResult<std::string> resolve_expiry(std::string const& expires_at, std::string const& expires_in, TimePoint now)
{
    if (!expires_at.empty() && !expires_in.empty())
        return client_error("give either --expires-at or --expires-in, not both");
    if (!expires_at.empty()) {
        auto const parsed = parse_rfc3339(expires_at);
        if (!parsed)
            return client_error("invalid --expires-at \"" + expires_at +
                                "\": use an RFC 3339 time such as 2026-12-31T00:00:00Z");
        return format_rfc3339(*parsed);
    }
    if (expires_in.empty()) return client_error("--expires-at or --expires-in is required");
    auto const duration = parse_duration(expires_in);
    if (!duration)
        return client_error("invalid --expires-in \"" + expires_in + "\": use a duration such as 30d, 12h, 90m or 45s");
    return format_rfc3339(now + *duration);
}

std::string exemption_request_body(ExemptionRequest const& r)
{
    json::object body{{"subject", r.subject},
                      {"controls", json::array(r.controls.begin(), r.controls.end())},
                      {"justification", r.justification},
                      {"risk", {{"likelihood", r.likelihood}, {"impact", r.impact}}},
                      {"mitigations", json::array(r.mitigations.begin(), r.mitigations.end())},
                      {"compensating_controls",
                       json::array(r.compensating_controls.begin(), r.compensating_controls.end())},
                      {"expires_at", r.expires_at}};
    if (!r.evidence.empty()) body["evidence"] = r.evidence;
    if (!r.agreement_id.empty()) body["agreement_id"] = r.agreement_id;
    return json::serialize(body);
}

std::string exemption_list_query(ExemptionFilter const& filter)
{
    std::pair<std::string_view, std::string const*> const params[] = {{"subject", &filter.subject},
                                                                      {"control", &filter.control},
                                                                      {"state", &filter.state},
                                                                      {"expiring_within", &filter.expiring_within}};
    std::string query;
    for (auto const& [key, value] : params) {
        if (value->empty()) continue;
        query += query.empty() ? '?' : '&';
        query.append(key).append("=").append(percent_encode(*value));
    }
    return query;
}

bool is_plausible_exemption_id(std::string_view id) noexcept
{
    if (id.empty() || id.size() > 64) return false;
    for (char const c : id)
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return true;
}

}  // namespace exemptd::client
