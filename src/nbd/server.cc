#include "nbd/server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "base/byte_order.h"
#include "block/chain_status.h"
#include "nbd/protocol.h"
#include "nbd/tls.h"
#include "qblock/dirty_bitmaps.h"
#include "qblock/driver/uring.h"
#include "runtime/sync.h"

namespace qblock::nbd {

namespace {

constexpr std::size_t kInputBufferBytes = 64 * 1024;
// Reads at least this long bypass the input buffer and land in the caller's memory.
constexpr std::size_t kDirectReadBytes = 16 * 1024;
// A read is split into data and hole chunks for at most this many extents; the rest of the
// range goes out as data.
constexpr int kMaxReadExtents = 32;
// Extents per block-status chunk (each is 8 bytes on the wire).
constexpr std::size_t kMaxStatusExtents = 1 << 16;
constexpr uint32_t kPreferredBlockBytes = 4096;

constexpr uint16_t kKnownCommandFlags =
    kCmdFlagFua | kCmdFlagNoHole | kCmdFlagDf | kCmdFlagReqOne | kCmdFlagFastZero;

// Big-endian serialisation into a growing byte vector.
class Writer {
 public:
  void u16(uint16_t v) { put(v, store_be16); }
  void u32(uint32_t v) { put(v, store_be32); }
  void u64(uint64_t v) { put(v, store_be64); }
  void bytes(std::string_view s) { out_.insert(out_.end(), s.begin(), s.end()); }
  void zeroes(std::size_t n) { out_.insert(out_.end(), n, 0); }
  std::vector<uint8_t>& data() { return out_; }

 private:
  template <typename T, typename Store>
  void put(T v, Store store) {
    const std::size_t at = out_.size();
    out_.resize(at + sizeof(T));
    store(out_.data() + at, v);
  }
  std::vector<uint8_t> out_;
};

// Bounds-checked big-endian reading of an option's payload.
class Reader {
 public:
  explicit Reader(const std::vector<uint8_t>& data) : data_(data) {}
  bool u16(uint16_t& v) { return take(2) && (v = load_be16(at_ - 2), true); }
  bool u32(uint32_t& v) { return take(4) && (v = load_be32(at_ - 4), true); }
  bool string(uint32_t len, std::string& s) {
    if (!take(len)) return false;
    s.assign(reinterpret_cast<const char*>(at_ - len), len);
    return true;
  }
  bool at_end() const { return pos_ == data_.size(); }

 private:
  bool take(std::size_t n) {
    if (data_.size() - pos_ < n) return false;
    pos_ += n;
    at_ = data_.data() + pos_;
    return true;
  }
  const std::vector<uint8_t>& data_;
  std::size_t pos_ = 0;
  const uint8_t* at_ = nullptr;
};

// Block status as the export's meta contexts see it: the first layer of the backing chain
// that allocates an extent decides, with or without data (qemu:allocation-depth counts it).
ChainStatusQuery export_query(WantZero want_zero) {
  ChainStatusQuery query;
  query.want_zero = want_zero;
  query.allocated_decides = true;
  return query;
}

struct Request {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};

}  // namespace

// ---- server state ----------------------------------------------------------------------------

// One export: what a client names in NBD_OPT_GO (or EXPORT_NAME) to be served.
struct Server::Export {
  BlockBackend* backend;
  ExportOptions options;
};

struct Server::State {
  State(EventLoop& lp, const TlsCredentials* t, ServerLimits l)
      : loop(lp), tls(t), limits(l), changed(lp) {}
  // The export called `name`, or null.
  std::shared_ptr<Export> find(const std::string& name) const {
    for (const auto& e : exports) {
      if (e->options.name == name) return e;
    }
    return nullptr;
  }
  EventLoop& loop;
  // In the order they were added (NBD_OPT_LIST lists them so). Connections hold the one
  // they chose, so a removed export outlives their last request.
  std::vector<std::shared_ptr<Export>> exports;
  const TlsCredentials* tls;
  std::string tls_authz;  // set_tls_authz()
  std::function<void(const std::string&)> report_authz_denial;
  ServerLimits limits;
  std::vector<Connection*> connections;
  WaitQueue changed;  // a connection came or went
  int listen_fd = -1;
  bool stopping = false;
  bool reaper_running = false;
  bool served_any = false;
  bool persistent = true;
};

// ---- one connection --------------------------------------------------------------------------

class Server::Connection {
 public:
  Connection(Server::State& server, std::unique_ptr<Stream> stream)
      : server_(server),
        loop_(server.loop),
        stream_(std::move(stream)),
        input_(kInputBufferBytes),
        capacity_(loop_),
        idle_(loop_) {}

  Task<void> run();
  void stop() {
    stopping_ = true;
    if (stream_) {
      stream_->shutdown();
    } else if (handshake_fd_ >= 0) {
      ::shutdown(handshake_fd_, SHUT_RDWR);  // in the middle of the TLS handshake
    }
  }
  // The export chosen with NBD_OPT_GO or EXPORT_NAME; null while negotiating.
  const Export* chosen_export() const { return export_.get(); }
  // Ends the connection if it is still negotiating after its deadline (a client that
  // connects and stalls must not hold a slot of `-e` for ever).
  void expire_if_stalled(std::chrono::steady_clock::time_point now) {
    if (negotiating_ && now >= negotiation_deadline_) stop();
  }

 private:
  // ---- input --------------------------------------------------------------------------------
  Task<Status> read_exact(void* dst, std::size_t n);
  Task<Status> skip_input(uint64_t n);

