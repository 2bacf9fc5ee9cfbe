// Persistent dirty bitmaps kept true (qcow2-format.md §14), as QEMU 7.2 keeps them: loaded at
// open and marked IN_USE on disk by a writable open, updated in memory by every write, and
// stored at close into new clusters (each bitmap's data clusters, then its table, then a new
// directory; the old ones freed last), which clears IN_USE again. A crash in between leaves
// IN_USE set: QEMU and qblock then show the bitmap as inconsistent, and keep it as it is.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include "base/byte_order.h"
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

namespace {

constexpr uint32_t kMaxNameBytes = 1023;

Error invalid(std::string message) { return Error::with_message(EINVAL, std::move(message)); }

}  // namespace

Task<Status> Qcow2Node::load_bitmaps(BitmapDirectory dir) {
  if (dir.bitmaps.empty()) co_return ok();
  bitmap_dir_offset_ = dir.offset;
  bitmap_dir_bytes_ = dir.bytes;
  const bool check = open_flags().check;
  // Each bitmap's constraints bound it to 512 MiB, but a hostile directory may hold 65535 of
  // them: refuse what no machine could hold rather than fail an allocation half way.
  uint64_t memory_needed = 0;
  for (const Bitmap& b : dir.bitmaps) {
    if (!(b.flags & kBitmapInUse)) {
      memory_needed += ((header_.size >> b.granularity_bits) + 8) / 8;
    }
  }
  const uint64_t memory =
      static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (!check && memory_needed > memory / 2) {
    co_return fail(Error::with_message(ENOMEM, "Could not load bitmaps: Cannot allocate memory"));
  }
  bool any_consistent = false;
  for (Bitmap& b : dir.bitmaps) {
    NodeBitmap nb;
    nb.name = b.name;
    nb.granularity_bits = b.granularity_bits;
    nb.enabled = (b.flags & kBitmapAuto) != 0;
    nb.on_disk = b;
    if (!(b.flags & kBitmapInUse)) {
      if (check) {
        // qemu-img check refuses what open refuses; the data is not needed.
        Task<Result<std::vector<uint64_t>>> read = read_bitmap_table(*file_, header_, b);
        Result<std::vector<uint64_t>> table = co_await std::move(read);
        if (!table) co_return fail(table.error());
      } else {
        Task<Result<DirtyBitmap>> read = read_bitmap(*file_, header_, b, header_.size);
        Result<DirtyBitmap> bits = co_await std::move(read);
        if (!bits) co_return fail(bits.error());
        nb.bits = std::make_unique<DirtyBitmap>(std::move(*bits));
        any_consistent = true;
      }
    }
    bitmaps_.push_back(std::move(nb));
  }
  if (read_only() || check || !any_consistent) co_return ok();
  // The directory rewritten in place with IN_USE on every bitmap this node now maintains.
  std::vector<uint8_t> raw = encode_bitmap_directory(bitmap_entries(kBitmapInUse));
  Status s = co_await file_->write(bitmap_dir_offset_, IoVec(raw.data(), raw.size()));
  if (s) s = co_await file_->flush();
  if (!s) co_return s;
  for (NodeBitmap& b : bitmaps_) {
    if (b.bits) b.on_disk.flags |= kBitmapInUse;
  }
  bitmaps_in_use_ = true;
  co_return ok();
}

std::vector<Bitmap> Qcow2Node::bitmap_entries(uint32_t flags) const {
  std::vector<Bitmap> entries;
  for (const NodeBitmap& b : bitmaps_) {
    if (!b.persistent || b.on_disk.table_offset == 0) continue;
    Bitmap e = b.on_disk;
    if (b.bits) e.flags = (b.enabled ? kBitmapAuto : 0) | flags;
    entries.push_back(std::move(e));
  }
  return entries;
}

Qcow2Node::NodeBitmap* Qcow2Node::find_bitmap(const std::string& name) {
  for (NodeBitmap& b : bitmaps_) {
    if (b.name == name) return &b;
  }
  return nullptr;
}

