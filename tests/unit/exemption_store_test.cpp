// The exemption register in the SQLite store: ids, transitions, filters, the sweeper, and
// transitions racing from several threads.

#include "support.hpp"

#include "exemptd/evaluator.hpp"
#include "exemptd/exemption_rules.hpp"
#include "exemptd/store.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <latch>
#include <map>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using exemptd::ApiResult;
using exemptd::Basis;
using exemptd::Decision;
using exemptd::DeviceFacts;
using exemptd::Enrollment;
using exemptd::Errc;
using exemptd::Exemption;
using exemptd::ExemptionQuery;
using exemptd::ExemptionState;
using exemptd::RiskLevel;
using exemptd::TimePoint;
using exemptd::test::fixed_time;
using exemptd::test::PostureJson;

namespace {

TimePoint const t0 = fixed_time("2026-11-27T21:00:00Z");
constexpr std::chrono::seconds kNonceTtl = 660s;
std::string const kRequester = "admin@example.com";
std::string const kManager = "it-manager@example.com";  // approves medium and low
std::string const kCiso = "ciso@example.com";          // approves every level

exemptd::Policy const& policy()
{
    static exemptd::Policy const p = exemptd::test::standard_policy();
    return p;
}

// A second connection to the store's file, to look at what was written.
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

    // The audit records' actions after `seq`, in order.
    std::vector<std::string> actions_after(long long seq)
    {
        std::vector<std::string> out;
        for (auto const& row : rows("SELECT action FROM audit WHERE seq > " + std::to_string(seq) + " ORDER BY seq"))
            out.push_back(row.at(0));
        return out;
    }
    long long audit_count() { return number("SELECT count(*) FROM audit"); }

    // Checks that the audit records are numbered 1..N and each one's prev_hash is the hash before it.
    void check_chain()
    {
        auto const chain = rows("SELECT seq, prev_hash, hash FROM audit ORDER BY seq");
        std::string prev(64, '0');
        for (std::size_t i = 0; i < chain.size(); ++i) {
            INFO("audit record " << chain[i][0]);
            CHECK(chain[i][0] == std::to_string(i + 1));
            CHECK(chain[i][1] == prev);
            prev = chain[i][2];
        }
    }

private:
    sqlite3* db_ = nullptr;
};

// A draft as the router builds it after request_exemption: medium risk (90 days at most).
Exemption draft(std::string subject, std::vector<std::string> controls, TimePoint expires_at,
                std::string requester = kRequester, TimePoint requested_at = t0)
{
    Exemption e;
    e.subject = std::move(subject);
    e.controls = std::move(controls);
    e.justification = "vendor tool pins the OS version";
    e.likelihood = RiskLevel::medium;
    e.impact = RiskLevel::medium;
    e.level = RiskLevel::medium;
    e.mitigations = {"network access limited to email"};
    e.evidence = "ticket SEC-42";
    e.requested_by = std::move(requester);
    e.requested_at = requested_at;
    e.expires_at = expires_at;
    return e;
}

// Evaluates with the standard policy, letting every recorded-active exemption cover its controls
// (the store's contract: the evaluator checks expiry and compensating controls).
exemptd::Evaluate covering_evaluate(TimePoint now)
{
    return [now](DeviceFacts const& facts, std::vector<Exemption> const& active) {
        std::vector<exemptd::CoveringExemption> covers;
        for (auto const& e : active) covers.push_back({e.id, e.controls, e.compensating_controls, e.expires_at});
        return exemptd::evaluate(policy(), facts, covers, now);
    };
}

// For transitions on subjects that are not devices, which are never evaluated.
exemptd::Evaluate const kNoEvaluate = [](DeviceFacts const&, std::vector<Exemption> const&) -> Decision {
    throw std::logic_error("a subject without a check-in was evaluated");
};

std::optional<exemptd::ApiError> no_agreement_needed(Exemption const&, std::string const&)
{
    return std::nullopt;
}

ApiResult<Exemption> approve(exemptd::Store& store, std::string const& id, std::string const& approver, TimePoint now,
                             exemptd::Evaluate const& evaluate)
{
    return store.transition_exemption(id, "exemption.approved", approver, now, [&](Exemption const& current) {
        return exemptd::approve_exemption(policy(), current, approver, "risk accepted", now, no_agreement_needed);
    }, evaluate);
}
ApiResult<Exemption> approve(exemptd::Store& store, std::string const& id, std::string const& approver, TimePoint now)
{
    return approve(store, id, approver, now, covering_evaluate(now));
}

ApiResult<Exemption> reject(exemptd::Store& store, std::string const& id, std::string const& actor, TimePoint now)
{
    return store.transition_exemption(id, "exemption.rejected", actor, now, [&](Exemption const& current) {
        return exemptd::reject_exemption(policy(), current, actor, "not justified", now);
    }, covering_evaluate(now));
}

ApiResult<Exemption> revoke(exemptd::Store& store, std::string const& id, std::string const& actor, TimePoint now)
{
    return store.transition_exemption(id, "exemption.revoked", actor, now, [&](Exemption const& current) {
        return exemptd::revoke_exemption(current, actor, "laptop replaced", now);
    }, covering_evaluate(now));
}

ApiResult<Exemption> review(exemptd::Store& store, std::string const& id, std::string const& actor, TimePoint now)
{
    return store.transition_exemption(id, "exemption.reviewed", actor, now, [&](Exemption const& current) {
        return exemptd::review_exemption(policy(), current, actor, "mitigations still in place", now);
    }, covering_evaluate(now));
}

