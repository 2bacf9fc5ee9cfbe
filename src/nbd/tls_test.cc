// Tests of the NBD server's TLS layer: tls_accept and its stream run on an EventLoop while a
// blocking GnuTLS client talks to them from a std::thread over a socketpair. Credentials are
// made at test time by tests/nbd/make-tls-creds.sh (certtool, from gnutls-bin).
#include "nbd/tls.h"

#include <gnutls/gnutls.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/test_macros.h"
#include "qblock/event_loop.h"
#include "qblock/task.h"

namespace qblock::nbd {
namespace {

namespace fs = std::filesystem;

constexpr char kPskPriority[] = "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK";  // what libnbd offers

// The credentials script, found from this file's place in the source tree (tests are run
// from a build that compiles this file by its absolute path, or from the source root).
std::string script_path() {
  return (fs::path(__FILE__).parent_path() / "../../tests/nbd/make-tls-creds.sh")
      .lexically_normal()
      .string();
}

class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "qblock-tls-XXXXXX").string();
    if (mkdtemp(templ.data())) path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs the credentials script into a fresh directory; empty on failure.
std::unique_ptr<TempDir> make_credentials(const std::string& flags) {
  auto dir = std::make_unique<TempDir>();
  if (dir->path().empty()) return nullptr;
  std::string command = "'" + script_path() + "' " + flags + " '" + dir->path() + "'";
  if (std::system(command.c_str()) != 0) return nullptr;
  return dir;
}

// Credentials shared by all tests (made once: key generation is the slow part).
const TempDir* credentials_dir() {
  static std::unique_ptr<TempDir> dir = make_credentials("");
  return dir.get();
}
// A second set whose server certificate comes from an intermediate CA.
const TempDir* intermediate_dir() {
  static std::unique_ptr<TempDir> dir = make_credentials("--intermediate");
  return dir.get();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

// The hex key of `identity` in a keys.psk file.
std::string psk_key(const std::string& file, const std::string& identity) {
  std::istringstream in(read_text(file));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(identity + ":", 0) == 0) return line.substr(identity.size() + 1);
  }
  return {};
}

struct ClientOptions {
  std::string ca_file;       // x509: the CA file the client trusts
  std::string cert_file;     // x509: a client certificate to present when set
  std::string key_file;      // ... and its key
  std::string psk_identity;  // PSK instead of x509 when set
  std::string psk_key_hex;
  unsigned max_record = 0;  // record_size_limit to ask the server for; 0: none
  std::string priority;     // instead of the default (x509) or libnbd's (PSK) priorities
};

// Priorities that keep a client to TLS 1.2.
constexpr char kTls12Priority[] = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
constexpr char kPskTls12Priority[] = "NORMAL:-VERS-ALL:+VERS-TLS1.2:+ECDHE-PSK:+DHE-PSK:+PSK";

ClientOptions trusting(const std::string& ca_file) {
  ClientOptions o;
  o.ca_file = ca_file;
  return o;
}
ClientOptions with_psk(const std::string& identity, const std::string& key_hex) {
  ClientOptions o;
  o.psk_identity = identity;
  o.psk_key_hex = key_hex;
  return o;
}

