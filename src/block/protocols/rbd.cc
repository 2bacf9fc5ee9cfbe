// The rbd protocol driver (see rbd.h): connecting to the cluster, the BlockNode hooks mapped
// onto librbd's aio calls, creation and the name qemu-img shows.
#include "block/protocols/rbd.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "block/protocols/librbd_api.h"
#include "block/protocols/rbd_address.h"
#include "block/protocols/rbd_completion.h"
#include "qblock/driver/uring.h"
#include "qblock/options.h"
#include "qblock/sync.h"

namespace qblock {

namespace {

using rbd_client::RbdAddress;
using rbd_client::RbdAio;
using rbd_client::RbdCompletions;

// The largest read or write handed to librbd at once (QEMU's rbd driver has no limit; this
// bounds the iovec bookkeeping of a single librbd request).
constexpr uint64_t kMaxTransfer = 64ULL << 20;
// librbd's default discard granularity (rbd_discard_granularity_bytes): smaller pieces of
// a discard are silently skipped, so the driver zeroes them instead.
constexpr uint64_t kDefaultDiscardGranularity = 64 << 10;
// rbd_diff_iterate2's callback returns this to stop after the first extent.
constexpr int kStopIterate = -9000;

std::string errno_text(int e) { return std::strerror(e); }

const char* mode_name(PreallocMode mode) {
  switch (mode) {
    case PreallocMode::kOff: return "off";
    case PreallocMode::kMetadata: return "metadata";
    case PreallocMode::kFalloc: return "falloc";
    case PreallocMode::kFull: return "full";
  }
  return "";
}

// The cluster, pool and (optionally) image handles of one connection.
struct RbdHandles {
  rados_t cluster = nullptr;
  rados_ioctx_t io = nullptr;
  rbd_image_t image = nullptr;

