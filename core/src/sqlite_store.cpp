#include "exemptd/store.hpp"

#include "exemptd/agreement_record.hpp"
#include "exemptd/audit.hpp"
#include "exemptd/exemption_rules.hpp"
#include "exemptd/json_reader.hpp"
#include "exemptd/recent_nonces.hpp"
#include "exemptd/thread_signals.hpp"
#include "json_writer.hpp"
#include "sqlite.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <future>
#include <map>
#include <optional>
#include <unordered_map>
#include <thread>
#include <filesystem>
#include <mutex>
#include <stop_token>
#include <stdexcept>
#include <system_error>

namespace exemptd {
namespace {

using sqlite::Connection;
using sqlite::Statement;

// The WAL size (in pages) from which the checkpointer thread copies it back into the database,
// pass after pass until a pass has copied every frame.
constexpr int kCheckpointPages = 1000;
// The frames a pass waits for (1 MB). A pass per commit woke the checkpointer (and synced the
// disk) on every commit: under a paced load, with a commit or two per check-in, that was 14% of a
// core. The WAL's high-water mark is kWalPagesLimit either way.
constexpr int kCheckpointStepPages = 256;
// SQLite starts the WAL file over only when a transaction begins with every frame copied, which
// a checkpointer racing a steady stream of commits may miss for a while. At this size (64 MB)
// the commit thread copies the last frames itself, a stall of two fsyncs, so the WAL stays
// bounded. (At 4,000 pages, under a paced load of 4,400 check-ins/s, that stall came every
// second and set the p99 latency.)
constexpr int kWalPagesLimit = 16 * kCheckpointPages;

// Each entry moves the schema one version forward; never edit an entry that has shipped.
constexpr char const* kMigrations[] = {
    R"sql(
CREATE TABLE devices (
  device_id TEXT PRIMARY KEY,
  enrolled INTEGER,
  owner TEXT NOT NULL DEFAULT '',
  source TEXT NOT NULL DEFAULT '',
  enrollment_updated_at INTEGER,
  enrollment_updated_by TEXT NOT NULL DEFAULT '',
  hostname TEXT NOT NULL DEFAULT '',
  serial TEXT NOT NULL DEFAULT '',
  os_name TEXT NOT NULL DEFAULT '',
  os_version TEXT NOT NULL DEFAULT '',
  last_checkin INTEGER,
  decision TEXT,
  basis TEXT,
  decision_json TEXT,
  facts_json TEXT NOT NULL DEFAULT '{}',
  failing_since TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
CREATE TABLE exemptions (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  subject TEXT NOT NULL,
  state TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  next_review_at INTEGER,
  record TEXT NOT NULL
);
CREATE INDEX exemptions_by_subject ON exemptions(subject, state);
CREATE INDEX exemptions_by_expiry ON exemptions(state, expires_at);
CREATE TABLE agreements (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  document_sha256 TEXT NOT NULL,
  signature_sha256 TEXT NOT NULL,
  valid INTEGER NOT NULL,
  record TEXT NOT NULL,
  document BLOB NOT NULL,
  signature BLOB NOT NULL,
  UNIQUE (document_sha256, signature_sha256)
);
CREATE TABLE checkin_nonces (
  device_id TEXT NOT NULL REFERENCES devices(device_id),
  nonce TEXT NOT NULL,
  seen_at INTEGER NOT NULL,
  PRIMARY KEY (device_id, nonce)
) WITHOUT ROWID;
CREATE TABLE checkins (
  seq INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices(device_id),
  at INTEGER NOT NULL,
  reported_at INTEGER NOT NULL,
  decision TEXT NOT NULL,
  basis TEXT NOT NULL
);
CREATE INDEX checkins_by_device ON checkins(device_id, seq);
CREATE TABLE decision_history (
  seq INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices(device_id),
  at INTEGER NOT NULL,
  decision_json TEXT NOT NULL
);
CREATE INDEX decision_history_by_device ON decision_history(device_id, at);
CREATE TABLE audit (
  seq INTEGER PRIMARY KEY,
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  subject TEXT NOT NULL,
  details TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
)sql",
    // Nothing read the per-check-in log: the device row keeps the latest report and decision,
    // decision_history and the audit trail every change. Forgetting a device's expired nonces
    // walks only those. decision_key lets a check-in see whether the decision changed without
    // decoding decision_json.
    R"sql(
DROP TABLE checkins;
CREATE INDEX checkin_nonces_by_age ON checkin_nonces(device_id, seen_at);
ALTER TABLE devices ADD COLUMN decision_key TEXT;
)sql",
    // The sweep finds overdue reviews by next_review_at instead of reading every active
    // exemption (100,000 of them: about 0.1 s of the writer's time every sweep_interval).
    R"sql(
CREATE INDEX exemptions_by_review ON exemptions(state, next_review_at);
)sql",
    // At most one row: the marker of a clean stop (see take_clean_stop).
    R"sql(
CREATE TABLE clean_stop (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  at INTEGER NOT NULL
);
)sql",
    // Replays are refused from memory (RecentNonces); nonces are appended to a log, in the order
    // they were seen, only to be remembered across a restart. The table keyed by (device_id,
    // nonce) and its age index cost two random page writes per check-in: under load, three
    // quarters of the store's work.
    R"sql(
CREATE TABLE checkin_nonce_log (
  seq INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL,
  nonce TEXT NOT NULL,
  seen_at INTEGER NOT NULL
);
INSERT INTO checkin_nonce_log (device_id, nonce, seen_at)
  SELECT device_id, nonce, seen_at FROM checkin_nonces ORDER BY seen_at;
DROP TABLE checkin_nonces;
)sql",
    // A device's row (about 1.1 KB once it has a decision) is too large for a WITHOUT ROWID
    // table: it spilled into an overflow page, and every check-in's UPDATE deleted and inserted
    // the whole entry. In a rowid table an entry of the same size is overwritten in place (a
    // check-in's SQLite work: 18,400 to 13,400 instructions). Rebuilt as SQLite documents it,
    // with foreign keys off (see migrate()).
    R"sql(
CREATE TABLE devices_rebuilt (
  device_id TEXT PRIMARY KEY NOT NULL,
  enrolled INTEGER,
  owner TEXT NOT NULL DEFAULT '',
  source TEXT NOT NULL DEFAULT '',
  enrollment_updated_at INTEGER,
  enrollment_updated_by TEXT NOT NULL DEFAULT '',
  hostname TEXT NOT NULL DEFAULT '',
  serial TEXT NOT NULL DEFAULT '',
  os_name TEXT NOT NULL DEFAULT '',
  os_version TEXT NOT NULL DEFAULT '',
  last_checkin INTEGER,
  decision TEXT,
  basis TEXT,
  decision_json TEXT,
  facts_json TEXT NOT NULL DEFAULT '{}',
  failing_since TEXT NOT NULL DEFAULT '{}',
  decision_key TEXT
);
INSERT INTO devices_rebuilt (device_id, enrolled, owner, source, enrollment_updated_at, enrollment_updated_by,
    hostname, serial, os_name, os_version, last_checkin, decision, basis, decision_json, facts_json,
    failing_since, decision_key)
  SELECT device_id, enrolled, owner, source, enrollment_updated_at, enrollment_updated_by, hostname, serial,
    os_name, os_version, last_checkin, decision, basis, decision_json, facts_json, failing_since, decision_key
  FROM devices ORDER BY device_id;
DROP TABLE devices;
ALTER TABLE devices_rebuilt RENAME TO devices;
)sql",
    // One row of the nonce log per transaction instead of per check-in: a row per check-in was a
    // tenth of a check-in's cost on the commit thread, and inserting one costs about as much
    // whatever its size. `nonces` is "device_id\nnonce\n" for each check-in (neither may hold a
    // newline); seen_at is the latest of their times.
    R"sql(
CREATE TABLE checkin_nonce_batches (
  seq INTEGER PRIMARY KEY,
  seen_at INTEGER NOT NULL,
  nonces TEXT NOT NULL
);
INSERT INTO checkin_nonce_batches (seq, seen_at, nonces)
  SELECT seq, seen_at, device_id || char(10) || nonce || char(10) FROM checkin_nonce_log ORDER BY seq;
DROP TABLE checkin_nonce_log;
)sql",
    // When a device's stored decision may change with time alone (a grace period ends, an
    // exemption expires), for the sweep to decide it again; NULL when it never does. Rows decided
    // before this column wait for their next check-in.
    R"sql(
ALTER TABLE devices ADD COLUMN redecide_at INTEGER;
CREATE INDEX devices_by_redecide_at ON devices(redecide_at) WHERE redecide_at IS NOT NULL;
)sql",
};

std::int64_t seconds_of(TimePoint t)
{
    return t.time_since_epoch().count();
}

// A decision's stable_until as the redecide_at column holds it: NULL for never.
std::optional<std::int64_t> redecide_at(TimePoint stable_until)
{
    if (stable_until == TimePoint::max()) return std::nullopt;
    return seconds_of(stable_until);
}

TimePoint time_of(std::int64_t s)
{
    return TimePoint{std::chrono::seconds{s}};
}

void configure(Connection& db)
{
    db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
}

int schema_version(Connection& db)
{
    auto& stmt = db.prepare("PRAGMA user_version");
    int const version = stmt.step() ? static_cast<int>(stmt.integer(0)) : 0;
    stmt.reset();  // a statement left on its row would lock the tables a migration drops
    return version;
}

// The first problem PRAGMA quick_check finds, or nullopt when it finds none. quick_check reads
// every page once (O(N), see README "Crash safety") but skips the index-content cross-check of
// integrity_check. Throws Failure when it cannot read the file at all (SQLITE_NOTADB, I/O).
std::optional<std::string> quick_check_problem(Connection& db)
{
    auto& stmt = db.prepare("PRAGMA quick_check(1)");
    std::string first = stmt.step() ? stmt.text(0) : "quick_check returned nothing";
    db.reset_all();
    if (first == "ok") return std::nullopt;
    // The problem may come after a "*** in database main ***" heading line.
    if (first.starts_with("*** ") && first.find('\n') != std::string::npos) first.erase(0, first.find('\n') + 1);
    return first.substr(0, first.find('\n'));
}

// A corrupt database must not be served: answers read from it would be wrong and writes could
// spread the damage. Throws Failure (SQLITE_CORRUPT) naming the first problem.
void check_not_corrupt(Connection& db)
{
    if (auto problem = quick_check_problem(db)) throw sqlite::Failure{SQLITE_CORRUPT, std::move(*problem)};
}

bool is_corruption(int code)
{
    return (code & 0xff) == SQLITE_CORRUPT || (code & 0xff) == SQLITE_NOTADB;
}

// What start-up and the background check both say about a damaged file.
std::string corrupt_message(std::string const& path, std::string const& problem)
{
    return "database " + path + " is corrupt: " + problem + "; restore from a backup";
}

// Whether the previous run recorded a clean stop (SqliteStore::record_clean_stop). The marker is
// deleted at once, in a durable commit before anything else is written, so that from here on a
// crash leaves none and the next open checks the file first. A database without the table (new,
// or older than it) has no marker.
bool take_clean_stop(Connection& db)
{
    auto& table = db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'clean_stop'");
    bool const has_table = table.step() && table.integer(0) > 0;
    table.reset();
    if (!has_table) return false;
    auto& marker = db.prepare("SELECT count(*) FROM clean_stop");
    bool const clean = marker.step() && marker.integer(0) > 0;
    marker.reset();
    if (clean) db.exec("DELETE FROM clean_stop");
    return clean;
}

