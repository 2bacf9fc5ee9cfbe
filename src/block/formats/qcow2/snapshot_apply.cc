// Reverting to an internal snapshot (qcow2-format.md §8.2, qemu-img snapshot -a): the
// snapshot's L1 table is copied over the active one, its tree gains a reference before the
// copy is written and the old active tree loses one after (§17 R1, R5), COPIED is recomputed
// and the virtual size becomes the snapshot's disk_size, as qemu-img 7.2 does.
#include <algorithm>

#include "base/byte_order.h"
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

namespace {

// disk_size from the entry's extra data (§8.1), or `fallback` when the entry has none.
uint64_t snapshot_disk_size(const Snapshot& snap, uint64_t fallback) {
  if (snap.extra_data.size() < 16) return fallback;
  return load_be64(&snap.extra_data[8]);
}

}  // namespace

Task<Status> Qcow2Node::apply_snapshot(std::string name) {
  // As QEMU 7.2: the bitmaps would describe another disk (whatever their state).
  if (!bitmaps_.empty()) {
    co_return fail(Error::with_message(EBUSY, "Device has active dirty bitmaps"));
  }
  AsyncMutex::Guard guard = co_await lock_.lock();
  Status s = co_await begin_snapshot_op();
  if (!s) co_return s;
  Task<Result<SnapshotTable>> read = read_snapshot_table(*file_, header_);
  Result<SnapshotTable> table = co_await std::move(read);
  if (!table) co_return fail(table.error());
  const int64_t index = find_snapshot(table->snapshots, name, Match::kIdFirst);
  if (index < 0) {
    co_return fail(
        Error::with_message(ENOENT, "Failed to load snapshot: No such file or directory"));
  }
  const Snapshot& snap = table->snapshots[static_cast<std::size_t>(index)];
  const uint64_t disk_size = snapshot_disk_size(snap, header_.size);
  if (snap.l1_size && snap.l1_table_offset % cs_) {
    Error e = co_await corruption("Snapshot L1 table offset invalid");
    co_return fail(e);
  }
  Result<std::vector<uint64_t>> snap_l1 = co_await read_l1(snap.l1_table_offset, snap.l1_size);
  if (!snap_l1) co_return fail(snap_l1.error());

  // The active table must hold the snapshot's entries; it keeps its size otherwise (the
  // entries past the snapshot's become 0), as 7.2 leaves it.
  if (snap_l1->size() > l1_.size()) {
    s = co_await grow_l1_table(snap_l1->size());
    if (!s) co_return s;
  }

  // 1. The snapshot's tree gains the active L1's reference, on disk first.
  s = co_await update_tree_refcounts(*snap_l1, +1);
  if (!s) co_return s;
  s = co_await refcounts_->write_dirty();
  if (!s) co_return s;

  // 2. The copy over the active L1 table, in one write.
  std::vector<uint64_t> old_l1 = l1_;
  std::vector<uint64_t> new_l1(l1_.size(), 0);
  // The snapshot's L1 carries the flags of when it was taken: written with COPIED clear,
  // so that no L2 table it shares is ever marked private on disk (step 4 sets the flags).
  std::transform(snap_l1->begin(), snap_l1->end(), new_l1.begin(),
                 [](uint64_t entry) { return entry & ~kCopied; });
  std::vector<uint8_t> raw(new_l1.size() * 8);
  for (uint64_t i = 0; i < new_l1.size(); ++i) store_be64(&raw[i * 8], new_l1[i]);
  if (!raw.empty()) {
    Status g = co_await guard_existing(header_.l1_table_offset, raw.size(), 0, "active L1 table");
    if (!g) co_return g;
    co_await file_->debug_event(DebugEvent::kL1Update);
    s = co_await file_->write(header_.l1_table_offset, IoVec(raw.data(), raw.size()));
    if (!s) co_return s;
    s = co_await file_->flush();
    if (!s) co_return s;
  }
  l1_ = std::move(new_l1);

  // 3. The old active tree loses its reference (§17 R5: after nothing points at it).
  s = co_await update_tree_refcounts(old_l1, -1);
  if (!s) co_return s;
  s = co_await refcounts_->write_dirty();
  if (!s) co_return s;

  // 4. COPIED from the refcounts as they are now.
  s = co_await recompute_copied();
  if (!s) co_return s;

  // 5. The snapshot's virtual size (qemu-img 7.2 truncates to it).
  if (disk_size != header_.size) {
    header_.size = disk_size;
    s = co_await write_header();
    if (!s) co_return s;
  }
  SnapshotTable kept;
  kept.bytes = snapshot_table_bytes_;
  kept.snapshots = std::move(table->snapshots);
  co_return co_await end_snapshot_op(kept);
}

}  // namespace qblock::qcow2
