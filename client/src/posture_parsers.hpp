#pragma once
// Pure parsers behind exempt-agent's posture collection on Linux. Each takes the text (or the sysfs
// folder) it reads, so that fixtures can test it.

#include "exemptd/time.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace exemptd::client {

// The two os-release(5) fields a posture report carries.
struct OsRelease {
    std::string id;          // ID, e.g. "debian"
    std::string version_id;  // VERSION_ID, e.g. "12"
};

// Parses os-release text: KEY=value lines, values bare or in single or double quotes (with
// backslash escapes in double quotes); comments, blank lines and other keys are ignored. Pure.
[[nodiscard]] OsRelease parse_os_release(std::string_view text);

// The parts of one /proc/self/mountinfo line that locate a file system's device.
struct MountEntry {
    unsigned major = 0;       // st_dev of the file system; 0 for btrfs, overlay, tmpfs, ...
    unsigned minor = 0;
    std::string mount_point;  // octal escapes (\040) decoded
    std::string fstype;
    std::string source;       // e.g. "/dev/mapper/vg-root", octal escapes decoded
};

// The mount visible at "/": the last mountinfo line whose mount point is "/" (later mounts hide
// earlier ones). Nullopt when there is none or the line is malformed. Pure.
[[nodiscard]] std::optional<MountEntry> find_root_mount(std::string_view mountinfo);

// True when a device-mapper uuid (the content of /sys/block/dm-N/dm/uuid) names a dm-crypt
// target: it starts with "CRYPT-" ("CRYPT-LUKS2-...", "CRYPT-PLAIN-..."). Pure.
[[nodiscard]] bool is_crypt_uuid(std::string_view dm_uuid) noexcept;

// Whether the block device whose sysfs folder is `device_dir` (e.g. /sys/dev/block/253:1) keeps its
// data encrypted: it is a dm-crypt device, or it sits on other devices (its `slaves`) and every one
// of them does, recursively (LVM on LUKS). Nullopt when `device_dir` does not exist. Reads only
// below `device_dir`; thread-safe.
[[nodiscard]] std::optional<bool> is_dm_crypt_backed(std::filesystem::path const& device_dir);

// True when `nft list ruleset` output filters incoming traffic: a base chain of type filter on
// the input hook has policy drop or at least one rule. Pure.
[[nodiscard]] bool nft_ruleset_filters_input(std::string_view ruleset);

// True when `iptables-save` output filters incoming traffic: in the *filter table, the INPUT
// chain's policy is DROP or it has at least one rule. Pure.
[[nodiscard]] bool iptables_save_filters_input(std::string_view saved);

// Reads a `gsettings get` answer such as "uint32 300" or "300" (exactly one line). Pure.
[[nodiscard]] std::optional<std::int64_t> parse_gsettings_uint(std::string_view text);

// Reads a `gsettings get` answer "true" or "false" (exactly one line). Pure.
[[nodiscard]] std::optional<bool> parse_gsettings_bool(std::string_view text);

// Seconds of inactivity after which the screen locks: idle_delay + lock_delay when locking is
// enabled and idle_delay is not 0. Nullopt when that is unknown or the screen never locks. Pure.
[[nodiscard]] std::optional<std::int64_t> screen_lock_after(std::optional<std::int64_t> idle_delay,
                                                            std::optional<bool> lock_enabled,
                                                            std::optional<std::int64_t> lock_delay);

// The local time of the last "upgrade" line of a dpkg.log ("2026-11-20 10:00:00 upgrade pkg ..."),
// or nullopt when there is none. Pure.
[[nodiscard]] std::optional<std::chrono::local_seconds> last_dpkg_upgrade(std::string_view dpkg_log);

// Whole days from `last_update` to `now`; 0 when `last_update` is in the future. Pure.
[[nodiscard]] std::int64_t patch_age_days(TimePoint last_update, TimePoint now) noexcept;

// The trimmed serial number from /sys/class/dmi/id/product_serial, or nullopt for an empty value
// or a firmware placeholder ("To Be Filled By O.E.M.", "Default string", ...). Pure.
[[nodiscard]] std::optional<std::string> clean_serial(std::string_view raw);

}  // namespace exemptd::client