  // Blocking (rbd_close flushes librbd's cache): worker threads only, or at teardown.
  void close() {
    if (image) rbd_client::librbd().rbd_close(image);
    if (io) rbd_client::librbd().rados_ioctx_destroy(io);
    if (cluster) rbd_client::librbd().rados_shutdown(cluster);
    image = nullptr, io = nullptr, cluster = nullptr;
  }
};

// The outcome of a blocking connect, made on a worker thread.
struct Connect {
  RbdHandles handles;
  int error = 0;  // positive errno
  std::string message;
};

// Connects to the cluster and opens the pool (and the image unless `open_image` is false).
// Blocking: runs on a worker thread. QEMU's messages.
Connect connect_rbd(const RbdAddress& a, bool read_only, bool direct, bool open_image) {
  Connect out;
  RbdHandles& h = out.handles;
  auto failed = [&out](int r, std::string message) {
    out.error = -r;
    out.message = std::move(message);
    out.handles.close();
    return std::move(out);
  };
  std::string load_error;
  if (!rbd_client::load_librbd(&load_error)) {
    return failed(-ENOTSUP, "error initializing: could not load librbd: " + load_error);
  }
  int r = rbd_client::librbd().rados_create(&h.cluster, a.user.empty() ? nullptr : a.user.c_str());
  if (r < 0) return failed(r, "error initializing: " + errno_text(-r));
  // The configuration file: the one named, else librados' search (CEPH_CONF, /etc/ceph).
  r = rbd_client::librbd().rados_conf_read_file(h.cluster,
                                                a.conf.empty() ? nullptr : a.conf.c_str());
  if (r < 0 && !a.conf.empty()) return failed(r, "error reading conf file " + a.conf);
  (void)rbd_client::librbd().rados_conf_parse_env(h.cluster, nullptr);
  // Cache modes as QEMU sets them: librbd's cache only where the host page cache would be.
  (void)rbd_client::librbd().rados_conf_set(h.cluster, "rbd_cache", direct ? "false" : "true");
  for (const auto& [key, value] : a.config) {
    r = rbd_client::librbd().rados_conf_set(h.cluster, key.c_str(), value.c_str());
    if (r < 0) return failed(r, "invalid conf option " + key + ": " + errno_text(-r));
  }
  r = rbd_client::librbd().rados_connect(h.cluster);
  if (r < 0) return failed(r, "error connecting: " + errno_text(-r));
  r = rbd_client::librbd().rados_ioctx_create(h.cluster, a.pool.c_str(), &h.io);
  if (r < 0) return failed(r, "error opening pool " + a.pool + ": " + errno_text(-r));
  rbd_client::librbd().rados_ioctx_set_namespace(h.io, a.ns.empty() ? nullptr : a.ns.c_str());
  if (!a.ns.empty()) {
    bool exists = false;
    r = rbd_client::librbd().rbd_namespace_exists(h.io, a.ns.c_str(), &exists);
    if (r < 0) return failed(r, "error checking for the existence of namespace: " + errno_text(-r));
    if (!exists) return failed(-ENOENT, "namespace '" + a.ns + "' does not exist");
  }
  if (!open_image) return out;
  const char* snap = a.snapshot.empty() ? nullptr : a.snapshot.c_str();
  r = read_only ? rbd_client::librbd().rbd_open_read_only(h.io, a.image.c_str(), &h.image, snap)
                : rbd_client::librbd().rbd_open(h.io, a.image.c_str(), &h.image, snap);
  if (r < 0) return failed(r, "error reading header from " + a.image + ": " + errno_text(-r));
  return out;
}

// What rbd_diff_iterate2's callback found: the first allocated extent at or after the start.
struct DiffResult {
  bool found = false;
  uint64_t offset = 0;
  uint64_t length = 0;
  bool exists = false;
};

int on_diff_extent(uint64_t offset, size_t length, int exists, void* arg) {
  auto* r = static_cast<DiffResult*>(arg);
  // Without a start snapshot every reported extent is data; "exists" is false only for
  // extents removed since a snapshot, which read as zeros.
  r->found = true;
  r->offset = offset;
  r->length = length;
  r->exists = exists != 0;
  return kStopIterate;
}

class RbdNode : public BlockNode {
 public:
  RbdNode(EventLoop& loop, RbdAddress address, OpenFlags flags, RbdHandles handles,
          std::unique_ptr<RbdCompletions> completions)
      : BlockNode(loop, "rbd", NodeKind::kProtocol),
        address_(std::move(address)),
        handles_(handles),
        completions_(std::move(completions)),
        grow_mu_(loop) {
    flags_ = flags;
    completions_->start();
  }
  ~RbdNode() override {
    // close() normally released the handles on a worker thread; this is the fallback.
    handles_.close();
  }

  // Reads the image's size, object size and features. Errors: rbd_stat's.
  Status describe() {
    rbd_image_info_t st{};
    int r = rbd_client::librbd().rbd_stat(handles_.image, &st, sizeof(st));
    if (r < 0) return fail(Error::from_errno(-r, "error getting image info"));
    size_ = st.size;
    object_size_ = st.obj_size;
    uint64_t features = 0;
    uint64_t image_flags = 0;
    if (rbd_client::librbd().rbd_get_features(handles_.image, &features) == 0 &&
        rbd_client::librbd().rbd_get_flags(handles_.image, &image_flags) == 0) {
      fast_diff_ =
          (features & RBD_FEATURE_FAST_DIFF) && !(image_flags & RBD_FLAG_FAST_DIFF_INVALID);
    }
    char value[32] = {};
    discard_granularity_ = kDefaultDiscardGranularity;
    if (rbd_client::librbd().rados_conf_get(handles_.cluster, "rbd_discard_granularity_bytes",
                                            value, sizeof(value)) == 0) {
      uint64_t g = std::strtoull(value, nullptr, 10);
      if (g) discard_granularity_ = g;
    }
    // Efficient zeroing (rbd_aio_write_zeroes removes, truncates or zeroes objects): the
    // request layer may pass MAY_UNMAP and NO_FALLBACK, so ALLOCATE requests and the
    // preallocate filter work on RBD.
    supported_zero_flags_ = RequestFlag::kMayUnmap | RequestFlag::kNoFallback;
    limits_.max_transfer = kMaxTransfer;
    return ok();
  }

