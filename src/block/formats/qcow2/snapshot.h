// The qcow2 internal snapshot table (qcow2-format.md §8.1): reading it for `check`, `info` and
// the driver, and encoding it again for `check -r all`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "block/driver.h"
#include "block/formats/qcow2/header.h"

namespace qblock::qcow2 {

struct Snapshot {
  uint64_t l1_table_offset = 0;
  uint32_t l1_size = 0;
  std::string id;
  std::string name;
  uint32_t date_sec = 0;
  uint32_t date_nsec = 0;
  uint64_t vm_clock_nsec = 0;
  uint64_t vm_state_size = 0;       // the 64-bit extra-data field when present
  std::optional<uint64_t> icount;   // nullopt: not recorded (absent, or all ones)
  std::vector<uint8_t> extra_data;  // kept byte for byte (at most 1 KiB)
};

// QEMU's limits on the table (qcow2-format.md §8.1): extra data per entry, and the bytes the
// whole table may take.
inline constexpr uint32_t kMaxSnapshotExtraDataBytes = 1024;
inline constexpr uint64_t kMaxSnapshotTableBytes = uint64_t{1024} * kMaxSnapshots;
// v3 entries must carry the extra data up to disk_size (§8.1).
inline constexpr uint32_t kMinV3SnapshotExtraDataBytes = 16;

// The snapshot table and its length in bytes (entries padded to 8).
struct SnapshotTable {
  std::vector<Snapshot> snapshots;
  uint64_t bytes = 0;
  // Only with SnapshotRepair::kYes: the entries whose extra data was cut to 1 KiB (index and
  // the size the entry declared), and how many entries at the end were dropped because the
  // table ran past 64 MiB.
  std::vector<std::pair<uint32_t, uint32_t>> extra_data_cut;
  uint32_t overhanging = 0;
};

// kYes reads the table as `check -r all` does: an entry's extra data over 1 KiB is cut to its
// first 1 KiB, and the entries from the one that makes the table exceed 64 MiB are dropped.
enum class SnapshotRepair : bool { kNo = false, kYes = true };

// Reads the `header.nb_snapshots` entries at `header.snapshots_offset` from `file`, as QEMU
// reads them: bytes past the end of the file read as zeros, ids and names end at a NUL.
// Errors: I/O; with SnapshotRepair::kNo, EFBIG for an entry with more than 1 KiB of extra data
// ("Too much extra metadata in snapshot table entry N") or a table over 64 MiB ("Snapshot
// table is too big"), each message followed by QEMU's hint line.
Task<Result<SnapshotTable>> read_snapshot_table(BlockNode& file, const Header& header,
                                                SnapshotRepair repair = SnapshotRepair::kNo);

// The table as QEMU writes it: every entry with at least the 24 bytes of extra data QEMU
// knows (vm_state_size; disk_size, `disk_size` (the image's virtual size) where the entry has
// none; icount, all ones when not recorded), unknown extra data after them kept, the 32-bit
// vm_state_size set when the size fits in it (0 otherwise), ids and names as read, each entry
// padded to 8 bytes.
std::vector<uint8_t> encode_snapshot_table(const std::vector<Snapshot>& snapshots,
                                           uint64_t disk_size);

}  // namespace qblock::qcow2
