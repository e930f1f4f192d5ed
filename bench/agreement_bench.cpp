// Measures in-process verification of signed BYOD agreements (SPEC §7): how many full CMS
// verifications (signature, chain at signing time and now, CRL) one core does per second. The
// signature cache is off for the CMS figures, so every call runs CMS_verify. Prints figures only.
//
//   exemptd_agreement_bench [--iterations N] [--threads T] [--fixtures DIR] [--openssl-speed]
//
// Without --fixtures it makes fresh ones with tests/unit/make_agreement_fixtures.sh in a temporary
// folder. --openssl-speed also runs `openssl speed -seconds 3 ecdsap256` and prints the ratio of
// CMS verifications/s to ECDSA P-256 verifications/s (both per core).

#include "exemptd/agreement.hpp"
#include "exemptd/digest.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <stdlib.h>

namespace {

namespace fs = std::filesystem;
using exemptd::AgreementVerifier;

struct Options {
    int iterations = 5000;
    unsigned threads = 1;
    std::string fixtures;
    bool openssl_speed = false;
};

Options parse_options(int argc, char** argv)
{
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string const arg = argv[i];
        bool const has_value = i + 1 < argc;
        if (arg == "--iterations" && has_value) options.iterations = std::max(1, std::atoi(argv[++i]));
        else if (arg == "--threads" && has_value) options.threads = static_cast<unsigned>(std::max(1, std::atoi(argv[++i])));
        else if (arg == "--fixtures" && has_value) options.fixtures = argv[++i];
        else if (arg == "--openssl-speed") options.openssl_speed = true;
        else throw std::invalid_argument("usage: exemptd_agreement_bench [--iterations N] [--threads T] "
                                         "[--fixtures DIR] [--openssl-speed]");
    }
    return options;
}

std::string read_file(fs::path const& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A temporary folder of fresh fixtures, removed on destruction.
class MadeFixtures {
public:
    MadeFixtures()
    {
        std::string dir = (fs::temp_directory_path() / "exemptd-agreement-bench.XXXXXX").string();
        if (::mkdtemp(dir.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = dir;
        std::string const command = "bash '" EXEMPTD_SOURCE_DIR "/tests/unit/make_agreement_fixtures.sh' '" + dir + "'";
        if (std::system(command.c_str()) != 0) {
            fs::remove_all(path_);
            throw std::runtime_error("make_agreement_fixtures.sh failed");
        }
    }
    ~MadeFixtures() { fs::remove_all(path_); }
    MadeFixtures(MadeFixtures const&) = delete;
    MadeFixtures& operator=(MadeFixtures const&) = delete;

    [[nodiscard]] fs::path const& path() const noexcept { return path_; }

private:
    fs::path path_;
};

struct Inputs {
    fs::path dir;
    std::string document;
    std::string signature;
    exemptd::Policy policy;
};

Inputs read_inputs(fs::path const& dir)
{
    Inputs in{dir, read_file(dir / "agreement.yaml"), read_file(dir / "agreement.yaml.p7s"), {}};
    auto const terms = (dir / "byod-v3.txt").string();
    in.policy.agreements.emplace("byod-v3", exemptd::AgreementTemplate{"byod-v3", terms, exemptd::sha256_hex(read_file(terms))});
    return in;
}

std::shared_ptr<AgreementVerifier const> load(Inputs const& in, std::string const& crl, std::size_t cache)
{
    auto verifier = AgreementVerifier::load((in.dir / "agreements-ca.crt").string(), crl.empty() ? "" : (in.dir / crl).string(), cache);
    if (!verifier) throw std::runtime_error(verifier.error());
    return *verifier;
}

// Verifications per second over all threads; throws if any verification is refused.
double measure(AgreementVerifier const& verifier, Inputs const& in, Options const& options)
{
    auto const now = exemptd::system_now();
    for (int i = 0; i < 100; ++i)  // warm-up, and a check that the fixture verifies at all
        if (auto const v = verifier.verify(in.document, in.signature, in.policy, now); !v.ok)
            throw std::runtime_error("the agreement was refused: " + v.reason + ": " + v.message);
    std::atomic<int> refused{0};
    auto const start = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < options.threads; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < options.iterations; ++i)
                if (!verifier.verify(in.document, in.signature, in.policy, now).ok) ++refused;
        });
    for (auto& thread : threads) thread.join();
    std::chrono::duration<double> const elapsed = std::chrono::steady_clock::now() - start;
    if (refused != 0) throw std::runtime_error("verifications were refused during the run");
    return options.iterations * static_cast<double>(options.threads) / elapsed.count();
}

