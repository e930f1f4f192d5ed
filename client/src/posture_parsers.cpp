#include "posture_parsers.hpp"

#include "file_util.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <system_error>
#include <vector>

namespace exemptd::client {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxDeviceDepth = 8;  // dm stacks are shallow; this also stops a cycle

std::string_view trim(std::string_view text)
{
    auto const is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
    return text;
}

// Calls `visit` with each line of `text`, without its '\n'; stops early when `visit` returns true.
template <class Visit>
void for_each_line(std::string_view text, Visit&& visit)
{
    while (!text.empty()) {
        auto const end = text.find('\n');
        if (visit(text.substr(0, end))) return;
        if (end == std::string_view::npos) return;
        text.remove_prefix(end + 1);
    }
}

std::vector<std::string_view> split_fields(std::string_view line)
{
    std::vector<std::string_view> fields;
    std::size_t pos = 0;
    while (pos < line.size()) {
        auto const start = line.find_first_not_of(' ', pos);
        if (start == std::string_view::npos) break;
        auto const end = std::min(line.find(' ', start), line.size());
        fields.push_back(line.substr(start, end - start));
        pos = end;
    }
    return fields;
}

template <class Number>
std::optional<Number> to_number(std::string_view text)
{
    Number value{};
    auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return value;
}

bool is_octal_escape(std::string_view text, std::size_t i)
{
    auto const octal = [](char c) { return c >= '0' && c <= '7'; };
    return text[i] == '\\' && i + 3 < text.size() && octal(text[i + 1]) && octal(text[i + 2]) && octal(text[i + 3]);
}

// Decodes mountinfo's octal escapes ("\040" is a space).
std::string unescape_octal(std::string_view text)
{
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (!is_octal_escape(text, i)) {
            out += text[i];
            continue;
        }
        out += static_cast<char>(((text[i + 1] - '0') << 6) | ((text[i + 2] - '0') << 3) | (text[i + 3] - '0'));
        i += 3;
    }
    return out;
}

// The value of an os-release assignment, without quotes and escapes.
std::string unquote(std::string_view value)
{
    if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'')
        return std::string(value.substr(1, value.size() - 2));
    if (value.size() < 2 || value.front() != '"' || value.back() != '"') return std::string(value);
    std::string out;
    auto const inner = value.substr(1, value.size() - 2);
    for (std::size_t i = 0; i < inner.size(); ++i) {
        if (inner[i] == '\\' && i + 1 < inner.size()) ++i;
        out += inner[i];
    }
    return out;
}

std::optional<MountEntry> parse_mount_line(std::string_view line)
{
    auto const fields = split_fields(line);
    auto const separator = std::find(fields.begin(), fields.end(), std::string_view("-"));
    if (fields.size() < 6 || separator == fields.end() || fields.end() - separator < 3) return std::nullopt;
    auto const colon = fields[2].find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    auto const major = to_number<unsigned>(fields[2].substr(0, colon));
    auto const minor = to_number<unsigned>(fields[2].substr(colon + 1));
    if (!major || !minor) return std::nullopt;
    return MountEntry{*major, *minor, unescape_octal(fields[4]), std::string(*(separator + 1)),
                      unescape_octal(*(separator + 2))};
}

std::optional<bool> crypt_backed(fs::path const& device_dir, int depth)
{
    std::error_code ec;
    if (!fs::exists(device_dir, ec)) return std::nullopt;
    if (auto uuid = read_file(device_dir / "dm" / "uuid"); uuid && is_crypt_uuid(trim(*uuid))) return true;
    if (depth >= kMaxDeviceDepth) return false;
    bool any = false;
    for (auto const& slave : fs::directory_iterator(device_dir / "slaves", ec)) {
        any = true;
        if (crypt_backed(slave.path(), depth + 1) != true) return false;
    }
    return any;
}

bool starts_with_any(std::string_view line, std::initializer_list<std::string_view> prefixes)
{
    return std::any_of(prefixes.begin(), prefixes.end(), [line](auto p) { return line.starts_with(p); });
}

}  // namespace

OsRelease parse_os_release(std::string_view text)
{
    OsRelease out;
    for_each_line(text, [&out](std::string_view raw) {
        auto const line = trim(raw);
        auto const equals = line.find('=');
        if (line.starts_with('#') || equals == std::string_view::npos) return false;
        auto const key = line.substr(0, equals);
        if (key == "ID") out.id = unquote(line.substr(equals + 1));
        if (key == "VERSION_ID") out.version_id = unquote(line.substr(equals + 1));
        return false;
    });
    return out;
}

std::optional<MountEntry> find_root_mount(std::string_view mountinfo)
{
    std::optional<MountEntry> root;
    for_each_line(mountinfo, [&root](std::string_view line) {
        auto const fields = split_fields(line);
        if (fields.size() > 4 && fields[4] == "/") root = parse_mount_line(line);
        return false;
    });
    return root;
}

