#pragma once
// The narrow storage interface behind the daemon. SQLite implements it today; a PostgreSQL
// backend is an addition behind the same interface.

#include "exemptd/audit.hpp"
#include "exemptd/decision.hpp"
#include "exemptd/device.hpp"
#include "exemptd/error.hpp"
#include "exemptd/evaluator.hpp"
#include "exemptd/exemption.hpp"
#include "exemptd/histogram.hpp"
#include "exemptd/mdm_import.hpp"
#include "exemptd/posture.hpp"
#include "exemptd/time.hpp"

#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

namespace exemptd {

// Overlapping filters of GET /v1/devices (SPEC §4).
enum class DeviceState { any, allowed, denied, exempted, unenrolled, stale };

struct DeviceQuery {
    DeviceState state = DeviceState::any;
    TimePoint stale_before{};  // used by DeviceState::stale
    std::string after{};       // only devices whose id sorts after this one (paging)
    std::size_t limit = 0;     // at most this many; 0: no limit
};

// How an enrollment write went.
struct EnrollmentOutcome {
    DeviceRecord device;
    bool created = false;  // the registry did not know the device before
    bool changed = false;  // false when the same enrollment was already recorded
};

// An audit record to append (SPEC §8); the store assigns seq, prev_hash and hash.
struct AuditEvent {
    TimePoint at{};
    std::string actor;    // an email, "device:<id>" or "exemptd"
    std::string action;   // "policy.loaded", "device.enrolled", ...
    std::string subject;  // "device:<id>", "exemption:EX-000001", "policy", ...
    std::string details;  // a JSON object
};

// How a bulk enrollment import went: each row either created a registry entry, changed one, or
// matched what was recorded.
struct ImportOutcome {
    std::int64_t rows = 0;
    std::int64_t created = 0;
    std::int64_t changed = 0;
    std::int64_t unchanged = 0;
    std::int64_t reevaluated = 0;  // changed devices that had checked in, whose decision was refreshed
};

// Who imported what, for the one audit record of an import.
struct ImportAudit {
    std::string actor;
    TimePoint at{};
    std::string file_sha256;  // hex SHA-256 of the CSV as received
};

// A check-in's decision as its answer needs it: the SPEC JSON (encode_decision), encoded once for
// the database and the answer alike, and what the daemon counts and logs. The Decision itself
// stays on the store's thread, which made it: freeing its strings on the thread that answers cost
// more than the rest of its journey.
struct EncodedDecision {
    std::string json;
    std::string device_id;
    bool allow = false;
    Basis basis = Basis::noncompliant;
};

// Receives a check-in's result, or why it was refused.
using CheckinDone = std::function<void(ApiResult<EncodedDecision>)>;

// Computes an exemption's next state from its current one, or the rule it breaks.
using Transition = std::function<ApiResult<Exemption>(Exemption const& current)>;

// Filters of GET /v1/exemptions; empty fields do not filter.
struct ExemptionQuery {
    std::string subject;
    std::string control;
    std::optional<ExemptionState> state;          // the effective state at `now`
    std::optional<TimePoint> expiring_before;     // active and expiring at or before this time
    TimePoint now{};
};

// The register's open exemptions by effective state, for monitoring.
struct ExemptionCounts {
    std::int64_t pending = 0;
    std::int64_t active = 0;
    std::int64_t expiring = 0;  // active and expiring at or before the given instant
};

// What a sweep did.
struct SweepResult {
    int expired = 0;
    int reviews_overdue = 0;
    int redecided = 0;  // devices whose decision was due to change with time, decided again
};

class Store {
public:
    virtual ~Store() = default;

    // Records `enrollment` for `device_id` (creating the device if needed), audits the change and
    // re-evaluates the device's decision. Answers changed=false, and writes nothing, when the same
    // values are already recorded. Thread-safe.
    [[nodiscard]] virtual Result<EnrollmentOutcome> put_enrollment(std::string const& device_id,
                                                                   Enrollment const& enrollment,
                                                                   Evaluate const& evaluate) = 0;

    // Stores a new pending exemption under the next id (EX-000001, ...) and audits the request.
    // Thread-safe.
    [[nodiscard]] virtual Result<Exemption> create_exemption(Exemption draft) = 0;

    // In one transaction: reads exemption `id`, applies `transition`, stores the result, audits
    // it as `action` by `actor`, and re-evaluates the subject device's decision. 404 for an
    // unknown id; the transition's error unchanged (nothing is written). Thread-safe.
    [[nodiscard]] virtual ApiResult<Exemption> transition_exemption(std::string const& id, std::string const& action,
                                                                    std::string const& actor, TimePoint now,
                                                                    Transition const& transition,
                                                                    Evaluate const& evaluate) = 0;

