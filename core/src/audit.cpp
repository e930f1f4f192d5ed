#include "exemptd/audit.hpp"

#include "exemptd/digest.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace exemptd {

std::string audit_canonical_bytes(AuditRecord const& r)
{
    boost::json::object const canonical{{"seq", r.seq},         {"at", r.at},           {"actor", r.actor},
                                        {"action", r.action},   {"subject", r.subject}, {"details", r.details}};
    return boost::json::serialize(canonical);
}

std::string audit_hash(std::string_view prev_hash, AuditRecord const& record)
{
    return sha256_hex(std::string(prev_hash) + audit_canonical_bytes(record));
}

void AuditChainChecker::feed(AuditRecord const& record)
{
    if (!check_.ok) return;
    auto const fail = [&](std::string reason) {
        check_.ok = false;
        check_.first_bad_seq = record.seq;
        check_.reason = std::move(reason);
    };
    if (record.seq != last_seq_ + 1)
        return fail("record " + std::to_string(record.seq) + " follows record " + std::to_string(last_seq_) +
                    ": records are missing or out of order");
    if (record.prev_hash != prev_hash_) return fail("prev_hash does not match the hash of the record before it");
    if (audit_hash(prev_hash_, record) != record.hash) return fail("hash does not match the record's contents");
    prev_hash_ = record.hash;
    last_seq_ = record.seq;
    ++check_.records;
}

boost::json::object audit_record_to_json(AuditRecord const& r)
{
    boost::system::error_code ec;
    auto details = boost::json::parse(r.details, ec);
    if (ec) details = r.details;  // shown as text when a tampered record no longer parses
    return {{"seq", r.seq},         {"at", r.at},         {"actor", r.actor},
            {"action", r.action},   {"subject", r.subject}, {"details", std::move(details)},
            {"prev_hash", r.prev_hash}, {"hash", r.hash}, {"details_text", r.details}};
}

boost::json::object audit_check_to_json(AuditCheck const& c)
{
    boost::json::object out{{"ok", c.ok}, {"records", c.records}};
    out["first_bad_seq"] = c.first_bad_seq ? boost::json::value(*c.first_bad_seq) : boost::json::value(nullptr);
    out["reason"] = c.ok ? "the chain is intact" : c.reason;
    return out;
}

}  // namespace exemptd
