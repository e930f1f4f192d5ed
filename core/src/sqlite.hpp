#pragma once
// Thin RAII wrappers over the SQLite C API, private to the core library.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace exemptd::sqlite {

// A failed SQLite call: the extended result code and SQLite's message. Thrown inside the store
// implementation and converted to an error_code at the Store interface.
struct Failure {
    int code;
    std::string message;
};

class Statement {
public:
    // Prepares `sql`. Each first step after a reset_all() lists the statement in `stepped`, so
    // that the next reset_all() visits only statements that may be on a row.
    Statement(sqlite3* db, std::string_view sql, std::vector<Statement*>& stepped);
    ~Statement();
    Statement(Statement const&) = delete;
    Statement& operator=(Statement const&) = delete;

    // Binds parameters (1-based). An empty optional binds NULL.
    Statement& bind(int index, std::string_view text);
    Statement& bind(int index, std::int64_t value);
    Statement& bind(int index, std::optional<std::int64_t> value);
    Statement& bind_null(int index);
    // Binds `text` without copying it: it must stay alive and unchanged until the statement has
    // run. For the hot path's large values (a check-in's decision and facts).
    Statement& bind_static(int index, std::string_view text);

    // Advances; true when a row is available. Throws Failure on error.
    bool step();
    // Runs a statement that returns no rows.
    void run();
    // Resets and clears bindings so the cached statement can be reused.
    void reset() noexcept;
    // Ends a statement left on a row (an open read), keeping its bindings.
    void reset_if_busy() noexcept;

    [[nodiscard]] bool is_null(int column) const;
    [[nodiscard]] std::string text(int column) const;
    [[nodiscard]] std::int64_t integer(int column) const;

private:
    friend class Connection;

    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
    std::vector<Statement*>& stepped_;
    bool listed_ = false;  // in stepped_
};

// One connection with its own cache of prepared statements. Not thread-safe: one user at a time.
class Connection {
public:
    // Opens (creating) `path`. Throws Failure.
    explicit Connection(std::string const& path);
    ~Connection();
    Connection(Connection const&) = delete;
    Connection& operator=(Connection const&) = delete;

    // Runs one or more statements without results. Throws Failure.
    void exec(std::string_view sql);

    // A prepared statement for `sql`, reset and cached for the connection's life. `sql` must be
    // a string literal (the cache is keyed by its address).
    [[nodiscard]] Statement& prepare(char const* sql);

    // Resets every cached statement left on a row, ending the read transaction it would
    // otherwise keep open. Visits only those stepped since the last call: it runs after every
    // write job, and walking the whole cache was 1% of a check-in's instructions.
    void reset_all() noexcept;

    [[nodiscard]] sqlite3* handle() const noexcept { return db_; }

private:
    sqlite3* db_ = nullptr;
    std::map<char const*, std::unique_ptr<Statement>> cache_;
    std::vector<Statement*> stepped_;  // cached statements stepped since the last reset_all()
};

// Throws Failure with the connection's message when rc is not OK/ROW/DONE.
void check(sqlite3* db, int rc);

}  // namespace exemptd::sqlite
