#include "json_writer.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
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

void append_escape(Text& out, unsigned char c)
{
    static constexpr char kHex[] = "0123456789abcdef";
    switch (c) {
    case '"': return out.raw("\\\"");
    case '\\': return out.raw("\\\\");
    case '\b': return out.raw("\\b");
    case '\f': return out.raw("\\f");
    case '\n': return out.raw("\\n");
    case '\r': return out.raw("\\r");
    case '\t': return out.raw("\\t");
    default:
        out.raw("\\u00");
        out.raw(kHex[c >> 4]);
        out.raw(kHex[c & 0xf]);
    }
}

// Writes `,"name":` (no comma right after `{` or `[`) at `to`, which has room for
// 1 + Name::kPrefixRoom bytes; returns the end of what counts.
char* put_name(char* to, bool comma, Name const& name)
{
    *to = ',';
    to += comma;
    std::memcpy(to, name.padded_prefix(), Name::kPrefixRoom);
    return to + name.prefix_size();
}

// Whether a member or an element written next needs a comma before it.
bool needs_comma(Text const& out)
{
    return out.back() != '{' && out.back() != '[';
}

}  // namespace

void Text::grow(std::size_t n)
{
    buffer_.resize(std::max(2 * buffer_.size(), size_ + n));
}

void append_key(Text& out, std::string_view key)
{
    if (needs_comma(out)) out.raw(',');
    append_string(out, key);
    out.raw(':');
}

void append_string(Text& out, std::string_view s)
{
    out.raw('"');
    std::size_t copied = 0;  // bytes of `s` before this are in `out`; plain runs are copied whole
    for (std::size_t i = find_escape(s, 0); i < s.size(); i = find_escape(s, i + 1)) {
        out.raw(s.substr(copied, i - copied));
        append_escape(out, static_cast<unsigned char>(s[i]));
        copied = i + 1;
    }
    out.raw(s.substr(copied));
    out.raw('"');
}

void append_member(Text& out, Name const& name, std::string_view value)
{
    auto const comma = needs_comma(out);
    auto const plain = find_escape(value, 0) == value.size();  // the usual case: written in one go
    auto* const start = out.room(1 + Name::kPrefixRoom + (plain ? value.size() + 2 : 0));
    auto* end = put_name(start, comma, name);
    if (plain) {
        *end++ = '"';
        if (!value.empty()) std::memcpy(end, value.data(), value.size());
        end += value.size();
        *end++ = '"';
    }
    out.added(static_cast<std::size_t>(end - start));
    if (!plain) append_string(out, value);
}

void append_member(Text& out, Name const& name, std::int64_t value)
{
    auto const comma = needs_comma(out);
    auto const room = 1 + Name::kPrefixRoom + 20;  // 20: the digits and sign of any int64
    auto* const start = out.room(room);
    auto* const end = std::to_chars(put_name(start, comma, name), start + room, value).ptr;
    out.added(static_cast<std::size_t>(end - start));
}

}  // namespace exemptd::json_writer
