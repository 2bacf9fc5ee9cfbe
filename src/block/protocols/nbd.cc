// The nbd protocol driver (see nbd.h): opening (address, connection, handshake) and the
// BlockNode hooks mapped onto NBD commands.
#include "block/protocols/nbd.h"

#include <libnbd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "block/protocols/nbd_address.h"
#include "block/protocols/nbd_connection.h"
#include "qblock/driver/uring.h"
#include "qblock/sync.h"
#include "qblock/user_objects.h"

namespace qblock {

namespace {

using nbd_client::NbdAddress;
using nbd_client::NbdCommand;
using nbd_client::NbdConnection;

// The most connections the multi-conn option may ask for.
constexpr uint64_t kMaxConnections = 16;
// The largest read or write sent as one command (QEMU's NBD_MAX_BUFFER_SIZE; libnbd refuses
// payloads above 64 MiB).
constexpr uint64_t kMaxPayload = 32ULL << 20;
// The largest count of a zero, trim or block-status command: the field is 32 bits.
constexpr uint64_t kMaxCount = (1ULL << 31) - 4096;

// The outcome of one blocking connect + handshake, made on a worker thread (libnbd's errors
// are thread-local, so the message is captured there).
struct Handshake {
  nbd_handle* handle = nullptr;
  int error = 0;
  std::string message;
};

int connect_socket(const NbdAddress& address, std::string& message) {
  const std::string failed = "Failed to connect to '" + address.display() + "': ";
  if (address.type == NbdAddress::Type::kUnix) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (address.path.size() >= sizeof(sun.sun_path)) {
      message = "UNIX socket path '" + address.path + "' is too long";
      return -EINVAL;
    }
    std::memcpy(sun.sun_path, address.path.c_str(), address.path.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      int e = errno;
      message = failed + std::strerror(e);
      return -e;
    }
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) {
      int e = errno;
      ::close(fd);
      message = failed + std::strerror(e);
      return -e;
    }
    return fd;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int r = getaddrinfo(address.host.c_str(), address.port.c_str(), &hints, &res);
  if (r != 0) {
    message = "address resolution failed for " + address.host + ":" + address.port + ": " +
              gai_strerror(r);
    return -EINVAL;
  }
  int e = ECONNREFUSED;
  int fd = -1;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      e = errno;
      continue;
    }
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    e = errno;
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    message = failed + std::strerror(e);
    return -e;
  }
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// tls-creds: what libnbd needs of a client tls-creds-x509/-psk object (copied, so that a
// worker thread never reads the registry).
struct ClientTls {
  bool enabled = false;
  TlsCredsType type = TlsCredsType::kX509;
  std::string dir;  // x509: ca-cert.pem, client-cert.pem, client-key.pem (libnbd's layout too)
  bool verify_peer = true;
  std::string psk_file;
  std::string username;
  // x509 over TCP without another tls-hostname: libnbd connects itself (nbd_connect_tcp), the
  // only way it learns the host name to check the certificate against.
  bool libnbd_connects = false;
};

// Applies `tls` to a fresh handle: TLS required, as QEMU's client with tls-creds.
bool set_client_tls(nbd_handle* h, const ClientTls& tls) {
  if (!tls.enabled) return true;
  if (nbd_set_tls(h, LIBNBD_TLS_REQUIRE) != 0) return false;
  if (tls.type == TlsCredsType::kPsk) {
    return nbd_set_tls_psk_file(h, tls.psk_file.c_str()) == 0 &&
           nbd_set_tls_username(h, tls.username.c_str()) == 0;
  }
  return nbd_set_tls_certificates(h, tls.dir.c_str()) == 0 &&
         nbd_set_tls_verify_peer(h, tls.verify_peer) == 0;
}

