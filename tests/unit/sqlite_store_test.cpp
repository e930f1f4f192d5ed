#include "support.hpp"

#include "exemptd/evaluator.hpp"
#include "exemptd/store.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using exemptd::Basis;
using exemptd::Decision;
using exemptd::DeviceFacts;
using exemptd::DeviceQuery;
using exemptd::DeviceState;
using exemptd::Enrollment;
using exemptd::Errc;
using exemptd::TimePoint;
using exemptd::test::fixed_time;
using exemptd::test::PostureJson;

namespace {

TimePoint const t0 = fixed_time("2026-11-27T21:00:00Z");
constexpr std::chrono::seconds kNonceTtl = 660s;

// A second, independent connection to a store's file, to look at what was written.
class Inspector {
public:
    explicit Inspector(std::string const& path)
    {
        if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
            throw std::runtime_error("cannot open " + path);
        sqlite3_busy_timeout(db_, 2000);
    }
    ~Inspector() { sqlite3_close(db_); }
    Inspector(Inspector const&) = delete;
    Inspector& operator=(Inspector const&) = delete;

    // Every row of `sql`, each column as text ("" for NULL).
    std::vector<std::vector<std::string>> rows(std::string const& sql)
    {
        sqlite3_stmt* stmt = nullptr;
        if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK)
            throw std::runtime_error(sqlite3_errmsg(db_));
        std::vector<std::vector<std::string>> out;
        while (sqlite3_step(stmt) == SQLITE_ROW) {
            std::vector<std::string> row;
            for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
                auto const* text = reinterpret_cast<char const*>(sqlite3_column_text(stmt, i));
                row.emplace_back(text != nullptr ? text : "");
            }
            out.push_back(std::move(row));
        }
        sqlite3_finalize(stmt);
        return out;
    }
    long long number(std::string const& sql) { return std::stoll(rows(sql).at(0).at(0)); }
    // The nonces in the log (each "device_id\nnonce\n" in a transaction's row), of the rows
    // matching `where` when given.
    long long logged_nonces(std::string const& where = "1")
    {
        return number("SELECT coalesce(sum(length(nonces) - length(replace(nonces, char(10), ''))), 0) / 2 "
                      "FROM checkin_nonce_batches WHERE " + where);
    }
    // The result code of running `sql`.
    int exec(std::string const& sql) { return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr); }

private:
    sqlite3* db_ = nullptr;
};

Enrollment enrollment(bool enrolled, std::string owner = "sam@example.com", TimePoint at = t0,
                      std::string source = "mdm")
{
    return Enrollment{enrolled, std::move(owner), std::move(source), at, "admin@example.com"};
}

exemptd::PostureReport report(std::string const& device_id, std::string const& nonce, TimePoint at = t0)
{
    return PostureJson{device_id, at}.nonce(nonce).report();
}

// Evaluates with the standard policy, as the router does.
exemptd::Evaluate standard_evaluate(TimePoint now)
{
    static exemptd::Policy const policy = exemptd::test::standard_policy();
    return [now](DeviceFacts const& facts, std::vector<exemptd::Exemption> const&) {
        return exemptd::evaluate(policy, facts, {}, now);
    };
}

// Turns the nonce log back into its shape before schema version 7, a row per nonce, for the
// tests that make an older database. Every transaction's row must hold one nonce.
constexpr char const* kNonceLogBeforeVersion7 =
    "CREATE TABLE checkin_nonce_log (seq INTEGER PRIMARY KEY, device_id TEXT NOT NULL, nonce TEXT NOT NULL, "
    "seen_at INTEGER NOT NULL); INSERT INTO checkin_nonce_log (seq, device_id, nonce, seen_at) SELECT seq, "
    "substr(nonces, 1, instr(nonces, char(10)) - 1), substr(nonces, instr(nonces, char(10)) + 1, "
    "length(nonces) - instr(nonces, char(10)) - 1), seen_at FROM checkin_nonce_batches; "
    "DROP TABLE checkin_nonce_batches;";

// Evaluates with the standard policy as the router does, naming its version: a check-in that
// decides again may then skip the evaluation (Decision::stable_until).
exemptd::Evaluate versioned_evaluate(TimePoint now)
{
    static auto const policy = std::make_shared<exemptd::Policy const>(exemptd::test::standard_policy());
    return exemptd::policy_evaluator(policy, now);
}

// For enrollments of devices that have not checked in, which are not evaluated.
exemptd::Evaluate const kNoEvaluate = [](DeviceFacts const&, std::vector<exemptd::Exemption> const&) -> Decision {
    throw std::logic_error("a device that never checked in was evaluated");
};

// An evaluator that records what the store handed it and answers a fixed decision.
struct RecordingEvaluate {
    std::vector<DeviceFacts> seen;
    bool allow = true;
    Basis basis = Basis::compliant;

    exemptd::Evaluate fn(TimePoint now)
    {
        return [this, now](DeviceFacts const& facts, std::vector<exemptd::Exemption> const&) {
            seen.push_back(facts);
            Decision d;
            d.device_id = facts.device_id;
            d.allow = allow;
            d.basis = basis;
            d.evaluated_at = now;
            d.controls.push_back({"MDM-01", "Device is enrolled in MDM", allow, allow ? "" : "not enrolled", "", "", {}, {}});
            return d;
        };
    }
};

// Transactions the store's writer has run (the commit latency histogram's count).
std::uint64_t commits(exemptd::Store& store)
{
    std::uint64_t total = 0;
    for (auto const n : store.commit_latency().snapshot().counts) total += n;
    return total;
}

exemptd::ApiResult<Decision> check_in(exemptd::Store& store, std::string const& device, std::string const& nonce,
                                      TimePoint now, exemptd::Evaluate const& evaluate)
{
    return store.check_in(report(device, nonce, now), evaluate, now, kNonceTtl);
}

std::vector<std::string> ids(exemptd::Result<std::vector<exemptd::DeviceRecord>> const& devices)
{
    if (!devices) throw std::runtime_error("list_devices failed: " + devices.error().message());
    std::vector<std::string> out;
    for (auto const& d : *devices) out.push_back(d.device_id);
    return out;
}

}  // namespace

TEST_CASE("A new enrollment creates the device and is audited", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);

    auto const first = store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate);
    REQUIRE(first);
    CHECK(first->created);
    CHECK(first->changed);
    CHECK(first->device.device_id == "LAPTOP-0042");
    REQUIRE(first->device.enrollment);
    CHECK(first->device.enrollment->enrolled);
    CHECK(first->device.enrollment->owner == "sam@example.com");
    CHECK(first->device.enrollment->source == "mdm");
    CHECK(first->device.enrollment->updated_at == t0);
    CHECK(first->device.enrollment->updated_by == "admin@example.com");
    CHECK_FALSE(first->device.last_checkin);
    CHECK_FALSE(first->device.latest_decision);

    Inspector db(path);
    auto const audit = db.rows("SELECT actor, action, subject, at FROM audit ORDER BY seq");
    REQUIRE(audit.size() == 1);
    CHECK(audit[0] == std::vector<std::string>{"admin@example.com", "device.enrolled", "device:LAPTOP-0042",
                                               "2026-11-27T21:00:00Z"});

    SECTION("the same enrollment again changes and audits nothing") {
        auto const again = store->put_enrollment("LAPTOP-0042", enrollment(true, "sam@example.com", t0 + 1h), kNoEvaluate);
        REQUIRE(again);
        CHECK_FALSE(again->created);
        CHECK_FALSE(again->changed);
        REQUIRE(again->device.enrollment);
        CHECK(again->device.enrollment->updated_at == t0);  // nothing was written
        CHECK(db.number("SELECT count(*) FROM audit") == 1);
    }
    SECTION("a different enrollment updates the device and is audited") {
        auto const changed = store->put_enrollment("LAPTOP-0042", enrollment(false, "sam@example.com", t0 + 1h, "manual"), kNoEvaluate);
        REQUIRE(changed);
        CHECK_FALSE(changed->created);
        CHECK(changed->changed);
        REQUIRE(changed->device.enrollment);
        CHECK_FALSE(changed->device.enrollment->enrolled);
        CHECK(changed->device.enrollment->source == "manual");
        CHECK(changed->device.enrollment->updated_at == t0 + 1h);
        auto const rows = db.rows("SELECT action FROM audit ORDER BY seq");
        CHECK(rows == std::vector<std::vector<std::string>>{{"device.enrolled"}, {"device.unenrolled"}});
    }
    SECTION("a new owner alone is a change") {
        auto const changed = store->put_enrollment("LAPTOP-0042", enrollment(true, "jordan@example.com"), kNoEvaluate);
        REQUIRE(changed);
        CHECK(changed->changed);
        CHECK(changed->device.enrollment->owner == "jordan@example.com");
    }
}