// Moves the schema from `version` to the next one in one transaction, checking foreign keys
// before it commits.
void apply_migration(Connection& db, int version)
{
    db.exec("BEGIN IMMEDIATE");
    try {
        db.exec(kMigrations[version]);
        if (db.prepare("PRAGMA foreign_key_check").step())
            throw sqlite::Failure{SQLITE_CONSTRAINT_FOREIGNKEY, "a migration broke a foreign key"};
        db.exec("PRAGMA user_version=" + std::to_string(version + 1));
        db.exec("COMMIT");
    } catch (...) {
        db.reset_all();  // the foreign key check may be left on a row
        db.exec("ROLLBACK");
        throw;
    }
    spdlog::info("event=schema_migrated version={}", version + 1);
}

// Applies the migrations the database has not had. Foreign keys are off meanwhile: a migration
// may rebuild a table others refer to, which SQLite can do only so. A failed migration fails the
// store's opening, and the connection with foreign keys off goes with it.
void migrate(Connection& db)
{
    int const target = static_cast<int>(std::size(kMigrations));
    int const version = schema_version(db);
    if (version > target)
        throw sqlite::Failure{SQLITE_ERROR, "database schema is newer than this exemptd; upgrade exemptd"};
    if (version == target) return;
    db.exec("PRAGMA foreign_keys=OFF");
    for (int v = version; v < target; ++v) apply_migration(db, v);
    db.exec("PRAGMA foreign_keys=ON");
}

// Columns read by device_from_row, in order.
#define DEVICE_COLUMNS                                                                                         \
    "device_id, enrolled, owner, source, enrollment_updated_at, enrollment_updated_by, hostname, serial, " \
    "os_name, os_version, last_checkin, decision_json, failing_since"

DeviceRecord device_from_row(Statement const& row)
{
    DeviceRecord d;
    d.device_id = row.text(0);
    if (!row.is_null(1))
        d.enrollment = Enrollment{row.integer(1) != 0, row.text(2), row.text(3), time_of(row.integer(4)), row.text(5)};
    d.hostname = row.text(6);
    d.serial = row.text(7);
    d.os_name = row.text(8);
    d.os_version = row.text(9);
    if (!row.is_null(10)) d.last_checkin = time_of(row.integer(10));
    if (!row.is_null(11)) {
        auto decision = decode_decision(row.text(11));
        if (decision) d.latest_decision = std::move(*decision);
    }
    return d;
}

std::optional<DeviceRecord> find_device(Connection& db, std::string const& device_id)
{
    auto& stmt = db.prepare("SELECT " DEVICE_COLUMNS " FROM devices WHERE device_id = ?1");
    stmt.bind(1, device_id);
    if (!stmt.step()) return std::nullopt;
    return device_from_row(stmt);
}

std::map<std::string, TimePoint> streaks_from_json(std::string const& text)
{
    std::map<std::string, TimePoint> out;
    boost::system::error_code ec;
    auto const value = boost::json::parse(text, ec);
    if (ec || !value.is_object()) return out;
    for (auto const& [key, when] : value.as_object()) {
        if (when.is_int64()) out.emplace(std::string(key), time_of(when.as_int64()));
    }
    return out;
}

std::string streaks_to_json(std::map<std::string, TimePoint> const& streaks)
{
    json_writer::Text out(40 * streaks.size() + 2);
    out.raw('{');
    for (auto const& [key, when] : streaks) {
        json_writer::append_key(out, key);
        out.raw(std::to_string(seconds_of(when)));
    }
    out.raw('}');
    return std::move(out).take();
}

