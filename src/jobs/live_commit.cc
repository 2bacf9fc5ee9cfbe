// LiveCommitJob (see live_commit.h).
#include "jobs/live_commit.h"

#include <algorithm>

#include "jobs/allocated_above.h"
#include "jobs/chain_edit.h"
#include "jobs/extent_copy.h"
#include "qblock/driver/driver.h"
#include "qblock/jobs.h"

namespace qblock {

namespace {

// QEMU's commit buffer: 512 KiB per step.
constexpr uint64_t kChunk = 512 << 10;

// The protocol node at the bottom of the primary chain: its filename is the image's.
const BlockNode& image_file(const BlockNode& node) {
  const BlockNode* n = &node;
  while (n->primary_child() != nullptr) n = n->primary_child();
  return *n;
}

}  // namespace

LiveCommitJob::LiveCommitJob(EventLoop& loop, LiveCommitOptions options, JobListener& listener,
                             BlockNode& above, BlockNode& top, BlockNode& base)
    : Job(loop, options.job, listener),
      options_(std::move(options)),
      above_(above),
      top_(top),
      base_(base),
      length_(top.length()) {}

Task<Status> LiveCommitJob::run() {
  std::optional<std::vector<BlockNode*>> layers = layers_above(top_, &base_);
  if (!layers) co_return fail(Error::with_message(EINVAL, "base not below top"));
  uint64_t offset = 0;
  while (offset < length_) {
    if (co_await pause_point()) co_return ok();
    const uint64_t want = std::min(kChunk, length_ - offset);
    Result<Allocation> a = co_await allocated_above_base(*layers, offset, want);
    Status s = ok();
    if (!a) s = fail(a.error());
    uint64_t n = a ? std::max<uint64_t>(1, std::min(a->bytes, want)) : want;
    bool read_error = !a;
    if (a && a->allocated) {
      co_await throttle(n);
      s = co_await copy_extent(top_, base_, offset, n, read_error, buffers_);
    }
    if (!s) {
      report_io_error(read_error, options_.on_error);
      if (options_.on_error == OnError::kReport) co_return s;
      continue;  // ignore: again at once; stop: again after job-resume
    }
    offset += n;
    done_bytes_ = offset;
  }
  co_return co_await base_.flush();
}

Task<void> LiveCommitJob::commit() {
  std::string backing = options_.backing_file;
  if (backing.empty()) backing = image_file(base_).filename();
  const std::string format = base_.driver_name();
  co_await drop_intermediates(above_, base_);
  // The chain in memory reads from the base already; the header follows. A failure leaves
  // the old name there, which still reads the same data (the dropped images are unchanged).
  (void)co_await record_backing_file(above_, std::move(backing), format);
}

Task<Status> record_backing_file(BlockNode& node, std::string backing_file,
                                 std::string backing_format) {
  if (!node.read_only()) {
    Status s =
        co_await change_backing_file(node, std::move(backing_file), std::move(backing_format));
    if (!s) co_return s;
    co_return co_await node.flush();
  }
  Options tree = node.options();
  tree["backing"] = nullptr;
  Task<Result<NodePtr>> open = open_node(node.loop(), std::move(tree), writable_flags(node), "");
  Result<NodePtr> writable = co_await std::move(open);
  if (!writable) co_return fail(writable.error());
  Status s =
      co_await change_backing_file(**writable, std::move(backing_file), std::move(backing_format));
  Status closed = co_await (*writable)->close();
  if (!s) co_return s;
  co_return closed;
}

}  // namespace qblock
