// Measures in-process verification of signed BYOD agreements (SPEC §7): how many full CMS
// verifications (YAML, CMS parse, CMS_verify, the chain at signing time and now, the CRL) one core
// does per second. The signature cache is off for the CMS figures, so every call runs CMS_verify.
// Prints figures only; asserts nothing.
//
//   exemptd_agreement_bench [--iterations N] [--rounds R] [--threads T] [--fixtures DIR] [--openssl-speed]
//
// Rates per core are iterations per second of thread CPU time, as `openssl speed` counts its own
// (CPU time, not wall time), so that they hold on a shared, busy machine; each is the best of R
// rounds. Every round also times raw ECDSA P-256 verifications in-process (EVP_PKEY_verify, as
// `openssl speed ecdsap256` does) for the ratio CMS verifications/s ÷ ECDSA verifications/s.
// --openssl-speed also runs `openssl speed -seconds 3 ecdsap256` and prints the ratio to its figure.
// Without --fixtures, fresh fixtures are made with tests/unit/make_agreement_fixtures.sh in a
// temporary folder.

#include "exemptd/agreement.hpp"
#include "exemptd/digest.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
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
    int iterations = 2000;
    int rounds = 3;
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
        else if (arg == "--rounds" && has_value) options.rounds = std::max(1, std::atoi(argv[++i]));
        else if (arg == "--threads" && has_value) options.threads = static_cast<unsigned>(std::max(1, std::atoi(argv[++i])));
        else if (arg == "--fixtures" && has_value) options.fixtures = argv[++i];
        else if (arg == "--openssl-speed") options.openssl_speed = true;
        else throw std::invalid_argument("usage: exemptd_agreement_bench [--iterations N] [--rounds R] [--threads T] "
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

// The CPU time this thread has used, in seconds.
double thread_cpu_seconds()
{
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
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

struct Rate {
    double per_core = 0;  // iterations per CPU second
    double wall = 0;      // iterations per wall-clock second, all threads together
};

// Verifies the agreement options.iterations times on each of options.threads threads; throws if
// any verification is refused.
Rate measure(AgreementVerifier const& verifier, Inputs const& in, Options const& options)
{
    auto const now = exemptd::system_now();
    for (int i = 0; i < 100; ++i)  // warm-up, and a check that the fixture verifies at all
        if (auto const v = verifier.verify(in.document, in.signature, in.policy, now); !v.ok)
            throw std::runtime_error("the agreement was refused: " + v.reason + ": " + v.message);
    std::atomic<int> refused{0};
    std::vector<double> cpu(options.threads);
    auto const start = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < options.threads; ++t)
        threads.emplace_back([&, t] {
            double const begin = thread_cpu_seconds();
            for (int i = 0; i < options.iterations; ++i)
                if (!verifier.verify(in.document, in.signature, in.policy, now).ok) ++refused;
            cpu[t] = thread_cpu_seconds() - begin;
        });
    for (auto& thread : threads) thread.join();
    std::chrono::duration<double> const elapsed = std::chrono::steady_clock::now() - start;
    if (refused != 0) throw std::runtime_error("verifications were refused during the run");
    double const total = options.iterations * static_cast<double>(options.threads);
    double cpu_seconds = 0;
    for (double const c : cpu) cpu_seconds += c;
    return {total / cpu_seconds, total / elapsed.count()};
}

template <auto Free>
struct Deleter {
    template <class T>
    void operator()(T* p) const noexcept
    {
        Free(p);
    }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using KeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;

// Raw ECDSA P-256 verifications of a SHA-256-sized digest per CPU second, the way
// `openssl speed ecdsap256` counts them: one EVP_PKEY_CTX, EVP_PKEY_verify in a loop.
double ecdsa_per_cpu_second(Inputs const& in, int iterations)
{
    auto const pem = read_file(in.dir / "user.key");
    BioPtr const bio{BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))};
    KeyPtr const key{PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)};
    KeyCtxPtr const sign{key ? EVP_PKEY_CTX_new(key.get(), nullptr) : nullptr};
    unsigned char digest[32] = {1, 2, 3};
    unsigned char sig[128];
    std::size_t sig_length = sizeof sig;
    if (!sign || EVP_PKEY_sign_init(sign.get()) != 1 || EVP_PKEY_sign(sign.get(), sig, &sig_length, digest, sizeof digest) != 1)
        throw std::runtime_error("cannot make an ECDSA signature with user.key");
    KeyCtxPtr const verify{EVP_PKEY_CTX_new(key.get(), nullptr)};
    if (!verify || EVP_PKEY_verify_init(verify.get()) != 1) throw std::runtime_error("EVP_PKEY_verify_init failed");
    double const begin = thread_cpu_seconds();
    for (int i = 0; i < iterations; ++i)
        if (EVP_PKEY_verify(verify.get(), sig, sig_length, digest, sizeof digest) != 1)
            throw std::runtime_error("ECDSA verification failed");
    return iterations / (thread_cpu_seconds() - begin);
}

