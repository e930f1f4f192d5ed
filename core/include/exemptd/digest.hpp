#pragma once
// Message digests used for policy versions, agreements and the audit chain.

#include <string>
#include <string_view>

namespace exemptd {

// Lowercase hex SHA-256 of `bytes`. Thread-safe.
[[nodiscard]] std::string sha256_hex(std::string_view bytes);

// Lowercase hex of raw bytes.
[[nodiscard]] std::string to_hex(std::string_view bytes);

}  // namespace exemptd
