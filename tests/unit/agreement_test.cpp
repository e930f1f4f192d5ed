#include "exemptd/agreement.hpp"
#include "exemptd/digest.hpp"
#include "support.hpp"

#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <stdlib.h>

namespace {

using namespace std::chrono_literals;
using exemptd::AgreementVerification;
using exemptd::AgreementVerifier;
using exemptd::Policy;
using exemptd::TimePoint;
using Catch::Matchers::StartsWith;
namespace fs = std::filesystem;

constexpr auto kDays = 24h;

// The signed-agreement fixtures of tests/unit/make_agreement_fixtures.sh. ctest runs each test
// case in its own process and the script takes about a second, so the fixtures are made once a
// day per build tree, next to this executable, and shared read-only: made in a scratch folder and
// renamed into place, so concurrent test processes never see half of them. Their validity periods
// are relative to the day they were made (certificates from -1 day, CRLs until +30 days), which
// the tests below allow for.
class Fixtures {
public:
    Fixtures()
    {
        fs::path const script = fs::path(EXEMPTD_SOURCE_DIR) / "tests/unit/make_agreement_fixtures.sh";
        fs::path const base = fs::read_symlink("/proc/self/exe").parent_path() / "agreement-fixtures";
        std::string const key = exemptd::format_rfc3339(exemptd::system_now()).substr(0, 10) + "-" +
                                exemptd::sha256_hex(exemptd::test::read_text(script)).substr(0, 16);
        dir_ = base / key;
        if (!fs::exists(dir_ / "data.p7s")) make(script, base);
        prune(base, key);
    }

    [[nodiscard]] std::string path(std::string_view name) const { return (dir_ / name).string(); }
    [[nodiscard]] std::string read(std::string_view name) const { return exemptd::test::read_text(dir_ / name); }

private:
    void make(fs::path const& script, fs::path const& base) const
    {
        fs::create_directories(base);
        std::string scratch = (base / "tmp.XXXXXX").string();
        if (::mkdtemp(scratch.data()) == nullptr) throw std::runtime_error("mkdtemp failed in " + base.string());
        std::string const command = "bash '" + script.string() + "' '" + scratch + "'";
        if (std::system(command.c_str()) != 0) {
            fs::remove_all(scratch);
            throw std::runtime_error("make_agreement_fixtures.sh failed");
        }
        std::error_code ec;
        fs::rename(scratch, dir_, ec);  // fails when another test process got there first
        if (ec) fs::remove_all(scratch);
    }

    // Removes the fixtures of other days and scratch folders that a killed run left behind.
    static void prune(fs::path const& base, std::string const& key)
    {
        std::error_code ec;
        auto const stale = fs::file_time_type::clock::now() - 1h;
        for (auto const& entry : fs::directory_iterator(base, ec)) {
            auto const name = entry.path().filename().string();
            bool const scratch = name.starts_with("tmp.");
            if (name == key || (scratch && entry.last_write_time(ec) > stale)) continue;
            fs::remove_all(entry.path(), ec);
        }
    }

    fs::path dir_;
};

Fixtures const& fixtures()
{
    static Fixtures const made;
    return made;
}

std::string document()
{
    return fixtures().read("agreement.yaml");
}

std::string signature(std::string_view name = "agreement.yaml.p7s")
{
    return fixtures().read(name);
}

// A policy whose byod-v3 template is the fixtures' terms file.
Policy byod_policy()
{
    Policy policy;
    auto const terms = fixtures().path("byod-v3.txt");
    policy.agreements.emplace("byod-v3", exemptd::AgreementTemplate{"byod-v3", terms,
                                                                    exemptd::sha256_hex(exemptd::test::read_text(terms))});
    return policy;
}

std::shared_ptr<AgreementVerifier const> load(std::string const& crl = "", std::string const& ca = "agreements-ca.crt",
                                              std::size_t cache = AgreementVerifier::kDefaultCacheEntries)
{
    auto verifier = AgreementVerifier::load(fixtures().path(ca), crl.empty() ? "" : fixtures().path(crl), cache);
    REQUIRE(verifier.has_value());
    return *verifier;
}

// A verifier of the agreements CA without a CRL, shared by the tests of one process.
AgreementVerifier const& plain()
{
    static auto const verifier = load();
    return *verifier;
}

AgreementVerification verify(std::string_view doc, std::string_view sig, TimePoint now = exemptd::system_now())
{
    return plain().verify(doc, sig, byod_policy(), now);
}

// "accepted", or the refusal's reason and message, so that a failed check shows the message.
std::string verdict(AgreementVerification const& v)
{
    return v.ok ? "accepted" : v.reason + ": " + v.message;
}

auto refused(std::string const& reason)
{
    return StartsWith(reason + ": ");
}

template <auto Free>
struct Deleter {
    template <class T>
    void operator()(T* p) const noexcept
    {
        Free(p);
    }
};

using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;
using CmsPtr = std::unique_ptr<CMS_ContentInfo, Deleter<CMS_ContentInfo_free>>;
using CertPtr = std::unique_ptr<X509, Deleter<X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;

BioPtr memory(std::string_view bytes)
{
    BioPtr bio{BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size()))};
    REQUIRE(bio);
    return bio;
}