Exemption created(exemptd::Store& store, Exemption const& d)
{
    auto e = store.create_exemption(d);
    if (!e) throw std::runtime_error("create_exemption failed: " + e.error().message());
    return *e;
}

// Enrolls LAPTOP-0042 and checks it in with an OS patched 45 days ago: OS-01 fails, so it is denied.
void enroll_and_check_in_unpatched(exemptd::Store& store, TimePoint at = t0)
{
    REQUIRE(store.put_enrollment("LAPTOP-0042", Enrollment{true, "sam@example.com", "mdm", at, kRequester},
                                 kNoEvaluate));
    auto report = PostureJson{"LAPTOP-0042", at}.nonce("nonce-0001").fact("os_patch_age_days", 45).report();
    auto const decision = store.check_in(report, covering_evaluate(at), at, kNonceTtl);
    REQUIRE(decision);
    REQUIRE_FALSE(decision->allow);
}

exemptd::ControlResult const& control(Decision const& d, std::string const& id)
{
    for (auto const& c : d.controls) {
        if (c.id == id) return c;
    }
    throw std::runtime_error("no control " + id + " in the decision");
}

std::vector<std::string> ids(exemptd::Result<std::vector<Exemption>> const& listed)
{
    if (!listed) throw std::runtime_error("list_exemptions failed: " + listed.error().message());
    std::vector<std::string> out;
    for (auto const& e : *listed) out.push_back(e.id);
    return out;
}

boost::json::object details_of(std::string const& text)
{
    return boost::json::parse(text).as_object();
}

// A register query as of `now`; empty arguments do not filter.
ExemptionQuery query(TimePoint now, std::string subject = {}, std::string control = {},
                     std::optional<ExemptionState> state = {}, std::optional<TimePoint> expiring_before = {})
{
    ExemptionQuery q;
    q.subject = std::move(subject);
    q.control = std::move(control);
    q.state = state;
    q.expiring_before = expiring_before;
    q.now = now;
    return q;
}

using Ids = std::vector<std::string>;
using Rows = std::vector<std::vector<std::string>>;

}  // namespace

TEST_CASE("Exemptions get ids EX-000001, EX-000002, ... in order and each request is audited", "[exemption-store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);

    auto first_draft = draft("device:LAPTOP-0042", {"OS-01"}, t0 + 30 * 24h);
    first_draft.id = "EX-999999";  // the store assigns ids, whatever the draft says
    first_draft.compensating_controls = {"ENC-01"};
    auto const first = created(*store, first_draft);
    auto const second = created(*store, draft("user:jordan@example.com", {"HR-03"}, t0 + 60 * 24h, kCiso, t0 + 1min));
    auto const third = created(*store, draft("account:aws-root", {"IAM-01"}, t0 + 10 * 24h));
    CHECK(first.id == "EX-000001");
    CHECK(second.id == "EX-000002");
    CHECK(third.id == "EX-000003");
    CHECK(first.state == ExemptionState::pending);

    auto const stored = store->get_exemption("EX-000001");
    REQUIRE(stored);
    CHECK(exemptd::encode_exemption_record(*stored) == exemptd::encode_exemption_record(first));
    CHECK(stored->compensating_controls == std::vector<std::string>{"ENC-01"});
    CHECK(stored->requested_by == kRequester);

    Inspector db(path);
    auto const audit = db.rows("SELECT actor, action, subject, at, details FROM audit ORDER BY seq");
    REQUIRE(audit.size() == 3);
    CHECK(audit[0][0] == kRequester);
    CHECK(audit[0][1] == "exemption.requested");
    CHECK(audit[0][2] == "exemption:EX-000001");
    CHECK(audit[0][3] == "2026-11-27T21:00:00Z");
    auto const details = details_of(audit[0][4]);
    CHECK(details.at("subject").as_string() == "device:LAPTOP-0042");
    CHECK(details.at("controls").as_array() == boost::json::array{"OS-01"});
    CHECK(audit[1] == std::vector<std::string>{kCiso, "exemption.requested", "exemption:EX-000002",
                                               "2026-11-27T21:01:00Z", audit[1][4]});
    CHECK(audit[2][2] == "exemption:EX-000003");
    db.check_chain();

    {  // an unknown id is not_found
        for (auto const* id : {"EX-000004", "EX-999999", "EX-1", ""}) {
            INFO(id);
            auto const missing = store->get_exemption(id);
            REQUIRE_FALSE(missing);
            CHECK(missing.error() == exemptd::make_error_code(Errc::not_found));
        }
    }
    {  // a transition of an unknown id is 404 and writes nothing
        auto const missing = approve(*store, "EX-000004", kManager, t0 + 1h);
        REQUIRE_FALSE(missing);
        CHECK(missing.error().status == 404);
        CHECK(missing.error().code == "not_found");
        CHECK(db.audit_count() == 3);
    }
}

TEST_CASE("Concurrent requests get distinct, gap-free ids", "[exemption-store][concurrency]")
{
    exemptd::test::TempDir dir;
    auto store = exemptd::open_sqlite_store(dir.file("exemptd.db"));
    constexpr int kThreads = 6;
    constexpr int kEach = 4;
    std::vector<std::vector<std::string>> got(kThreads);
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            start.arrive_and_wait();
            for (int i = 0; i < kEach; ++i) {
                auto e = store->create_exemption(draft("device:LAPTOP-" + std::to_string(t), {"OS-01"}, t0 + 24h));
                got[static_cast<std::size_t>(t)].push_back(e ? e->id : "failed");
            }
        });
    }
    for (auto& thread : threads) thread.join();

    std::set<std::string> all;
    for (auto const& per_thread : got) all.insert(per_thread.begin(), per_thread.end());
    std::set<std::string> expected;
    for (int i = 1; i <= kThreads * kEach; ++i) {
        char id[16];
        std::snprintf(id, sizeof id, "EX-%06d", i);
        expected.insert(id);
    }
    CHECK(all == expected);
    for (auto const& per_thread : got) CHECK(std::is_sorted(per_thread.begin(), per_thread.end()));
}