Status Qcow2Node::add_bitmap(std::string name, uint32_t granularity_bits, bool persistent,
                             bool enabled) {
  if (find_bitmap(name)) return fail(invalid("Bitmap already exists: " + name));
  if (persistent) {
    auto refuse = [&](const std::string& why) {
      return fail(invalid(
          fmt::format("Can't make bitmap '{}' persistent in '{}': {}", name, node_name(), why)));
    };
    if (header_.version < 3) return refuse("Cannot store dirty bitmaps in qcow2 v2 files");
    if (name.size() > kMaxNameBytes) {
      return refuse(fmt::format("Name length exceeds maximum ({} characters)", kMaxNameBytes));
    }
    if (bitmaps_.size() >= 65535) {
      return refuse("Maximum number of persistent bitmaps is already reached");
    }
  }
  NodeBitmap b;
  b.name = std::move(name);
  b.granularity_bits = granularity_bits;
  b.persistent = persistent;
  b.enabled = enabled;
  b.bits = std::make_unique<DirtyBitmap>(header_.size, uint64_t{1} << granularity_bits);
  bitmaps_.push_back(std::move(b));
  if (persistent && !read_only()) bitmaps_in_use_ = true;
  return ok();
}

Task<Status> Qcow2Node::remove_bitmap(std::string name) {
  AsyncMutex::Guard guard = co_await lock_.lock();
  auto it = std::find_if(bitmaps_.begin(), bitmaps_.end(),
                         [&name](const NodeBitmap& b) { return b.name == name; });
  if (it == bitmaps_.end()) {
    co_return fail(Error::with_message(ENOENT, "Dirty bitmap '" + name + "' not found"));
  }
  const Bitmap removed = it->on_disk;
  const bool stored = it->persistent && removed.table_offset != 0;
  if (stored && read_only()) {
    co_return fail(
        Error::with_message(EPERM, "Bitmap '" + name + "' is readonly and cannot be modified"));
  }
  bitmaps_.erase(it);
  if (!stored) co_return ok();
  std::vector<Bitmap> entries = bitmap_entries(kBitmapInUse);
  Status s = co_await write_bitmap_directory(entries);
  if (s) s = co_await free_bitmap_clusters(removed);
  if (s) s = co_await refcounts_->write_dirty();
  co_return s;
}

Task<Status> Qcow2Node::free_bitmap_clusters(const Bitmap& b) {
  Task<Result<std::vector<uint64_t>>> read = read_bitmap_table(*file_, header_, b);
  Result<std::vector<uint64_t>> table = co_await std::move(read);
  if (table) {
    for (uint64_t e : *table) {
      const uint64_t offset = e & kBitmapTableOffsetMask;
      if (offset == 0) continue;
      Status s = co_await refcounts_->update(offset / cs_, 1, -1);
      if (!s) co_return s;
    }
  }
  // A table that cannot be read leaks its data clusters (check finds them), as QEMU's does.
  const uint64_t table_clusters = (uint64_t{b.table_entries} * 8 + cs_ - 1) / cs_;
  co_return co_await refcounts_->update(b.table_offset / cs_, table_clusters, -1);
}

Task<Status> Qcow2Node::write_bitmap_directory(const std::vector<Bitmap>& entries) {
  const uint64_t old_offset = bitmap_dir_offset_;
  const uint64_t old_bytes = bitmap_dir_bytes_;
  if (entries.empty()) {
    header_.bitmaps.reset();
    header_.autoclear_features &= ~kAutoclearBitmaps;
    bitmap_dir_offset_ = 0;
    bitmap_dir_bytes_ = 0;
  } else {
    std::vector<uint8_t> raw = encode_bitmap_directory(entries);
    const uint64_t clusters = (raw.size() + cs_ - 1) / cs_;
    Result<uint64_t> at = co_await refcounts_->allocate(clusters);
    if (!at) co_return fail(at.error());
    const uint64_t dir_bytes = raw.size();
    raw.resize(clusters * cs_, 0);
    Status s = co_await file_->write(*at, IoVec(raw.data(), raw.size()));
    // §17 R1: the directory and its refcounts are stable before the header points at it.
    if (s) s = co_await refcounts_->write_dirty();
    if (s) s = co_await file_->flush();
    if (!s) co_return s;
    header_.bitmaps =
        encode_bitmaps_extension(static_cast<uint32_t>(entries.size()), dir_bytes, *at);
    header_.autoclear_features |= kAutoclearBitmaps;
    bitmap_dir_offset_ = *at;
    bitmap_dir_bytes_ = dir_bytes;
  }
  Status s = co_await write_header();
  if (!s) co_return s;
  if (old_offset != 0) {
    s = co_await refcounts_->update(old_offset / cs_, (old_bytes + cs_ - 1) / cs_, -1);
  }
  co_return s;
}

