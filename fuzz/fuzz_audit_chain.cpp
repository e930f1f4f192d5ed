// Fuzz target: the audit-chain verifier (AuditChainChecker) fed records decoded from the input.
//
// Input: one mode byte, then the API's JSON {"records": [...]} as GET /v1/audit answers it (details
// as an object or a string, details_text optional), decoded as exemptctl does. Mode bit 0 re-hashes
// the records into a valid chain first; bit 1 then tampers with the field (mode >> 2) & 7 of record
// (mode >> 5) modulo the count. Invariants: the checker agrees with an independent recomputation
// (the first record with a sequence gap, a wrong prev_hash or a wrong hash, and the count before
// it); a re-hashed chain with consecutive seqs verifies; a tampered record is the first bad one;
// and a record survives audit_record_to_json and decoding with its hash unchanged.

#include "fuzz_support.hpp"

#include "exemptd/audit.hpp"
#include "exemptd/digest.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace {

using exemptd::AuditRecord;
using exemptd::fuzz::fail;

constexpr std::size_t kMaxRecords = 256;

std::optional<std::string> text(boost::json::object const& o, char const* key)
{
    auto const* v = o.if_contains(key);
    if (v == nullptr || !v->is_string()) return std::nullopt;
    return std::string(v->as_string());
}

// One record as exemptctl reads it from the API, or nullopt.
std::optional<AuditRecord> decode(boost::json::value const& item)
{
    if (!item.is_object()) return std::nullopt;
    auto const& o = item.as_object();
    auto const* seq = o.if_contains("seq");
    auto const* details = o.if_contains("details");
    if (seq == nullptr || !seq->is_int64() || details == nullptr) return std::nullopt;
    auto at = text(o, "at"), actor = text(o, "actor"), action = text(o, "action"), subject = text(o, "subject");
    auto prev = text(o, "prev_hash"), hash = text(o, "hash");
    if (!at || !actor || !action || !subject || !prev || !hash) return std::nullopt;
    auto stored = text(o, "details_text");
    std::string details_text = stored ? *stored : details->is_string() ? std::string(details->as_string())
                                                                        : boost::json::serialize(*details);
    return AuditRecord{seq->as_int64(), *at, *actor, *action, *subject, std::move(details_text), *prev, *hash};
}

std::vector<AuditRecord> decode_all(std::string_view json)
{
    std::vector<AuditRecord> out;
    boost::system::error_code ec;
    auto const value = boost::json::parse(json, ec);
    if (ec || !value.is_object()) return out;
    auto const* records = value.as_object().if_contains("records");
    if (records == nullptr || !records->is_array()) return out;
    for (auto const& item : records->as_array()) {
        if (out.size() == kMaxRecords) break;
        if (auto r = decode(item)) out.push_back(std::move(*r));
    }
    return out;
}

void rehash(std::vector<AuditRecord>& records)
{
    std::string prev(exemptd::kGenesisHash);
    for (auto& r : records) {
        r.prev_hash = prev;
        r.hash = exemptd::audit_hash(prev, r);
        prev = r.hash;
    }
}

void tamper(AuditRecord& r, unsigned field)
{
    switch (field) {
    case 0: r.at += "x"; break;
    case 1: r.actor += "x"; break;
    case 2: r.action += "x"; break;
    case 3: r.subject += "x"; break;
    case 4: r.details += " "; break;
    case 5: r.prev_hash = r.hash; break;
    case 6: r.hash = r.prev_hash; break;
    default: ++r.seq; break;
    }
}

// The index of the first bad record by the chain's definition, or the count when all are good.
std::size_t first_bad(std::vector<AuditRecord> const& records)
{
    std::string prev(exemptd::kGenesisHash);
    std::int64_t last = 0;
    for (std::size_t i = 0; i < records.size(); ++i) {
        auto const& r = records[i];
        if (r.seq != last + 1 || r.prev_hash != prev) return i;
        if (exemptd::sha256_hex(prev + exemptd::audit_canonical_bytes(r)) != r.hash) return i;
        prev = r.hash;
        last = r.seq;
    }
    return records.size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    if (size == 0) return 0;
    unsigned const mode = data[0];
    auto records = decode_all(exemptd::fuzz::as_text(data + 1, size - 1));
    std::optional<std::size_t> tampered;
    if ((mode & 1U) != 0) {
        rehash(records);
        if ((mode & 2U) != 0 && !records.empty()) {
            tampered = (mode >> 5) % records.size();
            tamper(records[*tampered], (mode >> 2) & 7U);
        }
    }

    exemptd::AuditChainChecker checker;
    for (auto const& r : records) checker.feed(r);
    auto const& result = checker.result();
    auto const bad = first_bad(records);
    if (result.ok != (bad == records.size())) fail("the checker and the recomputation disagree on ok");
    if (result.records != static_cast<std::int64_t>(bad)) fail("the checker counted the wrong number of good records");
    if (!result.ok && (result.first_bad_seq != records[bad].seq || result.reason.empty()))
        fail("the checker named the wrong first bad record");
    if (result.ok && (result.first_bad_seq || checker.head_hash() != (records.empty() ? std::string(exemptd::kGenesisHash) : records.back().hash)))
        fail("an intact chain with a bad head");
    bool consecutive = true;
    for (std::size_t i = 0; i < records.size(); ++i) consecutive = consecutive && records[i].seq == static_cast<std::int64_t>(i + 1);
    if ((mode & 1U) != 0 && consecutive && !tampered && !result.ok) fail("a re-hashed chain does not verify");
    // Appending to a field always changes the canonical bytes, and so the hash (short of SHA-256
    // collisions); a changed seq is a gap.
    if (tampered && consecutive && (mode & 2U) != 0 && bad != *tampered && ((mode >> 2) & 7U) != 7U)
        fail("a tampered record is not the first bad one");

    for (auto const& r : records) {
        auto const again = decode(boost::json::value(exemptd::audit_record_to_json(r)));
        if (!again || exemptd::audit_hash(r.prev_hash, *again) != exemptd::audit_hash(r.prev_hash, r))
            fail("a record changed through audit_record_to_json");
    }
    (void)exemptd::audit_check_to_json(result);
    return 0;
}
