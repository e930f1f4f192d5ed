#include "json_writer.hpp"

#include <array>

namespace exemptd::json_writer {
namespace {

// Bytes that a JSON string must escape: control characters, the quote and the backslash.
constexpr auto kEscaped = [] {
    std::array<bool, 256> table{};
    for (int c = 0; c < 0x20; ++c) table[c] = true;
    table['"'] = table['\\'] = true;
    return table;
}();

}  // namespace

void append_key(std::string& out, std::string_view key)
{
    if (out.back() != '{' && out.back() != '[') out.push_back(',');
    append_string(out, key);
    out.push_back(':');
}

void append_string(std::string& out, std::string_view s)
{
    static constexpr char kHex[] = "0123456789abcdef";
    out.push_back('"');
    std::size_t copied = 0;  // bytes of `s` before this are in `out`; plain runs are copied whole
    for (std::size_t i = 0; i < s.size(); ++i) {
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

void append_member(std::string& out, std::string_view key, std::string_view value)
{
    append_key(out, key);
    append_string(out, value);
}

void append_member(std::string& out, std::string_view key, std::int64_t value)
{
    append_key(out, key);
    out += std::to_string(value);
}

}  // namespace exemptd::json_writer
