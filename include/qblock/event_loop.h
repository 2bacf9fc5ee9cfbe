// EventLoop: one io_uring per thread. Coroutines queue SQEs whose user_data points at a
// completion record in the awaiting coroutine's frame; the loop submits all queued SQEs in one
// system call per iteration and resumes each coroutine from its completion.
#pragma once

#include <liburing.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "qblock/error.h"
#include "qblock/task.h"

namespace qblock {

// The completion record of one io_uring operation; lives in the awaiting coroutine's frame.
struct IoCompletion {
  std::coroutine_handle<> handle;
  int32_t result = 0;  // the CQE's res: >= 0 success, -errno failure
};

class EventLoop;

// One io_uring operation, described by value and queued when awaited. co_await yields the
// CQE result (>= 0 or -errno). Build it with the EventLoop factory methods.
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
  UringOp(EventLoop& loop, Kind kind) : loop_(loop), kind_(kind) {}

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h);
  int32_t await_resume() const noexcept { return completion_.result; }

 private:
  friend class EventLoop;
  EventLoop& loop_;
  Kind kind_;
  int fd_ = -1;
  const iovec* iov_ = nullptr;
  unsigned iovcnt_ = 0;
  void* buf_ = nullptr;
  uint64_t len_ = 0;
  uint64_t offset_ = 0;
  int mode_ = 0;
  __kernel_timespec timeout_{};
  msghdr msg_{};  // kSendmsg: filled in when queued (the op then sits in its awaiter's frame)
  IoCompletion completion_;
};

// Resumes the awaiting coroutine from the loop's ready queue (a yield point).
struct [[nodiscard]] PostAwaiter {
  EventLoop& loop;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h);
  void await_resume() const noexcept {}
};

// Runs a blocking function on a worker thread and resumes the awaiter on the loop with its
// int result. Only for operations io_uring does not offer (or aio=threads).
class [[nodiscard]] WorkerOp {
 public:
  WorkerOp(EventLoop& loop, std::function<int()> fn) : loop_(loop), fn_(std::move(fn)) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h);
  int await_resume() const noexcept { return completion_.result; }

 private:
  friend class EventLoop;
  EventLoop& loop_;
  std::function<int()> fn_;
  IoCompletion completion_;
};

class EventLoop {
 public:
  // Creates a loop with an io_uring of `entries` submission slots.
  static Result<std::unique_ptr<EventLoop>> create(unsigned entries = 512);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Operation factories. Buffers and iovec arrays must stay valid until the await finishes.
  UringOp readv(int fd, const iovec* iov, unsigned iovcnt, uint64_t offset);
  UringOp writev(int fd, const iovec* iov, unsigned iovcnt, uint64_t offset);
  UringOp read(int fd, void* buf, uint32_t len, uint64_t offset);
  UringOp fsync(int fd);
  UringOp fdatasync(int fd);
  UringOp fallocate(int fd, int mode, uint64_t offset, uint64_t len);
  UringOp sleep(std::chrono::nanoseconds duration);
  UringOp accept(int fd);
  UringOp recv(int fd, void* buf, uint32_t len);
  UringOp send(int fd, const void* buf, uint32_t len);
  // Sends the gathered iovecs on a socket (MSG_NOSIGNAL); may send fewer bytes than asked.
  UringOp sendmsg(int fd, const iovec* iov, unsigned iovcnt);
  UringOp poll(int fd, int events);
  UringOp nop();
  // Suspends and resumes from the ready queue on the next iteration.
  PostAwaiter yield() { return PostAwaiter{*this}; }
  // Runs `fn` on a worker thread; the await yields its result.
  WorkerOp run_in_worker(std::function<int()> fn) { return WorkerOp(*this, std::move(fn)); }

  // Queues `h` to be resumed by the loop (never inline), so wake-ups do not nest stacks.
  void post(std::coroutine_handle<> h) { ready_.push_back(h); }

  // One iteration: resume ready coroutines, submit queued SQEs, reap completions. Blocks for a
  // completion only when `block` is set and nothing is ready. Returns false when there was
  // nothing to do at all (no ready work, nothing in flight). SQEs are batched into one
  // submission per iteration, except that an SQE is submitted early once it has waited
  // about 2 microseconds for the other coroutines resumed in the same iteration.
  bool run_once(bool block = true);

  // Adaptive busy polling: before sleeping for a completion the loop spins on the completion
  // ring for a window that grows (up to `max`) while completions keep arriving soon after it
  // gives up, and shrinks when the loop sleeps longer than `max`. On virtual machines a
  // sleeping vCPU takes tens of microseconds to wake, which a server at moderate queue depths
  // pays on every request. Default 0: never spin.
  void set_busy_poll(std::chrono::nanoseconds max) { busy_poll_max_ = max; }

  // Number of io_uring operations and worker jobs in flight.
  std::size_t in_flight() const { return in_flight_ + worker_jobs_; }

  // The loop running on this thread, or nullptr.
  static EventLoop* current();

 private:
  friend class UringOp;
  friend class WorkerOp;
  EventLoop() = default;
  io_uring_sqe* get_sqe();
  void queue(UringOp& op);
  void queue_worker(WorkerOp& op);
  void arm_worker_eventfd();
  void reap_worker_completions();
  // Spins up to the current poll window for a completion; true if one arrived.
  bool busy_poll_wait();
  void adapt_busy_poll(std::chrono::nanoseconds blocked);
  // Called after each coroutine the loop resumes: submits the queued SQEs once the oldest has
  // waited kSubmitDelay. An iteration that resumes many coroutines (a batch of completions,
  // each doing a few microseconds of work such as a qcow2 allocation, and queueing its next
  // I/O) would otherwise hold the first SQE back until the last coroutine has run; on I/O
  // whose completions are expensive (writes into unwritten extents) that kept the device
  // under-fed. Short resumptions still share one io_uring_enter.
  void submit_if_stale();
  void worker_main();

  io_uring ring_{};
  bool ring_ready_ = false;
  std::deque<std::coroutine_handle<>> ready_;
  std::size_t in_flight_ = 0;
  std::chrono::nanoseconds busy_poll_max_{0};
  std::chrono::nanoseconds busy_poll_{0};  // the current window
  // When submit_if_stale first saw SQEs waiting in the ring; zero after each submission.
  std::chrono::steady_clock::time_point sq_pending_since_{};

  // Worker threads (aio=threads and operations io_uring lacks).
  int worker_eventfd_ = -1;
  bool eventfd_armed_ = false;
  uint64_t eventfd_value_ = 0;
  IoCompletion eventfd_completion_;
  std::size_t worker_jobs_ = 0;
  std::mutex worker_mu_;
  std::vector<WorkerOp*> worker_queue_;  // guarded by worker_mu_
  std::vector<WorkerOp*> worker_done_;   // guarded by worker_mu_
  std::condition_variable worker_cv_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;  // guarded by worker_mu_
};

// Drives `loop` until `task` finishes and returns its result. For synchronous callers (CLI,
// simple tests). REQUIRES: task not started; no other run_sync active on this loop.
template <typename T>
T run_sync(EventLoop& loop, Task<T> task) {
  task.start();
  while (!task.done()) loop.run_once(true);
  return task.take_result();
}

}  // namespace qblock
