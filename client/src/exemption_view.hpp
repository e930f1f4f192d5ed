#pragma once
// Reading the daemon's exemption objects (SPEC §6, /v1/exemptions) and showing them to people, plus
// the pure helpers behind `exemptctl exemption …`: expiry flags, request bodies and query strings.

#include "client_error.hpp"

#include "exemptd/exemption.hpp"
#include "exemptd/time.hpp"

#include <boost/json/fwd.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace exemptd::client {

// An exemption as the API shows it (SPEC §6). Missing or null optional strings read as empty and
// missing or null times as nullopt; `state` is the effective state the server computed.
struct ExemptionRecord {
    std::string id;
    std::string subject;
    std::vector<std::string> controls;
    std::string justification;
    std::string likelihood;
    std::string impact;
    std::string level;
    std::vector<std::string> mitigations;
    std::vector<std::string> compensating_controls;
    std::string evidence;
    std::string agreement_id;
    std::string requested_by;
    std::optional<TimePoint> requested_at;
    std::string approved_by;
    std::optional<TimePoint> approved_at;
    std::string rejected_by;
    std::optional<TimePoint> rejected_at;
    std::string decision_note;
    std::optional<TimePoint> expires_at;
    std::optional<TimePoint> next_review_at;
    std::vector<Review> reviews;
    std::vector<Renewal> renewals;
    std::string revoked_by;
    std::optional<TimePoint> revoked_at;
    std::string revoked_reason;
    std::string state;
    bool review_overdue = false;
};

// Reads one exemption object. id and state are required, times must be RFC 3339 (or null), lists
// must be arrays of strings. Fails with "unexpected exemption object from the server: reason". Pure.
[[nodiscard]] ClientResult<ExemptionRecord> exemption_from_json(boost::json::value const& value);

// Reads a body holding one exemption object. Pure.
[[nodiscard]] ClientResult<ExemptionRecord> exemption_from_body(std::string_view body);

// Reads a body {"exemptions": [...]}. Pure.
[[nodiscard]] ClientResult<std::vector<ExemptionRecord>> exemption_list_from_body(std::string_view body);

// The table of `exemptctl exemption list`: ID, SUBJECT, CONTROLS (comma-separated), RISK (the
// level), STATE, EXPIRES, NEXT REVIEW ("-" unless active; "TIME (overdue)" when the server flags
// the review as overdue). Pure.
[[nodiscard]] std::string format_exemption_table(std::vector<ExemptionRecord> const& exemptions);

// The `exemptctl exemption show` text, one "label: value" line per field with the id first, then
// the reviews and renewals one per line. Pure.
[[nodiscard]] std::string format_exemption(ExemptionRecord const& exemption);

// The expires_at to send for `--expires-at TIME` or `--expires-in DURATION` (exactly one of them
// non-empty): TIME normalised to "YYYY-MM-DDTHH:MM:SSZ", or now + DURATION ("30d", "12h", "90m",
// "45s"). Fails with a sentence naming the flag when the value does not parse or both or neither
// is given. Pure.
[[nodiscard]] ClientResult<std::string> resolve_expiry(std::string const& expires_at, std::string const& expires_in,
                                                       TimePoint now);

// What `exemptctl exemption request` sends (SPEC §6 POST /v1/exemptions).
struct ExemptionRequest {
    std::string subject;
    std::vector<std::string> controls;
    std::string justification;
    std::string likelihood;
    std::string impact;
    std::vector<std::string> mitigations;
    std::vector<std::string> compensating_controls;
    std::string evidence;      // left out when empty
    std::string agreement_id;  // left out when empty
    std::string expires_at;    // RFC 3339
};

// The JSON body of POST /v1/exemptions for `request`. Pure.
[[nodiscard]] std::string exemption_request_body(ExemptionRequest const& request);

// The filters of `exemptctl exemption list`; empty ones are left out of the query.
struct ExemptionFilter {
    std::string subject;
    std::string control;
    std::string state;
    std::string expiring_within;
};

// "?subject=…&control=…&state=…&expiring_within=…" with the values percent-encoded, or "" when no
// filter is set. Pure.
[[nodiscard]] std::string exemption_list_query(ExemptionFilter const& filter);

// True for an id that can go into a URL path: 1-64 characters of A-Z a-z 0-9 and '-'. Whether
// such an exemption exists is the server's to say (404). Pure.
[[nodiscard]] bool is_plausible_exemption_id(std::string_view id) noexcept;

}  // namespace exemptd::client