// A blocking GnuTLS client session on a socket it does not own.
class TlsClient {
 public:
  TlsClient(int fd, const ClientOptions& options) : fd_(fd) {
    gnutls_init(&session_, GNUTLS_CLIENT);
    if (!options.psk_identity.empty()) {
      gnutls_psk_allocate_client_credentials(&psk_);
      gnutls_datum_t key{
          reinterpret_cast<unsigned char*>(const_cast<char*>(options.psk_key_hex.data())),
          static_cast<unsigned>(options.psk_key_hex.size())};
      gnutls_psk_set_client_credentials(psk_, options.psk_identity.c_str(), &key,
                                        GNUTLS_PSK_KEY_HEX);
      gnutls_priority_set_direct(
          session_, options.priority.empty() ? kPskPriority : options.priority.c_str(), nullptr);
      gnutls_credentials_set(session_, GNUTLS_CRD_PSK, psk_);
    } else {
      gnutls_certificate_allocate_credentials(&x509_);
      gnutls_certificate_set_x509_trust_file(x509_, options.ca_file.c_str(), GNUTLS_X509_FMT_PEM);
      if (!options.cert_file.empty()) {
        gnutls_certificate_set_x509_key_file(x509_, options.cert_file.c_str(),
                                             options.key_file.c_str(), GNUTLS_X509_FMT_PEM);
      }
      if (options.priority.empty()) {
        gnutls_set_default_priority(session_);
      } else {
        gnutls_priority_set_direct(session_, options.priority.c_str(), nullptr);
      }
      gnutls_credentials_set(session_, GNUTLS_CRD_CERTIFICATE, x509_);
      gnutls_server_name_set(session_, GNUTLS_NAME_DNS, "localhost", 9);
      // The handshake fails unless the chain verifies and names localhost.
      gnutls_session_set_verify_cert(session_, "localhost", 0);
    }
    if (options.max_record) gnutls_record_set_max_recv_size(session_, options.max_record);
    gnutls_transport_set_int(session_, fd);
  }
  ~TlsClient() {
    gnutls_deinit(session_);
    if (psk_) gnutls_psk_free_client_credentials(psk_);
    if (x509_) gnutls_certificate_free_credentials(x509_);
  }
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  // Returns 0 or the GnuTLS error. A failed client tells the server why and hangs up, as
  // real clients do when they give up.
  int handshake() {
    int r;
    do {
      r = gnutls_handshake(session_);
    } while (r < 0 && !gnutls_error_is_fatal(r));
    if (r < 0) {
      gnutls_alert_send_appropriate(session_, r);
      ::shutdown(fd_, SHUT_RDWR);
    }
    return r;
  }
  bool send_all(const char* data, std::size_t len) {
    while (len > 0) {
      ssize_t r = gnutls_record_send(session_, data, len);
      if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) continue;
      if (r <= 0) return false;
      data += r;
      len -= static_cast<std::size_t>(r);
    }
    return true;
  }
  // Receives exactly `len` bytes; false on error or end of stream.
  bool recv_all(char* data, std::size_t len) {
    while (len > 0) {
      ssize_t r = gnutls_record_recv(session_, data, len);
      if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) continue;
      if (r <= 0) return false;
      data += r;
      len -= static_cast<std::size_t>(r);
    }
    return true;
  }
  gnutls_session_t session() const { return session_; }

 private:
  int fd_;
  gnutls_session_t session_ = nullptr;
  gnutls_psk_client_credentials_t psk_ = nullptr;
  gnutls_certificate_credentials_t x509_ = nullptr;
};

// Runs `body` on a thread with the client end of the socket pair. Destruction shuts the
// socket down (so a client blocked on a failed server returns), joins and closes it.
class ClientThread {
 public:
  ClientThread(int fd, std::function<void(int)> body)
      : fd_(fd), thread_([fd, body = std::move(body)] { body(fd); }) {}
  ~ClientThread() {
    if (thread_.joinable()) {
      ::shutdown(fd_, SHUT_RDWR);
      thread_.join();
    }
    ::close(fd_);
  }
  ClientThread(const ClientThread&) = delete;
  ClientThread& operator=(const ClientThread&) = delete;
  // Waits for the client to finish on its own.
  void join() { thread_.join(); }

 private:
  int fd_;
  std::thread thread_;
};

// True when the peer of `fd` closes within ten seconds (whatever it sent first is skipped).
bool sees_eof(int fd) {
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) return false;
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
  }
}

// Reads exactly `len` bytes into `buf`, with receive sizes that vary from call to call.
Task<Status> read_exactly(Stream* stream, char* buf, std::size_t len) {
  static constexpr std::size_t kSizes[] = {1, 100, 4096, 65536, 1 << 20, 7, 16384, 16385};
  std::size_t got = 0;
  for (std::size_t k = 0; got < len; ++k) {
    std::size_t want = std::min(kSizes[k % std::size(kSizes)], len - got);
    Result<std::size_t> r = co_await stream->read_some(buf + got, want);
    if (!r) co_return fail(r.error());
    if (*r == 0) co_return fail(Error::io("end of stream after " + std::to_string(got)));
    got += *r;
  }
  co_return ok();
}

// Sends `len` bytes at `data` in write_all calls of several iovecs of assorted sizes: tiny
// ones that get gathered, record-sized ones and ones much larger than a record.
Task<Status> write_in_pieces(Stream* stream, const char* data, std::size_t len) {
  static constexpr std::size_t kSizes[] = {16, 1, 3, 4000, 16384, 16385, 70000, 5, 300000, 0};
  std::vector<iovec> iov;
  for (std::size_t off = 0, k = 0; off < len; ++k) {
    std::size_t n = std::min(kSizes[k % std::size(kSizes)], len - off);
    iov.push_back(iovec{const_cast<char*>(data + off), n});
    off += n;
  }
  for (std::size_t i = 0; i < iov.size(); i += 7) {
    std::span<const iovec> batch(iov.data() + i, std::min<std::size_t>(7, iov.size() - i));
    Status sent = co_await stream->write_all(batch);
    if (!sent) co_return sent;
  }
  co_return ok();
}

