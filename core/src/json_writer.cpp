#include "json_writer.hpp"

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace exemptd::json_writer {
namespace {

// Bytes that a JSON string must escape: control characters, the quote and the backslash.
constexpr auto kEscaped = [] {
    std::array<bool, 256> table{};
    for (int c = 0; c < 0x20; ++c) table[c] = true;
    table['"'] = table['\\'] = true;
    return table;
}();

#if defined(__SSE2__)
// Bit k is set when byte k of the 16 at `p` must be escaped: below 0x20, a quote or a backslash.
unsigned escape_mask(char const* p)
{
    __m128i const v = _mm_loadu_si128(reinterpret_cast<__m128i const*>(p));
    __m128i const control = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
    __m128i const quote = _mm_cmpeq_epi8(v, _mm_set1_epi8('"'));
    __m128i const backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'));
    return static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(control, _mm_or_si128(quote, backslash))));
}
#endif

// The index of the first byte of `s` from `i` on that must be escaped, or s.size(). Text to
// escape is rare (the decision is mostly plain words), so plain text goes 16 bytes at a time
// where the processor can; the last bytes are checked in a window that overlaps bytes already
// checked, whose bits are dropped.
std::size_t find_escape(std::string_view s, std::size_t i)
{
    auto const n = s.size();
#if defined(__SSE2__)
    if (n >= 16) {
        for (; i + 16 <= n; i += 16) {
            if (auto const mask = escape_mask(s.data() + i)) return i + std::countr_zero(mask);
        }
        if (i == n) return n;
        auto const start = n - 16;
        auto const mask = escape_mask(s.data() + start) >> (i - start) << (i - start);  // from i on
        return mask != 0 ? start + std::countr_zero(mask) : n;
    }
#endif
    while (i < n && !kEscaped[static_cast<unsigned char>(s[i])]) ++i;
    return i;
}

void append_escape(std::string& out, unsigned char c)
{
    static constexpr char kHex[] = "0123456789abcdef";
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
    out.push_back('"');
    std::size_t copied = 0;  // bytes of `s` before this are in `out`; plain runs are copied whole
    for (std::size_t i = find_escape(s, 0); i < s.size(); i = find_escape(s, i + 1)) {
        out.append(s.data() + copied, i - copied);
        append_escape(out, static_cast<unsigned char>(s[i]));
        copied = i + 1;
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
