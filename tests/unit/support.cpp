#include "support.hpp"

#include <boost/json/serialize.hpp>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <unistd.h>

namespace exemptd::test {
namespace {

template <class T, void (*Free)(T*)>
struct Freer {
    void operator()(T* p) const noexcept { Free(p); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Freer<EVP_PKEY, EVP_PKEY_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Freer<GENERAL_NAMES, GENERAL_NAMES_free>>;
using EkuPtr = std::unique_ptr<EXTENDED_KEY_USAGE, Freer<EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free>>;
using ConstraintsPtr = std::unique_ptr<BASIC_CONSTRAINTS, Freer<BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_free>>;

void ensure(bool ok, char const* what)
{
    if (!ok) throw std::runtime_error(std::string("OpenSSL failed: ") + what);
}

// One key signs every test certificate: generating a key per certificate would only slow tests.
EVP_PKEY* signing_key()
{
    static KeyPtr const key{EVP_EC_gen("P-256")};
    ensure(key != nullptr, "EVP_EC_gen");
    return key.get();
}

void add_name(GENERAL_NAMES* names, int type, std::string const& value)
{
    ASN1_IA5STRING* text = ASN1_IA5STRING_new();
    ensure(text != nullptr && ASN1_STRING_set(text, value.data(), static_cast<int>(value.size())) == 1, "ASN1_STRING_set");
    GENERAL_NAME* name = GENERAL_NAME_new();
    ensure(name != nullptr, "GENERAL_NAME_new");
    GENERAL_NAME_set0_value(name, type, text);
    ensure(sk_GENERAL_NAME_push(names, name) > 0, "sk_GENERAL_NAME_push");
}

void add_san(X509* cert, CertSpec const& spec)
{
    if (spec.uris.empty() && spec.emails.empty()) return;
    NamesPtr const names{sk_GENERAL_NAME_new_null()};
    ensure(names != nullptr, "sk_GENERAL_NAME_new_null");
    for (auto const& uri : spec.uris) add_name(names.get(), GEN_URI, uri);
    for (auto const& email : spec.emails) add_name(names.get(), GEN_EMAIL, email);
    ensure(X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) == 1, "SAN");
}

void add_eku(X509* cert, CertSpec const& spec)
{
    if (!spec.client_auth && !spec.server_auth) return;
    EkuPtr const eku{sk_ASN1_OBJECT_new_null()};
    ensure(eku != nullptr, "sk_ASN1_OBJECT_new_null");
    if (spec.client_auth) ensure(sk_ASN1_OBJECT_push(eku.get(), OBJ_nid2obj(NID_client_auth)) > 0, "EKU push");
    if (spec.server_auth) ensure(sk_ASN1_OBJECT_push(eku.get(), OBJ_nid2obj(NID_server_auth)) > 0, "EKU push");
    ensure(X509_add1_ext_i2d(cert, NID_ext_key_usage, eku.get(), 0, X509V3_ADD_DEFAULT) == 1, "EKU");
}

void add_basic_constraints(X509* cert, CertSpec const& spec)
{
    if (!spec.ca) return;
    ConstraintsPtr const bc{BASIC_CONSTRAINTS_new()};
    ensure(bc != nullptr, "BASIC_CONSTRAINTS_new");
    bc->ca = *spec.ca ? 0xff : 0;
    ensure(X509_add1_ext_i2d(cert, NID_basic_constraints, bc.get(), 1, X509V3_ADD_DEFAULT) == 1, "basicConstraints");
}

void set_names(X509* cert, std::string const& common_name)
{
    auto const* cn = reinterpret_cast<unsigned char const*>(common_name.c_str());
    X509_NAME* subject = X509_get_subject_name(cert);
    if (!common_name.empty())  // an empty subject is legal; an empty CN is not
        ensure(X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, cn, -1, -1, 0) == 1, "subject");
    X509_NAME* issuer = X509_get_issuer_name(cert);
    auto const* ca = reinterpret_cast<unsigned char const*>("exemptd unit test CA");
    ensure(X509_NAME_add_entry_by_txt(issuer, "CN", MBSTRING_UTF8, ca, -1, -1, 0) == 1, "issuer");
}

// Info lines (one per store opened) would bury test failures; warnings and errors still show.
[[maybe_unused]] bool const kQuietLogs = (spdlog::set_level(spdlog::level::warn), true);

}  // namespace

std::string data_path(std::string_view relative)
{
    return (std::filesystem::path(EXEMPTD_TEST_DATA) / relative).string();
}

std::string read_text(std::filesystem::path const& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    std::ostringstream buffer;
    buffer << in.rdbuf();
    return std::move(buffer).str();
}

TimePoint fixed_time(std::string_view rfc3339)
{
    auto const t = parse_rfc3339(rfc3339);
    if (!t) throw std::invalid_argument("not an RFC 3339 time: " + std::string(rfc3339));
    return *t;
}

TempDir::TempDir()
{
    static std::atomic<int> counter{0};
    auto const base = std::filesystem::temp_directory_path();
    for (int attempt = 0; attempt < 100; ++attempt) {
        auto candidate = base / ("exemptd-unit-" + std::to_string(::getpid()) + "-" + std::to_string(++counter));
        if (std::filesystem::create_directory(candidate)) {
            path_ = std::move(candidate);
            return;
        }
    }
    throw std::runtime_error("cannot create a temporary folder");
}

TempDir::~TempDir()
{
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::write(std::string_view name, std::string_view content) const
{
    auto const path = file(name);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    if (!out) throw std::runtime_error("cannot write " + path);
    return path;
}

void X509Deleter::operator()(X509* cert) const noexcept
{
    X509_free(cert);
}

X509Ptr make_certificate(CertSpec const& spec)
{
    X509Ptr cert{X509_new()};
    ensure(cert != nullptr, "X509_new");
    ensure(X509_set_version(cert.get(), X509_VERSION_3) == 1, "version");
    static std::atomic<long> serial{1};
    ensure(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++) == 1, "serial");
    ensure(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr, "notBefore");
    ensure(X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400) != nullptr, "notAfter");
    set_names(cert.get(), spec.common_name);
    ensure(X509_set_pubkey(cert.get(), signing_key()) == 1, "pubkey");
    add_basic_constraints(cert.get(), spec);
    add_eku(cert.get(), spec);
    add_san(cert.get(), spec);
    ensure(X509_sign(cert.get(), signing_key(), EVP_sha256()) > 0, "X509_sign");
    return cert;
}

