// QuorumNode: QEMU's `quorum` driver. It keeps N children (`children.0`, `children.1`, ...)
// with the same contents. Writes go to every child and succeed when at least
// `vote-threshold` children succeed. Reads with read-pattern=quorum (the default) read every
// child and vote: the contents a threshold of children agree on win, the children that
// disagree are reported (QUORUM_REPORT_BAD) and, with rewrite-corrupted=on, rewritten with
// the winning contents; no winner is a QUORUM_FAILURE and EIO. read-pattern=fifo reads the
// children in order until one succeeds. blkverify=on (two children, threshold 2) ends the
// process on a difference, with QEMU's "quorum: offset=O bytes=B contents mismatch at offset
// X". Advertised flags (block-semantics.md §2): writes WRITE_UNCHANGED; write-zeroes
// WRITE_UNCHANGED plus MAY_UNMAP and NO_FALLBACK when every child has them.
// The children are read and written one after another, not in parallel.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "block/driver.h"

namespace qblock {

// Where QUORUM_REPORT_BAD and QUORUM_FAILURE events go (QMP event name and data, as QEMU
// emits them). The storage daemon installs one for its graphs; without one (qemu-io, the
// tools) they are dropped, as qemu-io shows none.
using QuorumEventSink = std::function<void(const std::string& event, Options data)>;

// Installs `sink` for the calling thread (an empty one removes it) for its lifetime.
class ScopedQuorumEventSink {
 public:
  explicit ScopedQuorumEventSink(QuorumEventSink sink);
  ~ScopedQuorumEventSink();
  ScopedQuorumEventSink(const ScopedQuorumEventSink&) = delete;
  ScopedQuorumEventSink& operator=(const ScopedQuorumEventSink&) = delete;

 private:
  QuorumEventSink previous_;
};

class QuorumNode : public BlockNode {
 public:
  enum class ReadPattern { kQuorum, kFifo };
  struct Settings {
    unsigned vote_threshold = 1;
    ReadPattern read_pattern = ReadPattern::kQuorum;
    bool rewrite_corrupted = false;
    bool blkverify = false;
  };
  // A mismatch in blkverify mode: the default prints the message and calls std::exit(1);
  // tests record it instead (the read then fails with EIO).
  using MismatchHandler = std::function<void(const std::string& message)>;

  // Takes ownership of the children. REQUIRES: settings validated (see open_quorum_node),
  // all children of the same length.
  QuorumNode(EventLoop& loop, std::vector<NodePtr> children, Settings settings);

  uint64_t length() const override { return children_.front().node->length(); }
  // qemu-io `info`: "format name: quorum" and nothing else (QEMU has no driver info).
  NodeInfo info() const override;
  Options options() const override;
  // QEMU's name: json: of driver, vote-threshold and the children.
  std::string filename() const override;
  BlockNode* primary_child() const override { return children_.front().node.get(); }

  void set_mismatch_handler(MismatchHandler handler) { on_mismatch_ = std::move(handler); }

 protected:
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Result<BlockStatus>> do_block_status(uint64_t offset, uint64_t bytes,
                                            WantZero want_zero) override;

 private:
  Task<Status> read_fifo(uint64_t offset, IoVec qiov, RequestFlags flags);
  Task<Status> read_quorum(uint64_t offset, IoVec qiov, RequestFlags flags);
  // The write or write-zeroes result over all children's results.
  Status vote_on_writes(uint64_t offset, uint64_t bytes, const std::vector<Status>& results);
  void report_bad(const char* type, std::size_t child, uint64_t offset, uint64_t bytes,
                  const Status& result) const;
  void report_failure(uint64_t offset, uint64_t bytes) const;

  Settings settings_;
  MismatchHandler on_mismatch_;
};

// Registry entry for "quorum". Options: children.N (children, N from 0), vote-threshold
// (required), read-pattern (quorum|fifo), rewrite-corrupted, blkverify. Errors carry QEMU's
// messages ("Number of provided children must be 1 or more", "threshold may not exceed
// children count", ...).
Task<Result<NodePtr>> open_quorum_node(OpenContext& ctx, Options& options);

}  // namespace qblock
