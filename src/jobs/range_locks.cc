// RangeLocks (range_locks.h): a list of held ranges and one queue of waiters that re-check it.
#include "jobs/range_locks.h"

#include <algorithm>

namespace qblock {

bool RangeLocks::overlaps(uint64_t offset, uint64_t bytes) const {
  return std::any_of(held_.begin(), held_.end(), [&](const Range& r) {
    return offset < r.offset + r.bytes && r.offset < offset + bytes;
  });
}

Task<void> RangeLocks::lock(uint64_t offset, uint64_t bytes) {
  while (overlaps(offset, bytes)) co_await released_.wait();
  held_.push_back({offset, bytes});
}

void RangeLocks::unlock(uint64_t offset, uint64_t bytes) {
  auto it = std::find_if(held_.begin(), held_.end(),
                         [&](const Range& r) { return r.offset == offset && r.bytes == bytes; });
  if (it != held_.end()) held_.erase(it);
  released_.wake_all();
}

}  // namespace qblock
