// The way in from outside the driver to its internal snapshot operations (qcow2.h): the node
// type is private, so callers hold a BlockNode and this finds the qcow2 node behind it.
#include "block/formats/qcow2/qcow2.h"
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

Task<Result<std::vector<Snapshot>>> qcow2_snapshots(BlockNode& node) {
  auto* qcow2 = dynamic_cast<Qcow2Node*>(&node);
  if (!qcow2) co_return fail(Error::unsupported());
  co_return co_await qcow2->snapshots();
}

Task<Status> qcow2_snapshot_op(BlockNode& node, SnapshotOp op, std::string name) {
  auto* qcow2 = dynamic_cast<Qcow2Node*>(&node);
  if (!qcow2) co_return fail(Error::unsupported());
  switch (op) {
    case SnapshotOp::kCreate: co_return co_await qcow2->create_snapshot(std::move(name));
    case SnapshotOp::kApply: co_return co_await qcow2->apply_snapshot(std::move(name));
    case SnapshotOp::kDelete: co_return co_await qcow2->delete_snapshot(std::move(name));
  }
  co_return fail(Error::invalid());
}

Task<Status> qcow2_load_snapshot_tmp(BlockNode& node, std::optional<std::string> id,
                                     std::optional<std::string> name) {
  auto* qcow2 = dynamic_cast<Qcow2Node*>(&node);
  if (!qcow2) co_return fail(Error::unsupported());
  co_return co_await qcow2->load_snapshot_tmp(std::move(id), std::move(name));
}

}  // namespace qblock::qcow2
