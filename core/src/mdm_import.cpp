#include "exemptd/mdm_import.hpp"

#include "exemptd/device.hpp"
#include "exemptd/identity.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <numeric>
#include <optional>

namespace exemptd {
namespace {

// Reads RFC 4180 records one at a time, counting lines for messages. Blank lines between
// records are skipped.
class CsvReader {
public:
    explicit CsvReader(std::string_view text) : text_(text)
    {
        if (text_.starts_with("\xEF\xBB\xBF")) text_.remove_prefix(3);  // Excel's UTF-8 byte order mark
    }

    // The next record into `fields`; false at the end of the text or on a syntax error (error()).
    bool next(std::vector<std::string>& fields)
    {
        fields.clear();
        skip_blank_lines();
        if (pos_ >= text_.size()) return false;
        record_line_ = line_;
        record_begin_ = pos_;
        for (;;) {
            fields.emplace_back();
            bool const more = read_field(fields.back());
            if (error_) return false;
            if (!more) return true;
        }
    }

    // The line the last record started on.
    [[nodiscard]] std::size_t line() const noexcept { return record_line_; }
    // The last record's bytes as they appear in the text, with its line end if it had one.
    [[nodiscard]] std::string_view record_text() const { return text_.substr(record_begin_, pos_ - record_begin_); }
    [[nodiscard]] std::optional<std::string> const& error() const noexcept { return error_; }

private:
    void skip_blank_lines()
    {
        while (pos_ < text_.size()) {
            if (text_.substr(pos_).starts_with("\r\n")) ++pos_;
            if (text_[pos_] != '\n') return;
            ++pos_;
            ++line_;
        }
    }

    // Reads one field; true when a comma follows (the record goes on).
    bool read_field(std::string& out)
    {
        if (pos_ < text_.size() && text_[pos_] == '"') return read_quoted(out);
        auto stop = std::min(text_.find_first_of(",\r\n\"", pos_), text_.size());
        if (stop < text_.size() && text_[stop] == '"') return fail("a quote inside a field that does not start with one");
        out.assign(text_.substr(pos_, stop - pos_));
        pos_ = stop;
        return end_field();
    }

    bool read_quoted(std::string& out)
    {
        ++pos_;
        for (;;) {
            auto const quote = text_.find('"', pos_);
            if (quote == std::string_view::npos) return fail("a quoted field is not closed");
            auto const piece = text_.substr(pos_, quote - pos_);
            line_ += static_cast<std::size_t>(std::count(piece.begin(), piece.end(), '\n'));
            out.append(piece);
            pos_ = quote + 1;
            if (pos_ >= text_.size() || text_[pos_] != '"') return end_field();
            out.push_back('"');  // "" inside quotes is one quote
            ++pos_;
        }
    }

    // After a field: a comma (true), the end of the record (false) or a syntax error.
    bool end_field()
    {
        if (pos_ >= text_.size()) return false;
        if (text_[pos_] == ',') return ++pos_, true;
        if (text_.substr(pos_).starts_with("\r\n")) ++pos_;
        if (text_[pos_] != '\n') return fail("unexpected character after a field (a stray quote or carriage return)");
        ++pos_;
        ++line_;
        return false;
    }

    bool fail(std::string message)
    {
        error_ = std::move(message);
        return false;
    }