// QEMU's words for the TLS failures both ends can meet, from libnbd's error text (libnbd
// keeps no text of the server's; the servers' are qemu-nbd's, which qblock nbd shares).
std::string tls_message(const std::string& libnbd_message, bool tls) {
  if (tls && libnbd_message.find("server refused TLS") != std::string::npos) {
    return "Denied by server for option 5 (starttls)\nserver reported: TLS not configured";
  }
  if (!tls && libnbd_message.find("requires TLS") != std::string::npos) {
    return "TLS negotiation required before option 7 (go)\nDid you forget a valid "
           "tls-creds?\nserver reported: Option 0x7 not permitted before TLS";
  }
  return libnbd_message;
}

// Blocking (a worker thread): as connect_and_handshake, but libnbd opens the TCP connection,
// so that it checks the server's certificate against the host name.
Handshake connect_tcp_tls(const NbdAddress& address, const ClientTls& tls) {
  Handshake out;
  nbd_handle* h = nbd_create();
  if (!h) {
    out.error = ENOMEM;
    out.message = nbd_get_error();
    return out;
  }
  if (!set_client_tls(h, tls) || nbd_set_export_name(h, address.export_name.c_str()) != 0 ||
      nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0 ||
      nbd_connect_tcp(h, address.host.c_str(), address.port.c_str()) != 0) {
    out.error = nbd_get_errno() ? nbd_get_errno() : EIO;
    const std::string message = nbd_get_error();
    if (out.error == ENOENT) {
      out.message = "Requested export not available\nserver reported: export '" +
                    address.export_name + "' not present";
    } else if (message.find("connect:") != std::string::npos ||
               message.find("getaddrinfo") != std::string::npos) {
      out.message = "Failed to connect to '" + address.display() + "': " + std::strerror(out.error);
    } else {
      out.message = tls_message(message, true);
    }
    nbd_close(h);
    return out;
  }
  out.handle = h;
  return out;
}

// Blocking: runs on a worker thread.
Handshake connect_and_handshake(const NbdAddress& address, const ClientTls& tls) {
  Handshake out;
  if (tls.libnbd_connects) return connect_tcp_tls(address, tls);
  int fd = connect_socket(address, out.message);
  if (fd < 0) {
    out.error = -fd;
    return out;
  }
  nbd_handle* h = nbd_create();
  if (!h) {
    ::close(fd);
    out.error = ENOMEM;
    out.message = nbd_get_error();
    return out;
  }
  if (!set_client_tls(h, tls)) {
    ::close(fd);
    out.error = nbd_get_errno() ? nbd_get_errno() : EINVAL;
    out.message = nbd_get_error();
    nbd_close(h);
    return out;
  }
  if (nbd_set_export_name(h, address.export_name.c_str()) != 0 ||
      nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0 ||
      nbd_connect_socket(h, fd) != 0) {  // the handle owns fd from here on
    out.error = nbd_get_errno() ? nbd_get_errno() : EIO;
    if (out.error == ENOENT) {
      // The server refused NBD_OPT_GO for this export (NBD_REP_ERR_UNKNOWN); libnbd keeps no
      // text of the server's, so QEMU's wording is rebuilt with qemu-nbd's reason.
      out.message = "Requested export not available\nserver reported: export '" +
                    address.export_name + "' not present";
    } else {
      out.message = tls_message(nbd_get_error(), tls.enabled);
    }
    nbd_close(h);
    return out;
  }
  out.handle = h;
  return out;
}

// A non-negative integer option, QEMU's "Parameter 'x' expects a number" otherwise.
Result<std::optional<uint64_t>> take_number(Options& options, std::string_view key) {
  auto it = options.find(std::string(key));
  if (it == options.end()) return std::optional<uint64_t>();
  uint64_t value = 0;
  bool good = false;
  if (it->is_number_unsigned()) {
    value = it->get<uint64_t>(), good = true;
  } else if (it->is_string()) {
    const std::string s = it->get<std::string>();
    good = !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
    if (good) value = std::stoull(s);
  }
  if (!good) {
    return fail(
        Error::with_message(EINVAL, "Parameter '" + std::string(key) + "' expects a number"));
  }
  options.erase(it);
  return std::optional<uint64_t>(value);
}