CertPtr certificate(std::string_view name)
{
    auto const pem = fixtures().read(name);
    CertPtr cert{PEM_read_bio_X509(memory(pem).get(), nullptr, nullptr, nullptr)};
    REQUIRE(cert);
    return cert;
}

std::string der_length(std::size_t n)
{
    if (n < 0x80) return std::string(1, static_cast<char>(n));
    if (n < 0x100) return {'\x81', static_cast<char>(n)};
    return {'\x82', static_cast<char>(n >> 8), static_cast<char>(n & 0xff)};
}

// Re-signs the signer's signed attributes by hand: RFC 5652 §5.4 signs their DER SET OF.
void resign(CMS_SignerInfo* si, EVP_PKEY* key)
{
    std::vector<std::string> attributes;
    for (int i = 0; i < CMS_signed_get_attr_count(si); ++i) {
        unsigned char* der = nullptr;
        int const n = i2d_X509_ATTRIBUTE(CMS_signed_get_attr(si, i), &der);
        REQUIRE(n > 0);
        attributes.emplace_back(reinterpret_cast<char const*>(der), static_cast<std::size_t>(n));
        OPENSSL_free(der);
    }
    std::sort(attributes.begin(), attributes.end());  // DER orders a SET OF by its encodings
    std::string body;
    for (auto const& a : attributes) body += a;
    std::string set(1, '\x31');
    set.append(der_length(body.size())).append(body);
    MdCtxPtr const ctx{EVP_MD_CTX_new()};
    std::size_t length = 0;
    REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1);
    REQUIRE(EVP_DigestSign(ctx.get(), nullptr, &length, reinterpret_cast<unsigned char const*>(set.data()), set.size()) == 1);
    std::vector<unsigned char> sig(length);
    REQUIRE(EVP_DigestSign(ctx.get(), sig.data(), &length, reinterpret_cast<unsigned char const*>(set.data()), set.size()) == 1);
    REQUIRE(ASN1_OCTET_STRING_set(CMS_SignerInfo_get0_signature(si), sig.data(), static_cast<int>(length)) == 1);
}

// A valid detached DER signature of agreement.yaml by sam.crt whose signingTime is `signed_at`,
// or which has none. Neither the openssl CLI nor CMS_sign can make one without it or with
// another time (both add the current time), so the attribute is replaced and the signer info
// re-signed; OpenSSL itself then confirms that the signature verifies.
std::string signature_with_signing_time(std::optional<TimePoint> signed_at)
{
    auto const doc = document();
    auto const cert = certificate("sam.crt");
    auto const key_pem = fixtures().read("user.key");
    KeyPtr const key{PEM_read_bio_PrivateKey(memory(key_pem).get(), nullptr, nullptr, nullptr)};
    REQUIRE(key);
    CmsPtr const cms{CMS_sign(cert.get(), key.get(), nullptr, memory(doc).get(), CMS_DETACHED | CMS_BINARY)};
    REQUIRE(cms);
    CMS_SignerInfo* si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms.get()), 0);
    X509_ATTRIBUTE_free(CMS_signed_delete_attr(si, CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1)));
    REQUIRE(CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1) < 0);
    if (signed_at) {
        ASN1_TIME* const time = ASN1_UTCTIME_set(nullptr, std::chrono::system_clock::to_time_t(*signed_at));
        REQUIRE(time != nullptr);
        bool const added = CMS_signed_add1_attr_by_NID(si, NID_pkcs9_signingTime, V_ASN1_UTCTIME, time, -1) == 1;
        ASN1_TIME_free(time);
        REQUIRE(added);
    }
    resign(si, key.get());

    unsigned char* der = nullptr;
    int const n = i2d_CMS_ContentInfo(cms.get(), &der);
    REQUIRE(n > 0);
    std::string out(reinterpret_cast<char const*>(der), static_cast<std::size_t>(n));
    OPENSSL_free(der);

    // Checked as encoded: DER puts the attributes in the order they were signed in.
    auto const* bytes = reinterpret_cast<unsigned char const*>(out.data());
    CmsPtr const decoded{d2i_CMS_ContentInfo(nullptr, &bytes, n)};
    REQUIRE(decoded);
    StorePtr const store{X509_STORE_new()};
    auto const ca = certificate("agreements-ca.crt");
    REQUIRE(X509_STORE_add_cert(store.get(), ca.get()) == 1);
    REQUIRE(CMS_verify(decoded.get(), nullptr, store.get(), memory(doc).get(), nullptr, CMS_BINARY) == 1);
    return out;
}

