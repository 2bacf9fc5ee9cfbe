// Reading an internal snapshot in place of the active image (qcow2-format.md §8.2; qemu-img
// convert -l): on a read-only node, the snapshot's L1 table replaces the active one in memory
// only. Nothing is written; the virtual size stays the image's, as qemu-img 7.2 keeps it.
#include <algorithm>

#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

namespace {

Error not_found() { return Error::with_message(ENOENT, "Can't find snapshot"); }

}  // namespace

Task<Status> Qcow2Node::load_snapshot_tmp(std::optional<std::string> id,
                                          std::optional<std::string> name) {
  AsyncMutex::Guard guard = co_await lock_.lock();
  if (Status u = check_usable(); !u) co_return u;
  if (!read_only()) {
    co_return fail(Error::with_message(EPERM, "Can't load snapshot tables into a writable image"));
  }
  Task<Result<SnapshotTable>> read = read_snapshot_table(*file_, header_);
  Result<SnapshotTable> table = co_await std::move(read);
  if (!table) co_return fail(table.error());
  const Snapshot* snap = nullptr;
  for (const Snapshot& s : table->snapshots) {
    if ((!id || s.id == *id) && (!name || s.name == *name) && (id || name)) {
      snap = &s;
      break;
    }
  }
  if (!snap) co_return fail(not_found());
  if (snap->l1_size && snap->l1_table_offset % cs_) {
    co_return fail(Error::with_message(EINVAL, "Snapshot L1 table offset invalid"));
  }
  Result<std::vector<uint64_t>> snap_l1 = co_await read_l1(snap->l1_table_offset, snap->l1_size);
  if (!snap_l1) co_return fail(snap_l1.error());
  // The active size may need more entries than the snapshot has: those read as unallocated.
  std::vector<uint64_t> l1(std::max<std::size_t>(snap_l1->size(), l1_.size()), 0);
  std::copy(snap_l1->begin(), snap_l1->end(), l1.begin());
  // The node is read-only: everything cached is clean and can go.
  for (uint64_t offset : l2_offsets_) l2_cache_.drop_table(offset);
  l1_ = std::move(l1);
  l2_offsets_.clear();
  for (uint64_t entry : l1_) {
    if (entry & kOffsetMask) l2_offsets_.insert(entry & kOffsetMask);
  }
  co_return ok();
}

}  // namespace qblock::qcow2