// What the extent callback of one block-status command found.
struct ExtentResult {
  uint64_t offset = 0;  // of the request
  uint64_t bytes = 0;   // of the first extent, 0 if none
  uint32_t flags = 0;   // NBD_STATE_*
};

// One NBD command, as execute() sends (and after a reconnect, resends) it. The buffers it
// points to belong to the caller.
struct NbdRequest {
  enum Kind { kRead, kWrite, kZero, kTrim, kFlush, kBlockStatus } kind;
  void* buf = nullptr;  // kRead, kWrite
  uint64_t count = 0;
  uint64_t offset = 0;
  uint32_t flags = 0;              // LIBNBD_CMD_FLAG_*
  ExtentResult* extent = nullptr;  // kBlockStatus
};

class NbdNode : public BlockNode {
 public:
  NbdNode(EventLoop& loop, NbdAddress address, OpenFlags flags)
      : BlockNode(loop, "nbd", NodeKind::kProtocol),
        address_(std::move(address)),
        reconnect_mu_(loop) {
    flags_ = flags;
  }
  void set_reconnect_delay(uint64_t seconds) { reconnect_delay_ = seconds; }
  void set_tls(ClientTls tls, std::string creds_id) {
    tls_ = std::move(tls);
    tls_creds_id_ = std::move(creds_id);
  }
  const ClientTls& tls() const { return tls_; }

  // Takes a connected handle; the first one decides the node's size, flags and limits.
  void add_connection(nbd_handle* h) {
    if (connections_.empty()) describe_export(h);
    connections_.push_back(std::make_unique<NbdConnection>(loop(), h));
    connections_.back()->start();
  }
  bool multi_conn() const { return multi_conn_; }
  bool server_read_only() const { return server_read_only_; }
  const NbdAddress& address() const { return address_; }

  uint64_t length() const override { return size_; }
  std::string filename() const override { return address_.uri(); }
  Options options() const override {
    Options o;
    o["driver"] = "nbd";
    Options server;
    if (address_.type == NbdAddress::Type::kUnix) {
      server["type"] = "unix";
      server["path"] = address_.path;
    } else {
      server["type"] = "inet";
      server["host"] = address_.host;
      server["port"] = address_.port;
    }
    o["server"] = server;
    if (!address_.export_name.empty()) o["export"] = address_.export_name;
    if (!tls_creds_id_.empty()) o["tls-creds"] = tls_creds_id_;
    return o;
  }
  NodeInfo info() const override {
    NodeInfo i;
    i.format_name = "nbd";
    return i;
  }

 protected:
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override;
  Task<Status> do_flush() override;
  Task<Result<BlockStatus>> do_block_status(uint64_t offset, uint64_t bytes,
                                            WantZero want_zero) override;
  Task<Status> do_close() override;

 private:
  void describe_export(nbd_handle* h);
  // The connection for the next request: round robin over the live ones; nullptr if none.
  NbdConnection* pick();
  static Status command_error(int error, const char* what) {
    return fail(Error::from_errno(error, what));
  }
  static int on_extent(void* user_data, const char* context, uint64_t offset, uint32_t* entries,
                       size_t nr_entries, int* error);
  // Issues `r` on `h` with nbd_aio_*; libnbd's cookie or -1.
  static int64_t issue(nbd_handle* h, const NbdRequest& r, NbdCommand& cmd);
  // Runs one command to completion, reconnecting (reconnect-delay) when the connection is
  // lost. Returns 0 or the errno (EIO for a lost connection).
  Task<int> execute(NbdRequest request);
  // pick(), or after a reconnect when every connection is down; nullptr if none came up.
  Task<NbdConnection*> connection();
  // Replaces the dead connection `dead`, retrying for reconnect-delay seconds. True when
  // the command should be sent again.
  Task<bool> reconnect(NbdConnection* dead);