std::string replace(std::string text, std::string_view from, std::string_view to)
{
    auto const at = text.find(from);
    REQUIRE(at != std::string::npos);
    return text.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("A detached agreement signature from the agreements CA is accepted", "[agreement]")
{
    auto const doc = document();
    auto const now = exemptd::system_now();

    SECTION("PEM, as made by openssl cms -sign -binary -md sha256 -outform PEM")
    {
        auto const v = verify(doc, signature(), now);
        REQUIRE(verdict(v) == "accepted");
        CHECK(v.document.agreement == "byod-v3");
        CHECK(v.document.user == "sam@example.com");
        CHECK(v.document.device_id == "LAPTOP-0042");
        CHECK(v.document.device_serial == "C02XYZ123");
        CHECK(v.document.terms_sha256 == byod_policy().agreements.at("byod-v3").terms_sha256);
        CHECK(v.document.accepted_at == exemptd::test::fixed_time("2026-11-20T10:00:00Z"));
        CHECK(v.document_sha256 == exemptd::sha256_hex(doc));
        CHECK(v.signer_subject == "O=exemptd test,CN=sam");  // as openssl x509 -subject -nameopt RFC2253
        CHECK(v.signer_email == "sam@example.com");
        REQUIRE(v.signed_at);
        CHECK(*v.signed_at <= now);
        CHECK(*v.signed_at > now - 2 * kDays);
    }
    SECTION("the fingerprint is the SHA-256 of the signer certificate's DER")
    {
        auto const cert = certificate("sam.crt");
        unsigned char* der = nullptr;
        int const n = i2d_X509(cert.get(), &der);
        REQUIRE(n > 0);
        std::string const expected = exemptd::sha256_hex({reinterpret_cast<char const*>(der), static_cast<std::size_t>(n)});
        OPENSSL_free(der);
        CHECK(verify(doc, signature(), now).signer_fingerprint == expected);
    }
    SECTION("DER")
    {
        CHECK(verdict(verify(doc, signature("agreement.yaml.der.p7s"), now)) == "accepted");
    }
    SECTION("SHA-512")
    {
        CHECK(verdict(verify(doc, signature("sha512.p7s"), now)) == "accepted");
    }
    SECTION("PEM labelled PKCS7, as openssl smime writes it")
    {
        auto pem = replace(replace(signature(), "BEGIN CMS", "BEGIN PKCS7"), "END CMS", "END PKCS7");
        CHECK(verdict(verify(doc, pem, now)) == "accepted");
    }
    SECTION("with an empty CRL configured")
    {
        auto const verifier = load("crl-empty.pem");
        CHECK(verifier->has_crl());
        CHECK(verifier->crl_problem().empty());
        CHECK(verdict(verifier->verify(doc, signature(), byod_policy(), now)) == "accepted");
    }
    SECTION("the signer-only check needs no policy")
    {
        CHECK(verdict(plain().verify_signer(doc, signature(), now)) == "accepted");
    }
}

TEST_CASE("A document that is not the agreement YAML is refused as malformed_document", "[agreement]")
{
    auto const sig = signature();
    auto const doc = document();
    auto const refuse = [&](std::string const& text) { return verdict(verify(text, sig)); };

    SECTION("empty") { CHECK_THAT(refuse(""), refused("malformed_document")); }
    SECTION("over 64 KiB")
    {
        CHECK_THAT(refuse(doc + "#" + std::string(exemptd::kMaxAgreementBytes - doc.size(), 'x')), refused("malformed_document"));
    }
    SECTION("exactly 64 KiB is read (and then fails the signature, which is over other bytes)")
    {
        CHECK_THAT(refuse(doc + "#" + std::string(exemptd::kMaxAgreementBytes - doc.size() - 1, 'x')), refused("bad_signature"));
    }
    SECTION("truncated") { CHECK_THAT(refuse(doc.substr(0, doc.size() / 2)), refused("malformed_document")); }
    SECTION("not UTF-8") { CHECK_THAT(refuse(replace(doc, "C02XYZ123", "C02\xff\xfe")), refused("malformed_document")); }
    SECTION("an overlong UTF-8 form") { CHECK_THAT(refuse(replace(doc, "C02XYZ123", "C02\xc0\xaf")), refused("malformed_document")); }
    SECTION("a control character") { CHECK_THAT(refuse(replace(doc, "C02XYZ123", "C02\x01")), refused("malformed_document")); }
    SECTION("not YAML") { CHECK_THAT(refuse("agreement: [byod-v3\n"), refused("malformed_document")); }
    SECTION("a YAML list") { CHECK_THAT(refuse("- byod-v3\n- sam@example.com\n"), refused("malformed_document")); }
    SECTION("two YAML documents") { CHECK_THAT(refuse(doc + "---\n" + doc), refused("malformed_document")); }
    SECTION("a missing field") { CHECK_THAT(refuse(replace(doc, "device_serial: C02XYZ123\n", "")), refused("malformed_document")); }
    SECTION("an extra field") { CHECK_THAT(refuse(doc + "note: hi\n"), refused("malformed_document")); }
    SECTION("a field twice") { CHECK_THAT(refuse(doc + "user: sam@example.com\n"), refused("malformed_document")); }
    SECTION("a value that is a list") { CHECK_THAT(refuse(replace(doc, "user: sam@example.com", "user: [sam@example.com]")), refused("malformed_document")); }
    SECTION("an empty value") { CHECK_THAT(refuse(replace(doc, "user: sam@example.com", "user:")), refused("malformed_document")); }
    SECTION("quoted and !!str values are text (and then fail the signature, which is over other bytes)")
    {
        auto const quoted = replace(replace(doc, "user: sam@example.com", "user: \"sam@example.com\""), "device_serial: C02XYZ123",
                                    "device_serial: !!str C02XYZ123");
        CHECK_THAT(refuse(quoted), refused("bad_signature"));
    }
    SECTION("a tagged value") { CHECK_THAT(refuse(replace(doc, "device_serial: C02XYZ123", "device_serial: !!int 12")), refused("malformed_document")); }
    SECTION("a user that is not an e-mail address") { CHECK_THAT(refuse(replace(doc, "sam@example.com", "sam")), refused("malformed_document")); }
    SECTION("a device_id outside [A-Za-z0-9._:-]") { CHECK_THAT(refuse(replace(doc, "LAPTOP-0042", "LAPTOP 0042")), refused("malformed_document")); }
    SECTION("a device_id over 64 characters") { CHECK_THAT(refuse(replace(doc, "LAPTOP-0042", std::string(65, 'A'))), refused("malformed_document")); }
    SECTION("a terms_sha256 that is not 64 hex digits") { CHECK_THAT(refuse(replace(doc, "terms_sha256: ", "terms_sha256: x")), refused("malformed_document")); }
    SECTION("an accepted_at that is not RFC 3339") { CHECK_THAT(refuse(replace(doc, "2026-11-20T10:00:00Z", "20 Nov 2026")), refused("malformed_document")); }
    SECTION("deeply nested flow collections") { CHECK_THAT(refuse(std::string(60000, '[')), refused("malformed_document")); }
    SECTION("a malformed document keeps no half-read fields")
    {
        auto const v = verify(replace(doc, "LAPTOP-0042", "LAPTOP 0042"), sig);
        CHECK(v.document.user.empty());
        CHECK(v.document_sha256 == exemptd::sha256_hex(replace(doc, "LAPTOP-0042", "LAPTOP 0042")));
    }
}

TEST_CASE("A signature that is not one PEM or DER CMS SignedData is refused as malformed_signature", "[agreement]")
{
    auto const doc = document();
    auto const pem = signature();
    auto const der = signature("agreement.yaml.der.p7s");
    auto const refuse = [&](std::string const& sig) { return verdict(verify(doc, sig)); };

    SECTION("empty") { CHECK_THAT(refuse(""), refused("malformed_signature")); }
    SECTION("over 64 KiB") { CHECK_THAT(refuse(pem + std::string(exemptd::kMaxAgreementBytes, '\n')), refused("malformed_signature")); }
    SECTION("text") { CHECK_THAT(refuse("signed, Sam"), refused("malformed_signature")); }
    SECTION("truncated PEM") { CHECK_THAT(refuse(pem.substr(0, pem.size() / 2)), refused("malformed_signature")); }
    SECTION("truncated DER") { CHECK_THAT(refuse(der.substr(0, der.size() - 1)), refused("malformed_signature")); }
    SECTION("PEM followed by other bytes") { CHECK_THAT(refuse(pem + "x"), refused("malformed_signature")); }
    SECTION("two PEM blocks") { CHECK_THAT(refuse(pem + pem), refused("malformed_signature")); }
    SECTION("DER followed by another byte") { CHECK_THAT(refuse(der + '\0'), refused("malformed_signature")); }
    SECTION("a PEM certificate") { CHECK_THAT(refuse(fixtures().read("sam.crt")), refused("malformed_signature")); }
    SECTION("a CMS structure that is not SignedData") { CHECK_THAT(refuse(signature("data.p7s")), refused("malformed_signature")); }
    SECTION("trailing whitespace after PEM is fine") { CHECK(refuse(pem + "\n\n") == "accepted"); }
}

TEST_CASE("A signature must be detached, with one signer, signed attributes, SHA-256 or better and a signing time",
          "[agreement]")
{
    auto const doc = document();

    SECTION("content of its own is refused as attached_content, even when it is the document itself")
    {
        CHECK_THAT(verdict(verify(doc, signature("attached.p7s"))), refused("attached_content"));
    }
    SECTION("two signers are refused as multiple_signers")
    {
        CHECK_THAT(verdict(verify(doc, signature("two-signers.p7s"))), refused("multiple_signers"));
    }
    SECTION("no signed attributes are refused as no_signed_attributes")
    {
        CHECK_THAT(verdict(verify(doc, signature("noattr.p7s"))), refused("no_signed_attributes"));
    }
    SECTION("SHA-1 is refused as weak_digest")
    {
        CHECK_THAT(verdict(verify(doc, signature("sha1.p7s"))), refused("weak_digest"));
    }
    SECTION("no signingTime is refused as no_signing_time")
    {
        CHECK_THAT(verdict(verify(doc, signature_with_signing_time(std::nullopt))), refused("no_signing_time"));
    }
}

TEST_CASE("A signature over other bytes is refused as bad_signature", "[agreement]")
{
    auto const doc = document();
    auto const sig = signature();

    SECTION("a field changed after signing")
    {
        CHECK_THAT(verdict(verify(replace(doc, "LAPTOP-0042", "LAPTOP-0043"), sig)), refused("bad_signature"));
    }
    SECTION("a byte dropped after signing")
    {
        CHECK_THAT(verdict(verify(doc.substr(0, doc.size() - 1), sig)), refused("bad_signature"));
    }
    SECTION("another signed document")
    {
        CHECK_THAT(verdict(verify(fixtures().read("jordan.yaml"), sig)), refused("bad_signature"));
    }
    SECTION("in DER too")
    {
        CHECK_THAT(verdict(verify(replace(doc, "C02XYZ123", "C02XYZ124"), signature("agreement.yaml.der.p7s"))),
                   refused("bad_signature"));
    }
}

TEST_CASE("The signer must chain to the agreements CA, be valid at signing time and now, and allow emailProtection",
          "[agreement]")
{
    auto const doc = document();
    auto const now = exemptd::system_now();

    SECTION("a certificate from a rogue CA of the same name is refused as untrusted_signer")
    {
        CHECK_THAT(verdict(verify(doc, signature("rogue.p7s"))), refused("untrusted_signer"));
    }
    SECTION("a verifier that trusts another CA refuses sam as untrusted_signer")
    {
        auto const rogue = load("", "rogue-ca.crt");
        CHECK_THAT(verdict(rogue->verify(doc, signature(), byod_policy(), now)), refused("untrusted_signer"));
    }
    SECTION("a signature without the signer's certificate is refused as untrusted_signer")
    {
        CHECK_THAT(verdict(verify(doc, signature("nocerts.p7s"))), refused("untrusted_signer"));
    }
    SECTION("a certificate expired at signing time is refused as signer_expired")
    {
        CHECK_THAT(verdict(verify(doc, signature("expired.p7s"))), refused("signer_expired"));
    }
    SECTION("a certificate valid at signing time but expired now is refused as signer_expired")
    {
        CHECK_THAT(verdict(verify(doc, signature(), now + 400 * kDays)), refused("signer_expired"));
    }
    SECTION("a certificate not yet valid at signing time is refused as signer_not_yet_valid")
    {
        CHECK_THAT(verdict(verify(doc, signature("notyet.p7s"))), refused("signer_not_yet_valid"));
    }
    SECTION("... even once it has become valid")
    {
        CHECK_THAT(verdict(verify(doc, signature("notyet.p7s"), now + 32 * kDays)), refused("signer_not_yet_valid"));
    }
    SECTION("a check at a time before the certificate was valid is refused as signer_not_yet_valid")
    {
        CHECK_THAT(verdict(verify(doc, signature(), now - 3 * kDays)), refused("signer_not_yet_valid"));
    }
    SECTION("a signingTime more than 5 minutes after now is refused as signing_time_in_future")
    {
        auto const ahead = signature_with_signing_time(now + std::chrono::minutes(6));
        CHECK_THAT(verdict(verify(doc, ahead, now)), refused("signing_time_in_future"));
        CHECK(verdict(verify(doc, signature_with_signing_time(now + std::chrono::minutes(4)), now)) == "accepted");
        // A stored agreement re-checked by a clock set back stays valid.
        CHECK(plain().verify_signer(doc, ahead, now).ok);
    }
    SECTION("a certificate without extendedKeyUsage emailProtection is refused as not_email_protection")
    {
        CHECK_THAT(verdict(verify(doc, signature("noeku.p7s"))), refused("not_email_protection"));
    }
    SECTION("a certificate without any extendedKeyUsage is refused as not_email_protection")
    {
        // OpenSSL's S/MIME purpose allows any use then; SPEC §7 wants emailProtection explicitly.
        CHECK_THAT(verdict(verify(doc, signature("anyuse.p7s"))), refused("not_email_protection"));
    }
}

TEST_CASE("A configured CRL is enforced, and a CRL that cannot be used refuses every agreement", "[agreement]")
{
    auto const doc = document();
    auto const policy = byod_policy();
    auto const now = exemptd::system_now();

    SECTION("a revoked signer is refused as signer_revoked")
    {
        auto const verifier = load("crl-revoked.pem");
        CHECK_THAT(verdict(verifier->verify(doc, signature("revoked.p7s"), policy, now)), refused("signer_revoked"));
        CHECK(verdict(verifier->verify(doc, signature(), policy, now)) == "accepted");
    }
    SECTION("without a CRL the same signer is accepted")
    {
        CHECK_FALSE(plain().has_crl());
        CHECK(verdict(verify(doc, signature("revoked.p7s"), now)) == "accepted");
    }
    SECTION("the signer-only re-check sees the revocation")
    {
        CHECK_THAT(verdict(load("crl-revoked.pem")->verify_signer(doc, signature("revoked.p7s"), now)),
                   refused("signer_revoked"));
    }
    SECTION("a missing CRL file is refused as crl_unavailable")
    {
        auto const verifier = load("no-such.crl");
        CHECK(verifier->has_crl());
        CHECK_FALSE(verifier->crl_problem().empty());
        CHECK_THAT(verdict(verifier->verify(doc, signature(), policy, now)), refused("crl_unavailable"));
    }
    SECTION("an unparsable CRL is refused as crl_unavailable")
    {
        exemptd::test::TempDir const dir;
        auto const garbage = dir.write("garbage.crl", "-----BEGIN X509 CRL-----\nnot base64!\n-----END X509 CRL-----\n");
        auto const loaded = AgreementVerifier::load(fixtures().path("agreements-ca.crt"), garbage);
        REQUIRE(loaded.has_value());
        auto const& verifier = *loaded;
        CHECK_THAT(verdict(verifier->verify(doc, signature(), policy, now)), refused("crl_unavailable"));
    }
    SECTION("a CRL from another CA of the same name is refused as crl_unavailable")
    {
        auto const verifier = load("crl-rogue.pem");
        CHECK_THAT(verifier->crl_problem(), Catch::Matchers::Contains("not signed by the agreements CA"));
        CHECK_THAT(verdict(verifier->verify(doc, signature(), policy, now)), refused("crl_unavailable"));
    }
    SECTION("a file with a good CRL and a rogue one is refused as crl_unavailable")
    {
        exemptd::test::TempDir const dir;
        auto const both = dir.write("both.crl", fixtures().read("crl-empty.pem") + fixtures().read("crl-rogue.pem"));
        auto const loaded = AgreementVerifier::load(fixtures().path("agreements-ca.crt"), both);
        REQUIRE(loaded.has_value());
        auto const& verifier = *loaded;
        CHECK_THAT(verdict(verifier->verify(doc, signature(), policy, now)), refused("crl_unavailable"));
    }
    SECTION("a CRL past its nextUpdate is refused as crl_unavailable")
    {
        auto const verifier = load("crl-empty.pem");
        CHECK_THAT(verdict(verifier->verify(doc, signature(), policy, now + 31 * kDays)), refused("crl_unavailable"));
    }
}

TEST_CASE("The signer must be the document's user, and the document must match a policy template", "[agreement]")
{
    auto const doc = document();
    auto const now = exemptd::system_now();

    SECTION("sam signing jordan's agreement is refused as signer_mismatch")
    {
        auto const v = verify(fixtures().read("jordan.yaml"), signature("jordan.yaml.p7s"));
        CHECK_THAT(verdict(v), refused("signer_mismatch"));
        CHECK(v.signer_email == "sam@example.com");
    }
    SECTION("a template the policy does not have is refused as unknown_template")
    {
        CHECK_THAT(verdict(plain().verify(doc, signature(), Policy{}, now)), refused("unknown_template"));
    }
    SECTION("terms that differ from the template's terms file are refused as terms_mismatch")
    {
        auto policy = byod_policy();
        policy.agreements.at("byod-v3").terms_sha256 = exemptd::sha256_hex("BYOD agreement v4\n");
        CHECK_THAT(verdict(plain().verify(doc, signature(), policy, now)), refused("terms_mismatch"));
    }
    SECTION("the signer-only re-check ignores the templates")
    {
        CHECK(verdict(plain().verify_signer(doc, signature(), now)) == "accepted");
    }
}

TEST_CASE("The signature cache never skips the checks that depend on the time or the CRL", "[agreement]")
{
    auto const doc = document();
    auto const sig = signature();
    auto const policy = byod_policy();
    auto const now = exemptd::system_now();
    auto const verifier = load("crl-empty.pem");

    REQUIRE(verdict(verifier->verify(doc, sig, policy, now)) == "accepted");
    auto const again = verifier->verify(doc, sig, policy, now);
    CHECK(verdict(again) == "accepted");
    CHECK(again.signer_email == "sam@example.com");
    CHECK(again.signed_at.has_value());
    CHECK_THAT(verdict(verifier->verify(doc, sig, policy, now + 31 * kDays)), refused("crl_unavailable"));
    auto const no_crl = load();
    REQUIRE(verdict(no_crl->verify(doc, sig, policy, now)) == "accepted");
    CHECK_THAT(verdict(no_crl->verify(doc, sig, policy, now + 400 * kDays)), refused("signer_expired"));
    CHECK_THAT(verdict(no_crl->verify(replace(doc, "LAPTOP-0042", "LAPTOP-0043"), sig, policy, now)), refused("bad_signature"));
    CHECK_THAT(verdict(no_crl->verify(doc, sig, Policy{}, now)), refused("unknown_template"));
}

TEST_CASE("One verifier verifies from several threads at once", "[agreement]")
{
    auto const doc = document();
    auto const pem = signature();
    auto const der = signature("agreement.yaml.der.p7s");
    auto const policy = byod_policy();
    auto const now = exemptd::system_now();
    auto const cache = GENERATE(std::size_t{0}, AgreementVerifier::kDefaultCacheEntries);
    auto const verifier = load("crl-revoked.pem", "agreements-ca.crt", cache);

    std::vector<std::vector<std::string>> verdicts(4);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < verdicts.size(); ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 20; ++i) verdicts[t].push_back(verdict(verifier->verify(doc, i % 2 ? pem : der, policy, now)));
        });
    for (auto& thread : threads) thread.join();
    for (auto const& list : verdicts)
        CHECK(std::count(list.begin(), list.end(), "accepted") == 20);
}