TEST_CASE("An unknown device is not_found", "[store]")
{
    auto store = exemptd::open_sqlite_store(":memory:");
    auto const device = store->get_device("LAPTOP-0042");
    REQUIRE_FALSE(device);
    CHECK(device.error() == exemptd::make_error_code(Errc::not_found));
}

TEST_CASE("Each :memory: store is a database of its own", "[store]")
{
    auto a = exemptd::open_sqlite_store(":memory:");
    auto b = exemptd::open_sqlite_store(":memory:");
    REQUIRE(a->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
    CHECK(a->get_device("LAPTOP-0042"));
    CHECK_FALSE(b->get_device("LAPTOP-0042"));
}

TEST_CASE("A check-in stores the report's identity fields and the decision", "[store]")
{
    auto store = exemptd::open_sqlite_store(":memory:");
    auto const decision = check_in(*store, "LAPTOP-0042", "nonce-0001", t0, standard_evaluate(t0));
    REQUIRE(decision);
    CHECK_FALSE(decision->allow);  // not in the registry, so MDM-01 fails
    CHECK(decision->basis == Basis::noncompliant);

    auto const device = store->get_device("LAPTOP-0042");
    REQUIRE(device);
    CHECK_FALSE(device->enrollment);  // a check-in never enrolls
    CHECK(device->hostname == "sam-laptop");
    CHECK(device->serial == "C02XYZ123");
    CHECK(device->os_name == "debian");
    CHECK(device->os_version == "12.8");
    CHECK(device->last_checkin == t0);
    REQUIRE(device->latest_decision);
    CHECK(exemptd::encode_decision(*device->latest_decision) == exemptd::encode_decision(*decision));
}

TEST_CASE("A check-in evaluates enrollment from the registry, never from the report", "[store]")
{
    auto store = exemptd::open_sqlite_store(":memory:");
    RecordingEvaluate evaluate;

    SECTION("unknown to the registry") {
        REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, evaluate.fn(t0)));
        // A first check-in changes the decision, so it may be evaluated again in the durable commit.
        REQUIRE_FALSE(evaluate.seen.empty());
        CHECK_FALSE(evaluate.seen.back().enrolled);
        CHECK(evaluate.seen.back().device_id == "LAPTOP-0042");
        CHECK(evaluate.seen.back().facts.at("disk_encrypted") == exemptd::FactValue{true});
    }
    SECTION("enrolled in the registry") {
        REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
        REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, evaluate.fn(t0)));
        CHECK(evaluate.seen.at(0).enrolled);
        auto const allowed = check_in(*store, "LAPTOP-0042", "nonce-0002", t0 + 1min, standard_evaluate(t0 + 1min));
        REQUIRE(allowed);
        CHECK(allowed->allow);
        CHECK(allowed->basis == Basis::compliant);
    }
    SECTION("recorded as a personal device that is not enrolled") {
        REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(false), kNoEvaluate));
        REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, evaluate.fn(t0)));
        CHECK_FALSE(evaluate.seen.at(0).enrolled);
    }
}

TEST_CASE("Enrolling a device that has checked in re-evaluates its decision at once", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    auto const denied = check_in(*store, "LAPTOP-0042", "nonce-0001", t0, standard_evaluate(t0));
    REQUIRE(denied);
    REQUIRE_FALSE(denied->allow);

    auto const enrolled = store->put_enrollment("LAPTOP-0042", enrollment(true, "sam@example.com", t0 + 1h),
                                                standard_evaluate(t0 + 1h));
    REQUIRE(enrolled);
    REQUIRE(enrolled->device.latest_decision);
    CHECK(enrolled->device.latest_decision->allow);
    CHECK(enrolled->device.latest_decision->basis == Basis::compliant);
    CHECK(enrolled->device.last_checkin == t0);  // an enrollment is not a check-in

    Inspector db(path);
    auto const actions = db.rows("SELECT action, at FROM audit ORDER BY seq");
    CHECK(actions == std::vector<std::vector<std::string>>{{"decision.changed", "2026-11-27T21:00:00Z"},
                                                           {"device.enrolled", "2026-11-27T22:00:00Z"},
                                                           {"decision.changed", "2026-11-27T22:00:00Z"}});
}

TEST_CASE("The check-in after an enrollment change evaluates the new registry entry", "[store]")
{
    // Between two check-ins the store keeps the device's state in memory; a write by anything
    // but a check-in must not leave the next check-in with the old registry view.
    auto store = exemptd::open_sqlite_store(":memory:");
    RecordingEvaluate evaluate;
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, evaluate.fn(t0)));
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0002", t0 + 1min, evaluate.fn(t0 + 1min)));
    REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true, "kim@example.com", t0 + 2min), evaluate.fn(t0 + 2min)));
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0003", t0 + 3min, evaluate.fn(t0 + 3min)));
    REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(false, "lee@example.com", t0 + 4min), evaluate.fn(t0 + 4min)));
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0004", t0 + 5min, evaluate.fn(t0 + 5min)));

    std::vector<std::pair<bool, std::string>> seen;
    for (auto const& facts : evaluate.seen) seen.emplace_back(facts.enrolled, facts.owner);
    CHECK(seen == std::vector<std::pair<bool, std::string>>{{false, ""},  // the first check-in
                                                            {false, ""},
                                                            {true, "kim@example.com"},  // the enrollment
                                                            {true, "kim@example.com"},
                                                            {false, "lee@example.com"},
                                                            {false, "lee@example.com"}});
}

TEST_CASE("The current decision is evaluated afresh from the stored facts without storing it", "[store]")
{
    auto store = exemptd::open_sqlite_store(":memory:");
    RecordingEvaluate evaluate;

    SECTION("an unknown device is not_found") {
        auto const current = store->current_decision("LAPTOP-0042", evaluate.fn(t0));
        REQUIRE_FALSE(current);
        CHECK(current.error() == exemptd::make_error_code(Errc::not_found));
    }
    SECTION("a device that never checked in has none") {
        REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
        auto const current = store->current_decision("LAPTOP-0042", evaluate.fn(t0));
        REQUIRE(current);
        CHECK_FALSE(*current);
        CHECK(evaluate.seen.empty());
    }
    SECTION("a device that checked in is evaluated from its latest report") {
        REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
        auto r = PostureJson{"LAPTOP-0042", t0}.nonce("nonce-0001").fact("disk_encrypted", false).fact("kernel", "6.1").report();
        REQUIRE(store->check_in(r, standard_evaluate(t0), t0, kNonceTtl));

        evaluate.allow = false;
        evaluate.basis = Basis::noncompliant;
        auto const current = store->current_decision("LAPTOP-0042", evaluate.fn(t0 + 1h));
        REQUIRE(current);
        REQUIRE(*current);
        CHECK((*current)->evaluated_at == t0 + 1h);
        REQUIRE(evaluate.seen.size() == 1);
        auto const& facts = evaluate.seen[0];
        CHECK(facts.enrolled);
        CHECK(facts.facts == r.facts);
        CHECK(facts.failing_since == std::map<std::string, TimePoint>{{"ENC-01", t0}});

        auto const stored = store->get_device("LAPTOP-0042");
        REQUIRE(stored);
        REQUIRE(stored->latest_decision);
        CHECK(stored->latest_decision->allow);  // still the check-in's decision (grace)
        CHECK(stored->latest_decision->evaluated_at == t0);
    }
}