TEST_CASE("A transition stores the new record, audits from and to, and re-evaluates the device", "[exemption-store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    enroll_and_check_in_unpatched(*store);
    Inspector db(path);
    auto const decision_row = [&] { return db.rows("SELECT decision, basis FROM devices WHERE device_id = 'LAPTOP-0042'"); };
    REQUIRE(decision_row() == Rows{{"deny", "noncompliant"}});

    auto const requested = created(*store, draft("device:LAPTOP-0042", {"OS-01"}, t0 + 30 * 24h));
    CHECK(decision_row() == Rows{{"deny", "noncompliant"}});  // a pending request covers nothing
    auto const before_approval = db.number("SELECT max(seq) FROM audit");

    auto const approved = approve(*store, requested.id, kManager, t0 + 1h);
    REQUIRE(approved);
    CHECK(approved->state == ExemptionState::active);
    CHECK(approved->decided_by == kManager);
    CHECK(approved->decided_at == t0 + 1h);
    CHECK(approved->next_review_at == t0 + 1h + 30 * 24h);  // medium: review every 30 days

    auto const stored = store->get_exemption(requested.id);
    REQUIRE(stored);
    CHECK(exemptd::encode_exemption_record(*stored) == exemptd::encode_exemption_record(*approved));

    auto const audit = db.rows("SELECT actor, action, subject, at, details FROM audit WHERE seq > " +
                               std::to_string(before_approval) + " ORDER BY seq");
    REQUIRE(audit.size() == 2);
    CHECK(audit[0][0] == kManager);
    CHECK(audit[0][1] == "exemption.approved");
    CHECK(audit[0][2] == "exemption:EX-000001");
    CHECK(audit[0][3] == "2026-11-27T22:00:00Z");
    auto const details = details_of(audit[0][4]);
    CHECK(details.at("from").as_string() == "pending");
    CHECK(details.at("to").as_string() == "active");
    CHECK(audit[1][1] == "decision.changed");
    CHECK(audit[1][2] == "device:LAPTOP-0042");

    CHECK(decision_row() == Rows{{"allow", "exempted"}});
    auto const device = store->get_device("LAPTOP-0042");
    REQUIRE(device);
    REQUIRE(device->latest_decision);
    CHECK(device->latest_decision->allow);
    CHECK(device->latest_decision->basis == Basis::exempted);
    CHECK_FALSE(control(*device->latest_decision, "OS-01").pass);  // still reported as failing
    CHECK(control(*device->latest_decision, "OS-01").covered_by == "EX-000001");
    CHECK(device->last_checkin == t0);  // a transition is not a check-in

    {  // a review that leaves the decision as it was audits only the review
        auto const before_review = db.number("SELECT max(seq) FROM audit");
        auto const reviewed = review(*store, requested.id, kManager, t0 + 10 * 24h);
        REQUIRE(reviewed);
        REQUIRE(reviewed->reviews.size() == 1);
        CHECK(reviewed->reviews[0].by == kManager);
        CHECK(reviewed->next_review_at == t0 + 40 * 24h);
        CHECK(db.actions_after(before_review) == Ids{"exemption.reviewed"});
        CHECK(decision_row() == Rows{{"allow", "exempted"}});
    }
    {  // revoking it denies the device again
        auto const before_revoke = db.number("SELECT max(seq) FROM audit");
        auto const revoked = revoke(*store, requested.id, kCiso, t0 + 11 * 24h);
        REQUIRE(revoked);
        CHECK(revoked->state == ExemptionState::revoked);
        CHECK(revoked->revoked_by == kCiso);
        CHECK(revoked->revoked_reason == "laptop replaced");
        CHECK(store->get_exemption(requested.id)->state == ExemptionState::revoked);

        auto const later = db.rows("SELECT action, details FROM audit WHERE seq > " + std::to_string(before_revoke) +
                                   " ORDER BY seq");
        REQUIRE(later.size() == 2);
        CHECK(later[0][0] == "exemption.revoked");
        CHECK(details_of(later[0][1]).at("from").as_string() == "active");
        CHECK(details_of(later[0][1]).at("to").as_string() == "revoked");
        CHECK(later[1][0] == "decision.changed");

        CHECK(decision_row() == Rows{{"deny", "noncompliant"}});
        auto const after = store->get_device("LAPTOP-0042");
        REQUIRE(after);
        REQUIRE(after->latest_decision);
        CHECK_FALSE(after->latest_decision->allow);
        CHECK(control(*after->latest_decision, "OS-01").covered_by.empty());
        db.check_chain();
    }
}

