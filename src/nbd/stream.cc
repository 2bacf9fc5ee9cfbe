#include "nbd/stream.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace qblock::nbd {

SocketStream::~SocketStream() {
  if (fd_ >= 0) ::close(fd_);
}

Task<Result<std::size_t>> SocketStream::read_some(void* buf, std::size_t len) {
  const uint32_t chunk = static_cast<uint32_t>(std::min<std::size_t>(len, 1u << 30));
  for (;;) {
    const int32_t got = co_await loop_.recv(fd_, buf, chunk);
    if (got >= 0) co_return static_cast<std::size_t>(got);
    // A signal or a spurious wake-up is not the peer's doing: try again.
    if (got == -EINTR || got == -EAGAIN) continue;
    co_return tl::unexpected(Error::from_errno(-got, "recv"));
  }
}

Task<Status> SocketStream::write_all(std::span<const iovec> iov) {
  std::size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  if (iov.size() <= 1024) {
    const int32_t sent = co_await loop_.sendmsg(fd_, iov.data(), static_cast<unsigned>(iov.size()));
    if (sent >= 0 && static_cast<std::size_t>(sent) == total) co_return Status{};
    if (sent < 0 && sent != -EINTR && sent != -EAGAIN) {
      co_return tl::unexpected(Error::from_errno(-sent, "send"));
    }
    if (sent > 0) {
      // Drop what went out and fall through to the general path for the rest.
      std::size_t left = static_cast<std::size_t>(sent);
      std::size_t first = 0;
      while (left >= iov[first].iov_len) left -= iov[first++].iov_len;
      std::vector<iovec> rest(iov.begin() + first, iov.end());
      rest[0].iov_base = static_cast<uint8_t*>(rest[0].iov_base) + left;
      rest[0].iov_len -= left;
      co_return co_await write_rest(std::move(rest));
    }
  }
  co_return co_await write_rest(std::vector<iovec>(iov.begin(), iov.end()));
}

Task<Status> SocketStream::write_rest(std::vector<iovec> rest) {
  // Short sends are normal on a socket with a full send buffer: advance and resend the rest.
  std::size_t first = 0;
  while (first < rest.size()) {
    const unsigned count = static_cast<unsigned>(std::min<std::size_t>(rest.size() - first, 1024));
    const int32_t sent = co_await loop_.sendmsg(fd_, rest.data() + first, count);
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