// Appends one record to the hash-chained audit trail inside the caller's transaction.
void append_audit(Connection& db, AuditEvent const& event)
{
    AuditRecord record{1, format_rfc3339(event.at), event.actor, event.action, event.subject, event.details,
                       std::string(kGenesisHash), {}};
    auto& last = db.prepare("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1");
    if (last.step()) {
        record.seq = last.integer(0) + 1;
        record.prev_hash = last.text(1);
    }
    record.hash = audit_hash(record.prev_hash, record);
    db.prepare("INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
        .bind(1, record.seq).bind(2, record.at).bind(3, record.actor).bind(4, record.action).bind(5, record.subject)
        .bind(6, record.details).bind(7, record.prev_hash).bind(8, record.hash)
        .run();
}

AuditRecord audit_from_row(Statement const& row)
{
    return {row.integer(0), row.text(1), row.text(2), row.text(3), row.text(4), row.text(5), row.text(6), row.text(7)};
}

std::string_view decision_word(Decision const& d)
{
    return d.allow ? "allow" : "deny";
}

// What tells one decision from another: the outcome, and which control fails or is covered by
// what. Two decisions with the same key differ only in their time and observed values.
std::string decision_key(Decision const& d)
{
    std::string key;
    key.reserve(16 + 24 * d.controls.size());
    key.append(decision_word(d)).append("|").append(to_string(d.basis));
    for (auto const& c : d.controls) key.append("|").append(c.id).append(c.pass ? ":pass:" : ":fail:").append(c.covered_by);
    return key;
}

std::vector<Exemption> read_exemptions(Statement& stmt)
{
    std::vector<Exemption> out;
    while (stmt.step()) {
        auto e = decode_exemption_record(stmt.text(0));
        if (!e) throw sqlite::Failure{SQLITE_CORRUPT, "unreadable exemption record"};
        out.push_back(std::move(*e));
    }
    return out;
}

std::optional<Exemption> find_exemption(Connection& db, std::string const& id)
{
    auto& stmt = db.prepare("SELECT record FROM exemptions WHERE id = ?1");
    stmt.bind(1, id);
    auto found = read_exemptions(stmt);
    if (found.empty()) return std::nullopt;
    return std::move(found.front());
}

void save_exemption(Connection& db, Exemption const& e)
{
    db.prepare("INSERT INTO exemptions (id, subject, state, expires_at, next_review_at, record) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET "
               "state = ?3, expires_at = ?4, next_review_at = ?5, record = ?6")
        .bind(1, e.id).bind(2, e.subject).bind(3, to_string(e.state)).bind(4, seconds_of(e.expires_at))
        .bind(5, e.next_review_at ? std::optional<std::int64_t>{seconds_of(*e.next_review_at)} : std::nullopt)
        .bind(6, encode_exemption_record(e))
        .run();
}

std::vector<Exemption> active_exemptions(Connection& db, std::string const& subject)
{
    auto& stmt = db.prepare("SELECT record FROM exemptions WHERE subject = ?1 AND state = 'active' ORDER BY seq");
    stmt.bind(1, subject);
    return read_exemptions(stmt);
}

std::optional<AgreementRecord> find_agreement(Connection& db, std::string const& id);

// The active exemptions that name a device, and the agreements they name.
struct ActiveExemptions {
    std::vector<Exemption> exemptions;
    std::map<std::string, AgreementRecord> agreements;
};

// What evaluating a device needs besides the facts: from its row, and its active exemptions.
struct EvaluationState {
    std::int64_t rowid = 0;  // the device's row in devices
    bool enrolled = false;
    std::string owner;
    std::map<std::string, TimePoint> failing_since;
    std::optional<std::string> stored_word;  // "allow" or "deny"; nullopt before the first decision
    std::string stored_key;
    // Shared with the cache, which keeps it unchanged: only an exemption's or an agreement's
    // write changes it, and that empties the cache. Null: not read yet.
    std::shared_ptr<ActiveExemptions const> active;
    // Only in the cache, from the check-in that put it there: its decision (text and basis), and
    // what it was evaluated from (its report's facts, the policy version, the time). A next
    // check-in that decides again (decides_again) gets this decision at its own time without an
    // evaluation: this text restamped (restamp_decision).
    std::string decision_json;
    Basis basis = Basis::noncompliant;
    Facts facts;
    std::string policy_version;
    TimePoint evaluated_at{};
    TimePoint stable_until{};
};

// Commit thread only: each device's state as its last check-in left it, so that the next check-in
// need not read its row back. Only check-ins keep it: every other write may change what it holds
// (an enrollment, an exemption, an agreement) and empties it, and so does a transaction that
// fails; a job rolled back forgets the state it put. Bounded: emptied when full.
class EvaluationStateCache {
public:
    static constexpr std::size_t kMaxDevices = 32768;

    EvaluationState const* find(std::string const& device_id) const
    {
        auto const it = states_.find(device_id);
        return it == states_.end() ? nullptr : &it->second;
    }
    // Moves a device's state out of the cache (the job puts its next state back); nullopt when
    // the cache does not have it. Its entry is kept aside, so that putting it back allocates
    // nothing.
    std::optional<EvaluationState> take(std::string const& device_id)
    {
        spare_ = states_.extract(device_id);
        if (spare_.empty()) return std::nullopt;
        return std::move(spare_.mapped());
    }
    void put(std::string const& device_id, EvaluationState state)
    {
        if (states_.size() >= kMaxDevices && !states_.contains(device_id)) states_.clear();
        if (!spare_.empty() && spare_.key() == device_id) {
            spare_.mapped() = std::move(state);
            states_.insert(std::move(spare_));
        } else {
            states_.insert_or_assign(device_id, std::move(state));
        }
        put_in_job_ = device_id;
    }
    void begin_job()
    {
        put_in_job_.reset();
        spare_ = {};
    }
    // Forgets what the running job put, and what it took (it is read again when needed).
    void roll_back_job()
    {
        if (put_in_job_) states_.erase(*put_in_job_);
        put_in_job_.reset();
        spare_ = {};
    }
    void clear()
    {
        states_.clear();
        put_in_job_.reset();
        spare_ = {};
    }

private:
    using States = std::unordered_map<std::string, EvaluationState>;
    States states_;
    std::optional<std::string> put_in_job_;  // the device whose state the running job put
    States::node_type spare_;                // the entry the running job took
};

// What evaluating a device needs: its facts (with the registry view, the failure streaks and the
// agreements its exemptions name), its active exemptions, and the stored decision's word and key.
struct EvaluationInput {
    DeviceFacts facts;
    EvaluationState stored;  // its failing_since is moved into facts; `active` is never null
    std::vector<Exemption> const& active() const { return stored.active->exemptions; }
};

ActiveExemptions read_active_exemptions(Connection& db, std::string const& device_id)
{
    ActiveExemptions out{active_exemptions(db, "device:" + device_id), {}};
    for (auto const& e : out.exemptions) {
        if (e.agreement_id.empty() || out.agreements.contains(e.agreement_id)) continue;
        if (auto a = find_agreement(db, e.agreement_id)) out.agreements.emplace(e.agreement_id, std::move(*a));
    }
    return out;
}

// nullopt when the device is unknown or, unless `fresh_facts` are given, has never checked in
// (no facts to evaluate). With `known` (only beside fresh facts), the row is not read.
std::optional<EvaluationInput> evaluation_input(Connection& db, std::string const& device_id,
                                                Facts const* fresh_facts = nullptr,
                                                std::optional<EvaluationState> known = std::nullopt)
{
    EvaluationInput in;
    if (known && fresh_facts != nullptr) {
        in.stored = std::move(*known);
        in.facts.facts = *fresh_facts;
    } else {
        auto& row = db.prepare("SELECT enrolled, facts_json, failing_since, decision_json, last_checkin, owner, "
                               "decision, decision_key, rowid FROM devices WHERE device_id = ?1");
        if (!row.bind(1, device_id).step() || (row.is_null(4) && fresh_facts == nullptr)) return std::nullopt;
        in.stored.rowid = row.integer(8);
        in.stored.enrolled = !row.is_null(0) && row.integer(0) != 0;
        in.stored.owner = row.text(5);
        in.stored.failing_since = streaks_from_json(row.text(2));
        if (!row.is_null(6)) {
            in.stored.stored_word = row.text(6);
            if (!row.is_null(7)) {
                in.stored.stored_key = row.text(7);
            } else if (!row.is_null(3)) {  // decided before decision_key existed
                if (auto d = decode_decision(row.text(3))) in.stored.stored_key = decision_key(*d);
            }
        }
        in.facts.facts = fresh_facts ? *fresh_facts : facts_from_json(row.text(1));
    }
    in.facts.device_id = device_id;
    in.facts.enrolled = in.stored.enrolled;
    in.facts.owner = in.stored.owner;
    in.facts.failing_since = std::move(in.stored.failing_since);
    if (!in.stored.active) in.stored.active = std::make_shared<ActiveExemptions const>(read_active_exemptions(db, device_id));
    in.facts.agreements = in.stored.active->agreements;
    return in;
}

// A device's decision as evaluated, before it is stored.
struct Evaluated {
    EvaluationInput in;
    Decision decision;
    std::string key;
    // The decision differs from the stored one (or there was none): storing it appends to the
    // decision history and the audit trail.
    bool changed() const { return !in.stored.stored_word || in.stored.stored_key != key; }
};

// Re-evaluates a device, writing nothing. With a `report` (a check-in), evaluates its facts,
// taking the rest from `cache` when it has the device (store_decision puts it back); without,
// nullopt when the device never checked in. nullopt when the device is unknown.
std::optional<Evaluated> evaluate_device(Connection& db, std::string const& device_id, Evaluate const& evaluate,
                                         PostureReport const* report, EvaluationStateCache* cache)
{
    auto known = cache != nullptr && report != nullptr ? cache->take(device_id) : std::nullopt;
    auto in = evaluation_input(db, device_id, report ? &report->facts : nullptr, std::move(known));
    if (!in) return std::nullopt;
    Decision decision = evaluate(in->facts, in->active());
    auto key = decision_key(decision);
    return Evaluated{std::move(*in), std::move(decision), std::move(key)};
}

// A check-in as the commit thread takes it: the report, and what depends on the report alone,
// made on the caller's thread before it is queued (the commit thread's time per check-in is what
// bounds the rate, README "Performance").
struct QueuedCheckin {
    PostureReport report;
    std::string facts_json;  // the report's facts as stored
    RecentNonces::Key nonce_key;

    explicit QueuedCheckin(PostureReport r)
        : report(std::move(r)), facts_json(facts_to_json(report.facts)),
          nonce_key(RecentNonces::key(report.device_id, report.nonce))
    {
    }
};

// Whether a check-in at `now` gets its device's cached decision again: its report is the same
// input as the one that decision was made from (the same values of the facts the policy checks:
// Evaluate::same_input), under the same policy version, from the same cached state (any other
// write empties the cache) and within the decision's stable_until, so evaluating it would make
// the same decision but for its time (Decision::stable_until).
bool decides_again(EvaluationState const& last, QueuedCheckin const& checkin, Evaluate const& evaluate, TimePoint now)
{
    return !last.decision_json.empty() && !evaluate.policy_version().empty() &&
           last.policy_version == evaluate.policy_version() && evaluate.same_input(last.facts, checkin.report.facts) &&
           last.evaluated_at <= now && now < last.stable_until;
}

// The text of the decision a check-in gets again, restamped at `now`; nullopt when it does not.
std::optional<std::string> decision_again(EvaluationState const* last, QueuedCheckin const& checkin,
                                          Evaluate const& evaluate, TimePoint now)
{
    if (last == nullptr || !decides_again(*last, checkin, evaluate, now)) return std::nullopt;
    auto json = last->decision_json;
    if (!restamp_decision(json, now)) return std::nullopt;
    return json;
}

// Writes what a check-in changes in its device's row, its decision and its report, in one UPDATE.
// `stable_until` is the decision's, for redecide_at; nullopt for the stored decision made again,
// whose redecide_at stands (leaving the column out spares its index: 1,700 instructions a
// check-in). The row is found by its rowid (read with the device's state), which spares the
// device_id index's search; the device_id must match too, so a stale rowid changes nothing and
// fails the check-in instead. Bound without copies: every value outlives the call.
void update_checked_in(Connection& db, std::int64_t rowid, std::string const& device_id, std::string_view word,
                       Basis basis, std::string const& decision_json, std::string const& streaks_json,
                       std::string const& key, std::optional<TimePoint> stable_until, QueuedCheckin const& checkin,
                       TimePoint now)
{
    auto const& report = checkin.report;
    auto& update = db.prepare(stable_until ? "UPDATE devices SET decision = ?2, basis = ?3, decision_json = ?4, "
                                             "failing_since = ?5, decision_key = ?6, hostname = ?7, serial = ?8, "
                                             "os_name = ?9, os_version = ?10, last_checkin = ?11, facts_json = ?12, "
                                             "redecide_at = ?13 WHERE rowid = ?14 AND device_id = ?1"
                                           : "UPDATE devices SET decision = ?2, basis = ?3, decision_json = ?4, "
                                             "failing_since = ?5, decision_key = ?6, hostname = ?7, serial = ?8, "
                                             "os_name = ?9, os_version = ?10, last_checkin = ?11, facts_json = ?12 "
                                             "WHERE rowid = ?14 AND device_id = ?1");
    update.bind_static(1, device_id).bind_static(2, word).bind_static(3, to_string(basis))
        .bind_static(4, decision_json).bind_static(5, streaks_json).bind_static(6, key)
        .bind_static(7, report.hostname).bind_static(8, report.serial).bind_static(9, report.os_name)
        .bind_static(10, report.os_version).bind(11, seconds_of(now)).bind_static(12, checkin.facts_json)
        .bind(14, rowid);
    if (stable_until) update.bind(13, redecide_at(*stable_until));
    update.run();
    if (sqlite3_changes(db.handle()) != 1)
        throw std::logic_error("the row of device " + device_id + " is no longer where its state said");
}

// Stores a check-in that decides again (decision_again gave its text from `last`, the device's
// cached state): its row as the full path would write it. The cached state stays as it is.
EncodedDecision store_decision_again(Connection& db, std::string const& device_id, EvaluationState const& last,
                                     std::string decision_json, TimePoint now, QueuedCheckin const& checkin)
{
    if (!last.stored_word) throw std::logic_error("a check-in decided again without a cached decision");
    update_checked_in(db, last.rowid, device_id, *last.stored_word, last.basis, decision_json,
                      streaks_to_json(last.failing_since), last.stored_key, std::nullopt, checkin, now);
    return EncodedDecision{std::move(decision_json), device_id, *last.stored_word == "allow", last.basis};
}

// Stores an evaluated decision and records a change in the decision history and the audit
// trail. With a `checkin`, stores its facts and identity fields in the same UPDATE and puts the
// device's new state in `cache`.
EncodedDecision store_decision(Connection& db, std::string const& device_id, Evaluated evaluated, TimePoint now,
                               QueuedCheckin const* checkin = nullptr, EvaluationStateCache* cache = nullptr)
{
    auto& decision = evaluated.decision;
    auto& stored = evaluated.in.stored;
    auto decision_json = encode_decision(decision);
    auto streaks = failure_streaks(decision);
    auto const streaks_json = streaks_to_json(streaks);
    if (checkin != nullptr) {
        update_checked_in(db, stored.rowid, device_id, decision_word(decision), decision.basis, decision_json,
                          streaks_json, evaluated.key, decision.stable_until, *checkin, now);
    } else {
        db.prepare("UPDATE devices SET decision = ?2, basis = ?3, decision_json = ?4, failing_since = ?5, "
                   "decision_key = ?6, redecide_at = ?7 WHERE device_id = ?1")
            .bind_static(1, device_id).bind_static(2, decision_word(decision)).bind_static(3, to_string(decision.basis))
            .bind_static(4, decision_json).bind_static(5, streaks_json).bind_static(6, evaluated.key)
            .bind(7, redecide_at(decision.stable_until))
            .run();
    }
    if (evaluated.changed()) {
        db.prepare("INSERT INTO decision_history (device_id, at, decision_json) VALUES (?1, ?2, ?3)")
            .bind(1, device_id).bind(2, seconds_of(now)).bind(3, decision_json).run();
        boost::json::object const details{{"decision", decision_word(decision)},
                                          {"basis", to_string(decision.basis)},
                                          {"previous", stored.stored_word.value_or("none")}};
        append_audit(db, {now, "exemptd", "decision.changed", "device:" + device_id, boost::json::serialize(details)});
    }
    if (cache != nullptr && checkin != nullptr) {
        EvaluationState next;
        next.rowid = stored.rowid;
        next.enrolled = stored.enrolled;
        next.owner = std::move(stored.owner);
        next.failing_since = std::move(streaks);
        next.stored_word = decision_word(decision);
        next.stored_key = std::move(evaluated.key);
        next.active = std::move(stored.active);
        next.decision_json = decision_json;
        next.basis = decision.basis;
        next.facts = checkin->report.facts;
        next.policy_version = std::move(decision.policy_version);
        next.evaluated_at = decision.evaluated_at;
        next.stable_until = decision.stable_until;
        cache->put(device_id, std::move(next));
    }
    return EncodedDecision{std::move(decision_json), device_id, decision.allow, decision.basis};
}

// Re-evaluates a device that has checked in and stores its decision; nothing when it never did.
void refresh_decision(Connection& db, std::string const& device_id, Evaluate const& evaluate, TimePoint now)
{
    if (auto evaluated = evaluate_device(db, device_id, evaluate, nullptr, nullptr))
        store_decision(db, device_id, std::move(*evaluated), now);
}

// Re-evaluates the device an exemption is about, if it is one.
void refresh_subject(Connection& db, std::string const& subject, Evaluate const& evaluate, TimePoint now)
{
    auto const parsed = parse_subject(subject);
    if (parsed && parsed->kind == SubjectKind::device) refresh_decision(db, parsed->id, evaluate, now);
}

// The agreement's metadata lives in `record` (JSON); the raw bytes in their own columns.
std::string encode_agreement_record(AgreementRecord const& a)
{
    auto json = agreement_to_json(a);
    json.erase("document");
    json["signature_sha256"] = a.signature_sha256;
    return boost::json::serialize(json);
}

// Columns: record, valid, document, signature.
AgreementRecord agreement_from_row(Statement const& row)
{
    auto const value = boost::json::parse(row.text(0));
    auto const& o = value.as_object();
    auto const& signer = o.at("signer").as_object();
    auto const& verification = o.at("verification").as_object();
    AgreementRecord a;
    a.id = string_or_empty(o, "id");
    a.template_name = string_or_empty(o, "agreement");
    a.user = string_or_empty(o, "user");
    a.device_id = string_or_empty(o, "device_id");
    a.device_serial = string_or_empty(o, "device_serial");
    a.terms_sha256 = string_or_empty(o, "terms_sha256");
    a.accepted_at = parse_rfc3339(string_or_empty(o, "accepted_at")).value_or(TimePoint{});
    a.document_sha256 = string_or_empty(o, "document_sha256");
    a.signature_sha256 = string_or_empty(o, "signature_sha256");
    a.signer_subject = string_or_empty(signer, "subject");
    a.signer_email = string_or_empty(signer, "email");
    a.signer_fingerprint = string_or_empty(signer, "fingerprint");
    a.signed_at = parse_rfc3339(string_or_empty(o, "signed_at"));
    a.verified_at = parse_rfc3339(string_or_empty(verification, "verified_at")).value_or(TimePoint{});
    a.valid = row.integer(1) != 0;
    a.invalid_reason = string_or_empty(verification, "reason");
    a.invalidated_at = parse_rfc3339(string_or_empty(verification, "invalidated_at"));
    a.uploaded_by = string_or_empty(o, "uploaded_by");
    a.document = row.text(2);
    a.signature = row.text(3);
    return a;
}

std::optional<AgreementRecord> find_agreement(Connection& db, std::string const& id)
{
    auto& stmt = db.prepare("SELECT record, valid, document, signature FROM agreements WHERE id = ?1");
    if (!stmt.bind(1, id).step()) return std::nullopt;
    return agreement_from_row(stmt);
}

void save_agreement(Connection& db, AgreementRecord const& a)
{
    db.prepare("INSERT INTO agreements (id, document_sha256, signature_sha256, valid, record, document, signature) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO UPDATE SET valid = ?4, record = ?5")
        .bind(1, a.id).bind(2, a.document_sha256).bind(3, a.signature_sha256).bind(4, std::int64_t{a.valid})
        .bind(5, encode_agreement_record(a)).bind(6, a.document).bind(7, a.signature)
        .run();
}

// The next identifier of a table with a seq column: "EX-000001", "AG-000001", ...
std::string next_id(Connection& db, char const* sql, char const* prefix)
{
    auto& next = db.prepare(sql);
    next.step();
    char id[24];
    std::snprintf(id, sizeof id, "%s-%06lld", prefix, static_cast<long long>(next.integer(0)));
    return id;
}

ApiError storage_error(std::string const& what)
{
    return api_error(503, "storage_unavailable", "The database could not complete the request: " + what + ".");
}

// The nonces of the check-ins in the open transaction: remembered in RecentNonces at once (a
// duplicate within the batch is refused too), forgotten again when their job or the transaction
// is rolled back, and written to the nonce log as one row before COMMIT.
class TransactionNonces {
public:
    // How far the nonces went when a job started, to roll back to.
    struct Mark {
        std::size_t keys = 0;
        std::size_t text = 0;
        std::int64_t seen_at = 0;
    };

    void add(RecentNonces::Key key, std::string_view device_id, std::string_view nonce, std::int64_t at)
    {
        keys_.push_back(key);
        text_.append(device_id).append(1, '\n').append(nonce).append(1, '\n');
        seen_at_ = std::max(seen_at_, at);
    }
    [[nodiscard]] Mark mark() const { return {keys_.size(), text_.size(), seen_at_}; }
    // Forgets in `recent` the nonces added since `m`, and drops them.
    void roll_back(RecentNonces& recent, Mark const& m)
    {
        for (auto i = m.keys; i < keys_.size(); ++i) recent.forget(keys_[i]);
        keys_.resize(m.keys);
        text_.resize(m.text);
        seen_at_ = m.seen_at;
    }
    void clear() { *this = {}; }

    [[nodiscard]] bool empty() const { return keys_.empty(); }
    [[nodiscard]] std::string const& text() const { return text_; }  // "device_id\nnonce\n" each
    [[nodiscard]] std::int64_t seen_at() const { return seen_at_; }  // the latest of their times

private:
    std::vector<RecentNonces::Key> keys_;
    std::string text_;
    std::int64_t seen_at_ = 0;
};

// How a job ended: kept, rolled back, or left for the durable transaction (a relaxed job that
// appends to the audit trail).
enum class JobOutcome { kept, rolled_back, escalated };

// A write waiting for the next group commit: its job, run on the commit thread inside a
// transaction, and what is done there once that transaction is committed or lost.
struct PendingWrite {
    PendingWrite(bool is_relaxed, bool is_self_contained) : relaxed(is_relaxed), self_contained(is_self_contained) {}
    PendingWrite(PendingWrite const&) = delete;
    PendingWrite& operator=(PendingWrite const&) = delete;
    virtual ~PendingWrite() = default;

    virtual JobOutcome run(Connection& db) = 0;
    virtual void finish(bool committed) = 0;  // on the commit thread, after the transaction

    bool relaxed = false;  // may be acknowledged before it is synced to disk
    bool committed = false;
    // The job writes nothing unless it keeps its changes, and in a relaxed transaction it stops
    // before anything it would audit (escalated). It then needs no savepoint of its own (a
    // check-in: savepoints were an eighth of the store's time), and a failure part-way through it
    // loses the whole transaction.
    bool self_contained = false;
};

// Any write but a check-in: a job and what to call afterwards.
struct FunctionWrite final : PendingWrite {
    FunctionWrite(std::function<JobOutcome(Connection&)> j, bool is_relaxed, std::function<void(bool)> d)
        : PendingWrite(is_relaxed, false), job(std::move(j)), done(std::move(d))
    {
    }
    JobOutcome run(Connection& db) override { return job(db); }
    void finish(bool is_committed) override { done(is_committed); }

    std::function<JobOutcome(Connection&)> job;
    std::function<void(bool committed)> done;
};

class SqliteStore final : public Store {
public:
    explicit SqliteStore(std::string path) : path_(std::move(path)), writer_(path_)
    {
        configure(writer_);
        check_at_open();  // before a migration could write into a damaged file
        migrate(writer_);
        load_nonce_log();
        // Replaces SQLite's own checkpoint-on-commit: the commit thread never waits for one.
        sqlite3_wal_hook(writer_.handle(), &SqliteStore::on_wal_commit, this);
        sqlite3_update_hook(writer_.handle(), &SqliteStore::on_row_change, this);
        // The daemon's SIGTERM must never land on the store's threads: once the server's handlers
        // are gone it would kill the process (exit 143) while the last commits finish.
        ScopedSignalBlock const no_signals;
        committer_ = std::thread([this] { commit_loop(); });
        checkpointer_ = std::thread([this] { checkpoint_loop(); });
    }

    ~SqliteStore() override
    {
        {
            std::lock_guard lock(queue_mutex_);
            stopping_ = true;
        }
        queue_cv_.notify_one();
        committer_.join();
        {
            std::lock_guard lock(checkpoint_mutex_);
            checkpoint_stopping_ = true;
        }
        checkpoint_cv_.notify_one();
        checkpointer_.join();
        record_clean_stop();
    }

    Result<EnrollmentOutcome> put_enrollment(std::string const& device_id, Enrollment const& enrollment,
                                             Evaluate const& evaluate) override;
    Result<Exemption> create_exemption(Exemption draft) override;
    ApiResult<Exemption> transition_exemption(std::string const& id, std::string const& action, std::string const& actor,
                                              TimePoint now, Transition const& transition,
                                              Evaluate const& evaluate) override;
    Result<Exemption> get_exemption(std::string const& id) const override;
    Result<std::vector<Exemption>> list_exemptions(ExemptionQuery const& query) const override;
    Result<SweepResult> sweep(TimePoint now, Evaluate const& evaluate) override;
    Result<std::optional<Decision>> current_decision(std::string const& device_id,
                                                     Evaluate const& evaluate) const override;
    Result<void> record(AuditEvent const& event) override;
    Result<std::optional<Decision>> decision_at(std::string const& device_id, TimePoint at) const override;
    Result<std::vector<AuditRecord>> list_audit(std::int64_t after, std::size_t limit) const override;
    Result<AuditCheck> verify_audit() const override;
    Result<std::pair<std::int64_t, std::string>> audit_head() const override;
    Result<std::pair<AgreementRecord, bool>> put_agreement(AgreementRecord draft) override;
    Result<AgreementRecord> get_agreement(std::string const& id) const override;
    Result<std::vector<AgreementRecord>> list_valid_agreements() const override;
    Result<void> invalidate_agreement(std::string const& id, std::string const& reason, TimePoint now,
                                      Evaluate const& evaluate) override;
    Result<DeviceRecord> get_device(std::string const& device_id) const override;
    Result<std::vector<DeviceRecord>> list_devices(DeviceQuery const& query) const override;
    Result<ExemptionCounts> exemption_counts(TimePoint now, TimePoint expiring_before) const override;
    LatencyHistogram const& commit_latency() const override { return commit_latency_; }
    void check_in_async(PostureReport report, Evaluate evaluate, TimePoint now, std::chrono::seconds nonce_ttl,
                        CheckinDone done) override;
    Result<void> backup(std::string const& destination) const override;
    Result<ImportOutcome> import_enrollments(std::vector<EnrollmentRow> const& rows, ImportAudit const& audit,
                                             Evaluate const& evaluate) override;
    bool integrity_check_deferred() const override { return integrity_deferred_; }
    Result<std::optional<std::string>> check_integrity(std::stop_token stop) override;

private:
    void check_at_open();
    void record_clean_stop() noexcept;
    void note_failure(int code) const noexcept
    {
        if (is_corruption(code)) corruption_seen_ = true;
    }
    // Runs `job` in the next group commit and waits for it; `relaxed` allows the commit to skip
    // the disk sync unless the job appends audit records.
    bool write(std::function<bool(Connection&)> job, bool relaxed = false);
    struct CheckinWrite;
    // Queues `pending` for the next group commit and returns at once.
    void enqueue(std::unique_ptr<PendingWrite> pending);
    void commit_loop();
    void commit_batch(std::vector<std::unique_ptr<PendingWrite>> const& batch);
    JobOutcome run_job(PendingWrite& pending);
    std::optional<ApiResult<EncodedDecision>> record_checkin(Connection& db, QueuedCheckin const& checkin, Evaluate const& evaluate,
                                                              TimePoint now, std::chrono::seconds nonce_ttl);
    void prune_nonce_log(Connection& db, std::int64_t before);
    void load_nonce_log();
    void log_transaction_nonces();
    void run_transaction(std::vector<PendingWrite*> const& jobs, std::vector<PendingWrite*>* escalate);
    void set_durable(bool durable);
    static int on_wal_commit(void* self, sqlite3* db, char const* name, int wal_pages);
    static void on_row_change(void* self, int operation, char const* database, char const* table, sqlite3_int64 rowid);
    void checkpoint_loop();
    template <class F>
    auto read(F&& f) const -> Result<decltype(f(std::declval<Connection&>()))>;

    std::string path_;
    Connection writer_;  // used only by the commit thread
    bool writer_durable_ = true;  // the writer's synchronous setting: FULL, or NORMAL
    std::mutex queue_mutex_;
    std::condition_variable queue_cv_;
    std::vector<std::unique_ptr<PendingWrite>> queue_;
    bool stopping_ = false;
    std::thread committer_;
    LatencyHistogram commit_latency_;
    std::mutex checkpoint_mutex_;
    std::condition_variable checkpoint_cv_;
    bool checkpoint_wanted_ = false;
    bool checkpoint_stopping_ = false;
    std::atomic<int> checkpointed_frames_{0};  // WAL frames the last checkpoint had copied back
    std::thread checkpointer_;
    // Commit thread only: the nonces of committed check-ins and of those in the open transaction
    // (txn_nonces_, which go to the log as one row numbered next_nonce_batch_), and how far the
    // log is to be pruned.
    RecentNonces nonces_;
    TransactionNonces txn_nonces_;
    std::int64_t next_nonce_batch_ = 1;
    std::int64_t nonce_log_prune_to_ = 0;
    bool nonce_log_pruned_ = true;
    bool audit_appended_ = false;          // commit thread only: set by on_row_change
    bool relaxed_transaction_ = false;     // commit thread only: the running transaction is relaxed
    EvaluationStateCache evaluation_states_;  // commit thread only

    mutable std::mutex readers_mutex_;
    mutable std::vector<std::unique_ptr<Connection>> idle_readers_;

    bool integrity_deferred_ = false;             // set at open
    std::atomic<bool> integrity_verified_{false};  // quick_check found nothing, at open or since
    std::atomic<bool> damaged_{false};             // check_integrity found damage: writes are refused
    mutable std::atomic<bool> corruption_seen_{false};  // some statement failed with SQLITE_CORRUPT
};

// Takes the clean-stop marker, then runs quick_check unless the previous run stopped cleanly and
// no migration is due; check_integrity() is then the caller's to run. Throws Failure
// (SQLITE_CORRUPT) for a damaged file.
void SqliteStore::check_at_open()
{
    bool const clean = take_clean_stop(writer_);
    bool const migrating = schema_version(writer_) < static_cast<int>(std::size(kMigrations));
    if (clean && !migrating) {
        integrity_deferred_ = true;
        spdlog::info("event=database_opened clean_stop=true integrity_check=deferred");
        return;
    }
    auto const started = std::chrono::steady_clock::now();
    check_not_corrupt(writer_);
    integrity_verified_ = true;
    spdlog::info("event=database_opened clean_stop={} integrity_check=passed check_ms={}", clean,
                 std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count());
}

// The last write of a store that closes: the marker that lets the next open defer its check.
// Written only when this run's quick_check passed and nothing since reported corruption; a check
// that was interrupted, could not finish or found damage leaves no marker, so the next open
// checks first. Closing the connections afterwards copies the WAL back into the file.
void SqliteStore::record_clean_stop() noexcept
{
    char const* const skipped = damaged_ ? "the integrity check found damage"
                                : corruption_seen_ ? "SQLite reported corruption"
                                : !integrity_verified_ ? "the integrity check did not finish in this run"
                                                      : nullptr;
    if (skipped != nullptr) {
        // A daemon stopped before its deferred check finished is routine; damage is not.
        auto const level = damaged_ || corruption_seen_ ? spdlog::level::warn : spdlog::level::info;
        spdlog::log(level, "event=database_closed clean_stop=false reason=\"{}\" effect=\"the next start checks the file first\"",
                    skipped);
        return;
    }
    try {
        set_durable(true);
        writer_.exec("INSERT OR REPLACE INTO clean_stop (id, at) VALUES (1, CAST(strftime('%s', 'now') AS INTEGER))");
        spdlog::info("event=database_closed clean_stop=true");
    } catch (sqlite::Failure const& f) {
        spdlog::warn("event=database_closed clean_stop=false code={} reason=\"{}\" effect=\"the next start checks the "
                     "file first\"", f.code, f.message);
    }
}

// quick_check on a read connection of its own, beside the writer and the readers (WAL): it reads
// the snapshot committed when it starts. `stop` interrupts it.
Result<std::optional<std::string>> SqliteStore::check_integrity(std::stop_token stop)
{
    try {
        Connection db(path_);
        db.exec("PRAGMA query_only=ON");
        std::stop_callback interrupt(stop, [&db] { sqlite3_interrupt(db.handle()); });
        auto problem = quick_check_problem(db);
        // An interrupted check may report a half-read tree as a problem: it proves nothing.
        if (stop.stop_requested()) return make_error_code(boost::system::errc::operation_canceled);
        if (!problem) {
            integrity_verified_ = true;
            return std::optional<std::string>{};
        }
        damaged_ = true;
        return std::optional<std::string>{corrupt_message(path_, *problem)};
    } catch (sqlite::Failure const& f) {
        if (stop.stop_requested()) return make_error_code(boost::system::errc::operation_canceled);
        if (!is_corruption(f.code)) return boost::system::error_code{f.code, sqlite_category()};
        damaged_ = true;
        return std::optional<std::string>{corrupt_message(path_, f.message)};
    }
}

// Group commit: one thread takes every queued write and commits them together (each job in its
// own savepoint), then tells each writer how it went.
void SqliteStore::enqueue(std::unique_ptr<PendingWrite> pending)
{
    {
        std::lock_guard lock(queue_mutex_);
        queue_.push_back(std::move(pending));
    }
    queue_cv_.notify_one();
}

void SqliteStore::commit_loop()
{
    pthread_setname_np(pthread_self(), "store-commit");  // as `top -H` and perf show it
    // Woken by each check-in queued while it sleeps, this thread would preempt the I/O thread
    // that queued it. As SCHED_BATCH (no wakeup preemption; any process may choose it) it runs
    // on an idle core or when the running thread yields, and then commits what queued meanwhile.
    // Measured in the eleventh pass: keep-alive check-ins +5%, 4-5 points less server CPU and a
    // lower p99.9 at half load (README "Eleventh pass").
    sched_param const batch_priority{};
    if (int const rc = pthread_setschedparam(pthread_self(), SCHED_BATCH, &batch_priority); rc != 0)
        spdlog::warn("event=commit_thread_policy_unchanged reason=\"{}\"", std::strerror(rc));
    // The writers queue under queue_mutex_ from the I/O threads, which must never wait long for it:
    // the batch is swapped out (the queue keeps its capacity, so queuing allocates nothing) and
    // destroyed before the lock is taken again. Destroying a few hundred check-ins under the lock
    // made the I/O thread wait whenever this thread was preempted meanwhile, 2.9 ms on average,
    // 23 times a second under a paced load.
    std::vector<std::unique_ptr<PendingWrite>> batch;
    std::unique_lock lock(queue_mutex_);
    for (;;) {
        queue_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, and every queued write is answered
        std::swap(batch, queue_);
        lock.unlock();
        commit_batch(batch);
        for (auto const& p : batch) {
            try {
                p->finish(p->committed);
            } catch (std::exception const& e) {  // a caller's bug must not stop every later commit
                spdlog::error("event=write_callback_failed reason=\"{}\"", e.what());
            }
        }
        batch.clear();
        lock.lock();
    }
}

bool SqliteStore::write(std::function<bool(Connection&)> job, bool relaxed)
{
    std::promise<bool> committed;
    auto result = committed.get_future();
    // Any write but a check-in may change what the evaluation states hold.
    auto forgetting = [this, job = std::move(job)](Connection& db) {
        evaluation_states_.clear();
        return job(db) ? JobOutcome::kept : JobOutcome::rolled_back;
    };
    enqueue(std::make_unique<FunctionWrite>(std::move(forgetting), relaxed,
                                            [&committed](bool ok) { committed.set_value(ok); }));
    return result.get();
}

// Commits the batch's check-in bookkeeping with synchronous=NORMAL and everything else with
// FULL. A relaxed job that turns out to append to the audit trail (a check-in that changes a
// decision) is rolled back and runs again in the durable transaction: nothing audited is
// acknowledged before it is synced to disk.
void SqliteStore::commit_batch(std::vector<std::unique_ptr<PendingWrite>> const& batch)
{
    if (damaged_) {  // writes must not spread the damage; every job fails (committed stays false)
        spdlog::error("event=write_refused writes={} reason=\"the database is damaged\"", batch.size());
        return;
    }
    std::vector<PendingWrite*> relaxed, durable;
    for (auto const& p : batch) (p->relaxed ? relaxed : durable).push_back(p.get());
    if (!relaxed.empty()) run_transaction(relaxed, &durable);
    if (!durable.empty()) run_transaction(durable, nullptr);
}

// One transaction for `jobs`, synced to disk unless `escalate` is given (then a job that appends
// audit records is moved there instead of kept). A job that fails or asks to roll back undoes
// only its own savepoint; a failure of the transaction itself (BEGIN, a savepoint, COMMIT, or
// SQLite rolling the whole transaction back after SQLITE_FULL or SQLITE_IOERR) fails every job
// that ran in it, so that none is acknowledged unless all that it reports are committed.
void SqliteStore::run_transaction(std::vector<PendingWrite*> const& jobs, std::vector<PendingWrite*>* escalate)
{
    auto const started = std::chrono::steady_clock::now();
    std::vector<PendingWrite*> ran;
    char const* stage = "begin";
    try {
        set_durable(escalate == nullptr);
        relaxed_transaction_ = escalate != nullptr;
        txn_nonces_.clear();
        writer_.prepare("BEGIN IMMEDIATE").run();  // prepared once: exec would parse it every time
        stage = "job";
        for (auto* p : jobs) {
            auto const outcome = run_job(*p);
            if (outcome == JobOutcome::escalated) {
                escalate->push_back(p);
                continue;
            }
            p->committed = outcome == JobOutcome::kept;
            ran.push_back(p);
        }
        stage = "nonce_log";
        log_transaction_nonces();
        stage = "commit";
        writer_.prepare("COMMIT").run();
        if (!txn_nonces_.empty()) ++next_nonce_batch_;
    } catch (sqlite::Failure const& f) {
        spdlog::error("event=write_failed stage={} code={} reason=\"{}\"", stage, f.code, f.message);
        note_failure(f.code);
        writer_.reset_all();
        if (sqlite3_get_autocommit(writer_.handle()) == 0)
            sqlite3_exec(writer_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
        for (auto* p : jobs) p->committed = false;
        txn_nonces_.roll_back(nonces_, TransactionNonces::Mark{});
        evaluation_states_.clear();
    }
    txn_nonces_.clear();
    commit_latency_.observe(std::chrono::steady_clock::now() - started);
}

// Runs one job inside its own savepoint of the transaction, unless it is self-contained. Throws
// Failure when the transaction as a whole is lost.
JobOutcome SqliteStore::run_job(PendingWrite& pending)
{
    bool const savepoint = !pending.self_contained;
    if (savepoint) writer_.prepare("SAVEPOINT job").run();
    audit_appended_ = false;
    evaluation_states_.begin_job();
    auto const nonces_before = txn_nonces_.mark();
    auto outcome = JobOutcome::rolled_back;
    bool failed = false;
    try {
        outcome = pending.run(writer_);
    } catch (sqlite::Failure const& f) {
        spdlog::error("event=write_failed stage=job code={} reason=\"{}\"", f.code, f.message);
        note_failure(f.code);
        failed = true;
    } catch (std::exception const& e) {
        // A bug in a job must not leave the transaction open or the queue without a leader.
        spdlog::error("event=write_failed stage=job reason=\"{}\"", e.what());
        failed = true;
    }
    writer_.reset_all();
    // SQLITE_FULL, SQLITE_IOERR and SQLITE_NOMEM may roll back the whole transaction, taking the
    // jobs before this one with it; a later savepoint would then start a fresh transaction.
    if (sqlite3_get_autocommit(writer_.handle()) != 0)
        throw sqlite::Failure{SQLITE_ABORT_ROLLBACK, "SQLite rolled back the whole transaction"};
    if (failed) outcome = JobOutcome::rolled_back;
    if (relaxed_transaction_ && outcome == JobOutcome::kept && audit_appended_) {
        // Nothing audited may be acknowledged before it is synced.
        if (!savepoint) throw sqlite::Failure{SQLITE_ABORT, "a self-contained job appended to the audit trail"};
        outcome = JobOutcome::escalated;
    }
    if (outcome != JobOutcome::kept) {
        if (savepoint) writer_.prepare("ROLLBACK TO job").run();
        else if (failed) throw sqlite::Failure{SQLITE_ABORT, "a self-contained job failed part-way"};
        txn_nonces_.roll_back(nonces_, nonces_before);
        evaluation_states_.roll_back_job();
    }
    if (savepoint) writer_.prepare("RELEASE job").run();
    return outcome;
}

void SqliteStore::set_durable(bool durable)
{
    if (durable == writer_durable_) return;
    writer_.exec(durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    writer_durable_ = durable;
}

// Called by SQLite for each row the writer inserts, updates or deletes in a rowid table (the
// audit trail is one): tells run_job that a job appended to the audit trail.
void SqliteStore::on_row_change(void* self, int operation, char const*, char const* table, sqlite3_int64)
{
    if (operation == SQLITE_INSERT && std::strcmp(table, "audit") == 0) static_cast<SqliteStore*>(self)->audit_appended_ = true;
}

// Called by SQLite after each commit of the writer: a WAL of kCheckpointPages frames with
// kCheckpointStepPages not yet copied back wakes the checkpointer.
int SqliteStore::on_wal_commit(void* self, sqlite3* db, char const* name, int wal_pages)
{
    auto* store = static_cast<SqliteStore*>(self);
    int copied = store->checkpointed_frames_.load(std::memory_order_relaxed);
    if (wal_pages < copied) {  // SQLite has started the WAL over
        copied = 0;
        store->checkpointed_frames_.store(0, std::memory_order_relaxed);
    }
    if (wal_pages >= kWalPagesLimit)
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (wal_pages >= kCheckpointPages && wal_pages - copied >= kCheckpointStepPages) {
        {
            std::lock_guard lock(store->checkpoint_mutex_);
            store->checkpoint_wanted_ = true;
        }
        store->checkpoint_cv_.notify_one();
    }
    return SQLITE_OK;
}

// Copies the WAL back into the database file (and syncs both) on its own connection, beside the
// writer, so that commits do not stall on it. PASSIVE: it copies what no reader still needs;
// SQLite restarts the WAL from the beginning once all of it has been copied.
void SqliteStore::checkpoint_loop()
{
    pthread_setname_np(pthread_self(), "store-checkpt");
    // Copying pages back can wait: the commit and I/O threads go first on a busy core.
    if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10) != 0)
        spdlog::warn("event=checkpointer_priority_unchanged reason=\"{}\"", std::strerror(errno));
    std::unique_ptr<Connection> db;
    std::unique_lock lock(checkpoint_mutex_);
    for (;;) {
        checkpoint_cv_.wait(lock, [this] { return checkpoint_stopping_ || checkpoint_wanted_; });
        if (checkpoint_stopping_) return;
        checkpoint_wanted_ = false;
        lock.unlock();
        try {
            if (!db) {
                db = std::make_unique<Connection>(path_);
                // Until a connection has read the file it does not know the database is in WAL
                // mode, and its checkpoints silently do nothing.
                configure(*db);
            }
            int wal_frames = 0;
            int copied = 0;
            int const rc = sqlite3_wal_checkpoint_v2(db->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &copied);
            if (rc == SQLITE_OK) checkpointed_frames_.store(copied, std::memory_order_relaxed);
            if (rc != SQLITE_OK && rc != SQLITE_BUSY)
                spdlog::warn("event=checkpoint_failed code={} reason=\"{}\"", rc, sqlite3_errmsg(db->handle()));
        } catch (sqlite::Failure const& f) {
            spdlog::warn("event=checkpoint_failed code={} reason=\"{}\"", f.code, f.message);
        }
        lock.lock();
    }
}

// Runs `f` on an idle read connection (WAL lets readers run beside the writer).
template <class F>
auto SqliteStore::read(F&& f) const -> Result<decltype(f(std::declval<Connection&>()))>
{
    std::unique_ptr<Connection> conn;
    {
        std::lock_guard lock(readers_mutex_);
        if (!idle_readers_.empty()) {
            conn = std::move(idle_readers_.back());
            idle_readers_.pop_back();
        }
    }
    try {
        if (!conn) {
            conn = std::make_unique<Connection>(path_);
            conn->exec("PRAGMA foreign_keys=ON; PRAGMA query_only=ON;");
        }
        auto result = f(*conn);
        conn->reset_all();  // a statement left on a row would pin this reader's snapshot
        std::lock_guard lock(readers_mutex_);
        idle_readers_.push_back(std::move(conn));
        return result;
    } catch (sqlite::Failure const& failure) {
        spdlog::error("event=read_failed code={} reason=\"{}\"", failure.code, failure.message);
        note_failure(failure.code);
        return boost::system::error_code{failure.code, sqlite_category()};
    } catch (std::exception const& e) {
        spdlog::error("event=read_failed reason=\"{}\"", e.what());
        return make_error_code(Errc::storage_failure);
    }
}

Result<EnrollmentOutcome> SqliteStore::put_enrollment(std::string const& device_id, Enrollment const& enrollment,
                                                      Evaluate const& evaluate)
{
    EnrollmentOutcome outcome;
    bool const committed = write([&](Connection& db) {
        auto const before = find_device(db, device_id);
        auto const& old = before ? before->enrollment : std::nullopt;
        outcome.created = !old;
        outcome.changed = !old || old->enrolled != enrollment.enrolled || old->owner != enrollment.owner ||
                          old->source != enrollment.source;
        if (outcome.changed) {
            db.prepare("INSERT INTO devices (device_id, enrolled, owner, source, enrollment_updated_at, "
                       "enrollment_updated_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                       "ON CONFLICT (device_id) DO UPDATE SET enrolled = ?2, owner = ?3, source = ?4, "
                       "enrollment_updated_at = ?5, enrollment_updated_by = ?6")
                .bind(1, device_id).bind(2, std::int64_t{enrollment.enrolled}).bind(3, enrollment.owner)
                .bind(4, enrollment.source).bind(5, seconds_of(enrollment.updated_at)).bind(6, enrollment.updated_by)
                .run();
            boost::json::object const details{
                {"enrolled", enrollment.enrolled}, {"owner", enrollment.owner}, {"source", enrollment.source}};
            append_audit(db, {enrollment.updated_at, enrollment.updated_by,
                              enrollment.enrolled ? "device.enrolled" : "device.unenrolled", "device:" + device_id,
                              boost::json::serialize(details)});
            refresh_decision(db, device_id, evaluate, enrollment.updated_at);
        }
        outcome.device = *find_device(db, device_id);
        return true;
    });
    if (!committed) return make_error_code(Errc::storage_failure);
    return outcome;
}

Result<void> SqliteStore::record(AuditEvent const& event)
{
    if (!write([&](Connection& db) { return append_audit(db, event), true; })) return make_error_code(Errc::storage_failure);
    return {};
}

Result<Exemption> SqliteStore::create_exemption(Exemption draft)
{
    bool const committed = write([&](Connection& db) {
        draft.id = next_id(db, "SELECT coalesce(max(seq), 0) + 1 FROM exemptions", "EX");
        save_exemption(db, draft);
        boost::json::object const details{{"controls", boost::json::array(draft.controls.begin(), draft.controls.end())},
                                          {"subject", draft.subject},
                                          {"risk", to_string(draft.level)},
                                          {"expires_at", format_rfc3339(draft.expires_at)}};
        append_audit(db, {draft.requested_at, draft.requested_by, "exemption.requested", "exemption:" + draft.id,
                          boost::json::serialize(details)});
        return true;
    });
    if (!committed) return make_error_code(Errc::storage_failure);
    return draft;
}

ApiResult<Exemption> SqliteStore::transition_exemption(std::string const& id, std::string const& action,
                                                       std::string const& actor, TimePoint now,
                                                       Transition const& transition, Evaluate const& evaluate)
{
    std::optional<ApiResult<Exemption>> outcome;
    bool const committed = write([&](Connection& db) {
        auto current = find_exemption(db, id);
        if (!current) {
            outcome = api_error(404, "not_found", "No exemption " + id + " exists.");
            return false;
        }
        outcome = transition(*current);
        if (outcome->has_error()) return false;
        Exemption const& next = **outcome;
        save_exemption(db, next);
        boost::json::object const details{{"from", to_string(current->state)}, {"to", to_string(next.state)},
                                          {"expires_at", format_rfc3339(next.expires_at)}};
        append_audit(db, {now, actor, action, "exemption:" + id, boost::json::serialize(details)});
        refresh_subject(db, next.subject, evaluate, now);
        return true;
    });
    if (outcome && outcome->has_error()) return *outcome;
    if (!committed || !outcome) return storage_error("the exemption was not changed");
    return *outcome;
}

Result<Exemption> SqliteStore::get_exemption(std::string const& id) const
{
    auto found = read([&](Connection& db) { return find_exemption(db, id); });
    if (!found) return found.error();
    if (!*found) return make_error_code(Errc::not_found);
    return std::move(**found);
}

Result<std::vector<Exemption>> SqliteStore::list_exemptions(ExemptionQuery const& q) const
{
    auto const state = q.state ? std::string(to_string(*q.state)) : std::string{};
    return read([&](Connection& db) {
        // Effective states: an open exemption whose expiry has passed counts as expired.
        auto& stmt = db.prepare(
            "SELECT record FROM exemptions WHERE (?1 = '' OR subject = ?1) "
            "AND (?2 = '' OR EXISTS (SELECT 1 FROM json_each(record, '$.controls') WHERE value = ?2)) "
            "AND (?3 = '' OR (?3 = 'expired' AND (state = 'expired' OR (state IN ('pending', 'active') AND expires_at <= ?4))) "
            "     OR (?3 IN ('pending', 'active') AND state = ?3 AND expires_at > ?4) "
            "     OR (?3 IN ('rejected', 'revoked') AND state = ?3)) "
            "AND (?5 IS NULL OR (state = 'active' AND expires_at > ?4 AND expires_at <= ?5)) ORDER BY seq");
        stmt.bind(1, q.subject).bind(2, q.control).bind(3, state).bind(4, seconds_of(q.now));
        if (q.expiring_before) stmt.bind(5, seconds_of(*q.expiring_before));
        return read_exemptions(stmt);
    });
}

Result<SweepResult> SqliteStore::sweep(TimePoint now, Evaluate const& evaluate)
{
    SweepResult result;
    bool const committed = write([&](Connection& db) {
        auto& due = db.prepare("SELECT record FROM exemptions WHERE state IN ('pending', 'active') AND expires_at <= ?1");
        due.bind(1, seconds_of(now));
        for (auto e : read_exemptions(due)) {
            auto const from = e.state;
            e.state = ExemptionState::expired;
            save_exemption(db, e);
            boost::json::object const details{{"from", to_string(from)}, {"expires_at", format_rfc3339(e.expires_at)}};
            append_audit(db, {now, "exemptd", "exemption.expired", "exemption:" + e.id, boost::json::serialize(details)});
            refresh_subject(db, e.subject, evaluate, now);
            ++result.expired;
        }
        auto& overdue = db.prepare("SELECT record FROM exemptions WHERE state = 'active' AND next_review_at <= ?1");
        overdue.bind(1, seconds_of(now));
        for (auto e : read_exemptions(overdue)) {
            if (e.overdue_review_flagged == e.next_review_at) continue;
            e.overdue_review_flagged = e.next_review_at;
            save_exemption(db, e);
            boost::json::object const details{{"next_review_at", format_rfc3339(*e.next_review_at)}};
            append_audit(db, {now, "exemptd", "exemption.review_overdue", "exemption:" + e.id,
                              boost::json::serialize(details)});
            ++result.reviews_overdue;
        }
        // Decisions that time alone changes (a grace period ended) are stored and audited now,
        // not at the device's next check-in, which may never come. At most 1,000 a sweep, so that
        // a backlog (after a long stop) does not hold the writer for seconds; the earliest first,
        // the rest at the next sweep.
        auto& due_devices =
            db.prepare("SELECT device_id FROM devices WHERE redecide_at <= ?1 ORDER BY redecide_at LIMIT 1000");
        std::vector<std::string> redecide;
        for (due_devices.bind(1, seconds_of(now)); due_devices.step();) redecide.push_back(due_devices.text(0));
        due_devices.reset();
        for (auto const& id : redecide) refresh_decision(db, id, evaluate, now);
        result.redecided = static_cast<int>(redecide.size());
        return true;
    });
    if (!committed) return make_error_code(Errc::storage_failure);
    return result;
}

Result<std::optional<Decision>> SqliteStore::current_decision(std::string const& device_id,
                                                              Evaluate const& evaluate) const
{
    auto found = read([&](Connection& db) -> std::optional<std::optional<Decision>> {
        if (auto in = evaluation_input(db, device_id)) return std::optional<Decision>{evaluate(in->facts, in->active())};
        if (find_device(db, device_id)) return std::optional<Decision>{};
        return std::nullopt;
    });
    if (!found) return found.error();
    if (!*found) return make_error_code(Errc::not_found);
    return std::move(**found);
}

Result<std::optional<Decision>> SqliteStore::decision_at(std::string const& device_id, TimePoint at) const
{
    return read([&](Connection& db) -> std::optional<Decision> {
        auto& stmt = db.prepare("SELECT decision_json FROM decision_history WHERE device_id = ?1 AND at <= ?2 "
                                "ORDER BY at DESC, seq DESC LIMIT 1");
        if (!stmt.bind(1, device_id).bind(2, seconds_of(at)).step()) return std::nullopt;
        auto decision = decode_decision(stmt.text(0));
        if (!decision) throw sqlite::Failure{SQLITE_CORRUPT, "unreadable decision in the history"};
        return std::move(*decision);
    });
}

Result<std::vector<AuditRecord>> SqliteStore::list_audit(std::int64_t after, std::size_t limit) const
{
    return read([&](Connection& db) {
        auto& stmt = db.prepare("SELECT seq, at, actor, action, subject, details, prev_hash, hash FROM audit "
                                "WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        stmt.bind(1, after).bind(2, static_cast<std::int64_t>(limit));
        std::vector<AuditRecord> out;
        while (stmt.step()) out.push_back(audit_from_row(stmt));
        return out;
    });
}

Result<ExemptionCounts> SqliteStore::exemption_counts(TimePoint now, TimePoint expiring_before) const
{
    return read([&](Connection& db) {
        auto& stmt = db.prepare(
            "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'active'), "
            "count(*) FILTER (WHERE state = 'active' AND expires_at <= ?2) "
            "FROM exemptions WHERE state IN ('pending', 'active') AND expires_at > ?1");
        stmt.bind(1, seconds_of(now)).bind(2, seconds_of(expiring_before)).step();
        return ExemptionCounts{stmt.integer(0), stmt.integer(1), stmt.integer(2)};
    });
}

Result<std::pair<std::int64_t, std::string>> SqliteStore::audit_head() const
{
    return read([&](Connection& db) {
        auto& last = db.prepare("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1");
        if (!last.step()) return std::pair<std::int64_t, std::string>{0, std::string(kGenesisHash)};
        return std::pair{last.integer(0), last.text(1)};
    });
}

Result<AuditCheck> SqliteStore::verify_audit() const
{
    return read([&](Connection& db) {
        auto& stmt = db.prepare("SELECT seq, at, actor, action, subject, details, prev_hash, hash FROM audit ORDER BY seq");
        AuditChainChecker checker;
        while (checker.result().ok && stmt.step()) checker.feed(audit_from_row(stmt));
        return checker.result();
    });
}

Result<std::pair<AgreementRecord, bool>> SqliteStore::put_agreement(AgreementRecord draft)
{
    bool created = false;
    bool const committed = write([&](Connection& db) {
        auto& same = db.prepare("SELECT id FROM agreements WHERE document_sha256 = ?1 AND signature_sha256 = ?2");
        if (same.bind(1, draft.document_sha256).bind(2, draft.signature_sha256).step()) {
            draft = *find_agreement(db, same.text(0));
            return true;
        }
        draft.id = next_id(db, "SELECT coalesce(max(seq), 0) + 1 FROM agreements", "AG");
        save_agreement(db, draft);
        boost::json::object const details{{"agreement", draft.template_name},
                                          {"user", draft.user},
                                          {"device_id", draft.device_id},
                                          {"document_sha256", draft.document_sha256},
                                          {"signer_fingerprint", draft.signer_fingerprint}};
        append_audit(db, {draft.verified_at, draft.uploaded_by, "agreement.stored", "agreement:" + draft.id,
                          boost::json::serialize(details)});
        created = true;
        return true;
    });
    if (!committed) return make_error_code(Errc::storage_failure);
    return std::pair{std::move(draft), created};
}

Result<AgreementRecord> SqliteStore::get_agreement(std::string const& id) const
{
    auto found = read([&](Connection& db) { return find_agreement(db, id); });
    if (!found) return found.error();
    if (!*found) return make_error_code(Errc::not_found);
    return std::move(**found);
}

Result<std::vector<AgreementRecord>> SqliteStore::list_valid_agreements() const
{
    return read([&](Connection& db) {
        auto& stmt = db.prepare("SELECT record, valid, document, signature FROM agreements WHERE valid = 1 ORDER BY seq");
        std::vector<AgreementRecord> out;
        while (stmt.step()) out.push_back(agreement_from_row(stmt));
        return out;
    });
}

Result<void> SqliteStore::invalidate_agreement(std::string const& id, std::string const& reason, TimePoint now,
                                               Evaluate const& evaluate)
{
    bool const committed = write([&](Connection& db) {
        auto agreement = find_agreement(db, id);
        if (!agreement || !agreement->valid) return true;
        agreement->valid = false;
        agreement->invalid_reason = reason;
        agreement->invalidated_at = now;
        save_agreement(db, *agreement);
        boost::json::object const details{{"reason", reason}, {"signer_fingerprint", agreement->signer_fingerprint}};
        append_audit(db, {now, "exemptd", "agreement.invalidated", "agreement:" + id, boost::json::serialize(details)});
        // Every exemption that relies on it stops being valid for good (its agreement_id cannot
        // change): it is revoked by exemptd, so the register no longer lists it as active.
        auto& relying = db.prepare("SELECT record FROM exemptions WHERE state IN ('pending', 'active') AND "
                                   "json_extract(record, '$.agreement_id') = ?1 ORDER BY seq");
        relying.bind(1, id);
        for (auto const& e : read_exemptions(relying)) {
            auto const from = e.state;
            auto revoked = revoke_exemption(e, "exemptd", "agreement " + id + " is no longer valid: " + reason, now);
            if (!revoked) continue;  // past its expiry: the sweep expires it
            save_exemption(db, *revoked);
            boost::json::object const why{{"agreement_id", id}, {"reason", reason}, {"from", to_string(from)},
                                          {"state", "revoked"}};
            append_audit(db, {now, "exemptd", "exemption.agreement_invalidated", "exemption:" + e.id,
                              boost::json::serialize(why)});
            refresh_subject(db, e.subject, evaluate, now);
        }
        return true;
    });
    if (!committed) return make_error_code(Errc::storage_failure);
    return {};
}

Result<DeviceRecord> SqliteStore::get_device(std::string const& device_id) const
{
    auto found = read([&](Connection& db) { return find_device(db, device_id); });
    if (!found) return found.error();
    if (!*found) return make_error_code(Errc::not_found);
    return std::move(**found);
}

Result<std::vector<DeviceRecord>> SqliteStore::list_devices(DeviceQuery const& query) const
{
    return read([&](Connection& db) {
        auto& stmt = db.prepare(
            "SELECT " DEVICE_COLUMNS " FROM devices WHERE device_id > ?3 AND ("
            "?1 = 0 OR (?1 = 1 AND decision = 'allow') OR (?1 = 2 AND decision = 'deny') "
            "OR (?1 = 3 AND decision = 'allow' AND basis = 'exempted') OR (?1 = 4 AND coalesce(enrolled, 0) = 0) "
            "OR (?1 = 5 AND coalesce(last_checkin, 0) < ?2)) ORDER BY device_id LIMIT ?4");
        stmt.bind(1, static_cast<std::int64_t>(query.state)).bind(2, seconds_of(query.stale_before)).bind(3, query.after)
            .bind(4, query.limit == 0 ? std::int64_t{-1} : static_cast<std::int64_t>(query.limit));
        std::vector<DeviceRecord> out;
        while (stmt.step()) out.push_back(device_from_row(stmt));
        return out;
    });
}

// Records one check-in inside the commit transaction: refuses a nonce seen within the TTL
// (an older one is taken afresh), stores the report's identity fields and facts and re-evaluates
// the decision from the fresh facts, or takes the cached one again when it decides again
// (decides_again). Writes nothing when it refuses, nor when it returns nullopt:
// a first check-in or a changed decision is audited, so in a relaxed transaction it stops before
// writing and runs again in the durable one.
std::optional<ApiResult<EncodedDecision>> SqliteStore::record_checkin(Connection& db, QueuedCheckin const& checkin,
                                                                      Evaluate const& evaluate, TimePoint now,
                                                                      std::chrono::seconds nonce_ttl)
{
    auto const& report = checkin.report;
    auto const since = seconds_of(now - nonce_ttl);
    // The log's row numbered `expired` may also hold nonces of a bucket still kept (one
    // transaction's check-ins can straddle two): it goes with the next.
    if (auto const expired = nonces_.expire(since); expired - 1 > nonce_log_prune_to_) {
        nonce_log_prune_to_ = expired - 1;
        nonce_log_pruned_ = false;
    }
    auto const key = checkin.nonce_key;
    if (nonces_.contains(key, since))
        return api_error(409, "replay", "This report's nonce was already used by this device; send a fresh one.");
    auto const& id = report.device_id;
    // When it decides again, nothing changes the cache before store_decision_again: `last` stays valid.
    auto const* last = evaluation_states_.find(id);
    auto again = decision_again(last, checkin, evaluate, now);
    std::optional<Evaluated> evaluated;
    if (!again) {
        evaluated = evaluate_device(db, id, evaluate, &report, &evaluation_states_);
        if ((!evaluated || evaluated->changed()) && relaxed_transaction_) return std::nullopt;
        if (!evaluated) {
            // A device's first check-in (nothing enrolled it) adds it to the registry.
            db.prepare("INSERT INTO devices (device_id) VALUES (?1)").bind(1, id).run();
            evaluated = evaluate_device(db, id, evaluate, &report, &evaluation_states_);
        }
    }
    nonces_.add(key, seconds_of(now), next_nonce_batch_);
    txn_nonces_.add(key, id, report.nonce, seconds_of(now));
    if (!nonce_log_pruned_) prune_nonce_log(db, nonce_log_prune_to_);
    if (again) return store_decision_again(db, id, *last, std::move(*again), now, checkin);
    return store_decision(db, id, std::move(*evaluated), now, &checkin, &evaluation_states_);
}

// Deletes a few of the log's rows numbered up to `last`, oldest first: a transaction adds one row
// and each check-in removes up to 16, so the log keeps up without a long delete stalling a commit.
// A rolled-back prune leaves rows that the next one takes.
void SqliteStore::prune_nonce_log(Connection& db, std::int64_t last)
{
    constexpr std::int64_t kRowsPerCheckin = 16;
    db.prepare("DELETE FROM checkin_nonce_batches WHERE seq IN (SELECT seq FROM checkin_nonce_batches WHERE seq <= ?1 "
               "ORDER BY seq LIMIT ?2)")
        .bind(1, last).bind(2, kRowsPerCheckin).run();
    if (sqlite3_changes(db.handle()) < kRowsPerCheckin) nonce_log_pruned_ = true;
}

// Remembers the nonces of the log (the last TTL's, and any a stop left unpruned) in memory.
void SqliteStore::load_nonce_log()
{
    auto& rows = writer_.prepare("SELECT seq, seen_at, nonces FROM checkin_nonce_batches ORDER BY seq");
    while (rows.step()) {
        auto const seq = rows.integer(0);
        auto const seen_at = rows.integer(1);
        auto const text = rows.text(2);
        std::string_view rest = text;
        // Lines in pairs: a device id, then its nonce.
        for (auto end = rest.find('\n'); end != std::string_view::npos; end = rest.find('\n')) {
            auto const device_id = rest.substr(0, end);
            rest.remove_prefix(end + 1);
            auto const nonce_end = rest.find('\n');
            if (nonce_end == std::string_view::npos) break;
            nonces_.add(RecentNonces::key(device_id, rest.substr(0, nonce_end)), seen_at, seq);
            rest.remove_prefix(nonce_end + 1);
        }
        next_nonce_batch_ = seq + 1;
    }
    rows.reset();
}

// Appends the open transaction's nonces to the log, as one row.
void SqliteStore::log_transaction_nonces()
{
    if (txn_nonces_.empty()) return;
    writer_.prepare("INSERT INTO checkin_nonce_batches (seq, seen_at, nonces) VALUES (?1, ?2, ?3)")
        .bind(1, next_nonce_batch_).bind(2, txn_nonces_.seen_at()).bind_static(3, txn_nonces_.text()).run();
}

// A check-in waiting for the commit thread, with all it needs in one allocation (it was five).
struct SqliteStore::CheckinWrite final : PendingWrite {
    CheckinWrite(SqliteStore& s, PostureReport report, Evaluate e, TimePoint at, std::chrono::seconds ttl, CheckinDone d)
        : PendingWrite(/*is_relaxed=*/true, /*is_self_contained=*/true), store(s), checkin(std::move(report)),
          evaluate(std::move(e)), now(at), nonce_ttl(ttl), done(std::move(d))
    {
    }
    JobOutcome run(Connection& db) override
    {
        outcome = store.record_checkin(db, checkin, evaluate, now, nonce_ttl);
        if (!outcome) return JobOutcome::escalated;
        return outcome->has_error() ? JobOutcome::rolled_back : JobOutcome::kept;
    }
    void finish(bool is_committed) override
    {
        if (outcome && outcome->has_error()) return done(std::move(*outcome));
        if (!is_committed || !outcome) return done(storage_error("the check-in was not saved"));
        done(std::move(*outcome));
    }

    SqliteStore& store;
    QueuedCheckin checkin;
    Evaluate evaluate;
    TimePoint now;
    std::chrono::seconds nonce_ttl;
    CheckinDone done;
    std::optional<ApiResult<EncodedDecision>> outcome;  // the latest run's; nullopt: escalated
};

void SqliteStore::check_in_async(PostureReport report, Evaluate evaluate, TimePoint now,
                                 std::chrono::seconds nonce_ttl, CheckinDone done)
{
    enqueue(std::make_unique<CheckinWrite>(*this, std::move(report), std::move(evaluate), now, nonce_ttl, std::move(done)));
}

}  // namespace

std::unique_ptr<Store> open_sqlite_store(std::string const& path)
{
    try {
        // Readers use connections of their own, so an in-memory database must be a shared one.
        if (path == ":memory:") {
            static std::atomic<int> counter{0};
            return std::make_unique<SqliteStore>("file:exemptd-memory-" + std::to_string(++counter) +
                                                 "?mode=memory&cache=shared");
        }
        return std::make_unique<SqliteStore>(path);
    } catch (sqlite::Failure const& f) {
        int const primary = f.code & 0xff;
        if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) throw std::runtime_error(corrupt_message(path, f.message));
        throw std::runtime_error("cannot open database " + path + ": " + f.message);
    }
}

