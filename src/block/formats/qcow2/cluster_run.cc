// The run scanner (see cluster_run.h).
#include "block/formats/qcow2/cluster_run.h"

#include <algorithm>

namespace qblock::qcow2 {

namespace {

// True if `c` lies on the host right where the run from `first` has reached.
bool host_follows(const ScannedCluster& first, const ScannedCluster& c, uint64_t cluster_size) {
  return c.host() == first.host() + (c.index - first.index) * cluster_size;
}

bool continues(RunRule rule, const ScannedCluster& first, const ScannedCluster& c,
               uint64_t cluster_size) {
  const bool is_first = c.index == first.index;
  switch (rule) {
    case RunRule::kSameMapping:
      if (is_first) return true;
      if (c.type != first.type || c.type == ClusterType::kCompressed) return false;
      return c.type != ClusterType::kNormal || (host_follows(first, c, cluster_size) &&
                                                (c.entry & kCopied) == (first.entry & kCopied));
    case RunRule::kInPlace:
      return (c.entry & kCopied) && c.host() % cluster_size == 0 &&
             (c.type == ClusterType::kNormal ||
              (c.type == ClusterType::kZeroAlloc && c.skip == 0 && c.piece == cluster_size)) &&
             (is_first || host_follows(first, c, cluster_size)) && !c.fenced;
    case RunRule::kAllocation:
      if (c.type == ClusterType::kNormal && (c.entry & kCopied)) return false;
      if (!is_first && c.type == ClusterType::kZeroAlloc && (c.entry & kCopied)) return false;
      return !c.fenced;
  }
  return false;
}

}  // namespace

ClusterRun scan_run(const SliceView& slice, uint64_t guest, uint64_t bytes, RunRule rule,
                    const std::vector<FenceRange*>& fences, std::vector<uint64_t>* zero_alloc) {
  const uint64_t cs = slice.cluster_size;
  const uint64_t first_index = slice.index_of(guest);
  const uint64_t in_cluster = guest % cs;
  // Only the fence-sensitive rules look at fences (the lookup is a walk over the list).
  const bool wants_fences = rule != RunRule::kSameMapping;
  ClusterRun run;
  ScannedCluster first;
  for (uint64_t i = first_index; i < slice.entries.size() && run.bytes < bytes; ++i) {
    ScannedCluster c;
    c.index = i;
    c.entry = slice.entries[i];
    c.type = cluster_type(c.entry);
    c.guest = slice.guest_start + i * cs;
    c.skip = i == first_index ? in_cluster : 0;
    c.piece = std::min(cs - c.skip, bytes - run.bytes);
    c.fenced = wants_fences && find_fence(fences, c.guest, c.guest + cs) != nullptr;
    if (i == first_index) first = c;
    if (!continues(rule, first, c, cs)) break;
    if (zero_alloc && c.type == ClusterType::kZeroAlloc) zero_alloc->push_back(i);
    ++run.clusters;
    run.bytes += c.piece;
  }
  return run;
}

}  // namespace qblock::qcow2