bool is_crypt_uuid(std::string_view dm_uuid) noexcept
{
    return dm_uuid.starts_with("CRYPT-");
}

std::optional<bool> is_dm_crypt_backed(std::filesystem::path const& device_dir)
{
    return crypt_backed(device_dir, 0);
}

bool nft_ruleset_filters_input(std::string_view ruleset)
{
    int depth = 0;            // 1 inside a table, 2 inside a chain (or set, map, ...)
    bool in_chain = false;    // the depth-2 block is a chain
    bool input_hook = false;  // ... and a filter base chain on the input hook
    bool filters = false;
    for_each_line(ruleset, [&](std::string_view raw) {
        auto const line = trim(raw);
        if (line.empty()) return false;
        if (depth == 2 && in_chain && line != "}") {
            if (line.starts_with("type ")) input_hook = line.find("type filter hook input") != std::string_view::npos;
            bool const declaration = starts_with_any(line, {"type ", "policy ", "comment ", "devices "});
            filters = input_hook && (!declaration || line.find("policy drop") != std::string_view::npos);
            if (line.ends_with('{') && !filters) ++depth;  // a multi-line rule in another chain
            return filters;
        }
        if (line.ends_with('{')) {
            if (++depth == 2) {
                in_chain = line.starts_with("chain ");
                input_hook = false;
            }
        } else if (line == "}") {
            if (--depth < 2) in_chain = false;
        }
        return false;
    });
    return filters;
}

bool iptables_save_filters_input(std::string_view saved)
{
    bool in_filter = false;
    bool filters = false;
    for_each_line(saved, [&](std::string_view raw) {
        auto const line = trim(raw);
        if (line.starts_with('*')) in_filter = line == "*filter";
        filters = in_filter && (line.starts_with(":INPUT DROP") || line.starts_with("-A INPUT "));
        return filters;
    });
    return filters;
}

std::optional<std::int64_t> parse_gsettings_uint(std::string_view text)
{
    auto value = trim(text);
    if (value.starts_with("uint32 ")) value.remove_prefix(7);
    auto const number = to_number<std::int64_t>(value);
    if (!number || *number < 0) return std::nullopt;
    return number;
}

std::optional<bool> parse_gsettings_bool(std::string_view text)
{
    auto const value = trim(text);
    if (value == "true") return true;
    if (value == "false") return false;
    return std::nullopt;
}

std::optional<std::int64_t> screen_lock_after(std::optional<std::int64_t> idle_delay,
                                              std::optional<bool> lock_enabled,
                                              std::optional<std::int64_t> lock_delay)
{
    if (!idle_delay || !lock_enabled || !*lock_enabled || *idle_delay == 0) return std::nullopt;
    return *idle_delay + lock_delay.value_or(0);
}

std::optional<std::chrono::local_seconds> last_dpkg_upgrade(std::string_view dpkg_log)
{
    using namespace std::chrono;
    std::optional<local_seconds> last;
    for_each_line(dpkg_log, [&last](std::string_view line) {
        // "2026-11-20 10:00:00 upgrade libc6:amd64 2.36-9 2.36-9+deb12u9"
        if (line.size() < 28 || line.substr(19, 9) != " upgrade ") return false;
        auto const y = to_number<int>(line.substr(0, 4));
        auto const mo = to_number<unsigned>(line.substr(5, 2));
        auto const d = to_number<unsigned>(line.substr(8, 2));
        auto const h = to_number<int>(line.substr(11, 2));
        auto const mi = to_number<int>(line.substr(14, 2));
        auto const s = to_number<int>(line.substr(17, 2));
        if (!y || !mo || !d || !h || !mi || !s) return false;
        year_month_day const date{year{*y}, month{*mo}, day{*d}};
        if (!date.ok()) return false;
        last = local_days{date} + hours{*h} + minutes{*mi} + seconds{*s};
        return false;
    });
    return last;
}

std::int64_t patch_age_days(TimePoint last_update, TimePoint now) noexcept
{
    if (now <= last_update) return 0;
    return std::chrono::floor<std::chrono::days>(now - last_update).count();
}

std::optional<std::string> clean_serial(std::string_view raw)
{
    constexpr std::array<std::string_view, 10> kPlaceholders{
        "to be filled by o.e.m.", "default string", "system serial number", "not specified", "none",
        "n/a", "0", "0123456789", "123456789", "not applicable"};
    auto const serial = trim(raw);
    std::string lower(serial);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (serial.empty() || std::find(kPlaceholders.begin(), kPlaceholders.end(), lower) != kPlaceholders.end())
        return std::nullopt;
    return std::string(serial);
}

}  // namespace exemptd::client
