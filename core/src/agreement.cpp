#include "exemptd/agreement.hpp"

#include "exemptd/digest.hpp"
#include "exemptd/identity.hpp"

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <mutex>
#include <new>
#include <sstream>
#include <unordered_set>
#include <utility>
#include <vector>

namespace exemptd {
namespace {

template <auto Free>
struct Deleter {
    template <class T>
    void operator()(T* p) const noexcept
    {
        Free(p);
    }
};

void free_certificates(STACK_OF(X509) * certs)
{
    sk_X509_pop_free(certs, X509_free);
}

void free_openssl(void* p)
{
    OPENSSL_free(p);
}

using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;
using CmsPtr = std::unique_ptr<CMS_ContentInfo, Deleter<CMS_ContentInfo_free>>;
using CertPtr = std::unique_ptr<X509, Deleter<X509_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;
using CertsPtr = std::unique_ptr<STACK_OF(X509), Deleter<free_certificates>>;
using OpenSslText = std::unique_ptr<char, Deleter<free_openssl>>;
using OpenSslBytes = std::unique_ptr<unsigned char, Deleter<free_openssl>>;

// 112-bit security for every key and certificate signature in the signer's chain (no RSA-1024,
// no SHA-1 certificates).
constexpr int kAuthLevel = 2;

constexpr std::array<std::string_view, 6> kFields = {"agreement", "user", "device_id",
                                                     "device_serial", "terms_sha256", "accepted_at"};

void ensure(bool allocated)
{
    if (!allocated) throw std::bad_alloc();  // OpenSSL only fails these calls when memory runs out
}

std::time_t to_time_t(TimePoint t)
{
    return static_cast<std::time_t>(t.time_since_epoch().count());
}

std::optional<TimePoint> time_of(ASN1_TIME const* t)
{
    std::tm tm{};
    if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return std::nullopt;
    using namespace std::chrono;
    year_month_day const ymd{year{tm.tm_year + 1900}, month{static_cast<unsigned>(tm.tm_mon + 1)},
                             day{static_cast<unsigned>(tm.tm_mday)}};
    if (!ymd.ok()) return std::nullopt;
    return sys_days{ymd} + hours{tm.tm_hour} + minutes{tm.tm_min} + seconds{tm.tm_sec};
}

std::string openssl_reason()
{
    unsigned long const code = ERR_peek_last_error();
    char const* reason = code == 0 ? nullptr : ERR_reason_error_string(code);
    return reason == nullptr ? "unknown error" : reason;
}

// ---- document -------------------------------------------------------------------------------

// The length of the UTF-8 sequence that `lead` starts, with the lead's payload bits and the least
// code point that length may encode; length 0 for a byte that cannot start a sequence.
struct Utf8Lead {
    std::size_t length = 0;
    char32_t bits = 0;
    char32_t least = 0;
};

Utf8Lead utf8_lead(unsigned char lead)
{
    if ((lead & 0xe0U) == 0xc0U) return {2, lead & 0x1fU, 0x80};
    if ((lead & 0xf0U) == 0xe0U) return {3, lead & 0x0fU, 0x800};
    if ((lead & 0xf8U) == 0xf0U) return {4, lead & 0x07U, 0x10000};
    return {};
}

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF) without control characters other than tab, CR and LF.
bool is_utf8_text(std::string_view text)
{
    std::size_t i = 0;
    while (i < text.size()) {
        auto const c = static_cast<unsigned char>(text[i]);
        if (c < 0x80) {
            if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) return false;
            ++i;
            continue;
        }
        auto [length, cp, least] = utf8_lead(c);
        if (length == 0 || i + length > text.size()) return false;
        for (std::size_t k = 1; k < length; ++k) {
            auto const cc = static_cast<unsigned char>(text[i + k]);
            if ((cc & 0xc0U) != 0x80U) return false;
            cp = (cp << 6) | (cc & 0x3fU);
        }
        if (cp < least || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += length;
    }
    return true;
}

bool has_control(std::string_view text)
{
    return std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

bool is_sha256_hex(std::string_view text)
{
    return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
           });
}