// ---------------------------------------------------------------------------------------------
// Online backup.

namespace {

// fsync()s a file or folder; answers errno, 0 on success.
int sync_path(std::string const& path, int flags)
{
    int const fd = ::open(path.c_str(), flags | O_CLOEXEC);
    if (fd < 0) return errno;
    int const rc = ::fsync(fd) == 0 ? 0 : errno;
    ::close(fd);
    return rc;
}

// Copies the database behind `source` into the empty file `copy_path`, then switches the copy to
// rollback-journal mode so that it is one self-contained file. Throws sqlite::Failure.
void copy_database(sqlite3* source, std::string const& copy_path)
{
    Connection copy(copy_path);
    sqlite3_backup* backup = sqlite3_backup_init(copy.handle(), "main", source, "main");
    if (backup == nullptr) throw sqlite::Failure{sqlite3_extended_errcode(copy.handle()), sqlite3_errmsg(copy.handle())};
    // One step holds one read transaction for the whole copy: a consistent snapshot.
    int const rc = sqlite3_backup_step(backup, -1);
    sqlite::check(copy.handle(), sqlite3_backup_finish(backup));
    if (rc != SQLITE_DONE) throw sqlite::Failure{rc, sqlite3_errstr(rc)};
    copy.exec("PRAGMA journal_mode=DELETE");
}

// Throws sqlite::Failure unless PRAGMA integrity_check finds the database at `path` sound.
void check_integrity(std::string const& path)
{
    Connection copy(path);
    auto& check = copy.prepare("PRAGMA integrity_check");
    auto const verdict = check.step() ? check.text(0) : std::string("no answer");
    if (verdict != "ok") throw sqlite::Failure{SQLITE_CORRUPT, "integrity_check of the copy: " + verdict};
}

// The steps of Store::backup on an open connection to the source.
Result<void> backup_database(sqlite3* source, std::string const& destination)
{
    std::string tmp = destination + ".XXXXXX";
    int const fd = ::mkstemp(tmp.data());  // 0600: the copy holds the whole register
    if (fd < 0) {
        int const err = errno;
        spdlog::error("event=backup_failed destination=\"{}\" reason=\"cannot create {}: {}\"", destination, tmp,
                      std::strerror(err));
        return boost::system::error_code{err, boost::system::system_category()};
    }
    ::close(fd);
    try {
        copy_database(source, tmp);
        check_integrity(tmp);
        if (int const err = sync_path(tmp, O_RDONLY); err != 0)
            throw std::system_error(err, std::generic_category(), "fsync " + tmp);
        std::filesystem::rename(tmp, destination);
        auto const folder = std::filesystem::path(destination).parent_path();
        if (int const err = sync_path(folder.empty() ? "." : folder.string(), O_RDONLY | O_DIRECTORY); err != 0)
            throw std::system_error(err, std::generic_category(), "fsync the folder of " + destination);
        return {};
    } catch (sqlite::Failure const& f) {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
        spdlog::error("event=backup_failed destination=\"{}\" code={} reason=\"{}\"", destination, f.code, f.message);
        return boost::system::error_code{f.code, sqlite_category()};
    } catch (std::system_error const& e) {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
        spdlog::error("event=backup_failed destination=\"{}\" reason=\"{}\"", destination, e.what());
        return boost::system::error_code{e.code().value(), boost::system::system_category()};
    }
}

}  // namespace