  // ---- negotiation --------------------------------------------------------------------------
  enum class Next { kOptions, kTransmission, kClose };
  Task<bool> negotiate();
  Task<Next> handle_option(uint32_t option, std::vector<uint8_t> data);
  Task<Status> send_option_reply(uint32_t option, uint32_t type, std::vector<uint8_t> payload);
  Task<Status> send_option_error(uint32_t option, uint32_t type, std::string message);
  // Sends an option error and goes on negotiating (or closes if the client is gone).
  Task<Next> refuse(uint32_t option, uint32_t type, std::string message);
  Task<Next> handle_info(uint32_t option, const std::vector<uint8_t>& data);
  Task<Next> handle_meta_context(uint32_t option, const std::vector<uint8_t>& data);
  Task<Next> start_tls();
  uint16_t transmission_flags(const Export& e) const;
  static bool read_only(const Export& e) { return e.options.read_only || e.backend->read_only(); }
  bool read_only() const { return read_only(*export_); }
  // The chosen export's (transmission only).
  BlockBackend& backend() const { return *export_->backend; }
  const ExportOptions& options() const { return export_->options; }

  // ---- transmission -------------------------------------------------------------------------
  Task<void> transmit();
  uint32_t validate(const Request& req) const;
  Task<void> handle(Request req, AlignedBuffer payload, uint32_t error);
  Task<Status> serve_read(const Request& req);
  // Commands whose reply carries no data: write, write-zeroes, trim, flush, cache.
  Task<Status> serve_command(const Request& req, AlignedBuffer& payload);
  Task<Status> serve_block_status(const Request& req);
  Task<Status> send_error(const Request& req, uint32_t error);
  Task<Status> send_simple(const Request& req, uint32_t error);
  void chunk_header(uint8_t* out, const Request& req, uint16_t flags, uint16_t type,
                    uint32_t length) const;
  // Sends one reply; replies queued while another is being sent go out with it in one
  // sendmsg. Returns when this reply has been sent.
  Task<Status> send(std::span<const iovec> iov);

  struct PendingReply {
    std::span<const iovec> iov;
    std::coroutine_handle<> waiter;
    PendingReply* next = nullptr;
    Status result;
  };
  struct WaitSent {
    PendingReply& reply;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) noexcept { reply.waiter = h; }
    void await_resume() const noexcept {}
  };

  Server::State& server_;
  std::shared_ptr<Export> export_;
  EventLoop& loop_;
  std::unique_ptr<Stream> stream_;

  std::vector<uint8_t> input_;
  std::size_t input_pos_ = 0;
  std::size_t input_end_ = 0;

  bool no_zeroes_ = false;
  bool fixed_newstyle_ = false;
  bool tls_active_ = false;
  bool structured_ = false;
  bool context_base_ = false;
  bool context_depth_ = false;
  std::vector<uint32_t> context_bitmaps_;  // indexes into options().bitmaps
  bool stopping_ = false;
  bool broken_ = false;  // a reply could not be sent: the connection is over
  bool negotiating_ = false;
  std::chrono::steady_clock::time_point negotiation_deadline_;
  int handshake_fd_ = -1;  // the socket while tls_accept owns it

  uint32_t requests_in_flight_ = 0;
  uint64_t bytes_in_flight_ = 0;
  WaitQueue capacity_;  // a request finished (room for another)
  WaitQueue idle_;      // nothing in flight any more

  PendingReply* reply_head_ = nullptr;
  PendingReply* reply_tail_ = nullptr;
  bool sending_ = false;
  std::vector<iovec> gather_;
};

Task<Status> Server::Connection::read_exact(void* dst, std::size_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  const std::size_t buffered = std::min(n, input_end_ - input_pos_);
  std::memcpy(out, input_.data() + input_pos_, buffered);
  input_pos_ += buffered;
  out += buffered;
  n -= buffered;
  while (n > 0) {
    const bool direct = n >= kDirectReadBytes;
    Task<Result<std::size_t>> recv =
        direct ? stream_->read_some(out, n) : stream_->read_some(input_.data(), input_.size());
    Result<std::size_t> got = co_await std::move(recv);
    if (!got) co_return tl::unexpected(got.error());
    if (*got == 0) co_return tl::unexpected(Error::from_errno(ECONNRESET, "peer closed"));
    if (direct) {
      out += *got;
      n -= *got;
      continue;
    }
    const std::size_t take = std::min(n, *got);
    std::memcpy(out, input_.data(), take);
    input_pos_ = take;
    input_end_ = *got;
    out += take;
    n -= take;
  }
  co_return Status{};
}

Task<Status> Server::Connection::skip_input(uint64_t n) {
  std::vector<uint8_t> sink(std::min<uint64_t>(n, kInputBufferBytes));
  while (n > 0) {
    const std::size_t step = static_cast<std::size_t>(std::min<uint64_t>(n, sink.size()));
    Status s = co_await read_exact(sink.data(), step);
    if (!s) co_return s;
    n -= step;
  }
  co_return Status{};
}

// ---- negotiation -----------------------------------------------------------------------------

uint16_t Server::Connection::transmission_flags(const Export& e) const {
  uint16_t flags = kTxHasFlags | kTxSendFlush | kTxSendDf | kTxSendCache;
  if (read_only(e)) {
    flags |= kTxReadOnly;
  } else {
    flags |= kTxSendFua | kTxSendTrim | kTxSendWriteZeroes | kTxSendFastZero;
  }
  if (e.options.multi_conn) flags |= kTxCanMultiConn;
  return flags;
}

