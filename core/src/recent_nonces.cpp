#include "exemptd/recent_nonces.hpp"

#include <algorithm>
#include <functional>
#include <string>

namespace exemptd {
namespace {

constexpr std::int64_t kBucketSeconds = 60;    // offsets 0-59 fit the low byte of a slot
constexpr std::uint64_t kForgotten = 0xff;     // the offset of a slot whose add was undone
constexpr std::size_t kFirstSlots = 64;        // a power of two

std::uint64_t slot_key(std::uint64_t slot)
{
    return slot >> 8;
}

}  // namespace

RecentNonces::Key RecentNonces::key(std::string_view device_id, std::string_view nonce)
{
    // Device ids cannot contain a newline, so the joined text names one pair. The hash needs no
    // secret: a device can only add its own nonces, and a collision could only refuse a report.
    std::string joined;
    joined.reserve(device_id.size() + 1 + nonce.size());
    joined.append(device_id).append(1, '\n').append(nonce);
    Key const k = std::hash<std::string>{}(joined) >> 8;
    return k == 0 ? 1 : k;  // 0 marks an empty slot
}

std::size_t RecentNonces::Bucket::find(Key key) const noexcept
{
    std::size_t const mask = slots.size() - 1;
    for (std::size_t i = key & mask;; i = (i + 1) & mask) {
        if (slots[i] == 0) return npos;
        if (slot_key(slots[i]) == key) return i;
    }
}

void RecentNonces::Bucket::insert(Key key, std::uint64_t offset)
{
    if (auto const existing = find(key); existing != npos) {  // the same nonce again, after a forget
        slots[existing] = key << 8 | offset;
        return;
    }
    if ((used + 1) * 4 > slots.size() * 3) {  // keep the load under 3/4
        std::vector<std::uint64_t> old(slots.size() * 2, 0);
        old.swap(slots);
        std::size_t const mask = slots.size() - 1;
        for (auto const slot : old) {
            if (slot == 0) continue;
            std::size_t i = slot_key(slot) & mask;
            while (slots[i] != 0) i = (i + 1) & mask;
            slots[i] = slot;
        }
    }
    std::size_t const mask = slots.size() - 1;
    std::size_t i = key & mask;
    while (slots[i] != 0) i = (i + 1) & mask;
    slots[i] = key << 8 | offset;
    ++used;
}

bool RecentNonces::contains(Key key, std::int64_t since) const
{
    for (auto const& bucket : buckets_) {
        if (bucket.last_at < since) continue;
        auto const i = bucket.find(key);
        if (i == Bucket::npos) continue;
        auto const offset = static_cast<std::int64_t>(bucket.slots[i] & 0xff);
        if (offset != static_cast<std::int64_t>(kForgotten) && bucket.first_at + offset >= since) return true;
    }
    return false;
}

void RecentNonces::add(Key key, std::int64_t at, std::int64_t seq)
{
    if (buckets_.empty() || at >= buckets_.back().first_at + kBucketSeconds) {
        Bucket fresh;
        fresh.first_at = fresh.last_at = at;
        fresh.slots.assign(kFirstSlots, 0);
        buckets_.push_back(std::move(fresh));
    }
    auto& bucket = buckets_.back();
    // A clock stepped back files the nonce as seen at the bucket's start: remembered a little
    // longer than asked, never shorter.
    std::int64_t const offset = std::max<std::int64_t>(at - bucket.first_at, 0);
    bucket.insert(key, static_cast<std::uint64_t>(offset));
    bucket.last_at = std::max(bucket.last_at, bucket.first_at + offset);
    bucket.max_seq = std::max(bucket.max_seq, seq);
}

void RecentNonces::forget(Key key) noexcept
{
    for (auto bucket = buckets_.rbegin(); bucket != buckets_.rend(); ++bucket) {
        auto const i = bucket->find(key);
        if (i != Bucket::npos && (bucket->slots[i] & 0xff) != kForgotten) {
            bucket->slots[i] = key << 8 | kForgotten;
            return;
        }
    }
}

std::int64_t RecentNonces::expire(std::int64_t before) noexcept
{
    std::int64_t dropped = 0;
    while (!buckets_.empty() && buckets_.front().last_at < before) {
        dropped = std::max(dropped, buckets_.front().max_seq);
        buckets_.pop_front();
    }
    return dropped;
}

std::size_t RecentNonces::size() const noexcept
{
    std::size_t n = 0;
    for (auto const& bucket : buckets_) n += bucket.used;
    return n;
}

}  // namespace exemptd
