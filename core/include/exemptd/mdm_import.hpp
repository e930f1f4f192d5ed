#pragma once
// The CSV of a bulk enrollment import (an MDM export): parsing, validation and chunking. Shared by
// the daemon (POST /v1/devices/import) and exemptctl (which checks the file before sending it).

#include "exemptd/error.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace exemptd {

// The most data rows one import request may hold.
inline constexpr std::size_t kMaxImportRows = 1'000'000;

// The largest body of one import request (the daemon's per-route body limit).
inline constexpr std::size_t kMaxImportBytes = 64 * 1024 * 1024;

// The source recorded for a row whose `source` column is absent or empty.
inline constexpr std::string_view kDefaultImportSource = "mdm-import";

// One data row of an import, validated.
struct EnrollmentRow {
    std::string device_id;
    bool enrolled = false;
    std::string owner;   // an email address, or empty
    std::string source;  // never empty: kDefaultImportSource when the file has none
    std::size_t line = 0;  // the file line the row starts on (1 is the header)
};

// Parses an RFC 4180 CSV whose header names the columns device_id and enrolled, and optionally
// owner and source, in any order (no others). `enrolled` is true/false/1/0/yes/no (any case).
// Accepts CRLF or LF line ends, a UTF-8 byte order mark and blank lines. Refuses the whole file,
// with a message that names the line: 400 `invalid_csv` (no header, a broken quote, a wrong
// number of fields), 422 `invalid_row` (a device id outside SPEC §3's syntax, an owner that is
// not an email address, an `enrolled` value it cannot read, a device listed twice, a source over
// 64 characters) and 413 `too_many_rows` (more than `max_rows` data rows). Pure and thread-safe.
[[nodiscard]] ApiResult<std::vector<EnrollmentRow>> parse_mdm_csv(std::string_view csv,
                                                                  std::size_t max_rows = kMaxImportRows);

// One piece of a file split for sending: the header line followed by up to `rows` data records,
// each piece a CSV of its own, and the file lines it covers.
struct CsvChunk {
    std::string text;
    std::size_t rows = 0;
    std::size_t first_line = 0;
    std::size_t last_line = 0;
};

// Splits a CSV (header first) into pieces of at most `rows_per_chunk` data records, each
// starting with the header line, without cutting a quoted field. Blank lines are dropped. 400
// `invalid_csv` when the file has no header or a quote is not closed. Pure and thread-safe.
[[nodiscard]] ApiResult<std::vector<CsvChunk>> chunk_csv(std::string_view csv, std::size_t rows_per_chunk);

}  // namespace exemptd
