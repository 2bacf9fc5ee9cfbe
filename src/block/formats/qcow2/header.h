// The qcow2 header and its extensions (qcow2-format.md §2, §4): parsing with QEMU 7.2's
// open-time validation (§18) and serialising cluster 0 in QEMU's order (§4.4), preserving
// unknown header fields and unknown extensions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qblock/error.h"

namespace qblock::qcow2 {

inline constexpr uint32_t kMagic = 0x514649fb;

// Feature bits (qcow2-format.md §2.3).
inline constexpr uint64_t kIncompatDirty = 1ULL << 0;
inline constexpr uint64_t kIncompatCorrupt = 1ULL << 1;
inline constexpr uint64_t kIncompatDataFile = 1ULL << 2;
inline constexpr uint64_t kIncompatCompression = 1ULL << 3;
inline constexpr uint64_t kIncompatExtendedL2 = 1ULL << 4;
inline constexpr uint64_t kCompatLazyRefcounts = 1ULL << 0;
inline constexpr uint64_t kAutoclearBitmaps = 1ULL << 0;
inline constexpr uint64_t kAutoclearDataFileRaw = 1ULL << 1;

// QEMU's limits: the bytes of one L1 table (QCOW_MAX_L1_SIZE) and the number of snapshots.
inline constexpr uint64_t kMaxL1TableBytes = 32ULL << 20;
inline constexpr uint32_t kMaxSnapshots = 65536;

// L1/L2 entry bits (§3.2–§3.4) and the refcount table entry mask (§5.1).
inline constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ULL;  // cluster-aligned host offset
inline constexpr uint64_t kCopied = 1ULL << 63;                 // refcount is exactly 1
inline constexpr uint64_t kCompressedFlag = 1ULL << 62;
inline constexpr uint64_t kZeroFlag = 1;  // L2 only: the cluster reads as zeros
// Bits an L1 entry and a standard (not compressed) L2 entry must leave clear.
inline constexpr uint64_t kL1ReservedMask = 0x7f000000000001ffULL;
inline constexpr uint64_t kL2ReservedMask = 0x3f000000000001feULL;
inline constexpr uint64_t kRefTableOffsetMask = ~uint64_t{0x1ff};

// Header extension types (§4.2).
inline constexpr uint32_t kExtEnd = 0;
inline constexpr uint32_t kExtBackingFormat = 0xe2792aca;
inline constexpr uint32_t kExtFeatureTable = 0x6803f857;
inline constexpr uint32_t kExtBitmaps = 0x23852875;
inline constexpr uint32_t kExtCryptoHeader = 0x0537be77;
inline constexpr uint32_t kExtDataFile = 0x44415441;

// One entry of the feature name table (§4.3).
struct FeatureName {
  uint8_t type;  // 0 incompatible, 1 compatible, 2 autoclear
  uint8_t bit;
  std::string name;
};

// An extension qblock does not interpret; kept byte for byte.
struct UnknownExtension {
  uint32_t type;
  std::vector<uint8_t> data;
};

struct Header {
  uint32_t version = 3;
  uint32_t cluster_bits = 16;
  uint64_t size = 0;
  uint32_t crypt_method = 0;
  uint32_t l1_size = 0;
  uint64_t l1_table_offset = 0;
  uint64_t refcount_table_offset = 0;
  uint32_t refcount_table_clusters = 0;
  uint32_t nb_snapshots = 0;
  uint64_t snapshots_offset = 0;
  uint64_t incompatible_features = 0;
  uint64_t compatible_features = 0;
  uint64_t autoclear_features = 0;
  uint32_t refcount_order = 4;
  uint32_t header_length = 112;  // 72 for v2
  uint8_t compression_type = 0;  // 0 zlib, 1 zstd
  // Bytes of header fields qblock does not know (between 112 and header_length).
  std::vector<uint8_t> unknown_fields;

  std::string backing_file;    // empty: none
  std::string backing_format;  // empty: none
  std::string data_file;       // external data file name, empty: none
  std::optional<std::pair<uint64_t, uint64_t>> crypto_header;  // offset, length
  std::optional<std::vector<uint8_t>> bitmaps;                 // raw 24-byte extension
  std::vector<FeatureName> feature_names;
  bool has_feature_table = false;
  std::vector<UnknownExtension> unknown_extensions;

  uint64_t cluster_size() const { return 1ULL << cluster_bits; }
  uint32_t refcount_bits() const { return 1u << refcount_order; }
  bool extended_l2() const { return incompatible_features & kIncompatExtendedL2; }
};

// The 8 feature-table entries QEMU 7.2 writes (§4.3).
std::vector<FeatureName> default_feature_names();

// Whether parse_header() refuses a snapshot table that QEMU's open refuses (too many entries,
// an unaligned offset). A check leaves that to the checker, which reports or repairs it.
enum class SnapshotTableLimits : bool { kCheckedByCaller = false, kRefuse = true };

// Parses and validates cluster 0 (`buf` holds at least min(file size, cluster size) bytes;
// `len` is how many are valid). `file_size` bounds table offsets. Errors carry QEMU's open
// messages (§18), e.g. "Image is not in qcow2 format". Feature checks that depend on what the
// driver implements are left to the caller (see unsupported_features_message()).
Result<Header> parse_header(const uint8_t* buf, std::size_t len,
                            SnapshotTableLimits snapshots = SnapshotTableLimits::kRefuse);

// "Unsupported qcow2 feature(s): ..." for the incompatible bits in `bits` (§2.3), using the
// image's feature name table where it names them.
std::string unsupported_features_message(const Header& header, uint64_t bits);

// Cluster 0 as QEMU writes it: header fields, extensions in §4.4's order, the end marker,
// then the backing file name. Sets backing_file_offset/size accordingly. Errors: EINVAL if
// it does not fit in one cluster.
Result<std::vector<uint8_t>> serialize_header(const Header& header);

}  // namespace qblock::qcow2