TEST_CASE("Loading a verifier refuses a CA bundle that cannot be the agreements CA", "[agreement]")
{
    exemptd::test::TempDir const dir;

    SECTION("a missing file")
    {
        auto const missing = dir.file("missing.crt");
        auto const verifier = AgreementVerifier::load(missing, "");
        REQUIRE_FALSE(verifier.has_value());
        CHECK_THAT(verifier.error(), Catch::Matchers::Contains(missing));
    }
    SECTION("an empty file") { CHECK_FALSE(AgreementVerifier::load(dir.write("empty.crt", ""), "").has_value()); }
    SECTION("a broken PEM block")
    {
        auto const broken = fixtures().read("agreements-ca.crt") + "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n";
        CHECK_FALSE(AgreementVerifier::load(dir.write("broken.crt", broken), "").has_value());
    }
    SECTION("a certificate that is not a CA")
    {
        auto const verifier = AgreementVerifier::load(fixtures().path("sam.crt"), "");
        REQUIRE_FALSE(verifier.has_value());
        CHECK_THAT(verifier.error(), Catch::Matchers::Contains("not a CA"));
    }
}

TEST_CASE("The agreement verifier never asks OpenSSL to skip a check", "[agreement]")
{
    auto const source = exemptd::test::read_text(fs::path(EXEMPTD_SOURCE_DIR) / "core/src/agreement.cpp");
    for (char const* banned : {"CMS_NO_SIGNER_CERT_VERIFY", "CMS_NOVERIFY", "CMS_NO_CONTENT_VERIFY", "CMS_NO_ATTR_VERIFY",
                               "CMS_NOSIGS", "X509_V_FLAG_PARTIAL_CHAIN", "X509_V_FLAG_NO_CHECK_TIME",
                               "X509_V_FLAG_IGNORE_CRITICAL", "set_verify_cb", "X509_STORE_CTX_set_error"}) {
        INFO(banned);
        CHECK(source.find(banned) == std::string::npos);
    }
    // The one CMS_verify call gets a store it built and exactly CMS_BINARY.
    std::smatch call;
    REQUIRE(std::regex_search(source, call, std::regex(R"(CMS_verify\(((?:[^()]|\([^()]*\))*)\))")));
    CHECK_FALSE(std::regex_search(source.begin() + call.position() + call.length(), source.end(), std::regex(R"(CMS_verify\()")));
    CHECK(std::regex_match(call[1].str(), std::regex(R"(cms_\.get\(\), nullptr, store\.get\(\), content\.get\(\), nullptr, CMS_BINARY)")));
    CHECK(source.find("X509_VERIFY_PARAM_set_time") != std::string::npos);
    CHECK(source.find("X509_PURPOSE_SMIME_SIGN") != std::string::npos);
}

