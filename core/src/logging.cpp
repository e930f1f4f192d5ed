#include "exemptd/logging.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace exemptd {

void setup_logging(std::string const& level)
{
    auto logger = spdlog::stderr_logger_mt("exemptd");
    // journald adds its own timestamps; the level and key=value message are what it keeps.
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ level=%l %v", spdlog::pattern_time_type::utc);
    logger->set_level(spdlog::level::from_str(level));
    spdlog::set_default_logger(std::move(logger));
}

}  // namespace exemptd
