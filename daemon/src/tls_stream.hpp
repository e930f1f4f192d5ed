#pragma once

#include "tls_engine.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/coroutine.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>

#include <algorithm>
#include <memory>
#include <utility>

namespace exemptd::daemon {

// A TLS stream over `NextLayer` (a DeadlineSocket: its deadline applies to every operation here,
// since all socket I/O goes through it, and an operation it ends fails with
// beast::error::timeout, as over a beast::tcp_stream) that keeps no buffer for a connection between
// operations: ciphertext is read into, and written from, buffers that live only while an
// operation needs them (see TlsEngine). It models AsyncReadStream and AsyncWriteStream for
// Beast's http::async_read/async_write, and beast::get_lowest_layer reaches `NextLayer` through
// next_layer(). Errors are those of Asio's ssl::stream (ssl category codes,
// ssl::error::stream_truncated, net::error::eof after close_notify). Not thread-safe, and unlike
// Asio's stream one operation at a time: no read while a write is pending.
template <class NextLayer>
class TlsStream {
public:
    using next_layer_type = NextLayer;
    using executor_type = typename NextLayer::executor_type;
    using DefaultToken = boost::asio::default_completion_token_t<executor_type>;

    // A connection over `next`, with the settings (certificates, verification, session cache)
    // of `ctx`, which must outlive the stream. Throws std::bad_alloc when OpenSSL cannot
    // allocate.
    TlsStream(NextLayer next, boost::asio::ssl::context& ctx) : next_(std::move(next)), engine_(ctx.native_handle()) {}
    TlsStream(TlsStream const&) = delete;
    TlsStream& operator=(TlsStream const&) = delete;

    // The transport's executor.
    executor_type get_executor() noexcept { return next_.get_executor(); }
    // The transport.
    NextLayer& next_layer() noexcept { return next_; }
    NextLayer const& next_layer() const noexcept { return next_; }
    // The OpenSSL connection (peer certificate, verify result, session).
    [[nodiscard]] SSL* native_handle() const noexcept { return engine_.native_handle(); }

    // Performs the handshake in role `type`; completes with void(error_code).
    template <class Token = DefaultToken>
    auto async_handshake(boost::asio::ssl::stream_base::handshake_type type, Token&& token = DefaultToken{})
    {
        engine_.start_handshake(type == boost::asio::ssl::stream_base::server);
        return start<false>([](TlsEngine& e) { return e.handshake(); }, std::forward<Token>(token));
    }

    // Sends close_notify and waits for the peer's; completes with void(error_code).
    template <class Token = DefaultToken>
    auto async_shutdown(Token&& token = DefaultToken{})
    {
        return start<false>([](TlsEngine& e) { return e.shutdown(); }, std::forward<Token>(token));
    }

    // Reads some plaintext into the first non-empty buffer of `buffers`; completes with
    // void(error_code, std::size_t).
    template <class MutableBuffers, class Token = DefaultToken>
    auto async_read_some(MutableBuffers const& buffers, Token&& token = DefaultToken{})
    {
        return start<true>(ReadCall<MutableBuffers>{buffers}, std::forward<Token>(token));
    }

    // Writes some of `buffers` (small pieces joined into one record); completes with
    // void(error_code, std::size_t).
    template <class ConstBuffers, class Token = DefaultToken>
    auto async_write_some(ConstBuffers const& buffers, Token&& token = DefaultToken{})
    {
        return start<true>(WriteCall<ConstBuffers>{buffers}, std::forward<Token>(token));
    }

    // Waits until the peer has sent something (the start of its next record), reading into the
    // engine's own array, so that a keep-alive connection waits for its next request without a
    // read buffer. Completes at once when input is already pending; with void(error_code).
    template <class Token = DefaultToken>
    auto async_wait_input(Token&& token = DefaultToken{})
    {
        return start<false>(
            [](TlsEngine& e) {
                if (e.has_input()) return TlsEngine::Step{};
                e.expect_record_header();
                return TlsEngine::Step{TlsEngine::Want::input, {}, 0};
            },
            std::forward<Token>(token));
    }

private:
    // Plaintext bytes per write call: bounds the ciphertext held while it is sent.
    static constexpr std::size_t kMaxWriteBytes = 64 * 1024;
    // Pieces smaller than this are joined into one record (Beast passes an HTTP message's header
    // and body separately).
    static constexpr std::size_t kCoalesceBytes = 16 * 1024;