TEST_CASE("The check-in after an exemption is approved or revoked sees it", "[exemption-store]")
{
    // The store keeps each device's state from one check-in to the next; a transition in
    // between must not leave the next check-in with the old set of exemptions.
    auto store = exemptd::open_sqlite_store(":memory:");
    enroll_and_check_in_unpatched(*store);
    auto const unpatched_check_in = [&](std::string const& nonce, TimePoint at) {
        auto report = PostureJson{"LAPTOP-0042", at}.nonce(nonce).fact("os_patch_age_days", 45).report();
        auto decision = store->check_in(report, covering_evaluate(at), at, kNonceTtl);
        REQUIRE(decision);
        return *decision;
    };
    CHECK_FALSE(unpatched_check_in("nonce-0002", t0 + 1min).allow);

    auto const requested = created(*store, draft("device:LAPTOP-0042", {"OS-01"}, t0 + 30 * 24h));
    REQUIRE(approve(*store, requested.id, kManager, t0 + 2min));
    auto const exempted = unpatched_check_in("nonce-0003", t0 + 3min);
    CHECK(exempted.allow);
    CHECK(exempted.basis == Basis::exempted);
    CHECK(unpatched_check_in("nonce-0004", t0 + 4min).basis == Basis::exempted);

    REQUIRE(revoke(*store, requested.id, kCiso, t0 + 5min));
    auto const denied = unpatched_check_in("nonce-0005", t0 + 6min);
    CHECK_FALSE(denied.allow);
    CHECK(control(denied, "OS-01").covered_by.empty());
}

TEST_CASE("A check-in past an exemption's expiry is not covered by it, before any sweep", "[exemption-store]")
{
    // The store keeps a device's active exemptions from one check-in to the next; the sweep
    // that marks this one expired has not run, so only its expiry keeps it from covering.
    auto store = exemptd::open_sqlite_store(":memory:");
    enroll_and_check_in_unpatched(*store);
    auto const requested = created(*store, draft("device:LAPTOP-0042", {"OS-01"}, t0 + 1h));
    REQUIRE(approve(*store, requested.id, kManager, t0 + 1min));
    auto const unpatched_check_in = [&](std::string const& nonce, TimePoint at) {
        auto report = PostureJson{"LAPTOP-0042", at}.nonce(nonce).fact("os_patch_age_days", 45).report();
        auto decision = store->check_in(report, covering_evaluate(at), at, kNonceTtl);
        REQUIRE(decision);
        return *decision;
    };
    CHECK(unpatched_check_in("nonce-0002", t0 + 59min).basis == Basis::exempted);
    auto const expired = unpatched_check_in("nonce-0003", t0 + 1h);
    CHECK_FALSE(expired.allow);
    CHECK(control(expired, "OS-01").covered_by.empty());
    CHECK(store->get_exemption(requested.id)->state == exemptd::ExemptionState::active);
}

TEST_CASE("A transition of a subject that is not a device, or of a device never seen, evaluates nothing",
          "[exemption-store]")
{
    auto store = exemptd::open_sqlite_store(":memory:");
    auto const user = created(*store, draft("user:jordan@example.com", {"HR-03"}, t0 + 30 * 24h));
    auto const unseen = created(*store, draft("device:NEW-LAPTOP", {"OS-01"}, t0 + 30 * 24h));
    CHECK(approve(*store, user.id, kManager, t0 + 1h, kNoEvaluate));
    CHECK(approve(*store, unseen.id, kManager, t0 + 1h, kNoEvaluate));
    CHECK_FALSE(store->get_device("NEW-LAPTOP"));  // an exemption does not create the device
}

TEST_CASE("A failing transition writes nothing", "[exemption-store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    enroll_and_check_in_unpatched(*store);
    auto const pending = created(*store, draft("device:LAPTOP-0042", {"OS-01"}, t0 + 30 * 24h));
    auto const active = created(*store, draft("device:LAPTOP-0042", {"LOCK-01"}, t0 + 30 * 24h));
    REQUIRE(approve(*store, active.id, kManager, t0 + 1min));
    auto high_draft = draft("device:LAPTOP-0042", {"ENC-01"}, t0 + 30 * 24h);
    high_draft.likelihood = RiskLevel::high;
    high_draft.level = RiskLevel::high;
    auto const high = created(*store, high_draft);
    auto const high_before = exemptd::encode_exemption_record(*store->get_exemption(high.id));
    auto const pending_before = exemptd::encode_exemption_record(*store->get_exemption(pending.id));
    auto const active_before = exemptd::encode_exemption_record(*store->get_exemption(active.id));
    Inspector db(path);
    auto const audit_before = db.audit_count();
    auto const decision_before = db.rows("SELECT decision_json FROM devices");

    auto const check_unchanged = [&](char const* what) {
        INFO(what);
        CHECK(exemptd::encode_exemption_record(*store->get_exemption(pending.id)) == pending_before);
        CHECK(exemptd::encode_exemption_record(*store->get_exemption(active.id)) == active_before);
        CHECK(exemptd::encode_exemption_record(*store->get_exemption(high.id)) == high_before);
        CHECK(db.audit_count() == audit_before);
        CHECK(db.rows("SELECT decision_json FROM devices") == decision_before);
    };

    {  // a rule refused: the requester approving their own request
        auto const refused = approve(*store, pending.id, kRequester, t0 + 1h);
        REQUIRE_FALSE(refused);
        CHECK(refused.error().status == 422);
        CHECK(refused.error().code == "self_approval");
    }
    check_unchanged("a rule refused: the requester approving their own request");
    {  // a rule refused: an approver without the level
        auto const refused = approve(*store, high.id, kManager, t0 + 1h);  // medium is not high
        REQUIRE_FALSE(refused);
        CHECK(refused.error().status == 422);
        CHECK(refused.error().code == "approver_not_authorized");
    }
    check_unchanged("a rule refused: an approver without the level");
    {  // an illegal transition: approving an active exemption
        auto const refused = approve(*store, active.id, kCiso, t0 + 1h);
        REQUIRE_FALSE(refused);
        CHECK(refused.error().status == 409);
        CHECK(refused.error().code == "exemption_not_pending");
    }
    check_unchanged("an illegal transition: approving an active exemption");
    {  // an illegal transition: approving a pending exemption past its expiry
        auto const refused = approve(*store, pending.id, kManager, t0 + 30 * 24h);
        REQUIRE_FALSE(refused);
        CHECK(refused.error().status == 409);
        CHECK(refused.error().code == "exemption_not_pending");
    }
    check_unchanged("an illegal transition: approving a pending exemption past its expiry");
    {  // a transition that changes the record but whose re-evaluation fails is rolled back
        auto const level = spdlog::get_level();
        spdlog::set_level(spdlog::level::off);  // the store logs the failure; expected here
        auto const failed = store->transition_exemption(
            pending.id, "exemption.approved", kManager, t0 + 1h,
            [&](Exemption const& current) {
                return exemptd::approve_exemption(policy(), current, kManager, "ok", t0 + 1h, no_agreement_needed);
            },
            [](DeviceFacts const&, std::vector<Exemption> const&) -> Decision {
                throw std::runtime_error("evaluation failed");
            });
        spdlog::set_level(level);
        REQUIRE_FALSE(failed);
        CHECK(failed.error().status == 503);
    }
    check_unchanged("a transition that changes the record but whose re-evaluation fails is rolled back");

    {  // and the next transition still works
        CHECK(approve(*store, pending.id, kManager, t0 + 2h));
        CHECK(db.actions_after(audit_before).at(0) == "exemption.approved");
        db.check_chain();
    }
}

