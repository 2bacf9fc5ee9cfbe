// DirtyBitmap: which granules of a disk changed (a mirror's record of what the target still
// lacks). One bit per `granularity` bytes; ranges are widened to whole granules when set and
// narrowed to whole granules when reset, so a partly covered granule stays dirty.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
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
  uint64_t length() const { return length_; }
  // Whether the granule with index `granule` is dirty. REQUIRES: granule < granules().
  bool test_granule(uint64_t granule) const { return test(granule); }
  uint64_t granules() const { return bits_; }
  // Makes every granule clean.
  void clear();
  // Marks every granule dirty in `other`. REQUIRES: same length (granularities may differ:
  // each dirty range of `other` dirties the granules it touches).
  void merge(const DirtyBitmap& other);
  // Changes the length; granules past the old length start clean, those past the new one go.
  void resize(uint64_t length);

  // The serialized form QEMU uses in qcow2 bitmap data clusters (qcow2-format.md §14):
  // byte i, bit j (least significant first) is granule 8 * i + j. Bytes of granules past the
  // end read as zero.
  // Bytes [first_byte, first_byte + out.size()) of the serialized bitmap into `out`.
  void serialize(uint64_t first_byte, std::span<uint8_t> out) const;
  // ORs serialized bytes into the bitmap from byte `first_byte`; bits past the end are ignored.
  void deserialize(uint64_t first_byte, std::span<const uint8_t> in);
  // Size of the serialized bitmap in bytes.
  uint64_t serialized_bytes() const { return (bits_ + 7) / 8; }

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
