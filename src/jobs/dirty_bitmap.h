// DirtyBitmap: which granules of a disk changed (a mirror's record of what the target still
// lacks). One bit per `granularity` bytes; ranges are widened to whole granules when set and
// narrowed to whole granules when reset, so a partly covered granule stays dirty.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace qblock {

class DirtyBitmap {
 public:
  // REQUIRES: granularity is a power of two.
  DirtyBitmap(uint64_t length, uint64_t granularity);

  uint64_t granularity() const { return granularity_; }
  // Marks every granule that [offset, offset + bytes) touches.
  void set(uint64_t offset, uint64_t bytes);
  // Clears the granules [offset, offset + bytes) covers completely.
  void reset(uint64_t offset, uint64_t bytes);
  // The first dirty run at or after `from` (wrapping to 0 when none follows), as a granule
  // aligned (offset, bytes) of at most `max_bytes` (>= granularity), clipped to the length.
  std::optional<std::pair<uint64_t, uint64_t>> next_dirty(uint64_t from, uint64_t max_bytes) const;
  // Dirty bytes (whole granules, the last one clipped to the length).
  uint64_t dirty_bytes() const;
  bool any() const { return count_ > 0; }

 private:
  bool test(uint64_t bit) const { return (words_[bit / 64] >> (bit % 64)) & 1; }
  std::optional<uint64_t> find_set(uint64_t from_bit) const;

  uint64_t length_;
  uint64_t granularity_;
  uint64_t bits_;
  uint64_t count_ = 0;
  std::vector<uint64_t> words_;
};

}  // namespace qblock