Task<void> read_once(Stream* stream, std::optional<Result<std::size_t>>* out) {
  char buf[64];
  Result<std::size_t> r = co_await stream->read_some(buf, sizeof(buf));
  out->emplace(std::move(r));
}

std::string random_bytes(std::size_t len, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string s(len, '\0');
  for (auto& c : s) c = static_cast<char>(gen());
  return s;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(credentials_dir(), nullptr) << "could not run " << script_path();
    dir_ = credentials_dir()->path();
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop);
    loop_ = std::move(*loop);
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    server_fd_ = fds[0];
    client_fd_ = fds[1];
  }

  std::unique_ptr<TlsCredentials> x509() {
    Result<std::unique_ptr<TlsCredentials>> c = TlsCredentials::load_x509(dir_);
    EXPECT_TRUE(c) << c.error().message();
    return c ? std::move(*c) : nullptr;
  }
  std::unique_ptr<TlsCredentials> psk() {
    Result<std::unique_ptr<TlsCredentials>> c = TlsCredentials::load_psk(dir_ + "/keys.psk");
    EXPECT_TRUE(c) << c.error().message();
    return c ? std::move(*c) : nullptr;
  }
  ClientOptions x509_client() const { return trusting(dir_ + "/ca-cert.pem"); }
  ClientOptions psk_client() const {
    return with_psk("qblock", psk_key(dir_ + "/keys.psk", "qblock"));
  }

  // Accepts on the server end; the client must already be running.
  Result<std::unique_ptr<Stream>> accept(const TlsCredentials& credentials) {
    return run_sync(*loop_, tls_accept(*loop_, server_fd_, credentials));
  }

  // Handshake, then "hello" up and "hello world" down, checking the negotiated auth type and
  // TLS version (1.3 unless the client's priority string says otherwise).
  void small_exchange(const TlsCredentials& credentials, const ClientOptions& options,
                      gnutls_credentials_type_t expected_auth) {
    int client_result = -1;
    std::string reply;
    gnutls_credentials_type_t auth = GNUTLS_CRD_ANON;
    gnutls_protocol_t version = GNUTLS_VERSION_UNKNOWN;
    ClientThread client(client_fd_, [&](int fd) {
      TlsClient c(fd, options);
      client_result = c.handshake();
      if (client_result < 0) return;
      auth = gnutls_auth_get_type(c.session());
      version = gnutls_protocol_get_version(c.session());
      if (!c.send_all("hello", 5)) return;
      reply.resize(11);
      if (!c.recv_all(reply.data(), reply.size())) reply = "recv failed";
    });
    Result<std::unique_ptr<Stream>> stream = accept(credentials);
    ASSERT_OK(stream);
    EXPECT_EQ((*stream)->fd(), server_fd_);
    char buf[5];
    ASSERT_OK(run_sync(*loop_, read_exactly(stream->get(), buf, sizeof(buf))));
    EXPECT_EQ(std::string(buf, 5), "hello");
    char part1[] = "hello", part2[] = " world";
    iovec iov[] = {{part1, 5}, {part2, 6}};
    ASSERT_OK(run_sync(*loop_, (*stream)->write_all(iov)));
    client.join();
    EXPECT_EQ(client_result, 0) << gnutls_strerror(client_result);
    EXPECT_EQ(auth, expected_auth);
    EXPECT_EQ(version, options.priority.empty() ? GNUTLS_TLS1_3 : GNUTLS_TLS1_2);
    EXPECT_EQ(reply, "hello world");
  }

  // Sends `len` random bytes each way at once and compares them.
  void large_exchange(const TlsCredentials& credentials, const ClientOptions& options,
                      std::size_t len) {
    const std::string up = random_bytes(len, 1);
    const std::string down = random_bytes(len, 2);
    bool client_ok = false;
    std::string client_got(len, '\0');
    ClientThread client(client_fd_, [&](int fd) {
      TlsClient c(fd, options);
      if (c.handshake() < 0) return;
      // GnuTLS allows one thread sending and another receiving on one session.
      bool sent = false;
      std::thread sender([&] {
        sent = true;
        for (std::size_t off = 0, k = 1; off < len && sent; k = k * 7 % 100003) {
          std::size_t n = std::min(len - off, k);
          sent = c.send_all(up.data() + off, n);
          off += n;
        }
      });
      bool received = c.recv_all(client_got.data(), len);
      sender.join();
      client_ok = sent && received;
    });
    Result<std::unique_ptr<Stream>> stream = accept(credentials);
    ASSERT_OK(stream);
    std::string server_got(len, '\0');
    std::vector<Task<Status>> both;
    both.push_back(read_exactly(stream->get(), server_got.data(), len));
    both.push_back(write_in_pieces(stream->get(), down.data(), len));
    std::vector<Status> results = run_sync(*loop_, when_all(std::move(both)));
    EXPECT_OK(results[0]);
    EXPECT_OK(results[1]);
    client.join();
    EXPECT_TRUE(client_ok);
    EXPECT_TRUE(server_got == up) << "upload corrupted";
    EXPECT_TRUE(client_got == down) << "download corrupted";
  }

  std::string dir_;
  std::unique_ptr<EventLoop> loop_;
  int server_fd_ = -1;  // owned by tls_accept once passed to it
  int client_fd_ = -1;  // owned by the ClientThread once passed to it
};