TEST_CASE("A check-in that changes the decision is written once, and durably", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    RecordingEvaluate evaluate;
    // The first check-in changes the decision (audited: synced before it is answered); the
    // second does not (bookkeeping only).
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, evaluate.fn(t0)));
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0002", t0 + 1min, evaluate.fn(t0 + 1min)));
    Inspector db(path);
    CHECK(db.logged_nonces() == 2);
    CHECK(db.number("SELECT count(*) FROM decision_history") == 1);
    CHECK(db.number("SELECT count(*) FROM audit WHERE action = 'decision.changed'") == 1);
    CHECK(commits(*store) == 3);  // the first check-in's relaxed attempt, its durable rerun, the second

    // A later change, for a device whose state the store keeps in memory, is durable too.
    evaluate.allow = false;
    evaluate.basis = Basis::noncompliant;
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0003", t0 + 2min, evaluate.fn(t0 + 2min)));
    CHECK(db.number("SELECT count(*) FROM decision_history") == 2);
    CHECK(db.number("SELECT count(*) FROM audit WHERE action = 'decision.changed'") == 2);
    CHECK(commits(*store) == 5);
}

TEST_CASE("A check-in that decides again stores exactly the text of its own decision", "[store]")
{
    // A check-in that reports what its device's cached decision was made from, under the same
    // policy version and within its stable_until, takes that decision again instead of being
    // evaluated: it must write what evaluating it would.
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
    Inspector db(path);
    int nonce = 0;
    // Checks in with `posture` at `at`; the stored text must be what encoding a fresh evaluation
    // (from the database, with no cache) at `at` writes.
    auto const check_in_as = [&](PostureJson posture, TimePoint at) {
        auto r = posture.reported_at(at).nonce("nonce-000" + std::to_string(++nonce)).report();
        REQUIRE(store->check_in(r, versioned_evaluate(at), at, kNonceTtl));
        auto const fresh = store->current_decision("LAPTOP-0042", standard_evaluate(at));
        REQUIRE(fresh);
        REQUIRE(*fresh);
        auto const stored = db.rows("SELECT decision_json FROM devices WHERE device_id = 'LAPTOP-0042'").at(0).at(0);
        CHECK(stored == exemptd::encode_decision(**fresh));
        return stored;
    };
    auto const unencrypted = PostureJson{"LAPTOP-0042", t0}.fact("disk_encrypted", false);

    auto const first = check_in_as(unencrypted, t0);
    SECTION("the same facts later: the same decision, evaluated at the later time") {
        auto const again = check_in_as(unencrypted, t0 + 1h);
        CHECK_THAT(again, Catch::Contains(R"("evaluated_at":"2026-11-27T22:00:00Z")"));
        CHECK(again.size() == first.size());
        check_in_as(unencrypted, t0 + 2h);
        // The whole row is what a store with nothing cached (opened afresh) writes.
        auto const row = [](Inspector& i) { return i.rows("SELECT * FROM devices WHERE device_id = 'LAPTOP-0042'"); };
        auto const decided_again = row(db);
        store.reset();
        store = exemptd::open_sqlite_store(path);
        check_in_as(unencrypted, t0 + 2h);
        CHECK(row(db) == decided_again);
    }
    SECTION("a fact no control checks: the same decision, and the report's facts stored") {
        int evaluations = 0;
        auto const counted = [&](TimePoint at) {
            auto inner = versioned_evaluate(at);
            return exemptd::Evaluate([&evaluations, inner](DeviceFacts const& d, std::vector<exemptd::Exemption> const& a) {
                ++evaluations;
                return inner(d, a);
            }, std::make_shared<exemptd::Policy const>(exemptd::test::standard_policy()));
        };
        auto const with_uptime = [&](int seconds, TimePoint at, std::string const& its_nonce) {
            auto r = PostureJson{unencrypted}.fact("uptime_seconds", seconds).reported_at(at).nonce(its_nonce).report();
            REQUIRE(store->check_in(r, counted(at), at, kNonceTtl));
        };
        with_uptime(100, t0 + 1h, "nonce-up1");
        with_uptime(200, t0 + 2h, "nonce-up2");
        CHECK(evaluations == 0);
        auto const row = [](Inspector& i) { return i.rows("SELECT * FROM devices WHERE device_id = 'LAPTOP-0042'"); };
        auto const decided_again = row(db);
        auto const facts = db.rows("SELECT facts_json FROM devices WHERE device_id = 'LAPTOP-0042'").at(0).at(0);
        CHECK_THAT(facts, Catch::Contains(R"("uptime_seconds":200)"));
        // The whole row is what a store with nothing cached writes for the same report.
        store.reset();
        store = exemptd::open_sqlite_store(path);
        with_uptime(200, t0 + 2h, "nonce-up3");
        CHECK(evaluations == 1);
        CHECK(row(db) == decided_again);
    }
    SECTION("other facts with the same outcome: what they observed") {
        auto const again = check_in_as(PostureJson{unencrypted}.fact("screen_lock_seconds", 200), t0 + 1h);
        CHECK_THAT(again, Catch::Contains(R"("observed":"200")"));
    }
    SECTION("past the end of a grace, though every control still passes or fails as before") {
        // OS-01 fails too (no grace), so the decision is deny before and after ENC-01's grace ends.
        auto const unpatched = PostureJson{unencrypted}.fact("os_patch_age_days", 45);
        auto const before = check_in_as(unpatched, t0 + 1h);
        CHECK_THAT(before, Catch::Contains(R"("grace_until":"2026-11-30T21:00:00Z")"));
        auto const after = check_in_as(unpatched, t0 + 72h);
        CHECK_THAT(after, !Catch::Contains("grace_until"));
    }
    SECTION("a replay is refused, though its report would decide again") {
        auto const row = db.rows("SELECT * FROM devices WHERE device_id = 'LAPTOP-0042'");
        auto const logged = db.logged_nonces();
        auto r = PostureJson{unencrypted}.reported_at(t0 + 1min).nonce("nonce-0001").report();  // the first's
        auto const replay = store->check_in(r, versioned_evaluate(t0 + 1min), t0 + 1min, kNonceTtl);
        REQUIRE_FALSE(replay);
        CHECK(replay.error().code == "replay");
        CHECK(db.rows("SELECT * FROM devices WHERE device_id = 'LAPTOP-0042'") == row);
        CHECK(db.logged_nonces() == logged);
    }
    SECTION("a policy of another version") {
        auto const other = std::make_shared<exemptd::Policy const>(exemptd::test::policy_from_yaml(
            std::regex_replace(exemptd::test::kStandardPolicyYaml, std::regex("interval_seconds: 600"), "interval_seconds: 300")));
        auto r = PostureJson{unencrypted}.reported_at(t0 + 1h).nonce("nonce-other").report();
        REQUIRE(store->check_in(r, exemptd::policy_evaluator(other, t0 + 1h), t0 + 1h, kNonceTtl));
        auto const stored = db.rows("SELECT decision_json FROM devices WHERE device_id = 'LAPTOP-0042'").at(0).at(0);
        CHECK_THAT(stored, Catch::Contains(R"("next_checkin_seconds":300)"));
    }
}

