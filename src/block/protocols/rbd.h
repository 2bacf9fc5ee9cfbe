// The rbd protocol: a Ceph RBD image through librbd's C API, as QEMU 7.2's rbd driver. The
// bytes live in RADOS objects (4 MiB by default); librbd's aio completions come back on its
// own threads and are handed to the node's EventLoop (rbd_completion.h), so requests never
// block it. Blocking librbd calls (connect, resize, diff iteration, close) run on the loop's
// worker threads.
#pragma once

#include <cstdint>
#include <string>

#include "block/driver.h"
#include "qblock/image.h"

namespace qblock {

// Options (QEMU's): filename ("rbd:pool/[namespace/]image[@snap][:conf=PATH][:id=USER]
// [:key=value...]"), pool, namespace, image, snapshot, conf, user, server (the monitors),
// and "=keyvalue-pairs". A snapshot opens read-only; opening one writable fails with
// EACCES "rbd snapshots are read-only". Writes past the end grow the image, as in QEMU (a
// qcow2 image on RBD grows with its data). cache.direct sets rbd_cache=false, otherwise
// rbd_cache=true, as QEMU's cache modes do. Errors carry QEMU's messages ("error opening
// pool P: ...", "error reading header from I: ...", "namespace 'N' does not exist").
Task<Result<NodePtr>> open_rbd_node(OpenContext& ctx, Options& options);

// Creates the RBD image `filename` ("rbd:..." or the options of an rbd node) of `size`
// bytes, with the cluster's default features and object size, as qemu-img create does on
// RBD. Errors: EEXIST "error rbd create: File exists", connection errors.
Task<Status> create_rbd_image(EventLoop& loop, std::string filename, uint64_t size);

// Removes the RBD image `filename` (undoing a failed creation); errors are ignored.
Task<void> remove_rbd_image(EventLoop& loop, std::string filename);

// The RBD snapshots of the image on the rbd node `file`, as qemu-img 7.2 lists them for a raw
// image there: id and name the snapshot's name, vm_state_size its image size, no date or clock,
// icount 0. Empty when `file` is not an rbd node or the listing fails.
Task<std::vector<SnapshotInfo>> list_rbd_snapshots(BlockNode& file);

// The name qemu-img 7.2 shows for an image on the rbd node `file` under format `format`:
// json:{"driver": "FORMAT", "file": {"pool": ..., "driver": "rbd", ...}}. Empty if `file` is
// not an rbd node.
std::string rbd_display_filename(const BlockNode& file, const std::string& format);

}  // namespace qblock