Task<Status> Qcow2Node::store_bitmaps() {
  if (!bitmaps_in_use_) co_return ok();
  const bool any = std::any_of(bitmaps_.begin(), bitmaps_.end(),
                               [](const NodeBitmap& b) { return b.persistent && b.bits; });
  if (!any) co_return ok();
  std::vector<Bitmap> old_tables;
  std::vector<Bitmap> entries;
  std::vector<uint8_t> cluster(cs_);
  for (NodeBitmap& b : bitmaps_) {
    if (!b.persistent) continue;
    if (!b.bits) {
      entries.push_back(b.on_disk);
      continue;
    }
    if (b.bits->length() != header_.size) b.bits->resize(header_.size);
    // A busy bitmap is stored with the writes its job has not yet accounted for: nothing
    // dirty is ever lost, whatever becomes of the job.
    std::optional<DirtyBitmap> with_successor;
    if (b.successor) {
      with_successor.emplace(*b.bits);
      if (b.successor->length() != header_.size) b.successor->resize(header_.size);
      with_successor->merge(*b.successor);
    }
    const DirtyBitmap& bits = with_successor ? *with_successor : *b.bits;
    const uint64_t n = bitmap_table_entries(header_.size, b.granularity_bits, cs_);
    std::vector<uint64_t> table(n, 0);
    for (uint64_t i = 0; i < n; ++i) {
      bits.serialize(i * cs_, cluster);
      if (std::all_of(cluster.begin(), cluster.end(), [](uint8_t v) { return v == 0; })) continue;
      Result<uint64_t> at = co_await refcounts_->allocate(1);
      if (!at) co_return fail(at.error());
      Status s = co_await file_->write(*at, IoVec(cluster.data(), cluster.size()));
      if (!s) co_return s;
      table[i] = *at;
    }
    const uint64_t table_clusters = (n * 8 + cs_ - 1) / cs_;
    std::vector<uint8_t> raw(table_clusters * cs_, 0);
    for (uint64_t i = 0; i < n; ++i) store_be64(&raw[i * 8], table[i]);
    Result<uint64_t> at = co_await refcounts_->allocate(table_clusters);
    if (!at) co_return fail(at.error());
    Status s = co_await file_->write(*at, IoVec(raw.data(), raw.size()));
    if (!s) co_return s;
    if (b.on_disk.table_offset != 0) old_tables.push_back(b.on_disk);
    Bitmap e;
    e.name = b.name;
    e.flags = b.enabled ? kBitmapAuto : 0;
    e.granularity_bits = static_cast<uint8_t>(b.granularity_bits);
    e.table_offset = *at;
    e.table_entries = static_cast<uint32_t>(n);
    entries.push_back(e);
  }
  Status s = co_await write_bitmap_directory(entries);
  if (!s) co_return s;
  // Only now (the header points at the new tables) do the old ones go.
  std::size_t next = 0;
  for (NodeBitmap& b : bitmaps_) {
    if (!b.persistent) continue;
    b.on_disk = entries[next++];
  }
  for (const Bitmap& b : old_tables) {
    s = co_await free_bitmap_clusters(b);
    if (!s) co_return s;
  }
  s = co_await refcounts_->write_dirty();
  if (!s) co_return s;
  bitmaps_in_use_ = false;
  co_return ok();
}

}  // namespace qblock::qcow2