bool is_email(std::string_view text)
{
    auto const at = text.find('@');
    return text.size() <= 254 && at != std::string_view::npos && at > 0 && at + 1 < text.size() &&
           text.find('@', at + 1) == std::string_view::npos && text.find(' ') == std::string_view::npos &&
           !has_control(text);
}

// A plain, quoted or !!str scalar: the document's values are all text.
bool is_text(YAML::Node const& node)
{
    return node.IsScalar() && (node.Tag() == "?" || node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str");
}

// `text` in quotes for a message, cut after 64 bytes at a UTF-8 character boundary.
std::string quoted(std::string_view text)
{
    if (text.size() <= 64) return "'" + std::string(text) + "'";
    std::size_t cut = 64;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0U) == 0x80U) --cut;
    return "'" + std::string(text.substr(0, cut)) + "…'";
}

// Follows the parse without building anything, to count documents.
class DocumentCounter final : public YAML::EventHandler {
public:
    void OnDocumentStart(YAML::Mark const&) override {}
    void OnDocumentEnd() override {}
    void OnNull(YAML::Mark const&, YAML::anchor_t) override {}
    void OnAlias(YAML::Mark const&, YAML::anchor_t) override {}
    void OnScalar(YAML::Mark const&, std::string const&, YAML::anchor_t, std::string const&) override {}
    void OnSequenceStart(YAML::Mark const&, std::string const&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(YAML::Mark const&, std::string const&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
};

// How many YAML documents `text` holds, counting no further than two. YAML::LoadAll is not used:
// in yaml-cpp 0.7 it never returns for some malformed text (",%" yields empty documents without
// end, allocating as it goes). Throws YAML::Exception for a syntax error in those documents.
int count_documents(std::string const& text)
{
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentCounter counter;
    int documents = 0;
    while (documents < 2 && parser.HandleNextDocument(counter)) ++documents;
    return documents;
}

// Loads the one YAML mapping of the document into `map`; answers why not, or "".
std::string load_mapping(std::string_view text, YAML::Node& map)
{
    std::string const yaml(text);
    try {
        if (count_documents(yaml) != 1) return "The agreement document must be a single YAML mapping.";
        map = YAML::Load(yaml);
    } catch (YAML::Exception const& e) {
        std::string const where = e.mark.is_null() ? "" : " (line " + std::to_string(e.mark.line + 1) + ")";
        return "The agreement document is not valid YAML" + where + ": " + e.msg + ".";
    }
    if (!map.IsMap()) return "The agreement document must be a single YAML mapping.";
    return {};
}

// Reads exactly the six fields, as text, into `values` (in kFields order); answers why not, or "".
std::string read_fields(YAML::Node const& map, std::array<std::string, kFields.size()>& values)
{
    std::array<bool, kFields.size()> seen{};
    for (auto const& entry : map) {
        if (!entry.first.IsScalar()) return "The agreement document has a key that is not text.";
        std::string const& key = entry.first.Scalar();
        auto const field = std::find(kFields.begin(), kFields.end(), key);
        if (field == kFields.end()) return "The agreement document has an unknown field " + quoted(key) + ".";
        auto const index = static_cast<std::size_t>(field - kFields.begin());
        if (seen[index]) return "The agreement document has the field " + quoted(key) + " twice.";
        if (!is_text(entry.second)) return "The field " + quoted(key) + " must be a single text value.";
        seen[index] = true;
        values[index] = entry.second.Scalar();
    }
    for (std::size_t i = 0; i < kFields.size(); ++i)
        if (!seen[i]) return "The agreement document lacks the field " + quoted(kFields[i]) + ".";
    return {};
}

// Checks each field's form and fills `out`; answers why a field is refused, or "".
std::string check_fields(std::array<std::string, kFields.size()>& values, AgreementDocument& out)
{
    out = AgreementDocument{std::move(values[0]), std::move(values[1]), std::move(values[2]),
                            std::move(values[3]), std::move(values[4]), TimePoint{}};
    if (out.agreement.empty() || out.agreement.size() > 128 || has_control(out.agreement))
        return "The field 'agreement' must name an agreement template.";
    if (!is_email(out.user)) return "The field 'user' must be an e-mail address.";
    if (!is_valid_device_id(out.device_id))
        return "The field 'device_id' must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'.";
    if (out.device_serial.empty() || out.device_serial.size() > 128 || has_control(out.device_serial))
        return "The field 'device_serial' must be 1 to 128 printable characters.";
    if (!is_sha256_hex(out.terms_sha256)) return "The field 'terms_sha256' must be 64 hexadecimal digits.";
    auto const accepted = parse_rfc3339(values[5]);
    if (!accepted) return "The field 'accepted_at' must be an RFC 3339 time such as 2026-11-20T10:00:00Z.";
    out.accepted_at = *accepted;
    return {};
}

// Parses the document strictly into `out`; answers why it is malformed, or "".
std::string parse_document(std::string_view text, AgreementDocument& out)
{
    if (!is_utf8_text(text)) return "The agreement document is not UTF-8 text.";
    YAML::Node map;
    if (auto error = load_mapping(text, map); !error.empty()) return error;
    std::array<std::string, kFields.size()> values;
    try {
        if (auto error = read_fields(map, values); !error.empty()) return error;
    } catch (YAML::Exception const& e) {
        return "The agreement document cannot be read: " + e.msg + ".";
    }
    return check_fields(values, out);
}

// ---- signature ------------------------------------------------------------------------------

bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool looks_like_pem(std::string_view text)
{
    auto const start = std::find_if_not(text.begin(), text.end(), is_space);
    return std::string_view(start, text.end()).starts_with("-----BEGIN ");
}

bool only_space_left(BIO* bio)
{
    char buffer[256];
    int n = 0;
    while ((n = BIO_read(bio, buffer, sizeof buffer)) > 0)
        if (!std::all_of(buffer, buffer + n, is_space)) return false;
    return true;
}

// DER (or BER) ContentInfo that spans exactly the whole input.
CmsPtr parse_der_cms(std::string_view der)
{
    auto const* begin = reinterpret_cast<unsigned char const*>(der.data());
    auto const* p = begin;
    CmsPtr cms{d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size()))};
    if (cms && p != begin + der.size()) return {};  // trailing bytes
    return cms;
}

