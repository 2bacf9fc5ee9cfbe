#include "nbd/stream.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "qblock/driver/uring.h"

namespace qblock::nbd {

SocketStream::~SocketStream() {
  if (fd_ >= 0) ::close(fd_);
}

Task<Result<std::size_t>> SocketStream::read_some(void* buf, std::size_t len) {
  const std::size_t chunk = std::min<std::size_t>(len, 1u << 30);
  // Data that is already there is taken at once, as a plain non-blocking recv: no trip
  // through the ring and the next loop iteration. Only an empty socket is waited for with
  // an io_uring recv (armed on the socket's poll).
  const ssize_t now = ::recv(fd_, buf, chunk, MSG_DONTWAIT);
  if (now >= 0) co_return static_cast<std::size_t>(now);
  if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    co_return tl::unexpected(Error::from_errno(errno, "recv"));
  }
  for (;;) {
    const int32_t got = co_await uring::recv(loop_, fd_, buf, static_cast<uint32_t>(chunk));
    if (got >= 0) co_return static_cast<std::size_t>(got);
    // A signal or a spurious wake-up is not the peer's doing: try again.
    if (got == -EINTR || got == -EAGAIN) continue;
    co_return tl::unexpected(Error::from_errno(-got, "recv"));
  }
}

Task<Status> SocketStream::write_all(std::span<const iovec> iov) {
  // A reply goes out at once with a non-blocking sendmsg, as soon as it is ready: waiting for
  // the next submission would hold every reply back by a loop iteration (and bunch them up,
  // which makes a client's queue run in convoys). Only what the socket buffer cannot take
  // now is sent through the ring.
  std::size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov.data());
  msg.msg_iovlen = std::min<std::size_t>(iov.size(), 1024);
  ssize_t sent = ::sendmsg(fd_, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (sent < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      co_return tl::unexpected(Error::from_errno(errno, "send"));
    }
    sent = 0;
  }
  if (static_cast<std::size_t>(sent) == total) co_return Status{};
  // Drop what went out and send the rest through the ring.
  std::size_t left = static_cast<std::size_t>(sent);
  std::size_t first = 0;
  while (left >= iov[first].iov_len) left -= iov[first++].iov_len;
  std::vector<iovec> rest(iov.begin() + static_cast<std::ptrdiff_t>(first), iov.end());
  rest[0].iov_base = static_cast<uint8_t*>(rest[0].iov_base) + left;
  rest[0].iov_len -= left;
  co_return co_await write_rest(std::move(rest));
}

Task<Status> SocketStream::write_rest(std::vector<iovec> rest) {
  // Short sends are normal on a socket with a full send buffer: advance and resend the rest.
  std::size_t first = 0;
  while (first < rest.size()) {
    const unsigned count = static_cast<unsigned>(std::min<std::size_t>(rest.size() - first, 1024));
    const int32_t sent = co_await uring::sendmsg(loop_, fd_, rest.data() + first, count);
    if (sent == -EINTR || sent == -EAGAIN) continue;
    if (sent < 0) co_return tl::unexpected(Error::from_errno(-sent, "send"));
    if (sent == 0) co_return tl::unexpected(Error::from_errno(EPIPE, "send"));
    std::size_t left = static_cast<std::size_t>(sent);
    while (first < rest.size() && left >= rest[first].iov_len) left -= rest[first++].iov_len;
    if (left > 0) {
      rest[first].iov_base = static_cast<uint8_t*>(rest[first].iov_base) + left;
      rest[first].iov_len -= left;
    }
  }
  co_return Status{};
}

void SocketStream::shutdown() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

int SocketStream::release() { return std::exchange(fd_, -1); }

}  // namespace qblock::nbd