Task<Status> Server::Connection::send_option_reply(uint32_t option, uint32_t type,
                                                   std::vector<uint8_t> payload) {
  Writer w;
  w.u64(kOptionReplyMagic);
  w.u32(option);
  w.u32(type);
  w.u32(static_cast<uint32_t>(payload.size()));
  w.data().insert(w.data().end(), payload.begin(), payload.end());
  const iovec iov{w.data().data(), w.data().size()};
  co_return co_await stream_->write_all(std::span<const iovec>(&iov, 1));
}

Task<Status> Server::Connection::send_option_error(uint32_t option, uint32_t type,
                                                   std::string message) {
  std::vector<uint8_t> text(message.begin(), message.end());
  co_return co_await send_option_reply(option, type, std::move(text));
}

Task<Server::Connection::Next> Server::Connection::refuse(uint32_t option, uint32_t type,
                                                          std::string message) {
  Status s = co_await send_option_error(option, type, std::move(message));
  co_return s ? Next::kOptions : Next::kClose;
}

Task<bool> Server::Connection::negotiate() {
  Writer hello;
  hello.u64(kNbdMagic);
  hello.u64(kOptionMagic);
  hello.u16(kFlagFixedNewstyle | kFlagNoZeroes);
  const iovec iov{hello.data().data(), hello.data().size()};
  Status sent = co_await stream_->write_all(std::span<const iovec>(&iov, 1));
  if (!sent) co_return false;

  uint8_t raw_flags[4];
  Status got = co_await read_exact(raw_flags, sizeof raw_flags);
  if (!got) co_return false;
  const uint32_t client_flags = load_be32(raw_flags);
  if (client_flags & ~(kClientFixedNewstyle | kClientNoZeroes)) co_return false;
  fixed_newstyle_ = client_flags & kClientFixedNewstyle;
  no_zeroes_ = client_flags & kClientNoZeroes;

  for (;;) {
    uint8_t header[16];
    Status h = co_await read_exact(header, sizeof header);
    if (!h) co_return false;
    if (load_be64(header) != kOptionMagic) co_return false;
    const uint32_t option = load_be32(header + 8);
    const uint32_t length = load_be32(header + 12);
    // Options are short (names and queries); a huge length is an attack, not a request.
    if (length > kMaxOptionBytes) co_return false;
    std::vector<uint8_t> data(length);
    if (length > 0) {
      Status d = co_await read_exact(data.data(), length);
      if (!d) co_return false;
    }
    Task<Next> step = handle_option(option, std::move(data));
    const Next next = co_await std::move(step);
    if (next == Next::kClose) co_return false;
    if (next == Next::kTransmission) co_return true;
  }
}

Task<Server::Connection::Next> Server::Connection::handle_option(uint32_t option,
                                                                 std::vector<uint8_t> data) {
  const bool tls_required = server_.tls != nullptr && !tls_active_;
  if (tls_required && option != kOptStartTls && option != kOptAbort) {
    if (option == kOptExportName) co_return Next::kClose;  // no way to send an error
    // qemu-nbd's words, which QEMU's client shows as "server reported: ...".
    char why[64];
    std::snprintf(why, sizeof(why), "Option 0x%" PRIx32 " not permitted before TLS", option);
    co_return co_await refuse(option, kRepErrTlsReqd, why);
  }
  switch (option) {
    case kOptExportName: {
      const std::string name(data.begin(), data.end());
      export_ = server_.find(name);
      if (export_ == nullptr) co_return Next::kClose;
      Writer w;
      w.u64(backend().length());
      w.u16(transmission_flags(*export_));
      if (!no_zeroes_) w.zeroes(124);
      const iovec iov{w.data().data(), w.data().size()};
      Status s = co_await stream_->write_all(std::span<const iovec>(&iov, 1));
      co_return s ? Next::kTransmission : Next::kClose;
    }
    case kOptAbort: {
      Status s = co_await send_option_reply(option, kRepAck, {});
      (void)s;  // the client may already be gone, as it is allowed to be
      co_return Next::kClose;
    }
    case kOptList: {
      if (!data.empty()) {
        co_return co_await refuse(option, kRepErrInvalid, "LIST takes no data");
      }
      // A copy: the list may change while replies are sent.
      const std::vector<std::shared_ptr<Export>> exports = server_.exports;
      for (const std::shared_ptr<Export>& e : exports) {
        Writer w;
        w.u32(static_cast<uint32_t>(e->options.name.size()));
        w.bytes(e->options.name);
        w.bytes(e->options.description);
        Status s = co_await send_option_reply(option, kRepServer, std::move(w.data()));
        if (!s) co_return Next::kClose;
      }
      Status a = co_await send_option_reply(option, kRepAck, {});
      co_return a ? Next::kOptions : Next::kClose;
    }
    case kOptStartTls: {
      Task<Next> step = start_tls();
      co_return co_await std::move(step);
    }
    case kOptInfo:
    case kOptGo: {
      Task<Next> step = handle_info(option, data);
      co_return co_await std::move(step);
    }
    case kOptStructuredReply: {
      if (!data.empty() || structured_) {
        co_return co_await refuse(
            option, kRepErrInvalid,
            structured_ ? "structured replies already negotiated" : "option takes no data");
      }
      structured_ = true;
      Status s = co_await send_option_reply(option, kRepAck, {});
      co_return s ? Next::kOptions : Next::kClose;
    }
    case kOptListMetaContext:
    case kOptSetMetaContext: {
      Task<Next> step = handle_meta_context(option, data);
      co_return co_await std::move(step);
    }
    default: {
      // A client that did not ask for fixed newstyle cannot parse an error reply.
      if (!fixed_newstyle_) co_return Next::kClose;
      co_return co_await refuse(option, kRepErrUnsup, "unsupported option");
    }
  }
}

