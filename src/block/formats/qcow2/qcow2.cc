// The qcow2 format driver (see qcow2.h).
#include "block/formats/qcow2/qcow2.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <unordered_map>

#include "base/byte_order.h"
#include "base/check.h"
#include "block/filters/preallocate.h"
#include "block/formats/qcow2/check.h"
#include "block/formats/qcow2/compress.h"
#include "block/formats/qcow2/header.h"
#include "block/formats/qcow2/refcount.h"
#include "runtime/sync.h"

namespace qblock::qcow2 {

namespace {

// Incompatible features this driver implements (§2.3).
constexpr uint64_t kSupportedIncompatible =
    kIncompatDirty | kIncompatCorrupt | kIncompatCompression;

enum class ClusterType { kUnallocated, kZeroPlain, kZeroAlloc, kNormal, kCompressed };

ClusterType cluster_type(uint64_t entry) {
  if (entry & kCompressedFlag) return ClusterType::kCompressed;
  const bool zero = entry & kZeroFlag;
  const bool host = entry & kOffsetMask;
  if (zero) return host ? ClusterType::kZeroAlloc : ClusterType::kZeroPlain;
  return host ? ClusterType::kNormal : ClusterType::kUnallocated;
}

class Qcow2Node : public BlockNode {
 public:
  Qcow2Node(EventLoop& loop, NodePtr file, Header header)
      : BlockNode(loop, "qcow2", NodeKind::kFormat),
        lock_(loop),
        header_(std::move(header)),
        cs_(header_.cluster_size()),
        l2_entries_(cs_ / 8) {
    flags_ = file->open_flags();
    add_child(ChildRole::kFile, "file", std::move(file));
    file_ = primary_child();
    refcounts_ = std::make_unique<Refcounts>(*file_, header_);
    // §3.7: write-zeroes of whole clusters is a metadata operation on v3; v2 has no zero flag.
    if (header_.version >= 3) {
      supported_zero_flags_ = RequestFlag::kMayUnmap | RequestFlag::kNoFallback;
    }
    limits_.pwrite_zeroes_alignment = static_cast<uint32_t>(cs_);
    supported_write_flags_ |= RequestFlag::kWriteCompressed;
  }

  void set_backing(NodePtr backing) {
    if (backing) add_child(ChildRole::kBacking, "backing", std::move(backing));
    backing_ = child(ChildRole::kBacking);
  }
  void set_l2_cache_tables(std::size_t n) { max_l2_tables_ = std::max<std::size_t>(n, 4); }
  // block-semantics.md §5.2: zero the COW regions of a new allocation with one ALLOCATE
  // write-zeroes instead of writing zero buffers.
  void set_zero_cow(bool on) { zero_cow_ = on; }
  // The image as check_image() works on it. REQUIRES: opened with OpenFlags::check.
  CheckTarget check_target() {
    return CheckTarget{*file_, header_, !read_only(), corruption_reported_, broken_};
  }

  Task<Status> load_tables();

  uint64_t length() const override { return header_.size; }
  std::string filename() const override { return file_->filename(); }
  NodeInfo info() const override;

 protected:
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override;
  Task<Status> do_flush() override;
  Task<Status> do_truncate(uint64_t size, PreallocMode mode, Exact exact) override;
  Task<Result<BlockStatus>> do_block_status(uint64_t offset, uint64_t bytes,
                                            WantZero want_zero) override;
  Task<Status> do_close() override;

 private:
  struct L2Table {
    uint64_t offset = 0;
    std::vector<uint64_t> entries;
    bool dirty = false;  // entries changed in memory, not yet written (see flush_metadata)
  };
  struct Mapping {  // a run of clusters with the same treatment
    ClusterType type;
    uint64_t entry;  // of the first cluster
    uint64_t bytes;  // guest bytes covered from the requested offset
  };

  uint64_t l1_index(uint64_t guest) const { return guest / cs_ / l2_entries_; }
  uint64_t l2_index(uint64_t guest) const { return guest / cs_ % l2_entries_; }

  // All REQUIRE lock_ held.
  Task<Result<L2Table*>> get_l2(uint64_t l1i, bool allocate);
  Task<Result<Mapping>> map(uint64_t guest, uint64_t bytes);
  Task<Status> write_l1_entry(uint64_t l1i);
  // Records changed entries; they reach the disk in flush_metadata() (write-back cache).
  Task<Status> update_l2_entries(L2Table& table, uint64_t first, uint64_t count);
  // A prefix of [guest, guest + bytes) that can be written in place with one request:
  // host-contiguous COPIED clusters of `table`, normal ones or preallocated zero clusters the
  // range covers entirely, none fenced by an allocation. REQUIRES: lock_ held.
  struct InPlaceRun {
    uint64_t host = 0;                 // host offset of `guest`
    uint64_t bytes = 0;                // guest bytes covered
    std::vector<uint64_t> zero_alloc;  // L2 indices of the zero clusters in the run
  };
  InPlaceRun inplace_run(const L2Table& table, uint64_t guest, uint64_t bytes) const;
  // Writes back the metadata caches in §17's order: refcount increments and guest data
  // stable, then L2 tables, stable, then the deferred frees (R5), then their refcounts.
  Task<Status> flush_metadata();
  // Makes room in the L2 cache, writing back dirty tables if every one is dirty.
  Task<Status> make_l2_room();
  Task<Status> read_unlocked(uint64_t guest, IoVec qiov, const Mapping& m);
  Task<Status> read_backing(uint64_t guest, IoVec qiov);
  Task<Result<bool>> reads_as_zero(uint64_t entry, uint64_t guest_cluster);
  // Drops the reference `entry` held; applied after the L2 change is stable (§17 R5).
  void queue_free(uint64_t entry) { pending_frees_.push_back(entry); }
  Task<Status> release_entry(uint64_t entry);
  Task<Status> write_header();
  // §6: whole clusters (or the image's last, partial one) compressed one by one into
  // unallocated clusters; a cluster that does not shrink is written normally.
  Task<Status> write_compressed(uint64_t offset, IoVec qiov);
  // Byte allocation for compressed data (§5.4 of qcow2-format.md: several compressed
  // clusters may share a host cluster; each user holds one reference). REQUIRES: lock_.
  Task<Result<uint64_t>> allocate_compressed(uint64_t bytes);
  // do_truncate's shrinking half (see there). REQUIRES: lock_ held, size < header_.size.
  Task<Status> shrink(uint64_t size);
  // Part of shrink: drops refcount blocks that count nothing but themselves; returns the
  // host cluster indexes of the dropped blocks.
  Task<Result<std::vector<uint64_t>>> drop_unused_refblocks();
  // Host clusters of `entry` (data cluster or compressed span) appended to `out`.
  void host_clusters(uint64_t entry, std::vector<uint64_t>& out) const;
  struct InFlight;
  // A piece of a write that goes into another request's new clusters (it counts as one of
  // their `writers`) and ends right where the clusters allocating_write allocates begin: when
  // the host clusters are contiguous too, both go out as one write, as QEMU does for an
  // in-place piece followed by an allocation.
  struct JoinedPrefix {
    InFlight* fence;
    uint64_t host;  // where the piece goes
    IoVec data;
  };
  // REQUIRES: `guard` holds lock_; it is released for the data I/O and held again on success.
  // With `prefix`: `guest` is cluster-aligned, the prefix is written whatever happens (or the
  // request fails) and its writer count is released before this returns.
  Task<Status> allocating_write(uint64_t guest, IoVec data, L2Table& table, uint64_t* written,
                                AsyncMutex::Guard& guard, JoinedPrefix* prefix = nullptr);
  // An allocation whose data I/O runs outside the lock: guest clusters [start, end) must not
  // be allocated, zeroed or discarded by anybody else until it is linked. Once the new
  // clusters hold their final COW contents (`ready`), other writes into them go straight to
  // `host` (block-semantics.md §6); the link waits until no such write is in flight, and
  // those writes complete only after the link, so a later read finds their data.
  struct InFlight : std::enable_shared_from_this<InFlight> {
    InFlight(EventLoop& loop, uint64_t s, uint64_t e)
        : start(s), end(e), done(loop), writers_done(loop) {}
    uint64_t start;
    uint64_t end;
    uint64_t host = 0;      // host offset of `start`, valid once ready
    bool ready = false;     // zeroed or COW-filled: other writes may go in
    bool finished = false;  // linked, or given up (then `linked` stays false)
    bool linked = false;
    unsigned writers = 0;  // other writes into the clusters still running
    WaitQueue done;        // woken when ready and when finished
    WaitQueue writers_done;
  };
  InFlight* inflight_overlap(uint64_t start, uint64_t end) const {
    for (InFlight* f : inflight_) {
      if (f->start < end && start < f->end) return f;
    }
    return nullptr;
  }
  // Waits (releasing and retaking `guard`) until no allocation overlaps [start, end).
  Task<void> wait_inflight(uint64_t start, uint64_t end, AsyncMutex::Guard& guard);
  // qcow2-format.md §13: the metadata structure [offset, offset + bytes) would overwrite,
  // or nullptr. `self` is excluded (an L2 table rewriting itself).
  const char* overlapping_metadata(uint64_t offset, uint64_t bytes, uint64_t self = 0,
                                   const char* ignore = nullptr) const;
  // Refuses (as a fatal corruption event) a write of existing metadata or data at `offset`
  // that overlaps other metadata or lies past the end of the file (a damaged pointer).
  Task<Status> guard_existing(uint64_t offset, uint64_t bytes, uint64_t self, const char* ignore);
  // §12: reports a corruption event. On a writable image a fatal one sets the corrupt bit
  // and makes the node refuse further I/O. Returns the EIO the request fails with.
  Task<Error> corruption(std::string reason, bool fatal = true);
  Status check_usable() const {
    if (broken_) return fail(Error::from_errno(ENOMEDIUM));
    return ok();
  }

