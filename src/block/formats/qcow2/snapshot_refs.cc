// What the internal snapshot operations (snapshot_create.cc, snapshot_apply.cc,
// snapshot_delete.cc) share: walking an L1 tree to change its refcounts, recomputing the
// active tables' COPIED flags from the refcounts (qcow2-format.md §3.6), and replacing the
// snapshot table (§8.1) behind one header write (§17 R7).
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "base/byte_order.h"
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

namespace {

// The 8-byte words of an L2 table that hold cluster descriptors: every word, or every
// other one with extended L2 entries (§7.1: descriptor, then the subcluster bitmap).
uint64_t l2_stride(const Header& h) { return h.extended_l2() ? 2 : 1; }

uint64_t clusters_for(uint64_t bytes, uint64_t cs) { return (bytes + cs - 1) / cs; }

}  // namespace

int64_t Qcow2Node::find_snapshot(const std::vector<Snapshot>& snapshots, const std::string& name,
                                 Match match) {
  // qemu-img 7.2: snapshot -a asks the driver, which looks for an id first; snapshot -d
  // looks the argument up in the list by name first.
  for (int pass = 0; pass < 2; ++pass) {
    const bool by_id = (pass == 0) == (match == Match::kIdFirst);
    for (std::size_t i = 0; i < snapshots.size(); ++i) {
      if ((by_id ? snapshots[i].id : snapshots[i].name) == name) return static_cast<int64_t>(i);
    }
  }
  return -1;
}

Task<Result<std::vector<Snapshot>>> Qcow2Node::snapshots() {
  AsyncMutex::Guard guard = co_await lock_.lock();
  Task<Result<SnapshotTable>> read = read_snapshot_table(*file_, header_);
  Result<SnapshotTable> table = co_await std::move(read);
  if (!table) co_return fail(table.error());
  co_return std::move(table->snapshots);
}

Task<Status> Qcow2Node::begin_snapshot_op() {
  if (Status u = check_usable(); !u) co_return u;
  if (read_only()) co_return fail(Error::from_errno(EROFS));
  Status s = co_await flush_metadata();
  if (!s) co_return s;
  // Everything cached is clean now; the operation reads and writes the tables directly.
  for (uint64_t offset : l2_offsets_) l2_cache_.drop_table(offset);
  co_return ok();
}

Task<Status> Qcow2Node::end_snapshot_op(const SnapshotTable& table) {
  l2_offsets_.clear();
  for (uint64_t entry : l1_) {
    if (entry & kOffsetMask) l2_offsets_.insert(entry & kOffsetMask);
  }
  set_snapshot_table(table);
  compressed_end_ = 0;  // clusters were freed: never pack compressed data after them
  Status s = co_await refcounts_->write_dirty();
  if (!s) co_return s;
  co_return co_await file_->flush();
}

Task<Result<std::vector<uint64_t>>> Qcow2Node::read_l1(uint64_t offset, uint64_t entries) {
  std::vector<uint8_t> raw(entries * 8);
  if (!raw.empty()) {
    Status s = co_await file_->read(offset, IoVec(raw.data(), raw.size()));
    if (!s) co_return fail(s.error());
  }
  std::vector<uint64_t> l1(entries);
  for (uint64_t i = 0; i < entries; ++i) l1[i] = load_be64(&raw[i * 8]);
  co_return l1;
}

Task<Result<std::vector<uint64_t>>> Qcow2Node::read_l2(uint64_t offset) {
  if (offset % cs_) {
    Error e = co_await corruption(fmt::format("L2 table offset {:#x} unaligned", offset));
    co_return fail(e);
  }
  std::vector<uint8_t> raw(cs_);
  Status s = co_await file_->read(offset, IoVec(raw.data(), raw.size()));
  if (!s) co_return fail(s.error());
  std::vector<uint64_t> l2(cs_ / 8);
  for (uint64_t i = 0; i < l2.size(); ++i) l2[i] = load_be64(&raw[i * 8]);
  co_return l2;
}

Task<Status> Qcow2Node::update_tree_refcounts(const std::vector<uint64_t>& l1, int64_t delta) {
  const uint64_t stride = l2_stride(header_);
  std::vector<uint64_t> clusters;
  // Contiguous clusters are updated as one run: a table of consecutive data clusters (the
  // common case) costs one call per run rather than one per cluster.
  uint64_t run_start = 0;
  uint64_t run_len = 0;
  for (uint64_t l1_entry : l1) {
    const uint64_t l2_offset = l1_entry & kOffsetMask;
    if (!l2_offset) continue;
    Result<std::vector<uint64_t>> l2 = co_await read_l2(l2_offset);
    if (!l2) co_return fail(l2.error());
    for (uint64_t j = 0; j < l2->size(); j += stride) {
      clusters.clear();
      host_clusters((*l2)[j], clusters);
      for (uint64_t c : clusters) {
        if (run_len && c == run_start + run_len) {
          ++run_len;
          continue;
        }
        if (run_len) {
          Status s = co_await refcounts_->update(run_start, run_len, delta);
          if (!s) co_return s;
        }
        run_start = c;
        run_len = 1;
      }
    }
    Status s = co_await refcounts_->update(l2_offset / cs_, 1, delta);
    if (!s) co_return s;
  }
  if (run_len) {
    Status s = co_await refcounts_->update(run_start, run_len, delta);
    if (!s) co_return s;
  }
  co_return ok();
}