  NbdAddress address_;
  std::vector<std::unique_ptr<NbdConnection>> connections_;
  std::size_t next_ = 0;
  uint64_t size_ = 0;
  bool server_read_only_ = false;
  bool can_flush_ = false;
  bool can_trim_ = false;
  bool can_zero_ = false;
  bool can_block_status_ = false;
  bool multi_conn_ = false;
  uint64_t reconnect_delay_ = 0;  // seconds; 0: a lost connection fails its requests
  ClientTls tls_;
  std::string tls_creds_id_;  // for options(); empty without TLS
  bool closing_ = false;
  AsyncMutex reconnect_mu_;
};

void NbdNode::describe_export(nbd_handle* h) {
  size_ = static_cast<uint64_t>(std::max<int64_t>(nbd_get_size(h), 0));
  server_read_only_ = nbd_is_read_only(h) == 1;
  can_flush_ = nbd_can_flush(h) == 1;
  can_trim_ = nbd_can_trim(h) == 1;
  can_zero_ = nbd_can_zero(h) == 1;
  can_block_status_ = nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  multi_conn_ = nbd_can_multi_conn(h) == 1;
  // The flags the request layer may pass down: FUA where the server honours it (else the
  // layer emulates it with a flush); for write-zeroes MAY_UNMAP (NBD_CMD_WRITE_ZEROES without
  // NO_HOLE) and NO_FALLBACK when the server offers FAST_ZERO.
  const bool fua = nbd_can_fua(h) == 1;
  if (fua) supported_write_flags_ = RequestFlag::kFua;
  if (can_zero_) {
    supported_zero_flags_ = RequestFlag::kMayUnmap;
    if (fua) supported_zero_flags_ = supported_zero_flags_ | RequestFlag::kFua;
    if (nbd_can_fast_zero(h) == 1) {
      supported_zero_flags_ = supported_zero_flags_ | RequestFlag::kNoFallback;
    }
  }
  int64_t min_block = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
  int64_t max_block = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
  limits_.request_alignment = min_block > 0 ? static_cast<uint32_t>(min_block) : 1;
  limits_.max_transfer = kMaxPayload;
  if (max_block > 0) {
    limits_.max_transfer = std::min<uint64_t>(limits_.max_transfer, max_block);
  }
  limits_.max_pwrite_zeroes = kMaxCount;
}

NbdConnection* NbdNode::pick() {
  for (std::size_t tries = 0; tries < connections_.size(); ++tries) {
    NbdConnection* c = connections_[next_++ % connections_.size()].get();
    if (c->alive()) return c;
  }
  return nullptr;
}

int64_t NbdNode::issue(nbd_handle* h, const NbdRequest& r, NbdCommand& cmd) {
  switch (r.kind) {
    case NbdRequest::kRead:
      // Structured replies: libnbd fills holes with zeros and checks the chunks cover it.
      return nbd_aio_pread(h, r.buf, r.count, r.offset, cmd.callback(), 0);
    case NbdRequest::kWrite:
      return nbd_aio_pwrite(h, r.buf, r.count, r.offset, cmd.callback(), r.flags);
    case NbdRequest::kZero: return nbd_aio_zero(h, r.count, r.offset, cmd.callback(), r.flags);
    case NbdRequest::kTrim: return nbd_aio_trim(h, r.count, r.offset, cmd.callback(), 0);
    case NbdRequest::kFlush: return nbd_aio_flush(h, cmd.callback(), 0);
    case NbdRequest::kBlockStatus: {
      *r.extent = ExtentResult{r.offset, 0, 0};
      nbd_extent_callback extent{.callback = &on_extent, .user_data = r.extent, .free = nullptr};
      return nbd_aio_block_status(h, r.count, r.offset, extent, cmd.callback(),
                                  LIBNBD_CMD_FLAG_REQ_ONE);
    }
  }
  return -1;
}

