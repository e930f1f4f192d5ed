#pragma once
// Reading small text files (configuration, /proc and /sys entries) into memory.

#include "client_error.hpp"

#include <filesystem>
#include <string>

namespace exemptd::client {

// The whole file as bytes. Fails with "cannot read PATH: reason" (the OS's reason). Thread-safe.
[[nodiscard]] ClientResult<std::string> read_file(std::filesystem::path const& path);

}  // namespace exemptd::client