    template <class Buffers>
    struct ReadCall {
        Buffers buffers;
        TlsEngine::Step operator()(TlsEngine& e) const
        {
            for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
                if (boost::asio::mutable_buffer b{*it}; b.size() > 0) return e.read(b);
            }
            return {};
        }
    };

    template <class Buffers>
    struct WriteCall {
        Buffers buffers;
        TlsEngine::Step operator()(TlsEngine& e) const
        {
            std::size_t const total = boost::asio::buffer_size(buffers);
            if (total == 0) return {};
            boost::asio::const_buffer first;
            for (auto it = boost::asio::buffer_sequence_begin(buffers); first.size() == 0; ++it) first = *it;
            if (first.size() >= std::min(total, kCoalesceBytes))
                return e.write(boost::asio::buffer(first.data(), std::min(first.size(), kMaxWriteBytes)));
            auto const size = std::min(total, kCoalesceBytes);
            auto joined = std::make_unique_for_overwrite<unsigned char[]>(size);
            boost::asio::buffer_copy(boost::asio::buffer(joined.get(), size), buffers);
            return e.write(boost::asio::buffer(joined.get(), size));
        }
    };

    // Runs `call` until it needs no more input, sending what it produced after each step, and
    // completes with its result. A result reached without any I/O is posted, never delivered
    // from inside the initiating call.
    template <class Call, bool kBytes>
    struct Op : boost::asio::coroutine {
        TlsStream& s;
        Call call;
        TlsEngine::Step step{};
        bool waited = false;

        Op(TlsStream& stream, Call c) : s(stream), call(std::move(c)) {}

        template <class Self>
        void operator()(Self& self, boost::system::error_code ec = {}, std::size_t n = 0)
        {
            BOOST_ASIO_CORO_REENTER(*this)
            {
                for (;;) {
                    step = call(s.engine_);
                    if (s.engine_.output().size() > 0) {
                        // Also after a failed handshake: the alert tells the peer why.
                        waited = true;
                        BOOST_ASIO_CORO_YIELD boost::asio::async_write(s.next_, s.engine_.output(), std::move(self));
                        s.engine_.release_output();
                        if (ec && !step.ec) step = {TlsEngine::Want::nothing, s.transport_error(ec), 0};
                    }
                    if (step.want != TlsEngine::Want::input) break;
                    waited = true;
                    BOOST_ASIO_CORO_YIELD s.next_.async_read_some(s.engine_.input_space(), std::move(self));
                    if (ec) {
                        step = {TlsEngine::Want::nothing, s.engine_.map_eof(s.transport_error(ec)), 0};
                        break;
                    }
                    s.engine_.commit_input(n);
                }
                if (!waited) {
                    BOOST_ASIO_CORO_YIELD boost::asio::post(s.next_.get_executor(), std::move(self));
                }
                s.engine_.trim_input();
                if constexpr (kBytes) self.complete(step.ec, step.bytes);
                else self.complete(step.ec);
            }
        }
    };

    // A transport failure as reported: beast::error::timeout when the next layer closed the
    // connection at its deadline.
    boost::system::error_code transport_error(boost::system::error_code ec) const
    {
        if constexpr (requires { next_.timed_out(); }) {
            if (next_.timed_out()) return boost::beast::error::timeout;
        }
        return ec;
    }

    template <bool kBytes, class Call, class Token>
    auto start(Call call, Token&& token)
    {
        using Signature = std::conditional_t<kBytes, void(boost::system::error_code, std::size_t), void(boost::system::error_code)>;
        return boost::asio::async_compose<Token, Signature>(Op<Call, kBytes>{*this, std::move(call)}, token, next_);
    }

    NextLayer next_;
    TlsEngine engine_;
};

}  // namespace exemptd::daemon
