#include "exemptd/digest.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace exemptd {

std::string to_hex(std::string_view bytes)
{
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char const c : bytes) {
        out.push_back(kDigits[c >> 4]);
        out.push_back(kDigits[c & 0x0f]);
    }
    return out;
}

std::string sha256_hex(std::string_view bytes)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("SHA-256 failed");  // only on allocation failure inside OpenSSL
    return to_hex({reinterpret_cast<char const*>(digest), length});
}

}  // namespace exemptd