// One PEM block labelled CMS (openssl cms) or PKCS7 (openssl smime), without PEM headers, and
// nothing but whitespace after it.
CmsPtr parse_pem_cms(std::string_view text)
{
    BioPtr const bio{BIO_new_mem_buf(text.data(), static_cast<int>(text.size()))};
    ensure(bio != nullptr);
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long length = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &length) != 1) return {};
    OpenSslText const owned_name{name}, owned_header{header};
    OpenSslBytes const owned_data{data};
    std::string_view const label{name};
    if ((label != "CMS" && label != "PKCS7") || *header != '\0' || !only_space_left(bio.get())) return {};
    return parse_der_cms({reinterpret_cast<char const*>(data), static_cast<std::size_t>(length)});
}

std::string digest_name(int nid)
{
    char const* name = nid == NID_undef ? nullptr : OBJ_nid2sn(nid);
    return name == nullptr ? "an unknown digest" : name;
}

std::string subject_of(X509* cert)
{
    BioPtr const bio{BIO_new(BIO_s_mem())};
    ensure(bio != nullptr);
    X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char* data = nullptr;
    long const length = BIO_get_mem_data(bio.get(), &data);
    return length > 0 ? std::string(data, static_cast<std::size_t>(length)) : std::string();
}

std::vector<std::string> email_sans(X509* cert)
{
    std::vector<std::string> emails;
    NamesPtr const names{static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr))};
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
        GENERAL_NAME const* name = sk_GENERAL_NAME_value(names.get(), i);
        if (name->type != GEN_EMAIL) continue;
        emails.emplace_back(reinterpret_cast<char const*>(ASN1_STRING_get0_data(name->d.rfc822Name)),
                            static_cast<std::size_t>(ASN1_STRING_length(name->d.rfc822Name)));
    }
    return emails;
}

