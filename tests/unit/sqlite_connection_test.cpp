// The store's thin SQLite wrapper (core/src/sqlite.hpp, private to the core library): what
// Connection::reset_all() must end, whichever way a statement was left on a row.
#include "../../core/src/sqlite.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
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