Result<void> SqliteStore::backup(std::string const& destination) const
{
    Result<void> copied;
    auto const ran = read([&](Connection& db) {
        copied = backup_database(db.handle(), destination);
        return 0;  // not bool: result<bool> would be ambiguous to build from an error_code
    });
    if (!ran) return ran.error();
    return copied;
}

Result<void> backup_sqlite_database(std::string const& path, std::string const& destination)
{
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        spdlog::error("event=backup_failed reason=\"no database file at {}\"", path);
        return make_error_code(Errc::not_found);
    }
    try {
        Connection source(path);  // read-write so that, as the last connection, it removes -wal/-shm
        source.exec("PRAGMA query_only=ON");
        return backup_database(source.handle(), destination);
    } catch (sqlite::Failure const& f) {
        spdlog::error("event=backup_failed source=\"{}\" code={} reason=\"{}\"", path, f.code, f.message);
        return boost::system::error_code{f.code, sqlite_category()};
    }
}

namespace {

enum class RowEffect { created, changed, unchanged };

// Records one import row where it differs from the registry. `checked_in` tells whether the
// device has reported facts, that is whether it has a decision that the enrollment feeds.
RowEffect apply_import_row(Connection& db, EnrollmentRow const& row, ImportAudit const& audit, bool& checked_in)
{
    auto& current = db.prepare("SELECT enrolled, owner, source, last_checkin FROM devices WHERE device_id = ?1");
    bool const known = current.bind(1, row.device_id).step();
    bool const registered = known && !current.is_null(0);
    checked_in = known && !current.is_null(3);
    bool const same = registered && (current.integer(0) != 0) == row.enrolled && current.text(1) == row.owner &&
                      current.text(2) == row.source;
    current.reset();
    if (same) return RowEffect::unchanged;
    db.prepare("INSERT INTO devices (device_id, enrolled, owner, source, enrollment_updated_at, "
               "enrollment_updated_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
               "ON CONFLICT (device_id) DO UPDATE SET enrolled = ?2, owner = ?3, source = ?4, "
               "enrollment_updated_at = ?5, enrollment_updated_by = ?6")
        .bind(1, row.device_id).bind(2, std::int64_t{row.enrolled}).bind(3, row.owner).bind(4, row.source)
        .bind(5, seconds_of(audit.at)).bind(6, audit.actor)
        .run();
    return registered ? RowEffect::changed : RowEffect::created;
}

std::string import_details(ImportOutcome const& o, ImportAudit const& audit)
{
    boost::json::object const details{{"rows", o.rows},           {"created", o.created},
                                      {"changed", o.changed},     {"unchanged", o.unchanged},
                                      {"reevaluated", o.reevaluated}, {"sha256", audit.file_sha256}};
    return boost::json::serialize(details);
}

}  // namespace

