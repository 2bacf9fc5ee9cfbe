// The one run scanner of the qcow2 driver: from a guest offset, how many bytes of a request
// the clusters of one L2 slice cover with the same treatment. Reads, block status, in-place
// writes and allocations each pass a rule saying which clusters may join the run; the walk,
// the byte accounting and the limits (request end, slice end) are shared. Pure: no I/O.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "block/formats/qcow2/allocation_fence.h"
#include "block/formats/qcow2/l2_entry.h"

namespace qblock::qcow2 {

// An L2 slice as the scanner sees it: its entries and where it sits in the guest space.
struct SliceView {
  std::span<const uint64_t> entries;
  uint64_t guest_start = 0;  // guest offset of entries[0]'s cluster
  uint64_t cluster_size = 0;

  uint64_t guest_end() const { return guest_start + entries.size() * cluster_size; }
  uint64_t index_of(uint64_t guest) const { return (guest - guest_start) / cluster_size; }
};

// One cluster of a run being scanned.
struct ScannedCluster {
  uint64_t index = 0;  // in the slice
  uint64_t entry = 0;
  ClusterType type = ClusterType::kUnallocated;
  uint64_t guest = 0;   // guest offset of the cluster
  uint64_t skip = 0;    // bytes of the cluster before the request's part
  uint64_t piece = 0;   // bytes of the cluster the request covers
  bool fenced = false;  // an allocation fence overlaps it
  uint64_t host() const { return entry & kOffsetMask; }
};

// Which clusters may continue a run that starts with `first`.
enum class RunRule {
  // Same cluster type; normal clusters also host-contiguous with the same COPIED bit;
  // a compressed cluster stands alone. (Reads and block status.)
  kSameMapping,
  // Writable in place in one request: COPIED, cluster-aligned, host-contiguous, normal or a
  // preallocated zero cluster the request covers whole, and not fenced.
  kInPlace,
  // Needs a new host cluster: not COPIED-normal, not fenced, and (after the first) not a
  // COPIED preallocated zero cluster either (those are written in place).
  kAllocation,
};

struct ClusterRun {
  uint64_t clusters = 0;  // clusters in the run (0: the first one does not qualify)
  uint64_t bytes = 0;     // request bytes the run covers from `guest`
};

// The run from `guest` (inside `slice`) covering at most `bytes`, under `rule`. `fences` are
// the in-flight allocations. With `zero_alloc`, the slice indexes of the run's preallocated
// zero clusters are appended to it.
ClusterRun scan_run(const SliceView& slice, uint64_t guest, uint64_t bytes, RunRule rule,
                    const std::vector<FenceRange*>& fences,
                    std::vector<uint64_t>* zero_alloc = nullptr);

}  // namespace qblock::qcow2