// verify-peer (QEMU's default for tls-creds-x509): the server asks for a client certificate
// and checks it against ca-cert.pem.
TEST_F(TlsTest, VerifyPeerAcceptsAClientCertificateOfTheCa) {
  Result<std::unique_ptr<TlsCredentials>> credentials =
      TlsCredentials::load_x509(dir_, TlsCredentials::VerifyPeer::kYes);
  ASSERT_OK(credentials);
  ClientOptions options = x509_client();
  options.cert_file = dir_ + "/client-cert.pem";
  options.key_file = dir_ + "/client-key.pem";
  small_exchange(**credentials, options, GNUTLS_CRD_CERTIFICATE);
}

TEST_F(TlsTest, VerifyPeerRefusesAClientWithoutCertificate) {
  Result<std::unique_ptr<TlsCredentials>> credentials =
      TlsCredentials::load_x509(dir_, TlsCredentials::VerifyPeer::kYes);
  ASSERT_OK(credentials);
  ClientOptions options = x509_client();
  int client_result = 0;
  ClientThread client(client_fd_, [&](int fd) {
    TlsClient c(fd, options);
    client_result = c.handshake();
    // TLS 1.3: the client may finish before the server has judged its (empty) certificate;
    // the server's alert then ends the first read.
    char byte;
    if (client_result == 0 && c.recv_all(&byte, 1)) client_result = 1;
  });
  Result<std::unique_ptr<Stream>> stream = accept(**credentials);
  ASSERT_FALSE(stream);
  EXPECT_EQ(stream.error().errnum(), EIO);
  client.join();
  EXPECT_NE(client_result, 1);
}

TEST_F(TlsTest, X509SmallExchange) {
  auto credentials = x509();
  ASSERT_TRUE(credentials);
  small_exchange(*credentials, x509_client(), GNUTLS_CRD_CERTIFICATE);
}

TEST_F(TlsTest, PskSmallExchange) {
  auto credentials = psk();
  ASSERT_TRUE(credentials);
  small_exchange(*credentials, psk_client(), GNUTLS_CRD_PSK);
}

TEST_F(TlsTest, X509SmallExchangeTls12) {
  auto credentials = x509();
  ASSERT_TRUE(credentials);
  ClientOptions options = x509_client();
  options.priority = kTls12Priority;
  small_exchange(*credentials, options, GNUTLS_CRD_CERTIFICATE);
}

TEST_F(TlsTest, PskSmallExchangeTls12) {
  auto credentials = psk();
  ASSERT_TRUE(credentials);
  ClientOptions options = psk_client();
  options.priority = kPskTls12Priority;
  small_exchange(*credentials, options, GNUTLS_CRD_PSK);
}

TEST_F(TlsTest, X509LargeExchangeBothWays) {
  auto credentials = x509();
  ASSERT_TRUE(credentials);
  large_exchange(*credentials, x509_client(), 4 << 20);
}

TEST_F(TlsTest, PskLargeExchangeBothWays) {
  auto credentials = psk();
  ASSERT_TRUE(credentials);
  large_exchange(*credentials, psk_client(), 4 << 20);
}

// A client that limits records to 512 bytes (RFC 8449) makes gnutls_record_send take less
// than it was given; write_all must carry on with the rest.
TEST_F(TlsTest, SmallRecordLimit) {
  auto credentials = x509();
  ASSERT_TRUE(credentials);
  ClientOptions options = x509_client();
  options.max_record = 512;
  large_exchange(*credentials, options, 256 << 10);
}

