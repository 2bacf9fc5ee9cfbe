// EventLoop implementation: io_uring submission batching, completion dispatch, the ready
// queue and the worker threads used where io_uring has no operation.
#include "qblock/event_loop.h"

#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "base/check.h"
#include "qblock/driver/uring.h"
#include "qblock/messages.h"

namespace qblock {

namespace {
thread_local EventLoop* tls_current_loop = nullptr;
// An SQE may wait in the ring while the loop resumes other coroutines for about the cost of
// one io_uring_enter (submit_if_stale), so an early submission never costs more than the delay
// it saves. The cost is measured; these bound the measurement.
constexpr std::chrono::nanoseconds kMinSubmitDelay = std::chrono::microseconds(1);
constexpr std::chrono::nanoseconds kMaxSubmitDelay = std::chrono::microseconds(50);
constexpr unsigned kWorkerThreads = 4;
}  // namespace

// The one place that sees the ring's real type.
struct EventLoop::Ring {
  static_assert(sizeof(io_uring) <= kRingStorageBytes, "grow EventLoop::kRingStorageBytes");
  static_assert(alignof(io_uring) <= 16, "align EventLoop::ring_storage_ more");
  static io_uring& of(EventLoop& loop) {
    return *std::launder(reinterpret_cast<io_uring*>(loop.ring_storage_));
  }
  static io_uring_sqe* get_sqe(EventLoop& loop) {
    io_uring_sqe* sqe = io_uring_get_sqe(&of(loop));
    if (!sqe) {
      // The submission ring is full: hand the batch to the kernel and take a fresh slot.
      io_uring_submit(&of(loop));
      sqe = io_uring_get_sqe(&of(loop));
    }
    CHECK(sqe != nullptr);
    return sqe;
  }
};

EventLoop::EventLoop() { new (ring_storage_) io_uring{}; }

EventLoop* EventLoop::current() { return tls_current_loop; }

Result<std::unique_ptr<EventLoop>> EventLoop::create(unsigned entries) {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  io_uring_params params{};
  // Completions are not pushed into a running loop with an interrupt: the loop runs pending
  // task work when it enters the kernel, and its busy poll watches the TASKRUN flag. Kernels
  // before 5.19 refuse the flags; they get a plain ring.
  params.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
  int r = io_uring_queue_init_params(entries, &Ring::of(*loop), &params);
  if (r == -EINVAL) {
    params = io_uring_params{};
    r = io_uring_queue_init_params(entries, &Ring::of(*loop), &params);
  }
  if (r < 0) return fail(Error::from_errno(r, "io_uring_queue_init"));
  loop->ring_ready_ = true;
  loop->worker_eventfd_ = eventfd(0, EFD_CLOEXEC);
  if (loop->worker_eventfd_ < 0) return fail(Error::from_errno(errno, "eventfd"));
  if (!tls_current_loop) tls_current_loop = loop.get();
  return loop;
}

EventLoop::~EventLoop() {
  {
    std::lock_guard<std::mutex> lock(worker_mu_);
    stopping_ = true;
  }
  worker_cv_.notify_all();
  for (auto& t : workers_) t.join();
  if (ring_ready_) io_uring_queue_exit(&Ring::of(*this));
  if (worker_eventfd_ >= 0) close(worker_eventfd_);
  if (tls_current_loop == this) tls_current_loop = nullptr;
}

void EventLoop::queue(UringOp& op) {
  io_uring_sqe* sqe = Ring::get_sqe(*this);
  using K = UringOp::Kind;
  switch (op.kind_) {
    case K::kNop: io_uring_prep_nop(sqe); break;
    case K::kReadv:
      io_uring_prep_readv(sqe, op.args_.fd, op.args_.iov, op.args_.iovcnt, op.args_.offset);
      break;
    case K::kWritev:
      io_uring_prep_writev(sqe, op.args_.fd, op.args_.iov, op.args_.iovcnt, op.args_.offset);
      break;
    case K::kRead:
      io_uring_prep_read(sqe, op.args_.fd, op.args_.buf, static_cast<unsigned>(op.args_.len),
                         op.args_.offset);
      break;
    case K::kFsync: io_uring_prep_fsync(sqe, op.args_.fd, 0); break;
    case K::kFdatasync: io_uring_prep_fsync(sqe, op.args_.fd, IORING_FSYNC_DATASYNC); break;
    case K::kFallocate:
      io_uring_prep_fallocate(sqe, op.args_.fd, op.args_.mode, op.args_.offset, op.args_.len);
      break;
    case K::kTimeout: io_uring_prep_timeout(sqe, &op.args_.timeout, 0, 0); break;
    case K::kAccept: io_uring_prep_accept(sqe, op.args_.fd, nullptr, nullptr, SOCK_CLOEXEC); break;
    case K::kRecv: io_uring_prep_recv(sqe, op.args_.fd, op.args_.buf, op.args_.len, 0); break;
    case K::kSend:
      io_uring_prep_send(sqe, op.args_.fd, op.args_.buf, op.args_.len, MSG_NOSIGNAL);
      break;
    case K::kSendmsg:
      op.msg_ = msghdr{};
      op.msg_.msg_iov = const_cast<iovec*>(op.args_.iov);
      op.msg_.msg_iovlen = op.args_.iovcnt;
      io_uring_prep_sendmsg(sqe, op.args_.fd, &op.msg_, MSG_NOSIGNAL);
      break;
    case K::kPoll:
      io_uring_prep_poll_add(sqe, op.args_.fd, static_cast<unsigned>(op.args_.mode));
      break;
  }
  io_uring_sqe_set_data(sqe, &op.completion_);
  ++in_flight_;
}

Task<void> EventLoop::sleep_for(std::chrono::nanoseconds duration) {
  UringOp op = uring::sleep(*this, duration);
  co_await op;
}

Task<Result<std::size_t>> EventLoop::read_fd(int fd, void* buf, uint32_t len) {
  // Offset 0: the descriptors this is for have no file position, which makes it irrelevant.
  UringOp op = uring::read(*this, fd, buf, len, 0);
  const int32_t r = co_await op;
  if (r < 0) co_return fail(Error::from_errno(r, "read"));
  co_return static_cast<std::size_t>(r);
}

void PostAwaiter::await_suspend(std::coroutine_handle<> h) { loop.post(h); }

void EventLoop::queue_worker(WorkerOp& op) {
  {
    std::lock_guard<std::mutex> lock(worker_mu_);
    if (workers_.empty()) {
      for (unsigned i = 0; i < kWorkerThreads; ++i)
        workers_.emplace_back([this] { worker_main(); });
    }
    worker_queue_.push_back(&op);
  }
  ++worker_jobs_;
  worker_cv_.notify_one();
  arm_worker_eventfd();
}

void EventLoop::worker_main() {
  std::unique_lock<std::mutex> lock(worker_mu_);
  for (;;) {
    worker_cv_.wait(lock, [this] { return stopping_ || !worker_queue_.empty(); });
    if (stopping_) return;
    WorkerOp* op = worker_queue_.back();
    worker_queue_.pop_back();
    lock.unlock();
    int r = op->fn_();
    lock.lock();
    op->completion_.result = r;
    worker_done_.push_back(op);
    uint64_t one = 1;
    // The eventfd wakes the loop; its read completes through io_uring.
    [[maybe_unused]] ssize_t n = ::write(worker_eventfd_, &one, sizeof(one));
  }
}

void EventLoop::arm_worker_eventfd() {
  if (eventfd_armed_) return;
  io_uring_sqe* sqe = Ring::get_sqe(*this);
  io_uring_prep_read(sqe, worker_eventfd_, &eventfd_value_, sizeof(eventfd_value_), 0);
  eventfd_completion_.handle = {};
  io_uring_sqe_set_data(sqe, &eventfd_completion_);
  eventfd_armed_ = true;
  ++in_flight_;
}

void EventLoop::reap_worker_completions() {
  std::vector<WorkerOp*> done;
  {
    std::lock_guard<std::mutex> lock(worker_mu_);
    done.swap(worker_done_);
  }
  for (WorkerOp* op : done) {
    --worker_jobs_;
    ready_.push_back(op->completion_.handle);
  }
  if (worker_jobs_ > 0) arm_worker_eventfd();
}

bool EventLoop::busy_poll_wait() {
  if (busy_poll_.count() == 0) return false;
  io_uring_submit(&Ring::of(*this));
  const auto deadline = std::chrono::steady_clock::now() + busy_poll_;
  while (io_uring_cq_ready(&Ring::of(*this)) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    // With COOP_TASKRUN the kernel does not interrupt the spin to post completions; it flags
    // pending task work, which a non-waiting enter runs.
    if (IO_URING_READ_ONCE(*Ring::of(*this).sq.kflags) & IORING_SQ_TASKRUN)
      io_uring_get_events(&Ring::of(*this));
  }
  return true;
}

void EventLoop::adapt_busy_poll(std::chrono::nanoseconds blocked) {
  // The completion came after the poll window: had the window been long enough, it would have
  // been caught without sleeping, so widen it; after a long sleep, narrow it again (an idle
  // loop soon stops polling).
  if (blocked <= busy_poll_max_) {
    busy_poll_ = std::min(busy_poll_max_, std::max(std::chrono::nanoseconds(4000), busy_poll_ * 2));
  } else {
    busy_poll_ /= 2;
    if (busy_poll_ < std::chrono::nanoseconds(4000)) busy_poll_ = std::chrono::nanoseconds(0);
  }
}

void EventLoop::submit_if_stale() {
  if (io_uring_sq_ready(&Ring::of(*this)) == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (submit_promptly_) {
    submit_promptly_ = false;
    (void)submit_now();
    sq_pending_since_ = {};
    return;
  }
  if (sq_pending_since_ == std::chrono::steady_clock::time_point{}) {
    sq_pending_since_ = now;
    return;
  }
  if (now - sq_pending_since_ < submit_cost_) return;
  // Errors (EAGAIN, EBUSY: the kernel is short of resources) leave the SQEs queued; the
  // submission at the end of the iteration retries them and handles fatal errors.
  (void)submit_now();
  sq_pending_since_ = {};
}

int EventLoop::submit_now() {
  const auto start = std::chrono::steady_clock::now();
  const int r = io_uring_submit(&Ring::of(*this));
  if (r > 0) {
    const std::chrono::nanoseconds took = std::clamp<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now() - start, kMinSubmitDelay, kMaxSubmitDelay);
    submit_cost_ += (took - submit_cost_) / 8;
  }
  return r;
}

bool EventLoop::run_once(bool block) {
  tls_current_loop = this;
  bool did_work = false;
  // Resume only what is ready now; coroutines posted meanwhile wait for the next iteration so
  // that SQEs they queue are batched with the others.
  std::size_t n = ready_.size();
  for (std::size_t i = 0; i < n; ++i) {
    std::coroutine_handle<> h = ready_.front();
    ready_.pop_front();
    h.resume();
    did_work = true;
    submit_if_stale();
  }
  if (in_flight_ == 0 && io_uring_sq_ready(&Ring::of(*this)) == 0)
    return did_work || !ready_.empty();
  bool wait = block && ready_.empty() && !did_work;
  if (wait && busy_poll_max_.count() > 0 && busy_poll_wait()) wait = false;
  const auto wait_start = std::chrono::steady_clock::now();
  sq_pending_since_ = {};
  submit_promptly_ = false;
  int r = wait ? io_uring_submit_and_wait(&Ring::of(*this), 1) : submit_now();
  if (wait && busy_poll_max_.count() > 0) {
    adapt_busy_poll(std::chrono::steady_clock::now() - wait_start);
  }
  if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
    emit_message(MessageLevel::kError, std::string("io_uring_submit: ") + std::strerror(-r));
    std::abort();
  }
  io_uring_cqe* cqe;
  unsigned head;
  unsigned count = 0;
  // Collect first, resume after: a resumed coroutine may queue SQEs and must not see a CQ
  // ring whose head we have not yet advanced.
  IoCompletion* batch[256];
  unsigned batch_n = 0;
  for (;;) {
    batch_n = 0;
    count = 0;
    io_uring_for_each_cqe(&Ring::of(*this), head, cqe) {
      auto* c = static_cast<IoCompletion*>(io_uring_cqe_get_data(cqe));
      c->result = cqe->res;
      batch[batch_n++] = c;
      ++count;
      if (batch_n == 256) break;
    }
    io_uring_cq_advance(&Ring::of(*this), count);
    if (batch_n == 0) break;
    in_flight_ -= batch_n;
    for (unsigned i = 0; i < batch_n; ++i) {
      IoCompletion* c = batch[i];
      if (c == &eventfd_completion_) {
        eventfd_armed_ = false;
        reap_worker_completions();
        continue;
      }
      c->handle.resume();
      submit_if_stale();
    }
    did_work = true;
    if (batch_n < 256) break;
  }
  return true;
}

}  // namespace qblock