  AsyncMutex lock_;  // guards every metadata structure below
  Header header_;
  const uint64_t cs_;
  const uint64_t l2_entries_;
  BlockNode* file_ = nullptr;
  BlockNode* backing_ = nullptr;
  std::unique_ptr<Refcounts> refcounts_;
  std::vector<uint64_t> l1_;
  std::unordered_map<uint64_t, std::unique_ptr<L2Table>> l2_cache_;  // by host offset
  std::size_t max_l2_tables_ = 64;
  std::vector<uint64_t> pending_frees_;
  std::vector<InFlight*> inflight_;  // allocations between allocation and L2 link  // L2 entries
                                     // whose clusters are released at flush
  std::set<uint64_t> l2_offsets_;    // host offsets of the active L2 tables (overlap checks)
  bool zero_cow_ = true;
  uint64_t compressed_end_ = 0;  // where the next compressed data may go (0: a fresh cluster)
  bool broken_ = false;          // a fatal corruption event happened: refuse all I/O
  bool corruption_reported_ = false;
};

Task<Status> Qcow2Node::load_tables() {
  l1_.assign(header_.l1_size, 0);
  if (header_.l1_size) {
    std::vector<uint8_t> raw(uint64_t{header_.l1_size} * 8);
    Status s = co_await file_->read(header_.l1_table_offset, IoVec(raw.data(), raw.size()));
    if (!s) co_return s;
    for (uint64_t i = 0; i < l1_.size(); ++i) {
      l1_[i] = load_be64(&raw[i * 8]);
      if (l1_[i] & kOffsetMask) l2_offsets_.insert(l1_[i] & kOffsetMask);
    }
  }
  co_return co_await refcounts_->load();
}

Task<Status> Qcow2Node::guard_existing(uint64_t offset, uint64_t bytes, uint64_t self,
                                       const char* ignore) {
  if (const char* what = overlapping_metadata(offset, bytes, self, ignore)) {
    Error e = co_await corruption(
        fmt::format("Preventing invalid write on metadata (overlaps with {})", what));
    co_return fail(e);
  }
  const uint64_t file_end = (file_->length() + cs_ - 1) / cs_ * cs_;
  if (offset + bytes > file_end) {
    Error e = co_await corruption(fmt::format(
        "Preventing invalid write at offset {:#x} beyond the end of the image file", offset));
    co_return fail(e);
  }
  co_return ok();
}

const char* Qcow2Node::overlapping_metadata(uint64_t offset, uint64_t bytes, uint64_t self,
                                            const char* ignore) const {
  const uint64_t end = offset + bytes;
  auto hits = [&](uint64_t start, uint64_t len) {
    return len && start < end && offset < start + len;
  };
  if (hits(0, cs_)) return "qcow2_header";
  if (!ignore && hits(header_.l1_table_offset, uint64_t{header_.l1_size} * 8)) {
    return "active L1 table";
  }
  if (hits(header_.refcount_table_offset, uint64_t{header_.refcount_table_clusters} * cs_)) {
    return "refcount table";
  }
  if (refcounts_->overlaps_block(offset, bytes)) return "refcount block";
  auto it = l2_offsets_.lower_bound(offset >= cs_ ? offset - cs_ + 1 : 0);
  for (; it != l2_offsets_.end() && *it < end; ++it) {
    if (*it != self && hits(*it, cs_)) return "active L2 table";
  }
  return nullptr;
}

Task<Error> Qcow2Node::corruption(std::string reason, bool fatal) {
  const bool mark = fatal && !read_only();
  if (!corruption_reported_) {
    corruption_reported_ = true;
    std::fflush(stdout);
    if (mark) {
      std::fprintf(stderr,
                   "qcow2: Marking image as corrupt: %s; further corruption events will be "
                   "suppressed\n",
                   reason.c_str());
    } else {
      std::fprintf(stderr,
                   "qcow2: Image is corrupt: %s; further non-fatal corruption events will be "
                   "suppressed\n",
                   reason.c_str());
    }
  }
  if (mark) {
    broken_ = true;
    if (header_.version >= 3 && !(header_.incompatible_features & kIncompatCorrupt)) {
      header_.incompatible_features |= kIncompatCorrupt;
      uint8_t raw[8];
      store_be64(raw, header_.incompatible_features);
      if (co_await file_->write(72, IoVec(raw, 8))) (void)co_await file_->flush();
    }
  }
  co_return Error::with_message(EIO, "qcow2: " + reason);
}

NodeInfo Qcow2Node::info() const {
  NodeInfo i;
  i.format_name = "qcow2";
  i.cluster_size = cs_;
  // QEMU stores VM state right after the guest-visible L1 range.
  const uint64_t l1_span = cs_ * l2_entries_;
  i.vm_state_offset = (header_.size + l1_span - 1) / l1_span * l1_span;
  const bool v3 = header_.version >= 3;
  i.format_specific.emplace_back("compat", v3 ? "1.1" : "0.10");
  i.format_specific.emplace_back("compression type", header_.compression_type ? "zstd" : "zlib");
  if (v3) {
    i.format_specific.emplace_back(
        "lazy refcounts", header_.compatible_features & kCompatLazyRefcounts ? "true" : "false");
  }
  i.format_specific.emplace_back("refcount bits", std::to_string(header_.refcount_bits()));
  if (v3) {
    i.format_specific.emplace_back(
        "corrupt", header_.incompatible_features & kIncompatCorrupt ? "true" : "false");
    i.format_specific.emplace_back("extended l2", header_.extended_l2() ? "true" : "false");
  }
  return i;
}

// ---- metadata ----------------------------------------------------------------------------

Task<Result<Qcow2Node::L2Table*>> Qcow2Node::get_l2(uint64_t l1i, bool allocate) {
  if (l1i >= l1_.size()) co_return fail(Error::io("guest offset beyond the L1 table"));
  const uint64_t l1_entry = l1_[l1i];
  const uint64_t old_offset = l1_entry & kOffsetMask;
  if (old_offset && old_offset % cs_) {
    Error e = co_await corruption(
        fmt::format("L2 table offset {:#x} unaligned (L1 index: {:#x})", old_offset, l1i));
    co_return fail(e);
  }
  L2Table* table = nullptr;
  if (old_offset) {
    auto it = l2_cache_.find(old_offset);
    if (it != l2_cache_.end()) {
      table = it->second.get();
    } else {
      co_await file_->debug_event(DebugEvent::kL2Load);
      Status room = co_await make_l2_room();
      if (!room) co_return fail(room.error());
      auto fresh = std::make_unique<L2Table>();
      fresh->offset = old_offset;
      std::vector<uint8_t> raw(cs_);
      Status s = co_await file_->read(old_offset, IoVec(raw.data(), cs_));
      if (!s) co_return fail(s.error());
      fresh->entries.resize(l2_entries_);
      for (uint64_t i = 0; i < l2_entries_; ++i) fresh->entries[i] = load_be64(&raw[i * 8]);
      table = fresh.get();
      l2_cache_[old_offset] = std::move(fresh);
    }
  }
  if (!allocate) co_return table;
  // About to write through (or copy) this table: if its cluster is really other metadata,
  // any update would corrupt that.
  if (old_offset) {
    if (const char* what = overlapping_metadata(old_offset, cs_, old_offset)) {
      Error e = co_await corruption(
          fmt::format("L2 table offset {:#x} overlaps with {}", old_offset, what));
      co_return fail(e);
    }
  }
  if (table && (l1_entry & kCopied)) co_return table;

  // A new L2 table, or a private copy of a shared one (§3.6).
  co_await file_->debug_event(DebugEvent::kL2AllocWrite);
  Result<uint64_t> where = co_await refcounts_->allocate(1);
  if (!where) co_return fail(where.error());
  if (*where == 0) {
    Error e = co_await corruption("Preventing invalid allocation of L2 table at offset 0");
    co_return fail(e);
  }
  if (const char* what = overlapping_metadata(*where, cs_)) {
    Error e = co_await corruption(
        fmt::format("Preventing invalid write on metadata (overlaps with {})", what));
    co_return fail(e);
  }
  // §17 R1: the table's refcount is on disk before anything points at it.
  Status s = co_await refcounts_->write_dirty();
  if (!s) co_return fail(s.error());
  auto fresh = std::make_unique<L2Table>();
  fresh->offset = *where;
  fresh->entries = table ? table->entries : std::vector<uint64_t>(l2_entries_, 0);
  std::vector<uint8_t> raw(cs_);
  for (uint64_t i = 0; i < l2_entries_; ++i) store_be64(&raw[i * 8], fresh->entries[i]);
  // §17 R2: the whole table is on disk before the L1 entry.
  s = co_await file_->write(*where, IoVec(raw.data(), cs_));
  if (!s) co_return fail(s.error());
  s = co_await file_->flush();
  if (!s) co_return fail(s.error());
  l1_[l1i] = *where | kCopied;
  l2_offsets_.insert(*where);
  s = co_await write_l1_entry(l1i);
  if (!s) co_return fail(s.error());
  if (old_offset) {
    l2_cache_.erase(old_offset);
    l2_offsets_.erase(old_offset);
    s = co_await refcounts_->update(old_offset / cs_, 1, -1);  // §17 R5: after the L1 switch
    if (!s) co_return fail(s.error());
  }
  L2Table* result = fresh.get();
  Status room = co_await make_l2_room();
  if (!room) co_return fail(room.error());
  l2_cache_[*where] = std::move(fresh);
  co_return result;
}

Task<Status> Qcow2Node::write_l1_entry(uint64_t l1i) {
  co_await file_->debug_event(DebugEvent::kL1Update);
  uint8_t raw[8];
  store_be64(raw, l1_[l1i]);
  Status s = co_await guard_existing(header_.l1_table_offset + l1i * 8, 8, 0, "active L1 table");
  if (!s) co_return s;
  s = co_await file_->write(header_.l1_table_offset + l1i * 8, IoVec(raw, 8));
  if (!s) co_return s;
  co_return co_await file_->flush();
}

Task<Status> Qcow2Node::update_l2_entries(L2Table& table, uint64_t first, uint64_t count) {
  // The table will be written where it is: refuse now if that place is not its own.
  const uint64_t begin = first * 8 / 512 * 512;
  const uint64_t end = std::min(cs_, ((first + count) * 8 + 511) / 512 * 512);
  Status s = co_await guard_existing(table.offset + begin, end - begin, table.offset, nullptr);
  if (!s) co_return s;
  table.dirty = true;
  co_return ok();
}

Task<Status> Qcow2Node::make_l2_room() {
  if (l2_cache_.size() < max_l2_tables_) co_return ok();
  for (auto it = l2_cache_.begin(); it != l2_cache_.end(); ++it) {
    if (!it->second->dirty) {
      l2_cache_.erase(it);
      co_return ok();
    }
  }
  Status s = co_await flush_metadata();
  if (!s) co_return s;
  l2_cache_.erase(l2_cache_.begin());
  co_return ok();
}

Task<Status> Qcow2Node::flush_metadata() {
  // Collected first: nothing may iterate the cache across a suspension point.
  std::vector<L2Table*> dirty;
  for (auto& entry : l2_cache_) {
    if (entry.second->dirty) dirty.push_back(entry.second.get());
  }
  Status s = ok();
  if (!dirty.empty()) {
    // §17 R1/R3: refcounts of new clusters and the data written into them are stable before
    // any L2 entry points at them. write_dirty() ends with a flush when it wrote anything.
    if (refcounts_->dirty()) {
      s = co_await refcounts_->write_dirty();
    } else {
      s = co_await file_->flush();
    }
    if (!s) co_return s;
    std::vector<uint8_t> raw(cs_);
    for (L2Table* table : dirty) {
      co_await file_->debug_event(DebugEvent::kL2Update);
      for (uint64_t i = 0; i < l2_entries_; ++i) store_be64(&raw[i * 8], table->entries[i]);
      s = co_await file_->write(table->offset, IoVec(raw.data(), cs_));
      if (!s) co_return s;
      table->dirty = false;
    }
    // §17 R5: the dropped references are on disk before their clusters can be reused.
    s = co_await file_->flush();
    if (!s) co_return s;
  }
  std::vector<uint64_t> frees;
  frees.swap(pending_frees_);
  for (uint64_t e : frees) {
    s = co_await release_entry(e);
    if (!s) co_return s;
  }
  co_return co_await refcounts_->write_dirty();
}

// Finds how the cluster at `guest` is mapped and how many following bytes (at most `bytes`)
// share that treatment: unallocated/zero runs, or normal clusters that are contiguous on the
// host with the same COPIED state.
Task<Result<Qcow2Node::Mapping>> Qcow2Node::map(uint64_t guest, uint64_t bytes) {
  Result<L2Table*> table = co_await get_l2(l1_index(guest), false);
  if (!table) co_return fail(table.error());
  const uint64_t in_cluster = guest % cs_;
  uint64_t idx = l2_index(guest);
  const uint64_t entry = *table ? (*table)->entries[idx] : 0;
  const ClusterType type = cluster_type(entry);
  if ((type == ClusterType::kNormal || type == ClusterType::kZeroAlloc) &&
      (entry & kOffsetMask) % cs_) {
    Error e = co_await corruption(
        fmt::format("Cluster allocation offset {:#x} unaligned (L2 offset: {:#x}, L2 index: {:#x})",
                    entry & kOffsetMask, (*table)->offset, idx));
    co_return fail(e);
  }
  uint64_t covered = std::min(bytes, cs_ - in_cluster);
  if (type != ClusterType::kCompressed) {
    while (covered < bytes && ++idx < l2_entries_) {
      const uint64_t next = *table ? (*table)->entries[idx] : 0;
      const ClusterType next_type = cluster_type(next);
      if (next_type != type) break;
      if (type == ClusterType::kNormal &&
          ((next & kOffsetMask) != (entry & kOffsetMask) + (idx - l2_index(guest)) * cs_ ||
           (next & kCopied) != (entry & kCopied))) {
        break;
      }
      covered = std::min(bytes, covered + cs_);
    }
  }
  co_return Mapping{type, entry, covered};
}

Task<Status> Qcow2Node::read_backing(uint64_t guest, IoVec qiov) {
  co_await file_->debug_event(DebugEvent::kReadBackingAio);
  const uint64_t backing_len = backing_ ? backing_->length() : 0;
  const uint64_t n = qiov.size();
  // §3.5: beyond the backing file's end the image reads as zeros.
  const uint64_t avail = guest < backing_len ? std::min(n, backing_len - guest) : 0;
  if (avail < n) qiov.memset(avail, 0, n - avail);
  if (avail == 0) co_return ok();
  IoVec part = qiov.slice(0, avail);
  co_return co_await backing_->read(guest, std::move(part));
}

Task<Status> Qcow2Node::read_unlocked(uint64_t guest, IoVec qiov, const Mapping& m) {
  switch (m.type) {
    case ClusterType::kUnallocated:
      if (backing_) co_return co_await read_backing(guest, std::move(qiov));
      qiov.memset(0, 0, qiov.size());
      co_return ok();
    case ClusterType::kZeroPlain:
    case ClusterType::kZeroAlloc: qiov.memset(0, 0, qiov.size()); co_return ok();
    case ClusterType::kNormal: {
      co_await file_->debug_event(DebugEvent::kReadAio);
      const uint64_t host = (m.entry & kOffsetMask) + guest % cs_;
      co_return co_await file_->read(host, std::move(qiov));
    }
    case ClusterType::kCompressed: {
      co_await file_->debug_event(DebugEvent::kReadCompressed);
      // §6.1: byte offset and a sector count that bounds the compressed stream.
      const uint64_t shift = 62 - (header_.cluster_bits - 8);
      const uint64_t host = m.entry & ((1ULL << shift) - 1);
      const uint64_t sectors =
          ((m.entry >> shift) & ((1ULL << (header_.cluster_bits - 8)) - 1)) + 1;
      uint64_t in_len = sectors * 512 - (host & 511);
      const uint64_t file_len = file_->length();
      if (host >= file_len) co_return fail(Error::io("compressed cluster beyond end of file"));
      in_len = std::min(in_len, file_len - host);
      std::vector<uint8_t> in(in_len);
      Status s = co_await file_->read(host, IoVec(in.data(), in_len));
      if (!s) co_return s;
      std::vector<uint8_t> out(cs_);
      s = decompress_cluster(static_cast<CompressionType>(header_.compression_type), in.data(),
                             in_len, out.data(), cs_);
      if (!s) co_return s;
      qiov.copy_from(0, out.data() + guest % cs_, qiov.size());
      co_return ok();
    }
  }
  co_return ok();
}

Task<Result<bool>> Qcow2Node::reads_as_zero(uint64_t entry, uint64_t guest_cluster) {
  switch (cluster_type(entry)) {
    case ClusterType::kZeroPlain:
    case ClusterType::kZeroAlloc: co_return true;
    case ClusterType::kUnallocated:
      if (!backing_ || guest_cluster >= backing_->length()) co_return true;
      {
        // Ask the backing chain cheaply whether that range holds data: metadata only
        // (WantZero::kNo), no lseek of a raw file per allocation, as QEMU's fast zero test.
        const uint64_t len = std::min(cs_, backing_->length() - guest_cluster);
        Result<BlockStatus> st = co_await backing_->block_status(guest_cluster, len, WantZero::kNo);
        if (!st) co_return fail(st.error());
        co_return (st->flags & kStatusZero) && st->bytes >= len;
      }
    default: co_return false;
  }
}

Task<Status> Qcow2Node::release_entry(uint64_t entry) {
  const ClusterType type = cluster_type(entry);
  if (type == ClusterType::kNormal || type == ClusterType::kZeroAlloc) {
    co_await file_->debug_event(DebugEvent::kClusterFree);
    const uint64_t host = entry & kOffsetMask;
    Status s = co_await refcounts_->update(host / cs_, 1, -1);
    if (!s) co_return s;
    if (flags_.discard == DiscardMode::kUnmap) {
      Result<uint64_t> rc = co_await refcounts_->get(host / cs_);
      if (rc && *rc == 0) (void)co_await file_->discard(host, cs_);
    }
  } else if (type == ClusterType::kCompressed) {
    const uint64_t shift = 62 - (header_.cluster_bits - 8);
    const uint64_t host = entry & ((1ULL << shift) - 1);
    const uint64_t sectors = ((entry >> shift) & ((1ULL << (header_.cluster_bits - 8)) - 1)) + 1;
    const uint64_t first = host / cs_;
    const uint64_t last = ((host & ~uint64_t{511}) + sectors * 512 - 1) / cs_;
    Status s = co_await refcounts_->update(first, last - first + 1, -1);
    if (!s) co_return s;
  }
  // A freed cluster may be handed out for anything: never pack compressed data into it.
  if (compressed_end_) {
    Result<uint64_t> rc = co_await refcounts_->get(compressed_end_ / cs_);
    if (!rc || *rc == 0) compressed_end_ = 0;
  }
  co_return ok();
}

Task<Status> Qcow2Node::write_header() {
  Result<std::vector<uint8_t>> raw = serialize_header(header_);
  if (!raw) co_return fail(raw.error());
  raw->resize((raw->size() + 511) / 512 * 512, 0);
  Status s = co_await file_->write(0, IoVec(raw->data(), raw->size()));
  if (!s) co_return s;
  co_return co_await file_->flush();
}

// ---- read --------------------------------------------------------------------------------

Task<Status> Qcow2Node::do_read(uint64_t offset, IoVec qiov, RequestFlags) {
  if (Status u = check_usable(); !u) co_return u;
  // Map the whole request first, then read every extent at once: a fragmented request costs
  // one round trip, not one per extent.
  struct Extent {
    uint64_t pos;
    Mapping m;
  };
  std::vector<Extent> extents;
  {
    AsyncMutex::Guard guard = co_await lock_.lock();
    for (uint64_t pos = 0; pos < qiov.size();) {
      Result<Mapping> m = co_await map(offset + pos, qiov.size() - pos);
      if (!m) co_return fail(m.error());
      extents.push_back(Extent{pos, *m});
      pos += m->bytes;
    }
  }
  if (extents.size() == 1) {
    co_return co_await read_unlocked(offset, std::move(qiov), extents[0].m);
  }
  std::vector<Task<Status>> reads;
  reads.reserve(extents.size());
  for (const Extent& e : extents) {
    reads.push_back(read_unlocked(offset + e.pos, qiov.slice(e.pos, e.m.bytes), e.m));
  }
  std::vector<Status> results = co_await when_all(std::move(reads));
  for (Status& r : results) {
    if (!r) co_return r;
  }
  co_return ok();
}

// ---- write -------------------------------------------------------------------------------

Task<void> Qcow2Node::wait_inflight(uint64_t start, uint64_t end, AsyncMutex::Guard& guard) {
  while (InFlight* f = inflight_overlap(start, end)) {
    guard.unlock();
    co_await f->done.wait();
    guard = co_await lock_.lock();
  }
}

// Data I/O runs without the metadata lock: in-place writes release it after the lookup, and
// allocating writes after the allocation (their clusters are fenced by an InFlight record).
Task<Result<uint64_t>> Qcow2Node::allocate_compressed(uint64_t bytes) {
  const uint64_t used = compressed_end_ % cs_;
  if (compressed_end_ && used && used + bytes <= cs_) {
    // Share the cluster the previous compressed data went into, if it still holds it and
    // the refcount width allows one more user.
    Result<uint64_t> rc = co_await refcounts_->get(compressed_end_ / cs_);
    if (rc && *rc > 0) {
      Status more = co_await refcounts_->update(compressed_end_ / cs_, 1, +1);
      if (more) {
        const uint64_t host = compressed_end_;
        compressed_end_ += bytes;
        co_return host;
      }
    }
  }
  Result<uint64_t> fresh = co_await refcounts_->allocate(1);
  if (!fresh) co_return fresh;
  if (*fresh == 0) {
    Error e =
        co_await corruption("Preventing invalid allocation of compressed cluster at offset 0");
    co_return fail(e);
  }
  compressed_end_ = *fresh + bytes;
  co_return *fresh;
}

Task<Status> Qcow2Node::write_compressed(uint64_t offset, IoVec qiov) {
  // QEMU's rules (observed with qemu-io 7.2): cluster-aligned start, whole clusters except
  // the last one of the image, and never over an allocated cluster (EIO).
  if (offset % cs_ || (qiov.size() % cs_ && offset + qiov.size() != header_.size)) {
    co_return fail(Error::invalid());
  }
  std::vector<uint8_t> plain(cs_);
  for (uint64_t pos = 0; pos < qiov.size(); pos += cs_) {
    const uint64_t guest = offset + pos;
    const uint64_t len = std::min<uint64_t>(cs_, qiov.size() - pos);
    std::fill(plain.begin(), plain.end(), 0);
    qiov.copy_to(pos, plain.data(), len);
    // Compressed data must end before the cluster it starts in does (one host cluster).
    Result<std::vector<uint8_t>> packed = compress_cluster(
        static_cast<CompressionType>(header_.compression_type), plain.data(), cs_, cs_ - 1);
    if (!packed) co_return fail(packed.error());
    if (packed->empty()) {
      Status s = co_await do_write(guest, qiov.slice(pos, len), {});
      if (!s) co_return s;
      continue;
    }
    AsyncMutex::Guard guard = co_await lock_.lock();
    while (inflight_overlap(guest, guest + cs_)) co_await wait_inflight(guest, guest + cs_, guard);
    Result<L2Table*> table = co_await get_l2(l1_index(guest), true);
    if (!table) co_return fail(table.error());
    if ((*table)->entries[l2_index(guest)] & (kOffsetMask | kCompressedFlag)) {
      co_return fail(Error::io("compressed write over an allocated cluster"));
    }
    co_await file_->debug_event(DebugEvent::kClusterAllocBytes);
    Result<uint64_t> host = co_await allocate_compressed(packed->size());
    if (!host) co_return fail(host.error());
    if (const char* what = overlapping_metadata(*host, packed->size())) {
      Error e = co_await corruption(
          fmt::format("Preventing invalid write on metadata (overlaps with {})", what));
      co_return fail(e);
    }
    auto fence = std::make_shared<InFlight>(*loop_, guest, guest + cs_);
    inflight_.push_back(fence.get());
    guard.unlock();
    co_await file_->debug_event(DebugEvent::kWriteCompressed);
    Status s = co_await file_->write(*host, IoVec(packed->data(), packed->size()));
    guard = co_await lock_.lock();
    std::erase(inflight_, fence.get());
    fence->finished = true;
    fence->done.wake_all();
    if (!s) co_return s;
    Result<L2Table*> linked = co_await get_l2(l1_index(guest), true);
    if (!linked) co_return fail(linked.error());
    // §6.1: byte offset, then the number of 512-byte sectors after the first one.
    const uint64_t shift = 62 - (header_.cluster_bits - 8);
    const uint64_t extra_sectors = ((*host + packed->size() - 1) >> 9) - (*host >> 9);
    (*linked)->entries[l2_index(guest)] = *host | (extra_sectors << shift) | kCompressedFlag;
    s = co_await update_l2_entries(**linked, l2_index(guest), 1);
    if (!s) co_return s;
  }
  co_return ok();
}

Qcow2Node::InPlaceRun Qcow2Node::inplace_run(const L2Table& table, uint64_t guest,
                                             uint64_t bytes) const {
  InPlaceRun run;
  const uint64_t first = l2_index(guest);
  const uint64_t in_cluster = guest % cs_;
  for (uint64_t i = first; i < l2_entries_ && run.bytes < bytes; ++i) {
    const uint64_t entry = table.entries[i];
    const uint64_t skip = i == first ? in_cluster : 0;
    const uint64_t piece = std::min(cs_ - skip, bytes - run.bytes);
    const uint64_t host = entry & kOffsetMask;
    const ClusterType type = cluster_type(entry);
    const uint64_t cluster_guest = guest - in_cluster + (i - first) * cs_;
    const bool usable = (entry & kCopied) && host % cs_ == 0 &&
                        (type == ClusterType::kNormal ||
                         (type == ClusterType::kZeroAlloc && skip == 0 && piece == cs_)) &&
                        (i == first || host == run.host - in_cluster + (i - first) * cs_) &&
                        !inflight_overlap(cluster_guest, cluster_guest + cs_);
    if (!usable) break;
    if (i == first) run.host = host + in_cluster;
    if (type == ClusterType::kZeroAlloc) run.zero_alloc.push_back(i);
    run.bytes += piece;
  }
  return run;
}

Task<Status> Qcow2Node::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  if (Status u = check_usable(); !u) co_return u;
  if (flags.has(RequestFlag::kWriteCompressed)) {
    co_return co_await write_compressed(offset, std::move(qiov));
  }
  // Pieces written into other requests' allocations, to be confirmed at the end.
  struct Joined {
    std::shared_ptr<InFlight> fence;
    uint64_t pos;
    uint64_t len;
  };
  std::vector<Joined> joined;
  uint64_t pos = 0;
  while (pos < qiov.size()) {
    AsyncMutex::Guard guard = co_await lock_.lock();
    const uint64_t guest = offset + pos;
    // The L2 table this write goes through must be a private, sane one (allocated if absent).
    Result<L2Table*> own = co_await get_l2(l1_index(guest), true);
    if (!own) co_return fail(own.error());
    Result<Mapping> m = co_await map(guest, qiov.size() - pos);
    if (!m) co_return fail(m.error());
    // block-semantics.md §6.2 C11 (iotest 066 case 4): a host-contiguous run of COPIED
    // clusters that includes preallocated zero clusters this write covers entirely goes out
    // as one write; the zero flags are cleared only after the data is written.
    // (Only worth looking when the mapping starts with a zero cluster or stops short of the
    // request: a write that one in-place mapping covers needs no scan.)
    const bool may_merge = m->type == ClusterType::kZeroAlloc ||
                           (m->type == ClusterType::kNormal && m->bytes < qiov.size() - pos);
    InPlaceRun run;
    if (may_merge) run = inplace_run(**own, guest, qiov.size() - pos);
    if (!run.zero_alloc.empty()) {
      if (Status g = co_await guard_existing(run.host, run.bytes, 0, nullptr); !g) co_return g;
      const uint64_t first_cluster = guest - guest % cs_;
      auto fence = std::make_shared<InFlight>(*loop_, first_cluster,
                                              (guest + run.bytes + cs_ - 1) / cs_ * cs_);
      inflight_.push_back(fence.get());
      guard.unlock();
      co_await file_->debug_event(DebugEvent::kWriteAio);
      IoVec part = qiov.slice(pos, run.bytes);
      Status s = co_await file_->write(run.host, std::move(part));
      guard = co_await lock_.lock();
      if (s) {
        Result<L2Table*> t = co_await get_l2(l1_index(guest), true);
        if (!t) {
          s = fail(t.error());
        } else {
          for (uint64_t i : run.zero_alloc) (*t)->entries[i] &= ~kZeroFlag;
          s = co_await update_l2_entries(**t, run.zero_alloc.front(),
                                         run.zero_alloc.back() - run.zero_alloc.front() + 1);
        }
      }
      std::erase(inflight_, fence.get());
      fence->finished = true;
      fence->done.wake_all();
      if (!s) co_return s;
      pos += run.bytes;
      continue;
    }
    if (m->type == ClusterType::kNormal && (m->entry & kCopied)) {
      // §3.6: COPIED clusters are rewritten in place.
      const uint64_t host = (m->entry & kOffsetMask) + guest % cs_;
      if (Status g = co_await guard_existing(host, m->bytes, 0, nullptr); !g) co_return g;
      guard.unlock();
      co_await file_->debug_event(DebugEvent::kWriteAio);
      IoVec part = qiov.slice(pos, m->bytes);
      Status s = co_await file_->write(host, std::move(part));
      if (!s) co_return s;
      pos += m->bytes;
      continue;
    }
    // Another request is filling this cluster: write straight into it once its COW contents
    // are settled (else wait for that and look again). This request completes only after
    // that allocation is linked (see the end), but goes on with its other clusters meanwhile.
    const uint64_t cluster_start = guest - guest % cs_;
    if (InFlight* found = inflight_overlap(cluster_start, cluster_start + cs_)) {
      std::shared_ptr<InFlight> f = found->shared_from_this();
      if (!f->ready) {
        guard.unlock();
        co_await f->done.wait();
        continue;
      }
      const uint64_t len = std::min(qiov.size() - pos, f->end - guest);
      ++f->writers;
      const uint64_t next = guest + len;
      if (len < qiov.size() - pos) {
        // The rest starts at a cluster this write may allocate: allocate it now and write the
        // joined piece together with the new clusters' data (W3's misaligned writes).
        Result<L2Table*> next_table = co_await get_l2(l1_index(next), true);
        if (!next_table) {
          if (--f->writers == 0) f->writers_done.wake_all();
          co_return fail(next_table.error());
        }
        const ClusterType next_type = cluster_type((*next_table)->entries[l2_index(next)]);
        if ((next_type == ClusterType::kUnallocated || next_type == ClusterType::kZeroPlain) &&
            !inflight_overlap(next, next + cs_)) {
          JoinedPrefix prefix{f.get(), f->host + (guest - f->start), qiov.slice(pos, len)};
          uint64_t written = 0;
          IoVec rest = qiov.slice(pos + len, qiov.size() - pos - len);
          Status s = co_await allocating_write(next, std::move(rest), **next_table, &written, guard,
                                               &prefix);
          if (!s) co_return s;
          joined.push_back(Joined{std::move(f), pos, len});
          pos += len + written;
          continue;
        }
      }
      guard.unlock();
      co_await file_->debug_event(DebugEvent::kWriteAio);
      IoVec part = qiov.slice(pos, len);
      Status s = co_await file_->write(f->host + (guest - f->start), std::move(part));
      if (--f->writers == 0) f->writers_done.wake_all();
      if (!s) co_return s;
      joined.push_back(Joined{std::move(f), pos, len});
      pos += len;
      continue;
    }
    Result<L2Table*> table = co_await get_l2(l1_index(guest), true);
    if (!table) co_return fail(table.error());
    uint64_t written = 0;
    IoVec rest = qiov.slice(pos, qiov.size() - pos);
    Status s = co_await allocating_write(guest, std::move(rest), **table, &written, guard);
    if (!s) co_return s;
    pos += written;
  }
  // The joined pieces count once their clusters are linked; if an allocation failed, its
  // piece is written again from scratch.
  for (Joined& j : joined) {
    while (!j.fence->finished) co_await j.fence->done.wait();
    if (j.fence->linked) continue;
    Status s = co_await do_write(offset + j.pos, qiov.slice(j.pos, j.len), flags);
    if (!s) co_return s;
  }
  co_return ok();
}

// Writes a prefix of `data` at `guest` into newly allocated clusters (§5 of
// block-semantics.md): a run of clusters that all need allocation, in one L2 table. COW
// regions that read as zero are zeroed with one ALLOCATE write-zeroes and only guest data is
// written; otherwise head + data + tail go out as one merged write. Then refcounts, then the
// L2 entries (§17).
Task<Status> Qcow2Node::allocating_write(uint64_t guest, IoVec data, L2Table& table,
                                         uint64_t* written, AsyncMutex::Guard& guard,
                                         JoinedPrefix* prefix) {
  const uint64_t first = l2_index(guest);
  const uint64_t in_cluster = guest % cs_;
  // The joined prefix's writer count is released once the prefix is written or given up.
  struct ReleasePrefix {
    JoinedPrefix* prefix;
    void release() {
      if (prefix && --prefix->fence->writers == 0) prefix->fence->writers_done.wake_all();
      prefix = nullptr;
    }
    ~ReleasePrefix() { release(); }
  } release_prefix{prefix};
  CHECK(!prefix || in_cluster == 0);
  // How many clusters from `first` need a new host cluster (stop at an in-place one).
  uint64_t count = 0;
  while (first + count < l2_entries_ && count * cs_ < in_cluster + data.size()) {
    const uint64_t e = table.entries[first + count];
    if (cluster_type(e) == ClusterType::kNormal && (e & kCopied)) break;
    if (count > 0 && cluster_type(e) == ClusterType::kZeroAlloc && (e & kCopied)) break;
    // A cluster another request is allocating is joined, not allocated again (do_write).
    const uint64_t cluster = guest - in_cluster + count * cs_;
    if (inflight_overlap(cluster, cluster + cs_)) break;
    ++count;
  }
  CHECK(count > 0);
  const uint64_t first_entry = table.entries[first];
  const uint64_t guest_start = guest - in_cluster;
  // A single preallocated zero cluster with refcount 1 is reused in place (§3.5).
  const bool reuse =
      count == 1 && cluster_type(first_entry) == ClusterType::kZeroAlloc && (first_entry & kCopied);
  uint64_t host;
  if (reuse) {
    host = first_entry & kOffsetMask;
    if (host % cs_) {
      Error e = co_await corruption(
          fmt::format("Preallocated zero cluster offset {:#x} unaligned (guest offset: {:#x})",
                      host, guest_start));
      co_return fail(e);
    }
  } else {
    co_await file_->debug_event(DebugEvent::kClusterAlloc);
    // Take the first free run, even if shorter than wanted; the rest goes in the next round.
    Result<std::pair<uint64_t, uint64_t>> run = co_await refcounts_->allocate_run(1, count);
    if (!run) co_return fail(run.error());
    if (run->first == 0) {
      Error e = co_await corruption("Preventing invalid allocation of cluster at offset 0");
      co_return fail(e);
    }
    host = run->first;
    count = run->second;
  }
  if (const char* what = overlapping_metadata(host, count * cs_)) {
    Error e = co_await corruption(
        fmt::format("Preventing invalid write on metadata (overlaps with {})", what));
    co_return fail(e);
  }
  const uint64_t data_len = std::min<uint64_t>(data.size(), count * cs_ - in_cluster);
  const uint64_t head = in_cluster;
  const uint64_t tail = count * cs_ - in_cluster - data_len;
  const uint64_t last_entry = table.entries[first + count - 1];
  const uint64_t guest_last = guest_start + (count - 1) * cs_;

  // Fence the clusters, then do the data I/O without the lock.
  auto fence = std::make_shared<InFlight>(*loop_, guest_start, guest_start + count * cs_);
  inflight_.push_back(fence.get());
  struct Unfence {
    Qcow2Node* node;
    InFlight* fence;
    ~Unfence() {
      std::erase(node->inflight_, fence);
      fence->finished = true;
      fence->done.wake_all();
    }
  } unfence{this, fence.get()};

  guard.unlock();

  bool head_zero = true, tail_zero = true;
  if (head) {
    Result<bool> z = co_await reads_as_zero(first_entry, guest_start);
    if (!z) co_return fail(z.error());
    head_zero = *z;
  }
  if (tail) {
    Result<bool> z = co_await reads_as_zero(last_entry, guest_last);
    if (!z) co_return fail(z.error());
    tail_zero = *z;
  }
  IoVec payload = data.slice(0, data_len);
  Status s = ok();
  bool zeroed = false;
  if (zero_cow_ && (head || tail) && head_zero && tail_zero) {
    // block-semantics.md §5.2: one efficient zeroing of the whole allocation, data only after.
    co_await file_->debug_event(DebugEvent::kClusterAllocSpace);
    Status z = co_await file_->write_zeroes(host, count * cs_, kAllocate);
    zeroed = static_cast<bool>(z);
  }
  if (zeroed) {
    // The clusters read as zero now, which is their COW content: others may write in.
    fence->host = host;
    fence->ready = true;
    fence->done.wake_all();
  }
  // The joined prefix goes out with this allocation's first write when it ends where the new
  // clusters begin on the host, else on its own first.
  const bool merge_prefix = prefix && prefix->host + prefix->data.size() == host;
  if (prefix && !merge_prefix) {
    co_await file_->debug_event(DebugEvent::kWriteAio);
    s = co_await file_->write(prefix->host, prefix->data);
    release_prefix.release();
    if (!s) co_return s;
  }
  if (zeroed || (!head && !tail)) {
    co_await file_->debug_event(DebugEvent::kWriteAio);
    if (merge_prefix) {
      IoVec merged = prefix->data;
      merged.append(payload);
      s = co_await file_->write(prefix->host, std::move(merged));
    } else {
      s = co_await file_->write(host + head, std::move(payload));
    }
  } else {
    // block-semantics.md §5.3: COW head and tail merged with the data into one write.
    AlignedBuffer head_buf(head, 4096), tail_buf(tail, 4096);
    if (head) {
      co_await file_->debug_event(DebugEvent::kCowRead);
      Mapping hm{cluster_type(first_entry), first_entry, head};
      s = co_await read_unlocked(guest_start, IoVec(head_buf.data(), head), hm);
      if (!s) co_return s;
    }
    if (tail) {
      co_await file_->debug_event(DebugEvent::kCowRead);
      const uint64_t tail_guest = guest + data_len;
      Mapping tm{cluster_type(last_entry), last_entry, tail};
      s = co_await read_unlocked(tail_guest, IoVec(tail_buf.data(), tail), tm);
      if (!s) co_return s;
    }
    // The image may have been found corrupt while this request waited (iotest 060 case 4).
    if (Status u = check_usable(); !u) co_return u;
    IoVec merged;
    if (merge_prefix) merged.append(prefix->data);
    if (head) merged.append(head_buf.data(), head);
    merged.append(payload);
    if (tail) merged.append(tail_buf.data(), tail);
    co_await file_->debug_event(DebugEvent::kCowWrite);
    s = co_await file_->write(merge_prefix ? prefix->host : host, std::move(merged));
  }
  release_prefix.release();
  if (!s) co_return s;
  if (!fence->ready) {
    fence->host = host;
    fence->ready = true;
    fence->done.wake_all();
  }
  // §6: the L2 entry may point at the clusters only once every write into them is done
  // (a crash must not expose a linked cluster with missing data).
  while (fence->writers) co_await fence->writers_done.wait();

  // Link: the table may have left the cache meanwhile, so look it up again. Its entries for
  // these clusters cannot have changed (everybody else waits on the fence).
  guard = co_await lock_.lock();
  if (Status u = check_usable(); !u) co_return u;  // never link into a broken image
  while (fence->writers) {                         // joined while we waited for the lock
    guard.unlock();
    co_await fence->writers_done.wait();
    guard = co_await lock_.lock();
  }
  Result<L2Table*> linked = co_await get_l2(l1_index(guest), true);
  if (!linked) co_return fail(linked.error());
  L2Table& t = **linked;
  // The L2 entries change in the cache; flush_metadata() writes them after the refcounts
  // and the data are stable (§17 R1/R3).
  std::vector<uint64_t> old(t.entries.begin() + static_cast<std::ptrdiff_t>(first),
                            t.entries.begin() + static_cast<std::ptrdiff_t>(first + count));
  for (uint64_t i = 0; i < count; ++i) t.entries[first + i] = (host + i * cs_) | kCopied;
  s = co_await update_l2_entries(t, first, count);
  if (!s) co_return s;
  if (!reuse) {
    for (uint64_t e : old) {
      if (e & (kOffsetMask | kCompressedFlag)) queue_free(e);
    }
  }
  fence->linked = true;
  *written = data_len;
  co_return ok();
}

// ---- zeroes, discard -----------------------------------------------------------------------

Task<Status> Qcow2Node::do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  if (Status u = check_usable(); !u) co_return u;
  if (header_.version < 3) co_return fail(Error::unsupported());
  AsyncMutex::Guard guard = co_await lock_.lock();
  {
    // Clusters being filled by an allocating write are not touched until it has linked them.
    const uint64_t fence_start = offset - offset % cs_;
    co_await wait_inflight(fence_start, offset + bytes, guard);
  }
  const uint64_t in_cluster = offset % cs_;
  const bool partial = in_cluster != 0 || (bytes % cs_ != 0 && offset + bytes != header_.size);
  if (partial) {
    // qcow2-format.md §3.7: a partial cluster can only become a zero cluster if it already
    // reads as zeros; anything else is the generic layer's job (ENOTSUP → zero buffers).
    Result<L2Table*> table = co_await get_l2(l1_index(offset), false);
    if (!table) co_return fail(table.error());
    const uint64_t entry = *table ? (*table)->entries[l2_index(offset)] : 0;
    Result<bool> z = co_await reads_as_zero(entry, offset - in_cluster);
    if (!z) co_return fail(z.error());
    if (!*z || cluster_type(entry) == ClusterType::kZeroAlloc) co_return fail(Error::unsupported());
    if (cluster_type(entry) == ClusterType::kZeroPlain) co_return ok();
    Result<L2Table*> t = co_await get_l2(l1_index(offset), true);
    if (!t) co_return fail(t.error());
    (*t)->entries[l2_index(offset)] = kZeroFlag;
    co_return co_await update_l2_entries(**t, l2_index(offset), 1);
  }
  uint64_t pos = offset;
  const uint64_t end = offset + bytes;
  while (pos < end) {
    Result<L2Table*> table = co_await get_l2(l1_index(pos), true);
    if (!table) co_return fail(table.error());
    const uint64_t first = l2_index(pos);
    const uint64_t count = std::min(l2_entries_ - first, (end - pos + cs_ - 1) / cs_);
    std::vector<uint64_t> to_free;
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t& e = (*table)->entries[first + i];
      const ClusterType type = cluster_type(e);
      const bool keep = !flags.has(RequestFlag::kMayUnmap) && (e & kCopied) &&
                        (type == ClusterType::kNormal || type == ClusterType::kZeroAlloc);
      if (keep) {
        e = (e & (kOffsetMask | kCopied)) | kZeroFlag;  // ZERO_ALLOC
      } else {
        if (e & (kOffsetMask | kCompressedFlag)) to_free.push_back(e);
        e = kZeroFlag;  // ZERO_PLAIN
      }
    }
    Status s = co_await update_l2_entries(**table, first, count);
    if (!s) co_return s;
    for (uint64_t e : to_free) queue_free(e);
    pos += count * cs_;
  }
  co_return ok();
}

