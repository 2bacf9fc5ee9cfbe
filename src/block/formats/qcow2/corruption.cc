// Overlap checks (qcow2-format.md §13) and corruption events (§12): what keeps a damaged
// image from being damaged further.
#include <fmt/format.h>

#include "base/byte_order.h"
#include "block/formats/qcow2/qcow2_node.h"
#include "qblock/messages.h"

namespace qblock::qcow2 {

const char* Qcow2Node::overlapping_metadata(uint64_t offset, uint64_t bytes, uint64_t self,
                                            const char* ignore) const {
  const uint64_t end = offset + bytes;
  auto hits = [&](uint64_t start, uint64_t len) {
    return len && start < end && offset < start + len;
  };
  if (hits(0, cs_)) return "qcow2_header";
  if (!ignore && hits(header_.l1_table_offset, uint64_t{header_.l1_size} * 8)) {
    return "active L1 table";
  }
  if (hits(header_.refcount_table_offset, uint64_t{header_.refcount_table_clusters} * cs_)) {
    return "refcount table";
  }
  if (refcounts_->overlaps_block(offset, bytes)) return "refcount block";
  auto it = l2_offsets_.lower_bound(offset >= cs_ ? offset - cs_ + 1 : 0);
  for (; it != l2_offsets_.end() && *it < end; ++it) {
    if (*it != self && hits(*it, cs_)) return "active L2 table";
  }
  if (hits(header_.snapshots_offset, snapshot_table_bytes_)) return "snapshot table";
  for (const auto& [l1_offset, l1_bytes] : inactive_l1_) {
    if (hits(l1_offset, l1_bytes)) return "inactive L1 table";
  }
  return nullptr;
}

void Qcow2Node::set_snapshot_table(const SnapshotTable& table) {
  snapshot_table_bytes_ = table.bytes;
  inactive_l1_.clear();
  for (const Snapshot& snap : table.snapshots) {
    inactive_l1_.emplace_back(snap.l1_table_offset, uint64_t{snap.l1_size} * 8);
  }
}

Task<Status> Qcow2Node::queue_data_free(uint64_t entry, DiscardType type, uint64_t keep,
                                        uint64_t keep_bytes) {
  // §10: data clusters in a data file hold no reference in the refcounts; the cluster is
  // discarded now, not at the next flush, when a write may have put new data there.
  if (has_data_file() && !(entry & kCompressedFlag)) {
    co_return co_await release_entry(entry, type);
  }
  uint64_t host = entry & kOffsetMask;
  uint64_t bytes = cs_;
  if (cluster_type(entry) == ClusterType::kCompressed) {
    const CompressedDescriptor d = decode_compressed(entry, header_.cluster_bits);
    host = d.host;
    bytes = d.max_bytes();
  }
  if (overlapping_metadata(host, bytes)) co_return ok();
  if (keep_bytes && host < keep + keep_bytes && keep < host + bytes) co_return ok();
  // A reference the refcounts do not count: the cluster counts as free, so it may be handed
  // out before this free is applied, which would then release the new user's cluster.
  std::vector<uint64_t> clusters;
  host_clusters(entry, clusters);
  for (uint64_t c : clusters) {
    Result<uint64_t> rc = co_await refcounts_->get(c);
    if (!rc) co_return fail(rc.error());
    if (*rc == 0) co_return ok();
  }
  queue_free(entry, type);
  co_return ok();
}

Task<Status> Qcow2Node::refuse_metadata_overlap(uint64_t offset, uint64_t bytes, uint64_t self,
                                                const char* ignore) {
  if (const char* what = overlapping_metadata(offset, bytes, self, ignore)) {
    Error e = co_await corruption(
        fmt::format("Preventing invalid write on metadata (overlaps with {})", what));
    co_return fail(e);
  }
  co_return ok();
}

Task<Status> Qcow2Node::guard_existing(uint64_t offset, uint64_t bytes, uint64_t self,
                                       const char* ignore, PastEof past_eof) {
  Status s = co_await refuse_metadata_overlap(offset, bytes, self, ignore);
  if (!s) co_return s;
  const uint64_t file_end = (file_->length() + cs_ - 1) / cs_ * cs_;
  bool beyond = offset + bytes > file_end;
  if (beyond && past_eof == PastEof::kIfAllocated) {
    // A truncated file: the refcounts still count the clusters past its end, and QEMU writes
    // them (growing the file). A damaged pointer far away lands on refcount 0.
    beyond = false;
    for (uint64_t c = std::max(offset, file_end) / cs_; c < (offset + bytes + cs_ - 1) / cs_; ++c) {
      Result<uint64_t> rc = co_await refcounts_->get(c);
      if (!rc) co_return fail(rc.error());
      if (*rc == 0) {
        beyond = true;
        break;
      }
    }
  }
  if (beyond) {
    Error e = co_await corruption(fmt::format(
        "Preventing invalid write at offset {:#x} beyond the end of the image file", offset));
    co_return fail(e);
  }
  co_return ok();
}

Task<Error> Qcow2Node::corruption(std::string reason, bool fatal) {
  const bool mark = fatal && !read_only();
  if (!corruption_reported_) {
    corruption_reported_ = true;
    if (mark) {
      emit_message(MessageLevel::kError, "qcow2: Marking image as corrupt: " + reason +
                                             "; further corruption events will be suppressed");
    } else {
      emit_message(MessageLevel::kWarning,
                   "qcow2: Image is corrupt: " + reason +
                       "; further non-fatal corruption events will be suppressed");
    }
  }
  if (mark) {
    broken_ = true;
    if (header_.version >= 3 && !(header_.incompatible_features & kIncompatCorrupt)) {
      header_.incompatible_features |= kIncompatCorrupt;
      uint8_t raw[8];
      store_be64(raw, header_.incompatible_features);
      if (co_await file_->write(72, IoVec(raw, 8))) (void)co_await file_->flush();
    }
  }
  co_return Error::with_message(EIO, "qcow2: " + reason);
}

}  // namespace qblock::qcow2
