// Write-zeroes and discard (qcow2-format.md §3.7): metadata operations on whole clusters.
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

Task<Status> Qcow2Node::do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  if (Status u = check_usable(); !u) co_return u;
  if (header_.version < 3) co_return fail(Error::unsupported());
  mark_dirty(offset, bytes);
  if (data_file_raw_) {
    // §10: the data file stays a raw image of the disk.
    Status z = co_await data_->write_zeroes(offset, bytes, flags);
    if (!z) co_return z;
  }
  if (header_.extended_l2()) {
    Task<Status> sub = write_zeroes_subclusters(offset, bytes, flags);
    co_return co_await std::move(sub);
  }
  AsyncMutex::Guard guard = co_await lock_.lock();
  // Clusters being filled by an allocating write are not touched until it has linked them.
  co_await wait_inflight(offset - offset % cs_, offset + bytes, guard);
  const uint64_t in_cluster = offset % cs_;
  const bool partial = in_cluster != 0 || (bytes % cs_ != 0 && offset + bytes != header_.size);
  if (partial) {
    // qcow2-format.md §3.7, as QEMU 7.2: a piece of a cluster (the generic layer split the
    // request at cluster boundaries) zeroes the whole cluster if the rest of it reads as zeros
    // already and the cluster holds no data; anything else is the generic layer's job
    // (ENOTSUP → zero buffers).
    const uint64_t end = offset + bytes;
    const uint64_t tail = end == header_.size ? 0 : (cs_ - end % cs_) % cs_;
    Result<bool> z = co_await range_reads_zero(offset - in_cluster, in_cluster);
    if (z && *z) z = co_await range_reads_zero(end, tail);
    if (!z) co_return fail(z.error());
    if (!*z) co_return fail(Error::unsupported());
    const uint64_t cluster = offset - in_cluster;
    Result<L2SliceRef> slice = co_await get_l2_slice(cluster, ForWrite::kNo);
    if (!slice) co_return fail(slice.error());
    const uint64_t entry = *slice ? (*slice)->entries[index_in_slice(cluster)] : 0;
    slice->reset();
    const ClusterType type = entry_type(entry);
    if (type != ClusterType::kUnallocated && type != ClusterType::kZeroPlain &&
        type != ClusterType::kZeroAlloc) {
      co_return fail(Error::unsupported());
    }
    co_return co_await zero_clusters(cluster, std::min(cluster + cs_, header_.size), flags);
  }
  co_return co_await zero_clusters(offset, offset + bytes, flags);
}

Task<Status> Qcow2Node::zero_clusters(uint64_t start, uint64_t end, RequestFlags flags) {
  for (uint64_t pos = start; pos < end;) {
    Result<L2SliceRef> slice = co_await get_l2_slice(pos, ForWrite::kYes);
    if (!slice) co_return fail(slice.error());
    const uint64_t first = index_in_slice(pos);
    const uint64_t count = std::min(l2_cache_.slice_entries() - first, (end - pos + cs_ - 1) / cs_);
    std::vector<uint64_t> to_free;
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t& e = (*slice)->entries[first + i];
      if (header_.extended_l2()) {
        // §7: all subclusters zero; the host cluster goes only with kMayUnmap (a compressed
        // one always), as QEMU 7.2.
        if ((e & kCompressedFlag) || (flags.has(RequestFlag::kMayUnmap) && references_data(e))) {
          to_free.push_back(e);
          e = 0;
        }
        (*slice)->bitmaps[first + i] = kAllZeroBits;
        continue;
      }
      const ClusterType type = entry_type(e);
      // §10: guest cluster 0 of a data file keeps offset 0 with COPIED.
      const bool keep = !flags.has(RequestFlag::kMayUnmap) && (e & kCopied) &&
                        (has_host_cluster(type) || type == ClusterType::kNormal);
      if (keep) {
        e = (e & (kOffsetMask | kCopied)) | kZeroFlag;  // ZERO_ALLOC
      } else {
        if (references_data(e)) to_free.push_back(e);
        e = kZeroFlag;  // ZERO_PLAIN
      }
    }
    Status s = co_await update_l2_entries(**slice, first, count);
    if (!s) co_return s;
    for (uint64_t e : to_free) {
      s = co_await queue_data_free(e, DiscardType::kRequest);
      if (!s) co_return s;
    }
    pos += count * cs_;
  }
  co_return ok();
}

Task<Status> Qcow2Node::do_discard(uint64_t offset, uint64_t bytes) {
  if (Status u = check_usable(); !u) co_return u;
  mark_dirty(offset, bytes);
  // §3.7: partial clusters are ignored (the end of the image counts as a cluster end).
  const uint64_t start = (offset + cs_ - 1) / cs_ * cs_;
  const uint64_t end =
      offset + bytes == header_.size ? offset + bytes : (offset + bytes) / cs_ * cs_;
  if (end <= start) co_return ok();
  // v2 has no zero flag: freeing a cluster would expose the backing file, so QEMU (7.2,
  // observed) leaves such images alone.
  if (header_.version < 3 && backing_) co_return ok();
  if (data_file_raw_) {
    // §10: the data file stays a raw image of the disk, reading as the image does.
    Status z = co_await data_->write_zeroes(start, end - start, RequestFlags{});
    if (!z) co_return z;
  }
  AsyncMutex::Guard guard = co_await lock_.lock();
  co_await wait_inflight(start, end, guard);
  // v3: the range reads as zeros afterwards; v2 has no zero flag and shows the backing file.
  const uint64_t replacement = header_.version >= 3 ? kZeroFlag : 0;
  for (uint64_t pos = start; pos < end;) {
    const uint64_t first = index_in_slice(pos);
    const uint64_t count = std::min(l2_cache_.slice_entries() - first, (end - pos + cs_ - 1) / cs_);
    if (header_.version < 3 && !(l1_index(pos) < l1_.size() && l1_[l1_index(pos)] & kOffsetMask)) {
      pos += count * cs_;  // nothing mapped, nothing to discard
      continue;
    }
    Result<L2SliceRef> slice = co_await get_l2_slice(pos, ForWrite::kYes);
    if (!slice) co_return fail(slice.error());
    std::vector<uint64_t> to_free;
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t& e = (*slice)->entries[first + i];
      if (header_.extended_l2()) {
        // §7, as QEMU 7.2: the cluster reads as zeros afterwards, unless it reads so anyway
        // (nothing allocated, no backing file), when it is left alone.
        if (!backing_ && !references_data(e)) continue;
        if (references_data(e)) to_free.push_back(e);
        e = 0;
        (*slice)->bitmaps[first + i] = kAllZeroBits;
        continue;
      }
      if (references_data(e)) to_free.push_back(e);
      e = replacement;
    }
    Status s = co_await update_l2_entries(**slice, first, count);
    if (!s) co_return s;
    for (uint64_t e : to_free) {
      s = co_await queue_data_free(e, DiscardType::kRequest);
      if (!s) co_return s;
    }
    pos += count * cs_;
  }
  co_return ok();
}

}  // namespace qblock::qcow2