Task<int> NbdNode::execute(NbdRequest request) {
  for (;;) {
    NbdConnection* c = co_await connection();
    if (!c) co_return EIO;
    NbdCommand cmd(loop());
    int64_t cookie = issue(c->handle(), request, cmd);
    int e = c->issued(cookie);
    if (!e) {
      co_await cmd;
      e = cmd.error();
    }
    if (!e) co_return 0;
    if (c->alive()) co_return e;  // the server's answer
    // The connection is gone (the command failed with it): with reconnect-delay, wait for a
    // new one and send the command again; else fail as QEMU does, with EIO.
    bool again = co_await reconnect(c);
    if (!again) co_return EIO;
  }
}

Task<NbdConnection*> NbdNode::connection() {
  NbdConnection* c = pick();
  if (c || connections_.empty()) co_return c;
  bool up = co_await reconnect(connections_.front().get());
  co_return up ? pick() : nullptr;
}

Task<bool> NbdNode::reconnect(NbdConnection* dead) {
  if (reconnect_delay_ == 0 || closing_) co_return false;
  AsyncMutex::Guard guard = co_await reconnect_mu_.lock();
  auto slot = std::find_if(connections_.begin(), connections_.end(),
                           [dead](const auto& c) { return c.get() == dead; });
  // Replaced meanwhile by another request's reconnect (or the address was reused by a new,
  // live connection): send again.
  if (slot == connections_.end() || (*slot)->alive()) co_return true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(reconnect_delay_);
  for (;;) {
    Handshake hs;
    const NbdAddress& where = address_;
    const ClientTls& tls = tls_;
    WorkerOp op = uring::run_in_worker(loop(), [&hs, &where, &tls] {
      hs = connect_and_handshake(where, tls);
      return 0;
    });
    (void)co_await op;
    if (hs.handle && static_cast<uint64_t>(nbd_get_size(hs.handle)) != size_) {
      nbd_close(hs.handle);  // another export now: never write to it
      co_return false;
    }
    if (hs.handle) {
      std::unique_ptr<NbdConnection> old = std::move(*slot);
      *slot = std::make_unique<NbdConnection>(loop(), hs.handle);
      (*slot)->start();
      co_await old->shutdown();
      co_return true;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline || closing_) co_return false;
    auto pause = std::min<std::chrono::nanoseconds>(std::chrono::seconds(1), deadline - now);
    (void)co_await uring::sleep(loop(), pause);
  }
}

Task<Status> NbdNode::do_read(uint64_t offset, IoVec qiov, RequestFlags) {
  // Past the end of the export reads as zeros, as past the end of a file (a format may read
  // a whole cluster at the end of its file); the server is asked only for the rest.
  if (offset + qiov.size() > size_) {
    const uint64_t inside = offset < size_ ? size_ - offset : 0;
    qiov.memset(inside, 0, qiov.size() - inside);
    if (inside == 0) co_return ok();
    qiov = qiov.slice(0, inside);
  }
  const uint64_t bytes = qiov.size();
  // libnbd reads into one buffer; scattered requests bounce.
  AlignedBuffer bounce;
  void* buf = qiov.data()[0].iov_base;
  if (qiov.count() != 1) {
    bounce = AlignedBuffer(bytes, 64);
    buf = bounce.data();
  }
  int e =
      co_await execute({.kind = NbdRequest::kRead, .buf = buf, .count = bytes, .offset = offset});
  if (e) co_return command_error(e, "read");
  if (bounce.size()) qiov.copy_from(0, bounce.data(), bytes);
  co_return ok();
}