Task<Server::Connection::Next> Server::Connection::start_tls() {
  uint32_t error = 0;
  const char* why = "";
  if (server_.tls == nullptr) {
    error = kRepErrPolicy, why = "TLS not configured";
  } else if (tls_active_) {
    error = kRepErrInvalid, why = "TLS already negotiated";
  }
  if (error != 0) {
    co_return co_await refuse(kOptStartTls, error, why);
  }
  Status ack = co_await send_option_reply(kOptStartTls, kRepAck, {});
  if (!ack) co_return Next::kClose;
  // Bytes already buffered were sent before the handshake: the client is not speaking TLS.
  if (input_end_ != input_pos_) co_return Next::kClose;
  auto* socket = dynamic_cast<SocketStream*>(stream_.get());
  if (socket == nullptr) co_return Next::kClose;
  const int fd = socket->release();
  stream_.reset();
  handshake_fd_ = fd;
  Task<Result<std::unique_ptr<Stream>>> handshake =
      tls_accept(loop_, fd, *server_.tls, server_.tls_authz);
  Result<std::unique_ptr<Stream>> tls = co_await std::move(handshake);
  handshake_fd_ = -1;
  if (!tls) {
    if (tls.error().errnum() == EACCES && server_.report_authz_denial) {
      server_.report_authz_denial("option negotiation failed: " + tls.error().message());
    }
    co_return Next::kClose;
  }
  stream_ = std::move(*tls);
  if (stopping_) stream_->shutdown();
  tls_active_ = true;
  co_return Next::kOptions;
}

Task<Server::Connection::Next> Server::Connection::handle_info(uint32_t option,
                                                               const std::vector<uint8_t>& data) {
  Reader r(data);
  uint32_t name_len = 0;
  std::string name;
  uint16_t count = 0;
  std::vector<uint16_t> wanted;
  bool well_formed =
      r.u32(name_len) && name_len <= kMaxStringBytes && r.string(name_len, name) && r.u16(count);
  for (uint16_t i = 0; well_formed && i < count; ++i) {
    uint16_t type = 0;
    well_formed = r.u16(type);
    wanted.push_back(type);
  }
  if (!well_formed || !r.at_end()) {
    co_return co_await refuse(option, kRepErrInvalid, "malformed INFO/GO request");
  }
  std::shared_ptr<Export> found = server_.find(name);
  if (found == nullptr) {
    co_return co_await refuse(option, kRepErrUnknown, "export '" + name + "' not present");
  }
  // GO chooses the export now, so that removing it ends this connection from here on.
  if (option == kOptGo) export_ = found;
  const Export& e = *found;
  const auto want = [&](uint16_t type) {
    return std::find(wanted.begin(), wanted.end(), type) != wanted.end();
  };
  std::vector<std::vector<uint8_t>> items;
  if (want(kInfoName)) {
    Writer w;
    w.u16(kInfoName);
    w.bytes(e.options.name);
    items.push_back(std::move(w.data()));
  }
  if (want(kInfoDescription) && !e.options.description.empty()) {
    Writer w;
    w.u16(kInfoDescription);
    w.bytes(e.options.description);
    items.push_back(std::move(w.data()));
  }
  {
    Writer w;
    w.u16(kInfoBlockSize);
    w.u32(1);
    w.u32(kPreferredBlockBytes);
    w.u32(kMaxPayloadBytes);
    items.push_back(std::move(w.data()));
  }
  {
    Writer w;
    w.u16(kInfoExport);
    w.u64(e.backend->length());
    w.u16(transmission_flags(e));
    items.push_back(std::move(w.data()));
  }
  for (std::vector<uint8_t>& item : items) {
    Status s = co_await send_option_reply(option, kRepInfo, std::move(item));
    if (!s) co_return Next::kClose;
  }
  Status a = co_await send_option_reply(option, kRepAck, {});
  if (!a) co_return Next::kClose;
  co_return option == kOptGo ? Next::kTransmission : Next::kOptions;
}

