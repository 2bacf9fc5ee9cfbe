// Resizing (qemu-img resize): growing the virtual size and the L1 table, and shrinking as
// qemu-img 7.2 does, down to the refcount blocks that count nothing any more.
#include <algorithm>

#include "base/byte_order.h"
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

Task<Status> Qcow2Node::do_truncate(uint64_t size, PreallocMode mode, Exact) {
  if (size % 512) {
    co_return fail(Error::with_message(EINVAL, "The new size must be a multiple of 512"));
  }
  if (Status u = check_usable(); !u) co_return u;
  AsyncMutex::Guard guard = co_await lock_.lock();
  if (size < header_.size && header_.nb_snapshots) {
    // 7.2 shrinks such images too; shrink() assumes every L2 table it drops is unshared.
    co_return fail(Error::with_message(
        ENOTSUP, "Shrinking qcow2 images with internal snapshots is not supported yet"));
  }
  if (size < header_.size) co_return co_await shrink(size);
  if (size == header_.size) co_return ok();
  co_return co_await grow(size, mode, std::move(guard));
}

// Growing. Over a backing file that reaches past the old end, the new area must read as
// zeros, not as what the backing file has there (qemu-img 7.2, observed): whole clusters
// become zero clusters and the rest of the old last cluster is written with zeros (a COW of
// the backing data before the old end). v2 images have no zero clusters, so 7.2 refuses to
// grow them then, changing nothing. All of it lies past the old end and is on disk before
// the header gets the new size, so a crash on the way leaves the old size.
Task<Status> Qcow2Node::grow(uint64_t size, PreallocMode mode, AsyncMutex::Guard guard) {
  const uint64_t old_size = header_.size;
  const bool zero_new_area = backing_ && backing_->length() > old_size;
  if (zero_new_area && header_.version < 3) {
    co_return fail(Error::unsupported("Failed to zero out new clusters"));
  }
  const uint64_t span = cs_ * l2_entries_;
  const uint64_t needed = (size + span - 1) / span;
  if (needed > l1_.size()) {
    Status s = co_await grow_l1_table(needed);
    if (!s) co_return s;
  }
  if (has_data_file()) {
    Status s = co_await grow_data_file(old_size, size, mode);
    if (!s) co_return s;
  } else if (mode != PreallocMode::kOff) {
    Status s = ok();
    if (mode == PreallocMode::kMetadata) {
      s = co_await preallocate_metadata(old_size, size);
    } else {
      s = co_await preallocate_data(old_size, size, mode);
    }
    if (!s) co_return s;
    // qcow2-format.md §17: everything the new area needs is stable before the size says so.
    s = co_await flush_metadata();
    if (!s) co_return s;
  }
  if (zero_new_area) {
    const uint64_t zero_start = (old_size + cs_ - 1) / cs_ * cs_;
    // Preallocated clusters read as zeros already and stay data clusters (qemu-img 7.2).
    if (zero_start < size && mode == PreallocMode::kOff) {
      Status s = co_await zero_clusters(zero_start, size, RequestFlags{});
      if (!s) co_return s;
    }
    if (zero_start > old_size) {
      // The write path takes lock_ itself; truncate is a serialising request, so nothing
      // else runs meanwhile.
      guard.unlock();
      const uint64_t bytes = std::min(zero_start, size) - old_size;
      AlignedBuffer zeros(bytes);
      zeros.fill(0);
      Status s = co_await do_write(old_size, IoVec(zeros.data(), bytes), RequestFlags{});
      if (!s) co_return s;
      guard = co_await lock_.lock();
    }
    Status s = co_await flush_metadata();
    if (!s) co_return s;
  }
  header_.size = size;
  co_return co_await write_header();
}

