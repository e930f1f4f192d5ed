#include "tls_engine.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <new>

namespace exemptd::daemon {
namespace {

namespace net = boost::asio;

// What a socket read takes once OpenSSL wants more than a record header: a whole record of the
// largest size (16 KB of plaintext plus the cipher's overhead), and perhaps the next header.
constexpr std::size_t kReadChunk = 17 * 1024;
// The most plaintext one SSL_read or SSL_write call handles.
constexpr std::size_t kMaxCall = 1 << 30;

// Input buffers of kReadChunk bytes, kept for the engines of one thread: a keep-alive
// connection takes one for each request and gives it back when it waits for the next, and a
// 17 KB malloc and free per request cost more than all its other allocations together (glibc
// consolidates its free lists on such a free). At most 64 are kept: about 1.1 MB a thread.
class ChunkPool {
public:
    std::unique_ptr<unsigned char[]> take()
    {
        if (free_.empty()) return std::make_unique_for_overwrite<unsigned char[]>(kReadChunk);
        auto chunk = std::move(free_.back());
        free_.pop_back();
        return chunk;
    }
    void give(std::unique_ptr<unsigned char[]> chunk) noexcept
    {
        if (free_.size() < kMaxKept) free_.push_back(std::move(chunk));  // reserved: cannot throw
    }
    ChunkPool() { free_.reserve(kMaxKept); }

private:
    static constexpr std::size_t kMaxKept = 64;
    std::vector<std::unique_ptr<unsigned char[]>> free_;
};

thread_local ChunkPool chunk_pool;

TlsEngine& engine_of(BIO* bio)
{
    return *static_cast<TlsEngine*>(BIO_get_data(bio));
}

int bio_read(BIO* bio, char* out, int length)
{
    BIO_clear_retry_flags(bio);
    int const n = engine_of(bio).bio_read(out, length);
    if (n < 0) BIO_set_retry_read(bio);
    return n;
}

int bio_write(BIO* bio, char const* in, int length)
{
    BIO_clear_retry_flags(bio);
    try {
        return engine_of(bio).bio_write(in, length);
    } catch (std::bad_alloc const&) {
        return -1;  // OpenSSL reports a failed write as an error of the operation
    }
}

long bio_ctrl(BIO*, int command, long, void*)
{
    // OpenSSL flushes its handshake messages; the engine's output is always "flushed" to the
    // caller, who sends it after each step.
    return command == BIO_CTRL_FLUSH ? 1 : 0;
}

int bio_create(BIO* bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

// The engine's BIO type, made once and kept for the life of the process.
BIO_METHOD const* engine_bio_method()
{
    static BIO_METHOD* const method = [] {
        BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "exemptd-tls-engine");
        if (m == nullptr) throw std::bad_alloc{};
        BIO_meth_set_read(m, &bio_read);
        BIO_meth_set_write(m, &bio_write);
        BIO_meth_set_ctrl(m, &bio_ctrl);
        BIO_meth_set_create(m, &bio_create);
        return m;
    }();
    return method;
}

}  // namespace

TlsEngine::TlsEngine(SSL_CTX* ctx) : ssl_(SSL_new(ctx))
{
    if (ssl_ == nullptr) throw std::bad_alloc{};
    BIO* bio = BIO_new(engine_bio_method());
    if (bio == nullptr) {
        SSL_free(ssl_);
        throw std::bad_alloc{};
    }
    BIO_set_data(bio, this);
    SSL_set_bio(ssl_, bio, bio);  // one reference serves as both; SSL_free frees it
    // OpenSSL's own record buffers are freed between records; a retried SSL_write may pass the
    // same bytes from another address (a write coalesces small buffers into a fresh copy). With
    // auto-retry (OpenSSL 3's default, made sure of here) SSL_read goes on past a record of its
    // own (a TLS 1.3 KeyUpdate) and reports WANT_READ only once the BIO is empty: input_space()
    // relies on that.
    SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_AUTO_RETRY);
}

TlsEngine::~TlsEngine()
{
    SSL_free(ssl_);
    release_input();
}

void TlsEngine::release_input() noexcept
{
    if (in_capacity_ == kReadChunk) chunk_pool.give(std::move(in_));
    in_.reset();
    in_capacity_ = in_begin_ = in_end_ = 0;
}

void TlsEngine::start_handshake(bool server) noexcept
{
    if (server) SSL_set_accept_state(ssl_);
    else SSL_set_connect_state(ssl_);
}

