// Internal snapshots of an open image (public API; qemu-img snapshot): listing, taking,
// reverting to and deleting them. Only qcow2 images have them (qcow2-format.md §8). Reading
// the table without opening a driver is read_image_info (qblock/image.h).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/image.h"
#include "qblock/task.h"

namespace qblock {

// The snapshots of the image whose format node is `root`, in table order.
// Errors: ENOTSUP when `root` is not a qcow2 node; I/O and table errors.
[[nodiscard]] Task<Result<std::vector<SnapshotInfo>>> list_snapshots(BlockNode& root);

// Takes snapshot `name` of the current contents (qemu-img snapshot -c): its id is the largest
// numeric id + 1; names need not be unique. Durable when this returns.
// REQUIRES: `root` writable, no other request in flight on it. Errors: ENOTSUP (not qcow2),
// EINVAL (a refcount would overflow: 1-bit refcounts with anything allocated), I/O.
[[nodiscard]] Task<Status> create_snapshot(BlockNode& root, std::string name);

// Reverts the image to snapshot `name` (matched against the ids first, then the names; the
// first match in table order wins), including its virtual size (qemu-img snapshot -a).
// REQUIRES: as create_snapshot. Errors: ENOTSUP; ENOENT "Failed to load snapshot: No such
// file or directory"; I/O.
[[nodiscard]] Task<Status> apply_snapshot(BlockNode& root, std::string name);

// Deletes snapshot `name` (matched as qemu-img 7.2's -d does: against the names first, then
// the ids; the first match in table order wins), releasing the clusters only it
// used (qemu-img snapshot -d). REQUIRES: as create_snapshot. Errors: ENOTSUP; ENOENT
// "snapshot not found"; I/O.
[[nodiscard]] Task<Status> delete_snapshot(BlockNode& root, std::string name);

// Makes the image whose format node is `root` read snapshot `id`/`name` instead of its
// current contents, until it is closed (qemu-img convert -l): each of `id` and `name` is
// compared only when given, the first entry in table order that matches wins; the virtual
// size stays. REQUIRES: `root` read-only, at least one of `id` and `name`. Errors: ENOTSUP
// "Block format 'F' used by device '' does not support temporarily loading internal
// snapshots" when `root` is not a qcow2 node; ENOENT "Can't find snapshot"; I/O.
[[nodiscard]] Task<Status> load_snapshot_tmp(BlockNode& root, std::optional<std::string> id,
                                             std::optional<std::string> name);

}  // namespace qblock
