// Taking an internal snapshot (qcow2-format.md §8.2): a copy of the active L1 table, one more
// reference on everything the active tables reference, COPIED cleared where clusters became
// shared, and a new snapshot table behind one header write. Each step's structures are on
// disk before anything points at them (§17), so a power cut leaks at worst.
#include <sys/time.h>

#include <algorithm>
#include <cstdlib>

#include "base/byte_order.h"
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

namespace {

// QEMU's rule for a new id: one more than the largest id that reads as a number.
std::string next_snapshot_id(const std::vector<Snapshot>& snapshots) {
  uint64_t max_id = 0;
  for (const Snapshot& snap : snapshots) {
    max_id = std::max<uint64_t>(max_id, std::strtoull(snap.id.c_str(), nullptr, 10));
  }
  return std::to_string(max_id + 1);
}

}  // namespace

Task<Status> Qcow2Node::create_snapshot(std::string name) {
  AsyncMutex::Guard guard = co_await lock_.lock();
  if (!header_.data_file.empty()) co_return fail(Error::unsupported());
  Status s = co_await begin_snapshot_op();
  if (!s) co_return s;
  Task<Result<SnapshotTable>> read = read_snapshot_table(*file_, header_);
  Result<SnapshotTable> table = co_await std::move(read);
  if (!table) co_return fail(table.error());
  if (table->snapshots.size() >= kMaxSnapshots) co_return fail(Error::from_errno(EFBIG));

  Snapshot snap;
  snap.id = next_snapshot_id(table->snapshots);
  snap.name = std::move(name);
  struct timeval now;
  ::gettimeofday(&now, nullptr);
  snap.date_sec = static_cast<uint32_t>(now.tv_sec);
  snap.date_nsec = static_cast<uint32_t>(now.tv_usec * 1000);  // §8.1: microseconds
  snap.icount = 0;                                             // qemu-img records 0 (§8.1)
  snap.l1_size = static_cast<uint32_t>(l1_.size());
  // The 24 bytes of extra data QEMU writes: vm_state_size, disk_size, icount.
  snap.extra_data.assign(24, 0);
  store_be64(&snap.extra_data[8], header_.size);

  // 1. The copy of the active L1 table, counted before it is written (§17 R1).
  const uint64_t l1_bytes = l1_.size() * 8;
  if (l1_bytes) {
    const uint64_t n = (l1_bytes + cs_ - 1) / cs_;
    Result<uint64_t> where = co_await refcounts_->allocate(n);
    if (!where) co_return fail(where.error());
    if (Status g = co_await refuse_metadata_overlap(*where, n * cs_); !g) co_return g;
    s = co_await refcounts_->write_dirty();
    if (!s) co_return s;
    std::vector<uint8_t> raw(l1_bytes);
    for (uint64_t i = 0; i < l1_.size(); ++i) store_be64(&raw[i * 8], l1_[i]);
    s = co_await file_->write(*where, IoVec(raw.data(), raw.size()));
    if (!s) co_return s;
    s = co_await file_->flush();
    if (!s) co_return s;
    snap.l1_table_offset = *where;
  }

  // 2. One more reference on every L2 table and cluster of the active tree, on disk before
  // the snapshot table makes the references real. With 1-bit refcounts (§8.2) this
  // overflows (EINVAL) as soon as anything is allocated, as in QEMU. A failure leaves the
  // increments made so far in memory only: drop them by reloading the refcounts.
  s = co_await update_tree_refcounts(l1_, +1);
  if (!s) {
    replace_refcounts();
    Status reloaded = co_await refcounts_->load();
    (void)reloaded;
    co_return s;
  }
  s = co_await refcounts_->write_dirty();
  if (!s) co_return s;

  // 3. Shared clusters lose COPIED in the active tables, so no write goes to them in place.
  s = co_await recompute_copied();
  if (!s) co_return s;

  // 4. The new table, then the header; the old table is freed after.
  std::vector<Snapshot> snapshots = std::move(table->snapshots);
  snapshots.push_back(std::move(snap));
  Result<SnapshotTable> written = co_await write_snapshot_table(std::move(snapshots));
  if (!written) co_return fail(written.error());
  co_return co_await end_snapshot_op(*written);
}

}  // namespace qblock::qcow2
