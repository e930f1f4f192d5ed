#pragma once
// The tamper-evident audit trail (SPEC §8): each record's hash covers the previous record's hash
// and the record's canonical bytes, so editing, deleting, inserting or reordering records breaks
// the chain at the first record touched.

#include "exemptd/time.hpp"

#include <boost/json/fwd.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace exemptd {

// The hash that precedes the first record.
inline constexpr std::string_view kGenesisHash = "0000000000000000000000000000000000000000000000000000000000000000";

struct AuditRecord {
    std::int64_t seq = 0;
    std::string at;       // RFC 3339, as stored
    std::string actor;
    std::string action;
    std::string subject;
    std::string details;  // a JSON object, as stored
    std::string prev_hash;
    std::string hash;
};

// The canonical bytes of a record: a JSON object of seq, at, actor, action, subject and details
// (the stored details text), in that order, without whitespace. Thread-safe.
[[nodiscard]] std::string audit_canonical_bytes(AuditRecord const& record);

// SHA-256 (hex) over prev_hash followed by the canonical bytes. Thread-safe.
[[nodiscard]] std::string audit_hash(std::string_view prev_hash, AuditRecord const& record);

// The outcome of checking a chain.
struct AuditCheck {
    bool ok = true;
    std::int64_t records = 0;
    std::optional<std::int64_t> first_bad_seq;
    std::string reason;
};

// Checks records in order, continuing from `state` (start with an empty check and
// kGenesisHash); feed records in batches to check a long chain in constant memory. Stops at
// the first bad record: a sequence gap, a prev_hash that is not the previous hash, or a hash
// that does not match the record. Thread-safe.
class AuditChainChecker {
public:
    void feed(AuditRecord const& record);
    [[nodiscard]] AuditCheck const& result() const noexcept { return check_; }
    [[nodiscard]] std::string const& head_hash() const noexcept { return prev_hash_; }
    [[nodiscard]] std::int64_t last_seq() const noexcept { return last_seq_; }

private:
    AuditCheck check_;
    std::string prev_hash_{kGenesisHash};
    std::int64_t last_seq_ = 0;
};

// The API's JSON for a record: details embedded as an object, and details_text the exact stored
// bytes that the hash covers (so a client can recompute the chain independently). Thread-safe.
[[nodiscard]] boost::json::object audit_record_to_json(AuditRecord const& record);
[[nodiscard]] boost::json::object audit_check_to_json(AuditCheck const& check);

}  // namespace exemptd
