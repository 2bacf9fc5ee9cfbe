// Running a server in the background as qemu-nbd --fork and qemu-storage-daemon --daemonize
// do: the command returns to the shell only once the server is ready (exit 0) or has failed
// (exit 1, its error already on stderr).
#pragma once

#include <string>

namespace qblock::tools {

// Forks. The parent never returns: it waits for the child's report and exits 0 when the child
// called report_ready, 1 when the child exited or closed `ready_fd` first. The child returns
// `ready_fd` (in a new session); on failure to fork, returns -1 with `error` set.
int fork_into_background(std::string& error);

// In the child: tells the parent it is ready (the parent exits 0), closes `ready_fd` and points
// stdin, stdout and stderr at /dev/null, away from the terminal the parent returns to. False if
// the parent could not be told.
bool report_ready(int ready_fd);

}  // namespace qblock::tools