Task<Status> Qcow2Node::do_discard(uint64_t offset, uint64_t bytes) {
  if (Status u = check_usable(); !u) co_return u;
  // §3.7: partial clusters are ignored (the end of the image counts as a cluster end).
  uint64_t start = (offset + cs_ - 1) / cs_ * cs_;
  uint64_t end = offset + bytes == header_.size ? offset + bytes : (offset + bytes) / cs_ * cs_;
  if (end <= start) co_return ok();
  // v2 has no zero flag: freeing a cluster would expose the backing file, so QEMU (7.2,
  // observed) leaves such images alone.
  if (header_.version < 3 && backing_) co_return ok();
  AsyncMutex::Guard guard = co_await lock_.lock();
  co_await wait_inflight(start, end, guard);
  for (uint64_t pos = start; pos < end;) {
    Result<L2Table*> probe = co_await get_l2(l1_index(pos), false);
    if (!probe) co_return fail(probe.error());
    const uint64_t first = l2_index(pos);
    const uint64_t count = std::min(l2_entries_ - first, (end - pos + cs_ - 1) / cs_);
    if (!*probe && header_.version < 3) {
      pos += count * cs_;
      continue;
    }
    Result<L2Table*> table = co_await get_l2(l1_index(pos), true);
    if (!table) co_return fail(table.error());
    std::vector<uint64_t> to_free;
    // v3: the range reads as zeros afterwards; v2 has no zero flag and shows the backing file.
    const uint64_t replacement = header_.version >= 3 ? kZeroFlag : 0;
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t& e = (*table)->entries[first + i];
      if (e & (kOffsetMask | kCompressedFlag)) to_free.push_back(e);
      e = replacement;
    }
    Status s = co_await update_l2_entries(**table, first, count);
    if (!s) co_return s;
    for (uint64_t e : to_free) queue_free(e);
    pos += count * cs_;
  }
  co_return ok();
}