// One job of the group commit, so all or nothing: the statements are prepared once and reused
// for every row. The import's audit record comes before the decision changes it causes.
Result<ImportOutcome> SqliteStore::import_enrollments(std::vector<EnrollmentRow> const& rows, ImportAudit const& audit,
                                                      Evaluate const& evaluate)
{
    ImportOutcome outcome;
    bool const committed = write([&](Connection& db) {
        outcome = ImportOutcome{static_cast<std::int64_t>(rows.size())};
        std::vector<std::string const*> refresh;
        for (auto const& row : rows) {
            bool checked_in = false;
            auto const effect = apply_import_row(db, row, audit, checked_in);
            ++(effect == RowEffect::created ? outcome.created
               : effect == RowEffect::changed ? outcome.changed
                                              : outcome.unchanged);
            if (effect != RowEffect::unchanged && checked_in) refresh.push_back(&row.device_id);
        }
        if (outcome.created + outcome.changed == 0) return true;  // nothing changed: nothing to audit
        outcome.reevaluated = static_cast<std::int64_t>(refresh.size());
        append_audit(db, {audit.at, audit.actor, "devices.imported", "devices", import_details(outcome, audit)});
        for (auto const* id : refresh) refresh_decision(db, *id, evaluate, audit.at);
        return true;
    });
    if (!committed) return make_error_code(Errc::storage_failure);
    return outcome;
}

}  // namespace exemptd
