// qcow2 refcounts (qcow2-format.md §5): the refcount table in memory, refcount blocks loaded
// on demand into a bounded cache (refcount-cache-size, least recently used evicted first),
// and the first-fit cluster allocator. Changes stay in memory (dirty) until
// write_dirty(), which the driver calls before linking metadata that depends on them
// (§17 R1).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "block/driver.h"
#include "block/formats/qcow2/header.h"

namespace qblock::qcow2 {

// One refcount of a refcount block in its on-disk encoding (§5.2: big-endian for 8 bits and
// more, packed from bit 0 of each byte below that). REQUIRES: `index` < entries per block.
uint64_t read_refcount_entry(const uint8_t* block, uint32_t refcount_bits, uint64_t index);
void write_refcount_entry(uint8_t* block, uint32_t refcount_bits, uint64_t index, uint64_t value);

class Refcounts {
 public:
  // REQUIRES: `file` outlives this object; `header` stays valid (its reftable fields are
  // updated in place when the table moves). At most `cache_blocks` refcount blocks stay in
  // memory (more while blocks wait for a location); a dirty one is written back before it
  // leaves.
  Refcounts(BlockNode& file, Header& header, std::size_t cache_blocks);

  // Loads the refcount table. Errors: I/O, or corrupt entries.
  Task<Status> load();

  // Refcount of the host cluster with that index (0 beyond the covered range).
  Task<Result<uint64_t>> get(uint64_t cluster_index);
  // Refcounts of the host clusters with those indexes, in order: get() for many clusters,
  // each refcount block looked up once per run of indexes it covers (a table's clusters).
  Task<Result<std::vector<uint64_t>>> get_many(const std::vector<uint64_t>& cluster_indexes);
  // Adds `delta` to the refcount of `count` clusters starting at `cluster_index`.
  // Errors: EINVAL on underflow/overflow of the refcount width (the image is left unchanged
  // for that cluster).
  Task<Status> update(uint64_t cluster_index, uint64_t count, int64_t delta);
  // Finds `count` contiguous free clusters (lowest first) and sets their refcount to 1.
  // Returns the host offset of the first. May allocate refcount blocks on the way.
  Task<Result<uint64_t>> allocate(uint64_t count);
  // Like allocate(), but settles for the first free run of at least `min_count` clusters,
  // taking up to `max_count`. Returns its host offset and length in clusters.
  Task<Result<std::pair<uint64_t, uint64_t>>> allocate_run(uint64_t min_count, uint64_t max_count);
  // qcow2_refcount_area as QEMU 7.2 lays it out (what its preallocating resize does first):
  // refcount blocks at clusters `start`, `start` + 1, ... for every refcount-table index from
  // start's up to what covers start + `additional` clusters and the new structures themselves
  // that has no block yet, then a new refcount table just large enough for them, right
  // after; all counted, written and flushed, the header's table fields switched (written to
  // the file), the old table freed. Returns the index of the first cluster after the new
  // table. REQUIRES: no cluster at or past `start` is in use. Errors: I/O, ENOSPC
  // "Reference count table too large".
  Task<Result<uint64_t>> place_area(uint64_t start, uint64_t additional);
  // The index of the last cluster below `below` with a non-zero refcount (0 if none).
  Task<Result<uint64_t>> last_used_cluster(uint64_t below);
  // True if refcount changes are waiting to be written.
  bool dirty() const;
  // Writes every changed refcount block and the table if it changed, then flushes the file.
  Task<Status> write_dirty();

  uint64_t entries_per_block() const { return entries_per_block_; }
  // cache-clean-interval: forgets clean blocks not used since the previous call.
  void drop_idle();
  // Refcount blocks in memory (for tests of the cache bound).
  std::size_t cached_blocks() const { return blocks_.size(); }
  // True if [offset, offset + bytes) touches a refcount block (for overlap checks, §13).
  bool overlaps_block(uint64_t offset, uint64_t bytes) const;

 private:
  struct Block {
    std::vector<uint8_t> data;  // one cluster, on-disk encoding
    bool dirty = false;
    uint64_t last_use = 0;  // use_clock_ at the last lookup
  };
  // Evicts least recently used placed blocks until there is room for one more.
  Task<Status> make_room();
  Task<Result<Block*>> load_block(uint64_t table_index, bool create);
  uint64_t read_entry(const Block& b, uint64_t index) const;
  void write_entry(Block& b, uint64_t index, uint64_t value);
  Task<Status> grow_table(uint64_t needed_entries);
  // Writes the header's refcount-table fields and flushes, then frees the old table.
  Task<Status> switch_table(uint64_t old_offset, uint64_t old_clusters);
  Task<Status> describe(uint64_t table_index);
  bool reserved(uint64_t cluster_index) const;
  Task<Status> place_pending_blocks();

  BlockNode& file_;
  Header& header_;
  uint64_t cluster_size_;
  uint32_t refcount_bits_;
  uint64_t entries_per_block_;
  uint64_t max_refcount_;
  std::vector<uint64_t> table_;  // refcount table entries (host offsets of blocks)
  bool table_dirty_ = false;
  std::map<uint64_t, Block> blocks_;  // by refcount-table index
  std::size_t cache_blocks_;
  uint64_t use_clock_ = 0;
  uint64_t idle_mark_ = 0;            // use_clock_ at the previous drop_idle()
  uint64_t free_hint_ = 0;            // no free cluster below this index
  bool table_outside_file_ = false;   // the table was never written: refuse to count
  uint64_t end_index_ = 0;            // past the highest cluster this object counted
  std::vector<uint64_t> pending_;     // described blocks still waiting for a location
  std::set<uint64_t> block_offsets_;  // host offsets of every placed refcount block
};

}  // namespace qblock::qcow2