    // The exemption, or Errc::not_found. Thread-safe.
    [[nodiscard]] virtual Result<Exemption> get_exemption(std::string const& id) const = 0;

    // Exemptions matching `query`, ordered by id. Thread-safe.
    [[nodiscard]] virtual Result<std::vector<Exemption>> list_exemptions(ExemptionQuery const& query) const = 0;

    // Marks `expired` (and audits) every pending or active exemption whose expiry has passed,
    // re-evaluating the devices they covered, and audits each review that has become overdue
    // (once per review date). Thread-safe.
    [[nodiscard]] virtual Result<SweepResult> sweep(TimePoint now, Evaluate const& evaluate) = 0;

    // The device's decision evaluated afresh at `now` from its latest facts, without storing
    // it; not_found for an unknown device, nullopt when it has never checked in. Thread-safe.
    [[nodiscard]] virtual Result<std::optional<Decision>> current_decision(std::string const& device_id,
                                                                           Evaluate const& evaluate) const = 0;

    // Appends one audit record on its own (for events that change no other state, such as a
    // policy load). Thread-safe.
    [[nodiscard]] virtual Result<void> record(AuditEvent const& event) = 0;

    // The decision in force for the device at `at` according to the decision history (each
    // stored change), or nullopt when it had none yet. Thread-safe.
    [[nodiscard]] virtual Result<std::optional<Decision>> decision_at(std::string const& device_id,
                                                                      TimePoint at) const = 0;

    // Stores a verified agreement under the next id (AG-000001, ...) and audits it; when the
    // same document and signature bytes are already stored, answers that record with
    // created=false and writes nothing. Thread-safe.
    [[nodiscard]] virtual Result<std::pair<AgreementRecord, bool>> put_agreement(AgreementRecord draft) = 0;

    // The agreement, or Errc::not_found. Thread-safe.
    [[nodiscard]] virtual Result<AgreementRecord> get_agreement(std::string const& id) const = 0;

    // Every agreement still valid, for re-checking against a new CRL. Thread-safe.
    [[nodiscard]] virtual Result<std::vector<AgreementRecord>> list_valid_agreements() const = 0;

    // Marks an agreement invalid (audited), audits each active exemption that relies on it and
    // re-evaluates their devices, in one transaction. Thread-safe.
    [[nodiscard]] virtual Result<void> invalidate_agreement(std::string const& id, std::string const& reason,
                                                            TimePoint now, Evaluate const& evaluate) = 0;

    // Up to `limit` audit records with seq > `after`, in order. Thread-safe.
    [[nodiscard]] virtual Result<std::vector<AuditRecord>> list_audit(std::int64_t after, std::size_t limit) const = 0;

    // The newest audit record's seq and hash ({0, kGenesisHash} when the trail is empty).
    // Thread-safe.
    [[nodiscard]] virtual Result<std::pair<std::int64_t, std::string>> audit_head() const = 0;

    // Recomputes the whole audit chain from the first record and names the first that does not
    // match. Thread-safe; reads a consistent snapshot.
    [[nodiscard]] virtual Result<AuditCheck> verify_audit() const = 0;

    // The device, or Errc::not_found. Thread-safe.
    [[nodiscard]] virtual Result<DeviceRecord> get_device(std::string const& device_id) const = 0;

    // Pending and active exemptions at `now`, and the active ones expiring by `expiring_before`.
    // Thread-safe.
    [[nodiscard]] virtual Result<ExemptionCounts> exemption_counts(TimePoint now, TimePoint expiring_before) const = 0;

    // How long durable commits take (one per group of writes). Thread-safe.
    [[nodiscard]] virtual LatencyHistogram const& commit_latency() const = 0;

    // Devices matching `query`, ordered by id. Thread-safe.
    [[nodiscard]] virtual Result<std::vector<DeviceRecord>> list_devices(DeviceQuery const& query) const = 0;

    // In one transaction: refuses a nonce seen before for this device (409 `replay`), evaluates
    // the device with `evaluate`, stores the report's identity fields, the latest decision, the
    // failure streaks, the nonce and a bounded history entry, and audits a changed decision.
    // Nonces older than `nonce_ttl` are forgotten (the clock-skew check refuses such reports
    // anyway). The SQLite store keeps the nonces of the last `nonce_ttl` in memory, and in a log
    // it reads back when it opens; a store shared by several daemons must refuse replays in the
    // database itself. Nothing is written when it fails. Returns at once; `done` is called from the
    // store's commit thread once the check-in is committed or refused, and must not block.
    // Thread-safe.
    virtual void check_in_async(PostureReport report, Evaluate evaluate, TimePoint now,
                                std::chrono::seconds nonce_ttl, CheckinDone done) = 0;

