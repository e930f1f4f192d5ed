#include "json_writer.hpp"

#include <array>
#include <cstdint>
#include <cstring>

namespace exemptd::json_writer {
namespace {

// Bytes that a JSON string must escape: control characters, the quote and the backslash.
constexpr auto kEscaped = [] {
    std::array<bool, 256> table{};
    for (int c = 0; c < 0x20; ++c) table[c] = true;
    table['"'] = table['\\'] = true;
    return table;
}();

// Whether any of the 8 bytes in `w` must be escaped: one below 0x20, a quote or a backslash.
// (The classic "has a zero byte" test: exact for the word as a whole.)
bool needs_escape(std::uint64_t w)
{
    constexpr std::uint64_t kOnes = 0x0101010101010101;
    constexpr std::uint64_t kHighs = 0x8080808080808080;
    auto const has_zero = [](std::uint64_t v) { return (v - kOnes) & ~v & kHighs; };
    auto const below_space = (w - kOnes * 0x20) & ~w & kHighs;
    return (below_space | has_zero(w ^ (kOnes * '"')) | has_zero(w ^ (kOnes * '\\'))) != 0;
}

// The comma before a member or an element, except the first one.
void append_separator(std::string& out)
{
    if (out.back() != '{' && out.back() != '[') out.push_back(',');
}

}  // namespace

void append_key(std::string& out, std::string_view key)
{
    append_separator(out);
    append_string(out, key);
    out.push_back(':');
}

void append_string(std::string& out, std::string_view s)
{
    static constexpr char kHex[] = "0123456789abcdef";
    out.push_back('"');
    std::size_t copied = 0;  // bytes of `s` before this are in `out`; plain runs are copied whole
    for (std::size_t i = 0; i < s.size(); ++i) {
        // Eight plain bytes at a time: text to escape is rare (the decision is mostly plain words).
        while (i + 8 <= s.size()) {
            std::uint64_t w;
            std::memcpy(&w, s.data() + i, sizeof w);
            if (needs_escape(w)) break;
            i += 8;
        }
        if (i == s.size()) break;
        auto const c = static_cast<unsigned char>(s[i]);
        if (!kEscaped[c]) continue;
        out.append(s.data() + copied, i - copied);
        copied = i + 1;
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            out += "\\u00";
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0xf]);
        }
    }
    out.append(s.data() + copied, s.size() - copied);
    out.push_back('"');
}

namespace {

void append_name(std::string& out, Name name)
{
    append_separator(out);
    out.push_back('"');
    out += name.text();
    out += "\":";
}

}  // namespace

void append_member(std::string& out, Name name, std::string_view value)
{
    append_name(out, name);
    append_string(out, value);
}

void append_member(std::string& out, Name name, std::int64_t value)
{
    append_name(out, name);
    out += std::to_string(value);
}

}  // namespace exemptd::json_writer