// ECDSA P-256 verifications/s of one core, as `openssl speed -seconds 3 ecdsap256` reports them.
std::optional<double> openssl_speed_ecdsa_p256_verify()
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

struct Figures {
    double ecdsa = 0;  // raw ECDSA P-256 verify per CPU second
    Rate no_crl, with_crl, cached;
};

Rate best(Rate a, Rate b)
{
    return {std::max(a.per_core, b.per_core), std::max(a.wall, b.wall)};
}

// The best of options.rounds rounds of each measurement.
Figures best_of_rounds(Inputs const& in, Options const& options)
{
    auto const no_crl = load(in, "", 0);
    auto const with_crl = load(in, "crl-empty.pem", 0);
    auto const cached = load(in, "crl-empty.pem", AgreementVerifier::kDefaultCacheEntries);
    Figures f;
    for (int round = 0; round < options.rounds; ++round) {
        f.ecdsa = std::max(f.ecdsa, ecdsa_per_cpu_second(in, 4 * options.iterations));
        f.no_crl = best(f.no_crl, measure(*no_crl, in, options));
        f.with_crl = best(f.with_crl, measure(*with_crl, in, options));
        f.cached = best(f.cached, measure(*cached, in, options));
    }
    return f;
}

void report(char const* name, Rate rate, double ecdsa)
{
    std::printf("%-44s %7.0f/s per core  %6.1f us  ratio to ECDSA %.3f  (wall, all threads: %.0f/s)\n", name,
                rate.per_core, 1e6 / rate.per_core, rate.per_core / ecdsa, rate.wall);
}

int run(Options const& options)
{
    std::optional<MadeFixtures> made;
    if (options.fixtures.empty()) made.emplace();
    Inputs const in = read_inputs(made ? made->path() : fs::path(options.fixtures));
    std::printf("agreement verification: best of %d rounds of %d iterations x %u thread(s); %u hardware threads\n",
                options.rounds, options.iterations, options.threads, std::thread::hardware_concurrency());
    Figures const f = best_of_rounds(in, options);
    std::printf("%-44s %7.0f/s per core\n", "in-process ECDSA P-256 verify (EVP_PKEY_verify)", f.ecdsa);
    report("CMS verification, no CRL, cache off", f.no_crl, f.ecdsa);
    report("CMS verification, with CRL, cache off", f.with_crl, f.ecdsa);
    report("cached CMS check, with CRL (chain now + CRL)", f.cached, f.ecdsa);
    if (!options.openssl_speed) return 0;

    std::printf("running openssl speed -seconds 3 ecdsap256 ...\n");
    auto const speed = openssl_speed_ecdsa_p256_verify();
    if (!speed || *speed <= 0) {
        std::printf("could not read openssl speed's ECDSA P-256 verify/s\n");
        return 0;
    }
    std::printf("%-44s %7.0f/s per core\n", "openssl speed ecdsap256 verify", *speed);
    std::printf("%-44s %7.3f\n", "ratio CMS/openssl ECDSA, no CRL", f.no_crl.per_core / *speed);
    std::printf("%-44s %7.3f\n", "ratio CMS/openssl ECDSA, with CRL", f.with_crl.per_core / *speed);
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
