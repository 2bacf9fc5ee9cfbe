// qcow2 refcounts (see refcount.h).
#include "block/formats/qcow2/refcount.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

#include "base/byte_order.h"
#include "base/check.h"

namespace qblock::qcow2 {

Refcounts::Refcounts(BlockNode& file, Header& header, std::size_t cache_blocks)
    : file_(file),
      header_(header),
      cluster_size_(header.cluster_size()),
      refcount_bits_(header.refcount_bits()),
      entries_per_block_(header.cluster_size() * 8 / header.refcount_bits()),
      max_refcount_(header.refcount_bits() == 64 ? ~uint64_t{0}
                                                 : (uint64_t{1} << header.refcount_bits()) - 1),
      cache_blocks_(std::max<std::size_t>(cache_blocks, 1)) {}

Task<Status> Refcounts::load() {
  const uint64_t bytes = uint64_t{header_.refcount_table_clusters} * cluster_size_;
  // A table that does not lie inside the file was never written: counting anything with it
  // would write it out of thin air, so refcount changes are refused (reads still work).
  table_outside_file_ = header_.refcount_table_offset + bytes > file_.length();
  std::vector<uint8_t> raw(bytes);
  Status s = co_await file_.read(header_.refcount_table_offset, IoVec(raw.data(), bytes));
  if (!s) co_return s;
  table_.resize(bytes / 8);
  for (std::size_t i = 0; i < table_.size(); ++i) {
    table_[i] = load_be64(&raw[i * 8]) & kRefTableOffsetMask;
  }
  for (uint64_t off : table_) {
    if (off) block_offsets_.insert(off);
  }
  co_return ok();
}

bool Refcounts::overlaps_block(uint64_t offset, uint64_t bytes) const {
  auto it = block_offsets_.upper_bound(offset);
  if (it != block_offsets_.end() && *it < offset + bytes) return true;
  if (it == block_offsets_.begin()) return false;
  --it;
  return *it + cluster_size_ > offset;
}

uint64_t read_refcount_entry(const uint8_t* block, uint32_t refcount_bits, uint64_t index) {
  switch (refcount_bits) {
    case 64: return load_be64(block + index * 8);
    case 32: return load_be32(block + index * 4);
    case 16: return load_be16(block + index * 2);
    case 8: return block[index];
    default: {
      // qcow2-format.md §5.2: sub-byte widths pack from bit 0 of each byte.
      const uint64_t bit = index * refcount_bits;
      return (block[bit / 8] >> (bit % 8)) & ((1u << refcount_bits) - 1);
    }
  }
}

void write_refcount_entry(uint8_t* block, uint32_t refcount_bits, uint64_t index, uint64_t value) {
  switch (refcount_bits) {
    case 64: store_be64(block + index * 8, value); break;
    case 32: store_be32(block + index * 4, static_cast<uint32_t>(value)); break;
    case 16: store_be16(block + index * 2, static_cast<uint16_t>(value)); break;
    case 8: block[index] = static_cast<uint8_t>(value); break;
    default: {
      const uint64_t bit = index * refcount_bits;
      const uint8_t mask = static_cast<uint8_t>(((1u << refcount_bits) - 1) << (bit % 8));
      block[bit / 8] =
          static_cast<uint8_t>((block[bit / 8] & ~mask) | ((value << (bit % 8)) & mask));
    }
  }
}

uint64_t Refcounts::read_entry(const Block& b, uint64_t index) const {
  return read_refcount_entry(b.data.data(), refcount_bits_, index);
}

void Refcounts::write_entry(Block& b, uint64_t index, uint64_t value) {
  write_refcount_entry(b.data.data(), refcount_bits_, index, value);
  b.dirty = true;
}

Task<Result<Refcounts::Block*>> Refcounts::load_block(uint64_t table_index, bool create) {
  auto it = blocks_.find(table_index);
  if (it != blocks_.end()) {
    it->second.last_use = ++use_clock_;
    co_return &it->second;
  }
  if (table_index >= table_.size() || table_[table_index] == 0) {
    if (!create) co_return nullptr;
    co_return fail(Error::invalid("refcount block not allocated"));
  }
  if (table_[table_index] % cluster_size_) {
    // As QEMU, an image with a damaged entry opens; only the block's use is refused.
    co_return fail(Error::with_message(
        EUCLEAN,
        fmt::format("Refblock offset {:#x} unaligned (reftable index: {})", table_[table_index],
                    table_index ? fmt::format("{:#x}", table_index) : std::string("0"))));
  }
  Status room = co_await make_room();
  if (!room) co_return fail(room.error());
  Block block;
  block.last_use = ++use_clock_;
  block.data.resize(cluster_size_);
  Status s = co_await file_.read(table_[table_index], IoVec(block.data.data(), cluster_size_));
  if (!s) co_return fail(s.error());
  auto [pos, inserted] = blocks_.emplace(table_index, std::move(block));
  co_return &pos->second;
}

Task<Status> Refcounts::make_room() {
  while (blocks_.size() >= cache_blocks_) {
    // Blocks still waiting for a location (table_ entry 0) cannot be read back: they stay.
    auto victim = blocks_.end();
    for (auto it = blocks_.begin(); it != blocks_.end(); ++it) {
      if (it->first >= table_.size() || table_[it->first] == 0) continue;
      if (victim == blocks_.end() || it->second.last_use < victim->second.last_use) victim = it;
    }
    if (victim == blocks_.end()) co_return ok();
    if (victim->second.dirty) {
      // Writing refcounts early is always safe (§17: increments may precede their users,
      // decrements were deferred until their references were gone).
      const uint64_t t = victim->first;
      Status s = co_await write_dirty();
      if (!s) co_return s;
      victim = blocks_.find(t);
      if (victim == blocks_.end() || victim->second.dirty) continue;
    }
    blocks_.erase(victim);
  }
  co_return ok();
}

void Refcounts::drop_idle() {
  for (auto it = blocks_.begin(); it != blocks_.end();) {
    const bool idle = it->second.last_use <= idle_mark_;
    if (idle && !it->second.dirty && it->first < table_.size() && table_[it->first] != 0) {
      it = blocks_.erase(it);
    } else {
      ++it;
    }
  }
  idle_mark_ = use_clock_;
}

Task<Result<uint64_t>> Refcounts::get(uint64_t cluster_index) {
  Result<Block*> b = co_await load_block(cluster_index / entries_per_block_, false);
  if (!b) co_return fail(b.error());
  if (!*b) co_return uint64_t{0};
  co_return read_entry(**b, cluster_index % entries_per_block_);
}

Task<Result<std::vector<uint64_t>>> Refcounts::get_many(
    const std::vector<uint64_t>& cluster_indexes) {
  std::vector<uint64_t> refcounts(cluster_indexes.size());
  uint64_t loaded = UINT64_MAX;  // the table index `block` belongs to
  const Block* block = nullptr;
  for (std::size_t i = 0; i < cluster_indexes.size(); ++i) {
    const uint64_t t = cluster_indexes[i] / entries_per_block_;
    if (t != loaded) {
      Result<Block*> b = co_await load_block(t, false);
      if (!b) co_return fail(b.error());
      block = *b;
      loaded = t;
    }
    refcounts[i] = block ? read_entry(*block, cluster_indexes[i] % entries_per_block_) : 0;
  }
  co_return refcounts;
}

// Gives refcount-table index `t` an in-memory refcount block and a home for it. The block
// exists (and describes its clusters) before its location is chosen, so the allocation of
// that location can see the clusters already counted, including possibly a cluster inside
// the block's own range.
Task<Status> Refcounts::describe(uint64_t t) {
  if (t >= table_.size()) {
    Status g = co_await grow_table(t + 1);
    if (!g) co_return g;
  }
  if (table_[t] != 0 || blocks_.count(t)) co_return ok();
  Block fresh;
  fresh.data.assign(cluster_size_, 0);
  fresh.dirty = true;
  blocks_.emplace(t, std::move(fresh));
  table_dirty_ = true;
  pending_.push_back(t);
  co_return ok();
}

Task<Status> Refcounts::place_pending_blocks() {
  while (!pending_.empty()) {
    const uint64_t t = pending_.back();
    pending_.pop_back();
    Result<uint64_t> where = co_await allocate(1);
    if (!where) co_return fail(where.error());
    table_[t] = *where;
    block_offsets_.insert(*where);
  }
  co_return ok();
}

bool Refcounts::reserved(uint64_t cluster_index) const {
  const uint64_t off = cluster_index * cluster_size_;
  auto inside = [off](uint64_t start, uint64_t len) {
    return off + 1 > start && off < start + len;
  };
  // The header, the active L1 table, the refcount table and every refcount block are never
  // free, whatever a damaged refcount says about them.
  return cluster_index == 0 ||
         inside(header_.l1_table_offset / cluster_size_ * cluster_size_,
                uint64_t{header_.l1_size} * 8 + header_.l1_table_offset % cluster_size_) ||
         inside(header_.refcount_table_offset,
                uint64_t{header_.refcount_table_clusters} * cluster_size_) ||
         block_offsets_.count(off);
}

Task<Status> Refcounts::update(uint64_t cluster_index, uint64_t count, int64_t delta) {
  if (table_outside_file_) {
    co_return fail(Error::with_message(
        EIO, "qcow2: the refcount table lies beyond the end of the image file"));
  }
  // Each block is looked up once per run of clusters it covers (a snapshot's millions of
  // clusters are counted in runs); nothing suspends between two clusters of one block.
  uint64_t loaded = UINT64_MAX;  // the table index `block` belongs to
  Block* block = nullptr;
  for (uint64_t i = cluster_index; i < cluster_index + count; ++i) {
    const uint64_t t = i / entries_per_block_;
    if (t != loaded) {
      if (!(t < table_.size() && table_[t] != 0) && !blocks_.count(t)) {
        if (delta < 0) co_return fail(Error::invalid("refcount underflow"));
        Status d = co_await describe(t);
        if (!d) co_return d;
      }
      Result<Block*> b = co_await load_block(t, false);
      if (!b) co_return fail(b.error());
      CHECK(*b != nullptr);
      block = *b;
      loaded = t;
    }
    const uint64_t idx = i % entries_per_block_;
    const uint64_t old = read_entry(*block, idx);
    if ((delta < 0 && old < static_cast<uint64_t>(-delta)) ||
        (delta > 0 && max_refcount_ - old < static_cast<uint64_t>(delta))) {
      co_return fail(Error::invalid(fmt::format("refcount of cluster {} out of range", i)));
    }
    const uint64_t now = old + static_cast<uint64_t>(delta);
    write_entry(*block, idx, now);
    if (now == 0 && i < free_hint_) free_hint_ = i;
    if (now != 0) end_index_ = std::max(end_index_, i + 1);
  }
  co_return co_await place_pending_blocks();
}

Task<Result<uint64_t>> Refcounts::allocate(uint64_t count) {
  Result<std::pair<uint64_t, uint64_t>> run = co_await allocate_run(count, count);
  if (!run) co_return fail(run.error());
  co_return run->first;
}

Task<Result<std::pair<uint64_t, uint64_t>>> Refcounts::allocate_run(uint64_t min_count,
                                                                    uint64_t max_count) {
  CHECK(min_count > 0 && min_count <= max_count);
  uint64_t start = free_hint_;
  uint64_t run = 0;
  // The scan may cross every cluster of the image (the hint starts at 0 after open): each
  // block is looked up once, and nothing suspends between two of its clusters.
  uint64_t loaded = UINT64_MAX;  // the table index `block` belongs to
  const Block* block = nullptr;  // null: no block describes these clusters, they are free
  for (uint64_t i = free_hint_;; ++i) {
    const uint64_t t = i / entries_per_block_;
    if (t != loaded) {
      block = nullptr;
      if ((t < table_.size() && table_[t] != 0) || blocks_.count(t)) {
        Result<Block*> b = co_await load_block(t, false);
        if (!b) co_return fail(b.error());
        block = *b;
      }
      loaded = t;
    }
    uint64_t rc = block ? read_entry(*block, i % entries_per_block_) : 0;
    if (rc == 0 && reserved(i)) rc = 1;
    if (rc != 0) {
      if (run >= min_count) break;
      run = 0;
      if (i == free_hint_) ++free_hint_;
      continue;
    }
    if (run == 0) start = i;
    if (++run == max_count) break;
  }
  // Reserve the run before counting it: counting may move the refcount table, which must
  // then land past these clusters.
  end_index_ = std::max(end_index_, start + run);
  Status s = co_await update(start, run, +1);
  if (!s) co_return fail(s.error());
  if (start <= free_hint_) free_hint_ = std::max(free_hint_, start + run);
  co_return std::pair<uint64_t, uint64_t>{start * cluster_size_, run};
}

// Moves the refcount table to the end of the used area with room for `needed_entries`, with
// refcount blocks for its own clusters placed right after it (§17 R4: blocks and table are
// complete and flushed before the header points at them).
Task<Status> Refcounts::grow_table(uint64_t needed_entries) {
  const uint64_t per_cluster = cluster_size_ / 8;
  // The first cluster index past everything in use: the end of the file and every block.
  // Counted clusters may lie past the end of the file (allocated, not yet written).
  uint64_t start = std::max((file_.length() + cluster_size_ - 1) / cluster_size_, end_index_);
  for (uint64_t off : table_) start = std::max(start, off / cluster_size_ + 1);
  // The new table and the blocks describing it sit at `start`; the table must be large
  // enough to describe itself too, so size it until that holds.
  uint64_t entries = std::max<uint64_t>(needed_entries, table_.size() * 2);
  uint64_t table_clusters = 0;
  uint64_t new_blocks = 0;
  for (;;) {
    entries = (entries + per_cluster - 1) / per_cluster * per_cluster;
    table_clusters = entries / per_cluster;
    // Blocks for every undescribed range of [start, start + table_clusters + new_blocks).
    for (;;) {
      const uint64_t end = start + table_clusters + new_blocks;
      uint64_t missing = 0;
      for (uint64_t t = start / entries_per_block_; t <= (end - 1) / entries_per_block_; ++t) {
        if (!(t < table_.size() && table_[t]) && !blocks_.count(t)) ++missing;
      }
      if (missing == new_blocks) break;
      new_blocks = missing;
    }
    const uint64_t last_t = (start + table_clusters + new_blocks - 1) / entries_per_block_;
    if (last_t < entries) break;
    entries = last_t + 1;
  }
  if (table_clusters * cluster_size_ > (8ULL << 20)) {
    co_return fail(Error::no_space("Reference count table too large"));
  }
  const uint64_t old_offset = header_.refcount_table_offset;
  const uint64_t old_clusters = header_.refcount_table_clusters;
  std::vector<uint64_t> new_table = table_;
  new_table.resize(entries, 0);
  uint64_t next = start + table_clusters;
  const uint64_t region_end = next + new_blocks;
  for (uint64_t t = start / entries_per_block_; t <= (region_end - 1) / entries_per_block_; ++t) {
    if (new_table[t] != 0 || blocks_.count(t)) continue;
    Block fresh;
    fresh.data.assign(cluster_size_, 0);
    blocks_.emplace(t, std::move(fresh));
    new_table[t] = next * cluster_size_;
    ++next;
  }
  CHECK(next == region_end);
  table_ = std::move(new_table);
  for (uint64_t off : table_) {
    if (off) block_offsets_.insert(off);
  }
  table_dirty_ = true;
  header_.refcount_table_offset = start * cluster_size_;
  header_.refcount_table_clusters = static_cast<uint32_t>(table_clusters);
  if (free_hint_ < next) free_hint_ = next;
  Status s = co_await update(start, next - start, +1);
  if (!s) co_return s;
  co_return co_await switch_table(old_offset, old_clusters);
}

Task<Status> Refcounts::switch_table(uint64_t old_offset, uint64_t old_clusters) {
  Status s = co_await write_dirty();
  if (!s) co_return s;
  // The header now points at the new table; the caller's next header write must persist
  // it, so write the two fields at once (offset 48..59 of the header).
  uint8_t fields[12];
  store_be64(fields, header_.refcount_table_offset);
  store_be32(fields + 8, header_.refcount_table_clusters);
  s = co_await file_.write(48, IoVec(fields, sizeof(fields)));
  if (!s) co_return s;
  s = co_await file_.flush();
  if (!s) co_return s;
  // §17 R5: the old table is released only after nothing points at it.
  co_return co_await update(old_offset / cluster_size_, old_clusters, -1);
}

Task<Result<uint64_t>> Refcounts::place_area(uint64_t start, uint64_t additional) {
  const uint64_t per_cluster = cluster_size_ / 8;
  // The blocks that cover everything up to the area's end, the area's own structures
  // included: the fixed point of blocks and table clusters (qcow2_refcount_metadata_size).
  const uint64_t covered = start + additional;
  uint64_t blocks = 0, table_clusters = 0, n = 0, last = 0;
  do {
    last = n;
    blocks = (covered + table_clusters + blocks + entries_per_block_ - 1) / entries_per_block_;
    table_clusters = (blocks + per_cluster - 1) / per_cluster;
    n = covered + blocks + table_clusters;
  } while (n != last);
  if (table_clusters * cluster_size_ > (8ULL << 20)) {
    co_return fail(Error::no_space("Reference count table too large"));
  }
  // Entries past the old table's last block may be dropped (nothing lies past `start`), but
  // never one that points at a block.
  uint64_t entries = table_clusters * per_cluster;
  for (uint64_t t = entries; t < table_.size(); ++t) {
    if (table_[t]) entries = (t / per_cluster + 1) * per_cluster;
  }
  std::vector<uint64_t> new_table = table_;
  new_table.resize(entries, 0);
  uint64_t next = start;
  for (uint64_t t = start / entries_per_block_; t < blocks; ++t) {
    if (new_table[t] != 0 || blocks_.count(t)) continue;
    Block fresh;
    fresh.data.assign(cluster_size_, 0);
    fresh.dirty = true;  // written even if it counts nothing yet: the cluster may hold garbage
    blocks_.emplace(t, std::move(fresh));
    new_table[t] = next * cluster_size_;
    ++next;
  }
  const uint64_t table_start = next;
  const uint64_t end = table_start + entries / per_cluster;
  const uint64_t old_offset = header_.refcount_table_offset;
  const uint64_t old_clusters = header_.refcount_table_clusters;
  table_ = std::move(new_table);
  for (uint64_t off : table_) {
    if (off) block_offsets_.insert(off);
  }
  table_dirty_ = true;
  header_.refcount_table_offset = table_start * cluster_size_;
  header_.refcount_table_clusters = static_cast<uint32_t>(entries / per_cluster);
  end_index_ = std::max(end_index_, end);
  if (free_hint_ < end && free_hint_ >= start) free_hint_ = end;
  Status s = co_await update(start, end - start, +1);
  if (!s) co_return fail(s.error());
  s = co_await switch_table(old_offset, old_clusters);
  if (!s) co_return fail(s.error());
  co_return end;
}

Task<Result<uint64_t>> Refcounts::last_used_cluster(uint64_t below) {
  for (uint64_t i = below; i > 0; --i) {
    Result<uint64_t> r = co_await get(i - 1);
    if (!r) co_return fail(r.error());
    if (*r) co_return i - 1;
  }
  co_return uint64_t{0};
}

bool Refcounts::dirty() const {
  if (table_dirty_) return true;
  for (const auto& [t, block] : blocks_) {
    if (block.dirty && table_[t] != 0) return true;
  }
  return false;
}

Task<Status> Refcounts::write_dirty() {
  bool wrote = false;
  for (auto& [t, block] : blocks_) {
    if (!block.dirty || table_[t] == 0) continue;  // not placed yet: written once it is
    Status s = co_await file_.write(table_[t], IoVec(block.data.data(), cluster_size_));
    if (!s) co_return s;
    block.dirty = false;
    wrote = true;
  }
  if (table_dirty_) {
    if (wrote) {
      // §17 R4: blocks reach the disk before the table entries that point at them.
      Status f = co_await file_.flush();
      if (!f) co_return f;
    }
    std::vector<uint8_t> raw(uint64_t{header_.refcount_table_clusters} * cluster_size_, 0);
    for (std::size_t i = 0; i < table_.size() && i * 8 < raw.size(); ++i) {
      store_be64(&raw[i * 8], table_[i]);
    }
    Status s = co_await file_.write(header_.refcount_table_offset, IoVec(raw.data(), raw.size()));
    if (!s) co_return s;
    table_dirty_ = false;
    wrote = true;
  }
  if (!wrote) co_return ok();
  co_return co_await file_.flush();
}

}  // namespace qblock::qcow2