  uint64_t length() const override { return size_; }
  std::string filename() const override { return "json:" + address_.qemu_json(); }
  Options options() const override {
    Options o = Options::parse(address_.qemu_json());
    return o;
  }
  NodeInfo info() const override {
    NodeInfo i;
    i.format_name = "rbd";
    i.cluster_size = object_size_;
    return i;
  }
  const RbdAddress& address() const { return address_; }
  rbd_image_t image() const { return handles_.image; }

 protected:
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override;
  Task<Status> do_flush() override;
  Task<Status> do_truncate(uint64_t size, PreallocMode mode, Exact exact) override;
  Task<Result<BlockStatus>> do_block_status(uint64_t offset, uint64_t bytes,
                                            WantZero want_zero) override;
  Task<Status> do_close() override;
  bool zeroes_serialise_to_end(uint64_t offset, uint64_t bytes) const override {
    return offset + bytes > size_;
  }

 private:
  // Grows the image to at least `end` (writes past the end, as QEMU's driver does).
  Task<Status> grow_to(uint64_t end);
  // rbd_resize on a worker thread; updates size_.
  Task<Status> resize(uint64_t size);
  // Zeroes [offset, offset + bytes) with rbd_aio_write_zeroes (no THICK_PROVISION flag: whole
  // objects are removed, tails truncated, the rest zeroed on the OSD). 0 or -errno.
  Task<int> zero_range(uint64_t offset, uint64_t bytes);

