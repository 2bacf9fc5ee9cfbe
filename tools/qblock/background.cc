// fork_into_background / report_ready (background.h).
#include "qblock/background.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace qblock::tools {

namespace {
constexpr char kReady = 'r';
}  // namespace

int fork_into_background(std::string& error) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    error = std::string("pipe: ") + std::strerror(errno);
    return -1;
  }
  const pid_t child = ::fork();
  if (child < 0) {
    error = std::string("fork: ") + std::strerror(errno);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    return -1;
  }
  if (child > 0) {
    ::close(pipe_fds[1]);
    char byte = 0;
    ssize_t got;
    do {
      got = ::read(pipe_fds[0], &byte, 1);
    } while (got < 0 && errno == EINTR);
    std::_Exit(got == 1 && byte == kReady ? EXIT_SUCCESS : EXIT_FAILURE);
  }
  ::close(pipe_fds[0]);
  ::setsid();
  return pipe_fds[1];
}

bool report_ready(int ready_fd) {
  const bool told = ::write(ready_fd, &kReady, 1) == 1;
  ::close(ready_fd);
  if (!told) return false;
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0) {
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(null_fd, STDOUT_FILENO);
    ::dup2(null_fd, STDERR_FILENO);
    ::close(null_fd);
  }
  return true;
}

}  // namespace qblock::tools
