// BlkverifyFilter: QEMU's `blkverify` driver, a test harness for format drivers. It has two
// children, `test` (the image under test, e.g. a qcow2 node) and `raw` (a raw image that is
// known to be right). Every write goes to both; every read is served by `test` and compared
// with the same read from `raw`: on a difference, or when the two answer with different
// errors, it prints QEMU's message ("blkverify: read offset=0 bytes=4096 contents mismatch
// at offset 1000") to stderr and ends the process with exit status 1, as QEMU does.
// It cannot keep FUA, MAY_UNMAP or NO_FALLBACK for both children at once, so it advertises
// only WRITE_UNCHANGED (block-semantics.md §2 REQ-FLAGS-4); write-zeroes become zero-buffer
// writes to both. Discards are accepted and do nothing (QEMU 7.2's blkverify has none).
// Block status is the raw child's, as for QEMU's filter.
#pragma once

#include <functional>
#include <string>

#include "block/driver.h"

namespace qblock {

class BlkverifyFilter : public BlockNode {
 public:
  // What happens on a mismatch: the default prints the message and calls std::exit(1).
  // Tests install a handler that records the message; the read then fails with EIO.
  using MismatchHandler = std::function<void(const std::string& message)>;

  // Takes ownership of both children.
  BlkverifyFilter(EventLoop& loop, NodePtr test, NodePtr raw);

  uint64_t length() const override { return test().length(); }
  // qemu-io `info`: "format name: blkverify" twice (format and protocol name), then cluster
  // size and vm state offset 0.
  NodeInfo info() const override;
  BlockNode* primary_child() const override { return &test(); }
  // QEMU's name: "blkverify:RAW:TEST" when both children have plain names, else json:.
  std::string filename() const override;

  void set_mismatch_handler(MismatchHandler handler) { on_mismatch_ = std::move(handler); }

 protected:
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Result<BlockStatus>> do_block_status(uint64_t offset, uint64_t bytes,
                                            WantZero want_zero) override;

 private:
  BlockNode& test() const { return *child(ChildRole::kTest); }
  BlockNode& raw() const { return *child(ChildRole::kRaw); }
  // Reports "blkverify: OP offset=O bytes=B WHAT" and ends the process (or calls the test
  // handler and returns EIO).
  Status mismatch(const char* op, uint64_t offset, uint64_t bytes, const std::string& what);
  // The two children's results must agree (QEMU: "return value mismatch T != R").
  Status compare_results(const char* op, uint64_t offset, uint64_t bytes, const Status& t,
                         const Status& r);

  MismatchHandler on_mismatch_;
};

// Registry entry for "blkverify". Options: `test` and `raw` (children; a child given only a
// filename has its format probed).
Task<Result<NodePtr>> open_blkverify_node(OpenContext& ctx, Options& options);

}  // namespace qblock