std::string joined(std::vector<std::string> const& items)
{
    std::string out;
    for (auto const& item : items) out += (out.empty() ? "" : ", ") + item;
    return out;
}

std::string fingerprint_of(X509* cert)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    ensure(X509_digest(cert, EVP_sha256(), digest, &length) == 1);
    return to_hex({reinterpret_cast<char const*>(digest), length});
}

bool allows_email_protection(X509* cert)
{
    return (X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) != 0 && (X509_get_extended_key_usage(cert) & XKU_SMIME) != 0;
}

}  // namespace

// ---- trust ----------------------------------------------------------------------------------

namespace detail {

// Everything a verifier holds: immutable after load() except the mutex-guarded cache.
struct AgreementTrust {
    std::vector<CertPtr> anchors;
    StorePtr store;  // the anchors and usable CRLs; shared read-only by every verification
    bool crl_configured = false;
    std::string crl_problem;
    std::size_t cache_capacity = 0;
    mutable std::mutex cache_mutex;
    mutable std::unordered_set<std::string> cache;  // keys of successful CMS signature checks

    [[nodiscard]] bool cached(std::string const& key) const
    {
        if (cache_capacity == 0) return false;
        std::lock_guard const lock{cache_mutex};
        return cache.contains(key);
    }

    void remember(std::string key) const
    {
        if (cache_capacity == 0) return;
        std::lock_guard const lock{cache_mutex};
        if (cache.size() >= cache_capacity) cache.clear();  // a crude bound; a miss only costs a check
        cache.insert(std::move(key));
    }
};

}  // namespace detail

namespace {

using detail::AgreementTrust;

// Every PEM object of one kind in `path`; at least one, and no broken one.
template <class T, auto Read, auto Free>
boost::system::result<std::vector<std::unique_ptr<T, Deleter<Free>>>, std::string> read_pem_file(std::string const& path,
                                                                                                  std::string const& what)
{
    BioPtr const bio{BIO_new_file(path.c_str(), "r")};
    if (!bio) return "cannot read " + what + " " + path + ": " + openssl_reason();
    std::vector<std::unique_ptr<T, Deleter<Free>>> items;
    ERR_clear_error();
    while (T* item = Read(bio.get(), nullptr, nullptr, nullptr)) items.emplace_back(item);
    // Reading stops at the end of the file (no further start line) or at a broken object.
    unsigned long const error = ERR_peek_last_error();
    bool const at_end = ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
    if (!at_end) return "cannot parse " + what + " " + path + ": " + openssl_reason();
    if (items.empty()) return "no PEM " + what + " in " + path;
    ERR_clear_error();
    return items;
}

bool issued_by_anchor(AgreementTrust const& trust, X509_CRL* crl)
{
    return std::any_of(trust.anchors.begin(), trust.anchors.end(), [crl](CertPtr const& ca) {
        EVP_PKEY* key = X509_get0_pubkey(ca.get());
        return key != nullptr && X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca.get())) == 0 &&
               X509_CRL_verify(crl, key) == 1;
    });
}

// Adds the CRLs in `path` to the trust store; answers why they cannot be used, or "".
std::string add_crls(AgreementTrust& trust, std::string const& path)
{
    auto const crls = read_pem_file<X509_CRL, PEM_read_bio_X509_CRL, X509_CRL_free>(path, "CRL");
    if (!crls) return crls.error();
    for (auto const& crl : *crls) {
        // Without nextUpdate nobody can tell a stale CRL from a current one.
        if (X509_CRL_get0_nextUpdate(crl.get()) == nullptr) return "a CRL in " + path + " has no nextUpdate";
        if (!issued_by_anchor(trust, crl.get())) return "a CRL in " + path + " is not signed by the agreements CA";
    }
    for (auto const& crl : *crls) ensure(X509_STORE_add_crl(trust.store.get(), crl.get()) == 1);
    return {};
}

