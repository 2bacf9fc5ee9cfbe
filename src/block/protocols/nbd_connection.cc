// The libnbd <-> io_uring glue (see nbd_connection.h).
#include "block/protocols/nbd_connection.h"

#include <poll.h>

#include "qblock/driver/uring.h"

namespace qblock::nbd_client {

int NbdCommand::on_complete(void* user_data, int* error) {
  auto* cmd = static_cast<NbdCommand*>(user_data);
  cmd->error_ = *error;
  cmd->done_ = true;
  // Resumed from the loop, never inside libnbd's state machine.
  if (cmd->handle_) cmd->loop_->post(cmd->handle_);
  return 1;  // retire the command: nobody calls nbd_aio_command_completed
}

NbdConnection::NbdConnection(EventLoop& loop, nbd_handle* handle)
    : loop_(loop), handle_(handle), read_wake_(loop), write_wake_(loop), exited_(loop) {}

NbdConnection::~NbdConnection() { nbd_close(handle_); }

void NbdConnection::start() {
  fd_ = nbd_aio_get_fd(handle_);
  started_ = true;
  running_ = 2;
  spawn(read_pump());
  spawn(write_pump());
}

bool NbdConnection::alive() const {
  return !nbd_aio_is_dead(handle_) && !nbd_aio_is_closed(handle_);
}

int NbdConnection::issued(int64_t cookie) {
  if (cookie < 0) {
    int e = nbd_get_errno();
    return e ? e : EIO;
  }
  kick();
  return 0;
}

bool NbdConnection::wants_read() const {
  // Replies are due, or the server's close after NBD_CMD_DISC.
  return alive() && (nbd_aio_in_flight(handle_) > 0 || stopping_);
}

void NbdConnection::kick() {
  if (nbd_aio_get_direction(handle_) & LIBNBD_AIO_DIRECTION_WRITE) write_wake_.wake_all();
  if (wants_read() || stopping_) read_wake_.wake_all();
}

Task<void> NbdConnection::read_pump() {
  // Polls only while something is due, so that an idle connection has no operation in the
  // ring and shutting down never waits for an idle socket.
  while (alive()) {
    if (!wants_read()) {
      if (stopping_) break;
      co_await read_wake_.wait();
      continue;
    }
    int events = co_await uring::poll(loop_, fd_, POLLIN);
    (void)events;  // readable, hung up or in error: libnbd's read tells which
    if (nbd_aio_get_direction(handle_) & LIBNBD_AIO_DIRECTION_READ) {
      // A failure moves the handle to the dead state and fails the commands in flight
      // through their callbacks; the loop condition then ends the pump.
      (void)nbd_aio_notify_read(handle_);
    }
    kick();
  }
  if (--running_ == 0) exited_.wake_all();
  write_wake_.wake_all();
}

Task<void> NbdConnection::write_pump() {
  while (alive()) {
    if (!(nbd_aio_get_direction(handle_) & LIBNBD_AIO_DIRECTION_WRITE)) {
      if (stopping_) break;
      co_await write_wake_.wait();
      continue;
    }
    int events = co_await uring::poll(loop_, fd_, POLLOUT);
    (void)events;
    // The reader may have moved the state machine meanwhile: notify only if still wanted.
    if (nbd_aio_get_direction(handle_) & LIBNBD_AIO_DIRECTION_WRITE) {
      (void)nbd_aio_notify_write(handle_);
    }
    kick();
  }
  if (--running_ == 0) exited_.wake_all();
}

Task<void> NbdConnection::shutdown() {
  if (!started_ || stopping_) {
    while (running_ > 0) co_await exited_.wait();
    co_return;
  }
  stopping_ = true;
  if (nbd_aio_is_ready(handle_)) (void)nbd_aio_disconnect(handle_, 0);
  kick();
  read_wake_.wake_all();
  write_wake_.wake_all();
  while (running_ > 0) co_await exited_.wait();
}

}  // namespace qblock::nbd_client
