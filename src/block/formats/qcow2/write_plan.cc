// The write planner (see write_plan.h).
#include "block/formats/qcow2/write_plan.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/check.h"

namespace qblock::qcow2 {

namespace {

// The allocation of the clusters from `guest` that need a new host cluster.
WriteStep plan_allocation(const SliceView& slice, uint64_t guest, uint64_t bytes,
                          const std::vector<FenceRange*>& fences) {
  const uint64_t cs = slice.cluster_size;
  const ClusterRun run = scan_run(slice, guest, bytes, RunRule::kAllocation, fences);
  CHECK(run.clusters > 0);  // callers handled in-place and fenced first clusters
  Allocate a;
  a.guest = guest;
  a.bytes = bytes;
  a.first_index = slice.index_of(guest);
  a.count = run.clusters;
  const uint64_t entry = slice.entries[a.first_index];
  // §3.5: a preallocated zero cluster only this image uses keeps its host cluster.
  a.reuse_zero_cluster =
      a.count == 1 && cluster_type(entry) == ClusterType::kZeroAlloc && (entry & kCopied);
  if (a.reuse_zero_cluster && (entry & kOffsetMask) % cs) {
    return Corrupt{
        fmt::format("Preallocated zero cluster offset {:#x} unaligned (guest offset: {:#x})",
                    entry & kOffsetMask, guest - guest % cs)};
  }
  return a;
}

}  // namespace

WriteStep plan_write_step(const WriteQuery& q, const std::vector<FenceRange*>& fences) {
  const SliceView& slice = q.slice;
  const uint64_t cs = slice.cluster_size;
  CHECK(q.bytes > 0 && q.guest >= slice.guest_start && q.guest < slice.guest_end());
  const uint64_t index = slice.index_of(q.guest);
  const uint64_t entry = slice.entries[index];
  const ClusterType type = cluster_type(entry);
  const uint64_t in_cluster = q.guest % cs;
  if (has_host_cluster(type) && (entry & kOffsetMask) % cs) {
    return Corrupt{
        fmt::format("Cluster allocation offset {:#x} unaligned (L2 offset: {:#x}, L2 index: {:#x})",
                    entry & kOffsetMask, q.table_offset, q.table_first_index + index)};
  }
  const ClusterRun mapping = scan_run(slice, q.guest, q.bytes, RunRule::kSameMapping, fences);

  // block-semantics.md §6.2 C11 (iotest 066 case 4): a host-contiguous run of COPIED clusters
  // with preallocated zero clusters the write covers entirely goes out as one write. Only
  // worth a scan when the mapping starts with such a cluster or stops short of the request.
  if (type == ClusterType::kZeroAlloc ||
      (type == ClusterType::kNormal && mapping.bytes < q.bytes)) {
    WriteInPlace merged;
    const ClusterRun run =
        scan_run(slice, q.guest, q.bytes, RunRule::kInPlace, fences, &merged.zero_alloc);
    if (!merged.zero_alloc.empty()) {
      merged.host = (entry & kOffsetMask) + in_cluster;
      merged.bytes = run.bytes;
      return merged;
    }
  }
  // §3.6: COPIED clusters are rewritten in place.
  if (type == ClusterType::kNormal && (entry & kCopied)) {
    return WriteInPlace{(entry & kOffsetMask) + in_cluster, mapping.bytes, {}};
  }
  // Another request is filling this cluster: join it once its COW contents are settled.
  const uint64_t cluster = q.guest - in_cluster;
  if (FenceRange* f = find_fence(fences, cluster, cluster + cs)) {
    if (!f->ready) return WaitForFence{f};
    Join join;
    join.fence = f;
    join.bytes = std::min(q.bytes, f->end - q.guest);
    join.host = f->host + (q.guest - f->start);
    const uint64_t next = q.guest + join.bytes;
    if (join.bytes < q.bytes && next < slice.guest_end()) {
      const ClusterType next_type = cluster_type(slice.entries[slice.index_of(next)]);
      if ((next_type == ClusterType::kUnallocated || next_type == ClusterType::kZeroPlain) &&
          !find_fence(fences, next, next + cs)) {
        WriteStep rest = plan_allocation(slice, next, q.bytes - join.bytes, fences);
        join.then_allocate = std::get<Allocate>(rest);  // no reuse: not a zero-alloc cluster
      }
    }
    return join;
  }
  return plan_allocation(slice, q.guest, q.bytes, fences);
}

AllocationLayout allocation_layout(const Allocate& a, uint64_t granted, uint64_t cluster_size) {
  CHECK(granted > 0 && granted <= a.count);
  AllocationLayout layout;
  layout.head = a.guest % cluster_size;
  layout.data = std::min(a.bytes, granted * cluster_size - layout.head);
  layout.tail = granted * cluster_size - layout.head - layout.data;
  return layout;
}

CowMethod choose_cow(const AllocationLayout& layout, bool head_reads_zero, bool tail_reads_zero,
                     bool zero_cow_enabled) {
  if (!layout.head && !layout.tail) return CowMethod::kDataOnly;
  if (zero_cow_enabled && head_reads_zero && tail_reads_zero) return CowMethod::kZeroThenData;
  return CowMethod::kMergedCow;
}

JoinedOutcome resolve_joined(bool fence_linked) {
  return fence_linked ? JoinedOutcome::kDone : JoinedOutcome::kRewrite;
}

}  // namespace qblock::qcow2