TEST_CASE("A check-in that fails part-way writes nothing, and its nonce is not spent", "[store]")
{
    // A check-in runs without a savepoint of its own: a failure after its first write loses the
    // whole transaction, which must leave no trace of it.
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    RecordingEvaluate evaluate;
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, evaluate.fn(t0)));
    Inspector db(path);
    // Fails the device row's UPDATE, after the nonce is refused no more in memory.
    REQUIRE(db.exec("CREATE TRIGGER fail_checkin BEFORE UPDATE OF last_checkin ON devices "
                    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END") == SQLITE_OK);
    auto const nonces_before = db.logged_nonces();

    auto const failed = check_in(*store, "LAPTOP-0042", "nonce-0002", t0 + 1min, evaluate.fn(t0 + 1min));
    REQUIRE_FALSE(failed);
    CHECK(failed.error().status == 503);
    CHECK(db.logged_nonces() == nonces_before);
    CHECK(store->get_device("LAPTOP-0042")->last_checkin == t0);

    REQUIRE(db.exec("DROP TRIGGER fail_checkin") == SQLITE_OK);
    auto const retried = check_in(*store, "LAPTOP-0042", "nonce-0002", t0 + 2min, evaluate.fn(t0 + 2min));
    REQUIRE(retried);
    CHECK(store->get_device("LAPTOP-0042")->last_checkin == t0 + 2min);
    CHECK(db.logged_nonces() == nonces_before + 1);
}

TEST_CASE("A replayed nonce is refused with 409 replay and nothing is written", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    RecordingEvaluate evaluate;
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, evaluate.fn(t0)));
    auto const evaluated_before = evaluate.seen.size();
    Inspector db(path);
    auto const audit_before = db.number("SELECT count(*) FROM audit");
    auto const nonces_before = db.logged_nonces();

    evaluate.allow = false;
    evaluate.basis = Basis::noncompliant;
    auto replay = PostureJson{"LAPTOP-0042", t0 + 1min}.nonce("nonce-0001").set("hostname", "evil-twin").report();
    auto const refused = store->check_in(replay, evaluate.fn(t0 + 1min), t0 + 1min, kNonceTtl);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().status == 409);
    CHECK(refused.error().code == "replay");
    CHECK(evaluate.seen.size() == evaluated_before);  // the replay was not even evaluated

    auto const device = store->get_device("LAPTOP-0042");
    REQUIRE(device);
    CHECK(device->hostname == "sam-laptop");
    CHECK(device->last_checkin == t0);
    REQUIRE(device->latest_decision);
    CHECK(device->latest_decision->allow);
    CHECK(db.number("SELECT count(*) FROM audit") == audit_before);
    CHECK(db.logged_nonces() == nonces_before);

    SECTION("a fresh nonce is accepted") {
        CHECK(check_in(*store, "LAPTOP-0042", "nonce-0002", t0 + 1min, evaluate.fn(t0 + 1min)));
    }
    SECTION("the same nonce from another device is not a replay") {
        CHECK(check_in(*store, "LAPTOP-0043", "nonce-0001", t0 + 1min, evaluate.fn(t0 + 1min)));
    }
    SECTION("a nonce is forgotten once it is older than the TTL") {
        CHECK_FALSE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0 + kNonceTtl, evaluate.fn(t0 + kNonceTtl)));
        CHECK(check_in(*store, "LAPTOP-0042", "nonce-0001", t0 + kNonceTtl + 1s, evaluate.fn(t0 + kNonceTtl + 1s)));
    }
}

TEST_CASE("Failure streaks carry across check-ins so grace counts from the first failure", "[store]")
{
    auto store = exemptd::open_sqlite_store(":memory:");
    REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
    auto const unencrypted = [&](std::string const& nonce, TimePoint at) {
        auto r = PostureJson{"LAPTOP-0042", at}.nonce(nonce).fact("disk_encrypted", false).report();
        return store->check_in(r, standard_evaluate(at), at, kNonceTtl);
    };
    auto const enc = [](Decision const& d) { return d.controls.at(1); };

    auto const first = unencrypted("nonce-0001", t0);
    REQUIRE(first);
    REQUIRE(enc(*first).id == "ENC-01");
    CHECK(enc(*first).failing_since == t0);
    CHECK(first->basis == Basis::grace);

    SECTION("still failing 71 hours later: same streak, still in grace") {
        auto const later = unencrypted("nonce-0002", t0 + 71h);
        REQUIRE(later);
        CHECK(enc(*later).failing_since == t0);
        CHECK(enc(*later).grace_until == t0 + 72h);
        CHECK(later->allow);
        CHECK(later->basis == Basis::grace);
    }
    SECTION("still failing 72 hours later: grace is over") {
        REQUIRE(unencrypted("nonce-0002", t0 + 1h));
        auto const later = unencrypted("nonce-0003", t0 + 72h);
        REQUIRE(later);
        CHECK(enc(*later).failing_since == t0);
        CHECK_FALSE(later->allow);
        CHECK(later->basis == Basis::noncompliant);
    }
    SECTION("a passing check-in ends the streak") {
        auto r = PostureJson{"LAPTOP-0042", t0 + 1h}.nonce("nonce-0002").report();
        REQUIRE(store->check_in(r, standard_evaluate(t0 + 1h), t0 + 1h, kNonceTtl));
        auto const again = unencrypted("nonce-0003", t0 + 80h);
        REQUIRE(again);
        CHECK(enc(*again).failing_since == t0 + 80h);
        CHECK(again->basis == Basis::grace);
    }
    SECTION("the stored streak is what the evaluator receives") {
        RecordingEvaluate evaluate;
        REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0002", t0 + 2h, evaluate.fn(t0 + 2h)));
        REQUIRE_FALSE(evaluate.seen.empty());
        CHECK(evaluate.seen.back().failing_since == std::map<std::string, TimePoint>{{"ENC-01", t0}});
    }
}

