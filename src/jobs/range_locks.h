// RangeLocks: byte ranges a job holds while it copies them, so that a guest request on the same
// bytes (a write-blocking mirror write, a backup's copy-before-write) waits for the copy and the
// copy never reads half of a guest write. Used by the mirror and backup jobs.
#pragma once

#include <cstdint>
#include <vector>

#include "qblock/sync.h"
#include "qblock/task.h"

namespace qblock {

class RangeLocks {
 public:
  explicit RangeLocks(EventLoop& loop) : released_(loop) {}

  // Waits until no held range overlaps [offset, offset + bytes), then holds it. Waiters are not
  // ordered: a later, non-overlapping request may go first.
  Task<void> lock(uint64_t offset, uint64_t bytes);
  // Releases the range a lock() with the same arguments took, and wakes the waiters.
  // REQUIRES: that lock() has returned and its range is not yet released.
  void unlock(uint64_t offset, uint64_t bytes);
  // True if a held range overlaps [offset, offset + bytes).
  bool overlaps(uint64_t offset, uint64_t bytes) const;

 private:
  struct Range {
    uint64_t offset;
    uint64_t bytes;
  };
  std::vector<Range> held_;
  WaitQueue released_;
};

}  // namespace qblock