    // check_in_async, waiting for the answer. Thread-safe.
    [[nodiscard]] ApiResult<Decision> check_in(PostureReport const& report, Evaluate const& evaluate, TimePoint now,
                                               std::chrono::seconds nonce_ttl)
    {
        std::promise<ApiResult<Decision>> answer;
        auto result = answer.get_future();
        check_in_async(report, evaluate, now, nonce_ttl, [&answer](ApiResult<EncodedDecision> r) {
            if (!r) return answer.set_value(std::move(r).error());
            auto decision = decode_decision(r->json);
            if (!decision) return answer.set_value(api_error(500, "internal_error", "The stored decision does not read back."));
            answer.set_value(std::move(*decision));
        });
        return result.get();
    }

    // Copies the whole database to `destination` while the store stays in use: a consistent
    // snapshot taken with SQLite's online backup from a read connection (writers go on, thanks to
    // WAL) into a new file (mode 0600) next to `destination`, flushed to disk, checked with
    // PRAGMA integrity_check, then renamed over `destination`. The copy is one self-contained
    // file (rollback-journal mode). On failure nothing is left behind and the SQLite or system
    // error is answered (the details are logged). Thread-safe.
    [[nodiscard]] virtual Result<void> backup(std::string const& destination) const = 0;

    // Applies a validated import in one transaction (all or nothing): records each row's
    // enrollment where it differs from the registry (as put_enrollment would, updated_by =
    // the actor, updated_at = `audit.at`), re-evaluates the decision of each changed device that
    // has checked in, and appends one `devices.imported` audit record with the counts and the
    // file's SHA-256, not one per device. Writes nothing, not even the audit record, when no row
    // changes anything. Rows must have distinct device ids. Holds the writer for the whole import
    // (about 1 s per 100,000 rows), so other writes wait meanwhile. Thread-safe.
    [[nodiscard]] virtual Result<ImportOutcome> import_enrollments(std::vector<EnrollmentRow> const& rows,
                                                                   ImportAudit const& audit,
                                                                   Evaluate const& evaluate) = 0;

    // True when the store opened without checking its data for damage because the previous run
    // had stopped cleanly (see open_sqlite_store); the caller should then run check_integrity()
    // soon, beside serving. Thread-safe.
    [[nodiscard]] virtual bool integrity_check_deferred() const = 0;

    // Checks the stored data for damage (SQLite: PRAGMA quick_check on a connection of its own,
    // which reads every page: O(database size), about 1 s for 260 MB). Answers nullopt when it
    // finds none; else the message to give the operator ("database PATH is corrupt: <first
    // problem>; restore from a backup"), and from then on every write fails (storage_failure) so
    // that nothing more is written into the damaged file. Errors: operation_canceled when `stop`
    // was requested meanwhile, else the storage error that kept it from finishing. Thread-safe;
    // may run beside requests.
    [[nodiscard]] virtual Result<std::optional<std::string>> check_integrity(std::stop_token stop = {}) = 0;
};

// Opens (creating and migrating as needed) a SQLite store at `path` (":memory:" for tests). Runs
// PRAGMA quick_check first, unless the previous store on the file recorded a clean stop and no
// migration is due: then integrity_check_deferred() is true and check_integrity() is the
// caller's to run. The clean-stop marker is taken (deleted, durably) before anything else is
// written, so after a crash the next open always checks; the store's destructor writes it again,
// as its last write, only if a quick_check of this run passed and no statement reported
// corruption. Throws std::runtime_error: "database PATH is corrupt: <problem>; restore from a
// backup", else SQLite's message.
[[nodiscard]] std::unique_ptr<Store> open_sqlite_store(std::string const& path);

// Copies the SQLite database at `path` to `destination` as Store::backup does, without a Store:
// the database is neither created nor migrated, so an existing database of any schema version is
// copied as it is (back up before an upgrade). Another process may be serving it meanwhile.
// Errors: Errc::not_found when there is no file at `path`, else as Store::backup. Thread-safe.
[[nodiscard]] Result<void> backup_sqlite_database(std::string const& path, std::string const& destination);

}  // namespace exemptd
