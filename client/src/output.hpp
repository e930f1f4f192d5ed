#pragma once
// Human-readable output shared by the tools: aligned tables and decisions.

#include "exemptd/decision.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace exemptd::client {

// A text table: a header row and data rows, columns separated by two spaces and padded to the
// widest cell, with no trailing spaces. Not thread-safe.
class Table {
public:
    // A table with these column headers.
    explicit Table(std::vector<std::string> headers);

    // Appends a row; missing cells are empty and extra cells are ignored.
    void add_row(std::vector<std::string> cells);

    // The header line and every row, each ending in '\n'.
    [[nodiscard]] std::string render() const;

private:
    std::vector<std::string> headers_;
    std::vector<std::vector<std::string>> rows_;
};

// "allow" or "deny". Pure.
[[nodiscard]] std::string_view decision_word(Decision const& decision) noexcept;

// One line per control, ids padded to the widest, each prefixed with `indent`:
// "MDM-01  fail  device is not enrolled in MDM  (covered by EX-000007)", "ENC-01  pass", and
// "(grace until TIME)" for an uncovered failure inside its grace period. Pure.
[[nodiscard]] std::string format_controls(std::vector<ControlResult> const& controls, std::string_view indent = {});

// "decision: allow\nbasis:    exempted\n" followed by format_controls. Pure.
[[nodiscard]] std::string format_decision(Decision const& decision);

// The text, or "-" when it is empty; for table cells. Pure.
[[nodiscard]] std::string or_dash(std::string text);

// One CSV line (RFC 4180, CRLF-terminated): a cell is quoted when it holds a comma, quote, CR or
// LF, with quotes doubled. A cell that begins with =, +, -, @, a tab or a CR is quoted and
// starts with an apostrophe, so that a spreadsheet shows it as text rather than running it as
// a formula (CSV injection). Pure.
[[nodiscard]] std::string csv_row(std::vector<std::string> const& cells);

}  // namespace exemptd::client
