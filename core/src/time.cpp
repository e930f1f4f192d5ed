#include "exemptd/time.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>

namespace exemptd {
namespace {

// Reads exactly `width` digits at `pos` of `text`.
std::optional<int> digits(std::string_view text, std::size_t pos, std::size_t width)
{
    if (pos + width > text.size()) return std::nullopt;
    int value = 0;
    for (std::size_t i = pos; i < pos + width; ++i) {
        char const c = text[i];
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + (c - '0');
    }
    return value;
}

// Parses the zone suffix ("Z", "+hh:mm", "-hh:mm") into an offset east of UTC.
std::optional<std::chrono::seconds> zone_offset(std::string_view zone)
{
    if (zone == "Z" || zone == "z") return std::chrono::seconds{0};
    if (zone.size() != 6 || (zone[0] != '+' && zone[0] != '-') || zone[3] != ':') return std::nullopt;
    auto const hh = digits(zone, 1, 2);
    auto const mm = digits(zone, 4, 2);
    if (!hh || !mm || *hh > 23 || *mm > 59) return std::nullopt;
    std::chrono::seconds const offset{*hh * 3600 + *mm * 60};
    return zone[0] == '+' ? offset : -offset;
}

}  // namespace

std::optional<TimePoint> parse_rfc3339(std::string_view text)
{
    using namespace std::chrono;
    if (text.size() < 20 || text[4] != '-' || text[7] != '-' || (text[10] != 'T' && text[10] != 't') ||
        text[13] != ':' || text[16] != ':')
        return std::nullopt;
    auto const y = digits(text, 0, 4), mo = digits(text, 5, 2), d = digits(text, 8, 2);
    auto const h = digits(text, 11, 2), mi = digits(text, 14, 2), s = digits(text, 17, 2);
    if (!y || !mo || !d || !h || !mi || !s || *h > 23 || *mi > 59 || *s > 60) return std::nullopt;
    year_month_day const ymd{year{*y}, month{static_cast<unsigned>(*mo)}, day{static_cast<unsigned>(*d)}};
    if (!ymd.ok()) return std::nullopt;
    std::size_t pos = 19;
    if (text[pos] == '.') {  // fractional seconds are accepted and dropped
        ++pos;
        std::size_t const start = pos;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
        if (pos == start) return std::nullopt;
    }
    auto const offset = zone_offset(text.substr(pos));
    if (!offset) return std::nullopt;
    auto const utc = sys_days{ymd} + hours{*h} + minutes{*mi} + seconds{*s} - *offset;
    // An offset or a leap second can carry a time out of the years format_rfc3339 writes as four
    // digits ("9999-12-31T23:59:60-23:59"); refuse it so every accepted time formats and parses back.
    if (utc < sys_days{year{0} / January / 1} || utc >= sys_days{year{10000} / January / 1}) return std::nullopt;
    return utc;
}

Rfc3339Text::Rfc3339Text(TimePoint t)
{
    using namespace std::chrono;
    auto const day_point = floor<days>(t);
    year_month_day const ymd{day_point};
    hh_mm_ss const hms{t - day_point};
    int const y = static_cast<int>(ymd.year());
    if (y < 0 || y > 9999) {  // never parsed from RFC 3339; written whole rather than cut to four digits
        auto const n = std::snprintf(text_, sizeof text_, "%04d-%02u-%02uT%02d:%02d:%02dZ", y,
                                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                                     static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                                     static_cast<int>(hms.seconds().count()));
        size_ = static_cast<std::size_t>(std::clamp(n, 0, static_cast<int>(sizeof text_) - 1));
        return;
    }
    // Written digit by digit: snprintf was a few percent of a check-in, which formats several times.
    std::memcpy(text_, "0000-00-00T00:00:00Z", 20);
    size_ = 20;
    auto put = [this](std::size_t end, long value, int width) {
        for (int i = 1; i <= width; ++i, value /= 10) text_[end - static_cast<std::size_t>(i)] = char('0' + value % 10);
    };
    put(4, y, 4);
    put(7, static_cast<unsigned>(ymd.month()), 2);
    put(10, static_cast<unsigned>(ymd.day()), 2);
    put(13, hms.hours().count(), 2);
    put(16, hms.minutes().count(), 2);
    put(19, hms.seconds().count(), 2);
}

std::string format_rfc3339(TimePoint t)
{
    return std::string(Rfc3339Text(t).view());
}

std::optional<std::chrono::seconds> parse_duration(std::string_view text)
{
    if (text.size() < 2) return std::nullopt;
    long long value = 0;
    auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size() - 1, value);
    if (ec != std::errc{} || end != text.data() + text.size() - 1 || value < 0 || value > 100'000'000)
        return std::nullopt;
    switch (text.back()) {
    case 's': return std::chrono::seconds{value};
    case 'm': return std::chrono::seconds{value * 60};
    case 'h': return std::chrono::seconds{value * 3600};
    case 'd': return std::chrono::seconds{value * 86400};
    default: return std::nullopt;
    }
}

TimePoint system_now()
{
    return std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
}

}  // namespace exemptd
