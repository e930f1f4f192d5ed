// The store's thin SQLite wrapper (core/src/sqlite.hpp, private to the core library): what
// Connection::reset_all() must end, whichever way a statement was left on a row; and the VFS its
// connections open files with (core/src/wal_frame_vfs.hpp).
#include "../../core/src/sqlite.hpp"
#include "../../core/src/wal_frame_vfs.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

using exemptd::sqlite::Connection;

namespace {

// A WAL database at `path` with table t holding two rows.
void make_two_rows(std::string const& path)
{
    Connection db(path);
    db.exec("PRAGMA journal_mode=WAL; CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);");
}

std::int64_t count_rows(Connection& db)
{
    auto& count = db.prepare("SELECT count(*) FROM t");
    REQUIRE(count.step());
    auto const n = count.integer(0);
    count.reset();
    return n;
}

}  // namespace

TEST_CASE("reset_all ends the read a statement left on a row, so the connection sees later commits",
          "[sqlite]")
{
    exemptd::test::TempDir dir;
    auto const path = (dir.path() / "t.db").string();
    make_two_rows(path);
    Connection reader(path);
    Connection writer(path);

    // Prepared before a reset_all, stepped after it: still ended by the next one.
    auto& scan = reader.prepare("SELECT x FROM t");
    reader.reset_all();
    REQUIRE(scan.step());  // on the first row: the read transaction stays open
    writer.exec("INSERT INTO t VALUES (3)");
    CHECK(count_rows(reader) == 2);  // still the snapshot of the open read
    reader.reset_all();
    CHECK(count_rows(reader) == 3);

    // Listed again after a reset_all: the next one ends it too.
    REQUIRE(reader.prepare("SELECT x FROM t").step());
    writer.exec("INSERT INTO t VALUES (4)");
    reader.reset_all();
    CHECK(count_rows(reader) == 4);

    // A statement left on a row while another ran to its end.
    REQUIRE(reader.prepare("SELECT x FROM t ORDER BY x DESC").step());
    CHECK(count_rows(reader) == 4);
    writer.exec("INSERT INTO t VALUES (5)");
    reader.reset_all();
    CHECK(count_rows(reader) == 5);
}

TEST_CASE("A connection writes each WAL frame with one write, and SQLite's own VFS recovers that WAL whole",
          "[sqlite]")
{
    exemptd::test::TempDir dir;
    auto const path = dir.path() / "t.db";
    Connection db(path.string());
    // Every page stays in the WAL: the database file alone holds none of the rows.
    db.exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t (x INTEGER, pad TEXT);");
    auto const joined_before = exemptd::sqlite::wal_frames_joined();
    constexpr int kCommits = 20;
    for (int i = 0; i < kCommits; ++i)  // ten rows of 1,000 bytes a commit: a few frames each
        db.exec("WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 10) "
                "INSERT INTO t SELECT k, hex(randomblob(500)) FROM n");
    CHECK(exemptd::sqlite::wal_frames_joined() - joined_before >= 2 * kCommits);

    // A copy taken while the connection is open, as a crash would leave the files: opening it
    // through the default VFS rebuilds the WAL index from the frames, checking each frame's
    // checksum and stopping at the first that does not match.
    auto const copy = dir.path() / "copy";
    std::filesystem::create_directory(copy);
    std::filesystem::copy_file(path, copy / "t.db");
    std::filesystem::copy_file(path.string() + "-wal", copy / "t.db-wal");
    // The URI's vfs parameter overrides the VFS a Connection asks for.
    Connection recovered("file:" + (copy / "t.db").string() + "?vfs=unix");
    auto& sums = recovered.prepare("SELECT count(*), sum(length(pad)) FROM t");
    REQUIRE(sums.step());
    auto const rows = sums.integer(0);
    auto const bytes = sums.integer(1);
    sums.reset();
    auto& check = recovered.prepare("PRAGMA integrity_check");
    REQUIRE(check.step());
    auto const integrity = check.text(0);
    check.reset();
    CHECK(rows == 10 * kCommits);
    CHECK(bytes == 1000 * 10 * kCommits);
    CHECK(integrity == "ok");
}
