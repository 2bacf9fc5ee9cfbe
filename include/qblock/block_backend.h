// BlockBackend: what a user of qblock opens. It owns the root of a block graph built from a
// filename, a json: filename or an option tree, probes the format when none is given, and
// checks every request against the image's length (I/O beyond the end is EIO).
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/task.h"

namespace qblock {

struct BackendOptions {
  // A path, "json:{...}", or "blkdebug:[CONFIG]:PATH". Ignored when `tree` has a file.
  std::string filename;
  // Format driver ("raw", ...); empty: probe (see `probed_raw()`).
  std::string format;
  // Extra options merged over those derived from the filename (open -o, --image-opts).
  Options tree = Options::object();
  OpenFlags flags;
};

class BlockBackend {
 public:
  // Opens the graph. Errors carry QEMU's messages ("Could not open 'x': No such file or
  // directory", "Unknown driver 'bogus'", "Block format 'raw' does not support the option
  // 'foo'").
  static Task<Result<std::unique_ptr<BlockBackend>>> open(EventLoop& loop, BackendOptions options);
  // A backend over a node someone else owns (the storage daemon's exports): requests go to
  // `node` until set_root() switches them; close() only flushes. `node` must outlive the
  // backend's requests.
  static std::unique_ptr<BlockBackend> attach(BlockNode& node);
  ~BlockBackend();

  BlockNode& root() { return *active_; }
  // Sends every later request to `node` (a job inserting a filter, or pivoting onto its
  // target); requests already issued finish where they went.
  // REQUIRES: a backend from attach(), `node` outlives its requests.
  void set_root(BlockNode& node) { active_ = &node; }
  EventLoop& loop() { return *loop_; }
  bool read_only() const { return active_->read_only(); }
  // True if the format was guessed as raw by probing (qemu-compat.md §2.2).
  bool probed_raw() const { return probed_raw_; }
  uint64_t length() const { return active_->length(); }

  // As BlockNode's, plus: offset + bytes <= length() (else EIO), writes refused with EPERM on
  // read-only images, a flush after each write in writethrough mode. Like BlockNode's,
  // write_zeroes and discard take any length (split below); reads and writes at most
  // kMaxRequestBytes (else EINVAL).
  Task<Status> read(uint64_t offset, IoVec qiov, RequestFlags flags = {});
  Task<Status> write(uint64_t offset, IoVec qiov, RequestFlags flags = {});
  Task<Status> write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags = {});
  Task<Status> discard(uint64_t offset, uint64_t bytes);
  Task<Status> flush();
  Task<Status> truncate(uint64_t size, PreallocMode mode = PreallocMode::kOff);
  // Flushes and closes the graph. Idempotent; the destructor requires it to have run.
  Task<Status> close();

 private:
  BlockBackend(EventLoop& loop, std::unique_ptr<BlockNode> root)
      : loop_(&loop), root_(std::move(root)), active_(root_.get()) {}
  // EIO beyond length(); EINVAL above `max_bytes` (write-zeroes and discard pass no limit).
  static constexpr uint64_t kNoLengthLimit = std::numeric_limits<uint64_t>::max();
  Status check_request(uint64_t offset, uint64_t bytes,
                       uint64_t max_bytes = kMaxRequestBytes) const;

  EventLoop* loop_;
  std::unique_ptr<BlockNode> root_;  // null for attach()
  BlockNode* active_;                // where requests go: root_, or the attached node
  bool probed_raw_ = false;
  bool closed_ = false;
};

}  // namespace qblock
