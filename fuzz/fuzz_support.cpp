#include "fuzz_support.hpp"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>

namespace exemptd::fuzz {

TimePoint fixed_now()
{
    return *parse_rfc3339("2027-01-01T00:00:00Z");
}

std::string policies_dir()
{
    return EXEMPTD_SOURCE_DIR "/policies";
}

std::shared_ptr<Policy const> const& default_policy()
{
    static std::shared_ptr<Policy const> const policy = [] {
        auto loaded = load_policy_file(policies_dir() + "/default.yaml");
        if (!loaded) fail("cannot load the default policy: " + loaded.error().to_string());
        return std::make_shared<Policy const>(std::move(*loaded));
    }();
    return policy;
}

std::shared_ptr<AgreementVerifier const> load_verifier(std::size_t cache_entries)
{
    auto verifier = AgreementVerifier::load(EXEMPTD_FUZZ_DATA "/fuzz-ca.pem", EXEMPTD_FUZZ_DATA "/fuzz-ca-crl.pem",
                                            cache_entries);
    if (!verifier) fail("cannot load the fuzzing trust store: " + verifier.error());
    if (!(*verifier)->crl_problem().empty()) fail("the fuzzing CRL is unusable: " + (*verifier)->crl_problem());
    return *verifier;
}

void quiet_logging()
{
    spdlog::set_level(spdlog::level::off);
}

void fail(std::string_view what)
{
    std::fprintf(stderr, "fuzz invariant broken: %.*s\n", static_cast<int>(what.size()), what.data());
    std::abort();
}

}  // namespace exemptd::fuzz
