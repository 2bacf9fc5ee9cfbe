// Image locking against QEMU itself: qblock's file driver takes QEMU's OFD lock bytes, so an
// image qblock holds writable refuses a qemu-io writer (but not a `-r -U` reader), and an
// image a qemu-io process holds refuses qblock. Skipped when qemu-io is not installed.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "block/test_util.h"
#include "qblock/block_backend.h"

extern char** environ;

namespace qblock {
namespace {

using testing::LoopTest;

// The qemu-io on PATH, or "" if there is none.
std::string find_qemu_io() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (std::size_t pos = 0; pos <= dirs.size();) {
    std::size_t end = dirs.find(':', pos);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(pos, end - pos) + "/qemu-io";
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    pos = end + 1;
  }
  return "";
}

// A child process with stdin and stdout+stderr on pipes. The destructor stops it (closing
// stdin, then SIGKILL if it has not exited within a second) and reaps it.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) return;
    if (pipe2(out, O_CLOEXEC) != 0) {
      ::close(in[0]), ::close(in[1]);
      return;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, out[1], 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
  }
  ~Child() {
    close_stdin();
    if (pid_ > 0) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (status_ < 0 && std::chrono::steady_clock::now() < deadline) {
        int st;
        if (waitpid(pid_, &st, WNOHANG) == pid_) status_ = st;
        if (status_ < 0) usleep(10000);
      }
      if (status_ < 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
    }
    if (stdout_ >= 0) ::close(stdout_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool started() const { return pid_ > 0; }
  void send(const std::string& text) {
    [[maybe_unused]] ssize_t n = ::write(stdin_, text.data(), text.size());
  }
  void close_stdin() {
    if (stdin_ >= 0) ::close(stdin_);
    stdin_ = -1;
  }
  // Reads output until it contains `what` (true) or EOF/timeout (false); an empty `what`
  // reads to EOF.
  bool read_until(const std::string& what, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (what.empty() || output_.find(what) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{stdout_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      char buf[4096];
      ssize_t n = ::read(stdout_, buf, sizeof(buf));
      if (n <= 0) return false;
      output_.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  }
  // Closes stdin, reads everything and waits for the exit. Returns the exit code (-1 if the
  // process did not exit normally).
  int finish() {
    close_stdin();
    read_until("", std::chrono::seconds(30));
    int st = 0;
    if (waitpid(pid_, &st, 0) == pid_) status_ = st;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }
  const std::string& output() const { return output_; }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  int status_ = -1;  // waitpid status once reaped
  std::string output_;
};

class QemuLockInteropTest : public LoopTest {
 protected:
  void SetUp() override {
    qemu_io_ = find_qemu_io();
    if (qemu_io_.empty()) GTEST_SKIP() << "qemu-io is not installed";
    LoopTest::SetUp();
    image_ = dir_.file("lock.raw");
    int fd = ::open(image_.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ::close(fd);
    std::filesystem::resize_file(image_, 1 << 20);
  }
  // Runs qemu-io with `args` and the image to completion.
  int run_qemu_io(std::vector<std::string> args, std::string* output) {
    args.insert(args.begin(), qemu_io_);
    args.push_back(image_);
    Child child(args);
    EXPECT_TRUE(child.started());
    int code = child.finish();
    *output = child.output();
    return code;
  }
  Result<std::unique_ptr<BlockBackend>> open_backend(bool read_only) {
    BackendOptions options;
    options.filename = image_;
    options.format = "raw";
    options.flags.read_only = read_only;
    return run_sync(*loop_, BlockBackend::open(*loop_, std::move(options)));
  }

  testing::TempDir dir_;
  std::string qemu_io_;
  std::string image_;
};

TEST_F(QemuLockInteropTest, QemuIoCannotWriteWhileQblockHoldsTheImage) {
  auto blk = open_backend(false);
  ASSERT_OK(blk);
  std::string out;
  EXPECT_NE(run_qemu_io({"-f", "raw", "-c", "write 0 512"}, &out), 0);
  EXPECT_NE(out.find("Failed to get \"write\" lock"), std::string::npos) << out;
  EXPECT_EQ(out.find("wrote"), std::string::npos) << out;
  // A read-only reader that does not take locks (-U) is let in.
  EXPECT_EQ(run_qemu_io({"-r", "-U", "-f", "raw", "-c", "read 0 512"}, &out), 0) << out;
  EXPECT_NE(out.find("read 512/512 bytes at offset 0"), std::string::npos) << out;
  ASSERT_OK(run_sync(*loop_, (*blk)->close()));
  // Released on close.
  EXPECT_EQ(run_qemu_io({"-f", "raw", "-c", "write 0 512"}, &out), 0) << out;
  EXPECT_NE(out.find("wrote 512/512 bytes at offset 0"), std::string::npos) << out;
}

TEST_F(QemuLockInteropTest, QblockCannotOpenWhileQemuIoHoldsTheImage) {
  Child qemu_io({qemu_io_, "-f", "raw", image_});
  ASSERT_TRUE(qemu_io.started());
  // The prompt means the image is open and locked.
  ASSERT_TRUE(qemu_io.read_until("qemu-io> ", std::chrono::seconds(30))) << qemu_io.output();
  // qemu-io holds the write permission but shares it (blk_new_open without
  // BDRV_O_NO_SHARE); qblock shares no write, so it is the one that refuses, with QEMU's
  // wording for that case. (Two qemu-io writers, or qemu-io -r next to a qemu-io writer,
  // coexist; qblock is stricter there.)
  auto blk = open_backend(false);
  ASSERT_FALSE(blk) << "qblock opened an image qemu-io holds";
  EXPECT_EQ(blk.error().message(),
            "Failed to get shared \"write\" lock\nIs another process "
            "using the image [" +
                image_ + "]?");
  // Read-only with force-share (qblock io -r -U) is let in.
  BackendOptions shared;
  shared.filename = image_;
  shared.format = "raw";
  shared.flags.read_only = true;
  shared.flags.force_share = true;
  auto reader = run_sync(*loop_, BlockBackend::open(*loop_, std::move(shared)));
  ASSERT_OK(reader);
  ASSERT_OK(run_sync(*loop_, (*reader)->close()));
  qemu_io.send("quit\n");
  EXPECT_EQ(qemu_io.finish(), 0) << qemu_io.output();
  // Released when qemu-io exits.
  auto after = open_backend(false);
  ASSERT_OK(after);
  ASSERT_OK(run_sync(*loop_, (*after)->close()));
}

}  // namespace
}  // namespace qblock