Task<Server::Connection::Next> Server::Connection::handle_meta_context(
    uint32_t option, const std::vector<uint8_t>& data) {
  const bool set = option == kOptSetMetaContext;
  if (set && !structured_) {
    co_return co_await refuse(option, kRepErrInvalid,
                              "structured replies must be negotiated first");
  }
  Reader r(data);
  uint32_t name_len = 0;
  std::string name;
  uint32_t count = 0;
  bool well_formed =
      r.u32(name_len) && name_len <= kMaxStringBytes && r.string(name_len, name) && r.u32(count);
  bool base = false;
  bool depth = false;
  std::vector<std::string> queries;
  for (uint32_t i = 0; well_formed && i < count; ++i) {
    uint32_t len = 0;
    std::string query;
    well_formed = r.u32(len) && len <= kMaxStringBytes && r.string(len, query);
    if (query == kContextBaseAllocation || (!set && query == "base:")) base = true;
    if (query == kContextAllocationDepth || (!set && query == "qemu:")) depth = true;
    queries.push_back(std::move(query));
  }
  if (!well_formed || !r.at_end()) {
    co_return co_await refuse(option, kRepErrInvalid, "malformed meta context request");
  }
  std::shared_ptr<Export> e = server_.find(name);
  if (e == nullptr) {
    co_return co_await refuse(option, kRepErrUnknown, "export '" + name + "' not present");
  }
  // qemu:dirty-bitmap:NAME for each exported bitmap asked for; a LIST of "qemu:" or of the
  // bare prefix names them all.
  std::vector<uint32_t> bitmaps;
  const std::string prefix = kContextDirtyBitmapPrefix;
  for (uint32_t b = 0; b < e->options.bitmaps.size(); ++b) {
    const std::string context = prefix + e->options.bitmaps[b];
    bool all = !set && count == 0;
    for (const std::string& q : queries) {
      if (q == context || (!set && (q == "qemu:" || q == prefix))) {
        all = true;
        break;
      }
    }
    if (all) bitmaps.push_back(b);
  }
  if (!set && count == 0) base = depth = true;  // an empty LIST asks for everything
  if (set) {
    context_base_ = base;
    context_depth_ = depth;
    context_bitmaps_ = bitmaps;
  }
  const std::pair<bool, std::pair<uint32_t, std::string_view>> contexts[] = {
      {base, {kContextIdBaseAllocation, kContextBaseAllocation}},
      {depth, {kContextIdAllocationDepth, kContextAllocationDepth}},
  };
  for (const auto& [chosen, context] : contexts) {
    if (!chosen) continue;
    Writer w;
    w.u32(set ? context.first : 0);
    w.bytes(context.second);
    Status s = co_await send_option_reply(option, kRepMetaContext, std::move(w.data()));
    if (!s) co_return Next::kClose;
  }
  for (uint32_t b : bitmaps) {
    Writer w;
    w.u32(set ? kContextIdFirstBitmap + b : 0);
    w.bytes(prefix + e->options.bitmaps[b]);
    Status s = co_await send_option_reply(option, kRepMetaContext, std::move(w.data()));
    if (!s) co_return Next::kClose;
  }
  Status a = co_await send_option_reply(option, kRepAck, {});
  co_return a ? Next::kOptions : Next::kClose;
}

// ---- transmission ----------------------------------------------------------------------------

Task<void> Server::Connection::run() {
  negotiating_ = true;
  negotiation_deadline_ = std::chrono::steady_clock::now() + server_.limits.handshake_limit;
  Task<bool> negotiation = negotiate();
  const bool transmission = co_await std::move(negotiation);
  negotiating_ = false;
  if (transmission && !stopping_) {
    Task<void> serve = transmit();
    co_await std::move(serve);
  }
  if (stream_) stream_->shutdown();
}

uint32_t Server::Connection::validate(const Request& req) const {
  if (req.flags & ~kKnownCommandFlags) return kErrInval;
  const uint64_t size = backend().length();
  const bool past_end = req.offset > size || req.length > size - req.offset;
  switch (req.type) {
    case kCmdRead:
      if ((req.flags & kCmdFlagDf) && !structured_) return kErrInval;
      [[fallthrough]];
    case kCmdCache:
      if (req.length > kMaxPayloadBytes) return kErrInval;
      return past_end ? uint32_t{kErrInval} : 0;
    case kCmdWrite:
    case kCmdTrim:
    case kCmdWriteZeroes:
      if (req.type == kCmdWrite && req.length > kMaxPayloadBytes) return kErrInval;
      if (read_only()) return kErrPerm;
      return past_end ? uint32_t{kErrInval} : 0;
    case kCmdFlush: return 0;
    case kCmdBlockStatus:
      if (!context_base_ && !context_depth_ && context_bitmaps_.empty()) return kErrInval;
      return past_end || req.length == 0 ? uint32_t{kErrInval} : 0;
    default: return kErrInval;
  }
}

Task<void> Server::Connection::transmit() {
  const ServerLimits& limits = server_.limits;
  while (!stopping_ && !broken_) {
    // Flow control: a client with too much in flight is simply not read from.
    while (requests_in_flight_ >= limits.max_requests_in_flight && !stopping_ && !broken_) {
      co_await capacity_.wait();
    }
    uint8_t header[kRequestHeaderBytes];
    Status h = co_await read_exact(header, sizeof header);
    if (!h || stopping_) break;
    if (load_be32(header) != kRequestMagic) break;  // out of sync: nothing can be trusted
    Request req;
    req.flags = load_be16(header + 4);
    req.type = load_be16(header + 6);
    req.cookie = load_be64(header + 8);
    req.offset = load_be64(header + 16);
    req.length = load_be32(header + 24);
    if (req.type == kCmdDisc) break;

    const uint32_t error = validate(req);
    const bool has_payload = req.type == kCmdWrite;
    if (has_payload && req.length > kMaxPayloadBytes) {
      // The payload cannot be taken in; refuse and end the connection (proto.md allows it).
      Task<Status> refuse = send_error(req, kErrInval);
      Status refused = co_await std::move(refuse);
      (void)refused;
      break;
    }
    const uint64_t cost = (req.type == kCmdWrite || req.type == kCmdRead) ? req.length : 0;
    while (requests_in_flight_ > 0 && bytes_in_flight_ + cost > limits.max_bytes_in_flight &&
           !stopping_ && !broken_) {
      co_await capacity_.wait();
    }
    AlignedBuffer payload;
    if (has_payload && req.length > 0) {
      payload = AlignedBuffer(req.length);
      Status p = co_await read_exact(payload.data(), req.length);
      if (!p) break;
    }
    ++requests_in_flight_;
    bytes_in_flight_ += cost;
    spawn(handle(req, std::move(payload), error));
  }
  stopping_ = true;
  while (requests_in_flight_ > 0) co_await idle_.wait();
}

