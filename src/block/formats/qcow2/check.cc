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
#include "block/formats/qcow2/l2_entry.h"
#include "block/formats/qcow2/refcount.h"
#include "block/formats/qcow2/snapshot.h"

namespace qblock::qcow2 {

namespace {

// One diagnostic line on stderr; stdout is flushed first so merged output keeps its order.
template <typename... Args>
void diag(fmt::format_string<Args...> format, Args&&... args) {
  std::fflush(stdout);
  std::string line = fmt::format(format, std::forward<Args>(args)...);
  line += '\n';
  std::fputs(line.c_str(), stderr);
}

// printf's "%#x": no prefix for zero.
std::string c_hex(uint64_t v) { return v ? fmt::format("{:#x}", v) : "0"; }

class Checker {
 public:
  Checker(CheckTarget target, unsigned fix)
      : t_(target),
        fix_(fix),
        cs_(target.header.cluster_size()),
        bits_(target.header.cluster_bits),
        refcount_bits_(target.header.refcount_bits()),
        entries_per_block_(cs_ * 8 / refcount_bits_),
        max_refcount_(refcount_bits_ >= 32 ? std::numeric_limits<uint32_t>::max()
                                           : (uint32_t{1} << refcount_bits_) - 1) {}

  Task<Result<CheckResult>> run();

 private:
  struct StoredBlock {
    std::vector<uint8_t> data;
    bool dirty = false;
  };

  // ---- I/O on the image file ----
  Task<Status> read_at(uint64_t offset, uint8_t* buf, uint64_t len);
  Task<Status> write_at(uint64_t offset, const uint8_t* buf, uint64_t len);
  Task<Error> corruption(std::string reason);

  // ---- the references the image holds (the in-memory refcount table) ----
  Task<void> calculate();
  void count(uint64_t offset, uint64_t size);
  Task<void> count_l1(uint64_t l1_offset, uint64_t l1_size, bool active);
  Task<void> count_l2(uint64_t l2_offset, bool active);
  Task<void> count_snapshots();
  Task<void> count_bitmaps();
  Task<void> count_refblocks();

  // ---- the stored refcounts ----
  Task<Status> load_reftable();
  Task<Result<uint64_t>> stored(uint64_t cluster);
  Task<Status> set_stored(uint64_t cluster, uint64_t value);
  Task<Status> write_stored_blocks();

  Task<void> compare(unsigned fix);
  Task<void> check_copied_flags();
  Task<Status> rebuild();
  uint64_t allocate_counted(uint64_t count);
  Task<Status> mark_clean();

  CheckTarget t_;
  const unsigned fix_;
  const uint64_t cs_;
  const uint32_t bits_;
  const uint32_t refcount_bits_;
  const uint64_t entries_per_block_;
  const uint32_t max_refcount_;

  CheckResult res_;
  std::vector<uint32_t> refs_;  // references found, by host cluster
  uint64_t nb_clusters_ = 0;    // clusters compared: those inside the file (or counted)
  bool rebuild_ = false;
  bool have_previous_data_ = false;
  uint64_t next_contiguous_ = 0;
  uint64_t highest_cluster_ = 0;
  uint64_t first_free_ = 0;  // allocate_counted() searches from here

