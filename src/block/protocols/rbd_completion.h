// librbd aio completions handed to qblock's EventLoop. librbd calls its completion callbacks
// on its own threads; RbdCompletions queues them under a mutex and writes an eventfd that a
// small coroutine on the loop reads with an io_uring read while requests are in flight. The
// loop thread then resumes each awaiting coroutine, so request code never runs on a librbd
// thread. Used by the rbd protocol driver (rbd.h).
#pragma once

#include <rbd/librbd.h>

#include <coroutine>
#include <cstdint>
#include <mutex>
#include <vector>

#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/sync.h"
#include "qblock/task.h"

namespace qblock::rbd_client {

class RbdCompletions;

// One librbd aio request; lives in the issuing coroutine's frame. Usage:
//   RbdAio aio(completions);
//   int r = aio.start([&](rbd_completion_t c) { return rbd_aio_write(img, off, n, buf, c); });
//   if (r < 0) ... (not issued: -errno)
//   int64_t result = co_await aio;  // librbd's return value (bytes, 0, or -errno)
class RbdAio {
 public:
  explicit RbdAio(RbdCompletions& owner) : owner_(owner) {}
  RbdAio(const RbdAio&) = delete;
  RbdAio& operator=(const RbdAio&) = delete;

  // Creates the completion and calls `issue` with it. Returns issue's result: < 0 means the
  // request was not queued (the completion is released, nothing is to be awaited).
  // REQUIRES: called once; *this stays alive until awaited when the result is >= 0.
  template <typename F>
  int start(F&& issue);

  bool await_ready() const noexcept { return done_; }
  void await_suspend(std::coroutine_handle<> h) noexcept { handle_ = h; }
  int64_t await_resume() const noexcept { return result_; }

 private:
  friend class RbdCompletions;
  friend class RbdCompletionsTest;  // completes requests from its own threads, without librbd
  static void on_complete(rbd_completion_t c, void* arg);
  int create(rbd_completion_t* c);
  void abandon(rbd_completion_t c);

  RbdCompletions& owner_;
  std::coroutine_handle<> handle_;
  int64_t result_ = 0;  // written on a librbd thread, read on the loop after the handoff
  bool done_ = false;   // loop thread only
};

// The per-image channel from librbd's threads to the loop.
class RbdCompletions {
 public:
  // Errors of create(): eventfd's errno.
  static Result<std::unique_ptr<RbdCompletions>> create(EventLoop& loop);
  // REQUIRES: shutdown() finished (or start() never called).
  ~RbdCompletions();
  RbdCompletions(const RbdCompletions&) = delete;
  RbdCompletions& operator=(const RbdCompletions&) = delete;

  // Starts the coroutine that reads the eventfd.
  void start();
  // Waits for every request in flight, then stops the reader. Idempotent.
  Task<void> shutdown();
  std::size_t in_flight() const { return in_flight_; }

 private:
  friend class RbdAio;
  friend class RbdCompletionsTest;
  RbdCompletions(EventLoop& loop, int fd);
  // Loop thread: a request was issued.
  void issued();
  // Any thread (librbd's): `aio` has its result.
  void post(RbdAio* aio);
  Task<void> reader();

  EventLoop& loop_;
  int fd_;
  std::size_t in_flight_ = 0;  // loop thread only
  bool started_ = false;
  bool stopping_ = false;
  bool running_ = false;
  WaitQueue wake_;
  WaitQueue exited_;
  WaitQueue drained_;
  std::mutex mu_;
  std::vector<RbdAio*> done_;   // guarded by mu_
  bool signalled_ = false;      // guarded by mu_: the eventfd was written since the last drain
  std::vector<RbdAio*> batch_;  // loop thread only: the drained list, reused
};

template <typename F>
int RbdAio::start(F&& issue) {
  rbd_completion_t c = nullptr;
  int r = create(&c);
  if (r < 0) return r;
  r = issue(c);
  if (r < 0) {
    abandon(c);
    return r;
  }
  owner_.issued();
  return 0;
}

}  // namespace qblock::rbd_client