Task<void> Server::Connection::handle(Request req, AlignedBuffer payload, uint32_t error) {
  Status sent;
  if (error == 0 && req.type == kCmdRead) {
    sent = co_await serve_read(req);
  } else if (error == 0 && req.type == kCmdBlockStatus) {
    sent = co_await serve_block_status(req);
  } else {
    if (error == 0) {
      Task<Status> command = serve_command(req, payload);
      Status done = co_await std::move(command);
      if (!done) error = wire_error(done.error().errnum());
    }
    sent = co_await send_error(req, error);
  }
  if (!sent) {
    broken_ = true;
    stream_->shutdown();
  }
  --requests_in_flight_;
  bytes_in_flight_ -= (req.type == kCmdWrite || req.type == kCmdRead) ? req.length : 0;
  capacity_.wake_all();
  if (requests_in_flight_ == 0) idle_.wake_all();
}

Task<Status> Server::Connection::serve_command(const Request& req, AlignedBuffer& payload) {
  RequestFlags flags;
  if (req.flags & kCmdFlagFua) flags |= RequestFlag::kFua;
  switch (req.type) {
    case kCmdFlush: co_return co_await backend().flush();
    case kCmdTrim: {
      Status s = co_await backend().discard(req.offset, req.length);
      if (s && (req.flags & kCmdFlagFua)) s = co_await backend().flush();
      co_return s;
    }
    case kCmdCache: {
      if (req.length == 0) co_return Status{};
      AlignedBuffer sink(req.length);
      co_return co_await backend().read(req.offset, IoVec(sink.data(), req.length));
    }
    case kCmdWriteZeroes: {
      if (req.length == 0) co_return Status{};
      if (!(req.flags & kCmdFlagNoHole) && options().discard_unmap) {
        flags |= RequestFlag::kMayUnmap;
      }
      // FAST_ZERO: zero efficiently or fail at once with ENOTSUP (block-semantics.md
      // REQ-NOFB-4).
      if (req.flags & kCmdFlagFastZero) flags |= RequestFlag::kNoFallback;
      co_return co_await backend().write_zeroes(req.offset, req.length, flags);
    }
    case kCmdWrite: {
      if (req.length == 0) co_return Status{};
      IoVec data(payload.data(), req.length);
      const DetectZeroes detect = options().detect_zeroes;
      if (detect != DetectZeroes::kOff && data.is_zero()) {
        if (detect == DetectZeroes::kUnmap && options().discard_unmap) {
          flags |= RequestFlag::kMayUnmap;
        }
        co_return co_await backend().write_zeroes(req.offset, req.length, flags);
      }
      co_return co_await backend().write(req.offset, data, flags);
    }
    default: co_return tl::unexpected(Error::invalid("unknown command"));
  }
}

void Server::Connection::chunk_header(uint8_t* out, const Request& req, uint16_t flags,
                                      uint16_t type, uint32_t length) const {
  store_be32(out, kStructuredReplyMagic);
  store_be16(out + 4, flags);
  store_be16(out + 6, type);
  store_be64(out + 8, req.cookie);
  store_be32(out + 16, length);
}

Task<Status> Server::Connection::send_simple(const Request& req, uint32_t error) {
  uint8_t header[16];
  store_be32(header, kSimpleReplyMagic);
  store_be32(header + 4, error);
  store_be64(header + 8, req.cookie);
  const iovec iov{header, sizeof header};
  co_return co_await send(std::span<const iovec>(&iov, 1));
}

Task<Status> Server::Connection::send_error(const Request& req, uint32_t error) {
  if (!structured_) co_return co_await send_simple(req, error);
  if (error == 0) {
    uint8_t header[20];
    chunk_header(header, req, kReplyFlagDone, kReplyNone, 0);
    const iovec iov{header, sizeof header};
    co_return co_await send(std::span<const iovec>(&iov, 1));
  }
  uint8_t chunk[26];
  chunk_header(chunk, req, kReplyFlagDone, kReplyError, 6);
  store_be32(chunk + 20, error);
  store_be16(chunk + 24, 0);  // no message
  const iovec iov{chunk, sizeof chunk};
  co_return co_await send(std::span<const iovec>(&iov, 1));
}

