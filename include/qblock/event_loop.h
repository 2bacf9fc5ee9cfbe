// EventLoop: one io_uring per thread. Coroutines queue SQEs whose user_data points at a
// completion record in the awaiting coroutine's frame; the loop submits all queued SQEs in one
// system call per iteration and resumes each coroutine from its completion. This header is the
// user's view (create, run, post, timers); the ring-level operations drivers issue are in
// qblock/driver/uring.h, so neither this header nor its users need liburing.
#pragma once

#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "qblock/error.h"
#include "qblock/task.h"

namespace qblock {

// The completion record of one io_uring operation; lives in the awaiting coroutine's frame
// (see qblock/driver/uring.h).
struct IoCompletion {
  std::coroutine_handle<> handle;
  int32_t result = 0;  // the CQE's res: >= 0 success, -errno failure
};

class EventLoop;
class UringOp;
class WorkerOp;

// Resumes the awaiting coroutine from the loop's ready queue (a yield point).
struct [[nodiscard]] PostAwaiter {
  EventLoop& loop;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h);
  void await_resume() const noexcept {}
};

class EventLoop {
 public:
  // Creates a loop with an io_uring of `entries` submission slots. The first loop created on
  // a thread becomes that thread's current() loop. Errors: the errno of io_uring setup
  // (ENOMEM, EPERM where io_uring is disabled) or of eventfd.
  [[nodiscard]] static Result<std::unique_ptr<EventLoop>> create(unsigned entries = 512);
  // REQUIRES: nothing in flight (in_flight() == 0) and no coroutine suspended on the loop.
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Suspends the awaiting coroutine and resumes it from the ready queue on the next iteration.
  PostAwaiter yield() { return PostAwaiter{*this}; }
  // Suspends the awaiting coroutine for `duration` (an io_uring timeout). A user-level timer:
  // one coroutine frame per call. Drivers use uring::sleep (qblock/driver/uring.h).
  [[nodiscard]] Task<void> sleep_for(std::chrono::nanoseconds duration);
  // Reads up to `len` bytes from `fd`, a descriptor without a file position (a signalfd, an
  // eventfd, a pipe, a socket), without blocking the thread. Returns the byte count (0 at end of
  // file). Errors: the read's errno. REQUIRES: `buf` stays valid until the task finishes.
  [[nodiscard]] Task<Result<std::size_t>> read_fd(int fd, void* buf, uint32_t len);

  // Queues `h` to be resumed by the loop (never inline), so wake-ups do not nest stacks.
  void post(std::coroutine_handle<> h) { ready_.push_back(h); }

  // Asks the loop to submit the SQEs the running coroutine queues before it suspends at once,
  // not held back for the batch: for an I/O that continues a chain its request has already
  // waited on (the merged write after a copy-on-write read), where holding it only adds to a
  // latency the request has paid once.
  void submit_promptly() { submit_promptly_ = true; }

  // One iteration: resume ready coroutines, submit queued SQEs, reap completions. Blocks for a
  // completion only when `block` is set and nothing is ready. Returns false when there was
  // nothing to do at all (no ready work, nothing in flight). SQEs are batched into one
  // submission per iteration, except that an SQE is submitted early once it has waited about
  // as long as a submission costs (measured, 1-50 microseconds) for the other coroutines
  // resumed in the same iteration, or at once after submit_promptly().
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
  // Access to the ring for event_loop.cc, which alone sees liburing's types.
  struct Ring;
  friend struct Ring;
  EventLoop();
  void queue(UringOp& op);
  void queue_worker(WorkerOp& op);
  void arm_worker_eventfd();
  void reap_worker_completions();
  // Spins up to the current poll window for a completion; true if one arrived.
  bool busy_poll_wait();
  void adapt_busy_poll(std::chrono::nanoseconds blocked);
  // Called after each coroutine the loop resumes: submits the queued SQEs once the oldest has
  // waited as long as a submission costs (submit_cost_). An iteration that resumes many coroutines
  // (a batch of completions, each doing a few microseconds of work such as a qcow2 allocation, and
  // queueing its next I/O) would otherwise hold the first SQE back until the last coroutine has
  // run; on I/O whose completions are expensive (writes into unwritten extents) that kept the
  // device under-fed. Short resumptions still share one io_uring_enter.
  void submit_if_stale();
  // Submits the queued SQEs without waiting (io_uring_submit's result) and folds the time
  // the kernel took into submit_cost_.
  int submit_now();
  void worker_main();

  // liburing's `struct io_uring`, stored in place rather than behind a pointer so that
  // queueing an SQE costs no extra load or allocation; event_loop.cc checks at compile time
  // that it fits (size and alignment) and is the only code that looks inside.
  static constexpr std::size_t kRingStorageBytes = 256;
  alignas(16) unsigned char ring_storage_[kRingStorageBytes];
  bool ring_ready_ = false;
  std::deque<std::coroutine_handle<>> ready_;
  std::size_t in_flight_ = 0;
  std::chrono::nanoseconds busy_poll_max_{0};
  std::chrono::nanoseconds busy_poll_{0};  // the current window
  // When submit_if_stale first saw SQEs waiting in the ring; zero after each submission.
  std::chrono::steady_clock::time_point sq_pending_since_{};
  bool submit_promptly_ = false;  // submit_promptly() was called since the last submission
  // A running average of what one non-waiting io_uring_enter costs on this machine (a few
  // microseconds on bare metal, tens in a VM where each submission notifies the device).
  std::chrono::nanoseconds submit_cost_{std::chrono::microseconds(2)};

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