// Grows the L1 table to `needed` entries: a new copy elsewhere, then the header, then the
// old copy is freed (qcow2-format.md §17 R7).
Task<Status> Qcow2Node::grow_l1_table(uint64_t needed) {
  const uint64_t new_clusters = (needed * 8 + cs_ - 1) / cs_;
  Result<uint64_t> where = co_await refcounts_->allocate(new_clusters);
  if (!where) co_return fail(where.error());
  Status s = co_await refcounts_->write_dirty();
  if (!s) co_return s;
  // Only the entries are written, as 7.2 does: the file may end inside the last cluster.
  std::vector<uint8_t> raw(needed * 8, 0);
  for (uint64_t i = 0; i < l1_.size(); ++i) store_be64(&raw[i * 8], l1_[i]);
  s = co_await file_->write(*where, IoVec(raw.data(), raw.size()));
  if (!s) co_return s;
  s = co_await file_->flush();
  if (!s) co_return s;
  const uint64_t old_offset = header_.l1_table_offset;
  const uint64_t old_clusters = (l1_.size() * 8 + cs_ - 1) / cs_;
  header_.l1_table_offset = *where;
  header_.l1_size = static_cast<uint32_t>(needed);
  s = co_await write_header();
  if (!s) co_return s;
  l1_.resize(needed, 0);
  if (old_offset && old_clusters) {
    s = co_await refcounts_->update(old_offset / cs_, old_clusters, -1);
    if (!s) co_return s;
  }
  co_return ok();
}