// A store of the trust anchors whose verification time is `at`, for CMS_verify: CMS_verify checks
// the signer's chain against the store's time, which must be the signing time.
StorePtr store_at(AgreementTrust const& trust, TimePoint at)
{
    StorePtr store{X509_STORE_new()};
    ensure(store != nullptr);
    for (auto const& anchor : trust.anchors) ensure(X509_STORE_add_cert(store.get(), anchor.get()) == 1);
    X509_VERIFY_PARAM* param = X509_STORE_get0_param(store.get());
    X509_VERIFY_PARAM_set_time(param, to_time_t(at));
    X509_VERIFY_PARAM_set_auth_level(param, kAuthLevel);
    return store;
}

struct ChainOutcome {
    int error = X509_V_OK;
    int depth = 0;
};

// Verifies the signer's chain to the trust anchors for S/MIME signing at `at`, against the CRL
// when `crl` is true. `untrusted` are the certificates the signature carries.
ChainOutcome check_chain(AgreementTrust const& trust, X509* signer, STACK_OF(X509) * untrusted, TimePoint at, bool crl)
{
    StoreCtxPtr const ctx{X509_STORE_CTX_new()};
    ensure(ctx != nullptr && X509_STORE_CTX_init(ctx.get(), trust.store.get(), signer, untrusted) == 1);
    // The profile CMS_verify applies to signers: S/MIME signing purpose and e-mail trust.
    ensure(X509_STORE_CTX_set_default(ctx.get(), "smime_sign") == 1);
    ensure(X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SMIME_SIGN) == 1);
    X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
    X509_VERIFY_PARAM_set_time(param, to_time_t(at));
    X509_VERIFY_PARAM_set_auth_level(param, kAuthLevel);
    if (crl) X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK);
    if (X509_verify_cert(ctx.get()) == 1) return {};
    int const error = X509_STORE_CTX_get_error(ctx.get());
    return {error == X509_V_OK ? X509_V_ERR_UNSPECIFIED : error, X509_STORE_CTX_get_error_depth(ctx.get())};
}

std::string_view chain_reason(ChainOutcome const& chain)
{
    switch (chain.error) {
    case X509_V_ERR_CERT_HAS_EXPIRED: return "signer_expired";
    case X509_V_ERR_CERT_NOT_YET_VALID: return "signer_not_yet_valid";
    case X509_V_ERR_CERT_REVOKED: return "signer_revoked";
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR: return "crl_unavailable";
    case X509_V_ERR_INVALID_PURPOSE: return chain.depth == 0 ? "not_email_protection" : "untrusted_signer";
    default: return "untrusted_signer";
    }
}

// How far a signingTime may be ahead of this clock: the check-in default's clock skew.
constexpr auto kSigningTimeDrift = std::chrono::minutes(5);

// One verification, stage by stage; each stage answers false after recording the refusal.
class Attempt {
public:
    Attempt(AgreementTrust const& trust, std::string_view document, std::string_view signature)
        : trust_(trust), document_(document), signature_(signature)
    {
    }

    AgreementVerification run(Policy const* policy, TimePoint now) &&
    {
        out_.ok = read_document() && read_signature() && check_layout() && read_signing_time() && find_signer() &&
                  check_signature() && check_signer_now(now) && check_signer_use() &&
                  (policy == nullptr || (check_signed_by(now) && check_template(*policy)));
        if (out_.ok) out_.message = "The agreement is signed by " + out_.signer_email + " and verified.";
        ERR_clear_error();  // failed OpenSSL calls leave entries in this thread's error queue
        return std::move(out_);
    }

private:
    bool refuse(std::string_view reason, std::string message)
    {
        out_.reason = reason;
        out_.message = std::move(message);
        return false;
    }

    bool refuse_chain(ChainOutcome const& chain, std::string const& when)
    {
        std::string const whose = chain.depth == 0 ? "The signer's certificate" : "A CA certificate of the signer";
        return refuse(chain_reason(chain), whose + " is refused " + when + ": " +
                                               X509_verify_cert_error_string(chain.error) + ".");
    }