Task<Status> NbdNode::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  // An export cannot grow.
  if (offset + qiov.size() > size_) co_return fail(Error::no_space());
  const uint64_t bytes = qiov.size();
  AlignedBuffer bounce;
  void* buf = qiov.data()[0].iov_base;
  if (qiov.count() != 1) {
    bounce = AlignedBuffer(bytes, 64);
    qiov.copy_to(0, bounce.data(), bytes);
    buf = bounce.data();
  }
  uint32_t nbd_flags = flags.has(RequestFlag::kFua) ? LIBNBD_CMD_FLAG_FUA : 0;
  int e = co_await execute({.kind = NbdRequest::kWrite,
                            .buf = buf,
                            .count = bytes,
                            .offset = offset,
                            .flags = nbd_flags});
  if (e) co_return command_error(e, "write");
  co_return ok();
}

Task<Status> NbdNode::do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  if (!can_zero_) co_return fail(Error::unsupported());
  if (offset + bytes > size_) co_return fail(Error::no_space());
  uint32_t nbd_flags = 0;
  // Without MAY_UNMAP the range must stay allocated: the ALLOCATE flag reaches the server as
  // a zero write that keeps its blocks.
  if (!flags.has(RequestFlag::kMayUnmap)) nbd_flags |= LIBNBD_CMD_FLAG_NO_HOLE;
  // NO_FALLBACK: the server must fail fast (ENOTSUP) rather than write zeros slowly.
  if (flags.has(RequestFlag::kNoFallback)) nbd_flags |= LIBNBD_CMD_FLAG_FAST_ZERO;
  if (flags.has(RequestFlag::kFua)) nbd_flags |= LIBNBD_CMD_FLAG_FUA;
  int e = co_await execute(
      {.kind = NbdRequest::kZero, .count = bytes, .offset = offset, .flags = nbd_flags});
  if (e) co_return command_error(e, "write zeroes");
  co_return ok();
}

Task<Status> NbdNode::do_discard(uint64_t offset, uint64_t bytes) {
  if (!can_trim_ || offset >= size_) co_return ok();  // discard is advisory
  bytes = std::min(bytes, size_ - offset);
  int e = co_await execute({.kind = NbdRequest::kTrim, .count = bytes, .offset = offset});
  if (e) co_return command_error(e, "discard");
  co_return ok();
}

Task<Status> NbdNode::do_flush() {
  if (!can_flush_ || flags_.no_flush) co_return ok();
  // One flush is enough even with several connections: multi-conn promises that a flush
  // covers the writes completed on every connection.
  int e = co_await execute({.kind = NbdRequest::kFlush});
  if (e) co_return command_error(e, "flush");
  co_return ok();
}

int NbdNode::on_extent(void* user_data, const char* context, uint64_t offset, uint32_t* entries,
                       size_t nr_entries, int*) {
  auto* r = static_cast<ExtentResult*>(user_data);
  if (std::strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0) return 0;
  if (r->bytes || nr_entries < 2 || offset != r->offset) return 0;
  r->bytes = entries[0];
  r->flags = entries[1];
  return 0;
}

Task<Result<BlockStatus>> NbdNode::do_block_status(uint64_t offset, uint64_t bytes, WantZero) {
  BlockStatus st{kStatusData | kStatusOffsetValid, bytes, offset, this};
  if (!can_block_status_) co_return st;
  bytes = std::min<uint64_t>({bytes, kMaxCount, size_ - offset});
  ExtentResult result;
  int e = co_await execute(
      {.kind = NbdRequest::kBlockStatus, .count = bytes, .offset = offset, .extent = &result});
  if (e) co_return fail(Error::from_errno(e, "block status"));
  // A server that answers nothing usable leaves the range as data (always correct).
  if (result.bytes == 0) co_return st;
  st.bytes = std::min<uint64_t>(bytes, result.bytes);
  st.flags = kStatusOffsetValid;
  if (!(result.flags & LIBNBD_STATE_HOLE)) st.flags |= kStatusData;
  if (result.flags & LIBNBD_STATE_ZERO) st.flags |= kStatusZero;
  co_return st;
}

Task<Status> NbdNode::do_close() {
  closing_ = true;
  for (auto& c : connections_) co_await c->shutdown();
  connections_.clear();
  co_return ok();
}

}  // namespace