Task<Status> Qcow2Node::do_flush() {
  if (read_only() || broken_) co_return ok();
  AsyncMutex::Guard guard = co_await lock_.lock();
  co_await file_->debug_event(DebugEvent::kFlushToOs);
  co_return co_await flush_metadata();
}

Task<Status> Qcow2Node::do_truncate(uint64_t size, PreallocMode mode, Exact) {
  if (size % 512) {
    co_return fail(Error::with_message(EINVAL, "The new size must be a multiple of 512"));
  }
  if (mode != PreallocMode::kOff) {
    co_return fail(
        Error::with_message(ENOTSUP, "Preallocation is not supported by qcow2 resize yet"));
  }
  if (Status u = check_usable(); !u) co_return u;
  AsyncMutex::Guard guard = co_await lock_.lock();
  if (size < header_.size && header_.nb_snapshots) {
    // 7.2 shrinks such images too; shrink() assumes every L2 table it drops is unshared.
    co_return fail(Error::with_message(
        ENOTSUP, "Shrinking qcow2 images with internal snapshots is not supported yet"));
  }
  if (size < header_.size) co_return co_await shrink(size);
  const uint64_t span = cs_ * l2_entries_;
  const uint64_t needed = (size + span - 1) / span;
  if (needed > l1_.size()) {
    // Grow the L1 table: a new copy elsewhere, then the header, then free the old one.
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
    header_.size = size;
    s = co_await write_header();
    if (!s) co_return s;
    l1_.resize(needed, 0);
    if (old_offset && old_clusters) {
      s = co_await refcounts_->update(old_offset / cs_, old_clusters, -1);
      if (!s) co_return s;
    }
    co_return ok();
  }
  header_.size = size;
  co_return co_await write_header();
}

