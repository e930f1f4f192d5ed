#include "exemptd/identity.hpp"

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <vector>

namespace exemptd {
namespace {

constexpr std::string_view kUrnPrefix = "urn:exemptd:";
constexpr std::string_view kRolePrefix = "urn:exemptd:role:";
constexpr std::string_view kDevicePrefix = "urn:exemptd:device:";

struct SanEntries {
    std::vector<std::string> roles;
    std::vector<std::string> devices;
    std::vector<std::string> emails;
    bool unknown_urn = false;
};

std::string_view asn1_view(ASN1_IA5STRING const* s)
{
    return {reinterpret_cast<char const*>(ASN1_STRING_get0_data(s)), static_cast<std::size_t>(ASN1_STRING_length(s))};
}

// Sorts the SAN entries into the URNs and emails that identity depends on.
SanEntries read_san(X509* cert)
{
    SanEntries out;
    using Names = std::unique_ptr<GENERAL_NAMES, decltype([](GENERAL_NAMES* n) { GENERAL_NAMES_free(n); })>;
    Names const names{static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr))};
    if (!names) return out;
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
        GENERAL_NAME const* name = sk_GENERAL_NAME_value(names.get(), i);
        if (name->type == GEN_EMAIL) {
            out.emails.emplace_back(asn1_view(name->d.rfc822Name));
            continue;
        }
        if (name->type != GEN_URI) continue;
        std::string_view const uri = asn1_view(name->d.uniformResourceIdentifier);
        if (uri.starts_with(kRolePrefix))
            out.roles.emplace_back(uri.substr(kRolePrefix.size()));
        else if (uri.starts_with(kDevicePrefix))
            out.devices.emplace_back(uri.substr(kDevicePrefix.size()));
        else if (uri.starts_with(kUrnPrefix))
            out.unknown_urn = true;
    }
    return out;
}

bool has_client_auth_eku(X509* cert)
{
    return (X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) != 0 &&
           (X509_get_extended_key_usage(cert) & XKU_SSL_CLIENT) != 0;
}

Result<ClientId> person(Role role, SanEntries const& san)
{
    if (san.emails.size() != 1 || san.emails.front().empty() || !san.devices.empty())
        return make_error_code(Errc::peer_not_authorized);
    return ClientId{role, {}, san.emails.front()};
}

}  // namespace

bool is_valid_device_id(std::string_view id) noexcept
{
    if (id.empty() || id.size() > 64) return false;
    for (char const c : id) {
        bool const ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '_' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return true;
}

std::string_view to_string(Role role) noexcept
{
    switch (role) {
    case Role::endpoint: return "endpoint";
    case Role::helpdesk: return "helpdesk";
    case Role::admin: return "admin";
    }
    return "unknown";
}

Result<ClientId> identity_from_certificate(X509* cert)
{
    if (cert == nullptr || !has_client_auth_eku(cert) || X509_check_ca(cert) != 0)
        return make_error_code(Errc::peer_not_authorized);
    SanEntries const san = read_san(cert);
    if (san.unknown_urn || san.roles.size() != 1) return make_error_code(Errc::peer_not_authorized);
    std::string const& role = san.roles.front();
    if (role == "admin") return person(Role::admin, san);
    if (role == "helpdesk") return person(Role::helpdesk, san);
    if (role != "endpoint" || san.devices.size() != 1 || !is_valid_device_id(san.devices.front()))
        return make_error_code(Errc::peer_not_authorized);
    return ClientId{Role::endpoint, san.devices.front(), {}};
}

}  // namespace exemptd
