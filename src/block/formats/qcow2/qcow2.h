// The qcow2 format driver (qcow2-format.md): guest-to-host mapping through L1/L2 tables,
// refcounted cluster allocation, COW from the backing file, zero clusters, discard, resize.
// Metadata is written through in the dependency order of §17 (refcount blocks, then new
// L2 tables, then the entries pointing at them), so a crash can leak clusters but never
// corrupt the image.
#pragma once

#include <optional>
#include <string>

#include "block/driver.h"
#include "block/formats/qcow2/check.h"
#include "block/formats/qcow2/snapshot.h"
#include "qblock/image.h"

namespace qblock::qcow2 {

// Options: `file` (child), `backing` (child tree, or null for none; default: the header's
// backing file), and QEMU's qcow2 runtime options (qemu-compat.md §5.4), accepted and
// validated (the caches are sized from l2-cache-size).
Task<Result<NodePtr>> open_qcow2_node(OpenContext& ctx, Options& options);

// qemu-img check on an image opened as qcow2 with OpenFlags::check (read-only, or read-write
// for a `fix`). Errors: ENOTSUP if `node` is not such a qcow2 node; see check_image().
Task<Result<CheckResult>> check_qcow2_node(BlockNode& node, unsigned fix);

// qemu-img amend on an image opened as qcow2, writable (see amend_image() in qblock/image.h).
// Errors: ENOTSUP "Format driver 'F' does not support option amendment" if `node` is not a
// qcow2 node; the amend errors otherwise.
Task<Status> amend_qcow2_node(BlockNode& node, Qcow2AmendOptions options, AmendProgress progress);
// The header rewrite and the emptying behind qblock/jobs.h on a qcow2 node (see
// Qcow2Node::change_backing_file and make_empty). Errors: ENOTSUP if `node` is not qcow2.
Task<Status> change_qcow2_backing_file(BlockNode& node, std::string backing_file,
                                       std::string backing_format);
Task<Status> make_qcow2_empty(BlockNode& node);
// Internal snapshots of an image opened as qcow2 (snapshot_ops.cc; see Qcow2Node's
// snapshot operations for the semantics). Errors: ENOTSUP if `node` is not a qcow2 node.
enum class SnapshotOp : unsigned char { kCreate, kApply, kDelete };
Task<Result<std::vector<Snapshot>>> qcow2_snapshots(BlockNode& node);
Task<Status> qcow2_snapshot_op(BlockNode& node, SnapshotOp op, std::string name);
// Qcow2Node::load_snapshot_tmp on `node`. Errors: ENOTSUP if `node` is not a qcow2 node.
Task<Status> qcow2_load_snapshot_tmp(BlockNode& node, std::optional<std::string> id,
                                     std::optional<std::string> name);

// Format probe: 100 for a qcow2 header (magic and version 2 or 3), else 0.
int probe_qcow2(const uint8_t* header, std::size_t len);

}  // namespace qblock::qcow2
