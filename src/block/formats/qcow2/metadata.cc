// qcow2 metadata through the caches: L1 entries, L2 slices (looked up, made private,
// updated), write-back in the order of qcow2-format.md §17, deferred frees, the header.
#include <fmt/format.h>

#include "base/byte_order.h"
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

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

void Qcow2Node::clean_idle_caches() {
  if (clean_interval_.count() == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_clean_) return;
  if (next_clean_.time_since_epoch().count() != 0) {
    l2_cache_.drop_idle();
    refcounts_->drop_idle();
  }
  next_clean_ = now + clean_interval_;
}

Task<Result<L2SliceRef>> Qcow2Node::get_l2_slice(uint64_t guest, ForWrite for_write) {
  const uint64_t l1i = l1_index(guest);
  if (l1i >= l1_.size()) co_return fail(Error::io("guest offset beyond the L1 table"));
  clean_idle_caches();
  const uint64_t l1_entry = l1_[l1i];
  const uint64_t old_offset = l1_entry & kOffsetMask;
  if (old_offset && old_offset % cs_) {
    Error e = co_await corruption(
        fmt::format("L2 table offset {:#x} unaligned (L1 index: {:#x})", old_offset, l1i));
    co_return fail(e);
  }
  L2SliceRef slice;
  if (old_offset) {
    Result<L2SliceRef> loaded = co_await l2_cache_.get(old_offset, slice_index_in_table(guest));
    if (!loaded) co_return fail(loaded.error());
    slice = std::move(*loaded);
  }
  if (for_write == ForWrite::kNo) co_return slice;
  // About to write through (or copy) this table: if its cluster is really other metadata,
  // any update would corrupt that.
  if (old_offset) {
    if (const char* what = overlapping_metadata(old_offset, cs_, old_offset)) {
      Error e = co_await corruption(
          fmt::format("L2 table offset {:#x} overlaps with {}", old_offset, what));
      co_return fail(e);
    }
  }
  if (slice && (l1_entry & kCopied)) co_return slice;
  slice.reset();  // the table is replaced: its slices leave the cache
  Status s = co_await allocate_l2_table(l1i);
  if (!s) co_return fail(s.error());
  Task<Result<L2SliceRef>> fresh =
      l2_cache_.get(l1_[l1i] & kOffsetMask, slice_index_in_table(guest));
  co_return co_await std::move(fresh);
}

Task<Status> Qcow2Node::allocate_l2_table(uint64_t l1i) {
  const uint64_t old_offset = l1_[l1i] & kOffsetMask;
  // A new L2 table, or a private copy of a shared one (§3.6).
  co_await file_->debug_event(DebugEvent::kL2AllocWrite);
  Result<uint64_t> where = co_await refcounts_->allocate(1);
  if (!where) co_return fail(where.error());
  if (*where == 0) {
    Error e = co_await corruption("Preventing invalid allocation of L2 table at offset 0");
    co_return fail(e);
  }
  if (Status g = co_await refuse_metadata_overlap(*where, cs_); !g) co_return g;
  // §17 R1: the table's refcount is on disk before anything points at it.
  Status s = co_await refcounts_->write_dirty();
  if (!s) co_return s;
  // The table's 64-bit words in file order (§7.1: entry and bitmap pairs with extended L2).
  std::vector<uint64_t> words(cs_ / 8, 0);
  if (old_offset) {
    Result<std::vector<uint64_t>> old = co_await l2_cache_.read_table(old_offset);
    if (!old) co_return fail(old.error());
    words = std::move(*old);
  }
  std::vector<uint8_t> raw(cs_);
  for (uint64_t i = 0; i < words.size(); ++i) store_be64(&raw[i * 8], words[i]);
  // §17 R2: the whole table is on disk before the L1 entry.
  s = co_await file_->write(*where, IoVec(raw.data(), cs_));
  if (!s) co_return s;
  s = co_await file_->flush();
  if (!s) co_return s;
  l1_[l1i] = *where | kCopied;
  l2_offsets_.insert(*where);
  s = co_await write_l1_entry(l1i);
  if (!s) co_return s;
  if (old_offset) {
    l2_cache_.drop_table(old_offset);
    l2_offsets_.erase(old_offset);
    s = co_await refcounts_->update(old_offset / cs_, 1, -1);  // §17 R5: after the L1 switch
    if (!s) co_return s;
  }
  // The new table is on disk: its slices are clean. With whole-table slices (the default
  // when the cache covers the disk) keep it, sparing the read back.
  if (l2_cache_.slice_entries() == l2_entries_) {
    auto slice = std::make_shared<L2Slice>();
    slice->offset = slice->table_offset = *where;
    l2_cache_.decode(*slice, words.data(), words.size());
    co_return co_await l2_cache_.insert(std::move(slice));
  }
  co_return ok();
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

Task<Status> Qcow2Node::update_l2_entries(L2Slice& slice, uint64_t first, uint64_t count) {
  // The slice will be written where its table is: refuse now if that place is not its own.
  const uint64_t table_first = slice.first_index + first;
  const uint64_t entry_bytes = header_.extended_l2() ? 16 : 8;
  const uint64_t begin = table_first * entry_bytes / 512 * 512;
  const uint64_t end = std::min(cs_, ((table_first + count) * entry_bytes + 511) / 512 * 512);
  Status s =
      co_await guard_existing(slice.table_offset + begin, end - begin, slice.table_offset, nullptr);
  if (!s) co_return s;
  slice.dirty = true;
  co_return ok();
}

Task<Status> Qcow2Node::flush_metadata() {
  std::vector<L2SliceRef> dirty = l2_cache_.dirty_slices();
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
    for (const L2SliceRef& slice : dirty) {
      s = co_await l2_cache_.write_back(*slice);
      if (!s) co_return s;
    }
    // §17 R5: the dropped references are on disk before their clusters can be reused.
    s = co_await file_->flush();
    if (!s) co_return s;
  }
  std::vector<PendingFree> frees;
  frees.swap(pending_frees_);
  for (const PendingFree& f : frees) {
    s = co_await release_entry(f.entry, f.type);
    if (!s) co_return s;
  }
  co_return co_await refcounts_->write_dirty();
}

