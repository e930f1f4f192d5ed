#pragma once
// Writing JSON text straight into a string, for the documents written on every check-in (the
// decision, the facts, the failure streaks), where building a boost::json value first cost more
// than the writing. Private to the core library. The text is what boost::json::serialize writes
// for the same document: the same escapes, bytes >= 0x80 as they are.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace exemptd::json_writer {

// Appends `s` as a JSON string.
void append_string(std::string& out, std::string_view s);

// Appends `,"key":`, without the comma right after `{` or `[`; `key` is escaped.
void append_key(std::string& out, std::string_view key);

// A member name written as it is: a string literal, checked at compile time to need no escape.
class Name {
public:
    template <std::size_t N>
    consteval Name(char const (&text)[N]) : text_(text, N - 1)  // NOLINT: implicit from a literal
    {
        for (char const c : text_) {
            if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) throw "a Name needs no escape";
        }
    }
    [[nodiscard]] std::string_view text() const { return text_; }

private:
    std::string_view text_;
};

// Appends `,"name":` (without the comma right after `{` or `[`) and the string value.
void append_member(std::string& out, Name name, std::string_view value);

// Appends `,"name":` (without the comma right after `{` or `[`) and the integer.
void append_member(std::string& out, Name name, std::int64_t value);

}  // namespace exemptd::json_writer
