// qcow2 consistency check and repair: what `qemu-img check [-r leaks|all]` does to a qcow2
// image (qcow2-format.md §3.6, §5.5, §11; qemu-compat.md §3.3). Recomputes every cluster's
// refcount from the references the image holds (header, L1/L2 trees of the active state and
// of every snapshot, refcount structures), compares it with the stored refcount, checks the
// COPIED flags of the active tables, and optionally repairs: leaks, refcounts that are too
// low, COPIED flags, and as a last resort rebuilds the refcount table and blocks.
// Diagnostics go to the message sink (qblock/messages.h), one line each, in QEMU's words.
#pragma once

#include <cstdint>

#include "block/driver.h"
#include "block/formats/qcow2/header.h"

namespace qblock::qcow2 {

// Repair modes (qemu-img check -r): leaks, errors, or both ("all").
inline constexpr unsigned kFixLeaks = 1;
inline constexpr unsigned kFixErrors = 2;

// The counts qemu-img check reports.
struct CheckResult {
  uint64_t corruptions = 0;
  uint64_t leaks = 0;
  uint64_t check_errors = 0;  // parts of the check that could not be done (I/O errors)
  uint64_t corruptions_fixed = 0;
  uint64_t leaks_fixed = 0;
  uint64_t image_end_offset = 0;  // end of the highest cluster in use
  uint64_t total_clusters = 0;    // guest clusters
  uint64_t allocated_clusters = 0;
  uint64_t fragmented_clusters = 0;
  uint64_t compressed_clusters = 0;
};

// The image a check runs on: its file and header, and the corruption-event state of the open
// image (§12: events print once per open; a fatal one on a writable image sets the corrupt
// bit and makes further writes fail).
struct CheckTarget {
  BlockNode& file;
  Header& header;  // updated when a repair moves the refcount table or clears feature bits
  bool writable;
  bool& corruption_reported;
  bool& broken;
};

// Checks the image and, with `fix` (kFixLeaks | kFixErrors), repairs what that mode allows.
// On success with `fix` and no corruption left, clears the dirty and corrupt bits.
// Errors: EIO when a repair is impossible in this mode ("ERROR need to rebuild refcount
// structures" printed) or a write fails; the image is then left as the failed step left it,
// which is never worse than before (new structures are linked only once written).
Task<Result<CheckResult>> check_image(CheckTarget target, unsigned fix);

}  // namespace qblock::qcow2
