// Fuzz target: certificate-to-identity mapping (identity_from_certificate) on a certificate parsed
// from the input as DER, else as PEM. Invariants: nothing crashes; an accepted endpoint carries
// one valid device id and no email, an accepted person one email and no device.

#include "fuzz_support.hpp"

#include "exemptd/identity.hpp"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>

namespace {

using exemptd::fuzz::fail;

struct X509Free {
    void operator()(X509* cert) const noexcept { X509_free(cert); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

X509Ptr parse(std::uint8_t const* data, std::size_t size)
{
    if (size > static_cast<std::size_t>(std::numeric_limits<int>::max())) return nullptr;
    unsigned char const* p = data;
    if (X509Ptr der{d2i_X509(nullptr, &p, static_cast<long>(size))}) return der;
    std::unique_ptr<BIO, decltype(&BIO_free)> const bio{BIO_new_mem_buf(data, static_cast<int>(size)), &BIO_free};
    if (!bio) return nullptr;
    return X509Ptr{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    static bool const null_refused = !exemptd::identity_from_certificate(nullptr);
    if (!null_refused) fail("a null certificate was accepted");
    auto const cert = parse(data, size);
    if (!cert) return 0;
    auto const id = exemptd::identity_from_certificate(cert.get());
    if (!id) {
        if (id.error() != exemptd::make_error_code(exemptd::Errc::peer_not_authorized)) fail("an unexpected error");
        return 0;
    }
    if (id->role == exemptd::Role::endpoint) {
        if (!exemptd::is_valid_device_id(id->device_id) || !id->email.empty()) fail("a malformed endpoint identity");
    } else if (id->email.empty() || !id->device_id.empty()) {
        fail("a malformed person identity");
    }
    return 0;
}