TEST_F(TlsTest, ReadReturnsZeroWhenClientClosesWithoutCloseNotify) {
  auto credentials = psk();
  ASSERT_TRUE(credentials);
  ClientOptions options = psk_client();
  ClientThread client(client_fd_, [&](int fd) {
    TlsClient c(fd, options);
    if (c.handshake() == 0) c.send_all("bye", 3);
    ::shutdown(fd, SHUT_RDWR);
  });
  Result<std::unique_ptr<Stream>> stream = accept(*credentials);
  ASSERT_OK(stream);
  char buf[3];
  ASSERT_OK(run_sync(*loop_, read_exactly(stream->get(), buf, sizeof(buf))));
  Result<std::size_t> r = run_sync(*loop_, (*stream)->read_some(buf, sizeof(buf)));
  ASSERT_OK(r);
  EXPECT_EQ(*r, 0u);
}

TEST_F(TlsTest, ReadReturnsZeroAfterCloseNotify) {
  auto credentials = x509();
  ASSERT_TRUE(credentials);
  ClientOptions options = x509_client();
  ClientThread client(client_fd_, [&](int fd) {
    TlsClient c(fd, options);
    if (c.handshake() == 0 && c.send_all("bye", 3)) gnutls_bye(c.session(), GNUTLS_SHUT_WR);
  });
  Result<std::unique_ptr<Stream>> stream = accept(*credentials);
  ASSERT_OK(stream);
  char buf[3];
  ASSERT_OK(run_sync(*loop_, read_exactly(stream->get(), buf, sizeof(buf))));
  Result<std::size_t> r = run_sync(*loop_, (*stream)->read_some(buf, sizeof(buf)));
  ASSERT_OK(r);
  EXPECT_EQ(*r, 0u);
}

// Writing to a client that has gone is the socket's error (GnuTLS sends with MSG_NOSIGNAL:
// no SIGPIPE kills the test).
TEST_F(TlsTest, WriteToAVanishedClientFailsWithTheSocketError) {
  auto credentials = psk();
  ASSERT_TRUE(credentials);
  ClientOptions options = psk_client();
  ClientThread client(client_fd_, [&](int fd) {
    TlsClient c(fd, options);
    c.handshake();
  });
  Result<std::unique_ptr<Stream>> stream = accept(*credentials);
  ASSERT_OK(stream);
  client.join();
  ::shutdown(client_fd_, SHUT_RDWR);
  const std::string data = random_bytes(4 << 20, 4);
  iovec iov{const_cast<char*>(data.data()), data.size()};
  Status sent = run_sync(*loop_, (*stream)->write_all(std::span<const iovec>(&iov, 1)));
  ASSERT_FALSE(sent);
  EXPECT_TRUE(sent.error().errnum() == EPIPE || sent.error().errnum() == ECONNRESET)
      << sent.error().message();
}

// shutdown() makes a receive that is waiting for the client return 0 (the server stops
// connections this way).
TEST_F(TlsTest, ShutdownEndsAPendingRead) {
  auto credentials = x509();
  ASSERT_TRUE(credentials);
  ClientOptions options = x509_client();
  bool client_saw_end = false;
  ClientThread client(client_fd_, [&](int fd) {
    TlsClient c(fd, options);
    if (c.handshake() != 0) return;
    char b;
    client_saw_end = !c.recv_all(&b, 1);
  });
  Result<std::unique_ptr<Stream>> stream = accept(*credentials);
  ASSERT_OK(stream);
  std::optional<Result<std::size_t>> read;
  spawn(read_once(stream->get(), &read));
  for (int i = 0; i < 10 && !read; ++i) loop_->run_once(false);
  ASSERT_FALSE(read.has_value()) << "read_some finished without data";
  (*stream)->shutdown();
  (*stream)->shutdown();  // idempotent
  while (!read) loop_->run_once(true);
  ASSERT_OK(*read);
  EXPECT_EQ(**read, 0u);
  client.join();
  EXPECT_TRUE(client_saw_end);
}

