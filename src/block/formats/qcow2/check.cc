// qcow2 consistency check and repair (see check.h).
#include "block/formats/qcow2/check.h"

#include <fmt/format.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "base/byte_order.h"
#include "block/formats/qcow2/bitmaps.h"
#include "block/formats/qcow2/checker.h"
#include "block/formats/qcow2/l2_entry.h"
#include "block/formats/qcow2/refcount.h"
#include "block/formats/qcow2/snapshot.h"
#include "block/formats/qcow2/subcluster.h"

namespace qblock::qcow2 {

namespace check_internal {

Task<Status> Checker::read_at(uint64_t offset, uint8_t* buf, uint64_t len) {
  // Past the end of the file reads as zeros, as a plain file does.
  const uint64_t file_len = t_.file.length();
  const uint64_t inside = offset >= file_len ? 0 : std::min(len, file_len - offset);
  std::memset(buf + inside, 0, len - inside);
  if (inside == 0) co_return ok();
  co_return co_await t_.file.read(offset, IoVec(buf, inside));
}

uint64_t Checker::entries_in_file(uint64_t offset, uint64_t count) const {
  const uint64_t file_len = t_.file.length();
  if (offset >= file_len) return 0;
  return std::min(count, (file_len - offset + 7) / 8);
}

Task<Status> Checker::write_at(uint64_t offset, const uint8_t* buf, uint64_t len) {
  if (t_.broken) co_return fail(Error::io());
  co_return co_await t_.file.write(offset, IoVec(const_cast<uint8_t*>(buf), len));
}

// §12: the first corruption event of an open image is printed; on a writable image it sets
// the corrupt bit and further writes fail.
Task<Error> Checker::corruption(std::string reason) {
  if (!t_.corruption_reported) {
    t_.corruption_reported = true;
    if (t_.writable) {
      diag("qcow2: Marking image as corrupt: {}; further corruption events will be suppressed",
           reason);
    } else {
      diag(
          "qcow2: Image is corrupt: {}; further non-fatal corruption events will be "
          "suppressed",
          reason);
    }
  }
  if (t_.writable && !t_.broken) {
    t_.broken = true;
    if (t_.header.version >= 3) {
      t_.header.incompatible_features |= kIncompatCorrupt;
      uint8_t raw[8];
      store_be64(raw, t_.header.incompatible_features);
      if (co_await t_.file.write(72, IoVec(raw, 8))) (void)co_await t_.file.flush();
    }
  }
  co_return Error::io();
}

// §13 in QEMU's order of categories: the first structure hit is the one reported.
const char* Checker::overlapping_metadata(uint64_t offset, uint64_t bytes, unsigned ignore) const {
  if (bytes == 0) return nullptr;
  const uint64_t end = offset + bytes;
  auto hits = [&](uint64_t start, uint64_t len) {
    return len && start < end && offset < start + len;
  };
  const Header& h = t_.header;
  if (!(ignore & kMainHeader) && hits(0, cs_)) return "qcow2_header";
  if (!(ignore & kActiveL1) && hits(h.l1_table_offset, uint64_t{h.l1_size} * 8)) {
    return "active L1 table";
  }
  if (overlap_index_stale_) {
    // Sorted once per change of the tables: a repair checks one write per damaged entry,
    // and a scan of every L1 and refcount table entry per write made that quadratic.
    l2_index_.clear();
    for (uint64_t entry : active_l1_) {
      if (entry & kOffsetMask) l2_index_.push_back(entry & kOffsetMask);
    }
    std::sort(l2_index_.begin(), l2_index_.end());
    refblock_index_.clear();
    for (uint64_t entry : reftable_) {
      if (entry & kRefTableOffsetMask) refblock_index_.push_back(entry & kRefTableOffsetMask);
    }
    std::sort(refblock_index_.begin(), refblock_index_.end());
    overlap_index_stale_ = false;
  }
  // Whether a cluster starting at one of `starts` (sorted) meets [offset, end).
  auto hits_cluster = [&](const std::vector<uint64_t>& starts) {
    const uint64_t lowest = offset >= cs_ ? offset - cs_ + 1 : 0;
    auto it = std::lower_bound(starts.begin(), starts.end(), lowest);
    return it != starts.end() && *it < end;
  };
  if (!(ignore & kActiveL2) && hits_cluster(l2_index_)) return "active L2 table";
  if (!(ignore & kRefcountTable) &&
      hits(h.refcount_table_offset, uint64_t{h.refcount_table_clusters} * cs_)) {
    return "refcount table";
  }
  if (!(ignore & kRefcountBlock) && hits_cluster(refblock_index_)) return "refcount block";
  if (!(ignore & kSnapshotTable) && hits(h.snapshots_offset, snapshot_table_bytes_)) {
    return "snapshot table";
  }
  if (!(ignore & kInactiveL1)) {
    for (const Snapshot& snap : snapshots_) {
      if (hits(snap.l1_table_offset, uint64_t{snap.l1_size} * 8)) return "inactive L1 table";
    }
  }
  if (!(ignore & kBitmapDirectory) && h.bitmaps && h.bitmaps->size() >= 24 &&
      (h.autoclear_features & kAutoclearBitmaps)) {
    if (hits(load_be64(h.bitmaps->data() + 16), load_be64(h.bitmaps->data() + 8))) {
      return "bitmap directory";
    }
  }
  return nullptr;
}

Task<bool> Checker::refuse_overlap(uint64_t offset, uint64_t bytes, unsigned ignore) {
  const char* what = overlapping_metadata(offset, bytes, ignore);
  if (!what) co_return false;
  (void)co_await corruption(
      fmt::format("Preventing invalid write on metadata (overlaps with {})", what));
  co_return true;
}

Task<void> Checker::load_active_l1() {
  const Header& h = t_.header;
  active_l1_.clear();
  if (h.l1_size == 0) co_return;
  std::vector<uint8_t> raw(uint64_t{h.l1_size} * 8);
  Status s = co_await read_at(h.l1_table_offset, raw.data(), raw.size());
  if (!s) co_return;
  active_l1_.resize(h.l1_size);
  for (uint64_t i = 0; i < h.l1_size; ++i) active_l1_[i] = load_be64(&raw[i * 8]);
  overlap_index_stale_ = true;
}

// ---- counting references ------------------------------------------------------------------

void Checker::count(uint64_t offset, uint64_t size) {
  if (size == 0) return;
  const uint64_t file_len = t_.file.length();
  if (offset + size > file_len && offset + size - file_len >= cs_) {
    diag(
        "ERROR: counting reference for region exceeding the end of the file by one cluster or "
        "more: offset {:#x} size {:#x}",
        offset, size);
    ++res_.corruptions;
    return;
  }
  const uint64_t last = (offset + size - 1) >> bits_;
  for (uint64_t k = offset >> bits_; k <= last; ++k) {
    if (k >= refs_.size()) refs_.resize(k + 1, 0);
    if (refs_[k] >= max_refcount_) {
      diag("ERROR: overflow cluster offset={:#x}", k << bits_);
      diag(
          "Use qemu-img amend to increase the refcount entry width or qemu-img convert to "
          "create a clean copy if the image cannot be opened for writing");
      ++res_.corruptions;
      continue;
    }
    ++refs_[k];
  }
  nb_clusters_ = std::max<uint64_t>(nb_clusters_, refs_.size());
}

Task<void> Checker::count_l2(uint64_t l2_offset, bool active) {
  // Fragmentation is judged within one L2 table (observed with qemu-img 7.2).
  have_previous_data_ = false;
  // §7.1: with extended L2 entries every entry is followed by its subcluster bitmap.
  const bool extended = t_.header.extended_l2();
  const uint64_t stride = extended ? 2 : 1;
  const uint64_t words = entries_in_file(l2_offset, cs_ / 8);
  const uint64_t entries = words / stride;
  if (entries == 0) co_return;
  std::vector<uint8_t>& raw = l2_buf_;
  raw.resize(words * 8);
  Status s = co_await read_at(l2_offset, raw.data(), raw.size());
  if (!s) {
    diag("ERROR: I/O error in check_refcounts_l2");
    ++res_.check_errors;
    co_return;
  }
  for (uint64_t i = 0; i < entries; ++i) {
    uint64_t entry = load_be64(&raw[i * 8 * stride]);
    const uint64_t bitmap = extended ? load_be64(&raw[i * 16 + 8]) : 0;
    if (entry & kCompressedFlag) {
      if (bitmap) {
        diag(
            "ERROR compressed cluster {} with non-zero subcluster allocation bitmap, "
            "entry={:#x}",
            i, entry);
        ++res_.corruptions;
        continue;
      }
      if (entry & kCopied) {
        diag("ERROR: coffset={:#x}: copied flag must never be set for compressed clusters",
             decode_compressed(entry & ~kCopied, bits_).host);
        entry &= ~kCopied;
        ++res_.corruptions;
      }
      // §6.1: the data runs from the start offset to the end of its last 512-byte sector.
      const CompressedDescriptor d = decode_compressed(entry, bits_);
      if (active) {
        ++res_.allocated_clusters;
        ++res_.compressed_clusters;
        ++res_.fragmented_clusters;  // compressed data is fragmented by nature
      }
      count(d.host, d.max_bytes());
      continue;
    }
    if (entry & kL2ReservedMask) {
      diag("ERROR found l2 entry with reserved bits set: {:x}", entry);
      ++res_.corruptions;
    }
    const uint64_t offset = entry & kOffsetMask;
    // §10: data clusters live in the data file and are not refcounted; offset 0 with COPIED
    // (and, in a standard entry, no zero flag) is guest cluster 0 there.
    const bool data_file = t_.header.incompatible_features & kIncompatDataFile;
    const bool data_at_zero =
        data_file && offset == 0 && (entry & kCopied) && (extended || !(entry & kZeroFlag));
    if (extended && offset == 0 && !data_at_zero && (bitmap & kAllAllocBits)) {
      diag("ERROR: Unallocated cluster has non-zero subcluster allocation map");
      ++res_.corruptions;
    }
    if (offset == 0 && !data_at_zero) continue;  // unallocated or a plain zero cluster
    if (extended && ((bitmap >> 32) & bitmap)) {
      diag("ERROR offset={:x}: Allocated cluster has corrupted subcluster allocation bitmap",
           offset);
      ++res_.corruptions;
    }
    const bool zero_alloc = !extended && (entry & kZeroFlag);
    if (offset % cs_) {
      if (zero_alloc && (fix_ & kFixErrors)) {
        diag(
            "Repairing offset={:x}: Preallocated cluster is not properly aligned; L2 entry "
            "corrupted.",
            offset);
        // The table may lie over other metadata (a damaged L1 entry): then the check ends.
        const bool refused =
            co_await refuse_overlap(l2_offset + i * 8, 8, active ? unsigned{kActiveL2} : 0u);
        if (refused) {
          diag("ERROR: Overlap check failed");
          ++res_.check_errors;
          failed_ = Error::io();
          co_return;
        }
        uint8_t plain[8];
        store_be64(plain, kZeroFlag);
        Status w = co_await write_at(l2_offset + i * 8, plain, 8);
        if (w) {
          ++res_.corruptions_fixed;
          continue;
        }
        diag("ERROR: Failed to overwrite L2 table entry: {}", w.error().errno_text());
        ++res_.corruptions;
      } else {
        diag("ERROR offset={:x}: {} cluster is not properly aligned; L2 entry corrupted.", offset,
             zero_alloc ? "Preallocated" : "Data");
        ++res_.corruptions;
      }
    }
    if (active) {
      ++res_.allocated_clusters;
      if (have_previous_data_ && offset != next_contiguous_) ++res_.fragmented_clusters;
      have_previous_data_ = true;
      next_contiguous_ = offset + cs_;
    }
    if (!data_file) count(offset, cs_);
  }
}

Task<void> Checker::count_l1(uint64_t l1_offset, uint64_t l1_size, bool active) {
  count(l1_offset, l1_size * 8);
  const uint64_t entries = entries_in_file(l1_offset, l1_size);
  if (entries == 0) co_return;
  std::vector<uint8_t>& raw = l1_buf_;
  raw.resize(entries * 8);
  Status s = co_await read_at(l1_offset, raw.data(), raw.size());
  if (!s) {
    diag("ERROR: I/O error in check_refcounts_l1");
    ++res_.check_errors;
    co_return;
  }
  for (uint64_t i = 0; i < entries; ++i) {
    const uint64_t entry = load_be64(&raw[i * 8]);
    if (entry & kL1ReservedMask) {
      diag("ERROR found L1 entry with reserved bits set: {:x}", entry);
      ++res_.corruptions;
    }
    // As QEMU's check: an entry that is not zero names an L2 table, even if its offset bits
    // are (reserved bits alone point at the header cluster).
    if (entry == 0) continue;
    const uint64_t l2_offset = entry & kOffsetMask;
    if (failed_) co_return;
    count(l2_offset, cs_);
    if (l2_offset % cs_) {
      diag("ERROR l2_offset={:x}: Table is not cluster aligned; L1 entry corrupted", l2_offset);
      ++res_.corruptions;
    }
    if (entries_in_file(l2_offset, cs_ / 8) == 0) {
      have_previous_data_ = false;  // what count_l2 would do with a table of zeros
      continue;
    }
    co_await count_l2(l2_offset, active);
  }
}

// §8.1: the snapshot table, read before anything else is checked (as QEMU does). A table QEMU
// would not read fails the check, unless -r all repairs it as QEMU's does: extra data over
// 1 KiB is cut to 1 KiB, the entries that make the table exceed 64 MiB are dropped at once
// (the header's count is rewritten; their clusters become leaks). v3 entries without the 16
// bytes of extra data v3 requires are corruptions; -r all completes them. Cut and completed
// entries are written out by write_snapshot_table() once the refcounts are repaired.
Task<Status> Checker::read_snapshots() {
  Header& h = t_.header;
  if (h.nb_snapshots == 0) co_return ok();
  const bool repair = fix_ & kFixErrors;
  // The open let through what QEMU's open refuses (SnapshotTableLimits::kCheckedByCaller).
  Header read_as = h;
  if (h.nb_snapshots > kMaxSnapshots) {
    const uint32_t over = h.nb_snapshots - kMaxSnapshots;
    if (!repair) {
      co_return fail(Error::with_message(
          EFBIG, fmt::format("ERROR snapshot table too large\nYou can force-remove all {} "
                             "overhanging snapshots with qemu-img check -r all",
                             over)));
    }
    diag("Discarding {} overhanging snapshots", over);
    snapshots_dropped_ += over;
    read_as.nb_snapshots = kMaxSnapshots;
  }
  const uint64_t min_bytes = uint64_t{read_as.nb_snapshots} * 40;
  if (h.snapshots_offset % cs_ || h.snapshots_offset > uint64_t{INT64_MAX} - min_bytes) {
    co_return fail(Error::with_message(EINVAL, "ERROR snapshot table offset invalid"));
  }
  Task<Result<SnapshotTable>> read =
      read_snapshot_table(t_.file, read_as, repair ? SnapshotRepair::kYes : SnapshotRepair::kNo);
  Result<SnapshotTable> table = co_await std::move(read);
  if (!table) {
    co_return fail(
        Error::with_message(table.error().errnum(),
                            "ERROR failed to read the snapshot table: " + table.error().message()));
  }
  for (const auto& [index, bytes] : table->extra_data_cut) {
    diag("Discarding too much extra metadata in snapshot table entry {} ({} > {})", index, bytes,
         kMaxSnapshotExtraDataBytes);
  }
  snapshot_corruptions_ += table->extra_data_cut.size();
  if (table->overhanging) {
    diag("Discarding {} overhanging snapshots (snapshot table is too big)", table->overhanging);
  }
  if (table->overhanging || snapshots_dropped_) {
    // The refcount check must see the table the header describes.
    uint8_t raw[4];
    store_be32(raw, static_cast<uint32_t>(table->snapshots.size()));
    Status s = co_await write_at(60, raw, sizeof raw);
    if (s) s = co_await t_.file.flush();
    if (!s) {
      ++res_.check_errors;
      diag("ERROR failed to update the snapshot count in the image header: {}",
           s.error().errno_text());
      co_return s;
    }
    h.nb_snapshots = static_cast<uint32_t>(table->snapshots.size());
    snapshots_dropped_ += table->overhanging;
  }
  snapshot_table_bytes_ = table->bytes;
  snapshots_ = std::move(table->snapshots);
  if (h.version >= 3) {
    for (std::size_t i = 0; i < snapshots_.size(); ++i) {
      if (snapshots_[i].extra_data.size() < kMinV3SnapshotExtraDataBytes) {
        diag("{} snapshot table entry {} is incomplete", repair ? "Repairing" : "ERROR", i);
        ++snapshot_corruptions_;
      }
    }
  }
  co_return ok();
}

// Every snapshot's L1 tree, unless its entry is unusable.
Task<void> Checker::count_snapshots() {
  const Header& h = t_.header;
  if (h.nb_snapshots == 0) co_return;
  for (const Snapshot& snap : snapshots_) {
    if (snap.l1_table_offset % cs_) {
      diag(
          "ERROR snapshot {} ({}) l1_offset={:#x}: L1 table is not cluster aligned; snapshot "
          "table entry corrupted",
          snap.id, snap.name, snap.l1_table_offset);
      ++res_.corruptions;
      continue;
    }
    if (uint64_t{snap.l1_size} * 8 > kMaxL1TableBytes) {
      diag(
          "ERROR snapshot {} ({}) l1_size={}: L1 table is too large; snapshot table entry "
          "corrupted",
          snap.id, snap.name, c_hex(snap.l1_size));
      ++res_.corruptions;
      continue;
    }
    co_await count_l1(snap.l1_table_offset, snap.l1_size, false);
    if (failed_) co_return;
  }
  count(h.snapshots_offset, snapshot_table_bytes_);
}

// §14: a consistent bitmaps extension references its directory, each bitmap's table and
// the bitmap data clusters those tables point at.
Task<void> Checker::count_bitmaps() {
  Task<Result<BitmapDirectory>> read = read_bitmap_directory(t_.file, t_.header);
  Result<BitmapDirectory> dir = co_await std::move(read);
  if (!dir) {
    ++res_.check_errors;
    co_return;
  }
  count(dir->offset, dir->bytes);
  for (const Bitmap& b : dir->bitmaps) {
    count(b.table_offset, uint64_t{b.table_entries} * 8);
    std::vector<uint8_t> table(uint64_t{b.table_entries} * 8);
    Status s = co_await read_at(b.table_offset, table.data(), table.size());
    if (!s) {
      ++res_.check_errors;
      continue;
    }
    for (uint32_t i = 0; i < b.table_entries; ++i) {
      const uint64_t data = load_be64(&table[i * 8]) & kOffsetMask;
      if (data) count(data, cs_);
    }
  }
}

// Makes the file end after host cluster `cluster`. The offset comes from a damaged entry, so
// the growth is bounded: a size past INT64_MAX is refused with EINVAL (as QEMU refuses a
// negative size), and qblock also refuses, with EFBIG, to grow the file to more than twice its
// length plus 1 GiB (QEMU would try, and its rebuild could then fill the disk): that refusal
// reads as the file driver's own, as if a file-size limit had been reached.
Task<Status> Checker::grow_file_to_cover(uint64_t cluster) {
  constexpr uint64_t kSlack = uint64_t{1} << 30;
  const uint64_t max_clusters = uint64_t{INT64_MAX} >> bits_;
  if (cluster >= max_clusters) co_return fail(Error::invalid());
  const uint64_t size = (cluster + 1) << bits_;
  const uint64_t length = t_.file.length();
  if (size > length && size - length > length + kSlack) {
    co_return fail(Error::from_errno(EFBIG, "Could not resize file"));
  }
  co_return co_await t_.file.truncate(size);
}

Task<void> Checker::count_refblocks() {
  for (uint64_t i = 0; i < reftable_.size(); ++i) {
    if (reftable_[i] & ~kRefTableOffsetMask) {
      // Never trusted, so never grown to or written at: the rebuild replaces the block.
      diag("ERROR refcount table entry {} has reserved bits set", i);
      ++res_.corruptions;
      rebuild_ = true;
      continue;
    }
    const uint64_t offset = reftable_[i];
    if (offset == 0) continue;
    const uint64_t cluster = offset >> bits_;
    if (offset % cs_) {
      diag("ERROR refcount block {} is not cluster aligned; refcount table entry corrupted", i);
      ++res_.corruptions;
      rebuild_ = true;
      continue;
    }
    if (cluster >= nb_clusters_) {
      ++res_.corruptions;
      rebuild_ = true;
      if (!(fix_ & kFixErrors)) {
        diag("ERROR refcount block {} is outside image", i);
        continue;
      }
      // Make the file cover the block so that it can be counted, and rebuild around it.
      diag("Repairing refcount block {} is outside image", i);
      Status s = co_await grow_file_to_cover(cluster);
      if (!s) {
        // QEMU reports the failed truncate of the file under the program's name first (not
        // the size refused before any truncate).
        if (!s.error().context().empty()) {
          emit_message(MessageLevel::kReport, s.error().message());
        }
        diag("ERROR could not resize image: {}", s.error().errno_text());
        continue;
      }
      nb_clusters_ = std::max(nb_clusters_, cluster + 1);
      if (refs_.size() < nb_clusters_) refs_.resize(nb_clusters_, 0);
    }
    count(offset, cs_);
    if (cluster < refs_.size() && refs_[cluster] != 1) {
      diag("ERROR refcount block {} refcount={}", i, refs_[cluster]);
      ++res_.corruptions;
      rebuild_ = true;
    }
  }
}

Task<void> Checker::calculate() {
  const Header& h = t_.header;
  nb_clusters_ = (t_.file.length() + cs_ - 1) / cs_;
  refs_.assign(nb_clusters_, 0);
  res_.allocated_clusters = res_.fragmented_clusters = res_.compressed_clusters = 0;
  count(0, cs_);
  co_await count_l1(h.l1_table_offset, h.l1_size, true);
  co_await count_snapshots();
  count(h.refcount_table_offset, uint64_t{h.refcount_table_clusters} * cs_);
  if (h.crypto_header) count(h.crypto_header->first, h.crypto_header->second);
  co_await count_bitmaps();
  co_await count_refblocks();
}

// ---- stored refcounts ---------------------------------------------------------------------

Task<Status> Checker::load_reftable() {
  const uint64_t bytes = uint64_t{t_.header.refcount_table_clusters} * cs_;
  std::vector<uint8_t> raw(bytes);
  Status s = co_await read_at(t_.header.refcount_table_offset, raw.data(), bytes);
  if (!s) co_return s;
  reftable_.resize(bytes / 8);
  for (uint64_t i = 0; i < reftable_.size(); ++i) reftable_[i] = load_be64(&raw[i * 8]);
  overlap_index_stale_ = true;
  blocks_.clear();
  co_return ok();
}

Task<Result<uint64_t>> Checker::stored(uint64_t cluster) {
  const uint64_t t = cluster / entries_per_block_;
  if (t >= reftable_.size()) co_return uint64_t{0};
  const uint64_t offset = reftable_[t] & kRefTableOffsetMask;
  if (offset == 0) co_return uint64_t{0};
  if (offset % cs_) {
    Error e = co_await corruption(
        fmt::format("Refblock offset {:#x} unaligned (reftable index: {})", offset, c_hex(t)));
    co_return fail(e);
  }
  auto it = blocks_.find(t);
  if (it == blocks_.end()) {
    StoredBlock block;
    block.data.resize(cs_);
    Status s = co_await read_at(offset, block.data.data(), cs_);
    if (!s) co_return fail(s.error());
    it = blocks_.emplace(t, std::move(block)).first;
  }
  co_return read_refcount_entry(it->second.data.data(), refcount_bits_,
                                cluster % entries_per_block_);
}

std::optional<uint64_t> Checker::stored_if_cached(uint64_t cluster) const {
  const uint64_t t = cluster / entries_per_block_;
  if (t >= reftable_.size()) return 0;
  const uint64_t offset = reftable_[t] & kRefTableOffsetMask;
  if (offset == 0) return 0;
  if (offset % cs_) return std::nullopt;
  auto it = blocks_.find(t);
  if (it == blocks_.end()) return std::nullopt;
  return read_refcount_entry(it->second.data.data(), refcount_bits_, cluster % entries_per_block_);
}

// REQUIRES: stored(cluster) succeeded (its block is cached).
Task<Status> Checker::set_stored(uint64_t cluster, uint64_t value) {
  auto it = blocks_.find(cluster / entries_per_block_);
  if (it == blocks_.end()) co_return fail(Error::io());
  write_refcount_entry(it->second.data.data(), refcount_bits_, cluster % entries_per_block_, value);
  it->second.dirty = true;
  co_return ok();
}

Task<Status> Checker::write_stored_blocks() {
  bool wrote = false;
  for (auto& [t, block] : blocks_) {
    if (!block.dirty) continue;
    Status s = co_await write_at(reftable_[t] & kRefTableOffsetMask, block.data.data(), cs_);
    if (!s) co_return s;
    block.dirty = false;
    wrote = true;
  }
  if (wrote) co_return co_await t_.file.flush();
  co_return ok();
}

Task<Result<CheckResult>> Checker::run() {
  const Header& h = t_.header;
  res_.total_clusters = (h.size + cs_ - 1) / cs_;
  Status s = co_await read_snapshots();
  if (!s) co_return fail(s.error());
  s = co_await load_reftable();
  if (!s) co_return fail(s.error());
  co_await load_active_l1();
  co_await calculate();
  if (failed_) co_return fail(*failed_);
  // In case nothing needs a rebuild but something is to be fixed, the comparison runs
  // a second time with fixing enabled, counting from the same starting point.
  const CheckResult before_compare = res_;
  co_await compare(0);
  if (rebuild_ && (fix_ & kFixErrors)) {
    const CheckResult old = res_;
    diag("Rebuilding refcount structure");
    s = co_await rebuild();
    if (!s) co_return fail(s.error());
    res_.corruptions = 0;
    res_.leaks = 0;
    rebuild_ = false;
    co_await calculate();
    if (failed_) co_return fail(*failed_);
    uint64_t fresh_leaks = 0;
    if (fix_ & kFixLeaks) {
      // The old structures are leaked now; those leaks are the rebuild's own doing.
      const CheckResult saved = res_;
      res_ = CheckResult{};
      co_await compare(kFixLeaks);
      if (rebuild_) diag("ERROR rebuilt refcount structure is still broken");
      fresh_leaks = res_.leaks;
      const uint64_t highest = highest_cluster_;
      res_ = saved;
      highest_cluster_ = highest;
    }
    if (res_.corruptions < old.corruptions) {
      res_.corruptions_fixed += old.corruptions - res_.corruptions;
    }
    if (res_.leaks < old.leaks) res_.leaks_fixed += old.leaks - res_.leaks;
    res_.leaks += fresh_leaks;
  } else if (fix_) {
    if (rebuild_) {
      diag("ERROR need to rebuild refcount structures");
      ++res_.check_errors;
      co_return fail(Error::io());
    }
    if (res_.leaks || res_.corruptions) {
      res_ = before_compare;
      co_await compare(fix_);
    }
  }
  co_await check_copied_flags();
  if (failed_) co_return fail(*failed_);
  if (snapshot_corruptions_ && (fix_ & kFixErrors)) {
    s = co_await write_snapshot_table();
    if (!s) {
      diag("ERROR failed to update snapshot table: {}", s.error().errno_text());
      ++res_.check_errors;
      co_return fail(Error::from_errno(s.error().errnum()));
    }
    res_.corruptions_fixed += snapshot_corruptions_;
  } else {
    res_.corruptions += snapshot_corruptions_;
  }
  res_.corruptions_fixed += snapshots_dropped_;
  res_.image_end_offset = (highest_cluster_ + 1) * cs_;
  if (fix_ && !res_.corruptions && !res_.check_errors) {
    s = co_await mark_clean();
    if (!s) co_return fail(s.error());
  }
  co_return res_;
}

}  // namespace check_internal

Task<Result<CheckResult>> check_image(CheckTarget target, unsigned fix) {
  check_internal::Checker checker(target, fix);
  Task<Result<CheckResult>> run = checker.run();
  co_return co_await std::move(run);
}

}  // namespace qblock::qcow2