  RbdAddress address_;
  RbdHandles handles_;
  std::unique_ptr<RbdCompletions> completions_;
  uint64_t size_ = 0;
  uint64_t object_size_ = 0;
  uint64_t discard_granularity_ = kDefaultDiscardGranularity;
  bool fast_diff_ = false;
  AsyncMutex grow_mu_;
};

Status rbd_error(int64_t r, const char* what) {
  return fail(Error::from_errno(r < 0 ? static_cast<int>(-r) : EIO, what));
}

Task<Status> RbdNode::do_read(uint64_t offset, IoVec qiov, RequestFlags) {
  // Past the end reads as zeros, as past the end of a file (a format may read a whole
  // cluster at the end of its image).
  if (offset + qiov.size() > size_) {
    const uint64_t inside = offset < size_ ? size_ - offset : 0;
    qiov.memset(inside, 0, qiov.size() - inside);
    if (inside == 0) co_return ok();
    qiov = qiov.slice(0, inside);
  }
  RbdAio aio(*completions_);
  rbd_image_t image = handles_.image;
  int r = aio.start([&](rbd_completion_t c) {
    return rbd_client::librbd().rbd_aio_readv(image, qiov.data(), static_cast<int>(qiov.count()),
                                              offset, c);
  });
  if (r < 0) co_return rbd_error(r, "read");
  int64_t result = co_await aio;
  if (result < 0) co_return rbd_error(result, "read");
  // librbd reads holes as zeros and answers the full length inside the image.
  co_return ok();
}

Task<Status> RbdNode::grow_to(uint64_t end) {
  if (end <= size_) co_return ok();
  AsyncMutex::Guard guard = co_await grow_mu_.lock();
  if (end <= size_) co_return ok();
  co_return co_await resize(end);
}

Task<Status> RbdNode::resize(uint64_t size) {
  rbd_image_t image = handles_.image;
  WorkerOp op = uring::run_in_worker(
      loop(), [image, size] { return rbd_client::librbd().rbd_resize(image, size); });
  int r = co_await op;
  if (r < 0) co_return fail(Error::from_errno(-r, "error resizing rbd image"));
  size_ = size;
  co_return ok();
}

Task<Status> RbdNode::do_write(uint64_t offset, IoVec qiov, RequestFlags) {
  if (offset + qiov.size() > size_) {
    Status grown = co_await grow_to(offset + qiov.size());
    if (!grown) co_return grown;
  }
  RbdAio aio(*completions_);
  rbd_image_t image = handles_.image;
  int r = aio.start([&](rbd_completion_t c) {
    return rbd_client::librbd().rbd_aio_writev(image, qiov.data(), static_cast<int>(qiov.count()),
                                               offset, c);
  });
  if (r < 0) co_return rbd_error(r, "write");
  int64_t result = co_await aio;
  if (result < 0) co_return rbd_error(result, "write");
  co_return ok();
}

Task<int> RbdNode::zero_range(uint64_t offset, uint64_t bytes) {
  RbdAio aio(*completions_);
  rbd_image_t image = handles_.image;
  int r = aio.start([&](rbd_completion_t c) {
    return rbd_client::librbd().rbd_aio_write_zeroes(image, offset, bytes, c, 0, 0);
  });
  if (r < 0) co_return r;
  int64_t result = co_await aio;
  co_return result < 0 ? static_cast<int>(result) : 0;
}

Task<Status> RbdNode::do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags) {
  // The part past the end needs no zeroing: a grown image reads as zeros there.
  const uint64_t old_size = size_;
  if (offset + bytes > old_size) {
    Status grown = co_await grow_to(offset + bytes);
    if (!grown) co_return grown;
  }
  if (offset >= old_size) co_return ok();
  const uint64_t inside = std::min(bytes, old_size - offset);
  int r = co_await zero_range(offset, inside);
  if (r < 0) co_return rbd_error(r, "write zeroes");
  co_return ok();
}

Task<Status> RbdNode::do_discard(uint64_t offset, uint64_t bytes) {
  if (offset >= size_) co_return ok();
  bytes = std::min(bytes, size_ - offset);
  // rbd_aio_discard skips whatever is not aligned to the discard granularity (64 KiB by
  // default): the old data would stay readable. Those pieces are zeroed instead, so that
  // discarded data never reads back; the aligned middle is discarded.
  const uint64_t g = discard_granularity_;
  const uint64_t end = offset + bytes;
  const uint64_t mid_start = (offset + g - 1) / g * g;
  const uint64_t mid_end = end / g * g;
  if (mid_start >= mid_end) {
    int r = co_await zero_range(offset, bytes);
    if (r < 0) co_return rbd_error(r, "discard");
    co_return ok();
  }
  if (mid_start > offset) {
    int r = co_await zero_range(offset, mid_start - offset);
    if (r < 0) co_return rbd_error(r, "discard");
  }
  if (end > mid_end) {
    int r = co_await zero_range(mid_end, end - mid_end);
    if (r < 0) co_return rbd_error(r, "discard");
  }
  RbdAio aio(*completions_);
  rbd_image_t image = handles_.image;
  int r = aio.start([&](rbd_completion_t c) {
    return rbd_client::librbd().rbd_aio_discard(image, mid_start, mid_end - mid_start, c);
  });
  if (r < 0) co_return rbd_error(r, "discard");
  int64_t result = co_await aio;
  if (result < 0) co_return rbd_error(result, "discard");
  co_return ok();
}

Task<Status> RbdNode::do_flush() {
  if (flags_.no_flush) co_return ok();
  RbdAio aio(*completions_);
  rbd_image_t image = handles_.image;
  int r =
      aio.start([&](rbd_completion_t c) { return rbd_client::librbd().rbd_aio_flush(image, c); });
  if (r < 0) co_return rbd_error(r, "flush");
  int64_t result = co_await aio;
  if (result < 0) co_return rbd_error(result, "flush");
  co_return ok();
}

Task<Status> RbdNode::do_truncate(uint64_t size, PreallocMode mode, Exact) {
  if (mode != PreallocMode::kOff) {
    co_return fail(Error::with_message(
        ENOTSUP, "Unsupported preallocation mode '" + std::string(mode_name(mode)) + "'"));
  }
  AsyncMutex::Guard guard = co_await grow_mu_.lock();
  co_return co_await resize(size);
}

Task<Result<BlockStatus>> RbdNode::do_block_status(uint64_t offset, uint64_t bytes, WantZero) {
  BlockStatus data{kStatusData | kStatusOffsetValid, bytes, offset, this};
  // Without a valid object map (fast-diff), listing the objects costs one request each:
  // everything counts as data, as in QEMU.
  if (!fast_diff_ || !address_.snapshot.empty()) co_return data;
  bytes = std::min<uint64_t>(bytes, size_ - offset);
  DiffResult found;
  rbd_image_t image = handles_.image;
  WorkerOp op = uring::run_in_worker(loop(), [image, offset, bytes, &found] {
    return rbd_client::librbd().rbd_diff_iterate2(image, nullptr, offset, bytes, 1, 1,
                                                  &on_diff_extent, &found);
  });
  int r = co_await op;
  if (r < 0 && r != kStopIterate) co_return data;  // unknown: data is always correct
  BlockStatus st{kStatusZero | kStatusOffsetValid, bytes, offset, this};
  if (!found.found || found.offset >= offset + bytes) co_return st;  // no object: zeros
  if (found.offset > offset) {
    st.bytes = found.offset - offset;
    co_return st;
  }
  // An object exists: whole-object granularity, so the extent may start before `offset`.
  const uint64_t ext_end = found.offset + found.length;
  data.bytes = std::min(bytes, ext_end - offset);
  if (!found.exists) data.flags = kStatusZero | kStatusOffsetValid;
  co_return data;
}

Task<Status> RbdNode::do_close() {
  co_await completions_->shutdown();
  RbdHandles handles = handles_;
  handles_ = {};
  WorkerOp op = uring::run_in_worker(loop(), [handles]() mutable {
    handles.close();
    return 0;
  });
  (void)co_await op;
  co_return ok();
}

// Connects on a worker thread.
Task<Connect> connect_in_worker(EventLoop& loop, const RbdAddress& address, bool read_only,
                                bool direct, bool open_image) {
  Connect result;
  WorkerOp op = uring::run_in_worker(loop, [&] {
    result = connect_rbd(address, read_only, direct, open_image);
    return 0;
  });
  (void)co_await op;
  co_return result;
}

Result<RbdAddress> address_of(const std::string& filename) {
  Options o = Options::object();
  if (filename.rfind("json:", 0) == 0) {
    Result<Options> parsed = parse_json_options(std::string_view(filename).substr(5));
    if (!parsed) return fail(parsed.error());
    o = std::move(*parsed);
    if (o.contains("file") && o["file"].is_object()) o = o["file"];
    o.erase("driver");
  } else {
    o["filename"] = filename;
  }
  return rbd_client::take_rbd_address(o);
}

}  // namespace

