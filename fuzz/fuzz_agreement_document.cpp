// Fuzz target: the agreement document parser, through AgreementVerifier::verify with the input as
// the document and a fixed, valid signature over fuzz/data/agreement.yaml (the document is checked
// first, so every input exercises the parser and the ones that parse go on to the signature
// check). Invariants: nothing throws; every refusal names a reason and a message; only the exact
// signed bytes verify; a document that parsed has the documented field shapes.

#include "fuzz_support.hpp"

#include "exemptd/agreement.hpp"
#include "exemptd/identity.hpp"

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>

namespace {

using exemptd::fuzz::fail;

std::string read_data(char const* name)
{
    std::ifstream in(std::string(EXEMPTD_FUZZ_DATA "/") + name, std::ios::binary);
    if (!in) fail(std::string("cannot read fuzz/data/") + name);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct Env {
    std::shared_ptr<exemptd::AgreementVerifier const> verifier = exemptd::fuzz::load_verifier(0);
    std::string document = read_data("agreement.yaml");
    std::string signature = read_data("agreement.sig.pem");
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    static Env const env;
    auto const text = exemptd::fuzz::as_text(data, size);
    auto const v = env.verifier->verify(text, env.signature, *exemptd::fuzz::default_policy(), exemptd::fuzz::fixed_now());
    if (v.ok != (text == env.document)) fail(v.ok ? "a changed document verified" : "the signed document was refused: " + v.reason);
    if (!v.ok && (v.reason.empty() || v.message.empty())) fail("a refusal without reason or message");
    if (v.reason != "malformed_document") {
        auto const& d = v.document;
        if (!exemptd::is_valid_device_id(d.device_id) || d.terms_sha256.size() != 64 || d.user.empty() ||
            d.agreement.empty())
            fail("a parsed document breaks the field rules");
    }
    return 0;
}