TEST_CASE("The sweep stores and audits the decision a grace's end changes, without a check-in", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
    REQUIRE(store->put_enrollment("LAPTOP-0043", enrollment(true), kNoEvaluate));
    auto unencrypted = PostureJson{"LAPTOP-0042", t0}.nonce("nonce-0001").fact("disk_encrypted", false).report();
    auto const first = store->check_in(unencrypted, versioned_evaluate(t0), t0, kNonceTtl);
    REQUIRE(first);
    REQUIRE(first->basis == Basis::grace);
    auto compliant = PostureJson{"LAPTOP-0043", t0}.nonce("nonce-0002").report();
    REQUIRE(store->check_in(compliant, versioned_evaluate(t0), t0, kNonceTtl));
    // The same report an hour later: the stored decision made again, which keeps its redecide_at.
    auto later = PostureJson{"LAPTOP-0042", t0 + 1h}.nonce("nonce-0003").fact("disk_encrypted", false).report();
    REQUIRE(store->check_in(later, versioned_evaluate(t0 + 1h), t0 + 1h, kNonceTtl));
    Inspector db(path);
    // ENC-01's grace (72 hours) is when the first device's decision may change; never the second's.
    CHECK(db.rows("SELECT device_id, redecide_at FROM devices ORDER BY device_id") ==
          std::vector<std::vector<std::string>>{{"LAPTOP-0042", std::to_string((t0 + 72h).time_since_epoch().count())},
                                                {"LAPTOP-0043", ""}});
    auto const denied = [&] { return ids(store->list_devices(DeviceQuery{.state = DeviceState::denied})); };
    auto const decisions_changed = [&] { return db.number("SELECT count(*) FROM audit WHERE action = 'decision.changed'"); };
    auto const changed_before = decisions_changed();

    SECTION("within the grace, the sweep decides nothing again") {
        auto const swept = store->sweep(t0 + 71h, versioned_evaluate(t0 + 71h));
        REQUIRE(swept);
        CHECK(swept->redecided == 0);
        CHECK(denied().empty());
        CHECK(decisions_changed() == changed_before);
    }
    SECTION("at its end, the sweep stores the deny and audits it, once") {
        auto const swept = store->sweep(t0 + 72h, versioned_evaluate(t0 + 72h));
        REQUIRE(swept);
        CHECK(swept->redecided == 1);
        CHECK(denied() == std::vector<std::string>{"LAPTOP-0042"});
        CHECK(decisions_changed() == changed_before + 1);
        CHECK(db.rows("SELECT redecide_at FROM devices WHERE device_id = 'LAPTOP-0042'").at(0).at(0).empty());
        auto const again = store->sweep(t0 + 73h, versioned_evaluate(t0 + 73h));
        REQUIRE(again);
        CHECK(again->redecided == 0);
        CHECK(decisions_changed() == changed_before + 1);
    }
}

TEST_CASE("A check-in finds its row by the rowid it read, and refuses rather than lose a write when it moved", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, versioned_evaluate(t0)));
    Inspector db(path);
    // Behind the store's back (nothing of the daemon does this), the row moves: the rowid the
    // store keeps for the device's next check-in no longer names it.
    REQUIRE(db.exec("UPDATE devices SET rowid = rowid + 1000 WHERE device_id = 'LAPTOP-0042'") == SQLITE_OK);

    auto const moved = check_in(*store, "LAPTOP-0042", "nonce-0002", t0 + 1min, versioned_evaluate(t0 + 1min));
    REQUIRE_FALSE(moved);
    CHECK(moved.error().status == 503);
    CHECK(db.number("SELECT last_checkin FROM devices WHERE device_id = 'LAPTOP-0042'") ==
          t0.time_since_epoch().count());
    // The failed transaction emptied the store's memory: the next check-in reads the row again.
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0003", t0 + 2min, versioned_evaluate(t0 + 2min)));
    CHECK(db.number("SELECT last_checkin FROM devices WHERE device_id = 'LAPTOP-0042'") ==
          (t0 + 2min).time_since_epoch().count());
}

TEST_CASE("A changed decision is audited and an unchanged one is not", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    RecordingEvaluate evaluate;
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, evaluate.fn(t0)));
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0002", t0 + 15min, evaluate.fn(t0 + 15min)));
    evaluate.allow = false;
    evaluate.basis = Basis::noncompliant;
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0003", t0 + 30min, evaluate.fn(t0 + 30min)));

    Inspector db(path);
    auto const audit = db.rows("SELECT action, subject, at FROM audit ORDER BY seq");
    REQUIRE(audit.size() == 2);
    CHECK(audit[0] == std::vector<std::string>{"decision.changed", "device:LAPTOP-0042", "2026-11-27T21:00:00Z"});
    CHECK(audit[1] == std::vector<std::string>{"decision.changed", "device:LAPTOP-0042", "2026-11-27T21:30:00Z"});
}

TEST_CASE("The audit trail is hash-chained and append-only", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    REQUIRE(store->record({t0, "exemptd", "policy.loaded", "policy", R"({"version":"sha256:abc"})"}));
    REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
    REQUIRE(store->record({t0 + 1s, "exemptd", "policy.loaded", "policy", R"({"version":"sha256:def"})"}));

    Inspector db(path);
    auto const rows = db.rows("SELECT seq, prev_hash, hash, action, details FROM audit ORDER BY seq");
    REQUIRE(rows.size() == 3);
    CHECK(rows[0][0] == "1");
    CHECK(rows[0][1] == std::string(64, '0'));
    CHECK(rows[0][4] == R"({"version":"sha256:abc"})");
    for (std::size_t i = 0; i < rows.size(); ++i) {
        INFO("record " << rows[i][0]);
        CHECK(rows[i][2].size() == 64);
        CHECK(rows[i][2].find_first_not_of("0123456789abcdef") == std::string::npos);
        if (i > 0) CHECK(rows[i][1] == rows[i - 1][2]);
    }
    CHECK(rows[0][2] != rows[2][2]);

    SECTION("an update is refused by the database") {
        CHECK(db.exec("UPDATE audit SET actor = 'mallory' WHERE seq = 1") != SQLITE_OK);
        CHECK(db.rows("SELECT actor FROM audit WHERE seq = 1").at(0).at(0) == "exemptd");
    }
    SECTION("a delete is refused by the database") {
        CHECK(db.exec("DELETE FROM audit WHERE seq = 3") != SQLITE_OK);
        CHECK(db.number("SELECT count(*) FROM audit") == 3);
    }
}

TEST_CASE("The nonce log keeps the nonces within the TTL, and a reopened store still refuses them", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    RecordingEvaluate evaluate;
    {
        auto store = exemptd::open_sqlite_store(path);
        REQUIRE(check_in(*store, "LAPTOP-0043", "nonce-0001", t0, evaluate.fn(t0)));
        for (int i = 0; i < 30; ++i) {
            auto const at = t0 + std::chrono::minutes{i};
            REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-" + std::to_string(1000 + i), at, evaluate.fn(at)));
        }
    }
    Inspector db(path);
    // At t0 + 29 min with a TTL of 11 min the nonces seen from t0 + 18 min on remain, whichever
    // device used the older ones.
    // (The row of t0 + 17 min stays too: a transaction's row goes only with the next expiry, in
    // case its check-ins straddle two of the in-memory buckets.)
    CHECK(db.logged_nonces() == 13);
    CHECK(db.logged_nonces("seen_at < " + std::to_string((t0 + 17min).time_since_epoch().count())) == 0);

    auto store = exemptd::open_sqlite_store(path);
    auto const now = t0 + 30min;
    auto const replay = check_in(*store, "LAPTOP-0042", "nonce-1019", now, evaluate.fn(now));  // seen at t0 + 19 min
    REQUIRE_FALSE(replay);
    CHECK(replay.error().code == "replay");
    CHECK(check_in(*store, "LAPTOP-0042", "nonce-1018", now, evaluate.fn(now)));  // seen at t0 + 18 min: expired
    CHECK(check_in(*store, "LAPTOP-0043", "nonce-0001", now, evaluate.fn(now)));
}

