#pragma once
// exempt-agent's view of this Linux machine: the posture report it sends with each check-in.

#include "client_error.hpp"

#include "exemptd/posture.hpp"
#include "exemptd/time.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace exemptd::client {

// The agent version reported in every posture report.
inline constexpr std::string_view kAgentVersion = "0.1.0";

// Collects a posture report for `device_id` at `now`: hostname, DMI serial (when readable), os
// name and version from os-release, a fresh nonce, and the facts this machine can tell (a fact it
// cannot tell is left out, never guessed): disk_encrypted, firewall_enabled, screen_lock_seconds,
// os_patch_age_days. Fails only when no random nonce can be made. Runs nft/iptables-save and
// gsettings; thread-safe.
[[nodiscard]] ClientResult<PostureReport> collect_posture(std::string const& device_id, TimePoint now);

// Whether the root file system sits on dm-crypt (directly or through LVM), from
// /proc/self/mountinfo and sysfs. Nullopt when the root device cannot be found (overlay or
// container roots, for instance). Thread-safe.
[[nodiscard]] std::optional<bool> detect_disk_encryption();

// Whether an nftables or iptables ruleset filters incoming traffic. Nullopt when no ruleset can
// be read (usually: not running as root). Thread-safe.
[[nodiscard]] std::optional<bool> detect_firewall();

// The invoking user's GNOME screen lock delay in seconds, from gsettings. Nullopt when running as
// root, when gsettings cannot tell, or when the screen never locks. Thread-safe.
[[nodiscard]] std::optional<std::int64_t> detect_screen_lock();

// Days since the package manager last upgraded a package (dpkg.log), else since the last
// successful `apt update` (its stamp file or the package lists). Nullopt when none is found.
[[nodiscard]] std::optional<std::int64_t> detect_patch_age(TimePoint now);

// 32 lowercase hex digits from OpenSSL's RAND_bytes. Thread-safe.
[[nodiscard]] ClientResult<std::string> random_nonce();

// The device id in an endpoint certificate's `urn:exemptd:device:` SAN URI. Fails when the file
// cannot be read or is not a valid endpoint certificate. Thread-safe.
[[nodiscard]] ClientResult<std::string> device_id_from_certificate(std::string const& cert_path);

}  // namespace exemptd::client
