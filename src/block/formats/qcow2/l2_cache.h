// The L2 table cache (QEMU's qcow2-cache for L2): bounded, least recently used first, in
// slices of l2-cache-entry-size bytes of one L2 table (a whole table by default; 4 KiB when
// the cache cannot cover the whole disk, so a miss reads 4 KiB instead of a cluster).
// Changed slices stay in memory (write-back); writing one back first makes the refcount
// blocks and the guest data it may point at stable (qcow2-format.md §17 R1/R3).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "block/driver.h"
#include "block/formats/qcow2/lru_cache.h"
#include "block/formats/qcow2/refcount.h"

namespace qblock::qcow2 {

// One cached slice of an L2 table, its entries decoded to host order.
struct L2Slice {
  uint64_t offset = 0;        // host offset of the slice
  uint64_t table_offset = 0;  // host offset of the L2 table it belongs to
  uint64_t first_index = 0;   // index of entries[0] within the table
  std::vector<uint64_t> entries;
  // With extended L2 entries (qcow2-format.md §7.1), the subcluster bitmap of each entry
  // (bitmaps[i] belongs to entries[i]); empty otherwise.
  std::vector<uint64_t> bitmaps;
  bool dirty = false;  // entries changed in memory, not yet written back
};
using L2SliceRef = std::shared_ptr<L2Slice>;

class L2Cache {
 public:
  // REQUIRES: `file` and `refcounts` outlive the cache; slice_bytes divides cluster_size and
  // is a power of two >= 512; capacity >= 1 slice. `entry_bytes` is 8, or 16 for extended L2
  // entries (each slice then carries the subcluster bitmaps beside the entries).
  L2Cache(BlockNode& file, uint64_t cluster_size, uint64_t slice_bytes, std::size_t capacity,
          uint64_t entry_bytes = 8);

  uint64_t slice_bytes() const { return slice_bytes_; }
  uint64_t slice_entries() const { return slice_bytes_ / entry_bytes_; }
  bool extended() const { return entry_bytes_ == 16; }
  std::size_t capacity() const { return slices_.capacity(); }
  std::size_t size() const { return slices_.size(); }
  void set_refcounts(Refcounts* refcounts) { refcounts_ = refcounts; }

  // The slice with index `slice_index` of the table at `table_offset`, read from the file on
  // a miss (debug event l2_load), after making room. The returned reference pins the slice.
  Task<Result<L2SliceRef>> get(uint64_t table_offset, uint64_t slice_index);
  // Adds a slice whose contents are already on disk (a freshly written table), making room.
  Task<Status> insert(L2SliceRef slice);
  // The whole table at `table_offset` as 64-bit words in file order (with extended L2 entries
  // each entry followed by its bitmap): cached slices (with their unwritten changes) over what
  // the file holds. For copying a table (§3.6); touches no cache state.
  Task<Result<std::vector<uint64_t>>> read_table(uint64_t table_offset);
  // A slice of `words` (file order, as read_table returns) decoded into entries and bitmaps.
  void decode(L2Slice& slice, const uint64_t* words, uint64_t count) const;

  // Forgets every cached slice of the table at `table_offset` (freed or replaced), dirty or
  // not. REQUIRES: nobody holds one of them across a suspension.
  void drop_table(uint64_t table_offset);

  // The dirty slices (pinned by the returned references).
  std::vector<L2SliceRef> dirty_slices() const;
  // Writes one slice back where it belongs (debug event l2_update) and marks it clean. The
  // caller has made its dependencies stable.
  Task<Status> write_back(L2Slice& slice);
  // cache-clean-interval: drops clean, unpinned slices unused since the last call.
  void drop_idle();

 private:
  // Evicts the least recently used unpinned slice while the cache is full; a dirty one is
  // written back after its dependencies (refcounts, then data) are stable.
  Task<Status> make_room();

  BlockNode& file_;
  Refcounts* refcounts_ = nullptr;
  const uint64_t cluster_size_;
  const uint64_t slice_bytes_;
  const uint64_t entry_bytes_;
  LruCache<L2Slice> slices_;  // by slice host offset
};

}  // namespace qblock::qcow2