TEST_CASE("decode_base64 accepts only canonical standard base64", "[agreement]")
{
    using exemptd::decode_base64;

    SECTION("valid input")
    {
        CHECK(decode_base64("") == std::string());
        CHECK(decode_base64("Zg==") == std::string("f"));
        CHECK(decode_base64("Zm8=") == std::string("fo"));
        CHECK(decode_base64("Zm9v") == std::string("foo"));
        CHECK(decode_base64("Zm9vYmFy") == std::string("foobar"));
        CHECK(decode_base64("AP8+/w==") == std::string("\x00\xff\x3e\xff", 4));
    }
    SECTION("every byte value round-trips through OpenSSL's encoder")
    {
        std::string bytes;
        for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
        for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{255}, std::size_t{256}}) {
            std::string encoded(4 * ((n + 2) / 3) + 1, '\0');
            int const length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()),
                                               reinterpret_cast<unsigned char const*>(bytes.data()), static_cast<int>(n));
            encoded.resize(static_cast<std::size_t>(length));
            CHECK(decode_base64(encoded) == bytes.substr(0, n));
        }
    }
    SECTION("invalid input")
    {
        for (char const* bad : {"Zg", "Zg=", "Zm9", "Z===", "====", "=Zm9", "Zg==Zg==", "Z=g=", "Zm=v", "Zh==", "Zm9=",
                                "Zm9v\n", " Zm9v", "Zm 9v", "Zm-v", "Zm_v", "Zm9v====", "Zm9\xc3\xa9"}) {
            INFO(bad);
            CHECK_FALSE(decode_base64(bad));
        }
    }
}