// Shrinking as qemu-img 7.2 does it (observed with resize --shrink, check and hexdumps):
// - every cluster mapped at or past the new size rounded up to a cluster is freed, its L2
//   entry cleared to 0 (unallocated, also plain zero entries);
// - L2 tables wholly past the new end are freed and their L1 entries zeroed in place; the L1
//   table keeps its location and the header keeps its l1_size;
// - freed clusters are punched out of the file, and the file is cut after the last cluster
//   that still has a reference;
// - the header gets the new size last, so a crash on the way leaves the old size with less
//   data (reading as zeros), never a reference to a freed cluster.
// - refcount blocks left counting nothing but themselves are dropped from the refcount
//   table (drop_unused_refblocks), so the file can end before them.
Task<Status> Qcow2Node::shrink(uint64_t size) {
  const uint64_t span = cs_ * l2_entries_;
  const uint64_t start = (size + cs_ - 1) / cs_ * cs_;  // first guest byte to free
  const uint64_t keep_l1 = (size + span - 1) / span;    // L1 entries still needed
  std::vector<uint64_t> freed;                          // host cluster indexes released

  // The table that stays but maps clusters past the end: clear them. flush_metadata() writes
  // it before the frees take effect (§17 R5). 7.2 gives that range an (empty) L2 table even
  // when it had none; so do we, for byte-identical results.
  if (start % span != 0 && start < header_.size && l1_index(start) < l1_.size()) {
    const uint64_t table_end = start - start % span + span;
    bool used = !(l1_[l1_index(start)] & kOffsetMask);
    for (uint64_t pos = start; !used && pos < table_end;
         pos = pos - pos % slice_span() + slice_span()) {
      Result<L2SliceRef> probe = co_await get_l2_slice(pos, ForWrite::kNo);
      if (!probe) co_return fail(probe.error());
      const std::vector<uint64_t>& entries = (*probe)->entries;
      const std::vector<uint64_t>& bitmaps = (*probe)->bitmaps;  // §7.1, empty if standard
      used = std::any_of(entries.begin() + static_cast<std::ptrdiff_t>(index_in_slice(pos)),
                         entries.end(), [](uint64_t e) { return e != 0; }) ||
             (!bitmaps.empty() &&
              std::any_of(bitmaps.begin() + static_cast<std::ptrdiff_t>(index_in_slice(pos)),
                          bitmaps.end(), [](uint64_t b) { return b != 0; }));
    }
    for (uint64_t pos = start; used && pos < table_end;
         pos = pos - pos % slice_span() + slice_span()) {
      Result<L2SliceRef> slice = co_await get_l2_slice(pos, ForWrite::kYes);
      if (!slice) co_return fail(slice.error());
      const uint64_t first = index_in_slice(pos);
      std::vector<uint64_t>& entries = (*slice)->entries;
      for (uint64_t i = first; i < entries.size(); ++i) {
        if (entry_references_host(entries[i])) {
          queue_free(entries[i], DiscardType::kRequest);  // punched below in any case
          // §10: a data file's clusters are not in the image file.
          if (!has_data_file()) host_clusters(entries[i], freed);
        }
        entries[i] = 0;
        if (!(*slice)->bitmaps.empty()) (*slice)->bitmaps[i] = 0;
      }
      Status s = co_await update_l2_entries(**slice, first, entries.size() - first);
      if (!s) co_return s;
    }
  }

  // Tables past the end: collect what they reference first (loading one may write back the
  // cache, which must not release anything still reachable from the L1 table on disk).
  std::vector<uint64_t> dropped_refs;
  std::vector<uint64_t> dropped_data;  // §10: clusters of the data file, never punched here
  bool l1_changed = false;
  for (uint64_t l1i = keep_l1; l1i < l1_.size(); ++l1i) {
    const uint64_t l2_offset = l1_[l1i] & kOffsetMask;
    if (!l2_offset) {
      l1_changed = l1_changed || l1_[l1i] != 0;
      continue;
    }
    Result<std::vector<uint64_t>> table = co_await l2_cache_.read_table(l2_offset);
    if (!table) co_return fail(table.error());
    const uint64_t stride = header_.extended_l2() ? 2 : 1;  // §7.1: skip the bitmaps
    for (uint64_t i = 0; i < table->size(); i += stride) {
      if (!entry_references_host((*table)[i])) continue;
      (has_data_file() ? dropped_data : dropped_refs).push_back((*table)[i]);
    }
    dropped_refs.push_back(l2_offset);  // the table itself, as a normal cluster entry
    l1_changed = true;
  }
  if (l1_changed) {
    for (uint64_t l1i = keep_l1; l1i < l1_.size(); ++l1i) {
      const uint64_t l2_offset = l1_[l1i] & kOffsetMask;
      if (l2_offset) {
        l2_cache_.drop_table(l2_offset);
        l2_offsets_.erase(l2_offset);
      }
      l1_[l1i] = 0;
    }
    co_await file_->debug_event(DebugEvent::kL1Update);
    const uint64_t where = header_.l1_table_offset + keep_l1 * 8;
    const uint64_t bytes = (l1_.size() - keep_l1) * 8;
    Status s = co_await guard_existing(where, bytes, 0, "active L1 table");
    if (!s) co_return s;
    std::vector<uint8_t> zeros(bytes, 0);
    s = co_await file_->write(where, IoVec(zeros.data(), bytes));
    if (!s) co_return s;
    // §17 R5: the L1 entries are gone on disk before anything they reached is released.
    s = co_await file_->flush();
    if (!s) co_return s;
  }
  for (uint64_t e : dropped_data) queue_free(e, DiscardType::kRequest);
  if (has_data_file()) {
    // release_entry() takes every non-compressed entry of such an image for a data-file
    // cluster: the dropped L2 tables' refcounts are released here (their L1 entries are
    // gone on disk, §17 R5).
    for (uint64_t e : dropped_refs) {
      Status s = co_await refcounts_->update((e & kOffsetMask) / cs_, 1, -1);
      if (!s) co_return s;
      host_clusters(e, freed);
    }
    dropped_refs.clear();
  }
  for (uint64_t e : dropped_refs) {
    queue_free(e, DiscardType::kRequest);
    host_clusters(e, freed);
  }
  Status s = co_await flush_metadata();
  if (!s) co_return s;
  if (has_data_file() && data_->length() > size) {
    // §10, as qemu-img 7.2 (observed, data_file_raw on or off): the data file ends at the new
    // size, once no L2 entry points past it.
    s = co_await data_->truncate(size, PreallocMode::kOff);
    if (!s) co_return s;
  }
  // Dropped refcount blocks read as zeros in 7.2's result (it clears a block's own refcount
  // before finding it unused): they join the clusters punched below.
  Result<std::vector<uint64_t>> dropped_blocks = co_await drop_unused_refblocks();
  if (!dropped_blocks) co_return fail(dropped_blocks.error());
  freed.insert(freed.end(), dropped_blocks->begin(), dropped_blocks->end());

  // Cut the file after the last cluster in use (7.2 ignores a failure here, and so do we).
  const uint64_t file_len = file_->length();
  uint64_t end = (file_len + cs_ - 1) / cs_;
  while (end > 0) {
    Result<uint64_t> rc = co_await refcounts_->get(end - 1);
    if (!rc) co_return fail(rc.error());
    if (*rc != 0) break;
    --end;
  }
  if (end * cs_ < file_len) {
    Status cut = co_await file_->truncate(end * cs_, PreallocMode::kOff, Exact::kNo);
    (void)cut;
  }
  // Punch the freed clusters that remain inside the file, as 7.2 discards them. Best effort:
  // they read as unallocated either way.
  std::sort(freed.begin(), freed.end());
  freed.erase(std::unique(freed.begin(), freed.end()), freed.end());
  const uint64_t new_len = file_->length();
  for (uint64_t c : freed) {
    if (c * cs_ >= new_len) break;
    Result<uint64_t> rc = co_await refcounts_->get(c);
    if (!rc || *rc != 0) continue;
    const uint64_t bytes = std::min(cs_, new_len - c * cs_);
    Task<Status> punch =
        file_->write_zeroes(c * cs_, bytes, RequestFlag::kMayUnmap | RequestFlag::kNoFallback);
    Status punched = co_await std::move(punch);
    (void)punched;
  }

  header_.size = size;
  co_return co_await write_header();
}

