// The encoding of one standard (64-bit) L2 entry (qcow2-format.md §3.3–§3.5, §6.1): its
// cluster type and, for compressed clusters, the descriptor. Every part of the qcow2 driver
// and of check decodes entries through here, so the bit layout lives in one place.
#pragma once

#include <cstdint>

#include "block/formats/qcow2/header.h"

namespace qblock::qcow2 {

// §3.5: what a guest cluster is, by its L2 entry.
enum class ClusterType {
  kUnallocated,  // no host cluster, no zero flag: the backing file shows through
  kZeroPlain,    // zero flag, no host cluster
  kZeroAlloc,    // zero flag with a preallocated host cluster
  kNormal,       // data in the host cluster at entry & kOffsetMask
  kCompressed,   // bit 62: a compressed descriptor (§6.1)
};

inline ClusterType cluster_type(uint64_t entry) {
  if (entry & kCompressedFlag) return ClusterType::kCompressed;
  const bool zero = entry & kZeroFlag;
  const bool host = entry & kOffsetMask;
  if (zero) return host ? ClusterType::kZeroAlloc : ClusterType::kZeroPlain;
  return host ? ClusterType::kNormal : ClusterType::kUnallocated;
}

// True if the entry holds a reference to host clusters (what freeing it must release).
inline bool entry_references_host(uint64_t entry) {
  return entry & (kOffsetMask | kCompressedFlag);
}

// True for a normal or preallocated-zero cluster: one host cluster at entry & kOffsetMask.
inline bool has_host_cluster(ClusterType type) {
  return type == ClusterType::kNormal || type == ClusterType::kZeroAlloc;
}

// §6.1: a compressed cluster's descriptor. The stream starts at byte `host` and ends within
// the 512-byte sector `sectors` - 1 after the one `host` lies in.
struct CompressedDescriptor {
  uint64_t host = 0;     // byte offset of the compressed stream in the file
  uint64_t sectors = 0;  // 512-byte sectors the stream may touch, counted from host's sector

  // Bytes from `host` to the end of the last sector: an upper bound of the stream's length.
  uint64_t max_bytes() const { return sectors * 512 - (host & 511); }
  // Index of the first and last host cluster the stream may touch (it may straddle two).
  uint64_t first_cluster(uint64_t cluster_size) const { return host / cluster_size; }
  uint64_t last_cluster(uint64_t cluster_size) const {
    return ((host & ~uint64_t{511}) + sectors * 512 - 1) / cluster_size;
  }
};

// Bit position of the sector count in a compressed entry for `cluster_bits`.
inline uint32_t compressed_size_shift(uint32_t cluster_bits) { return 62 - (cluster_bits - 8); }

// Decodes a compressed entry. REQUIRES: entry & kCompressedFlag; 9 <= cluster_bits <= 21.
inline CompressedDescriptor decode_compressed(uint64_t entry, uint32_t cluster_bits) {
  const uint32_t shift = compressed_size_shift(cluster_bits);
  const uint64_t count_mask = (uint64_t{1} << (cluster_bits - 8)) - 1;
  CompressedDescriptor d;
  d.host = entry & ((uint64_t{1} << shift) - 1);
  d.sectors = ((entry >> shift) & count_mask) + 1;
  return d;
}

// The entry for `bytes` of compressed data at byte offset `host`. REQUIRES: bytes > 0 and the
// stream fits the descriptor (it ends before its first cluster does, as qblock writes it).
inline uint64_t encode_compressed(uint64_t host, uint64_t bytes, uint32_t cluster_bits) {
  const uint64_t extra_sectors = ((host + bytes - 1) >> 9) - (host >> 9);
  return host | (extra_sectors << compressed_size_shift(cluster_bits)) | kCompressedFlag;
}

}  // namespace qblock::qcow2
