// CopyOnReadFilter: QEMU's `copy-on-read` filter. It sits on a format node
// (`driver=copy-on-read,file.driver=qcow2,file.file.filename=X`) and, when a read reaches data
// the format node does not hold itself (it comes from a backing file), writes that data into
// the format node with WRITE_UNCHANGED, rounded out to the node's clusters, so the next read
// is served from the top layer. With `bottom=NODE` only data allocated in the backing chain
// above NODE and in NODE itself is copied (`block-stream` uses it): reads of what lies below
// pass through without a copy. Writes and the advertised flags are a pass-through filter's
// (block-semantics.md §2 REQ-FLAGS-3). A copy is serialised against the writes through the
// filter that overlap its clusters (as QEMU serialises copy-on-read requests), so it never
// writes stale backing data over newer guest data.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "block/driver.h"
#include "block/filters/passthrough.h"
#include "qblock/sync.h"

namespace qblock {

class CopyOnReadFilter : public PassthroughFilter {
 public:
  // Takes ownership of `file`. `bottom`, when not null, is a node of `file`'s backing chain
  // (it may be `file` itself); copies stop there.
  // REQUIRES: `bottom` outlives the filter.
  CopyOnReadFilter(EventLoop& loop, NodePtr file, BlockNode* bottom);

  // qemu-io `info`: "format name: copy-on-read", the file's cluster size and vm state offset.
  NodeInfo info() const override;
  Options options() const override;

 protected:
  // Reads through the file child; extents the child does not allocate (and that lie above the
  // bottom node, when set) are copied into it first.
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override;

 private:
  // Whether a prefix of [offset, offset + bytes) is allocated in the chain below the file
  // child down to and including the bottom node, and that prefix's length.
  Task<Result<std::pair<bool, uint64_t>>> allocated_above_bottom(uint64_t offset, uint64_t bytes);
  // Reads [offset, offset + qiov.size()) through the child after copying the clusters that
  // cover it into the child.
  Task<Status> copy_and_read(uint64_t offset, IoVec qiov);

  struct Range {
    uint64_t start;
    uint64_t end;
    bool copy;  // a copy (waits for writes and copies) or a write (waits for copies)
  };
  // Waits until no in-flight range that `r` must wait for overlaps it, then registers `r`.
  Task<std::size_t> begin_range(Range r);
  void end_range(std::size_t id);

  BlockNode* bottom_;
  std::vector<std::pair<std::size_t, Range>> in_flight_;
  std::size_t next_range_id_ = 0;
  WaitQueue range_done_;
};

// Registry entry for "copy-on-read". Options: `file` (child), `bottom` (a node name in the
// file's backing chain). Errors carry QEMU's messages ("Bottom node 'X' not found").
Task<Result<NodePtr>> open_copy_on_read_node(OpenContext& ctx, Options& options);

}  // namespace qblock