Task<Status> Qcow2Node::recompute_copied() {
  const uint64_t stride = l2_stride(header_);
  bool l1_changed = false;
  for (uint64_t& l1_entry : l1_) {
    const uint64_t l2_offset = l1_entry & kOffsetMask;
    if (!l2_offset) continue;
    Result<std::vector<uint64_t>> l2 = co_await read_l2(l2_offset);
    if (!l2) co_return fail(l2.error());
    // §3.3: COPIED is never set for compressed clusters; without a host cluster there is
    // nothing to count. The table's own refcount comes last.
    std::vector<uint64_t> counted;  // indexes into *l2
    std::vector<uint64_t> clusters;
    for (uint64_t j = 0; j < l2->size(); j += stride) {
      if (!has_host_cluster(cluster_type((*l2)[j]))) continue;
      counted.push_back(j);
      clusters.push_back(((*l2)[j] & kOffsetMask) / cs_);
    }
    clusters.push_back(l2_offset / cs_);
    Result<std::vector<uint64_t>> refcounts = co_await refcounts_->get_many(clusters);
    if (!refcounts) co_return fail(refcounts.error());
    bool l2_changed = false;
    for (std::size_t i = 0; i < counted.size(); ++i) {
      uint64_t& entry = (*l2)[counted[i]];
      const uint64_t wanted = (*refcounts)[i] == 1 ? (entry | kCopied) : (entry & ~kCopied);
      if (wanted != entry) {
        entry = wanted;
        l2_changed = true;
      }
    }
    const uint64_t* rc = &refcounts->back();
    // A shared table is written too: its entries' clusters are shared as well, so the
    // flags written are the ones every L1 referencing it needs.
    if (l2_changed) {
      Status g = co_await guard_existing(l2_offset, cs_, l2_offset, nullptr);
      if (!g) co_return g;
      std::vector<uint8_t> raw(cs_);
      for (uint64_t i = 0; i < l2->size(); ++i) store_be64(&raw[i * 8], (*l2)[i]);
      co_await file_->debug_event(DebugEvent::kL2Update);
      Status s = co_await file_->write(l2_offset, IoVec(raw.data(), raw.size()));
      if (!s) co_return s;
    }
    const uint64_t wanted = *rc == 1 ? (l1_entry | kCopied) : (l1_entry & ~kCopied);
    if (wanted != l1_entry) {
      l1_entry = wanted;
      l1_changed = true;
    }
  }
  // §17 R2 spirit: the L2 tables are stable before the L1 entries describing them change.
  Status s = co_await file_->flush();
  if (!s) co_return s;
  if (l1_changed && !l1_.empty()) {
    std::vector<uint8_t> raw(l1_.size() * 8);
    for (uint64_t i = 0; i < l1_.size(); ++i) store_be64(&raw[i * 8], l1_[i]);
    Status g = co_await guard_existing(header_.l1_table_offset, raw.size(), 0, "active L1 table");
    if (!g) co_return g;
    co_await file_->debug_event(DebugEvent::kL1Update);
    s = co_await file_->write(header_.l1_table_offset, IoVec(raw.data(), raw.size()));
    if (!s) co_return s;
    s = co_await file_->flush();
    if (!s) co_return s;
  }
  co_return ok();
}

Task<Result<SnapshotTable>> Qcow2Node::write_snapshot_table(std::vector<Snapshot> snapshots) {
  SnapshotTable table;
  std::vector<uint8_t> raw = encode_snapshot_table(snapshots, header_.size);
  table.bytes = raw.size();
  table.snapshots = std::move(snapshots);
  uint64_t offset = 0;
  if (!table.snapshots.empty()) {
    const uint64_t n = clusters_for(raw.size(), cs_);
    Result<uint64_t> where = co_await refcounts_->allocate(n);
    if (!where) co_return fail(where.error());
    if (Status g = co_await refuse_metadata_overlap(*where, n * cs_); !g) co_return fail(g.error());
    // §17 R1: the table's refcounts are on disk before the header points at it.
    Status s = co_await refcounts_->write_dirty();
    if (!s) co_return fail(s.error());
    raw.resize(n * cs_, 0);
    s = co_await file_->write(*where, IoVec(raw.data(), raw.size()));
    if (!s) co_return fail(s.error());
    s = co_await file_->flush();
    if (!s) co_return fail(s.error());
    offset = *where;
  }
  const uint64_t old_offset = header_.snapshots_offset;
  const uint64_t old_bytes = header_.nb_snapshots ? snapshot_table_bytes_ : 0;
  header_.nb_snapshots = static_cast<uint32_t>(table.snapshots.size());
  header_.snapshots_offset = offset;
  // §17 R7: one header write switches to the complete new table.
  Status s = co_await write_header();
  if (!s) co_return fail(s.error());
  snapshot_table_bytes_ = table.bytes;
  // §17 R5: the old table is released only once nothing points at it.
  if (old_offset && old_bytes) {
    s = co_await refcounts_->update(old_offset / cs_, clusters_for(old_bytes, cs_), -1);
    if (!s) co_return fail(s.error());
  }
  co_return table;
}

}  // namespace qblock::qcow2
