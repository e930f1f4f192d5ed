#include "output.hpp"

#include <algorithm>
#include <utility>

namespace exemptd::client {
namespace {

std::string pad(std::string text, std::size_t width)
{
    if (text.size() < width) text.append(width - text.size(), ' ');
    return text;
}

std::string render_row(std::vector<std::string> const& cells, std::vector<std::size_t> const& widths)
{
    std::string line;
    for (std::size_t i = 0; i < widths.size(); ++i) {
        std::string const& cell = i < cells.size() ? cells[i] : std::string();
        bool const last = i + 1 == widths.size();
        line += last ? cell : pad(cell, widths[i]) + "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    return line + "\n";
}

std::string control_line(ControlResult const& control, std::size_t id_width)
{
    std::string line = pad(control.id, id_width) + "  " + (control.pass ? "pass" : "fail");
    if (!control.pass && !control.reason.empty()) line += "  " + control.reason;
    if (!control.pass && !control.covered_by.empty())
        line += "  (covered by " + control.covered_by + ")";
    else if (!control.pass && control.grace_until)
        line += "  (grace until " + format_rfc3339(*control.grace_until) + ")";
    return line;
}

}  // namespace

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::add_row(std::vector<std::string> cells)
{
    cells.resize(headers_.size());
    rows_.push_back(std::move(cells));
}

std::string Table::render() const
{
    std::vector<std::size_t> widths;
    for (auto const& header : headers_) widths.push_back(header.size());
    for (auto const& row : rows_)
        for (std::size_t i = 0; i < widths.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
    std::string out = render_row(headers_, widths);
    for (auto const& row : rows_) out += render_row(row, widths);
    return out;
}

std::string_view decision_word(Decision const& decision) noexcept
{
    return decision.allow ? "allow" : "deny";
}

std::string format_controls(std::vector<ControlResult> const& controls, std::string_view indent)
{
    std::size_t id_width = 0;
    for (auto const& control : controls) id_width = std::max(id_width, control.id.size());
    std::string out;
    for (auto const& control : controls) out += std::string(indent) + control_line(control, id_width) + "\n";
    return out;
}

std::string format_decision(Decision const& decision)
{
    std::string out = "decision: " + std::string(decision_word(decision)) + "\n";
    out += "basis:    " + std::string(to_string(decision.basis)) + "\n";
    return out + format_controls(decision.controls);
}

std::string or_dash(std::string text)
{
    return text.empty() ? std::string("-") : text;
}

namespace {

// A spreadsheet program opening the file runs a cell that begins with one of these as a formula
// (=HYPERLINK(...), +cmd|..., -2+3, @SUM(...)); a tab or CR can hide such a start.
bool reads_as_formula(std::string_view text)
{
    return !text.empty() && std::string_view("=+-@\t\r").find(text.front()) != std::string_view::npos;
}

// Quoted when it holds a comma, quote, CR or LF; a cell that would read as a formula is shown as
// text instead, behind an apostrophe (the requester writes the justification, evidence and
// notes of an exemption; the auditor opens the register in a spreadsheet).
std::string csv_field(std::string_view text)
{
    bool const formula = reads_as_formula(text);
    if (!formula && text.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(text);
    std::string out = formula ? "\"'" : "\"";
    for (char const c : text) {
        if (c == '"') out += '"';
        out += c;
    }
    out += '"';
    return out;
}

}  // namespace

std::string csv_row(std::vector<std::string> const& cells)
{
    std::string line;
    for (std::size_t i = 0; i < cells.size(); ++i) {
        if (i != 0) line += ',';
        line += csv_field(cells[i]);
    }
    line += "\r\n";
    return line;
}

}  // namespace exemptd::client