Task<Status> Server::Connection::serve_read(const Request& req) {
  if (req.length == 0) co_return co_await send_error(req, 0);
  AlignedBuffer buffer(req.length);
  // Extents of the range: data to read, or zeros to send as holes (structured, no DF only).
  struct Extent {
    uint64_t offset;
    uint32_t length;
    bool zero;
  };
  // At most kMaxReadExtents from the status walk plus the rest as data; kept in the frame.
  std::array<Extent, kMaxReadExtents + 1> extents;
  std::size_t count = 0;
  const auto add = [&](uint64_t offset, uint32_t length, bool zero) {
    if (count > 0 && extents[count - 1].zero == zero) {
      extents[count - 1].length += length;
    } else {
      extents[count++] = Extent{offset, length, zero};
    }
  };
  const bool sparse = structured_ && !(req.flags & kCmdFlagDf);
  uint64_t pos = req.offset;
  const uint64_t end = req.offset + req.length;
  while (sparse && pos < end && count < kMaxReadExtents) {
    Task<Result<ChainStatus>> query =
        chain_status(&backend().root(), pos, end - pos, export_query(WantZero::kNo));
    Result<ChainStatus> st = co_await std::move(query);
    if (!st) break;  // the status is an optimisation: read the rest as data
    const auto len = static_cast<uint32_t>(std::min(st->status.bytes, end - pos));
    add(pos, len, (st->status.flags & (kStatusZero | kStatusData)) == kStatusZero);
    pos += len;
  }
  if (pos < end) add(pos, static_cast<uint32_t>(end - pos), false);

  Status read_status;
  for (std::size_t i = 0; i < count && read_status; ++i) {
    const Extent& e = extents[i];
    if (e.zero) continue;
    IoVec part(buffer.data() + (e.offset - req.offset), e.length);
    read_status = co_await backend().read(e.offset, part);
  }
  if (!read_status) co_return co_await send_error(req, wire_error(read_status.error().errnum()));

  if (!structured_) {
    uint8_t header[16];
    store_be32(header, kSimpleReplyMagic);
    store_be32(header + 4, 0);
    store_be64(header + 8, req.cookie);
    const iovec iov[2] = {{header, sizeof header}, {buffer.data(), req.length}};
    co_return co_await send(std::span<const iovec>(iov, 2));
  }
  // One chunk per extent: data chunks carry their offset and bytes, holes offset and length.
  std::array<uint8_t, 32 * (kMaxReadExtents + 1)> headers;
  std::array<iovec, 2 * (kMaxReadExtents + 1)> iov;
  std::size_t iov_count = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const Extent& e = extents[i];
    uint8_t* h = headers.data() + i * 32;
    const uint16_t flags = i + 1 == count ? kReplyFlagDone : 0;
    if (e.zero) {
      chunk_header(h, req, flags, kReplyOffsetHole, 12);
      store_be64(h + 20, e.offset);
      store_be32(h + 28, e.length);
      iov[iov_count++] = {h, 32};
    } else {
      chunk_header(h, req, flags, kReplyOffsetData, 8 + e.length);
      store_be64(h + 20, e.offset);
      iov[iov_count++] = {h, 28};
      iov[iov_count++] = {buffer.data() + (e.offset - req.offset), e.length};
    }
  }
  co_return co_await send(std::span<const iovec>(iov.data(), iov_count));
}

Task<Status> Server::Connection::serve_block_status(const Request& req) {
  const uint64_t end = req.offset + req.length;
  const bool one = req.flags & kCmdFlagReqOne;
  struct Context {
    bool chosen;
    uint32_t id;
  };
  const Context contexts[] = {{context_base_, kContextIdBaseAllocation},
                              {context_depth_, kContextIdAllocationDepth}};
  std::vector<std::vector<uint8_t>> chunks;
  for (const Context& c : contexts) {
    if (!c.chosen) continue;
    const bool depth = c.id == kContextIdAllocationDepth;
    // Descriptors: (length, flags) pairs, adjacent equal flags merged.
    std::vector<std::pair<uint32_t, uint32_t>> extents;
    uint64_t pos = req.offset;
    while (pos < end && extents.size() < kMaxStatusExtents) {
      Task<Result<ChainStatus>> query = chain_status(
          &backend().root(), pos, end - pos, export_query(depth ? WantZero::kNo : WantZero::kYes));
      Result<ChainStatus> st = co_await std::move(query);
      if (!st) co_return co_await send_error(req, wire_error(st.error().errnum()));
      const auto len = static_cast<uint32_t>(std::min(st->status.bytes, end - pos));
      const uint32_t sf = st->status.flags;
      const uint32_t layer_depth = st->defined ? st->layer + 1 : 0;  // 1 = top; 0 = none
      const uint32_t flags =
          depth ? layer_depth
                : ((sf & kStatusData) ? 0 : kStateHole) | ((sf & kStatusZero) ? kStateZero : 0);
      if (!extents.empty() && extents.back().second == flags) {
        extents.back().first += len;
      } else {
        if (one && !extents.empty()) break;
        extents.push_back({len, flags});
      }
      pos += len;
    }
    Writer w;
    w.zeroes(20);  // chunk header, filled in below
    w.u32(c.id);
    for (const auto& [length, flags] : extents) {
      w.u32(length);
      w.u32(flags);
    }
    chunks.push_back(std::move(w.data()));
  }
  for (uint32_t b : context_bitmaps_) {
    Result<std::vector<std::pair<uint64_t, bool>>> runs =
        dirty_bitmap_extents(backend().root(), options().bitmaps[b], req.offset, req.length);
    if (!runs) co_return co_await send_error(req, wire_error(runs.error().errnum()));
    Writer w;
    w.zeroes(20);
    w.u32(kContextIdFirstBitmap + b);
    std::size_t n = 0;
    for (const auto& [length, dirty] : *runs) {
      if (n == kMaxStatusExtents || (one && n == 1)) break;
      w.u32(static_cast<uint32_t>(length));
      w.u32(dirty ? kStateDirty : 0);
      ++n;
    }
    chunks.push_back(std::move(w.data()));
  }
  std::vector<iovec> iov;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    std::vector<uint8_t>& chunk = chunks[i];
    chunk_header(chunk.data(), req, i + 1 == chunks.size() ? kReplyFlagDone : 0, kReplyBlockStatus,
                 static_cast<uint32_t>(chunk.size() - 20));
    iov.push_back({chunk.data(), chunk.size()});
  }
  co_return co_await send(iov);
}

