// BlockBackend: graph construction from user-facing names, format probing and the
// user-level bounds checks (include/qblock/block_backend.h).
#include "qblock/block_backend.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/check.h"
#include "block/driver.h"
#include "block/preopened_child.h"
#include "block/protocols/nbd_address.h"
#include "block/protocols/rbd_address.h"
#include "qblock/options.h"

namespace qblock {

namespace {

// "blkdebug:CONFIG:IMAGE" / "blkdebug::IMAGE" (qemu-compat.md §5.2), nbd URIs, or a path.
Options options_for_filename(const std::string& filename) {
  Options file = Options::object();
  const std::string prefix = "blkdebug:";
  if (filename.rfind(prefix, 0) == 0) {
    std::string rest = filename.substr(prefix.size());
    std::size_t colon = rest.find(':');
    file["driver"] = "blkdebug";
    if (colon != std::string::npos) {
      std::string config = rest.substr(0, colon);
      if (!config.empty()) file["config"] = config;
      file["image"] = Options{{"filename", rest.substr(colon + 1)}};
    } else {
      file["image"] = Options{{"filename", rest}};
    }
    return file;
  }
  // QEMU's protocol prefixes: "nbd://...", "nbd+unix://...", "nbd:HOST:PORT" name the nbd
  // driver, which parses the rest.
  if (nbd_client::has_nbd_prefix(filename)) file["driver"] = "nbd";
  if (rbd_client::has_rbd_prefix(filename)) file["driver"] = "rbd";
  file["filename"] = filename;
  return file;
}

// Guesses the format from the first bytes of `file`: formats score > 0; nothing matching
// means raw.
Task<Result<std::string>> probe_format(BlockNode& file) {
  AlignedBuffer header(2048, 4096);
  header.fill(0);
  uint64_t len = std::min<uint64_t>(2048, file.length());
  uint64_t aligned_len = (len + 511) / 512 * 512;
  if (aligned_len) {
    Status s = co_await file.read(0, IoVec(header.data(), aligned_len));
    if (!s) co_return fail(s.error());
  }
  std::string best = "raw";
  int best_score = 0;
  for (const DriverEntry& d : driver_registry()) {
    if (!d.probe) continue;
    int score = d.probe(header.data(), len);
    if (score > best_score) best_score = score, best = std::string(d.name);
  }
  co_return best;
}

}  // namespace

Task<Result<std::unique_ptr<BlockBackend>>> BlockBackend::open(EventLoop& loop,
                                                               BackendOptions options) {
  Options tree = Options::object();
  if (options.filename.rfind("json:", 0) == 0) {
    Result<Options> parsed = parse_json_options(std::string_view(options.filename).substr(5));
    if (!parsed) co_return fail(parsed.error());
    tree = std::move(*parsed);
  } else if (!options.filename.empty()) {
    tree["file"] = options_for_filename(options.filename);
  }
  // Extra options override and extend the filename's.
  for (auto& [k, v] : options.tree.items()) {
    if (v.is_object() && tree.contains(k) && tree[k].is_object()) {
      for (auto& [k2, v2] : v.items()) tree[k][k2] = v2;
    } else {
      tree[k] = v;
    }
  }
  Result<Options> unflat = unflatten_options(tree);
  if (!unflat) co_return fail(unflat.error());
  tree = std::move(*unflat);
  // -f wins over a json: filename's "driver", as in QEMU 7.2 (`qemu-img info -f raw
  // 'json:{"driver":"qcow2",...}'` shows the qcow2 file as raw): explicit options take
  // precedence over the filename's.
  if (!options.format.empty()) tree["driver"] = options.format;
  bool probed_raw = false;
  // Without a format, the protocol node is probed first. A remote one (nbd, rbd) is opened
  // once: the probe reads it and the format driver then takes it as its file
  // (block/preopened_child.h). A local file is probed read-only without locks and opened
  // again by the format (which may open it with other flags: a repair's discards).
  NodePtr probed_file;
  Options file_options;
  if (!tree.contains("driver")) {
    if (!tree.contains("file")) {
      co_return fail(Error::with_message(EINVAL, "The 'file' block driver requires a file name"));
    }
    if (!tree["file"].is_object()) {
      std::string ref =
          tree["file"].is_string() ? tree["file"].get<std::string>() : tree["file"].dump();
      co_return fail(Error::with_message(
          ENOENT, "Cannot find device='" + ref + "' nor node-name='" + ref + "'"));
    }
    file_options = tree["file"];
    const std::string protocol = file_options.value("driver", std::string());
    const bool remote = protocol == "nbd" || protocol == "rbd";
    OpenFlags probe_flags = options.flags;
    if (!remote) {
      probe_flags.read_only = true;
      probe_flags.force_share = true;  // a probe must not fight over locks
    }
    Result<NodePtr> file = co_await open_node(loop, file_options, probe_flags, "file");
    if (!file) co_return fail(file.error());
    probed_file = std::move(*file);
    Result<std::string> format = co_await probe_format(*probed_file);
    if (!format || !remote) {
      (void)co_await probed_file->close();
      probed_file.reset();
    }
    if (!format) co_return fail(format.error());
    tree["driver"] = *format;
    probed_raw = *format == "raw";
  }
  OpenFlags flags = options.flags;
  flags.probed_raw = probed_raw;
  Result<NodePtr> root;
  {
    ScopedPreopenedChild handoff(file_options, flags, probed_file);
    root = co_await open_node(loop, std::move(tree), flags, "");
  }
  // A probed file the format did not take (it failed first) is closed here.
  if (probed_file) (void)co_await probed_file->close();
  if (!root) co_return fail(root.error());
  std::unique_ptr<BlockBackend> backend(new BlockBackend(loop, std::move(*root)));
  backend->probed_raw_ = probed_raw;
  co_return backend;
}

BlockBackend::~BlockBackend() { CHECK(closed_ || active_->tracked_requests() == 0); }

std::unique_ptr<BlockBackend> BlockBackend::attach(BlockNode& node) {
  std::unique_ptr<BlockBackend> backend(new BlockBackend(node.loop(), nullptr));
  backend->active_ = &node;
  return backend;
}

Status BlockBackend::check_request(uint64_t offset, uint64_t bytes, uint64_t max_bytes) const {
  if (bytes > max_bytes) return fail(Error::invalid("request too large"));
  uint64_t len = length();
  if (offset > len || bytes > len - offset) return fail(Error::io("request beyond end of image"));
  return ok();
}

Task<Status> BlockBackend::read(uint64_t offset, IoVec qiov, RequestFlags flags) {
  if (Status s = check_request(offset, qiov.size()); !s) co_return s;
  co_return co_await active_->read(offset, std::move(qiov), flags);
}

Task<Status> BlockBackend::write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  if (read_only()) co_return fail(Error::permission("Block node is read-only"));
  if (Status s = check_request(offset, qiov.size()); !s) co_return s;
  Status s = co_await active_->write(offset, std::move(qiov), flags);
  if (s && active_->open_flags().writethrough) s = co_await active_->flush();
  co_return s;
}