void Qcow2Node::host_clusters(uint64_t entry, std::vector<uint64_t>& out) const {
  const ClusterType type = cluster_type(entry);
  if (type == ClusterType::kNormal || type == ClusterType::kZeroAlloc) {
    out.push_back((entry & kOffsetMask) / cs_);
  } else if (type == ClusterType::kCompressed) {
    // §6.1: the compressed stream may straddle a cluster boundary.
    const uint64_t shift = 62 - (header_.cluster_bits - 8);
    const uint64_t host = entry & ((1ULL << shift) - 1);
    const uint64_t sectors = ((entry >> shift) & ((1ULL << (header_.cluster_bits - 8)) - 1)) + 1;
    const uint64_t last = ((host & ~uint64_t{511}) + sectors * 512 - 1) / cs_;
    for (uint64_t c = host / cs_; c <= last; ++c) out.push_back(c);
  }
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
    const uint64_t l1i = l1_index(start);
    Result<L2Table*> probe = co_await get_l2(l1i, false);
    if (!probe) co_return fail(probe.error());
    const uint64_t first = l2_index(start);
    bool used = *probe == nullptr;
    for (uint64_t i = first; !used && i < l2_entries_; ++i) used = (*probe)->entries[i] != 0;
    if (used) {
      Result<L2Table*> table = co_await get_l2(l1i, true);
      if (!table) co_return fail(table.error());
      for (uint64_t i = first; i < l2_entries_; ++i) {
        uint64_t& e = (*table)->entries[i];
        if (e & (kOffsetMask | kCompressedFlag)) {
          queue_free(e);
          host_clusters(e, freed);
        }
        e = 0;
      }
      Status s = co_await update_l2_entries(**table, first, l2_entries_ - first);
      if (!s) co_return s;
    }
  }

  // Tables past the end: collect what they reference first (loading one may write back the
  // cache, which must not release anything still reachable from the L1 table on disk).
  std::vector<uint64_t> dropped_refs;
  bool l1_changed = false;
  for (uint64_t l1i = keep_l1; l1i < l1_.size(); ++l1i) {
    const uint64_t l2_offset = l1_[l1i] & kOffsetMask;
    if (!l2_offset) {
      l1_changed = l1_changed || l1_[l1i] != 0;
      continue;
    }
    Result<L2Table*> table = co_await get_l2(l1i, false);
    if (!table) co_return fail(table.error());
    for (uint64_t e : (*table)->entries) {
      if (e & (kOffsetMask | kCompressedFlag)) dropped_refs.push_back(e);
    }
    dropped_refs.push_back(l2_offset);  // the table itself, as a normal cluster entry
    l1_changed = true;
  }
  if (l1_changed) {
    for (uint64_t l1i = keep_l1; l1i < l1_.size(); ++l1i) {
      const uint64_t l2_offset = l1_[l1i] & kOffsetMask;
      if (l2_offset) {
        l2_cache_.erase(l2_offset);
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
  for (uint64_t e : dropped_refs) {
    queue_free(e);
    host_clusters(e, freed);
  }
  Status s = co_await flush_metadata();
  if (!s) co_return s;
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
  refcounts_ = std::make_unique<Refcounts>(*file_, header_);
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

Task<Result<BlockStatus>> Qcow2Node::do_block_status(uint64_t offset, uint64_t bytes, WantZero) {
  AsyncMutex::Guard guard = co_await lock_.lock();
  Result<Mapping> m = co_await map(offset, bytes);
  if (!m) co_return fail(m.error());
  BlockStatus st{0, m->bytes, 0, nullptr};
  switch (m->type) {
    case ClusterType::kUnallocated: break;
    case ClusterType::kZeroPlain: st.flags = kStatusZero; break;
    case ClusterType::kZeroAlloc:
      st.flags = kStatusZero | kStatusOffsetValid;
      st.host_offset = (m->entry & kOffsetMask) + offset % cs_;
      st.file = file_;
      break;
    case ClusterType::kNormal:
      st.flags = kStatusData | kStatusOffsetValid;
      st.host_offset = (m->entry & kOffsetMask) + offset % cs_;
      st.file = file_;
      break;
    case ClusterType::kCompressed: st.flags = kStatusData; break;
  }
  co_return st;
}

Task<Status> Qcow2Node::do_close() {
  if (read_only() || broken_ || open_flags().check) co_return ok();
  AsyncMutex::Guard guard = co_await lock_.lock();
  Status s = co_await flush_metadata();
  if (!s) co_return s;
  co_return co_await file_->flush();
}

// Reads cluster 0 and parses it.
Task<Result<Header>> read_header(BlockNode& file) {
  AlignedBuffer first(512, 4096);
  first.fill(0);
  const uint64_t len = file.length();
  if (len < 72) co_return fail(Error::with_message(EINVAL, "Image is not in qcow2 format"));
  Status s = co_await file.read(0, IoVec(first.data(), 512));
  if (!s) co_return fail(s.error());
  const uint32_t bits = load_be32(first.data() + 20);
  if (load_be32(first.data()) == kMagic && bits >= 9 && bits <= 21) {
    const uint64_t cs = 1ULL << bits;
    const uint64_t n = std::min<uint64_t>(cs, (len + 511) / 512 * 512);
    AlignedBuffer cluster(n, 4096);
    s = co_await file.read(0, IoVec(cluster.data(), n));
    if (!s) co_return fail(s.error());
    co_return parse_header(cluster.data(), std::min<uint64_t>(n, len));
  }
  co_return parse_header(first.data(), std::min<uint64_t>(512, len));
}

Task<Result<NodePtr>> open_backing(OpenContext& ctx, std::string backing_file,
                                   std::string backing_format, std::string image) {
  std::string path = backing_file;
  if (!path.empty() && path[0] != '/' && path.find(':') == std::string::npos) {
    const std::size_t slash = image.rfind('/');
    if (slash != std::string::npos) path = image.substr(0, slash + 1) + path;
  }
  std::string format = backing_format;
  OpenFlags flags = ctx.flags;
  flags.read_only = true;
  if (format.empty()) {
    // Probe: qcow2 or raw.
    Options probe_opts = Options::object();
    probe_opts["driver"] = "file";
    probe_opts["filename"] = path;
    OpenFlags probe_flags;
    probe_flags.read_only = true;
    probe_flags.force_share = true;
    Result<NodePtr> probe = co_await open_node(ctx.loop, std::move(probe_opts), probe_flags, "");
    if (!probe) co_return fail(probe.error());
    AlignedBuffer buf(512, 4096);
    buf.fill(0);
    Status s = ok();
    if ((*probe)->length() >= 512) s = co_await (*probe)->read(0, IoVec(buf.data(), 512));
    (void)co_await (*probe)->close();
    if (!s) co_return fail(s.error());
    format = probe_qcow2(buf.data(), 512) ? "qcow2" : "raw";
  }
  Options opts = Options::object();
  opts["driver"] = format;
  opts["file"] = Options::object();
  opts["file"]["driver"] = "file";
  opts["file"]["filename"] = path;
  Result<NodePtr> node = co_await open_node(ctx.loop, std::move(opts), flags, "");
  if (!node) {
    co_return fail(Error::with_message(node.error().errnum(),
                                       "Could not open backing file: " + node.error().message()));
  }
  co_return node;
}

}  // namespace

Task<Result<CheckResult>> check_qcow2_node(BlockNode& node, unsigned fix) {
  auto* qcow2 = dynamic_cast<Qcow2Node*>(&node);
  if (!qcow2 || !node.open_flags().check) co_return fail(Error::unsupported());
  Task<Result<CheckResult>> run = check_image(qcow2->check_target(), fix);
  co_return co_await std::move(run);
}

namespace {

// True if `path` lives on a rotating disk (/sys/dev/block/MAJ:MIN/queue/rotational of its
// device, or of the whole disk for a partition). Unknown counts as not rotational.
bool on_rotational_storage(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  const dev_t dev = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
  const std::string base = fmt::format("/sys/dev/block/{}:{}", major(dev), minor(dev));
  for (const char* rel : {"/queue/rotational", "/../queue/rotational"}) {
    std::ifstream in(base + rel);
    int rotational = 0;
    if (in >> rotational) return rotational == 1;
  }
  return false;
}

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

int probe_qcow2(const uint8_t* header, std::size_t len) {
  if (len < 8 || load_be32(header) != kMagic) return 0;
  const uint32_t version = load_be32(header + 4);
  return version >= 2 ? 100 : 0;
}

Task<Result<NodePtr>> open_qcow2_node(OpenContext& ctx, Options& options) {
  // Runtime options (qemu-compat.md §5.4): validated, mostly advisory here.
  uint64_t l2_cache_bytes = 32ULL << 20;
  for (const char* key : {"l2-cache-size", "refcount-cache-size", "cache-size",
                          "l2-cache-entry-size", "cache-clean-interval"}) {
    auto v = take_size(options, key);
    if (!v) co_return fail(v.error());
    if (*v && std::string_view(key) == "l2-cache-size") l2_cache_bytes = **v;
  }
  for (const char* key :
       {"lazy-refcounts", "pass-discard-request", "pass-discard-snapshot", "pass-discard-other"}) {
    auto v = take_bool(options, key);
    if (!v) co_return fail(v.error());
  }
  // qblock's own options (block-semantics.md §5.2, §7): zero-cow=on|off|auto and
  // prealloc=on|off (a preallocate filter above the file of a writable image).
  Result<std::optional<std::string>> zero_cow_opt = take_string(options, "zero-cow");
  if (!zero_cow_opt) co_return fail(zero_cow_opt.error());
  const std::string zero_cow = zero_cow_opt->value_or("auto");
  if (zero_cow != "on" && zero_cow != "off" && zero_cow != "auto") {
    co_return fail(
        Error::with_message(EINVAL, "Parameter 'zero-cow' expects 'on', 'off' or 'auto'"));
  }
  Result<std::optional<bool>> prealloc_opt = take_bool(options, "prealloc");
  if (!prealloc_opt) co_return fail(prealloc_opt.error());
  const bool prealloc = prealloc_opt->value_or(true);
  if (options.contains("overlap-check")) {
    Options& oc = options["overlap-check"];
    std::string value = oc.is_string() ? oc.get<std::string>()
                        : (oc.is_object() && oc.contains("template") && oc["template"].is_string())
                            ? oc["template"].get<std::string>()
                            : "cached";
    if (value != "none" && value != "constant" && value != "cached" && value != "all") {
      co_return fail(Error::with_message(
          EINVAL, "Unsupported value '" + value +
                      "' for qcow2 option 'overlap-check'. Allowed are any of the following: "
                      "none, constant, cached, all"));
    }
    options.erase("overlap-check");
  }
  std::optional<Options> backing_opts;
  bool backing_disabled = false;
  if (options.contains("backing")) {
    if (options["backing"].is_null()) {
      backing_disabled = true;
    } else {
      backing_opts = options["backing"];
    }
    options.erase("backing");
  }
  Result<NodePtr> file = co_await open_child(ctx, options, "file", "file");
  if (!file) co_return fail(file.error());
  NodePtr file_node = std::move(*file);
  Result<Header> header = co_await read_header(*file_node);
  if (!header) {
    (void)co_await file_node->close();
    co_return fail(header.error());
  }
  const uint64_t unsupported = header->incompatible_features & ~kSupportedIncompatible;
  std::optional<Error> refuse;
  if (unsupported) {
    refuse = Error::with_message(ENOTSUP, unsupported_features_message(*header, unsupported));
  } else if (header->crypt_method != 0) {
    refuse = Error::with_message(ENOTSUP, "Encrypted qcow2 images are not supported yet");
  } else if ((header->incompatible_features & kIncompatCorrupt) && !ctx.flags.read_only &&
             !ctx.flags.check) {
    refuse = Error::with_message(EACCES, "qcow2: Image is corrupt; cannot be opened read/write");
  }
  if (refuse) {
    (void)co_await file_node->close();
    co_return fail(*refuse);
  }
  if ((header->incompatible_features & kIncompatDirty) && !ctx.flags.read_only &&
      !ctx.flags.check) {
    // §11: refcounts of a dirty image are stale; rebuild them before anything allocates.
    bool reported = false;
    bool broken = false;
    Task<Result<CheckResult>> repair = check_image(
        CheckTarget{*file_node, *header, true, reported, broken}, kFixLeaks | kFixErrors);
    Result<CheckResult> repaired = co_await std::move(repair);
    if (!repaired || repaired->corruptions || repaired->check_errors) {
      (void)co_await file_node->close();
      const int e = repaired ? EIO : repaired.error().errnum();
      co_return fail(Error::with_message(
          e, "Could not repair dirty image: " + Error::from_errno(e).errno_text()));
    }
  }
  if (header->autoclear_features && !ctx.flags.read_only && !ctx.flags.check) {
    // §2.3: qblock maintains none of the structures autoclear bits vouch for (bitmaps), so a
    // writer must withdraw the promise before it changes anything.
    header->autoclear_features = 0;
    uint8_t raw[8] = {};
    Status cleared = co_await file_node->write(88, IoVec(raw, 8));
    if (cleared) cleared = co_await file_node->flush();
    if (!cleared) {
      (void)co_await file_node->close();
      co_return fail(cleared.error());
    }
  }
  if (!ctx.flags.read_only && !ctx.flags.check) {
    // Structures that overlap each other cannot be updated without destroying one another.
    const Header& h = *header;
    const uint64_t cs = h.cluster_size();
    auto overlap = [](uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
      return alen && blen && a < b + blen && b < a + alen;
    };
    const uint64_t l1_len = uint64_t{h.l1_size} * 8;
    const uint64_t rt_len = uint64_t{h.refcount_table_clusters} * cs;
    std::string what;
    if (overlap(h.l1_table_offset, l1_len, 0, cs)) what = "Active L1 table overlaps the header";
    if (overlap(h.refcount_table_offset, rt_len, 0, cs)) {
      what = "Reference count table overlaps the header";
    }
    if (overlap(h.l1_table_offset, l1_len, h.refcount_table_offset, rt_len)) {
      what = "Active L1 table overlaps the reference count table";
    }
    if (!what.empty()) {
      (void)co_await file_node->close();
      co_return fail(Error::with_message(
          EUCLEAN, "qcow2: Image is corrupt: " + what + "; cannot be opened read/write"));
    }
  }
  if (prealloc && !ctx.flags.read_only && !ctx.flags.check && file_node->driver_name() == "file" &&
      is_regular_file(file_node->filename())) {
    // block-semantics.md §7: allocate megabytes ahead of the end of the file, so allocating
    // writes land in allocated space instead of growing the file cluster by cluster.
    PreallocateFilter::Settings settings;
    settings.refill_ahead = true;
    file_node = std::make_unique<PreallocateFilter>(ctx.loop, std::move(file_node), settings);
  }
  const std::string image_name = file_node->filename();
  NodePtr backing;
  if (backing_opts) {
    OpenFlags backing_flags = ctx.flags;
    backing_flags.read_only = true;
    Result<NodePtr> b = co_await open_node(ctx.loop, *backing_opts, backing_flags, "");
    if (!b) {
      (void)co_await file_node->close();
      co_return fail(b.error());
    }
    backing = std::move(*b);
  } else if (!backing_disabled && !header->backing_file.empty()) {
    Result<NodePtr> b =
        co_await open_backing(ctx, header->backing_file, header->backing_format, image_name);
    if (!b) {
      (void)co_await file_node->close();
      co_return fail(b.error());
    }
    backing = std::move(*b);
  }
  auto node = std::make_unique<Qcow2Node>(ctx.loop, std::move(file_node), std::move(*header));
  node->set_l2_cache_tables(l2_cache_bytes / node->info().cluster_size);
  // Two requests (zeroing, then data) cost more than one merged write on a rotating disk,
  // unless a preallocate filter sits below: it drops the zeroing of space it preallocated,
  // so only the data write remains. (Virtual disks often claim to rotate: virtio-blk does.)
  const bool preallocating = node->primary_child()->driver_name() == "preallocate";
  node->set_zero_cow(zero_cow == "on" ||
                     (zero_cow == "auto" && (preallocating || !on_rotational_storage(image_name))));
  // check_image() reads the tables itself, whatever state they are in.
  Status s = ok();
  if (!ctx.flags.check) s = co_await node->load_tables();
  if (!s) {
    if (backing) (void)co_await backing->close();
    (void)co_await node->close();
    co_return fail(s.error());
  }
  node->set_backing(std::move(backing));
  co_return NodePtr(std::move(node));
}

}  // namespace qblock::qcow2