Task<Result<NodePtr>> open_nbd_node(OpenContext& ctx, Options& options) {
  Result<NbdAddress> address = nbd_client::take_nbd_address(options);
  if (!address) co_return fail(address.error());
  auto tls_id = take_string(options, "tls-creds");
  if (!tls_id) co_return fail(tls_id.error());
  auto tls_hostname = take_string(options, "tls-hostname");
  if (!tls_hostname) co_return fail(tls_hostname.error());
  ClientTls tls;
  if (*tls_id) {
    Result<const TlsCredsObject*> creds = user_objects().tls_creds(**tls_id, TlsEndpoint::kClient);
    if (!creds) co_return fail(creds.error());
    const TlsCredsObject& c = **creds;
    tls.enabled = true;
    tls.type = c.type;
    tls.dir = c.dir;
    tls.verify_peer = c.verify_peer;
    tls.psk_file = c.psk_file();
    tls.username = c.username;
    // QEMU checks x509 certificates against tls-hostname, else the server's host name; a
    // Unix socket has none. (libnbd checks the chain; the name only over TCP, against the
    // host, as it knows no other.)
    if (c.type == TlsCredsType::kX509 && !*tls_hostname &&
        address->type == NbdAddress::Type::kUnix) {
      co_return fail(Error::with_message(EINVAL, "No hostname for certificate validation"));
    }
    tls.libnbd_connects = c.type == TlsCredsType::kX509 &&
                          address->type == NbdAddress::Type::kInet &&
                          (!*tls_hostname || **tls_hostname == address->host);
  }
  auto reconnect = take_number(options, "reconnect-delay");
  if (!reconnect) co_return fail(reconnect.error());
  auto open_timeout = take_number(options, "open-timeout");
  if (!open_timeout) co_return fail(open_timeout.error());
  // qblock's own: connections to open when the server advertises multi-conn. One by default,
  // as QEMU: a server that admits fewer clients (qemu-nbd -e) would leave an extra
  // connection's handshake waiting for ever.
  auto conns = take_number(options, "multi-conn");
  if (!conns) co_return fail(conns.error());
  const uint64_t want = std::clamp<uint64_t>(conns->value_or(1), 1, kMaxConnections);
  // Taken so they are not reported as unsupported; the node has no meaning for them.
  options.erase("x-dirty-bitmap");

  auto node = std::make_unique<NbdNode>(ctx.loop, *address, ctx.flags);
  node->set_reconnect_delay(reconnect->value_or(0));
  node->set_tls(std::move(tls), tls_id->value_or(""));
  const NbdAddress& where = node->address();
  const auto open_deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(open_timeout->value_or(0));
  for (uint64_t i = 0; i < want;) {
    Handshake hs;
    // The connect and the handshake block: they run on a worker thread.
    const ClientTls& node_tls = node->tls();
    WorkerOp op = uring::run_in_worker(ctx.loop, [&hs, &where, &node_tls] {
      hs = connect_and_handshake(where, node_tls);
      return 0;
    });
    (void)co_await op;
    // open-timeout: the first connection is retried (once a second) for that long while the
    // server is not there yet.
    if (!hs.handle && i == 0 && std::chrono::steady_clock::now() < open_deadline) {
      (void)co_await uring::sleep(ctx.loop, std::chrono::seconds(1));
      continue;
    }
    if (!hs.handle) {
      if (i == 0) co_return fail(Error::with_message(hs.error, hs.message));
      break;  // the extra connections are an optimisation only
    }
    node->add_connection(hs.handle);
    if (i == 0 && node->server_read_only() && !ctx.flags.read_only) {
      (void)co_await node->close();
      co_return fail(Error::with_message(EACCES, "Could not open image: Permission denied"));
    }
    // Several connections only where the server promises they see each other's writes.
    if (!node->multi_conn()) break;
    ++i;
  }
  co_return NodePtr(std::move(node));
}

}  // namespace qblock