Task<Status> BlockBackend::write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  if (read_only()) co_return fail(Error::permission("Block node is read-only"));
  if (Status s = check_request(offset, bytes, kNoLengthLimit); !s) co_return s;
  Status s = co_await active_->write_zeroes(offset, bytes, flags);
  if (s && active_->open_flags().writethrough) s = co_await active_->flush();
  co_return s;
}

Task<Status> BlockBackend::discard(uint64_t offset, uint64_t bytes) {
  if (read_only()) co_return fail(Error::permission("Block node is read-only"));
  if (Status s = check_request(offset, bytes, kNoLengthLimit); !s) co_return s;
  co_return co_await active_->discard(offset, bytes);
}

Task<Status> BlockBackend::flush() { co_return co_await active_->flush(); }

Task<Status> BlockBackend::truncate(uint64_t size, PreallocMode mode) {
  if (read_only()) co_return fail(Error::permission("Block node is read-only"));
  co_return co_await active_->truncate(size, mode, Exact::kYes);
}

Task<Status> BlockBackend::close() {
  if (closed_) co_return ok();
  closed_ = true;
  // Like QEMU's close: what was written reaches stable storage before the image is released.
  // (if/else, not `?:`: g++ 12 destroys a co_await result inside `?:` twice.)
  Status flushed = ok();
  if (!read_only()) flushed = co_await active_->flush();
  if (!root_) co_return flushed;  // attached: the owner closes the node
  Status closed = co_await root_->close();
  co_return flushed ? closed : flushed;
}

}  // namespace qblock
