// Stream: the byte pipe an NBD connection talks over. A plain socket (SocketStream, io_uring
// recv/sendmsg) or a TLS session on top of one (see tls.h); the server only sees this
// interface, and the fuzz target feeds it from memory.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <vector>

#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/task.h"

namespace qblock::nbd {

class Stream {
 public:
  virtual ~Stream() = default;

  // Receives at most `len` bytes into `buf`. Returns the number received; 0 means the peer
  // closed the connection. Errors: the socket's errno (ECONNRESET, ...), EIO for a TLS
  // failure. REQUIRES: len > 0; at most one receive in flight at a time.
  virtual Task<Result<std::size_t>> read_some(void* buf, std::size_t len) = 0;
  // Sends every byte of `iov` (retrying short sends). The span and the memory it points to
  // must stay valid until the await finishes. REQUIRES: at most one send in flight at a
  // time (the connection serialises its replies).
  virtual Task<Status> write_all(std::span<const iovec> iov) = 0;
  // Stops both directions so that a pending read_some returns 0 or an error soon
  // (shutdown(2) on the socket). Does not close the descriptor. Idempotent.
  virtual void shutdown() = 0;
  // The descriptor underneath, or -1 for streams without one.
  virtual int fd() const = 0;
};

// A connected socket served through the event loop's io_uring. Owns and closes `fd`.
class SocketStream final : public Stream {
 public:
  SocketStream(EventLoop& loop, int fd) : loop_(loop), fd_(fd) {}
  ~SocketStream() override;
  SocketStream(const SocketStream&) = delete;
  SocketStream& operator=(const SocketStream&) = delete;

  Task<Result<std::size_t>> read_some(void* buf, std::size_t len) override;
  Task<Status> write_all(std::span<const iovec> iov) override;
  void shutdown() override;
  int fd() const override { return fd_; }
  // Gives up ownership of the descriptor (STARTTLS hands it to a TLS stream).
  int release();

 private:
  // Sends `rest` completely, one sendmsg after another.
  Task<Status> write_rest(std::vector<iovec> rest);

  EventLoop& loop_;
  int fd_;
};

}  // namespace qblock::nbd