// ECDSA P-256 verifications/s of one core, as `openssl speed -seconds 3 ecdsap256` reports them.
std::optional<double> openssl_ecdsa_p256_verify_per_second()
{
    std::unique_ptr<FILE, decltype(&::pclose)> pipe{::popen("openssl speed -seconds 3 ecdsap256 2>/dev/null", "r"), &::pclose};
    if (!pipe) return std::nullopt;
    char line[512];
    std::optional<double> result;
    while (std::fgets(line, sizeof line, pipe.get()) != nullptr) {
        std::string const text = line;
        if (text.find("(nistp256)") == std::string::npos) continue;
        std::istringstream fields(text);
        std::string field, last;
        while (fields >> field) last = field;
        result = std::strtod(last.c_str(), nullptr);  // columns: sign, verify, sign/s, verify/s
    }
    return result;
}

void report(char const* name, double per_second, Options const& options)
{
    unsigned const cores = std::max(1U, std::min(options.threads, std::thread::hardware_concurrency()));
    std::printf("%-44s %10.0f verifications/s  %10.0f per core  (%.1f us each)\n", name, per_second,
                per_second / cores, 1e6 * cores / per_second);
}

int run(Options const& options)
{
    std::optional<MadeFixtures> made;
    if (options.fixtures.empty()) made.emplace();
    Inputs const in = read_inputs(made ? made->path() : fs::path(options.fixtures));
    std::printf("agreement verification: %d iterations x %u thread(s), %u hardware threads\n", options.iterations,
                options.threads, std::thread::hardware_concurrency());

    double const no_crl = measure(*load(in, "", 0), in, options);
    report("CMS verification, no CRL, cache off", no_crl, options);
    double const with_crl = measure(*load(in, "crl-empty.pem", 0), in, options);
    report("CMS verification, with CRL, cache off", with_crl, options);
    double const cached = measure(*load(in, "crl-empty.pem", AgreementVerifier::kDefaultCacheEntries), in, options);
    report("cached CMS check, with CRL (chain now + CRL)", cached, options);

    if (!options.openssl_speed) return 0;
    std::printf("running openssl speed -seconds 3 ecdsap256 ...\n");
    auto const ecdsa = openssl_ecdsa_p256_verify_per_second();
    if (!ecdsa || *ecdsa <= 0) {
        std::printf("could not read openssl speed's ECDSA P-256 verify/s\n");
        return 0;
    }
    unsigned const cores = std::max(1U, std::min(options.threads, std::thread::hardware_concurrency()));
    std::printf("openssl ECDSA P-256 verify/s (1 core)        %10.0f\n", *ecdsa);
    std::printf("ratio CMS/ECDSA, no CRL                      %10.3f\n", no_crl / cores / *ecdsa);
    std::printf("ratio CMS/ECDSA, with CRL                    %10.3f\n", with_crl / cores / *ecdsa);
    return 0;
}

}  // namespace

int main(int argc, char** argv)
{
    try {
        return run(parse_options(argc, argv));
    } catch (std::exception const& e) {
        std::fprintf(stderr, "exemptd_agreement_bench: %s\n", e.what());
        return 1;
    }
}
