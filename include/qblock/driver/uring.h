// The ring-level API of the EventLoop, for protocol drivers and servers (installed with the
// driver API): one io_uring operation described by value and queued when awaited, and jobs
// for worker threads where io_uring has no operation. The factories are inline: building an
// operation costs no call, and awaiting it queues one SQE without allocating.
#pragma once

#include <linux/time_types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <functional>
#include <utility>

#include "qblock/event_loop.h"

namespace qblock {

// One io_uring operation. co_await yields the CQE result (>= 0, or -errno). Build it with the
// uring:: factories below. Buffers, iovec arrays and descriptors it refers to must stay
// valid until the await finishes; the operation itself lives in the awaiting frame.
class [[nodiscard]] UringOp {
 public:
  enum class Kind : uint8_t {
    kNop,
    kReadv,
    kWritev,
    kFsync,
    kFdatasync,
    kFallocate,
    kTimeout,
    kAccept,
    kRecv,
    kSend,
    kSendmsg,
    kRead,
    kPoll
  };
  // The operands; which ones count depends on the kind (see the factories).
  struct Args {
    int fd = -1;
    const iovec* iov = nullptr;
    unsigned iovcnt = 0;
    void* buf = nullptr;
    uint64_t len = 0;
    uint64_t offset = 0;
    int mode = 0;  // fallocate mode, poll events
    __kernel_timespec timeout{};
  };
  UringOp(EventLoop& loop, Kind kind, Args args) : loop_(loop), kind_(kind), args_(args) {}

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    completion_.handle = h;
    loop_.queue(*this);
  }
  int32_t await_resume() const noexcept { return completion_.result; }

 private:
  friend class EventLoop;
  EventLoop& loop_;
  Kind kind_;
  Args args_;
  msghdr msg_{};  // kSendmsg: filled in when queued (the op then sits in its awaiter's frame)
  IoCompletion completion_;
};

// Runs a blocking function on a worker thread and resumes the awaiter on the loop with its
// int result. Only for operations io_uring does not offer (or aio=threads).
class [[nodiscard]] WorkerOp {
 public:
  WorkerOp(EventLoop& loop, std::function<int()> fn) : loop_(loop), fn_(std::move(fn)) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    completion_.handle = h;
    loop_.queue_worker(*this);
  }
  int await_resume() const noexcept { return completion_.result; }

 private:
  friend class EventLoop;
  EventLoop& loop_;
  std::function<int()> fn_;
  IoCompletion completion_;
};

// Operation factories. Each returns an operation of `loop` for the awaiting coroutine to
// co_await; the result is what the system call would return, as -errno on failure.
namespace uring {

inline UringOp readv(EventLoop& loop, int fd, const iovec* iov, unsigned iovcnt, uint64_t offset) {
  return UringOp(loop, UringOp::Kind::kReadv,
                 {.fd = fd, .iov = iov, .iovcnt = iovcnt, .offset = offset});
}
inline UringOp writev(EventLoop& loop, int fd, const iovec* iov, unsigned iovcnt, uint64_t offset) {
  return UringOp(loop, UringOp::Kind::kWritev,
                 {.fd = fd, .iov = iov, .iovcnt = iovcnt, .offset = offset});
}
inline UringOp read(EventLoop& loop, int fd, void* buf, uint32_t len, uint64_t offset) {
  return UringOp(loop, UringOp::Kind::kRead, {.fd = fd, .buf = buf, .len = len, .offset = offset});
}
inline UringOp fsync(EventLoop& loop, int fd) {
  return UringOp(loop, UringOp::Kind::kFsync, {.fd = fd});
}
inline UringOp fdatasync(EventLoop& loop, int fd) {
  return UringOp(loop, UringOp::Kind::kFdatasync, {.fd = fd});
}
inline UringOp fallocate(EventLoop& loop, int fd, int mode, uint64_t offset, uint64_t len) {
  return UringOp(loop, UringOp::Kind::kFallocate,
                 {.fd = fd, .len = len, .offset = offset, .mode = mode});
}
// Completes with -ETIME after `duration`.
inline UringOp sleep(EventLoop& loop, std::chrono::nanoseconds duration) {
  UringOp::Args args;
  args.timeout.tv_sec = duration.count() / 1000000000;
  args.timeout.tv_nsec = duration.count() % 1000000000;
  return UringOp(loop, UringOp::Kind::kTimeout, args);
}
// Accepts a connection (SOCK_CLOEXEC); the result is the new descriptor.
inline UringOp accept(EventLoop& loop, int fd) {
  return UringOp(loop, UringOp::Kind::kAccept, {.fd = fd});
}
inline UringOp recv(EventLoop& loop, int fd, void* buf, uint32_t len) {
  return UringOp(loop, UringOp::Kind::kRecv, {.fd = fd, .buf = buf, .len = len});
}
// Sends on a socket with MSG_NOSIGNAL.
inline UringOp send(EventLoop& loop, int fd, const void* buf, uint32_t len) {
  return UringOp(loop, UringOp::Kind::kSend, {.fd = fd, .buf = const_cast<void*>(buf), .len = len});
}
// Sends the gathered iovecs on a socket (MSG_NOSIGNAL); may send fewer bytes than asked.
inline UringOp sendmsg(EventLoop& loop, int fd, const iovec* iov, unsigned iovcnt) {
  return UringOp(loop, UringOp::Kind::kSendmsg, {.fd = fd, .iov = iov, .iovcnt = iovcnt});
}
// Waits for `events` (POLLIN, ...) on `fd`; the result is the events that fired.
inline UringOp poll(EventLoop& loop, int fd, int events) {
  return UringOp(loop, UringOp::Kind::kPoll, {.fd = fd, .mode = events});
}
inline UringOp nop(EventLoop& loop) { return UringOp(loop, UringOp::Kind::kNop, {}); }

// Runs `fn` on one of the loop's worker threads; the await yields its result.
inline WorkerOp run_in_worker(EventLoop& loop, std::function<int()> fn) {
  return WorkerOp(loop, std::move(fn));
}

}  // namespace uring

}  // namespace qblock
