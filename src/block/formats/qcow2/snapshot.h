// The qcow2 internal snapshot table (qcow2-format.md §8.1): reading it for `check`, `info` and
// the driver.
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
  std::vector<uint8_t> extra_data;  // kept byte for byte
};

// The snapshot table and its length in bytes (entries padded to 8).
struct SnapshotTable {
  std::vector<Snapshot> snapshots;
  uint64_t bytes = 0;
};

// Reads the `header.nb_snapshots` entries at `header.snapshots_offset` from `file`, as QEMU
// reads them: bytes past the end of the file read as zeros, ids and names end at a NUL.
// Errors: I/O; EFBIG for an entry with more than 1 KiB of extra data ("Too much extra metadata
// in snapshot table entry N") or a table over 64 MiB ("Snapshot table is too big"), each
// message followed by QEMU's hint line.
Task<Result<SnapshotTable>> read_snapshot_table(BlockNode& file, const Header& header);

}  // namespace qblock::qcow2
