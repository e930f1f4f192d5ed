#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>
#include <openssl/ssl.h>

#include <array>
#include <cstddef>
#include <memory>
#include <vector>

namespace exemptd::daemon {

// OpenSSL's side of one TLS connection, without the transport: each step runs one OpenSSL call
// and says whether it needs more ciphertext from the peer; the ciphertext it produced waits in
// output() for the caller to send. OpenSSL talks to the engine through a BIO of our own, so the
// engine holds ciphertext only while an operation needs it: nothing is allocated for a connection
// that waits for its next request (issue 7), unlike Asio's ssl::stream, which keeps 70 KB of
// buffers per connection for its whole life. Socket reads are only needed when no input is
// pending (has_input() false), so bytes are always handed to OpenSSL in order.
// Not thread-safe: one operation at a time.
class TlsEngine {
public:
    enum class Want { nothing, input };

    // What one step did: whether it needs input before it is retried, its error (an OpenSSL error
    // in Asio's ssl category, net::error::eof for the peer's close_notify), and the plaintext
    // bytes read or written.
    struct Step {
        Want want = Want::nothing;
        boost::system::error_code ec;
        std::size_t bytes = 0;
    };

    // A connection using `ctx` (which must outlive the engine). Throws std::bad_alloc when
    // OpenSSL cannot allocate the SSL object or its BIO.
    explicit TlsEngine(SSL_CTX* ctx);
    ~TlsEngine();
    TlsEngine(TlsEngine const&) = delete;
    TlsEngine& operator=(TlsEngine const&) = delete;

    // The OpenSSL connection, for the peer certificate, verify result and the like.
    [[nodiscard]] SSL* native_handle() const noexcept { return ssl_; }

    // Sets the role before the first handshake step; call once.
    void start_handshake(bool server) noexcept;
    // One handshake step (SSL_do_handshake).
    [[nodiscard]] Step handshake();
    // Decrypts into `buffer`; bytes is how many.
    [[nodiscard]] Step read(boost::asio::mutable_buffer buffer);
    // Encrypts `buffer` into output(); bytes is how many plaintext bytes it took (all of them).
    [[nodiscard]] Step write(boost::asio::const_buffer buffer);
    // Sends close_notify and, as Asio's stream does, waits for the peer's.
    [[nodiscard]] Step shutdown();

    // True when ciphertext received from the peer, or plaintext decrypted from it, waits to be
    // read: a socket read must then not be started.
    [[nodiscard]] bool has_input() const noexcept;
    // Where the next socket read goes, sized for what OpenSSL asked for last. Up to
    // kInlineInput bytes land in an array of the engine's own: a connection waiting for its next
    // record allocates nothing, and one read takes a small record (a check-in request) whole,
    // header and all. Only valid when has_input() is false.
    [[nodiscard]] boost::asio::mutable_buffer input_space();
    // Makes the next input_space() the engine's own array, for a wait for the peer's next record.
    void expect_record_header() noexcept { wanted_ = small_.size(); }
    // The first `n` bytes of input_space() were received.
    void commit_input(std::size_t n) noexcept;
    // Frees what the last operation left over: its ciphertext input buffer, or shrinks it to the
    // bytes still unread (the start of a next record the peer already sent).
    void trim_input();

    // Ciphertext to send; empty when there is none.
    [[nodiscard]] boost::asio::const_buffer output() const noexcept { return boost::asio::buffer(out_); }
    // The output was sent (or given up): frees it.
    void release_output() noexcept;

    // An end of stream from the transport becomes ssl::error::stream_truncated unless the peer
    // sent close_notify first, as in Asio's stream; other errors pass through.
    [[nodiscard]] boost::system::error_code map_eof(boost::system::error_code ec) const;

    // The BIO's callbacks.
    int bio_read(char* out, int length) noexcept;
    int bio_write(char const* in, int length);

private:
    template <class Call>
    Step perform(Call call);
    // Frees the input buffer (a standard-size one goes back to the thread's pool).
    void release_input() noexcept;

    SSL* ssl_ = nullptr;
    // A check-in request (about 480 bytes of ciphertext) fits with room to spare; a larger record
    // takes a second read into a buffer of its size.
    static constexpr std::size_t kInlineInput = 1024;
    std::array<unsigned char, kInlineInput> small_{};
    std::size_t small_begin_ = 0;
    std::size_t small_end_ = 0;
    std::unique_ptr<unsigned char[]> in_;
    std::size_t in_capacity_ = 0;
    std::size_t in_begin_ = 0;
    std::size_t in_end_ = 0;
    std::size_t wanted_ = 5;  // how many bytes OpenSSL asked for when the input ran out
    std::vector<unsigned char> out_;
};

}  // namespace exemptd::daemon
