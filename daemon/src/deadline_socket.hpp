#pragma once

#include <boost/system/error_code.hpp>

#include <chrono>
#include <utility>

namespace exemptd::daemon {

// A TCP socket with a deadline that the owner moves (expires_after, expires_at) and that a
// periodic sweep enforces (close_if_expired), instead of a timer armed and cancelled around every
// read and write as beast::tcp_stream does: at tens of thousands of requests a second those
// timers cost an I/O thread several percent. A socket past its deadline is closed, so the
// operation in progress fails at once and every later one fails too; timed_out() tells that the
// deadline is why. Enforcement is as late as the sweep's period. Unlike beast::tcp_stream's, the
// deadline runs between operations too: clear it (expires_never) while the connection waits for
// something other than the peer. Reads and writes go straight to `Socket` (an Asio stream
// socket, with its default completion token).
template <class Socket>
class DeadlineSocket {
public:
    using executor_type = typename Socket::executor_type;
    using Clock = std::chrono::steady_clock;

    explicit DeadlineSocket(Socket socket) : socket_(std::move(socket)) {}
    DeadlineSocket(DeadlineSocket&&) noexcept = default;
    DeadlineSocket& operator=(DeadlineSocket&&) noexcept = default;

    executor_type get_executor() noexcept { return socket_.get_executor(); }
    Socket& socket() noexcept { return socket_; }

    void expires_at(Clock::time_point deadline) noexcept { deadline_ = deadline; }
    void expires_after(Clock::duration timeout) noexcept { deadline_ = Clock::now() + timeout; }
    void expires_never() noexcept { deadline_ = Clock::time_point::max(); }

    // Closes the socket if its deadline is before `now`.
    void close_if_expired(Clock::time_point now) noexcept
    {
        if (timed_out_ || now < deadline_) return;
        timed_out_ = true;
        close();
    }
    [[nodiscard]] bool timed_out() const noexcept { return timed_out_; }

    // Ends the operations in progress (operation_aborted) and leaves the socket open.
    void cancel() noexcept
    {
        boost::system::error_code ignored;
        socket_.cancel(ignored);
    }
    void close() noexcept
    {
        boost::system::error_code ignored;
        socket_.close(ignored);
    }

    template <class MutableBuffers, class... Token>
    auto async_read_some(MutableBuffers const& buffers, Token&&... token)
    {
        return socket_.async_read_some(buffers, std::forward<Token>(token)...);
    }
    template <class ConstBuffers, class... Token>
    auto async_write_some(ConstBuffers const& buffers, Token&&... token)
    {
        return socket_.async_write_some(buffers, std::forward<Token>(token)...);
    }

private:
    Socket socket_;
    Clock::time_point deadline_ = Clock::time_point::max();
    bool timed_out_ = false;
};

}  // namespace exemptd::daemon
