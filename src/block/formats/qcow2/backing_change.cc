// Whole-image operations of qemu-img commit and rebase on a qcow2 node (qblock/jobs.h):
// rewriting the backing file name in the header, and emptying the image so that it reads
// from its backing file again.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "base/byte_order.h"
#include "block/formats/qcow2/l2_entry.h"
#include "block/formats/qcow2/qcow2.h"
#include "block/formats/qcow2/qcow2_node.h"
#include "block/formats/qcow2/refcount.h"

namespace qblock::qcow2 {

Task<Status> Qcow2Node::change_backing_file(std::string backing_file, std::string backing_format) {
  if (Status u = check_usable(); !u) co_return u;
  if (read_only()) co_return fail(Error::from_errno(EPERM));
  // qcow2-format.md §2.1: the name is at most 1023 bytes; a format names a file's format.
  if (backing_file.size() > 1023 || (backing_file.empty() && !backing_format.empty())) {
    co_return fail(Error::from_errno(EINVAL));
  }
  AsyncMutex::Guard guard = co_await lock_.lock();
  // The data copied for a rebase is stable before the header names the new backing file:
  // a crash in between leaves the old name over data that reads the same through either.
  Status s = co_await flush_metadata();
  if (!s) co_return s;
  s = co_await file_->flush();
  if (!s) co_return s;
  Header changed = header_;
  changed.backing_file = std::move(backing_file);
  changed.backing_format = std::move(backing_format);
  // §4.4: the name follows the extensions in cluster 0; what does not fit is refused before
  // anything is written.
  Result<std::vector<uint8_t>> raw = serialize_header(changed);
  if (!raw) co_return fail(Error::from_errno(EINVAL));
  header_ = std::move(changed);
  // The whole cluster, as QEMU rewrites it: a shorter name or a dropped extension leaves no
  // stale bytes of the old ones behind.
  raw->resize(cs_, 0);
  s = co_await file_->write(0, IoVec(raw->data(), raw->size()));
  if (!s) co_return s;
  co_return co_await file_->flush();
}

Task<Status> Qcow2Node::make_empty() {
  if (Status u = check_usable(); !u) co_return u;
  if (read_only()) co_return fail(Error::from_errno(EPERM));
  const uint64_t end = header_.size;
  AsyncMutex::Guard guard = co_await lock_.lock();
  co_await wait_inflight(0, (end + cs_ - 1) / cs_ * cs_, guard);
  const uint64_t l1_clusters = (uint64_t{header_.l1_size} * 8 + cs_ - 1) / cs_;
  // What qemu-img 7.2 does where nothing but the active tables holds clusters (v3 for the
  // dirty bit; no snapshots, bitmaps, encryption or external data file; the first four
  // structures counted by one refcount block): the image is rebuilt as a fresh one.
  if (header_.version >= 3 && header_.nb_snapshots == 0 && !header_.bitmaps &&
      header_.crypt_method == 0 && !has_data_file() && !header_.crypto_header &&
      3 + l1_clusters <= cs_ * 8 / header_.refcount_bits()) {
    co_return co_await rebuild_empty(l1_clusters);
  }
  // Unlike a guest discard (zero clusters on v3), every entry becomes 0: unallocated, so the
  // backing file shows through (§3.3; with extended L2 entries the bitmap too, §7). The
  // clusters are freed once the entries are stable.
  for (uint64_t pos = 0; pos < end;) {
    const uint64_t first = index_in_slice(pos);
    const uint64_t count = std::min(l2_cache_.slice_entries() - first, (end - pos + cs_ - 1) / cs_);
    if (!(l1_index(pos) < l1_.size() && l1_[l1_index(pos)] & kOffsetMask)) {
      pos += count * cs_;  // no L2 table: nothing mapped
      continue;
    }
    Result<L2SliceRef> slice = co_await get_l2_slice(pos, ForWrite::kYes);
    if (!slice) co_return fail(slice.error());
    std::vector<uint64_t> to_free;
    bool changed = false;
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t& e = (*slice)->entries[first + i];
      std::vector<uint64_t>& bitmaps = (*slice)->bitmaps;
      if (e == 0 && (bitmaps.empty() || bitmaps[first + i] == 0)) continue;
      if (references_data(e)) to_free.push_back(e);
      e = 0;
      if (!bitmaps.empty()) bitmaps[first + i] = 0;
      changed = true;
    }
    if (changed) {
      Status s = co_await update_l2_entries(**slice, first, count);
      if (!s) co_return s;
    }
    for (uint64_t e : to_free) {
      Status s = co_await queue_data_free(e, DiscardType::kRequest);
      if (!s) co_return s;
    }
    pos += count * cs_;
  }
  co_return ok();
}