    bool read_document()
    {
        if (document_.empty()) return refuse("malformed_document", "The agreement document is empty.");
        if (document_.size() > kMaxAgreementBytes)
            return refuse("malformed_document", "The agreement document is larger than 64 KiB.");
        out_.document_sha256 = sha256_hex(document_);
        if (auto error = parse_document(document_, out_.document); !error.empty()) {
            out_.document = AgreementDocument{};
            return refuse("malformed_document", std::move(error));
        }
        return true;
    }

    bool read_signature()
    {
        if (signature_.empty()) return refuse("malformed_signature", "The signature is empty.");
        if (signature_.size() > kMaxAgreementBytes)
            return refuse("malformed_signature", "The signature is larger than 64 KiB.");
        cms_ = looks_like_pem(signature_) ? parse_pem_cms(signature_) : parse_der_cms(signature_);
        if (!cms_) return refuse("malformed_signature", "The signature is not a PEM or DER CMS (PKCS #7) structure.");
        if (OBJ_obj2nid(CMS_get0_type(cms_.get())) != NID_pkcs7_signed)
            return refuse("malformed_signature", "The signature is a CMS structure but not SignedData.");
        if (OBJ_obj2nid(CMS_get0_eContentType(cms_.get())) != NID_pkcs7_data)
            return refuse("malformed_signature", "The signature does not sign plain data.");
        return true;
    }

    bool check_layout()
    {
        int const detached = CMS_is_detached(cms_.get());
        if (detached < 0) return refuse("malformed_signature", "The signature's content cannot be read.");
        if (detached == 0)
            return refuse("attached_content", "The signature carries content of its own; only a detached signature "
                                              "over the document is accepted.");
        STACK_OF(CMS_SignerInfo)* infos = CMS_get0_SignerInfos(cms_.get());
        int const count = infos == nullptr ? 0 : sk_CMS_SignerInfo_num(infos);
        if (count != 1)
            return refuse("multiple_signers",
                          "The signature has " + std::to_string(count) + " signers; exactly one is required.");
        signer_info_ = sk_CMS_SignerInfo_value(infos, 0);
        if (CMS_signed_get_attr_count(signer_info_) <= 0)
            return refuse("no_signed_attributes", "The signature has no signed attributes.");
        X509_ALGOR* algorithm = nullptr;
        CMS_SignerInfo_get0_algs(signer_info_, nullptr, nullptr, &algorithm, nullptr);
        ASN1_OBJECT const* oid = nullptr;
        if (algorithm != nullptr) X509_ALGOR_get0(&oid, nullptr, nullptr, algorithm);
        int const nid = oid == nullptr ? NID_undef : OBJ_obj2nid(oid);
        if (nid != NID_sha256 && nid != NID_sha384 && nid != NID_sha512)
            return refuse("weak_digest", "The signature uses " + digest_name(nid) +
                                             "; only SHA-256, SHA-384 or SHA-512 is accepted.");
        return true;
    }

    bool read_signing_time()
    {
        int const index = CMS_signed_get_attr_by_NID(signer_info_, NID_pkcs9_signingTime, -1);
        if (index < 0)
            return refuse("no_signing_time", "The signature has no signingTime attribute, so the signer's "
                                             "certificate cannot be checked at signing time.");
        if (CMS_signed_get_attr_by_NID(signer_info_, NID_pkcs9_signingTime, index) >= 0)
            return refuse("malformed_signature", "The signature has more than one signingTime attribute.");
        X509_ATTRIBUTE* attribute = CMS_signed_get_attr(signer_info_, index);
        ASN1_TYPE const* value = X509_ATTRIBUTE_count(attribute) == 1 ? X509_ATTRIBUTE_get0_type(attribute, 0) : nullptr;
        bool const is_time = value != nullptr && (value->type == V_ASN1_UTCTIME || value->type == V_ASN1_GENERALIZEDTIME);
        out_.signed_at = is_time ? time_of(value->value.asn1_string) : std::nullopt;
        if (!out_.signed_at) return refuse("malformed_signature", "The signature's signingTime is not a valid time.");
        return true;
    }