TEST_CASE("Device lists filter by overlapping states", "[store]")
{
    auto store = exemptd::open_sqlite_store(":memory:");
    auto const now = t0 + 100h;
    auto const stale_before = now - 72h;
    RecordingEvaluate evaluate;

    // A: enrolled, recent, compliant.
    REQUIRE(store->put_enrollment("A-COMPLIANT", enrollment(true), kNoEvaluate));
    REQUIRE(check_in(*store, "A-COMPLIANT", "nonce-a-01", now - 1h, evaluate.fn(now - 1h)));
    // B: not in the registry, recent, denied.
    evaluate.allow = false;
    evaluate.basis = Basis::noncompliant;
    REQUIRE(check_in(*store, "B-DENIED", "nonce-b-01", now - 1h, evaluate.fn(now - 1h)));
    // C: recorded as not enrolled (BYOD), recent, allowed on an exemption.
    evaluate.allow = true;
    evaluate.basis = Basis::exempted;
    REQUIRE(store->put_enrollment("C-EXEMPTED", enrollment(false), kNoEvaluate));
    REQUIRE(check_in(*store, "C-EXEMPTED", "nonce-c-01", now - 1h, evaluate.fn(now - 1h)));
    // D: enrolled 100 hours ago, never checked in (stale however one counts).
    REQUIRE(store->put_enrollment("D-SILENT", enrollment(true), kNoEvaluate));
    // E: enrolled, allowed in grace, last seen 80 hours ago.
    evaluate.basis = Basis::grace;
    REQUIRE(store->put_enrollment("E-STALE", enrollment(true), kNoEvaluate));
    REQUIRE(check_in(*store, "E-STALE", "nonce-e-01", now - 80h, evaluate.fn(now - 80h)));
    // F: enrolled, denied, last seen exactly at the stale boundary.
    evaluate.allow = false;
    evaluate.basis = Basis::noncompliant;
    REQUIRE(store->put_enrollment("F-BOUNDARY", enrollment(true), kNoEvaluate));
    REQUIRE(check_in(*store, "F-BOUNDARY", "nonce-f-01", stale_before, evaluate.fn(stale_before)));

    auto const list = [&](DeviceState state) { return ids(store->list_devices(DeviceQuery{.state = state, .stale_before = stale_before})); };
    using Ids = std::vector<std::string>;
    CHECK(list(DeviceState::any) == Ids{"A-COMPLIANT", "B-DENIED", "C-EXEMPTED", "D-SILENT", "E-STALE", "F-BOUNDARY"});
    CHECK(list(DeviceState::allowed) == Ids{"A-COMPLIANT", "C-EXEMPTED", "E-STALE"});
    CHECK(list(DeviceState::denied) == Ids{"B-DENIED", "F-BOUNDARY"});
    CHECK(list(DeviceState::exempted) == Ids{"C-EXEMPTED"});
    CHECK(list(DeviceState::unenrolled) == Ids{"B-DENIED", "C-EXEMPTED"});
    CHECK(list(DeviceState::stale) == Ids{"D-SILENT", "E-STALE"});

    SECTION("the listed records carry the device's data") {
        auto const devices = store->list_devices(DeviceQuery{.state = DeviceState::exempted, .stale_before = stale_before});
        REQUIRE(devices);
        REQUIRE(devices->size() == 1);
        auto const& c = devices->front();
        REQUIRE(c.enrollment);
        CHECK_FALSE(c.enrollment->enrolled);
        CHECK(c.last_checkin == now - 1h);
        REQUIRE(c.latest_decision);
        CHECK(c.latest_decision->basis == Basis::exempted);
    }
    SECTION("an empty store lists nothing") {
        auto empty = exemptd::open_sqlite_store(":memory:");
        CHECK(ids(empty->list_devices(DeviceQuery{})).empty());
    }
}

TEST_CASE("A read does not hide or block later writes", "[store]")
{
    SECTION("a list after a device read sees a device enrolled in between (file)") {
        exemptd::test::TempDir dir;
        auto store = exemptd::open_sqlite_store(dir.file("exemptd.db"));
        REQUIRE(store->put_enrollment("LAPTOP-0001", enrollment(true), kNoEvaluate));
        REQUIRE(store->get_device("LAPTOP-0001"));
        REQUIRE(store->put_enrollment("LAPTOP-0002", enrollment(true), kNoEvaluate));
        CHECK(ids(store->list_devices(DeviceQuery{})) == std::vector<std::string>{"LAPTOP-0001", "LAPTOP-0002"});
    }
    SECTION("a list pages by id: after, then limit") {
        auto store = exemptd::open_sqlite_store(":memory:");
        for (auto const* id : {"LAPTOP-0003", "LAPTOP-0001", "LAPTOP-0002"})
            REQUIRE(store->put_enrollment(id, enrollment(true), kNoEvaluate));
        using Ids = std::vector<std::string>;
        CHECK(ids(store->list_devices(DeviceQuery{.limit = 2})) == Ids{"LAPTOP-0001", "LAPTOP-0002"});
        CHECK(ids(store->list_devices(DeviceQuery{.after = "LAPTOP-0001"})) == Ids{"LAPTOP-0002", "LAPTOP-0003"});
        CHECK(ids(store->list_devices(DeviceQuery{.after = "LAPTOP-0001", .limit = 1})) == Ids{"LAPTOP-0002"});
        CHECK(ids(store->list_devices(DeviceQuery{.after = "LAPTOP-0003"})).empty());
    }
    SECTION("a check-in after a device read is saved (:memory:)") {
        auto store = exemptd::open_sqlite_store(":memory:");
        RecordingEvaluate evaluate;
        REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
        REQUIRE(store->get_device("LAPTOP-0042"));
        auto const saved = check_in(*store, "LAPTOP-0042", "nonce-0001", t0, evaluate.fn(t0));
        if (!saved) FAIL_CHECK(saved.error().code + ": " + saved.error().message);
        auto const device = store->get_device("LAPTOP-0042");
        REQUIRE(device);
        CHECK(device->last_checkin == t0);
    }
    SECTION("an enrollment after a device read is saved (:memory:)") {
        auto store = exemptd::open_sqlite_store(":memory:");
        REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
        REQUIRE(store->get_device("LAPTOP-0042"));
        auto const changed = store->put_enrollment("LAPTOP-0042", enrollment(false), kNoEvaluate);
        CHECK(changed);
        auto const device = store->get_device("LAPTOP-0042");
        REQUIRE(device);
        REQUIRE(device->enrollment);
        CHECK_FALSE(device->enrollment->enrolled);
    }
}

TEST_CASE("A version 1 database loses its check-in log and keeps its nonces in the nonce log", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    {
        auto store = exemptd::open_sqlite_store(path);
        REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, standard_evaluate(t0)));
    }
    {
        Inspector db(path);  // back to version 1's shape
        REQUIRE(db.exec(kNonceLogBeforeVersion7) == SQLITE_OK);
        REQUIRE(db.exec("CREATE TABLE checkin_nonces (device_id TEXT NOT NULL, nonce TEXT NOT NULL, seen_at INTEGER "
                        "NOT NULL, PRIMARY KEY (device_id, nonce)) WITHOUT ROWID; INSERT INTO checkin_nonces "
                        "SELECT device_id, nonce, seen_at FROM checkin_nonce_log; DROP TABLE checkin_nonce_log;"
                        "DROP TABLE clean_stop; DROP INDEX exemptions_by_review; ALTER TABLE devices DROP COLUMN decision_key; CREATE TABLE checkins (seq INTEGER PRIMARY KEY, "
                        "device_id TEXT NOT NULL, at INTEGER NOT NULL, reported_at INTEGER NOT NULL, "
                        "decision TEXT NOT NULL, basis TEXT NOT NULL); PRAGMA user_version = 1;") == SQLITE_OK);
    }
    auto store = exemptd::open_sqlite_store(path);
    Inspector db(path);
    CHECK(db.number("PRAGMA user_version") == 8);
    CHECK(db.number("SELECT count(*) FROM sqlite_master WHERE name IN ('checkins', 'checkin_nonces', 'checkin_nonce_log')") == 0);
    CHECK(db.logged_nonces("nonces = 'LAPTOP-0042' || char(10) || 'nonce-0001' || char(10)") == 1);
    CHECK_FALSE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0 + 1min, standard_evaluate(t0 + 1min)));  // still known
    // The decision made before decision_key existed is recognised as unchanged: no audit record.
    auto const audited = db.number("SELECT count(*) FROM audit");
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0002", t0 + 2min, standard_evaluate(t0 + 2min)));
    CHECK(db.number("SELECT count(*) FROM audit") == audited);
}