TEST_CASE("The register filters by subject, control, effective state and expiry", "[exemption-store]")
{
    auto store = exemptd::open_sqlite_store(":memory:");
    // EX-000001: LAPTOP-0042, OS-01, active until t0+10d.
    auto const a = created(*store, draft("device:LAPTOP-0042", {"OS-01"}, t0 + 10 * 24h));
    REQUIRE(approve(*store, a.id, kManager, t0));
    // EX-000002: LAPTOP-0042, ENC-01 and LOCK-01, pending until t0+30d.
    created(*store, draft("device:LAPTOP-0042", {"ENC-01", "LOCK-01"}, t0 + 30 * 24h));
    // EX-000003: a user, approved then revoked.
    auto const c = created(*store, draft("user:jordan@example.com", {"HR-03"}, t0 + 60 * 24h));
    REQUIRE(approve(*store, c.id, kManager, t0, kNoEvaluate));
    REQUIRE(revoke(*store, c.id, kCiso, t0 + 1min));
    // EX-000004: an account, rejected.
    auto const d = created(*store, draft("account:aws-root", {"IAM-01"}, t0 + 5 * 24h));
    REQUIRE(reject(*store, d.id, kCiso, t0));
    // EX-000005: LAPTOP-0043, OS-01 and LOCK-01, active until t0+2d.
    auto const e = created(*store, draft("device:LAPTOP-0043", {"OS-01", "LOCK-01"}, t0 + 2 * 24h));
    REQUIRE(approve(*store, e.id, kCiso, t0));

    auto const list = [&](ExemptionQuery const& q) { return ids(store->list_exemptions(q)); };
    auto const now = t0 + 1h;

    SECTION("no filter lists everything in id order") {
        CHECK(list(query(now)) == Ids{"EX-000001", "EX-000002", "EX-000003", "EX-000004", "EX-000005"});
    }
    SECTION("by subject, exactly") {
        CHECK(list(query(now, "device:LAPTOP-0042")) == Ids{"EX-000001", "EX-000002"});
        CHECK(list(query(now, "user:jordan@example.com")) == Ids{"EX-000003"});
        CHECK(list(query(now, "device:LAPTOP-004")).empty());
        CHECK(list(query(now, "LAPTOP-0042")).empty());
    }
    SECTION("by any one of the controls it covers, exactly") {
        CHECK(list(query(now, {}, "OS-01")) == Ids{"EX-000001", "EX-000005"});
        CHECK(list(query(now, {}, "LOCK-01")) == Ids{"EX-000002", "EX-000005"});
        CHECK(list(query(now, {}, "ENC-01")) == Ids{"EX-000002"});
        CHECK(list(query(now, {}, "OS")).empty());
        CHECK(list(query(now, {}, "MDM-01")).empty());
    }
    SECTION("by recorded state while nothing is due") {
        CHECK(list(query(now, {}, {}, ExemptionState::active)) == Ids{"EX-000001", "EX-000005"});
        CHECK(list(query(now, {}, {}, ExemptionState::pending)) == Ids{"EX-000002"});
        CHECK(list(query(now, {}, {}, ExemptionState::revoked)) == Ids{"EX-000003"});
        CHECK(list(query(now, {}, {}, ExemptionState::rejected)) == Ids{"EX-000004"});
        CHECK(list(query(now, {}, {}, ExemptionState::expired)).empty());
    }
    SECTION("by effective state: an open exemption counts as expired from its expiry on, before any sweep") {
        auto const at_expiry = t0 + 2 * 24h;  // EX-000005's expires_at
        CHECK(list(query(at_expiry - 1s, {}, {}, ExemptionState::active)) == Ids{"EX-000001", "EX-000005"});
        CHECK(list(query(at_expiry, {}, {}, ExemptionState::active)) == Ids{"EX-000001"});
        CHECK(list(query(at_expiry, {}, {}, ExemptionState::expired)) == Ids{"EX-000005"});
        auto const later = t0 + 31 * 24h;  // past every expiry
        CHECK(list(query(later, {}, {}, ExemptionState::active)).empty());
        CHECK(list(query(later, {}, {}, ExemptionState::pending)).empty());
        CHECK(list(query(later, {}, {}, ExemptionState::expired)) == Ids{"EX-000001", "EX-000002", "EX-000005"});
        // Closed ones keep their state; the rejected one's expiry has passed too.
        CHECK(list(query(later, {}, {}, ExemptionState::rejected)) == Ids{"EX-000004"});
        CHECK(list(query(later, {}, {}, ExemptionState::revoked)) == Ids{"EX-000003"});
        // The records themselves are untouched.
        CHECK(store->get_exemption("EX-000005")->state == ExemptionState::active);
    }
    SECTION("by expiry: active ones expiring at or before the bound") {
        CHECK(list(query(now, {}, {}, {}, t0 + 7 * 24h)) == Ids{"EX-000005"});
        CHECK(list(query(now, {}, {}, {}, t0 + 10 * 24h)) == Ids{"EX-000001", "EX-000005"});
        CHECK(list(query(now, {}, {}, {}, t0 + 10 * 24h - 1s)) == Ids{"EX-000005"});
        // The pending one expiring at t0+30d is not listed.
        CHECK(list(query(now, {}, {}, {}, t0 + 40 * 24h)) == Ids{"EX-000001", "EX-000005"});
        // One that has already expired is not "expiring".
        auto const later = t0 + 3 * 24h;
        CHECK(list(query(later, {}, {}, {}, later + 14 * 24h)) == Ids{"EX-000001"});
    }
    SECTION("filters combine") {
        CHECK(list(query(now, "device:LAPTOP-0042", "OS-01")) == Ids{"EX-000001"});
        CHECK(list(query(now, "device:LAPTOP-0042", {}, ExemptionState::pending)) == Ids{"EX-000002"});
        CHECK(list(query(now, {}, "LOCK-01", ExemptionState::active)) == Ids{"EX-000005"});
        CHECK(list(query(now, "device:LAPTOP-0043", {}, {}, t0 + 7 * 24h)) == Ids{"EX-000005"});
        CHECK(list(query(now, "device:LAPTOP-0042", {}, {}, t0 + 7 * 24h)).empty());
    }
}

