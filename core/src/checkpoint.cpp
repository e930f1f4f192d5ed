#include "exemptd/checkpoint.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <unistd.h>

namespace exemptd {
namespace {

struct MdCtxFree {
    void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

std::string base64(std::string_view bytes)
{
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    int const n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<unsigned char const*>(bytes.data()), static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::optional<std::string> unbase64(std::string_view text)
{
    if (text.empty() || text.size() % 4 != 0) return std::nullopt;
    std::string out(text.size() / 4 * 3, '\0');
    int const n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<unsigned char const*>(text.data()), static_cast<int>(text.size()));
    if (n < 0) return std::nullopt;
    std::size_t padding = text.ends_with("==") ? 2 : text.ends_with("=") ? 1 : 0;
    out.resize(static_cast<std::size_t>(n) - padding);
    return out;
}

}  // namespace

void PkeyFree::operator()(EVP_PKEY* key) const noexcept
{
    EVP_PKEY_free(key);
}

std::string checkpoint_message(Checkpoint const& c)
{
    return "exemptd-audit-checkpoint v1\nseq=" + std::to_string(c.seq) + "\nhead=" + c.head_hash +
           "\nat=" + format_rfc3339(c.at) + "\n";
}

boost::system::result<PkeyPtr, std::string> load_private_key(std::string const& path)
{
    std::unique_ptr<FILE, decltype(&std::fclose)> file{std::fopen(path.c_str(), "r"), &std::fclose};
    if (!file) return "cannot read key " + path;
    PkeyPtr key{PEM_read_PrivateKey(file.get(), nullptr, nullptr, nullptr)};
    if (!key) return "cannot parse key " + path;
    return key;
}

boost::system::result<PkeyPtr, std::string> load_certificate_key(std::string const& path)
{
    std::unique_ptr<FILE, decltype(&std::fclose)> file{std::fopen(path.c_str(), "r"), &std::fclose};
    if (!file) return "cannot read certificate " + path;
    std::unique_ptr<X509, decltype(&X509_free)> cert{PEM_read_X509(file.get(), nullptr, nullptr, nullptr), &X509_free};
    if (!cert) return "cannot parse certificate " + path;
    PkeyPtr key{X509_get_pubkey(cert.get())};
    if (!key) return "certificate " + path + " has no usable public key";
    return key;
}

boost::system::result<Checkpoint, std::string> sign_checkpoint(EVP_PKEY* key, std::int64_t seq, std::string head_hash,
                                                               TimePoint at)
{
    Checkpoint c{seq, std::move(head_hash), at, {}};
    auto const message = checkpoint_message(c);
    MdCtxPtr ctx{EVP_MD_CTX_new()};
    std::size_t length = 0;
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &length, reinterpret_cast<unsigned char const*>(message.data()),
                       message.size()) != 1)
        return std::string("cannot sign the checkpoint");
    std::string signature(length, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &length,
                       reinterpret_cast<unsigned char const*>(message.data()), message.size()) != 1)
        return std::string("cannot sign the checkpoint");
    signature.resize(length);
    c.signature = base64(signature);
    return c;
}

bool verify_checkpoint_signature(EVP_PKEY* key, Checkpoint const& c)
{
    auto const signature = unbase64(c.signature);
    if (!signature) return false;
    auto const message = checkpoint_message(c);
    MdCtxPtr ctx{EVP_MD_CTX_new()};
    return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
           EVP_DigestVerify(ctx.get(), reinterpret_cast<unsigned char const*>(signature->data()), signature->size(),
                            reinterpret_cast<unsigned char const*>(message.data()), message.size()) == 1;
}

std::string checkpoint_to_line(Checkpoint const& c)
{
    boost::json::object const o{
        {"seq", c.seq}, {"head_hash", c.head_hash}, {"at", format_rfc3339(c.at)}, {"signature", c.signature}};
    return boost::json::serialize(o);
}

std::optional<Checkpoint> checkpoint_from_line(std::string_view line)
{
    boost::system::error_code ec;
    auto const v = boost::json::parse(line, ec);
    if (ec || !v.is_object()) return std::nullopt;
    auto const& o = v.as_object();
    auto const* seq = o.if_contains("seq");
    auto const* head = o.if_contains("head_hash");
    auto const* at = o.if_contains("at");
    auto const* signature = o.if_contains("signature");
    if (seq == nullptr || !seq->is_int64() || head == nullptr || !head->is_string() || at == nullptr ||
        !at->is_string() || signature == nullptr || !signature->is_string())
        return std::nullopt;
    auto const when = parse_rfc3339(at->as_string());
    if (!when) return std::nullopt;
    return Checkpoint{seq->as_int64(), std::string(head->as_string()), *when, std::string(signature->as_string())};
}

boost::system::result<void, std::string> append_checkpoint(std::string const& path, Checkpoint const& c)
{
    auto const line = checkpoint_to_line(c) + "\n";
    int const fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) return "cannot open checkpoint file " + path;
    bool const ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) return "cannot write checkpoint file " + path;
    return {};
}

namespace {

// The last well-formed checkpoint among the whole lines of `lines`, or nullopt.
std::optional<Checkpoint> last_checkpoint_in(std::string_view lines)
{
    for (std::size_t end = lines.size();;) {
        auto const newline = end == 0 ? std::string_view::npos : lines.rfind('\n', end - 1);
        auto const begin = newline == std::string_view::npos ? 0 : newline + 1;
        if (auto c = checkpoint_from_line(lines.substr(begin, end - begin))) return c;
        if (newline == std::string_view::npos) return std::nullopt;
        end = newline;
    }
}

}  // namespace

// Reads the file backwards, a block at a time: the file gains a line every checkpoint interval
// for as long as the daemon runs, and start-up and each audit verification need only the last.
std::optional<Checkpoint> latest_checkpoint(std::string const& path)
{
    constexpr std::streamoff kBlock = 8192;
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) return std::nullopt;
    std::streamoff end = in.tellg();
    std::string partial;  // the start of the file's last unread line, whose beginning is not read yet
    while (end > 0) {
        auto const start = std::max<std::streamoff>(0, end - kBlock);
        std::string text(static_cast<std::size_t>(end - start), '\0');
        if (!in.seekg(start) || !in.read(text.data(), static_cast<std::streamsize>(text.size()))) return std::nullopt;
        text += partial;
        // Only the lines after the block's first newline are whole, unless the block starts the file.
        auto const first = start == 0 ? std::string::npos : text.find('\n');
        auto const whole = start == 0 ? 0 : first == std::string::npos ? text.size() : first + 1;
        if (auto c = last_checkpoint_in(std::string_view(text).substr(whole))) return c;
        partial = text.substr(0, whole == 0 ? 0 : whole - (first == std::string::npos ? 0 : 1));
        end = start;
    }
    return std::nullopt;
}

std::optional<std::string> check_against_checkpoint(Checkpoint const& c, std::int64_t last_seq,
                                                    std::optional<std::string> const& hash_at_seq)
{
    if (last_seq < c.seq)
        return "the chain ends at record " + std::to_string(last_seq) + " but the checkpoint of " + format_rfc3339(c.at) +
               " recorded " + std::to_string(c.seq) + " records: records were cut off";
    if (c.seq > 0 && hash_at_seq != c.head_hash)
        return "record " + std::to_string(c.seq) + " does not have the hash the checkpoint recorded";
    return std::nullopt;
}

}  // namespace exemptd
