// Fuzz target: the whole agreement verifier (CMS signature, chain to the fuzzing CA, CRL, EKU,
// signer binding, template and terms) over fuzz/data/fuzz-ca.pem and fuzz-ca-crl.pem.
//
// Input: the document, the line "--SIGNATURE--", then the signature bytes (PEM or DER); without
// that line the whole input is the signature over fuzz/data/agreement.yaml.
// Invariants: nothing throws; a refusal names a reason and a message; a verifier with a signature
// cache answers exactly as one without (also on the cached second call); verify_signer agrees with
// verify on everything but the policy checks; an accepted agreement has a signer whose email is
// the document's user and a signing time.

#include "fuzz_support.hpp"

#include "exemptd/agreement.hpp"

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

namespace {

using exemptd::AgreementVerification;
using exemptd::fuzz::fail;

constexpr std::string_view kSeparator = "\n--SIGNATURE--\n";

std::string read_data(char const* name)
{
    std::ifstream in(std::string(EXEMPTD_FUZZ_DATA "/") + name, std::ios::binary);
    if (!in) fail(std::string("cannot read fuzz/data/") + name);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct Env {
    std::shared_ptr<exemptd::AgreementVerifier const> uncached = exemptd::fuzz::load_verifier(0);
    std::shared_ptr<exemptd::AgreementVerifier const> cached = exemptd::fuzz::load_verifier(256);
    std::string document = read_data("agreement.yaml");
};

void same(AgreementVerification const& a, AgreementVerification const& b, std::string_view what)
{
    if (a.ok != b.ok || a.reason != b.reason || a.message != b.message || a.document_sha256 != b.document_sha256 ||
        a.signer_subject != b.signer_subject || a.signer_email != b.signer_email ||
        a.signer_fingerprint != b.signer_fingerprint || a.signed_at != b.signed_at)
        fail(std::string(what) + ": '" + a.reason + "' vs '" + b.reason + "'");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    static Env const env;
    auto const text = exemptd::fuzz::as_text(data, size);
    auto const split = text.find(kSeparator);
    std::string_view const document = split == std::string_view::npos ? std::string_view(env.document) : text.substr(0, split);
    std::string_view const signature = split == std::string_view::npos ? text : text.substr(split + kSeparator.size());
    auto const& policy = *exemptd::fuzz::default_policy();
    auto const now = exemptd::fuzz::fixed_now();

    auto const v = env.uncached->verify(document, signature, policy, now);
    if (!v.ok && (v.reason.empty() || v.message.empty())) fail("a refusal without reason or message");
    if (v.ok && (v.signer_email.empty() || v.signer_email != v.document.user || !v.signed_at || v.signer_fingerprint.size() != 64))
        fail("an accepted agreement without its signer");
    same(v, env.cached->verify(document, signature, policy, now), "the cache changed the answer");
    same(v, env.cached->verify(document, signature, policy, now), "the cached second answer differs");

    auto const s = env.uncached->verify_signer(document, signature, now);
    bool const policy_refusal = v.reason == "unknown_template" || v.reason == "terms_mismatch";
    if (v.ok || policy_refusal) {
        if (!s.ok) fail("verify_signer refused what verify accepted: " + s.reason);
    } else if (s.reason != v.reason) {
        fail("verify_signer and verify disagree: '" + s.reason + "' vs '" + v.reason + "'");
    }
    return 0;
}
