// QMP monitors: a listening Unix socket (a --chardev socket,server=on with a --monitor on it)
// whose connections each speak QMP: the greeting, then one reply per input line through the
// Dispatcher, and the daemon's events to every connection past capabilities negotiation.
// A client that sends garbage or disconnects affects only its own connection.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/sync.h"
#include "qblock/task.h"
#include "qmp/dispatcher.h"

namespace qblock::qmp {

class MonitorServer {
 public:
  // `dispatcher` and `loop` must outlive the server. `greeting_version` is the "version"
  // member of the greeting ({"qemu": {...}, "package": ...}).
  MonitorServer(EventLoop& loop, Dispatcher& dispatcher, Options greeting_version,
                std::size_t max_message_bytes);
  ~MonitorServer();
  MonitorServer(const MonitorServer&) = delete;
  MonitorServer& operator=(const MonitorServer&) = delete;

  // Binds and listens on the Unix socket `path` (a stale socket file is replaced). Errors:
  // the socket's errno with "Failed to bind socket to PATH: ..." / a too long path.
  Status listen_unix(const std::string& path);

  // Accepts and serves connections until stop(). REQUIRES: listen_unix() succeeded.
  Task<void> run();

  // Sends an event ({"timestamp", "event", "data"}) to every negotiated connection.
  void emit_event(const std::string& name, Options data);

  // Stops accepting, lets each connection finish sending what it has queued, then ends them;
  // run() returns once all are gone. Idempotent.
  void stop();

 private:
  class Connection;
  Task<void> serve(int fd);

  EventLoop& loop_;
  Dispatcher& dispatcher_;
  Options greeting_version_;
  std::size_t max_message_bytes_;
  std::string path_;
  int listen_fd_ = -1;
  bool stopping_ = false;
  std::vector<Connection*> connections_;
  WaitQueue changed_;
};

}  // namespace qblock::qmp
