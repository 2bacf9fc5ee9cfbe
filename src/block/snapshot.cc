// include/qblock/snapshot.h over the qcow2 driver's snapshot operations.
#include "qblock/snapshot.h"

#include "block/formats/qcow2/qcow2.h"

namespace qblock {

Task<Result<std::vector<SnapshotInfo>>> list_snapshots(BlockNode& root) {
  Task<Result<std::vector<qcow2::Snapshot>>> read = qcow2::qcow2_snapshots(root);
  Result<std::vector<qcow2::Snapshot>> snapshots = co_await std::move(read);
  if (!snapshots) co_return fail(snapshots.error());
  std::vector<SnapshotInfo> out;
  out.reserve(snapshots->size());
  for (const qcow2::Snapshot& s : *snapshots) {
    SnapshotInfo info;
    info.id = s.id;
    info.name = s.name;
    info.date_sec = s.date_sec;
    info.date_nsec = s.date_nsec;
    info.vm_clock_nsec = s.vm_clock_nsec;
    info.vm_state_size = s.vm_state_size;
    info.icount = s.icount;
    out.push_back(std::move(info));
  }
  co_return out;
}

Task<Status> create_snapshot(BlockNode& root, std::string name) {
  co_return co_await qcow2::qcow2_snapshot_op(root, qcow2::SnapshotOp::kCreate, std::move(name));
}

Task<Status> apply_snapshot(BlockNode& root, std::string name) {
  co_return co_await qcow2::qcow2_snapshot_op(root, qcow2::SnapshotOp::kApply, std::move(name));
}

Task<Status> delete_snapshot(BlockNode& root, std::string name) {
  co_return co_await qcow2::qcow2_snapshot_op(root, qcow2::SnapshotOp::kDelete, std::move(name));
}

Task<Status> load_snapshot_tmp(BlockNode& root, std::optional<std::string> id,
                               std::optional<std::string> name) {
  Status loaded = co_await qcow2::qcow2_load_snapshot_tmp(root, std::move(id), std::move(name));
  if (!loaded && loaded.error().errnum() == ENOTSUP) {
    co_return fail(Error::with_message(
        ENOTSUP, "Block format '" + std::string(root.driver_name()) +
                     "' used by device '' does not support temporarily loading internal "
                     "snapshots"));
  }
  co_return loaded;
}

}  // namespace qblock
