// Preallocating growth (qemu-img resize --preallocation=metadata|falloc|full): host clusters
// for the new area [old size, new size), laid out as QEMU 7.2's qcow2 truncate lays them out,
// so that `qemu-img map` of a resized image is the same whichever tool resized it.
//   metadata  the clusters come from the ordinary first-fit allocator, L2 table first, and
//             stay sparse in the file (they read as zeros);
//   falloc,   the refcount structures move past the used area first (Refcounts::place_area),
//   full      then one contiguous data area follows, allocated in the file by fallocate or by
//             writing zeros, and the L2 tables take the lowest free clusters.
// A partly covered first cluster keeps what it held before the old end: its head is copied
// into the new cluster (metadata: always, zeros included, and the part of the last cluster
// past the new end is written with zeros, as QEMU's COW of the allocation does; falloc/full:
// only where it does not read as zeros, the data area reading as zeros already).
#include <algorithm>
#include <climits>

#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

namespace {

bool private_data_cluster(uint64_t entry) {
  return cluster_type(entry) == ClusterType::kNormal && (entry & kCopied);
}

}  // namespace

Task<Result<Qcow2Node::SliceRun>> Qcow2Node::private_slice_run(uint64_t guest, uint64_t end) {
  Result<L2SliceRef> found = co_await get_l2_slice(guest, ForWrite::kYes);
  if (!found) co_return fail(found.error());
  const uint64_t slice_end = std::min(end, guest - guest % slice_span() + slice_span());
  co_return SliceRun{std::move(*found), index_in_slice(guest), (slice_end - guest + cs_ - 1) / cs_};
}

Task<Status> Qcow2Node::copy_cluster_head(uint64_t guest_cluster, uint64_t old_entry,
                                          uint64_t bytes, uint64_t host, WriteZeros zeros) {
  if (bytes == 0) co_return ok();
  if (zeros == WriteZeros::kNo) {
    Result<bool> zero = co_await reads_as_zero(old_entry, guest_cluster);
    if (!zero) co_return fail(zero.error());
    if (*zero) co_return ok();
  }
  AlignedBuffer head(bytes, 4096);
  const Mapping m{cluster_type(old_entry), old_entry, bytes};
  Status s = co_await read_mapping(guest_cluster, IoVec(head.data(), bytes), m);
  if (!s) co_return s;
  co_await file_->debug_event(DebugEvent::kCowWrite);
  co_return co_await file_->write(host, IoVec(head.data(), bytes));
}

Task<Status> Qcow2Node::link_preallocated(L2Slice& slice, uint64_t first, uint64_t count,
                                          uint64_t host, uint64_t start, WriteZeros zeros) {
  // The first cluster may lie partly before `start`: its head carries over.
  const uint64_t first_guest = start - start % cs_;
  if (slice.first_index + first == l2_index(first_guest) && start % cs_) {
    Status s =
        co_await copy_cluster_head(first_guest, slice.entries[first], start % cs_, host, zeros);
    if (!s) co_return s;
  }
  std::vector<uint64_t> old(slice.entries.begin() + static_cast<std::ptrdiff_t>(first),
                            slice.entries.begin() + static_cast<std::ptrdiff_t>(first + count));
  for (uint64_t i = 0; i < count; ++i) slice.entries[first + i] = (host + i * cs_) | kCopied;
  Status s = co_await update_l2_entries(slice, first, count);
  if (!s) co_return s;
  for (uint64_t e : old) {
    if (!entry_references_host(e)) continue;
    s = co_await queue_data_free(e, DiscardType::kOther, host, count * cs_);
    if (!s) co_return s;
  }
  co_return ok();
}