TEST_CASE("A sweep expires what is due, re-evaluates devices and flags an overdue review once", "[exemption-store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    enroll_and_check_in_unpatched(*store);
    // EX-000001 covers LAPTOP-0042's OS-01 until t0+10d.
    auto const covering = created(*store, draft("device:LAPTOP-0042", {"OS-01"}, t0 + 10 * 24h));
    REQUIRE(approve(*store, covering.id, kManager, t0));
    // EX-000002: a user's, active until t0+85d, review due at t0+30d.
    auto const documentary = created(*store, draft("user:jordan@example.com", {"HR-03"}, t0 + 85 * 24h));
    REQUIRE(approve(*store, documentary.id, kManager, t0, kNoEvaluate));
    // EX-000003: pending until t0+10d.
    created(*store, draft("account:aws-root", {"IAM-01"}, t0 + 10 * 24h));
    // EX-000004: revoked, its expiry long past by the end.
    auto const revoked = created(*store, draft("device:LAPTOP-0042", {"LOCK-01"}, t0 + 5 * 24h));
    REQUIRE(revoke(*store, revoked.id, kCiso, t0));

    Inspector db(path);
    REQUIRE(db.rows("SELECT decision, basis FROM devices") == Rows{{"allow", "exempted"}});
    auto const sweep = [&](TimePoint now) {
        auto const result = store->sweep(now, covering_evaluate(now));
        REQUIRE(result);
        return std::pair{result->expired, result->reviews_overdue};
    };

    auto seq = db.number("SELECT max(seq) FROM audit");
    CHECK(sweep(t0 + 10 * 24h - 1s) == std::pair{0, 0});
    CHECK(db.audit_count() == seq);

    CHECK(sweep(t0 + 10 * 24h) == std::pair{2, 0});
    CHECK(store->get_exemption("EX-000001")->state == ExemptionState::expired);
    CHECK(store->get_exemption("EX-000002")->state == ExemptionState::active);
    CHECK(store->get_exemption("EX-000003")->state == ExemptionState::expired);
    CHECK(store->get_exemption("EX-000004")->state == ExemptionState::revoked);
    auto const expired = db.rows("SELECT actor, action, subject, at, details FROM audit WHERE seq > " +
                                 std::to_string(seq) + " ORDER BY seq");
    REQUIRE(expired.size() == 3);
    // The two expirations in either order; the device's new decision right after its exemption's.
    std::map<std::string, std::string> expired_from;
    for (std::size_t i = 0; i < expired.size(); ++i) {
        auto const& row = expired[i];
        INFO("record " << i << ": " << row[1] << " " << row[2]);
        CHECK(row[3] == "2026-12-07T21:00:00Z");
        if (row[1] == "decision.changed") {
            CHECK(row[2] == "device:LAPTOP-0042");
            REQUIRE(i > 0);
            CHECK(expired[i - 1][2] == "exemption:EX-000001");
            continue;
        }
        CHECK(row[0] == "exemptd");
        CHECK(row[1] == "exemption.expired");
        expired_from[row[2]] = std::string(details_of(row[4]).at("from").as_string());
    }
    CHECK(expired_from == std::map<std::string, std::string>{{"exemption:EX-000001", "active"},
                                                             {"exemption:EX-000003", "pending"}});
    CHECK(db.rows("SELECT decision, basis FROM devices") == Rows{{"deny", "noncompliant"}});
    auto const device = store->get_device("LAPTOP-0042");
    REQUIRE(device);
    REQUIRE(device->latest_decision);
    CHECK(control(*device->latest_decision, "OS-01").covered_by.empty());

    seq = db.number("SELECT max(seq) FROM audit");
    CHECK(sweep(t0 + 10 * 24h + 1h) == std::pair{0, 0});
    CHECK(db.audit_count() == seq);

    // EX-000002's review is due 30 days after its approval.
    CHECK(sweep(t0 + 30 * 24h - 1s) == std::pair{0, 0});
    CHECK(sweep(t0 + 30 * 24h) == std::pair{0, 1});
    auto const overdue = db.rows("SELECT actor, action, subject FROM audit WHERE seq > " + std::to_string(seq));
    CHECK(overdue == Rows{{"exemptd", "exemption.review_overdue", "exemption:EX-000002"}});
    CHECK(store->get_exemption("EX-000002")->state == ExemptionState::active);  // overdue is not expired
    seq = db.number("SELECT max(seq) FROM audit");
    CHECK(sweep(t0 + 31 * 24h) == std::pair{0, 0});
    CHECK(sweep(t0 + 40 * 24h) == std::pair{0, 0});
    CHECK(db.audit_count() == seq);

    {  // a review moves the date, and the new date is flagged once when it passes
        REQUIRE(review(*store, documentary.id, kCiso, t0 + 40 * 24h));
        CHECK(store->get_exemption("EX-000002")->next_review_at == t0 + 70 * 24h);
        CHECK(sweep(t0 + 69 * 24h) == std::pair{0, 0});
        CHECK(sweep(t0 + 70 * 24h) == std::pair{0, 1});
        CHECK(sweep(t0 + 71 * 24h) == std::pair{0, 0});
        CHECK(db.number("SELECT count(*) FROM audit WHERE action = 'exemption.review_overdue'") == 2);
    }
    {  // its own expiry is swept too, and an expired exemption is never flagged overdue
        CHECK(sweep(t0 + 85 * 24h) == std::pair{1, 0});
        CHECK(store->get_exemption("EX-000002")->state == ExemptionState::expired);
        CHECK(sweep(t0 + 200 * 24h) == std::pair{0, 0});
        CHECK(db.number("SELECT count(*) FROM audit WHERE action = 'exemption.review_overdue'") == 2);
    }
    db.check_chain();
}

