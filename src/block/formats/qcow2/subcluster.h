// Extended L2 entries (qcow2-format.md §7): the subcluster bitmap that follows each 64-bit L2
// entry, the subcluster types it gives, and the runs of equally treated subclusters. Pure
// bit logic shared by the read path, the write path, write-zeroes and check.
#pragma once

#include <bit>
#include <cstdint>

#include "block/formats/qcow2/l2_entry.h"

namespace qblock::qcow2 {

// §7.1: every cluster of an image with extended L2 entries has 32 subclusters.
inline constexpr uint32_t kSubclusters = 32;
// Bits 0–31: subcluster allocated; bits 32–63: subcluster reads as zeros.
inline constexpr uint64_t kAllAllocBits = 0xffffffffULL;
inline constexpr uint64_t kAllZeroBits = 0xffffffffULL << 32;

// §7.2: what one subcluster is, by its cluster's L2 entry and bitmap.
enum class SubclusterType {
  kUnallocatedPlain,  // no host cluster: the backing file shows through
  kUnallocatedAlloc,  // host cluster reserved, subcluster not allocated: the backing shows
  kZeroPlain,         // reads as zeros, no host cluster
  kZeroAlloc,         // reads as zeros, host cluster present
  kNormal,            // data at host + offset in the cluster
  kCompressed,        // a compressed cluster (bitmap 0)
  kInvalid,           // alloc and zero both set, alloc without host, or a compressed bitmap
};

// The alloc bits of subclusters [first, first + count). REQUIRES: first + count <= 32.
inline constexpr uint64_t alloc_range(uint32_t first, uint32_t count) {
  if (count == 0) return 0;
  const uint64_t ones = count == 32 ? kAllAllocBits : ((uint64_t{1} << count) - 1);
  return ones << first;
}
// The zero bits of subclusters [first, first + count).
inline constexpr uint64_t zero_range(uint32_t first, uint32_t count) {
  return alloc_range(first, count) << 32;
}

// The type of subcluster `sc` (< 32) of the cluster with L2 entry `entry` and bitmap
// `bitmap`. With an external data file (`data_file`, §10) offset 0 with COPIED is a host
// cluster too (guest cluster 0 at data-file offset 0).
inline SubclusterType subcluster_type(uint64_t entry, uint64_t bitmap, uint32_t sc,
                                      bool data_file = false) {
  if (entry & kCompressedFlag) {
    return bitmap ? SubclusterType::kInvalid : SubclusterType::kCompressed;
  }
  const bool host = (entry & kOffsetMask) || (data_file && (entry & kCopied));
  const bool alloc = (bitmap >> sc) & 1;
  const bool zero = (bitmap >> (32 + sc)) & 1;
  if (alloc && zero) return SubclusterType::kInvalid;
  if (alloc) return host ? SubclusterType::kNormal : SubclusterType::kInvalid;
  if (zero) return host ? SubclusterType::kZeroAlloc : SubclusterType::kZeroPlain;
  return host ? SubclusterType::kUnallocatedAlloc : SubclusterType::kUnallocatedPlain;
}

// How many subclusters from `sc` on (at most up to the end of the cluster) have the type of
// subcluster `sc`. REQUIRES: sc < 32.
inline uint32_t subcluster_run(uint64_t entry, uint64_t bitmap, uint32_t sc,
                               bool data_file = false) {
  const SubclusterType t = subcluster_type(entry, bitmap, sc, data_file);
  if (t == SubclusterType::kCompressed || t == SubclusterType::kInvalid) {
    return t == SubclusterType::kCompressed ? kSubclusters - sc : 1;
  }
  // The subclusters whose (alloc, zero) pair equals sc's, as a 32-bit mask.
  const uint32_t alloc = static_cast<uint32_t>(bitmap);
  const uint32_t zero = static_cast<uint32_t>(bitmap >> 32);
  const uint32_t want_alloc = (alloc >> sc) & 1 ? ~0u : 0u;
  const uint32_t want_zero = (zero >> sc) & 1 ? ~0u : 0u;
  const uint32_t same = ~(alloc ^ want_alloc) & ~(zero ^ want_zero);
  const uint32_t from_sc = same >> sc;  // bit 0 is sc itself
  const uint32_t run = static_cast<uint32_t>(std::countr_one(from_sc));
  return run > kSubclusters - sc ? kSubclusters - sc : run;
}

// The cluster type that treats a subcluster the way `t` says (reads and block status): an
// unallocated subcluster of an allocated cluster reads through like an unallocated cluster.
// REQUIRES: t is not kInvalid.
inline ClusterType as_cluster_type(SubclusterType t) {
  switch (t) {
    case SubclusterType::kUnallocatedPlain:
    case SubclusterType::kUnallocatedAlloc: return ClusterType::kUnallocated;
    case SubclusterType::kZeroPlain: return ClusterType::kZeroPlain;
    case SubclusterType::kZeroAlloc: return ClusterType::kZeroAlloc;
    case SubclusterType::kNormal: return ClusterType::kNormal;
    case SubclusterType::kCompressed:
    case SubclusterType::kInvalid: break;
  }
  return ClusterType::kCompressed;
}

}  // namespace qblock::qcow2
