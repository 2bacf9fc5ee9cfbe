// QMP monitors over Unix sockets; see monitor.h.
#include "qmp/monitor.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "nbd/stream.h"
#include "qblock/driver/uring.h"
#include "qblock/listen_socket.h"
#include "qmp/json_stream.h"
#include "qmp/json_writer.h"

namespace qblock::qmp {

class MonitorServer::Connection {
 public:
  Connection(EventLoop& loop, int fd, std::size_t max_message_bytes)
      : stream_(loop, fd), input_(max_message_bytes), write_lock_(loop) {}

  // Sends one JSON value followed by CRLF (QEMU's line ending). Messages go out in call order.
  Task<void> send(Options message) {
    std::string text = to_qmp_text(message) + "\r\n";
    AsyncMutex::Guard guard = co_await write_lock_.lock();
    if (broken_) co_return;
    iovec iov{text.data(), text.size()};
    Task<Status> write = stream_.write_all(std::span<const iovec>(&iov, 1));
    Status s = co_await std::move(write);
    if (!s) broken_ = true;
  }

  nbd::SocketStream stream_;
  JsonStream input_;
  AsyncMutex write_lock_;
  Session session_;
  bool broken_ = false;
};

MonitorServer::MonitorServer(EventLoop& loop, Dispatcher& dispatcher, Options greeting_version,
                             std::size_t max_message_bytes)
    : loop_(loop),
      dispatcher_(dispatcher),
      greeting_version_(std::move(greeting_version)),
      max_message_bytes_(max_message_bytes),
      changed_(loop) {}

MonitorServer::~MonitorServer() {
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (!path_.empty()) ::unlink(path_.c_str());
}

Status MonitorServer::listen_unix(const std::string& path) {
  Result<int> fd = qblock::listen_unix(path);
  if (!fd) return fail(fd.error());
  listen_fd_ = *fd;
  path_ = path;
  return ok();
}

void MonitorServer::emit_event(const std::string& name, Options data) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
  Options event = Options::object();
  event["timestamp"] = Options{{"seconds", us / 1000000}, {"microseconds", us % 1000000}};
  event["event"] = name;
  event["data"] = std::move(data);
  for (Connection* c : connections_) {
    if (c->session_.negotiated) spawn(c->send(event));
  }
}

Task<void> MonitorServer::serve(int fd) {
  Connection connection(loop_, fd, max_message_bytes_);
  connections_.push_back(&connection);
  Options greeting = Options::object();
  greeting["QMP"] = Options{{"version", greeting_version_}, {"capabilities", {"oob"}}};
  Task<void> hello = connection.send(std::move(greeting));
  co_await std::move(hello);
  std::vector<char> buf(64 * 1024);
  while (!stopping_ && !connection.broken_) {
    Task<Result<std::size_t>> read = connection.stream_.read_some(buf.data(), buf.size());
    const Result<std::size_t> got = co_await std::move(read);
    if (!got || *got == 0) break;
    std::vector<Result<Options>> inputs =
        connection.input_.feed(std::string_view(buf.data(), *got));
    for (Result<Options>& input : inputs) {
      Task<Options> answer = dispatcher_.dispatch(std::move(input), connection.session_);
      Options reply = co_await std::move(answer);
      Task<void> sent = connection.send(std::move(reply));
      co_await std::move(sent);
      if (stopping_) break;  // quit: no command after it runs
    }
    // Back to the loop before the next input, as QEMU's monitor returns to its main loop: what
    // a command started (a job's first steps) runs before a client's next command, which the
    // socket may already hold, is taken.
    co_await loop_.yield();
  }
  // Let queued events and replies go out before the descriptor closes.
  { AsyncMutex::Guard drained = co_await connection.write_lock_.lock(); }
  std::erase(connections_, &connection);
  changed_.wake_all();
}

Task<void> MonitorServer::run() {
  while (!stopping_) {
    const int fd = co_await uring::accept(loop_, listen_fd_);
    if (stopping_) {
      if (fd >= 0) ::close(fd);
      break;
    }
    if (fd < 0) {
      if (fd == -ECONNABORTED || fd == -EINTR || fd == -EAGAIN || fd == -EPROTO) continue;
      co_await uring::sleep(loop_, std::chrono::milliseconds(100));
      continue;
    }
    spawn(serve(fd));
  }
  while (!connections_.empty()) co_await changed_.wait();
}

void MonitorServer::stop() {
  if (stopping_) return;
  stopping_ = true;
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  // Only the receiving side: replies and events already queued still go out.
  for (Connection* c : connections_) ::shutdown(c->stream_.fd(), SHUT_RD);
  changed_.wake_all();
}

}  // namespace qblock::qmp