TEST_F(TlsTest, GarbageInsteadOfClientHelloFailsAndClosesTheSocket) {
  auto credentials = x509();
  ASSERT_TRUE(credentials);
  bool eof = false;
  ClientThread client(client_fd_, [&](int fd) {
    std::string garbage = "GET / HTTP/1.0\r\n\r\n" + random_bytes(2000, 3);
    // The server may hang up before all of it is sent: EPIPE, not SIGPIPE, then.
    ::send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL);
    eof = sees_eof(fd);
  });
  Result<std::unique_ptr<Stream>> stream = accept(*credentials);
  ASSERT_FALSE(stream);
  EXPECT_EQ(stream.error().errnum(), EIO);
  EXPECT_NE(stream.error().message().find("TLS handshake failed"), std::string::npos)
      << stream.error().message();
  client.join();
  EXPECT_TRUE(eof) << "the server did not close its end";
}

TEST_F(TlsTest, ClientClosingBeforeHelloFailsTheHandshake) {
  auto credentials = psk();
  ASSERT_TRUE(credentials);
  ::shutdown(client_fd_, SHUT_RDWR);
  Result<std::unique_ptr<Stream>> stream = accept(*credentials);
  ASSERT_FALSE(stream);
  EXPECT_EQ(stream.error().errnum(), EIO);
  ::close(client_fd_);
}

// The server's error suggests the likely cause, for TLS 1.3 (a bad binder) and TLS 1.2 (a
// Finished message that does not decrypt) alike.
class WrongPskKeyTest : public TlsTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(WrongPskKeyTest, FailsTheHandshake) {
  auto credentials = psk();
  ASSERT_TRUE(credentials);
  ClientOptions options = psk_client();
  options.psk_key_hex = std::string(64, 'a');
  options.priority = GetParam();
  int client_result = 0;
  ClientThread client(client_fd_, [&](int fd) {
    TlsClient c(fd, options);
    client_result = c.handshake();
  });
  Result<std::unique_ptr<Stream>> stream = accept(*credentials);
  ASSERT_FALSE(stream);
  EXPECT_EQ(stream.error().errnum(), EIO);
  EXPECT_NE(stream.error().message().find("TLS handshake failed"), std::string::npos);
  EXPECT_NE(stream.error().message().find("right key for PSK identity 'qblock'"), std::string::npos)
      << stream.error().message();
  client.join();
  EXPECT_LT(client_result, 0);
}

INSTANTIATE_TEST_SUITE_P(Versions, WrongPskKeyTest, ::testing::Values("", kPskTls12Priority));

TEST_F(TlsTest, UnknownPskIdentityFailsTheHandshake) {
  auto credentials = psk();
  ASSERT_TRUE(credentials);
  ClientOptions options = psk_client();
  options.psk_identity = "mallory";
  int client_result = 0;
  ClientThread client(client_fd_, [&](int fd) {
    TlsClient c(fd, options);
    client_result = c.handshake();
  });
  Result<std::unique_ptr<Stream>> stream = accept(*credentials);
  ASSERT_FALSE(stream);
  EXPECT_EQ(stream.error().errnum(), EIO);
  EXPECT_EQ(stream.error().message(), "TLS handshake failed: unknown PSK identity 'mallory'");
  client.join();
  EXPECT_LT(client_result, 0);
}

Task<void> accept_into(EventLoop* loop, int fd, const TlsCredentials* credentials,
                       std::optional<Result<std::unique_ptr<Stream>>>* out) {
  Result<std::unique_ptr<Stream>> stream = co_await tls_accept(*loop, fd, *credentials);
  out->emplace(std::move(stream));
}

// A client that goes quiet mid-handshake holds tls_accept until the socket is shut down.
TEST_F(TlsTest, ShuttingTheSocketDownEndsAStalledHandshake) {
  auto credentials = x509();
  ASSERT_TRUE(credentials);
  std::atomic<bool> sent{false};
  ClientThread client(client_fd_, [&](int fd) {
    // Half a ClientHello record header, then silence until the server hangs up.
    sent = ::send(fd, "\x16\x03", 2, MSG_NOSIGNAL) == 2;
    sees_eof(fd);
  });
  std::optional<Result<std::unique_ptr<Stream>>> stream;
  spawn(accept_into(loop_.get(), server_fd_, credentials.get(), &stream));
  while (!sent && !stream) loop_->run_once(false);
  for (int i = 0; i < 20 && !stream; ++i) loop_->run_once(false);
  ASSERT_FALSE(stream.has_value()) << "tls_accept finished early";
  ::shutdown(server_fd_, SHUT_RDWR);
  while (!stream) loop_->run_once(true);
  ASSERT_FALSE(*stream);
  EXPECT_EQ(stream->error().errnum(), EIO) << stream->error().message();
}