Task<Result<NodePtr>> open_rbd_node(OpenContext& ctx, Options& options) {
  Result<RbdAddress> address = rbd_client::take_rbd_address(options);
  if (!address) co_return fail(address.error());
  if (auto secret = take_string(options, "key-secret"); !secret) {
    co_return fail(secret.error());
  } else if (*secret) {
    // --object defines no secrets yet.
    co_return fail(Error::with_message(EINVAL, "No secret with id '" + **secret + "'"));
  }
  // Taken so they are not reported as unsupported: cephx is negotiated by librados.
  options.erase("auth-client-required");
  if (!address->snapshot.empty() && !ctx.flags.read_only) {
    co_return fail(Error::with_message(EACCES, "rbd snapshots are read-only"));
  }
  Result<std::unique_ptr<RbdCompletions>> completions = RbdCompletions::create(ctx.loop);
  if (!completions) co_return fail(completions.error());
  Connect c =
      co_await connect_in_worker(ctx.loop, *address, ctx.flags.read_only, ctx.flags.direct, true);
  if (c.error) co_return fail(Error::with_message(c.error, c.message));
  auto node = std::make_unique<RbdNode>(ctx.loop, std::move(*address), ctx.flags, c.handles,
                                        std::move(*completions));
  if (Status s = node->describe(); !s) {
    (void)co_await node->close();
    co_return fail(s.error());
  }
  co_return NodePtr(std::move(node));
}

