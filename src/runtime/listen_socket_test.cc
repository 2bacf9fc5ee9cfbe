// listen_unix / listen_tcp: QEMU's messages, each sentence once (the strerror text was doubled
// when the message went through Error::from_errno).
#include "qblock/listen_socket.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace qblock {
namespace {

int bound_port(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

TEST(ListenSocketTest, BusyTcpPortGivesQemusSentence) {
  Result<int> first = listen_tcp("127.0.0.1", "0");
  ASSERT_TRUE(first) << first.error().message();
  const std::string port = std::to_string(bound_port(*first));
  Result<int> second = listen_tcp("127.0.0.1", port);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().message(), "Failed to find an available port: Address already in use");
  ::close(*first);
}

TEST(ListenSocketTest, UnixSocketErrorsNameThePathOnce) {
  Result<int> missing = listen_unix("/nonexistent-dir/sock");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message(),
            "Failed to bind socket to /nonexistent-dir/sock: No such file or directory");
  Result<int> too_long = listen_unix(std::string(200, 'x'));
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().message(),
            "UNIX socket path '" + std::string(200, 'x') + "' is too long");
}

TEST(ListenSocketTest, StaleUnixSocketIsReplaced) {
  char dir[] = "/tmp/qblock-listener-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/sock";
  Result<int> first = listen_unix(path);
  ASSERT_TRUE(first) << first.error().message();
  ::close(*first);  // the socket file stays behind, as after a killed server
  Result<int> again = listen_unix(path);
  ASSERT_TRUE(again) << again.error().message();
  ::close(*again);
  ::unlink(path.c_str());
  ::rmdir(dir);
}

}  // namespace
}  // namespace qblock
