// MirrorTopFilter: the node a mirror job puts above its source while it runs (QEMU's
// "mirror_top"). Users of the source (an NBD export) are switched onto it; it forwards reads
// and flushes to the source and hands guest writes, write-zeroes and discards to the job
// (Hooks), which writes the source and records what the target still lacks. It advertises
// exactly the write and write-zeroes flags its source supports, so putting it in the path
// changes nothing for the requests that pass (it does not own the source: the storage daemon's
// node table does). redirect() sends later requests somewhere else unobserved: the target
// after a pivot, the source again after a cancel.
#pragma once

#include "block/driver.h"

namespace qblock {

class MirrorTopFilter : public BlockNode {
 public:
  class Hooks {
   public:
    virtual ~Hooks() = default;
    virtual Task<Status> guest_write(uint64_t offset, IoVec qiov, RequestFlags flags) = 0;
    virtual Task<Status> guest_write_zeroes(uint64_t offset, uint64_t bytes,
                                            RequestFlags flags) = 0;
    virtual Task<Status> guest_discard(uint64_t offset, uint64_t bytes) = 0;
  };

  // `source` and `hooks` must outlive the filter's requests.
  MirrorTopFilter(BlockNode& source, Hooks& hooks);

  uint64_t length() const override { return forward_->length(); }
  NodeInfo info() const override { return forward_->info(); }
  std::string filename() const override { return forward_->filename(); }
  BlockNode* primary_child() const override { return forward_; }

  // Later requests go straight to `node`, without the hooks; the advertised flags and limits
  // become `node`'s.
  void redirect(BlockNode& node);
  BlockNode& forward() const { return *forward_; }

 protected:
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override;
  Task<Status> do_flush() override;
  Task<Result<BlockStatus>> do_block_status(uint64_t offset, uint64_t bytes,
                                            WantZero want_zero) override;

 private:
  void inherit_from(const BlockNode& node);

  BlockNode* forward_;
  Hooks* hooks_;
};

}  // namespace qblock
