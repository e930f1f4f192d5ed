#include "sqlite.hpp"

#include "wal_frame_vfs.hpp"

#include <sqlite3.h>

namespace exemptd::sqlite {

void check(sqlite3* db, int rc)
{
    if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return;
    throw Failure{rc, db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc)};
}

Statement::Statement(sqlite3* db, std::string_view sql, std::vector<Statement*>& stepped) : db_(db), stepped_(stepped)
{
    check(db_, sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt_,
                                  nullptr));
}

Statement::~Statement()
{
    sqlite3_finalize(stmt_);
}

Statement& Statement::bind(int index, std::string_view text)
{
    check(db_, sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT));
    return *this;
}

Statement& Statement::bind_static(int index, std::string_view text)
{
    check(db_, sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC));
    return *this;
}

Statement& Statement::bind(int index, std::int64_t value)
{
    check(db_, sqlite3_bind_int64(stmt_, index, value));
    return *this;
}

Statement& Statement::bind(int index, std::optional<std::int64_t> value)
{
    return value ? bind(index, *value) : bind_null(index);
}

Statement& Statement::bind_null(int index)
{
    check(db_, sqlite3_bind_null(stmt_, index));
    return *this;
}

bool Statement::step()
{
    if (!listed_) {
        stepped_.push_back(this);  // before the step: a step that throws may still leave a row
        listed_ = true;
    }
    int const rc = sqlite3_step(stmt_);
    check(db_, rc);
    return rc == SQLITE_ROW;
}

void Statement::run()
{
    while (step()) {
    }
}

void Statement::reset() noexcept
{
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

void Statement::reset_if_busy() noexcept
{
    if (sqlite3_stmt_busy(stmt_) != 0) sqlite3_reset(stmt_);
}

bool Statement::is_null(int column) const
{
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

std::string Statement::text(int column) const
{
    auto const* p = reinterpret_cast<char const*>(sqlite3_column_text(stmt_, column));
    return p != nullptr ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))) : std::string{};
}

std::int64_t Statement::integer(int column) const
{
    return sqlite3_column_int64(stmt_, column);
}

Connection::Connection(std::string const& path)
{
    // SQLite counts its memory under a global mutex on every allocation; nothing here reads the
    // counts. The setting takes effect only before SQLite initialises, at the first open.
    static bool const memstatus_off = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
    (void)memstatus_off;
    int const flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
    int const rc = sqlite3_open_v2(path.c_str(), &db_, flags, wal_frame_vfs());
    if (rc != SQLITE_OK) {
        Failure failure{rc, db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc)};
        sqlite3_close(db_);
        throw failure;
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, 5000);
}

Connection::~Connection()
{
    cache_.clear();  // statements must be finalized before the connection closes
    sqlite3_close(db_);
}

void Connection::exec(std::string_view sql)
{
    check(db_, sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, nullptr));
}

void Connection::reset_all() noexcept
{
    for (auto* stmt : stepped_) {
        stmt->reset_if_busy();
        stmt->listed_ = false;
    }
    stepped_.clear();  // keeps its capacity
}

Statement& Connection::prepare(char const* sql)
{
    auto& slot = cache_[sql];
    if (!slot) slot = std::make_unique<Statement>(db_, sql, stepped_);
    slot->reset();
    return *slot;
}

}  // namespace exemptd::sqlite
