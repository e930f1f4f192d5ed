#pragma once
// What the fuzz targets share: the fixed clock, the default policy and the fuzzing trust store
// (fuzz/data, made by fuzz/make-seeds.sh), loaded once per process.

#include "exemptd/agreement.hpp"
#include "exemptd/policy.hpp"
#include "exemptd/time.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace exemptd::fuzz {

// The instant every target treats as "now": after the seeds were signed and inside the 100-year
// validity of the fuzzing certificates, so that a seed verifies the same way on every run.
[[nodiscard]] TimePoint fixed_now();

// policies/default.yaml, loaded once; aborts when it cannot be loaded. Thread-safe.
[[nodiscard]] std::shared_ptr<Policy const> const& default_policy();

// The folder holding the policies (policies/), for terms files.
[[nodiscard]] std::string policies_dir();

// A verifier over fuzz/data/fuzz-ca.pem and fuzz/data/fuzz-ca-crl.pem with a signature cache of
// `cache_entries`; aborts when the trust store cannot be loaded. Thread-safe.
[[nodiscard]] std::shared_ptr<AgreementVerifier const> load_verifier(std::size_t cache_entries);

// Turns logging off, so that a fuzzer's output is its own. Idempotent.
void quiet_logging();

// Prints `what` to stderr and aborts, so that libFuzzer (or the replay main) reports the input.
[[noreturn]] void fail(std::string_view what);

// The input as text.
[[nodiscard]] inline std::string_view as_text(std::uint8_t const* data, std::size_t size) noexcept
{
    return {reinterpret_cast<char const*>(data), size};
}

}  // namespace exemptd::fuzz