// One OpenSSL call, sorted as Asio's engine sorts it, so that callers see the same errors.
template <class Call>
TlsEngine::Step TlsEngine::perform(Call call)
{
    // SSL_get_error reads the thread's error queue: it must hold nothing from before. Clearing
    // an empty queue costs more than looking at it.
    if (ERR_peek_error() != 0) ERR_clear_error();
    int const result = call();
    int const error = SSL_get_error(ssl_, result);
    Step step;
    switch (error) {
    case SSL_ERROR_NONE: step.bytes = result > 0 ? static_cast<std::size_t>(result) : 0; break;
    case SSL_ERROR_WANT_READ: step.want = Want::input; break;
    case SSL_ERROR_ZERO_RETURN: step.ec = net::error::eof; break;
    case SSL_ERROR_SSL: step.ec = {static_cast<int>(ERR_get_error()), net::error::get_ssl_category()}; break;
    case SSL_ERROR_SYSCALL:
        if (auto const code = static_cast<int>(ERR_get_error()); code != 0) step.ec = {code, net::error::get_ssl_category()};
        else step.ec = net::ssl::error::unspecified_system_error;
        break;
    default: step.ec = net::ssl::error::unexpected_result; break;  // WANT_WRITE cannot happen: writes never block
    }
    return step;
}

TlsEngine::Step TlsEngine::handshake()
{
    return perform([this] { return SSL_do_handshake(ssl_); });
}

TlsEngine::Step TlsEngine::read(net::mutable_buffer buffer)
{
    int const length = static_cast<int>(std::min(buffer.size(), kMaxCall));
    return perform([this, buffer, length] { return SSL_read(ssl_, buffer.data(), length); });
}

TlsEngine::Step TlsEngine::write(net::const_buffer buffer)
{
    int const length = static_cast<int>(std::min(buffer.size(), kMaxCall));
    return perform([this, buffer, length] { return SSL_write(ssl_, buffer.data(), length); });
}

TlsEngine::Step TlsEngine::shutdown()
{
    return perform([this] {
        int result = SSL_shutdown(ssl_);
        // 0: our close_notify is out; the second call waits for the peer's.
        if (result == 0) result = SSL_shutdown(ssl_);
        return result;
    });
}

bool TlsEngine::has_input() const noexcept
{
    return small_begin_ < small_end_ || in_begin_ < in_end_ || SSL_has_pending(ssl_) == 1;
}

net::mutable_buffer TlsEngine::input_space()
{
    small_begin_ = small_end_ = 0;
    in_begin_ = in_end_ = 0;
    if (wanted_ <= small_.size()) return net::buffer(small_.data(), small_.size());
    std::size_t const size = std::max(wanted_, kReadChunk);
    if (in_capacity_ < size) {
        release_input();  // before the new one: no two at once
        in_ = size == kReadChunk ? chunk_pool.take() : std::make_unique_for_overwrite<unsigned char[]>(size);
        in_capacity_ = size;
    }
    return net::buffer(in_.get(), in_capacity_);
}

void TlsEngine::commit_input(std::size_t n) noexcept
{
    if (wanted_ <= small_.size()) small_end_ = n;
    else in_end_ = n;
}

void TlsEngine::trim_input()
{
    std::size_t const left = in_end_ - in_begin_;
    if (left == 0) {
        release_input();
    } else if (left < in_capacity_) {
        auto kept = std::make_unique_for_overwrite<unsigned char[]>(left);
        std::memcpy(kept.get(), in_.get() + in_begin_, left);
        in_ = std::move(kept);
        in_capacity_ = in_end_ = left;
        in_begin_ = 0;
    }
}

void TlsEngine::release_output() noexcept
{
    std::vector<unsigned char>{}.swap(out_);
}

boost::system::error_code TlsEngine::map_eof(boost::system::error_code ec) const
{
    if (ec != net::error::eof) return ec;
    if ((SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN) == 0) return net::ssl::error::stream_truncated;
    return ec;
}

int TlsEngine::bio_read(char* out, int length) noexcept
{
    auto const want = static_cast<std::size_t>(std::max(length, 0));
    std::size_t n = std::min(want, small_end_ - small_begin_);
    std::memcpy(out, small_.data() + small_begin_, n);
    small_begin_ += n;
    std::size_t const more = std::min(want - n, in_end_ - in_begin_);
    if (more > 0) std::memcpy(out + n, in_.get() + in_begin_, more);
    in_begin_ += more;
    n += more;
    if (n > 0 || want == 0) return static_cast<int>(n);
    wanted_ = want;
    return -1;
}

int TlsEngine::bio_write(char const* in, int length)
{
    out_.insert(out_.end(), in, in + std::max(length, 0));
    return length;
}

}  // namespace exemptd::daemon