    std::string_view text_;
    std::size_t pos_ = 0;
    std::size_t line_ = 1;
    std::size_t record_line_ = 1;
    std::size_t record_begin_ = 0;
    std::optional<std::string> error_;
};

ApiError invalid_csv(std::size_t line, std::string const& what)
{
    return api_error(400, "invalid_csv", "line " + std::to_string(line) + ": " + what + "; nothing was imported.");
}

ApiError invalid_row(std::size_t line, std::string const& what)
{
    return api_error(422, "invalid_row", "line " + std::to_string(line) + ": " + what + "; nothing was imported.");
}

constexpr char const* kHeaderHelp = "the first row must be the header device_id,enrolled,owner,source";

// Where each known column is in a row; -1 when the file does not have it.
struct Columns {
    int device_id = -1;
    int enrolled = -1;
    int owner = -1;
    int source = -1;
    std::size_t count = 0;
};

std::string lowercase_trimmed(std::string_view s)
{
    auto const first = s.find_first_not_of(" \t");
    if (first == std::string_view::npos) return {};
    s = s.substr(first, s.find_last_not_of(" \t") - first + 1);
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

ApiResult<Columns> read_header(std::vector<std::string> const& names)
{
    Columns c;
    c.count = names.size();
    for (std::size_t i = 0; i < names.size(); ++i) {
        auto const name = lowercase_trimmed(names[i]);
        int* slot = name == "device_id" ? &c.device_id
                    : name == "enrolled" ? &c.enrolled
                    : name == "owner"    ? &c.owner
                    : name == "source"   ? &c.source
                                         : nullptr;
        if (slot == nullptr) return invalid_csv(1, "unknown column \"" + names[i] + "\": " + kHeaderHelp);
        if (*slot >= 0) return invalid_csv(1, "column " + name + " appears twice");
        *slot = static_cast<int>(i);
    }
    if (c.device_id < 0 || c.enrolled < 0) return invalid_csv(1, std::string("no device_id or enrolled column: ") + kHeaderHelp);
    return c;
}

std::optional<bool> read_enrolled(std::string_view text)
{
    auto const value = lowercase_trimmed(text);
    if (value == "true" || value == "1" || value == "yes") return true;
    if (value == "false" || value == "0" || value == "no") return false;
    return std::nullopt;
}

// The same rule as PUT /v1/devices/{id}/enrollment's owner.
bool has_control_characters(std::string_view s)
{
    return std::any_of(s.begin(), s.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

// Fills `row` from a record's fields; the problem found, or nullopt.
std::optional<std::string> read_row(Columns const& c, std::vector<std::string>& fields, EnrollmentRow& row)
{
    row.device_id = std::move(fields[static_cast<std::size_t>(c.device_id)]);
    if (!is_valid_device_id(row.device_id))
        return "device id \"" + row.device_id.substr(0, 80) + "\" is not 1-64 characters of A-Z a-z 0-9 . _ : -";
    auto const enrolled = read_enrolled(fields[static_cast<std::size_t>(c.enrolled)]);
    if (!enrolled) return "enrolled must be true, false, 1, 0, yes or no";
    row.enrolled = *enrolled;
    if (c.owner >= 0) row.owner = std::move(fields[static_cast<std::size_t>(c.owner)]);
    if (row.owner.size() > 254 || (!row.owner.empty() && !looks_like_email(row.owner)))
        return "owner must be an email address or empty";
    if (c.source >= 0) row.source = std::move(fields[static_cast<std::size_t>(c.source)]);
    if (row.source.size() > 64 || has_control_characters(row.source))
        return "source must be at most 64 characters without control characters";
    if (row.source.empty()) row.source = kDefaultImportSource;
    return std::nullopt;
}

// A device id listed twice: the line that repeats it and the line that listed it first.
struct Duplicate {
    std::size_t line = 0;
    std::size_t first_line = 0;
    std::string device_id;
};

// The first line (in file order) that repeats an earlier row's device id. Sorting row indices
// costs 4 bytes a row, where a hash set of the ids would cost a copy of every id.
std::optional<Duplicate> first_duplicate(std::vector<EnrollmentRow> const& rows)
{
    std::vector<std::uint32_t> order(rows.size());
    std::iota(order.begin(), order.end(), 0U);
    std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
        return rows[a].device_id != rows[b].device_id ? rows[a].device_id < rows[b].device_id : a < b;
    });
    std::optional<Duplicate> found;
    for (std::size_t i = 1; i < order.size(); ++i) {
        auto const& earlier = rows[order[i - 1]];
        auto const& later = rows[order[i]];
        if (earlier.device_id != later.device_id) continue;
        if (!found || later.line < found->line) found = Duplicate{later.line, earlier.line, later.device_id};
    }
    return found;
}

}  // namespace

ApiResult<std::vector<EnrollmentRow>> parse_mdm_csv(std::string_view csv, std::size_t max_rows)
{
    CsvReader reader(csv);
    std::vector<std::string> fields;
    if (!reader.next(fields)) return invalid_csv(reader.line(), reader.error().value_or(std::string("the file is empty: ") + kHeaderHelp));
    auto const columns = read_header(fields);
    if (!columns) return columns.error();
    std::vector<EnrollmentRow> rows;
    rows.reserve(std::min<std::size_t>(max_rows, static_cast<std::size_t>(std::count(csv.begin(), csv.end(), '\n'))));
    while (reader.next(fields)) {
        if (rows.size() == max_rows)
            return api_error(413, "too_many_rows", "line " + std::to_string(reader.line()) + ": an import takes at most " +
                                                       std::to_string(max_rows) + " rows; split the file (exemptctl device import does).");
        if (fields.size() != columns->count)
            return invalid_csv(reader.line(), "the row has " + std::to_string(fields.size()) + " fields, the header " +
                                                  std::to_string(columns->count));
        EnrollmentRow row;
        row.line = reader.line();
        if (auto const problem = read_row(*columns, fields, row)) return invalid_row(row.line, *problem);
        rows.push_back(std::move(row));
    }
    if (reader.error()) return invalid_csv(reader.line(), *reader.error());
    if (auto const dup = first_duplicate(rows))
        return invalid_row(dup->line, "device " + dup->device_id + " is listed twice (first on line " +
                                          std::to_string(dup->first_line) + ")");
    return rows;
}

ApiResult<std::vector<CsvChunk>> chunk_csv(std::string_view csv, std::size_t rows_per_chunk)
{
    CsvReader reader(csv);
    std::vector<std::string> fields;
    if (!reader.next(fields)) return invalid_csv(reader.line(), reader.error().value_or(std::string("the file is empty: ") + kHeaderHelp));
    std::string header(reader.record_text());
    if (!header.ends_with('\n')) header.push_back('\n');
    std::vector<CsvChunk> chunks;
    while (reader.next(fields)) {
        if (chunks.empty() || chunks.back().rows == std::max<std::size_t>(rows_per_chunk, 1))
            chunks.push_back({header, 0, reader.line(), reader.line()});
        auto& chunk = chunks.back();
        chunk.text.append(reader.record_text());
        if (!chunk.text.ends_with('\n')) chunk.text.push_back('\n');
        ++chunk.rows;
        chunk.last_line = reader.line();
    }
    if (reader.error()) return invalid_csv(reader.line(), *reader.error());
    return chunks;
}

}  // namespace exemptd