Task<Status> create_rbd_image(EventLoop& loop, std::string filename, uint64_t size) {
  Result<RbdAddress> address = address_of(filename);
  if (!address) co_return fail(address.error());
  if (!address->snapshot.empty()) {
    co_return fail(Error::with_message(EINVAL, "Can't use snapshot name for image creation"));
  }
  Connect c = co_await connect_in_worker(loop, *address, false, false, false);
  if (c.error) co_return fail(Error::with_message(c.error, c.message));
  int r = 0;
  RbdHandles handles = c.handles;
  const std::string image = address->image;
  WorkerOp op = uring::run_in_worker(loop, [&handles, &image, size] {
    rbd_image_options_t opts;
    rbd_client::librbd().rbd_image_options_create(&opts);
    // The cluster's defaults (features, object size) as `rbd create` and QEMU use them.
    int result = rbd_client::librbd().rbd_create4(handles.io, image.c_str(), size, opts);
    rbd_client::librbd().rbd_image_options_destroy(opts);
    handles.close();
    return result;
  });
  r = co_await op;
  if (r < 0) co_return fail(Error::with_message(-r, "error rbd create: " + errno_text(-r)));
  co_return ok();
}

Task<void> remove_rbd_image(EventLoop& loop, std::string filename) {
  Result<RbdAddress> address = address_of(filename);
  if (!address) co_return;
  Connect c = co_await connect_in_worker(loop, *address, false, false, false);
  if (c.error) co_return;
  RbdHandles handles = c.handles;
  const std::string image = address->image;
  WorkerOp op = uring::run_in_worker(loop, [&handles, &image] {
    int r = rbd_client::librbd().rbd_remove(handles.io, image.c_str());
    handles.close();
    return r;
  });
  (void)co_await op;
}

Task<std::vector<SnapshotInfo>> list_rbd_snapshots(BlockNode& file) {
  std::vector<SnapshotInfo> out;
  auto* rbd = dynamic_cast<RbdNode*>(&file);
  if (!rbd) co_return out;
  rbd_image_t image = rbd->image();
  WorkerOp op = uring::run_in_worker(file.loop(), [image, &out] {
    std::vector<rbd_snap_info_t> snaps(16);
    int max = static_cast<int>(snaps.size());
    int n = 0;
    while ((n = rbd_client::librbd().rbd_snap_list(image, snaps.data(), &max)) == -ERANGE)
      snaps.resize(max);
    if (n < 0) return n;
    for (int i = 0; i < n; ++i) {
      SnapshotInfo s;
      s.id = snaps[i].name;
      s.name = snaps[i].name;
      s.vm_state_size = snaps[i].size;
      s.icount = 0;
      out.push_back(std::move(s));
    }
    rbd_client::librbd().rbd_snap_list_end(snaps.data());
    return 0;
  });
  (void)co_await op;
  co_return out;
}

std::string rbd_display_filename(const BlockNode& file, const std::string& format) {
  const auto* rbd = dynamic_cast<const RbdNode*>(&file);
  if (!rbd) return {};
  return "json:{\"driver\": \"" + format + "\", \"file\": " + rbd->address().qemu_json() + "}";
}

}  // namespace qblock
