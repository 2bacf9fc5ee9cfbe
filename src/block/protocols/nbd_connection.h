// One libnbd connection driven by qblock's io_uring EventLoop: libnbd's aio state machine
// runs on the loop thread, and two small coroutines wait on the socket with io_uring poll
// operations (POLLIN while replies are due, POLLOUT while libnbd has bytes it could not send)
// and notify the state machine. Commands complete through libnbd completion callbacks that
// resume the issuing coroutine. Used by the nbd protocol driver (nbd.h).
#pragma once

#include <libnbd.h>

#include <coroutine>
#include <cstdint>
#include <string>

#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/sync.h"
#include "qblock/task.h"

namespace qblock::nbd_client {

// The completion of one NBD command; lives in the issuing coroutine's frame. Usage:
//   NbdCommand cmd(loop);
//   int64_t cookie = nbd_aio_pread(h, buf, n, off, cmd.callback(), 0);
//   if (int e = conn.issued(cookie); e) ... (not issued: errno)
//   co_await cmd;  // then cmd.error() is 0 or the server's errno
class NbdCommand {
 public:
  explicit NbdCommand(EventLoop& loop) : loop_(&loop) {}
  NbdCommand(const NbdCommand&) = delete;
  NbdCommand& operator=(const NbdCommand&) = delete;

  // The libnbd completion callback that finishes this command. REQUIRES: *this stays alive
  // until the command completes (it is awaited) or failed to be issued.
  nbd_completion_callback callback() {
    return {.callback = &on_complete, .user_data = this, .free = nullptr};
  }

  bool await_ready() const noexcept { return done_; }
  void await_suspend(std::coroutine_handle<> h) noexcept { handle_ = h; }
  void await_resume() const noexcept {}
  // The command's errno (0: success). Valid after the await.
  int error() const { return error_; }

 private:
  static int on_complete(void* user_data, int* error);

  EventLoop* loop_;
  std::coroutine_handle<> handle_;
  bool done_ = false;
  int error_ = 0;
};

// A connected libnbd handle and the coroutines that move its bytes.
class NbdConnection {
 public:
  // Takes ownership of `handle`, which has completed its handshake.
  NbdConnection(EventLoop& loop, nbd_handle* handle);
  // REQUIRES: shutdown() finished (or start() never called).
  ~NbdConnection();
  NbdConnection(const NbdConnection&) = delete;
  NbdConnection& operator=(const NbdConnection&) = delete;

  nbd_handle* handle() const { return handle_; }
  // Starts the socket pumps.
  void start();
  // Call after issuing a command with nbd_aio_*: returns 0 and wakes the pumps when `cookie`
  // is valid, else the errno of the failure (EIO when libnbd gives none).
  int issued(int64_t cookie);
  // False once the connection is dead or closed.
  bool alive() const;
  // Sends NBD_CMD_DISC, waits for the server to close, and stops the pumps. Idempotent.
  // REQUIRES: no command in flight.
  Task<void> shutdown();

 private:
  // Wakes the pumps whose direction libnbd now wants.
  void kick();
  Task<void> read_pump();
  Task<void> write_pump();
  bool wants_read() const;

  EventLoop& loop_;
  nbd_handle* handle_;
  int fd_ = -1;
  bool started_ = false;
  bool stopping_ = false;
  int running_ = 0;  // pumps not yet finished
  WaitQueue read_wake_;
  WaitQueue write_wake_;
  WaitQueue exited_;
};

}  // namespace qblock::nbd_client
