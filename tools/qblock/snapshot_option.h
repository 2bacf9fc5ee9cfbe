// The `-l snapshot_param` option as qemu-img 7.2's measure and convert take it: parsing with
// qemu-img's warnings and errors, and pointing an opened image at that snapshot (a read-only
// temporary load, qblock/snapshot.h).
#pragma once

#include "qblock/block_node.h"
#include "qblock/event_loop.h"
#include "qblock/snapshot_param.h"

namespace qblock::tools {

// Parses a -l value (snapshot_param.h) into `out`, printing qemu-img's deprecation warnings
// for bare keys. Returns false, having printed qemu-img's two error lines, on a
// "snapshot.*" list with another key.
bool parse_snapshot_option(const char* value, SnapshotParam& out);

// Loads the snapshot `param` names into `root` for reading (load_snapshot_tmp): by "snapshot.id"
// and "snapshot.name", or a bare text tried as an id, then as a name. Errors as
// load_snapshot_tmp's. REQUIRES: `root` was opened read-only.
[[nodiscard]] Status load_snapshot_param(EventLoop& loop, const SnapshotParam& param,
                                         BlockNode& root);

// Loads the snapshot `param` names into `root` for reading, as 7.2 does: by "snapshot.id" and
// "snapshot.name", or a bare text tried as an id, then as a name. Returns false, having
// printed "Failed to load snapshot: ...", when that fails.
// REQUIRES: `root` was opened read-only.
bool load_snapshot_option(EventLoop& loop, const SnapshotParam& param, BlockNode& root);

}  // namespace qblock::tools