TEST_CASE("A review overdue at the moment of expiry is expired, not flagged", "[exemption-store]")
{
    auto store = exemptd::open_sqlite_store(":memory:");
    // Medium risk: review every 30 days, so a 60-day exemption approved at t0 is due for review at t0+30d.
    auto const e = created(*store, draft("user:jordan@example.com", {"HR-03"}, t0 + 60 * 24h));
    REQUIRE(approve(*store, e.id, kManager, t0, kNoEvaluate));
    auto const result = store->sweep(t0 + 61 * 24h, kNoEvaluate);
    REQUIRE(result);
    CHECK(result->expired == 1);
    CHECK(result->reviews_overdue == 0);
}

TEST_CASE("The current decision sees an expiry at a later clock without a sweep", "[exemption-store]")
{
    auto store = exemptd::open_sqlite_store(":memory:");
    enroll_and_check_in_unpatched(*store);
    auto const e = created(*store, draft("device:LAPTOP-0042", {"OS-01"}, t0 + 10 * 24h));
    REQUIRE(approve(*store, e.id, kManager, t0 + 1h));

    auto const at = [&](TimePoint now) {
        auto current = store->current_decision("LAPTOP-0042", covering_evaluate(now));
        REQUIRE(current);
        REQUIRE(*current);
        return **current;
    };
    auto const before = at(t0 + 10 * 24h - 1s);
    CHECK(before.allow);
    CHECK(before.basis == Basis::exempted);
    CHECK(control(before, "OS-01").covered_by == "EX-000001");

    auto const after = at(t0 + 10 * 24h);
    CHECK_FALSE(after.allow);
    CHECK(after.basis == Basis::noncompliant);
    CHECK(control(after, "OS-01").covered_by.empty());
    CHECK(after.evaluated_at == t0 + 10 * 24h);

    // Nothing was stored: the register and the device still say what they said.
    CHECK(store->get_exemption(e.id)->state == ExemptionState::active);
    auto const device = store->get_device("LAPTOP-0042");
    REQUIRE(device);
    REQUIRE(device->latest_decision);
    CHECK(device->latest_decision->allow);
}

TEST_CASE("Exemptions survive reopening the database file", "[exemption-store]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    std::string record;
    {
        auto store = exemptd::open_sqlite_store(path);
        auto d = draft("device:LAPTOP-0042", {"OS-01", "LOCK-01"}, t0 + 60 * 24h);
        d.compensating_controls = {"ENC-01"};
        d.agreement_id = "AG-000001";
        auto const e = created(*store, d);
        REQUIRE(approve(*store, e.id, kManager, t0 + 1h));
        auto const reviewed = review(*store, e.id, kCiso, t0 + 2h);
        REQUIRE(reviewed);
        record = exemptd::encode_exemption_record(*reviewed);
    }
    auto store = exemptd::open_sqlite_store(path);
    auto const reopened = store->get_exemption("EX-000001");
    REQUIRE(reopened);
    CHECK(exemptd::encode_exemption_record(*reopened) == record);
    CHECK(reopened->state == ExemptionState::active);
    CHECK(reopened->decided_by == kManager);
    REQUIRE(reopened->reviews.size() == 1);
    CHECK(reopened->reviews[0].note == "mitigations still in place");
    CHECK(ids(store->list_exemptions(query(t0 + 3h, {}, "LOCK-01"))) == Ids{"EX-000001"});
    // Numbering continues.
    CHECK(created(*store, draft("account:aws-root", {"IAM-01"}, t0 + 24h)).id == "EX-000002");
    Inspector db(path);
    CHECK(db.audit_count() == 4);  // requested, approved, reviewed, requested
    db.check_chain();
}