// A PSK client meeting an x509-only server: no common key exchange.
TEST_F(TlsTest, PskClientAgainstX509ServerFails) {
  auto credentials = x509();
  ASSERT_TRUE(credentials);
  ClientOptions options = psk_client();
  int client_result = 0;
  ClientThread client(client_fd_, [&](int fd) {
    TlsClient c(fd, options);
    client_result = c.handshake();
  });
  Result<std::unique_ptr<Stream>> stream = accept(*credentials);
  ASSERT_FALSE(stream);
  client.join();
  EXPECT_LT(client_result, 0);
}

// A client that trusts another CA rejects the server; the server reports the client's alert.
TEST_F(TlsTest, ClientTrustingAnotherCaRejectsTheServer) {
  ASSERT_NE(intermediate_dir(), nullptr);
  auto credentials = x509();
  ASSERT_TRUE(credentials);
  ClientOptions options = trusting(intermediate_dir()->file("root-cert.pem"));
  int client_result = 0;
  ClientThread client(client_fd_, [&](int fd) {
    TlsClient c(fd, options);
    client_result = c.handshake();
  });
  Result<std::unique_ptr<Stream>> stream = accept(*credentials);
  ASSERT_FALSE(stream);
  EXPECT_EQ(stream.error().errnum(), EIO);
  EXPECT_NE(stream.error().message().find("alert"), std::string::npos) << stream.error().message();
  client.join();
  EXPECT_LT(client_result, 0);
}

// server-cert.pem signed by an intermediate CA, ca-cert.pem = intermediate + root: the server
// sends the intermediate, so a client trusting only the root verifies the chain.
TEST_F(TlsTest, ChainIsCompletedFromCaCert) {
  const TempDir* chain_dir = intermediate_dir();
  ASSERT_NE(chain_dir, nullptr);
  Result<std::unique_ptr<TlsCredentials>> credentials =
      TlsCredentials::load_x509(chain_dir->path());
  ASSERT_OK(credentials);
  small_exchange(**credentials, trusting(chain_dir->file("root-cert.pem")), GNUTLS_CRD_CERTIFICATE);
}

// Without ca-cert.pem the same client cannot build the chain (which shows the previous test
// passes because of the completion).
TEST_F(TlsTest, WithoutCaCertTheChainIsIncomplete) {
  const TempDir* chain_dir = intermediate_dir();
  ASSERT_NE(chain_dir, nullptr);
  TempDir dir;
  fs::copy_file(chain_dir->file("server-cert.pem"), dir.file("server-cert.pem"));
  fs::copy_file(chain_dir->file("server-key.pem"), dir.file("server-key.pem"));
  Result<std::unique_ptr<TlsCredentials>> credentials = TlsCredentials::load_x509(dir.path());
  ASSERT_OK(credentials);
  ClientOptions options = trusting(chain_dir->file("root-cert.pem"));
  int client_result = 0;
  ClientThread client(client_fd_, [&](int fd) {
    TlsClient c(fd, options);
    client_result = c.handshake();
  });
  Result<std::unique_ptr<Stream>> stream = accept(**credentials);
  EXPECT_FALSE(stream);
  client.join();
  EXPECT_LT(client_result, 0);
}

// Credential loading errors: each names the file at fault.
class TlsCredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(credentials_dir(), nullptr) << "could not run " << script_path();
    ASSERT_FALSE(dir_.path().empty());
  }
  void copy(const std::string& from, const std::string& to) {
    fs::copy_file(credentials_dir()->file(from), dir_.file(to),
                  fs::copy_options::overwrite_existing);
  }
  // The load error's message; fails the test if loading succeeds.
  std::string x509_error(int expected_errno) {
    Result<std::unique_ptr<TlsCredentials>> c = TlsCredentials::load_x509(dir_.path());
    EXPECT_FALSE(c);
    if (c) return {};
    EXPECT_EQ(c.error().errnum(), expected_errno) << c.error().message();
    return c.error().message();
  }
  std::string psk_error(const std::string& text, int expected_errno) {
    write_text(dir_.file("keys.psk"), text);
    Result<std::unique_ptr<TlsCredentials>> c = TlsCredentials::load_psk(dir_.file("keys.psk"));
    EXPECT_FALSE(c) << "loaded: " << text;
    if (c) return {};
    EXPECT_EQ(c.error().errnum(), expected_errno) << c.error().message();
    return c.error().message();
  }

  TempDir dir_;
};

TEST_F(TlsCredentialsTest, MissingCertificateNamesTheFile) {
  EXPECT_EQ(x509_error(ENOENT), "Could not read TLS certificate '" + dir_.file("server-cert.pem") +
                                    "': No such file or directory");
}

