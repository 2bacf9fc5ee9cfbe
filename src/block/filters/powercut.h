// PowerCutFilter: a test filter that simulates losing power. It forwards requests to its
// child until the configured request number, then fails everything with EIO. It remembers the
// child's contents at the last completed flush and every write since, so a test can build the
// image as a disk could look after the cut: the flushed state plus any subset of the later
// writes, applied in order.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "block/filters/passthrough.h"
#include "block/protocols/memory.h"

namespace qblock {

class PowerCutFilter : public PassthroughFilter {
 public:
  // REQUIRES: `child` is a MemoryNode. `cut_after`: the number of modifying requests
  // (write, write-zeroes, discard, truncate, flush) that are let through.
  PowerCutFilter(EventLoop& loop, std::unique_ptr<MemoryNode> child, uint64_t cut_after);

  bool cut() const { return cut_; }
  // The file as it could be after the cut: the last flushed contents plus a random subset of
  // the writes that followed (each kept with probability `keep`), in order.
  std::vector<uint8_t> crash_image(std::mt19937_64& rng, double keep) const;

 protected:
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override;
  Task<Status> do_truncate(uint64_t size, PreallocMode mode, Exact exact) override;
  Task<Status> do_flush() override;

 private:
  struct Change {
    uint64_t offset;
    std::vector<uint8_t> data;  // empty with `resize`: a truncate to `offset`
    bool resize = false;
  };
  bool admit();  // counts a modifying request; false once the power is gone
  MemoryNode& memory() const { return static_cast<MemoryNode&>(child_node()); }

  uint64_t remaining_;
  bool cut_ = false;
  std::vector<uint8_t> stable_;  // contents at the last completed flush
  std::vector<Change> since_flush_;
};

// Registry entry for "powercut" (tests only): options `file` (a memory node) and `cut-after`.
Task<Result<NodePtr>> open_powercut_node(OpenContext& ctx, Options& options);

}  // namespace qblock
