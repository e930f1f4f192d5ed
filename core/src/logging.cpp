#include "exemptd/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

namespace exemptd {
namespace {

// Under systemd, stderr goes to the journal, which reads a leading "<N>" as the line's syslog
// priority (sd-daemon(3)); that keeps `journalctl -p warning` meaningful.
class JournalPriority final : public spdlog::custom_flag_formatter {
public:
    void format(spdlog::details::log_msg const& msg, std::tm const&, spdlog::memory_buf_t& dest) override
    {
        static constexpr std::string_view kPrefixes[] = {"<7>", "<7>", "<6>", "<4>", "<3>", "<2>", ""};
        auto const level = static_cast<std::size_t>(msg.level);
        auto const prefix = level < std::size(kPrefixes) ? kPrefixes[level] : std::string_view{};
        dest.append(prefix.data(), prefix.data() + prefix.size());
    }

    [[nodiscard]] std::unique_ptr<custom_flag_formatter> clone() const override
    {
        return std::make_unique<JournalPriority>();
    }
};

}  // namespace

void setup_logging(std::string const& level)
{
    auto logger = spdlog::stderr_logger_mt("exemptd");
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    // The journal stamps each line itself; elsewhere the line carries its own UTC time.
    if (std::getenv("JOURNAL_STREAM") != nullptr)
        formatter->add_flag<JournalPriority>('*').set_pattern("%*level=%l %v");
    else
        formatter->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ level=%l %v");
    logger->set_formatter(std::move(formatter));
    logger->set_level(spdlog::level::from_str(level));
    spdlog::set_default_logger(std::move(logger));
}

}  // namespace exemptd