TEST_CASE("A version 5 database gets a rowid devices table with the same rows", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    {
        auto store = exemptd::open_sqlite_store(path);
        REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
        REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, standard_evaluate(t0)));
        REQUIRE(check_in(*store, "LAPTOP-0043", "nonce-0001", t0, standard_evaluate(t0)));
    }
    std::vector<std::vector<std::string>> rows;
    {
        Inspector db(path);  // back to version 5's WITHOUT ROWID table (foreign keys are off here)
        auto const columns = db.rows("SELECT sql FROM sqlite_master WHERE name = 'devices'").at(0).at(0);
        auto const body = columns.substr(columns.find('('));
        auto const old_table = "CREATE TABLE devices_v5 " +
                               std::regex_replace(body, std::regex("PRIMARY KEY NOT NULL"), "PRIMARY KEY") + " WITHOUT ROWID";
        REQUIRE(db.exec(kNonceLogBeforeVersion7) == SQLITE_OK);
        REQUIRE(db.exec(old_table + "; INSERT INTO devices_v5 SELECT * FROM devices; DROP TABLE devices; "
                        "ALTER TABLE devices_v5 RENAME TO devices; PRAGMA user_version = 5;") == SQLITE_OK);
        rows = db.rows("SELECT * FROM devices ORDER BY device_id");
        REQUIRE(rows.size() == 2);
        REQUIRE(db.number("SELECT count(*) FROM decision_history") == 2);
    }
    auto store = exemptd::open_sqlite_store(path);
    Inspector db(path);
    CHECK(db.number("PRAGMA user_version") == 8);
    auto const sql = db.rows("SELECT sql FROM sqlite_master WHERE name = 'devices'").at(0).at(0);
    CHECK(sql.find("WITHOUT ROWID") == std::string::npos);
    CHECK(db.rows("SELECT * FROM devices ORDER BY device_id") == rows);
    CHECK(db.rows("PRAGMA foreign_key_check").empty());
    CHECK(store->get_device("LAPTOP-0042")->enrollment->enrolled);
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0002", t0 + 1min, standard_evaluate(t0 + 1min)));
    CHECK(store->get_device("LAPTOP-0042")->last_checkin == t0 + 1min);
}

TEST_CASE("A migration that leaves a broken foreign key is rolled back and the store does not open", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    {
        auto store = exemptd::open_sqlite_store(path);
        REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, standard_evaluate(t0)));
    }
    {
        Inspector db(path);  // foreign keys are off here: a history row for a device nobody has
        REQUIRE(db.exec(kNonceLogBeforeVersion7) == SQLITE_OK);
        REQUIRE(db.exec("INSERT INTO decision_history (device_id, at, decision_json) VALUES ('GHOST', 0, '{}');"
                        "PRAGMA user_version = 5;") == SQLITE_OK);
    }
    CHECK_THROWS_WITH(exemptd::open_sqlite_store(path), Catch::Contains("a migration broke a foreign key"));
    Inspector db(path);
    CHECK(db.number("PRAGMA user_version") == 5);
    CHECK(db.number("SELECT count(*) FROM devices WHERE device_id = 'LAPTOP-0042'") == 1);
}

TEST_CASE("A store reopened from its file keeps its data and its schema", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    {
        auto store = exemptd::open_sqlite_store(path);
        REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
        REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, standard_evaluate(t0)));
    }
    long long version = 0;
    {
        Inspector db(path);
        version = db.number("PRAGMA user_version");
        CHECK(version >= 1);
    }

    auto store = exemptd::open_sqlite_store(path);
    auto const device = store->get_device("LAPTOP-0042");
    REQUIRE(device);
    REQUIRE(device->enrollment);
    CHECK(device->enrollment->enrolled);
    CHECK(device->last_checkin == t0);
    REQUIRE(device->latest_decision);
    CHECK(device->latest_decision->allow);

    Inspector db(path);
    CHECK(db.number("PRAGMA user_version") == version);
    CHECK(db.number("SELECT count(*) FROM audit") == 2);  // enrolled + first decision

    SECTION("a nonce seen before the restart is still a replay") {
        auto const replay = check_in(*store, "LAPTOP-0042", "nonce-0001", t0 + 1min, standard_evaluate(t0 + 1min));
        REQUIRE_FALSE(replay);
        CHECK(replay.error().code == "replay");
    }
    SECTION("the audit chain continues across the restart") {
        REQUIRE(store->record({t0 + 1h, "exemptd", "policy.loaded", "policy", "{}"}));
        auto const rows = db.rows("SELECT seq, prev_hash, hash FROM audit ORDER BY seq");
        REQUIRE(rows.size() == 3);
        CHECK(rows[2][0] == "3");
        CHECK(rows[2][1] == rows[1][2]);
    }
}

TEST_CASE("A database from a newer exemptd, or one that cannot be opened, is refused", "[store]")
{
    exemptd::test::TempDir dir;
    SECTION("a schema version beyond this build") {
        auto const path = dir.file("future.db");
        { auto store = exemptd::open_sqlite_store(path); }
        {
            Inspector db(path);
            REQUIRE(db.exec("PRAGMA user_version = 999") == SQLITE_OK);
        }
        CHECK_THROWS_AS(exemptd::open_sqlite_store(path), std::runtime_error);
    }
    SECTION("a path in a folder that does not exist") {
        CHECK_THROWS_AS(exemptd::open_sqlite_store(dir.file("missing/exemptd.db")), std::runtime_error);
    }
    SECTION("a file that is not a database") {
        auto const path = dir.write("garbage.db", std::string(4096, 'x'));
        CHECK_THROWS_AS(exemptd::open_sqlite_store(path), std::runtime_error);
    }
}