  std::vector<uint64_t> reftable_;  // raw refcount table entries
  std::map<uint64_t, StoredBlock> blocks_;
};

Task<Status> Checker::read_at(uint64_t offset, uint8_t* buf, uint64_t len) {
  // Past the end of the file reads as zeros, as a plain file does.
  const uint64_t file_len = t_.file.length();
  const uint64_t inside = offset >= file_len ? 0 : std::min(len, file_len - offset);
  std::memset(buf + inside, 0, len - inside);
  if (inside == 0) co_return ok();
  co_return co_await t_.file.read(offset, IoVec(buf, inside));
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
  std::vector<uint8_t> raw(cs_);
  Status s = co_await read_at(l2_offset, raw.data(), cs_);
  if (!s) {
    diag("ERROR: I/O error in check_refcounts_l2");
    ++res_.check_errors;
    co_return;
  }
  // Fragmentation is judged within one L2 table (observed with qemu-img 7.2).
  have_previous_data_ = false;
  for (uint64_t i = 0; i < cs_ / 8; ++i) {
    uint64_t entry = load_be64(&raw[i * 8]);
    if (entry & kCompressedFlag) {
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
    const uint64_t offset = entry & kOffsetMask;
    if (offset == 0) continue;  // unallocated or a plain zero cluster
    const bool zero_alloc = entry & kZeroFlag;
    if (offset % cs_) {
      if (zero_alloc && (fix_ & kFixErrors)) {
        diag(
            "Repairing offset={:x}: Preallocated cluster is not properly aligned; L2 entry "
            "corrupted.",
            offset);
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
    count(offset, cs_);
  }
}

Task<void> Checker::count_l1(uint64_t l1_offset, uint64_t l1_size, bool active) {
  count(l1_offset, l1_size * 8);
  if (l1_size == 0) co_return;
  std::vector<uint8_t> raw(l1_size * 8);
  Status s = co_await read_at(l1_offset, raw.data(), raw.size());
  if (!s) {
    diag("ERROR: I/O error in check_refcounts_l1");
    ++res_.check_errors;
    co_return;
  }
  for (uint64_t i = 0; i < l1_size; ++i) {
    const uint64_t l2_offset = load_be64(&raw[i * 8]) & kOffsetMask;
    if (l2_offset == 0) continue;
    count(l2_offset, cs_);
    if (l2_offset % cs_) {
      diag("ERROR l2_offset={:x}: Table is not cluster aligned; L1 entry corrupted", l2_offset);
      ++res_.corruptions;
    }
    co_await count_l2(l2_offset, active);
  }
}

// §8.1: the snapshot table and every snapshot's L1 tree.
Task<void> Checker::count_snapshots() {
  const Header& h = t_.header;
  if (h.nb_snapshots == 0) co_return;
  Task<Result<SnapshotTable>> read = read_snapshot_table(t_.file, h);
  Result<SnapshotTable> table = co_await std::move(read);
  if (!table) {
    diag("ERROR: Could not read the snapshot table: {}", table.error().message());
    ++res_.check_errors;
    co_return;
  }
  for (const Snapshot& snap : table->snapshots) {
    if (snap.l1_table_offset % cs_) {
      diag(
          "ERROR snapshot {} ({}) l1_offset={:#x}: L1 table is not cluster aligned; snapshot "
          "table entry corrupted",
          snap.id, snap.name, snap.l1_table_offset);
      ++res_.corruptions;
      continue;
    }
    co_await count_l1(snap.l1_table_offset, snap.l1_size, false);
  }
  count(h.snapshots_offset, table->bytes);
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

Task<void> Checker::count_refblocks() {
  for (uint64_t i = 0; i < reftable_.size(); ++i) {
    const uint64_t offset = reftable_[i] & kRefTableOffsetMask;
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
      Status s = co_await t_.file.truncate((cluster + 1) * cs_);
      if (!s) {
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

// Compares stored and computed refcounts. A cluster in use whose refcount is 0 can only be
// repaired by rebuilding the refcount structures (it may have no refcount block at all).
Task<void> Checker::compare(unsigned fix) {
  for (uint64_t i = 0; i < nb_clusters_; ++i) {
    Result<uint64_t> st = co_await stored(i);
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
  }
}

// §3.6: COPIED must be set exactly on the active entries whose cluster has refcount 1.
Task<void> Checker::check_copied_flags() {
  // Without errors repairing a flag is as safe as fixing a leak; otherwise the refcounts
  // themselves may be wrong and only -r all touches the flags.
  const bool repair = (fix_ & kFixErrors) || ((fix_ & kFixLeaks) && !res_.check_errors &&
                                              !res_.corruptions && !res_.leaks);
  const Header& h = t_.header;
  if (h.l1_size == 0) co_return;
  std::vector<uint8_t> l1(uint64_t{h.l1_size} * 8);
  Status s = co_await read_at(h.l1_table_offset, l1.data(), l1.size());
  if (!s) {
    ++res_.check_errors;
    co_return;
  }
  bool l1_dirty = false;
  for (uint64_t i = 0; i < h.l1_size; ++i) {
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
        l1_dirty = true;
        ++res_.corruptions_fixed;
      } else {
        ++res_.corruptions;
      }
    }
    std::vector<uint8_t> l2(cs_);
    s = co_await read_at(l2_offset, l2.data(), cs_);
    if (!s) {
      diag("ERROR: Could not read L2 table: {}", s.error().errno_text());
      ++res_.check_errors;
      continue;
    }
    bool l2_dirty = false;
    for (uint64_t j = 0; j < cs_ / 8; ++j) {
      uint64_t entry = load_be64(&l2[j * 8]);
      if ((entry & kCompressedFlag) || (entry & kOffsetMask) == 0) continue;
      Result<uint64_t> data_rc = co_await stored((entry & kOffsetMask) >> bits_);
      if (!data_rc) continue;
      if ((*data_rc == 1) != ((entry & kCopied) != 0)) {
        diag("{} OFLAG_COPIED data cluster: l2_entry={:x} refcount={}",
             repair ? "Repairing" : "ERROR", entry, *data_rc);
        if (repair) {
          entry = *data_rc == 1 ? (entry | kCopied) : (entry & ~kCopied);
          store_be64(&l2[j * 8], entry);
          l2_dirty = true;
          ++res_.corruptions_fixed;
        } else {
          ++res_.corruptions;
        }
      }
    }
    if (l2_dirty) {
      Status w = co_await write_at(l2_offset, l2.data(), cs_);
      if (!w) {
        diag("ERROR: Could not write L2 table: {}", w.error().errno_text());
        ++res_.check_errors;
      }
    }
  }
  if (l1_dirty) {
    Status w = co_await write_at(h.l1_table_offset, l1.data(), l1.size());
    if (!w) {
      diag("ERROR: Could not write L1 table: {}", w.error().errno_text());
      ++res_.check_errors;
    }
  }
  if (l1_dirty || res_.corruptions_fixed) (void)co_await t_.file.flush();
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
    Status s = co_await write_at(table[t], block.data(), cs_);
    if (!s) co_return fail(Error(s.error().errnum(), "ERROR writing refblock"));
  }
  std::vector<uint8_t> raw(table_clusters * cs_, 0);
  for (uint64_t t = 0; t < table.size(); ++t) store_be64(&raw[t * 8], table[t]);
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

Task<Result<CheckResult>> Checker::run() {
  const Header& h = t_.header;
  res_.total_clusters = (h.size + cs_ - 1) / cs_;
  Status s = co_await load_reftable();
  if (!s) co_return fail(s.error());
  co_await calculate();
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
  res_.image_end_offset = (highest_cluster_ + 1) * cs_;
  if (fix_ && !res_.corruptions && !res_.check_errors) {
    s = co_await mark_clean();
    if (!s) co_return fail(s.error());
  }
  co_return res_;
}

}  // namespace

Task<Result<CheckResult>> check_image(CheckTarget target, unsigned fix) {
  Checker checker(target, fix);
  Task<Result<CheckResult>> run = checker.run();
  co_return co_await std::move(run);
}

}  // namespace qblock::qcow2
