// Deleting an internal snapshot (qcow2-format.md §8.2, qemu-img snapshot -d): the entry
// leaves the table first (one header write switches to the shorter table), then everything
// its L1 tree referenced loses that reference and its L1 copy is freed (§17 R5: references
// go before refcounts), and the active tables' COPIED flags are recomputed where clusters
// are no longer shared.
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

Task<Status> Qcow2Node::delete_snapshot(std::string name) {
  AsyncMutex::Guard guard = co_await lock_.lock();
  Status s = co_await begin_snapshot_op();
  if (!s) co_return s;
  Task<Result<SnapshotTable>> read = read_snapshot_table(*file_, header_);
  Result<SnapshotTable> table = co_await std::move(read);
  if (!table) co_return fail(table.error());
  const int64_t index = find_snapshot(table->snapshots, name, Match::kNameFirst);
  if (index < 0) co_return fail(Error::with_message(ENOENT, "snapshot not found"));
  std::vector<Snapshot> snapshots = std::move(table->snapshots);
  const Snapshot snap = snapshots[static_cast<std::size_t>(index)];
  snapshots.erase(snapshots.begin() + index);
  if (snap.l1_size && snap.l1_table_offset % cs_) {
    Error e = co_await corruption("Snapshot L1 table offset invalid");
    co_return fail(e);
  }
  Result<std::vector<uint64_t>> snap_l1 = co_await read_l1(snap.l1_table_offset, snap.l1_size);
  if (!snap_l1) co_return fail(snap_l1.error());

  // 1. The table without the entry: from here on nothing refers to the snapshot's tree.
  Result<SnapshotTable> written = co_await write_snapshot_table(std::move(snapshots));
  if (!written) co_return fail(written.error());
  set_snapshot_table(*written);

  // 2. Its tree and its L1 copy lose the snapshot's reference.
  s = co_await update_tree_refcounts(*snap_l1, -1);
  if (!s) co_return s;
  if (snap.l1_size) {
    const uint64_t clusters = (uint64_t{snap.l1_size} * 8 + cs_ - 1) / cs_;
    s = co_await refcounts_->update(snap.l1_table_offset / cs_, clusters, -1);
    if (!s) co_return s;
  }
  s = co_await refcounts_->write_dirty();
  if (!s) co_return s;

  // 3. Clusters only the active tables hold now are private again.
  s = co_await recompute_copied();
  if (!s) co_return s;
  co_return co_await end_snapshot_op(*written);
}

}  // namespace qblock::qcow2