// As 7.2 does after a shrink (observed): a refcount block whose refcounts are all zero, apart
// from its own when it lies in the range it describes, leaves the refcount table. The table
// is rewritten first (§17 R5); a block counted elsewhere then has its refcount dropped. Works
// on the on-disk structures, which flush_metadata() has just made current, and reloads the
// refcount state afterwards. REQUIRES: lock_ held, no dirty metadata.
Task<Result<std::vector<uint64_t>>> Qcow2Node::drop_unused_refblocks() {
  const uint64_t table_bytes = uint64_t{header_.refcount_table_clusters} * cs_;
  const uint32_t bits = header_.refcount_bits();
  const uint64_t per_block = cs_ * 8 / bits;
  std::vector<uint8_t> table(table_bytes);
  Status s = co_await file_->read(header_.refcount_table_offset, IoVec(table.data(), table_bytes));
  if (!s) co_return fail(s.error());
  std::vector<uint64_t> counted_elsewhere;  // dropped blocks another block counts
  std::vector<uint64_t> dropped;
  std::vector<uint8_t> block(cs_);
  for (uint64_t i = 0; i < table_bytes / 8; ++i) {
    const uint64_t offset = load_be64(&table[i * 8]) & ~uint64_t{511};
    if (!offset || offset + cs_ > file_->length()) continue;
    s = co_await file_->read(offset, IoVec(block.data(), cs_));
    if (!s) co_return fail(s.error());
    const bool self_described = offset / cs_ / per_block == i;
    if (self_described) {
      // Clear its own entry (§5.2 layout: big-endian, sub-byte widths from bit 0).
      const uint64_t bit = offset / cs_ % per_block * bits;
      if (bits >= 8) {
        std::fill_n(block.begin() + static_cast<std::ptrdiff_t>(bit / 8), bits / 8, 0);
      } else {
        block[bit / 8] &= static_cast<uint8_t>(~(((1u << bits) - 1) << (bit % 8)));
      }
    }
    if (!std::all_of(block.begin(), block.end(), [](uint8_t b) { return b == 0; })) continue;
    store_be64(&table[i * 8], 0);
    dropped.push_back(offset / cs_);
    if (!self_described) counted_elsewhere.push_back(offset);
  }
  if (dropped.empty()) co_return dropped;
  s = co_await file_->write(header_.refcount_table_offset, IoVec(table.data(), table_bytes));
  if (!s) co_return fail(s.error());
  s = co_await file_->flush();
  if (!s) co_return fail(s.error());
  replace_refcounts();
  s = co_await refcounts_->load();
  if (!s) co_return fail(s.error());
  for (uint64_t offset : counted_elsewhere) {
    s = co_await refcounts_->update(offset / cs_, 1, -1);
    if (!s) co_return fail(s.error());
  }
  s = co_await refcounts_->write_dirty();
  if (!s) co_return fail(s.error());
  co_return dropped;
}

}  // namespace qblock::qcow2