    bool find_signer()
    {
        certs_.reset(CMS_get1_certs(cms_.get()));
        for (int i = 0; certs_ && signer_ == nullptr && i < sk_X509_num(certs_.get()); ++i)
            if (CMS_SignerInfo_cert_cmp(signer_info_, sk_X509_value(certs_.get(), i)) == 0)
                signer_ = sk_X509_value(certs_.get(), i);
        if (signer_ == nullptr)
            return refuse("untrusted_signer", "The signature does not include the signer's certificate.");
        out_.signer_subject = subject_of(signer_);
        emails_ = email_sans(signer_);
        out_.signer_email = joined(emails_);
        out_.signer_fingerprint = fingerprint_of(signer_);
        return true;
    }

    // CMS_verify checks the signature over the exact bytes and the signer's chain at signing time;
    // both depend only on the bytes and the trust anchors, so a success may be cached.
    bool check_signature()
    {
        std::string key = out_.document_sha256 + sha256_hex(signature_);
        if (trust_.cached(key)) return true;
        StorePtr const store = store_at(trust_, *out_.signed_at);
        // The bytes go in behind a buffering BIO: handed a memory BIO, OpenSSL 3.0 copies it into a
        // temporary one that it leaks when the SignedData lists a digest it cannot set up.
        BioPtr const bytes{BIO_new_mem_buf(document_.data(), static_cast<int>(document_.size()))};
        ensure(bytes != nullptr);
        BioPtr const content{BIO_new(BIO_f_buffer())};
        ensure(content != nullptr);
        BIO_push(content.get(), bytes.get());
        bool const verified = CMS_verify(cms_.get(), nullptr, store.get(), content.get(), nullptr, CMS_BINARY) == 1;
        BIO_pop(content.get());  // each BioPtr frees its own BIO
        if (verified) {
            trust_.remember(std::move(key));
            return true;
        }
        // Tell a signer that was not trusted or valid at signing time from altered bytes.
        auto const chain = check_chain(trust_, signer_, certs_.get(), *out_.signed_at, false);
        if (chain.error != X509_V_OK) return refuse_chain(chain, "at signing time (" + format_rfc3339(*out_.signed_at) + ")");
        return refuse("bad_signature", "The signature does not verify over the document's bytes; the document may "
                                       "have been changed after signing.");
    }

    bool check_signer_now(TimePoint now)
    {
        if (trust_.crl_configured && !trust_.crl_problem.empty())
            return refuse("crl_unavailable", "The agreements CRL cannot be used: " + trust_.crl_problem + ".");
        auto const chain = check_chain(trust_, signer_, certs_.get(), now, trust_.crl_configured);
        if (chain.error != X509_V_OK) return refuse_chain(chain, "now (" + format_rfc3339(now) + ")");
        return true;
    }

    bool check_signer_use()
    {
        if (!allows_email_protection(signer_))
            return refuse("not_email_protection",
                          "The signer's certificate does not allow e-mail protection (extendedKeyUsage emailProtection).");
        if (emails_.size() != 1 || emails_.front() != out_.document.user)
            return refuse("signer_mismatch", "The agreement is in the name of " + out_.document.user + " but signed by " +
                                                 (emails_.empty() ? "a certificate without an e-mail address" : joined(emails_)) + ".");
        return true;
    }

    // A signature claims its signingTime; one later than now (beyond a clock's drift) is not a
    // record of when the owner signed. Checked when an agreement is taken in, not when a stored
    // one is re-checked: a clock set back must not invalidate agreements already stored.
    bool check_signed_by(TimePoint now)
    {
        if (*out_.signed_at <= now + kSigningTimeDrift) return true;
        return refuse("signing_time_in_future", "The signature's signingTime (" + format_rfc3339(*out_.signed_at) +
                                                    ") is later than now (" + format_rfc3339(now) + ").");
    }

    bool check_template(Policy const& policy)
    {
        auto const found = policy.agreements.find(out_.document.agreement);
        if (found == policy.agreements.end())
            return refuse("unknown_template", "The policy has no agreement template " + quoted(out_.document.agreement) + ".");
        std::string terms = out_.document.terms_sha256;
        std::transform(terms.begin(), terms.end(), terms.begin(), [](char c) { return c >= 'A' && c <= 'F' ? char(c + 32) : c; });
        if (terms != found->second.terms_sha256)
            return refuse("terms_mismatch", "The document's terms_sha256 does not match the terms of " +
                                                quoted(found->first) + " in the policy.");
        return true;
    }