Task<Status> Qcow2Node::preallocate_metadata(uint64_t start, uint64_t end) {
  // As QEMU's preallocate_co: per L2 slice, its table first (get_l2_slice allocates it), then
  // runs of clusters that have no private host cluster yet, each run contiguous and at most
  // INT_MAX bytes.
  const uint64_t max_run = INT_MAX / cs_;
  uint64_t host_end = 0;
  uint64_t guest = start - start % cs_;
  while (guest < end) {
    Result<SliceRun> run = co_await private_slice_run(guest, end);
    if (!run) co_return fail(run.error());
    L2SliceRef slice = std::move(run->slice);
    const uint64_t first = run->first;
    const uint64_t count = run->count;
    uint64_t i = 0;
    while (i < count) {
      if (private_data_cluster(slice->entries[first + i])) {
        ++i;
        continue;
      }
      uint64_t n = 1;
      while (i + n < count && n < max_run && !private_data_cluster(slice->entries[first + i + n])) {
        ++n;
      }
      co_await file_->debug_event(DebugEvent::kClusterAlloc);
      Result<uint64_t> host = co_await refcounts_->allocate(n);
      if (!host) co_return fail(host.error());
      if (Status g = co_await refuse_metadata_overlap(*host, n * cs_); !g) co_return g;
      Status s = co_await link_preallocated(*slice, first + i, n, *host, start, WriteZeros::kYes);
      if (!s) co_return s;
      // As QEMU, the part of a new last cluster past `end` is written (with zeros), as the
      // head before `start` is (link_preallocated): the COW regions of the allocation.
      const uint64_t run_end = guest + (i + n) * cs_;
      if (run_end > end && run_end - end < cs_) {
        AlignedBuffer zeros(run_end - end, 4096);
        zeros.fill(0);
        co_await file_->debug_event(DebugEvent::kCowWrite);
        s = co_await file_->write(*host + n * cs_ - (run_end - end),
                                  IoVec(zeros.data(), run_end - end));
        if (!s) co_return s;
      }
      host_end = std::max(host_end, *host + n * cs_);
      i += n;
    }
    guest += count * cs_;
  }
  // The file reaches the last new cluster; the clusters stay sparse and read as zeros.
  if (host_end > file_->length()) {
    Status s = co_await file_->truncate(host_end, PreallocMode::kOff);
    if (!s) co_return s;
  }
  co_return ok();
}

Task<Status> Qcow2Node::preallocate_data(uint64_t start, uint64_t end, PreallocMode mode) {
  // Every cluster from the one `start` lies in gets a new host cluster, even one that had
  // one (QEMU 7.2 relinks it): data clusters plus, at most, one L2 table per table's worth.
  const uint64_t first_cluster = start / cs_;
  const uint64_t data_clusters = (end + cs_ - 1) / cs_ - first_cluster;
  if (data_clusters == 0) co_return ok();
  const uint64_t l2_tables = (data_clusters + l2_entries_ - 1) / l2_entries_;
  // The refcount structures move to the end of what is in use, the data area follows.
  const uint64_t file_clusters = (file_->length() + cs_ - 1) / cs_;
  Result<uint64_t> last = co_await refcounts_->last_used_cluster(file_clusters);
  if (!last) co_return fail(last.error());
  co_await file_->debug_event(DebugEvent::kRefblockAlloc);
  Result<uint64_t> area = co_await refcounts_->place_area(*last + 1, data_clusters + l2_tables);
  if (!area) co_return fail(area.error());
  const uint64_t data_start = *area * cs_;
  Status s = co_await refcounts_->update(*area, data_clusters, +1);
  if (!s) co_return s;
  s = co_await refcounts_->write_dirty();
  if (!s) co_return s;
  // The file grows over the data area, allocated as `mode` says, before anything links it.
  co_await file_->debug_event(DebugEvent::kClusterAllocSpace);
  if (file_->length() < data_start) {
    s = co_await file_->truncate(data_start, PreallocMode::kOff);
    if (!s) co_return s;
  }
  s = co_await file_->truncate(data_start + data_clusters * cs_, mode);
  if (!s) {
    // qemu-img 7.2's words for a falloc/full growth of the file that failed.
    co_return fail(Error::with_message(s.error().errnum(),
                                       "Failed to resize underlying file: " + s.error().message()));
  }
  uint64_t guest = first_cluster * cs_;
  uint64_t host = data_start;
  while (guest < end) {
    Result<SliceRun> run = co_await private_slice_run(guest, end);
    if (!run) co_return fail(run.error());
    const uint64_t count = run->count;
    s = co_await link_preallocated(*run->slice, run->first, count, host, start, WriteZeros::kNo);
    if (!s) co_return s;
    guest += count * cs_;
    host += count * cs_;
  }
  co_return ok();
}

}  // namespace qblock::qcow2