TEST_CASE("Of many concurrent approvals of one pending exemption exactly one succeeds",
          "[exemption-store][concurrency]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    auto const e = created(*store, draft("device:LAPTOP-0042", {"OS-01"}, t0 + 30 * 24h));

    constexpr int kThreads = 8;
    std::vector<std::optional<ApiResult<Exemption>>> results(kThreads);
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            auto const approver = t % 2 == 0 ? kManager : kCiso;
            auto const now = t0 + std::chrono::seconds{t + 1};
            start.arrive_and_wait();
            results[static_cast<std::size_t>(t)] = approve(*store, e.id, approver, now);
        });
    }
    for (auto& thread : threads) thread.join();

    int won = 0;
    std::string winner;
    for (auto const& r : results) {
        REQUIRE(r);
        if (r->has_value()) {
            ++won;
            winner = (*r)->decided_by;
        } else {
            INFO(exemptd::test::describe(r->error()));
            CHECK(r->error().status == 409);
            CHECK(r->error().code == "exemption_not_pending");
        }
    }
    CHECK(won == 1);
    auto const stored = store->get_exemption(e.id);
    REQUIRE(stored);
    CHECK(stored->state == ExemptionState::active);
    CHECK(stored->decided_by == winner);
    Inspector db(path);
    CHECK(db.actions_after(0) == Ids{"exemption.requested", "exemption.approved"});
    db.check_chain();
}

TEST_CASE("Racing transitions on one exemption serialize", "[exemption-store][concurrency]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.file("exemptd.db");
    auto store = exemptd::open_sqlite_store(path);
    constexpr int kRounds = 6;

    // Runs `first` and `second` on two threads released together.
    auto const race = [](auto first, auto second) {
        std::optional<ApiResult<Exemption>> a, b;
        std::latch start(2);
        std::thread ta([&] { start.arrive_and_wait(); a = first(); });
        std::thread tb([&] { start.arrive_and_wait(); b = second(); });
        ta.join();
        tb.join();
        return std::pair{std::move(*a), std::move(*b)};
    };

    SECTION("approve against reject: exactly one wins") {
        for (int round = 0; round < kRounds; ++round) {
            auto const e = created(*store, draft("device:LAPTOP-0042", {"OS-01"}, t0 + 30 * 24h));
            auto const [approved, rejected] = race([&] { return approve(*store, e.id, kManager, t0 + 1h); },
                                                   [&] { return reject(*store, e.id, kCiso, t0 + 1h); });
            INFO("round " << round);
            CHECK(approved.has_value() != rejected.has_value());
            auto const& loser = approved.has_value() ? rejected : approved;
            if (!loser.has_value()) CHECK(loser.error().code == "exemption_not_pending");
            auto const stored = store->get_exemption(e.id);
            REQUIRE(stored);
            CHECK(stored->state == (approved.has_value() ? ExemptionState::active : ExemptionState::rejected));
        }
        Inspector db(path);
        CHECK(db.number("SELECT count(*) FROM audit WHERE action IN ('exemption.approved', 'exemption.rejected')") ==
              kRounds);
        db.check_chain();
    }
    SECTION("approve against revoke: revoke always lands, approve only if it came first") {
        // Revoking is legal from pending and from active, so both may succeed; what may never
        // happen is an approval recorded after the revocation.
        int approvals = 0;
        for (int round = 0; round < kRounds; ++round) {
            auto const e = created(*store, draft("device:LAPTOP-0042", {"OS-01"}, t0 + 30 * 24h));
            auto const [approved, revoked] = race([&] { return approve(*store, e.id, kManager, t0 + 1h); },
                                                  [&] { return revoke(*store, e.id, kCiso, t0 + 1h); });
            INFO("round " << round);
            REQUIRE(revoked.has_value());
            if (approved.has_value()) {
                ++approvals;
                CHECK(revoked->decided_by == kManager);  // the revocation saw the approval
            } else {
                CHECK(approved.error().code == "exemption_not_pending");
                CHECK(revoked->decided_by.empty());
            }
            auto const stored = store->get_exemption(e.id);
            REQUIRE(stored);
            CHECK(stored->state == ExemptionState::revoked);
        }
        Inspector db(path);
        CHECK(db.number("SELECT count(*) FROM audit WHERE action = 'exemption.revoked'") == kRounds);
        CHECK(db.number("SELECT count(*) FROM audit WHERE action = 'exemption.approved'") == approvals);
        // Each revocation's "from" is the state the approval left, or pending.
        for (auto const& row : db.rows("SELECT details FROM audit WHERE action = 'exemption.revoked' ORDER BY seq")) {
            auto const from = std::string(details_of(row.at(0)).at("from").as_string());
            CHECK((from == "pending" || from == "active"));
        }
        CHECK(db.number("SELECT count(*) FROM audit WHERE action = 'exemption.revoked' AND "
                        "json_extract(details, '$.from') = 'active'") == approvals);
        db.check_chain();
    }
}
