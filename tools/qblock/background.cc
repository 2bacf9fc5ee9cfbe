// fork_into_background / report_ready (background.h).
#include "qblock/background.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
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

bool ShutdownSignals::open(std::string& error) {
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&mask, sig);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  fd_ = ::signalfd(-1, &mask, SFD_CLOEXEC);
  if (fd_ < 0) error = std::string("signalfd: ") + std::strerror(errno);
  return fd_ >= 0;
}

ShutdownSignals::~ShutdownSignals() {
  if (fd_ >= 0) ::close(fd_);
}

Task<void> ShutdownSignals::watch(EventLoop& loop, std::function<void()> shut_down) {
  for (;;) {
    signalfd_siginfo info;
    Task<Result<std::size_t>> read = loop.read_fd(fd_, &info, sizeof info);
    const Result<std::size_t> got = co_await std::move(read);
    if (done_) break;
    if (got && *got == sizeof info && info.ssi_signo != SIGUSR1) shut_down();
    if (!got && got.error().errnum() != EINTR && got.error().errnum() != EAGAIN) break;
  }
  finished_ = true;
}

Task<Status> ShutdownSignals::serve(EventLoop& loop, Task<Status> server,
                                    std::function<void()> shut_down) {
  spawn(watch(loop, std::move(shut_down)));
  Status result = co_await std::move(server);
  // Wake the signal reader so that it can finish before the loop goes away.
  done_ = true;
  ::kill(::getpid(), SIGUSR1);
  while (!finished_) co_await loop.yield();
  co_return result;
}

}  // namespace qblock::tools