TEST_F(TlsCredentialsTest, MissingKeyNamesTheFile) {
  copy("server-cert.pem", "server-cert.pem");
  EXPECT_EQ(x509_error(ENOENT), "Could not read TLS private key '" + dir_.file("server-key.pem") +
                                    "': No such file or directory");
}

TEST_F(TlsCredentialsTest, BadCertificateNamesTheFile) {
  write_text(dir_.file("server-cert.pem"), "not a certificate\n");
  copy("server-key.pem", "server-key.pem");
  std::string message = x509_error(EINVAL);
  EXPECT_EQ(
      message.rfind("Could not load TLS certificate '" + dir_.file("server-cert.pem") + "': ", 0),
      0u)
      << message;
}

TEST_F(TlsCredentialsTest, BadKeyNamesTheFile) {
  copy("server-cert.pem", "server-cert.pem");
  write_text(dir_.file("server-key.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n");
  std::string message = x509_error(EINVAL);
  EXPECT_EQ(message.rfind("Could not load TLS private key '" + dir_.file("server-key.pem"), 0), 0u)
      << message;
}

TEST_F(TlsCredentialsTest, KeyOfAnotherCertificateNamesBothFiles) {
  copy("server-cert.pem", "server-cert.pem");
  copy("client-key.pem", "server-key.pem");
  std::string message = x509_error(EINVAL);
  EXPECT_NE(message.find(dir_.file("server-cert.pem")), std::string::npos) << message;
  EXPECT_NE(message.find(dir_.file("server-key.pem")), std::string::npos) << message;
}

TEST_F(TlsCredentialsTest, BadCaCertificateNamesTheFile) {
  copy("server-cert.pem", "server-cert.pem");
  copy("server-key.pem", "server-key.pem");
  write_text(dir_.file("ca-cert.pem"), "garbage\n");
  std::string message = x509_error(EINVAL);
  EXPECT_NE(message.find(dir_.file("ca-cert.pem")), std::string::npos) << message;
}

TEST_F(TlsCredentialsTest, CaCertificateIsOptional) {
  copy("server-cert.pem", "server-cert.pem");
  copy("server-key.pem", "server-key.pem");
  EXPECT_OK(TlsCredentials::load_x509(dir_.path()));
  copy("ca-cert.pem", "ca-cert.pem");
  EXPECT_OK(TlsCredentials::load_x509(dir_.path()));
}

TEST_F(TlsCredentialsTest, MissingPskFileNamesTheFile) {
  Result<std::unique_ptr<TlsCredentials>> c = TlsCredentials::load_psk(dir_.file("nope.psk"));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().errnum(), ENOENT);
  EXPECT_EQ(c.error().message(), "Could not read TLS PSK file '" + dir_.file("nope.psk") +
                                     "': No such file or directory");
}

TEST_F(TlsCredentialsTest, MalformedPskFiles) {
  const std::string where = "TLS PSK file '" + dir_.file("keys.psk") + "' line ";
  EXPECT_EQ(psk_error("", EINVAL), "TLS PSK file '" + dir_.file("keys.psk") + "' holds no keys");
  EXPECT_EQ(psk_error("\n\n", EINVAL),
            "TLS PSK file '" + dir_.file("keys.psk") + "' holds no keys");
  EXPECT_EQ(psk_error("alice:0011\nbob\n", EINVAL), where + "2: expected 'identity:hexkey'");
  EXPECT_EQ(psk_error(":0011\n", EINVAL), where + "1: expected 'identity:hexkey'");
  EXPECT_EQ(psk_error("alice:\n", EINVAL),
            where + "1: the key of 'alice' is not an even number of hex digits");
  EXPECT_EQ(psk_error("alice:abc\n", EINVAL),
            where + "1: the key of 'alice' is not an even number of hex digits");
  EXPECT_EQ(psk_error("alice:zz\n", EINVAL),
            where + "1: the key of 'alice' is not an even number of hex digits");
  EXPECT_EQ(psk_error("alice:00\n\nalice:11\n", EINVAL), where + "3: identity 'alice' repeated");
}

TEST_F(TlsCredentialsTest, PskFileWithSeveralKeysAndCrLf) {
  write_text(dir_.file("keys.psk"), "alice:00112233\r\n\r\nbob:DEADBEEF  \n");
  EXPECT_OK(TlsCredentials::load_psk(dir_.file("keys.psk")));
}

}  // namespace
}  // namespace qblock::nbd