Task<Status> Qcow2Node::release_entry(uint64_t entry, DiscardType type) {
  if (has_data_file() && !(entry & kCompressedFlag)) {
    // §10: nothing is refcounted; the data file's cluster is discarded as the pass-discard
    // options say.
    const bool discard =
        type == DiscardType::kRequest ? pass_discard_request_ : pass_discard_other_;
    const uint64_t host = entry & kOffsetMask;
    if (discard && host < data_->length()) {
      co_await file_->debug_event(DebugEvent::kClusterFree);
      (void)co_await data_->discard(host, std::min(cs_, data_->length() - host));
    }
    co_return ok();
  }
  std::vector<uint64_t> clusters;
  host_clusters(entry, clusters);
  for (uint64_t c : clusters) {
    Result<uint64_t> rc = co_await refcounts_->get(c);
    if (!rc) co_return fail(rc.error());
    if (*rc == 0) co_return ok();  // never counted: nothing to release
  }
  const bool discard = type == DiscardType::kRequest ? pass_discard_request_ : pass_discard_other_;
  const ClusterType ctype = cluster_type(entry);
  if (has_host_cluster(ctype)) {
    co_await file_->debug_event(DebugEvent::kClusterFree);
    const uint64_t host = entry & kOffsetMask;
    Status s = co_await refcounts_->update(host / cs_, 1, -1);
    if (!s) co_return s;
    if (discard) {
      Result<uint64_t> rc = co_await refcounts_->get(host / cs_);
      if (rc && *rc == 0) (void)co_await file_->discard(host, cs_);
    }
  } else if (ctype == ClusterType::kCompressed) {
    const CompressedDescriptor d = decode_compressed(entry, header_.cluster_bits);
    const uint64_t first = d.first_cluster(cs_);
    Status s = co_await refcounts_->update(first, d.last_cluster(cs_) - first + 1, -1);
    if (!s) co_return s;
  }
  // A freed cluster may be handed out for anything: never pack compressed data into it.
  if (compressed_end_) {
    Result<uint64_t> rc = co_await refcounts_->get(compressed_end_ / cs_);
    if (!rc || *rc == 0) compressed_end_ = 0;
  }
  co_return ok();
}

void Qcow2Node::host_clusters(uint64_t entry, std::vector<uint64_t>& out) const {
  const ClusterType type = cluster_type(entry);
  if (has_host_cluster(type)) {
    out.push_back((entry & kOffsetMask) / cs_);
  } else if (type == ClusterType::kCompressed) {
    // §6.1: the compressed stream may straddle a cluster boundary.
    const CompressedDescriptor d = decode_compressed(entry, header_.cluster_bits);
    for (uint64_t c = d.first_cluster(cs_); c <= d.last_cluster(cs_); ++c) out.push_back(c);
  }
}

Task<Status> Qcow2Node::write_header() {
  Result<std::vector<uint8_t>> raw = serialize_header(header_);
  if (!raw) co_return fail(raw.error());
  raw->resize((raw->size() + 511) / 512 * 512, 0);
  Status s = co_await file_->write(0, IoVec(raw->data(), raw->size()));
  if (!s) co_return s;
  co_return co_await file_->flush();
}

}  // namespace qblock::qcow2
