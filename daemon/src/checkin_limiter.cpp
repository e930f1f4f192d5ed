#include "checkin_limiter.hpp"

#include <algorithm>

namespace exemptd::daemon {

void CheckinLimiter::set_rate(int per_minute)
{
    std::int64_t const interval = per_minute > 0 ? 60'000 / per_minute : 0;
    interval_ms_.store(interval);
    tolerance_ms_.store(per_minute > 0 ? interval * (per_minute - 1) : 0);
    if (interval == 0) {
        for (auto& shard : shards_) {
            std::lock_guard lock(shard.mutex);
            shard.next.clear();
        }
    }
}

std::optional<std::chrono::seconds> CheckinLimiter::acquire(std::string_view device, TimePoint now)
{
    Millis const interval{interval_ms_.load()};
    if (interval.count() == 0) return std::nullopt;
    Millis const tolerance{tolerance_ms_.load()};
    Instant const at = std::chrono::time_point_cast<Millis>(now);
    auto& shard = shards_[Hash{}(device) % kShards];
    std::lock_guard lock(shard.mutex);
    auto found = shard.next.find(device);
    Instant const next = found == shard.next.end() ? at : std::max(found->second, at);
    if (next - at > tolerance) {
        auto const wait = next - tolerance - at;
        return std::max(std::chrono::seconds{1}, std::chrono::ceil<std::chrono::seconds>(wait));
    }
    if (found != shard.next.end()) {
        found->second = next + interval;
        return std::nullopt;
    }
    if (shard.next.size() >= shard.prune_at) {
        prune_shard(shard, at);
        shard.prune_at = std::max(kMinPruneSize, 2 * shard.next.size());
    }
    shard.next.emplace(std::string(device), next + interval);
    return std::nullopt;
}

std::size_t CheckinLimiter::prune_shard(Shard& shard, Instant now)
{
    return std::erase_if(shard.next, [now](auto const& entry) { return entry.second <= now; });
}

std::size_t CheckinLimiter::prune(TimePoint now)
{
    Instant const at = std::chrono::time_point_cast<Millis>(now);
    std::size_t dropped = 0;
    for (auto& shard : shards_) {
        std::lock_guard lock(shard.mutex);
        dropped += prune_shard(shard, at);
        shard.prune_at = std::max(kMinPruneSize, 2 * shard.next.size());
    }
    return dropped;
}

std::size_t CheckinLimiter::size() const
{
    std::size_t total = 0;
    for (auto const& shard : shards_) {
        std::lock_guard lock(shard.mutex);
        total += shard.next.size();
    }
    return total;
}

}  // namespace exemptd::daemon
