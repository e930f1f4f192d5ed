#pragma once
// Who is calling: the role and identity carried in a client certificate's subjectAltName URIs.

#include "exemptd/error.hpp"

#include <string>
#include <string_view>

using X509 = struct x509_st;

namespace exemptd {

enum class Role { endpoint, helpdesk, admin };

// The authenticated caller of one connection.
struct ClientId {
    Role role = Role::endpoint;
    std::string device_id;  // set for endpoints
    std::string email;      // set for help desk and admins
};

// True when id is 1-64 characters of [A-Za-z0-9._:-]. Thread-safe.
[[nodiscard]] bool is_valid_device_id(std::string_view id) noexcept;

// "endpoint", "helpdesk" or "admin".
[[nodiscard]] std::string_view to_string(Role role) noexcept;

// Reads the role and identity from the certificate's SAN (never the CN). Refuses, with
// Errc::peer_not_authorized, a certificate with no role, two roles, an unknown exemptd URN, an
// endpoint without exactly one valid device URI, or a person without exactly one email SAN.
// The caller has already verified the chain and EKU. Thread-safe.
[[nodiscard]] Result<ClientId> identity_from_certificate(X509* cert);

}  // namespace exemptd