    AgreementTrust const& trust_;
    std::string_view document_;
    std::string_view signature_;
    AgreementVerification out_;
    CmsPtr cms_;
    CMS_SignerInfo* signer_info_ = nullptr;  // owned by cms_
    CertsPtr certs_;                         // the certificates the signature carries
    X509* signer_ = nullptr;                 // owned by certs_
    std::vector<std::string> emails_;        // the signer's email SANs
};

int sextet(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

}  // namespace

AgreementVerifier::AgreementVerifier(std::unique_ptr<detail::AgreementTrust> trust) : trust_(std::move(trust)) {}

AgreementVerifier::~AgreementVerifier() = default;

boost::system::result<std::shared_ptr<AgreementVerifier const>, std::string>
AgreementVerifier::load(std::string const& ca_file, std::string const& crl_file, std::size_t cache_entries)
{
    auto trust = std::make_unique<AgreementTrust>();
    trust->cache_capacity = cache_entries;
    auto anchors = read_pem_file<X509, PEM_read_bio_X509, X509_free>(ca_file, "agreements CA certificate");
    if (!anchors) {
        ERR_clear_error();
        return anchors.error();
    }
    trust->store.reset(X509_STORE_new());
    ensure(trust->store != nullptr);
    for (auto& cert : *anchors) {
        if (X509_check_ca(cert.get()) < 1)
            return "the agreements CA file " + ca_file + " holds a certificate that is not a CA: " + subject_of(cert.get());
        ensure(X509_STORE_add_cert(trust->store.get(), cert.get()) == 1);
        trust->anchors.push_back(std::move(cert));
    }
    if (!crl_file.empty()) {
        trust->crl_configured = true;
        trust->crl_problem = add_crls(*trust, crl_file);
    }
    ERR_clear_error();
    return std::shared_ptr<AgreementVerifier const>(new AgreementVerifier(std::move(trust)));
}

AgreementVerification AgreementVerifier::verify(std::string_view document, std::string_view signature,
                                                Policy const& policy, TimePoint now) const
{
    return Attempt{*trust_, document, signature}.run(&policy, now);
}

AgreementVerification AgreementVerifier::verify_signer(std::string_view document, std::string_view signature,
                                                       TimePoint now) const
{
    return Attempt{*trust_, document, signature}.run(nullptr, now);
}

bool AgreementVerifier::has_crl() const noexcept
{
    return trust_->crl_configured;
}

std::string const& AgreementVerifier::crl_problem() const noexcept
{
    return trust_->crl_problem;
}

std::optional<std::string> decode_base64(std::string_view text)
{
    if (text.size() % 4 != 0) return std::nullopt;
    std::string out;
    out.reserve(text.size() / 4 * 3);
    for (std::size_t i = 0; i < text.size(); i += 4) {
        bool const last = i + 4 == text.size();
        std::uint32_t bits = 0;
        int padding = 0;
        for (std::size_t k = 0; k < 4; ++k) {
            char const c = text[i + k];
            if (c == '=' && last && k >= 2) {
                ++padding;
                bits <<= 6;
                continue;
            }
            int const value = sextet(c);
            if (value < 0 || padding > 0) return std::nullopt;  // outside the alphabet, or after padding
            bits = (bits << 6) | static_cast<std::uint32_t>(value);
        }
        // Canonical form: the bits that padding leaves unused must be zero.
        if ((padding == 1 && (bits & 0xffU) != 0) || (padding == 2 && (bits & 0xffffU) != 0)) return std::nullopt;
        out.push_back(static_cast<char>(bits >> 16));
        if (padding < 2) out.push_back(static_cast<char>((bits >> 8) & 0xffU));
        if (padding < 1) out.push_back(static_cast<char>(bits & 0xffU));
    }
    return out;
}

}  // namespace exemptd