Task<Status> Server::Connection::send(std::span<const iovec> iov) {
  if (broken_) co_return tl::unexpected(Error::from_errno(EPIPE, "connection lost"));
  PendingReply me;
  me.iov = iov;
  if (reply_tail_) {
    reply_tail_->next = &me;
  } else {
    reply_head_ = &me;
  }
  reply_tail_ = &me;
  if (sending_) {
    // The coroutine sending now takes this reply along and resumes us when it is out.
    co_await WaitSent{me};
    co_return me.result;
  }
  sending_ = true;
  while (reply_head_ != nullptr) {
    PendingReply* batch = std::exchange(reply_head_, nullptr);
    reply_tail_ = nullptr;
    gather_.clear();
    for (PendingReply* r = batch; r != nullptr; r = r->next) {
      gather_.insert(gather_.end(), r->iov.begin(), r->iov.end());
    }
    // (No co_await inside a conditional expression: g++ 12 destroys its temporaries twice.)
    Status s = tl::unexpected(Error::from_errno(EPIPE, "connection lost"));
    if (!broken_) {
      Task<Status> write = stream_->write_all(gather_);
      s = co_await std::move(write);
    }
    if (!s) broken_ = true;
    for (PendingReply* r = batch; r != nullptr;) {
      PendingReply* next = r->next;  // r may be freed once its waiter runs
      r->result = s;
      if (r != &me) loop_.post(r->waiter);
      r = next;
    }
  }
  sending_ = false;
  co_return me.result;
}

// ---- server ----------------------------------------------------------------------------------

Server::Server(BlockBackend& backend, ExportOptions export_options, const TlsCredentials* tls,
               ServerLimits limits)
    : state_(std::make_unique<State>(backend.loop(), tls, limits)) {
  state_->exports.push_back(std::make_shared<Export>(Export{&backend, std::move(export_options)}));
}

Server::Server(EventLoop& loop, const TlsCredentials* tls, ServerLimits limits)
    : state_(std::make_unique<State>(loop, tls, limits)) {}

Server::~Server() = default;

void Server::set_tls_authz(std::string authz_id, std::function<void(const std::string&)> report) {
  state_->tls_authz = std::move(authz_id);
  state_->report_authz_denial = std::move(report);
}

std::size_t Server::connection_count() const { return state_->connections.size(); }

std::size_t Server::connection_count(const std::string& name) const {
  std::size_t n = 0;
  for (const Connection* c : state_->connections) {
    if (c->chosen_export() != nullptr && c->chosen_export()->options.name == name) ++n;
  }
  return n;
}

Status Server::add_export(BlockBackend& backend, ExportOptions options) {
  if (state_->find(options.name) != nullptr) {
    return fail(Error::with_message(EEXIST, "export '" + options.name + "' already exists"));
  }
  state_->exports.push_back(std::make_shared<Export>(Export{&backend, std::move(options)}));
  return ok();
}

Task<void> Server::remove_export(std::string name) {
  State& state = *state_;
  std::shared_ptr<Export> e = state.find(name);
  if (e == nullptr) co_return;
  std::erase(state.exports, e);
  const auto uses = [&] {
    for (Connection* c : state.connections) {
      if (c->chosen_export() == e.get()) return true;
    }
    return false;
  };
  for (Connection* c : state.connections) {
    if (c->chosen_export() == e.get()) c->stop();
  }
  while (uses()) co_await state.changed.wait();
}

Task<void> Server::serve(std::unique_ptr<Stream> stream) {
  State& state = *state_;
  Connection connection(state, std::move(stream));
  state.connections.push_back(&connection);
  state.served_any = true;
  if (state.stopping) connection.stop();
  Task<void> run = connection.run();
  co_await std::move(run);
  std::erase(state.connections, &connection);
  state.changed.wake_all();
  if (!state.persistent && state.connections.empty()) stop();
}

Task<void> Server::reap_stalled_handshakes() {
  State& state = *state_;
  EventLoop& loop = state.loop;
  while (!state.stopping) {
    co_await uring::sleep(loop, std::chrono::milliseconds(250));
    const auto now = std::chrono::steady_clock::now();
    for (Connection* c : state.connections) c->expire_if_stalled(now);
  }
  state.reaper_running = false;
  state.changed.wake_all();
}

Task<Status> Server::listen(int listen_fd, uint32_t max_clients, bool persistent) {
  State& state = *state_;
  state.listen_fd = listen_fd;
  state.persistent = persistent;
  EventLoop& loop = state.loop;
  if (state.limits.handshake_limit.count() > 0) {
    state.reaper_running = true;
    spawn(reap_stalled_handshakes());
  }
  Status result;
  while (!state.stopping) {
    while (max_clients != 0 && state.connections.size() >= max_clients && !state.stopping) {
      co_await state.changed.wait();
    }
    if (state.stopping) break;
    const int fd = co_await uring::accept(loop, listen_fd);
    if (state.stopping) {
      if (fd >= 0) ::close(fd);
      break;
    }
    if (fd < 0) {
      // Transient: a client gone before it was accepted, or out of descriptors for now.
      if (fd == -ECONNABORTED || fd == -EINTR || fd == -EAGAIN || fd == -EPROTO) continue;
      if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
        co_await uring::sleep(loop, std::chrono::milliseconds(100));
        continue;
      }
      result = tl::unexpected(Error::from_errno(-fd, "accept"));
      break;
    }
    spawn(serve(std::make_unique<SocketStream>(loop, fd)));
  }
  stop();
  while (!state.connections.empty() || state.reaper_running) co_await state.changed.wait();
  co_return result;
}

void Server::stop() {
  State& state = *state_;
  if (state.stopping) return;
  state.stopping = true;
  // Wakes a pending accept (it fails with EINVAL) without closing the caller's descriptor.
  if (state.listen_fd >= 0) ::shutdown(state.listen_fd, SHUT_RDWR);
  for (Connection* c : state.connections) c->stop();
  state.changed.wake_all();
}

}  // namespace qblock::nbd
