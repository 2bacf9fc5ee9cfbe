// librbd completions -> the EventLoop (see rbd_completion.h).
#include "block/protocols/rbd_completion.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "block/protocols/librbd_api.h"
#include "qblock/driver/uring.h"

namespace qblock::rbd_client {

int RbdAio::create(rbd_completion_t* c) {
  return rbd_client::librbd().rbd_aio_create_completion(this, &RbdAio::on_complete, c);
}

void RbdAio::abandon(rbd_completion_t c) { rbd_client::librbd().rbd_aio_release(c); }

void RbdAio::on_complete(rbd_completion_t c, void* arg) {
  auto* aio = static_cast<RbdAio*>(arg);
  aio->result_ = rbd_client::librbd().rbd_aio_get_return_value(c);
  rbd_client::librbd().rbd_aio_release(c);
  aio->owner_.post(aio);  // the last touch of *aio on this thread
}

Result<std::unique_ptr<RbdCompletions>> RbdCompletions::create(EventLoop& loop) {
  int fd = ::eventfd(0, EFD_CLOEXEC);
  if (fd < 0) return fail(Error::from_errno(errno, "eventfd"));
  return std::unique_ptr<RbdCompletions>(new RbdCompletions(loop, fd));
}

RbdCompletions::RbdCompletions(EventLoop& loop, int fd)
    : loop_(loop), fd_(fd), wake_(loop), exited_(loop), drained_(loop) {}

RbdCompletions::~RbdCompletions() { ::close(fd_); }

void RbdCompletions::start() {
  started_ = true;
  running_ = true;
  spawn(reader());
}

void RbdCompletions::issued() {
  if (in_flight_++ == 0) wake_.wake_all();
}

void RbdCompletions::post(RbdAio* aio) {
  bool signal = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_.push_back(aio);
    signal = !signalled_;
    signalled_ = true;
  }
  // One eventfd write per batch: completions arriving before the reader drains ride along.
  if (signal) {
    const uint64_t one = 1;
    ssize_t n = ::write(fd_, &one, sizeof(one));
    (void)n;  // cannot fail short of a counter overflow, which one write per drain rules out
  }
}

Task<void> RbdCompletions::reader() {
  uint64_t value = 0;
  for (;;) {
    if (in_flight_ == 0) {
      drained_.wake_all();
      if (stopping_) break;
      // Idle: nothing in the ring, so that closing never waits for an idle eventfd.
      co_await wake_.wait();
      continue;
    }
    int r = co_await uring::read(loop_, fd_, &value, sizeof(value), 0);
    if (r < 0 && r != -EAGAIN && r != -EINTR) {
      // The eventfd cannot fail; should it, poll it instead of spinning on the error.
      (void)co_await uring::sleep(loop_, std::chrono::microseconds(100));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch_.swap(done_);
      signalled_ = false;
    }
    for (RbdAio* aio : batch_) {
      --in_flight_;
      aio->done_ = true;
      if (aio->handle_) loop_.post(aio->handle_);
    }
    batch_.clear();
  }
  running_ = false;
  exited_.wake_all();
}

Task<void> RbdCompletions::shutdown() {
  if (!started_) co_return;
  while (in_flight_ > 0) co_await drained_.wait();
  if (!stopping_) {
    stopping_ = true;
    wake_.wake_all();
  }
  while (running_) co_await exited_.wait();
}

}  // namespace qblock::rbd_client