Task<Status> Qcow2Node::rebuild_empty(uint64_t l1_clusters) {
  // Everything queued reaches the disk first, so that nothing below refers to the old layout.
  Status s = co_await flush_metadata();
  if (!s) co_return s;
  // §2.3 dirty bit: until it is cleared the refcounts need not be right, and an open repairs
  // them. The header's L1 pointer only ever leads to zeros or to the old, intact table: the
  // old table is zeroed in place, then the new one is zeroed before the header points at it,
  // and only then are clusters 1 and 2 (which the old tables may still occupy) rewritten.
  const uint64_t old_incompatible = header_.incompatible_features;
  header_.incompatible_features |= kIncompatDirty;
  s = co_await write_header();
  if (!s) co_return s;
  std::vector<uint8_t> zeros(std::max<uint64_t>(uint64_t{header_.l1_size} * 8, l1_clusters * cs_),
                             0);
  if (header_.l1_size) {
    s = co_await file_->write(header_.l1_table_offset,
                              IoVec(zeros.data(), uint64_t{header_.l1_size} * 8));
    if (!s) co_return s;
    s = co_await file_->flush();
    if (!s) co_return s;
  }
  if (l1_clusters) {
    s = co_await file_->write(3 * cs_, IoVec(zeros.data(), l1_clusters * cs_));
    if (!s) co_return s;
    s = co_await file_->flush();
    if (!s) co_return s;
  }
  header_.l1_table_offset = 3 * cs_;
  s = co_await write_header();
  if (!s) co_return s;
  // Cluster 1: the refcount table, whose one entry names cluster 2: the refcount block that
  // counts clusters 0 to 3 + l1_clusters - 1 once each (§5), as a new image has them.
  std::vector<uint8_t> tables(2 * cs_, 0);
  store_be64(tables.data(), 2 * cs_);
  for (uint64_t i = 0; i < 3 + l1_clusters; ++i) {
    write_refcount_entry(tables.data() + cs_, header_.refcount_bits(), i, 1);
  }
  s = co_await file_->write(cs_, IoVec(tables.data(), tables.size()));
  if (!s) co_return s;
  s = co_await file_->flush();
  if (!s) co_return s;
  header_.refcount_table_offset = cs_;
  header_.refcount_table_clusters = 1;
  s = co_await write_header();
  if (!s) co_return s;
  s = co_await file_->truncate((3 + l1_clusters) * cs_, PreallocMode::kOff, Exact::kNo);
  if (!s) co_return s;
  s = co_await file_->flush();
  if (!s) co_return s;
  // The in-memory state follows the new layout.
  for (uint64_t offset : l2_offsets_) l2_cache_.drop_table(offset);
  l2_offsets_.clear();
  std::fill(l1_.begin(), l1_.end(), 0);
  compressed_end_ = 0;
  replace_refcounts();
  s = co_await refcounts_->load();
  if (!s) co_return s;
  header_.incompatible_features = old_incompatible & ~kIncompatDirty;
  co_return co_await write_header();
}

Task<Status> change_qcow2_backing_file(BlockNode& node, std::string backing_file,
                                       std::string backing_format) {
  auto* qcow2 = dynamic_cast<Qcow2Node*>(&node);
  if (!qcow2) co_return fail(Error::unsupported());
  Task<Status> change =
      qcow2->change_backing_file(std::move(backing_file), std::move(backing_format));
  co_return co_await std::move(change);
}

Task<Status> make_qcow2_empty(BlockNode& node) {
  auto* qcow2 = dynamic_cast<Qcow2Node*>(&node);
  if (!qcow2) co_return fail(Error::unsupported());
  Task<Status> empty = qcow2->make_empty();
  co_return co_await std::move(empty);
}

}  // namespace qblock::qcow2
