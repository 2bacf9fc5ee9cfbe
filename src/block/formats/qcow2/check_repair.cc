// qemu-img check's second half (see check.h): the stored refcounts compared with the
// counted references, leaks and wrong refcounts repaired, COPIED flags fixed, and the rebuild
// of the refcount structures as the last resort.
#include <fmt/format.h>

#include <algorithm>
#include <cinttypes>
#include <optional>

#include "base/byte_order.h"
#include "block/formats/qcow2/checker.h"
#include "block/formats/qcow2/l2_entry.h"
#include "block/formats/qcow2/refcount.h"
#include "block/formats/qcow2/snapshot.h"

namespace qblock::qcow2::check_internal {

// Compares stored and computed refcounts. A cluster in use whose refcount is 0 can only be
// repaired by rebuilding the refcount structures (it may have no refcount block at all).
Task<void> Checker::compare(unsigned fix) {
  for (uint64_t i = 0; i < nb_clusters_; ++i) {
    // Without a coroutine per cluster where no I/O is needed: a repair may have grown the
    // file by a gigabyte, millions of clusters of 512 bytes.
    Result<uint64_t> st = uint64_t{0};
    if (const std::optional<uint64_t> cached = stored_if_cached(i)) {
      st = *cached;
    } else {
      st = co_await stored(i);
    }
    if (!st) {
      diag("Can't get refcount for cluster {}: {}", i, st.error().errno_text());
      ++res_.check_errors;
      continue;
    }
    const uint64_t have = *st;
    const uint64_t want = i < refs_.size() ? refs_[i] : 0;
    if (have > 0 || want > 0) highest_cluster_ = i;
    if (have == want) continue;
    uint64_t* fixed = nullptr;
    if (have == 0) {
      rebuild_ = true;
    } else if (have > want && (fix & kFixLeaks)) {
      fixed = &res_.leaks_fixed;
    } else if (have < want && (fix & kFixErrors)) {
      fixed = &res_.corruptions_fixed;
    }
    diag("{} cluster {} refcount={} reference={}",
         fixed ? "Repairing" : (have < want ? "ERROR" : "Leaked"), i, have, want);
    if (fixed) {
      Status s = co_await set_stored(i, want);
      if (s) {
        ++*fixed;
        if (want == 0) freed_.push_back(i);
        continue;
      }
    }
    if (have < want) {
      ++res_.corruptions;
    } else {
      ++res_.leaks;
    }
  }
  Status w = co_await write_stored_blocks();
  if (!w) {
    diag("ERROR: Could not write refcount blocks: {}", w.error().errno_text());
    ++res_.check_errors;
    freed_.clear();  // the refcounts may not be on disk: the clusters stay as they are
  }
  co_await discard_freed();
}

Task<void> Checker::discard_freed() {
  // A count that could not read everything may have missed a reference: the refcount is
  // fixed as QEMU fixes it, but the data stays in the file.
  if (res_.check_errors) freed_.clear();
  // Contiguous clusters go out as one discard.
  for (std::size_t i = 0; i < freed_.size();) {
    std::size_t j = i + 1;
    while (j < freed_.size() && freed_[j] == freed_[j - 1] + 1) ++j;
    const uint64_t offset = freed_[i] << bits_;
    const uint64_t bytes = uint64_t{j - i} << bits_;
    Status s = co_await t_.file.discard(offset, bytes);
    (void)s;
    i = j;
  }
  freed_.clear();
}

// §3.6: COPIED must be set exactly on the active entries whose cluster has refcount 1. A
// repaired L1 entry is written at once (the 512-byte part of the table holding it), an L2
// table once all its entries are done; a write that would overwrite other metadata, or fails,
// ends the check.
Task<void> Checker::check_copied_flags() {
  // Without errors repairing a flag is as safe as fixing a leak; otherwise the refcounts
  // themselves may be wrong and only -r all touches the flags.
  const bool repair = (fix_ & kFixErrors) || ((fix_ & kFixLeaks) && !res_.check_errors &&
                                              !res_.corruptions && !res_.leaks);
  const Header& h = t_.header;
  const uint64_t l1_entries = entries_in_file(h.l1_table_offset, h.l1_size);
  if (l1_entries == 0) co_return;
  std::vector<uint8_t> l1(l1_entries * 8);
  Status s = co_await read_at(h.l1_table_offset, l1.data(), l1.size());
  if (!s) {
    ++res_.check_errors;
    co_return;
  }
  bool wrote = false;
  for (uint64_t i = 0; i < l1_entries; ++i) {
    uint64_t l1_entry = load_be64(&l1[i * 8]);
    const uint64_t l2_offset = l1_entry & kOffsetMask;
    if (l2_offset == 0) continue;
    Result<uint64_t> rc = co_await stored(l2_offset >> bits_);
    if (!rc) continue;
    if ((*rc == 1) != ((l1_entry & kCopied) != 0)) {
      diag("{} OFLAG_COPIED L2 cluster: l1_index={} l1_entry={:x} refcount={}",
           repair ? "Repairing" : "ERROR", i, l1_entry, *rc);
      if (repair) {
        l1_entry = *rc == 1 ? (l1_entry | kCopied) : (l1_entry & ~kCopied);
        store_be64(&l1[i * 8], l1_entry);
        if (i < active_l1_.size()) active_l1_[i] = l1_entry;
        overlap_index_stale_ = true;
        constexpr uint64_t kEntriesPerSector = 512 / 8;
        const uint64_t first = i / kEntriesPerSector * kEntriesPerSector;
        const uint64_t n = std::min<uint64_t>(kEntriesPerSector, l1_entries - first);
        const uint64_t at = h.l1_table_offset + first * 8;
        if (co_await refuse_overlap(at, n * 8, kActiveL1)) {
          ++res_.check_errors;
          failed_ = Error::io();
          co_return;
        }
        Status w = co_await write_at(at, &l1[first * 8], n * 8);
        if (!w) {
          diag("ERROR: Could not write L1 table: {}", w.error().errno_text());
          ++res_.check_errors;
          failed_ = Error::from_errno(w.error().errnum());
          co_return;
        }
        wrote = true;
        ++res_.corruptions_fixed;
      } else {
        ++res_.corruptions;
      }
    }
    // §7.1: extended L2 entries are pairs of words, the entry first.
    const uint64_t stride = t_.header.extended_l2() ? 2 : 1;
    const uint64_t l2_words = entries_in_file(l2_offset, cs_ / 8);
    const uint64_t l2_entries = l2_words / stride;
    if (l2_entries == 0) continue;
    std::vector<uint8_t>& l2 = l2_buf_;
    l2.resize(l2_words * 8);
    s = co_await read_at(l2_offset, l2.data(), l2.size());
    if (!s) {
      diag("ERROR: Could not read L2 table: {}", s.error().errno_text());
      ++res_.check_errors;
      continue;
    }
    bool l2_dirty = false;
    for (uint64_t j = 0; j < l2_entries; ++j) {
      uint64_t entry = load_be64(&l2[j * 8 * stride]);
      if ((entry & kCompressedFlag) || (entry & kOffsetMask) == 0) continue;
      // §10: data clusters in a data file have no refcount to agree with.
      if (t_.header.incompatible_features & kIncompatDataFile) continue;
      Result<uint64_t> data_rc = co_await stored((entry & kOffsetMask) >> bits_);
      if (!data_rc) continue;
      if ((*data_rc == 1) != ((entry & kCopied) != 0)) {
        diag("{} OFLAG_COPIED data cluster: l2_entry={:x} refcount={}",
             repair ? "Repairing" : "ERROR", entry, *data_rc);
        if (repair) {
          entry = *data_rc == 1 ? (entry | kCopied) : (entry & ~kCopied);
          store_be64(&l2[j * 8 * stride], entry);
          l2_dirty = true;
          ++res_.corruptions_fixed;
        } else {
          ++res_.corruptions;
        }
      }
    }
    if (l2_dirty) {
      if (co_await refuse_overlap(l2_offset, l2.size(), kActiveL2)) {
        diag("ERROR: Could not write L2 table; metadata overlap check failed: {}",
             Error::io().errno_text());
        ++res_.check_errors;
        failed_ = Error::io();
        co_return;
      }
      Status w = co_await write_at(l2_offset, l2.data(), l2.size());
      if (!w) {
        diag("ERROR: Could not write L2 table: {}", w.error().errno_text());
        ++res_.check_errors;
        failed_ = Error::from_errno(w.error().errnum());
        co_return;
      }
      wrote = true;
    }
  }
  if (wrote) (void)co_await t_.file.flush();
}

// ---- the snapshot table -------------------------------------------------------------------

Task<Result<uint64_t>> Checker::allocate_stored(uint64_t count) {
  for (;;) {
    // First fit over clusters that are free both by count and by stored refcount.
    uint64_t start = 0;
    uint64_t c = 0;
    while (c - start < count) {
      bool free = c >= refs_.size() || refs_[c] == 0;
      if (free) {
        Result<uint64_t> st = co_await stored(c);
        if (!st) co_return fail(st.error());
        free = *st == 0;
      }
      ++c;
      if (!free) start = c;
    }
    uint64_t missing = start + count;  // the first cluster without a refcount block
    for (uint64_t k = start; k < start + count; ++k) {
      const uint64_t t = k / entries_per_block_;
      if (t >= reftable_.size()) co_return fail(Error::no_space());
      if (!(reftable_[t] & kRefTableOffsetMask)) {
        missing = k;
        break;
      }
    }
    if (refs_.size() < start + count) refs_.resize(start + count, 0);
    if (missing == start + count) {
      for (uint64_t k = start; k < start + count; ++k) {
        Status s = co_await set_stored(k, 1);
        if (!s) co_return fail(s.error());
        refs_[k] = 1;
      }
      highest_cluster_ = std::max(highest_cluster_, start + count - 1);
      co_return start;
    }
    // §5.1: a new refcount block placed in the range it describes counts itself.
    const uint64_t t = missing / entries_per_block_;
    StoredBlock block;
    block.data.assign(cs_, 0);
    write_refcount_entry(block.data.data(), refcount_bits_, missing % entries_per_block_, 1);
    const uint64_t block_offset = missing << bits_;
    if (co_await refuse_overlap(block_offset, cs_, 0)) co_return fail(Error::io());
    Status s = co_await write_at(block_offset, block.data.data(), cs_);
    if (s) s = co_await t_.file.flush();
    if (!s) co_return fail(s.error());
    uint8_t raw[8];
    store_be64(raw, block_offset);
    const uint64_t entry_offset = t_.header.refcount_table_offset + t * 8;
    if (co_await refuse_overlap(entry_offset, 8, kRefcountTable)) co_return fail(Error::io());
    s = co_await write_at(entry_offset, raw, 8);
    if (s) s = co_await t_.file.flush();
    if (!s) co_return fail(s.error());
    reftable_[t] = block_offset;
    overlap_index_stale_ = true;
    blocks_[t] = std::move(block);
    refs_[missing] = 1;
  }
}

// §8.1: the table goes to new clusters, the header is pointed at it, then the old table's
// clusters are released (a failure before the header switches leaves the old table valid).
Task<Status> Checker::write_snapshot_table() {
  Header& h = t_.header;
  const std::vector<uint8_t> table = encode_snapshot_table(snapshots_, h.size);
  uint64_t offset = 0;
  if (!table.empty()) {
    Result<uint64_t> first = co_await allocate_stored((table.size() + cs_ - 1) / cs_);
    if (!first) co_return fail(first.error());
    offset = *first << bits_;
    Status s = co_await write_stored_blocks();
    if (!s) co_return s;
    if (co_await refuse_overlap(offset, table.size(), 0)) co_return fail(Error::io());
    s = co_await write_at(offset, table.data(), table.size());
    if (s) s = co_await t_.file.flush();
    if (!s) co_return s;
  }
  // Header fields 60–71: nb_snapshots and snapshots_offset.
  uint8_t fields[12];
  store_be32(fields, static_cast<uint32_t>(snapshots_.size()));
  store_be64(fields + 4, offset);
  Status s = co_await write_at(60, fields, sizeof fields);
  if (s) s = co_await t_.file.flush();
  if (!s) co_return s;
  const uint64_t old_offset = h.snapshots_offset;
  const uint64_t old_bytes = snapshot_table_bytes_;
  h.nb_snapshots = static_cast<uint32_t>(snapshots_.size());
  h.snapshots_offset = offset;
  snapshot_table_bytes_ = table.size();
  if (old_bytes == 0) co_return ok();
  const uint64_t last = (old_offset + old_bytes - 1) >> bits_;
  for (uint64_t k = old_offset >> bits_; k <= last; ++k) {
    Result<uint64_t> st = co_await stored(k);
    if (!st || *st == 0) continue;
    s = co_await set_stored(k, *st - 1);
    if (!s) co_return s;
    if (k < refs_.size() && refs_[k]) --refs_[k];
  }
  co_return co_await write_stored_blocks();
}

// ---- rebuilding the refcount structures ---------------------------------------------------

// First fit over the computed refcounts, growing the image at its end when nothing fits.
uint64_t Checker::allocate_counted(uint64_t count) {
  uint64_t start = first_free_;
  while (start < refs_.size() && refs_[start] != 0) ++start;
  first_free_ = start;
  for (;;) {
    uint64_t end = start;
    while (end < start + count && (end >= refs_.size() || refs_[end] == 0)) ++end;
    if (end == start + count) break;
    start = end + 1;
  }
  if (refs_.size() < start + count) refs_.resize(start + count, 0);
  for (uint64_t k = start; k < start + count; ++k) refs_[k] = 1;
  return start;
}

// Writes new refcount blocks and a new table describing the references just counted, then
// points the header at them. The old structures stay untouched until the header switches, so
// a failure leaves the image as it was; afterwards they are merely leaked.
Task<Status> Checker::rebuild() {
  first_free_ = 0;
  std::vector<uint64_t> table;  // refcount block offsets by table index
  uint64_t table_offset = 0;
  uint64_t table_clusters = 0;
  for (;;) {
    bool placed_block = false;
    for (uint64_t t = 0; t * entries_per_block_ < refs_.size(); ++t) {
      if (t < table.size() && table[t]) continue;
      const uint64_t end = std::min<uint64_t>(refs_.size(), (t + 1) * entries_per_block_);
      const bool used = std::any_of(
          refs_.begin() + static_cast<std::ptrdiff_t>(t * entries_per_block_),
          refs_.begin() + static_cast<std::ptrdiff_t>(end), [](uint32_t r) { return r != 0; });
      if (!used) continue;
      if (table.size() <= t) table.resize(t + 1, 0);
      table[t] = allocate_counted(1) << bits_;
      placed_block = true;
    }
    const uint64_t needed = (table.size() * 8 + cs_ - 1) / cs_;
    if (table_clusters >= needed && !placed_block) break;
    if (table_clusters < needed) {
      for (uint64_t k = 0; k < table_clusters; ++k) refs_[(table_offset >> bits_) + k] = 0;
      first_free_ = std::min(first_free_, table_offset >> bits_);
      table_offset = allocate_counted(needed) << bits_;
      table_clusters = needed;
    }
  }
  std::vector<uint8_t> block(cs_);
  for (uint64_t t = 0; t < table.size(); ++t) {
    if (!table[t]) continue;
    std::fill(block.begin(), block.end(), 0);
    for (uint64_t k = 0; k < entries_per_block_; ++k) {
      const uint64_t cluster = t * entries_per_block_ + k;
      if (cluster >= refs_.size()) break;
      write_refcount_entry(block.data(), refcount_bits_, k, refs_[cluster]);
    }
    // A structure the count missed (one past the end of the file) may sit where the new
    // block was placed: as QEMU's, the write is refused then.
    if (co_await refuse_overlap(table[t], cs_, 0)) {
      co_return fail(Error(EIO, "ERROR writing refblock"));
    }
    Status s = co_await write_at(table[t], block.data(), cs_);
    if (!s) co_return fail(Error(s.error().errnum(), "ERROR writing refblock"));
  }
  std::vector<uint8_t> raw(table_clusters * cs_, 0);
  for (uint64_t t = 0; t < table.size(); ++t) store_be64(&raw[t * 8], table[t]);
  if (co_await refuse_overlap(table_offset, raw.size(), 0)) {
    co_return fail(Error(EIO, "ERROR writing reftable"));
  }
  Status s = co_await write_at(table_offset, raw.data(), raw.size());
  if (!s) co_return fail(Error(s.error().errnum(), "ERROR writing reftable"));
  s = co_await t_.file.flush();
  if (!s) co_return s;
  // Header fields 48–59: refcount_table_offset and refcount_table_clusters.
  uint8_t fields[12];
  store_be64(fields, table_offset);
  store_be32(fields + 8, static_cast<uint32_t>(table_clusters));
  s = co_await write_at(48, fields, sizeof fields);
  if (!s) co_return fail(Error(s.error().errnum(), "ERROR setting reftable"));
  s = co_await t_.file.flush();
  if (!s) co_return s;
  t_.header.refcount_table_offset = table_offset;
  t_.header.refcount_table_clusters = static_cast<uint32_t>(table_clusters);
  co_return co_await load_reftable();
}

// After a successful repair the image is consistent again: clear dirty and corrupt (§11, §12).
Task<Status> Checker::mark_clean() {
  const uint64_t bits = kIncompatDirty | kIncompatCorrupt;
  if (!(t_.header.incompatible_features & bits)) co_return ok();
  t_.header.incompatible_features &= ~bits;
  uint8_t raw[8];
  store_be64(raw, t_.header.incompatible_features);
  Status s = co_await write_at(72, raw, 8);
  if (!s) co_return s;
  co_return co_await t_.file.flush();
}

}  // namespace qblock::qcow2::check_internal
