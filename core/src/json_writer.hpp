#pragma once
// Writing JSON text straight into a string, for the documents written on every check-in (the
// decision, the facts, the failure streaks), where building a boost::json value first cost more
// than the writing. Private to the core library. The text is what boost::json::serialize writes
// for the same document: the same escapes, bytes >= 0x80 as they are.

#include <cstdint>
#include <string>
#include <string_view>

namespace exemptd::json_writer {

// Appends `s` as a JSON string.
void append_string(std::string& out, std::string_view s);

// Appends `,"key":`, without the comma right after `{` or `[`.
void append_key(std::string& out, std::string_view key);

// Appends `,"key":` (without the comma right after `{` or `[`) and the string value.
void append_member(std::string& out, std::string_view key, std::string_view value);

// Appends `,"key":` (without the comma right after `{` or `[`) and the integer.
void append_member(std::string& out, std::string_view key, std::int64_t value);

}  // namespace exemptd::json_writer
