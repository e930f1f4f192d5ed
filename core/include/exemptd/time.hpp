#pragma once
// Wall-clock time as the API speaks it: whole seconds, RFC 3339, UTC.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace exemptd {

using TimePoint = std::chrono::sys_seconds;

// Parses "2026-11-27T21:00:00Z" (also fractional seconds and +hh:mm offsets, normalised to UTC).
// Returns nullopt for anything else. Thread-safe.
[[nodiscard]] std::optional<TimePoint> parse_rfc3339(std::string_view text);

// Formats as "YYYY-MM-DDTHH:MM:SSZ". Thread-safe.
[[nodiscard]] std::string format_rfc3339(TimePoint t);

// The same text in a buffer of its own, for writers that copy it at once (no allocation: the
// text is longer than a std::string holds inline).
class Rfc3339Text {
public:
    explicit Rfc3339Text(TimePoint t);
    [[nodiscard]] std::string_view view() const { return {text_, size_}; }

private:
    char text_[48];
    std::size_t size_;
};

// Parses a duration such as "14d", "12h", "30m" or "45s". Returns nullopt when malformed.
[[nodiscard]] std::optional<std::chrono::seconds> parse_duration(std::string_view text);

// The source of "now"; tests inject a fixed or movable clock.
using Clock = std::function<TimePoint()>;

// The system clock truncated to seconds.
[[nodiscard]] TimePoint system_now();

}  // namespace exemptd