CertSpec endpoint_cert(std::string const& device_id)
{
    CertSpec spec;
    spec.common_name = device_id.size() <= 64 ? device_id : "endpoint";  // CN is at most 64 characters
    spec.uris = {"urn:exemptd:role:endpoint", "urn:exemptd:device:" + device_id};
    return spec;
}

CertSpec person_cert(std::string_view role, std::string const& email)
{
    CertSpec spec;
    spec.common_name = email;
    spec.uris = {"urn:exemptd:role:" + std::string(role)};
    spec.emails = {email};
    return spec;
}

std::string policy_dir()
{
    return data_path("policies");
}

std::string const kStandardPolicyYaml = R"yaml(version: 1
controls:
  - id: MDM-01
    title: Device is enrolled in MDM
    check: {enrolled: true}
    exemption: {requires_agreement: byod-v3}
  - id: ENC-01
    title: Disk encryption is on
    check: {fact: disk_encrypted, equals: true}
    grace_hours: 72
  - id: LOCK-01
    title: Screen locks after at most 15 minutes
    check: {fact: screen_lock_seconds, min: 1, max: 900}
  - id: OS-01
    title: OS patched within 30 days
    check: {fact: os_patch_age_days, min: 0, max: 30}
  - id: HR-03
    title: Background check completed
    applies_to: user
  - id: IAM-01
    title: Unique user IDs
    applies_to: account
exemptions:
  max_days: {low: 180, medium: 90, high: 30, critical: 7}
  review_every_days: {low: 90, medium: 30, high: 7, critical: 7}
  approvers:
    critical: [ciso@example.com]
    high: [ciso@example.com, security-lead@example.com]
    medium: [it-manager@example.com]
  max_renewals: 2
agreements:
  byod-v3: {terms_file: byod-v3.txt}
checkin: {interval_seconds: 600, stale_after_hours: 72, max_clock_skew_seconds: 300}
)yaml";

Policy policy_from_yaml(std::string_view yaml, std::string const& file_name)
{
    auto parsed = parse_policy(yaml, file_name, policy_dir());
    if (!parsed) throw std::runtime_error("test policy refused: " + parsed.error().to_string());
    return std::move(*parsed);
}

Policy standard_policy()
{
    return policy_from_yaml(kStandardPolicyYaml);
}

PostureJson::PostureJson(std::string const& device_id, TimePoint reported_at)
    : object_{{"device_id", device_id},
              {"hostname", "sam-laptop"},
              {"serial", "C02XYZ123"},
              {"os", {{"name", "debian"}, {"version", "12.8"}}},
              {"facts",
               {{"disk_encrypted", true},
                {"firewall_enabled", true},
                {"screen_lock_seconds", 300},
                {"os_patch_age_days", 12}}},
              {"agent_version", "0.1.0"},
              {"reported_at", format_rfc3339(reported_at)},
              {"nonce", "4f1c2a9e7b3d5a60"}}
{
}

PostureJson& PostureJson::set(std::string_view key, boost::json::value value)
{
    object_[key] = std::move(value);
    return *this;
}

PostureJson& PostureJson::erase(std::string_view key)
{
    object_.erase(key);
    return *this;
}

PostureJson& PostureJson::fact(std::string_view key, boost::json::value value)
{
    object_["facts"].as_object()[key] = std::move(value);
    return *this;
}

PostureJson& PostureJson::erase_fact(std::string_view key)
{
    object_["facts"].as_object().erase(key);
    return *this;
}

std::string PostureJson::str() const
{
    return boost::json::serialize(object_);
}

PostureReport PostureJson::report() const
{
    auto decoded = decode_posture(str());
    if (!decoded) throw std::runtime_error("test posture refused: " + decoded.error().message);
    return std::move(*decoded);
}

}  // namespace exemptd::test
