// Dirty bitmaps of a node: QEMU's block-dirty-bitmap-* operations, which `qblock bitmap`,
// the QMP monitor and the NBD server's qemu:dirty-bitmap contexts use. The qcow2 driver keeps
// them (persistent ones in the image, qcow2-format.md §14); other nodes have none. Messages
// are QEMU 7.2's. A message may carry a hint on a second line (after '\n'), which qemu-img
// prints and QMP leaves out.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/task.h"

namespace qblock {

class DirtyBitmap;  // the granules of one bitmap (internal)

enum class BitmapPersistence : bool { kTransient = false, kPersistent = true };
enum class BitmapRecording : bool { kDisabled = false, kEnabled = true };

struct DirtyBitmapInfo {
  std::string name;  // empty for a busy bitmap's successor (QEMU's anonymous bitmap)
  uint64_t granularity = 0;
  uint64_t count = 0;  // dirty bytes
  bool recording = false;
  bool persistent = false;
  bool inconsistent = false;  // found IN_USE at open: usable only by remove
  bool busy = false;          // a job uses it (freeze_dirty_bitmap)
};

// The granularity QEMU picks when none is given: the cluster size, at least 4 KiB (64 KiB
// when the node has no cluster size).
uint64_t default_bitmap_granularity(const BlockNode& node);

// block-dirty-bitmap-add. `granularity` nullopt: the default. Errors: EINVAL "Bitmap name
// cannot be empty", "Granularity must be power of 2 and at least 512", "Bitmap already exists:
// NAME", "Can't make bitmap 'NAME' persistent in 'NODE': ..."; ENOTSUP "Can't store persistent
// bitmaps to NODE: Operation not supported" on a node that is not qcow2.
Status add_dirty_bitmap(BlockNode& node, const std::string& name,
                        std::optional<uint64_t> granularity, BitmapPersistence persistence,
                        BitmapRecording recording);
// block-dirty-bitmap-remove: a stored bitmap leaves the image at once.
// Errors: ENOENT "Dirty bitmap 'NAME' not found", I/O.
Task<Status> remove_dirty_bitmap(BlockNode& node, std::string name);
// block-dirty-bitmap-clear, -enable, -disable. Errors: ENOENT as above; EINVAL for an
// inconsistent bitmap (with the block-dirty-bitmap-remove hint), EPERM "Bitmap 'NAME' is
// readonly and cannot be modified" (clear on a read-only node).
Status clear_dirty_bitmap(BlockNode& node, const std::string& name);
Status enable_dirty_bitmap(BlockNode& node, const std::string& name);
Status disable_dirty_bitmap(BlockNode& node, const std::string& name);
// block-dirty-bitmap-merge of one source: every granule dirty in `source_node`'s bitmap
// `source` becomes dirty in `node`'s bitmap `target`. Errors: as clear for the target (looked
// up first), ENOENT for the source, EINVAL "Bitmaps are incompatible and can't be merged"
// (different disk sizes) or an inconsistent source.
Status merge_dirty_bitmap(BlockNode& node, const std::string& target, BlockNode& source_node,
                          const std::string& source);
// Whether a job may use bitmap `name` as QEMU's bdrv_dirty_bitmap_check does, in its order:
// EBUSY "Bitmap 'NAME' is currently in use by another operation and cannot be used", EPERM
// for a read-only node when the job will `modify` it, EINVAL for an inconsistent bitmap;
// ENOENT "Dirty bitmap 'NAME' not found". (Every operation above refuses a busy bitmap too.)
Status check_dirty_bitmap(BlockNode& node, const std::string& name, bool modify);
// A job (blockdev-backup with a bitmap) takes bitmap `name` as QEMU freezes it: its bits stay
// as they are now and are returned (valid until the thaw), the writes made meanwhile are kept
// apart (in a successor that records as the bitmap did), and the bitmap is busy. Errors: those
// of check_dirty_bitmap(node, name, modify).
Result<const DirtyBitmap*> freeze_dirty_bitmap(BlockNode& node, const std::string& name,
                                               bool modify);
// How a job gives a frozen bitmap back.
enum class BitmapThaw {
  kReclaim,   // the bits it was frozen with, plus the writes made meanwhile
  kAbdicate,  // only the writes made meanwhile (what the job copied is clean); QEMU then
              // lists the bitmap as the node's newest
};
// Ends freeze_dirty_bitmap(): the bitmap is no longer busy. With `also_dirty`, every granule
// dirty there is dirty in the bitmap afterwards (a failed bitmap-mode=always backup gives back
// what it did not copy). No-op when the bitmap is not frozen.
void thaw_dirty_bitmap(BlockNode& node, const std::string& name, BitmapThaw how,
                       const DirtyBitmap* also_dirty = nullptr);
// The node's bitmaps, in the order they were loaded or added; after them, the successor of
// each busy bitmap (unnamed).
std::vector<DirtyBitmapInfo> dirty_bitmaps(BlockNode& node);
// The dirty and clean runs of bitmap `name` from `offset` (granule-aligned runs clipped to
// [offset, offset + bytes)): (length, dirty) pairs covering the range in order.
// Errors: ENOENT, EINVAL for an inconsistent bitmap.
Result<std::vector<std::pair<uint64_t, bool>>> dirty_bitmap_extents(BlockNode& node,
                                                                    const std::string& name,
                                                                    uint64_t offset,
                                                                    uint64_t bytes);

}  // namespace qblock
