// Running a server in the background as qemu-nbd --fork and qemu-storage-daemon --daemonize
// do: the command returns to the shell only once the server is ready (exit 0) or has failed
// (exit 1, its error already on stderr).
#pragma once

#include <functional>
#include <string>

#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/task.h"

namespace qblock::tools {

// Forks. The parent never returns: it waits for the child's report and exits 0 when the child
// called report_ready, 1 when the child exited or closed `ready_fd` first. The child returns
// `ready_fd` (in a new session); on failure to fork, returns -1 with `error` set.
int fork_into_background(std::string& error);

// In the child: tells the parent it is ready (the parent exits 0), closes `ready_fd` and points
// stdin, stdout and stderr at /dev/null, away from the terminal the parent returns to. False if
// the parent could not be told.
bool report_ready(int ready_fd);

// SIGTERM, SIGINT and SIGHUP as a server's request to shut down: blocked for the process and
// read from a signalfd on the loop while the server runs (SIGPIPE is ignored: a client gone
// mid-reply is an error result). SIGUSR1 is used internally to wake the reader at the end.
class ShutdownSignals {
 public:
  // Blocks the signals and opens the signalfd; false with `error` set if that fails.
  bool open(std::string& error);
  ~ShutdownSignals();

  // Runs `server` to its end; the first shutdown signal meanwhile calls `shut_down` (which must
  // make `server` finish). Returns `server`'s result once the signal reader has ended too.
  Task<Status> serve(EventLoop& loop, Task<Status> server, std::function<void()> shut_down);

 private:
  Task<void> watch(EventLoop& loop, std::function<void()> shut_down);
  int fd_ = -1;
  bool done_ = false;
  bool finished_ = false;
};

}  // namespace qblock::tools