namespace {

// The names of the files in `dir`, sorted.
std::vector<std::string> file_names(std::filesystem::path const& dir)
{
    std::vector<std::string> out;
    for (auto const& entry : std::filesystem::directory_iterator(dir)) out.push_back(entry.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

TEST_CASE("An online backup is a checked, self-contained copy of a store in use", "[store][backup]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
    REQUIRE(check_in(*store, "LAPTOP-0042", "nonce-0001", t0, standard_evaluate(t0)));
    std::filesystem::create_directory(dir.path() / "backups");
    auto const copy = dir.file("backups/copy.db");

    REQUIRE(store->backup(copy));
    // Written after the backup: not in the copy.
    REQUIRE(store->put_enrollment("LAPTOP-0043", enrollment(true), kNoEvaluate));

    CHECK(file_names(dir.path() / "backups") == std::vector<std::string>{"copy.db"});  // no temp, -wal or -shm
    auto const perms = std::filesystem::status(copy).permissions();
    CHECK((perms & (std::filesystem::perms::group_all | std::filesystem::perms::others_all)) ==
          std::filesystem::perms::none);
    {
        Inspector db(copy);
        CHECK(db.rows("PRAGMA journal_mode") == std::vector<std::vector<std::string>>{{"delete"}});
        CHECK(db.number("SELECT count(*) FROM devices") == 1);
        CHECK(db.number("SELECT count(*) FROM audit") == 2);  // enrolled + first decision
        CHECK(db.number("PRAGMA user_version") == Inspector(path).number("PRAGMA user_version"));
    }
    {
        auto restored = exemptd::open_sqlite_store(copy);
        auto const device = restored->get_device("LAPTOP-0042");
        REQUIRE(device);
        CHECK(device->last_checkin == t0);
        auto const chain = restored->verify_audit();
        REQUIRE(chain);
        CHECK(chain->ok);
        CHECK(chain->records == 2);
    }

    SECTION("a second backup replaces the first") {
        REQUIRE(store->backup(copy));
        CHECK(Inspector(copy).number("SELECT count(*) FROM devices") == 2);
        CHECK(file_names(dir.path() / "backups") == std::vector<std::string>{"copy.db"});
    }
    SECTION("a backup into a missing folder fails and leaves nothing") {
        auto const failed = store->backup(dir.file("missing/copy.db"));
        REQUIRE_FALSE(failed);
        CHECK_FALSE(std::filesystem::exists(dir.path() / "missing"));
    }
}

TEST_CASE("A database file is backed up without opening a store, and never created", "[store][backup]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));

    REQUIRE(exemptd::backup_sqlite_database(path, dir.file("copy.db")));
    CHECK(Inspector(dir.file("copy.db")).number("SELECT count(*) FROM audit") == 1);

    auto const missing = exemptd::backup_sqlite_database(dir.file("absent.db"), dir.file("copy2.db"));
    REQUIRE_FALSE(missing);
    CHECK(missing.error() == make_error_code(Errc::not_found));
    CHECK_FALSE(std::filesystem::exists(dir.file("absent.db")));
    CHECK_FALSE(std::filesystem::exists(dir.file("copy2.db")));
}

// ---------------------------------------------------------------------------------------------
// The clean-stop marker and the integrity check (README "Crash safety").

namespace {

using Catch::Matchers::Contains;

long long clean_stops(std::string const& path)
{
    return Inspector(path).number("SELECT count(*) FROM clean_stop");
}

// A database file of about 150 pages, most of them device rows, closed cleanly.
void make_closed_database(std::string const& path)
{
    {
        auto store = exemptd::open_sqlite_store(path);
        CHECK_FALSE(store->integrity_check_deferred());  // a new file is checked at once
        REQUIRE(store->put_enrollment("LAPTOP-0042", enrollment(true), kNoEvaluate));
    }
    Inspector db(path);
    REQUIRE(db.exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
                    "INSERT INTO devices (device_id, owner) SELECT printf('FILLER-%04d', i), hex(randomblob(100)) "
                    "FROM n") == SQLITE_OK);
}

// Overwrites the b-tree header of a page in the middle of the (closed) file, a device page.
void damage_middle_page(std::string const& path)
{
    long long size = 0, pages = 0;
    {
        Inspector db(path);
        size = db.number("PRAGMA page_size");
        pages = db.number("PRAGMA page_count");
    }
    REQUIRE(pages > 100);
    REQUIRE_FALSE(std::filesystem::exists(path + "-wal"));  // all of it is in the file
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp((pages / 2 - 1) * size);
    file.write(std::string(48, '\xff').data(), 48);
    REQUIRE(file.good());
}

}  // namespace

TEST_CASE("A clean close records a clean stop, which the next open takes before deferring its check",
          "[store][integrity]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    make_closed_database(path);
    REQUIRE(clean_stops(path) == 1);

    long long expected = 0;
    {
        auto store = exemptd::open_sqlite_store(path);
        CHECK(store->integrity_check_deferred());
        CHECK(clean_stops(path) == 0);  // a crash from now on leaves no marker
        CHECK(store->get_device("LAPTOP-0042"));
        SECTION("a store whose deferred check passed records a clean stop again") {
            auto const found = store->check_integrity();
            REQUIRE(found);
            CHECK_FALSE(*found);
            REQUIRE(store->put_enrollment("LAPTOP-0043", enrollment(true), kNoEvaluate));
            expected = 1;
        }
        SECTION("a store closed before its deferred check finished records none") {
            std::stop_source stop;
            stop.request_stop();
            auto const found = store->check_integrity(stop.get_token());
            REQUIRE_FALSE(found);
            CHECK(found.error() == boost::system::errc::operation_canceled);
            expected = 0;
        }
    }
    CHECK(clean_stops(path) == expected);
    auto store = exemptd::open_sqlite_store(path);
    CHECK(store->integrity_check_deferred() == (expected == 1));
}

TEST_CASE("After a crash the next open checks the file first and refuses a damaged one", "[store][integrity]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    make_closed_database(path);
    REQUIRE(clean_stops(path) == 1);
    // A process that opens the store and dies without closing it, as under SIGKILL.
    pid_t const child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        try {
            auto store = exemptd::open_sqlite_store(path);
            std::_Exit(store->integrity_check_deferred() ? 0 : 2);
        } catch (...) {
            std::_Exit(3);
        }
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    CHECK(clean_stops(path) == 0);

    SECTION("an undamaged file is checked at open and served") {
        auto store = exemptd::open_sqlite_store(path);
        CHECK_FALSE(store->integrity_check_deferred());
        CHECK(store->get_device("LAPTOP-0042"));
    }
    SECTION("a damaged file is refused with a clear message, every time") {
        { Inspector(path).exec("PRAGMA wal_checkpoint(TRUNCATE)"); }  // the crash's WAL, into the file
        std::filesystem::remove(path + "-wal");
        damage_middle_page(path);
        for (int attempt = 0; attempt < 2; ++attempt) {
            CHECK_THROWS_WITH(exemptd::open_sqlite_store(path),
                              Contains("database " + path + " is corrupt: ") && Contains("; restore from a backup"));
        }
    }
}

TEST_CASE("A deferred check that finds damage refuses writes and leaves no clean stop", "[store][integrity]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    make_closed_database(path);
    damage_middle_page(path);
    {
        auto store = exemptd::open_sqlite_store(path);  // the marker's page is sound: the check waits
        REQUIRE(store->integrity_check_deferred());
        REQUIRE(store->put_enrollment("LAPTOP-0043", enrollment(true), kNoEvaluate));  // before the check
        auto const found = store->check_integrity();
        REQUIRE(found);
        REQUIRE(*found);
        CHECK_THAT(**found, Contains("database " + path + " is corrupt: ") && Contains("; restore from a backup"));
        auto const refused = store->put_enrollment("LAPTOP-0044", enrollment(true), kNoEvaluate);
        REQUIRE_FALSE(refused);
        CHECK(refused.error() == exemptd::make_error_code(Errc::storage_failure));
        CHECK(store->get_device("LAPTOP-0042"));  // reads go on until the daemon stops
    }
    CHECK(clean_stops(path) == 0);
    CHECK_THROWS_WITH(exemptd::open_sqlite_store(path), Contains("is corrupt"));
}

TEST_CASE("The checkpointer copies the WAL back into the database file while writes go on", "[store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    auto const initial_size = std::filesystem::file_size(path);
    RecordingEvaluate evaluate;
    // New devices' rows and nonces: a few thousand WAL frames, past the checkpointer's threshold
    // and well short of the size at which the commit thread would copy them itself.
    for (int i = 0; i < 1000; ++i) {
        auto const id = "LAPTOP-" + std::to_string(10000 + i);
        REQUIRE(check_in(*store, id, "nonce-" + std::to_string(100000 + i), t0, evaluate.fn(t0)));
    }
    auto const wal_size = std::filesystem::file_size(path + "-wal");
    INFO("WAL " << wal_size << " bytes");
    REQUIRE(wal_size > 1000 * 4096);
    // The copy happens on the checkpointer's thread: wait for it, generously.
    for (int i = 0; i < 200 && std::filesystem::file_size(path) <= initial_size; ++i) std::this_thread::sleep_for(50ms);
    CHECK(std::filesystem::file_size(path) > initial_size);
}
