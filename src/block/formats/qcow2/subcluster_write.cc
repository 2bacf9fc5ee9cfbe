// Guest writes into images with extended L2 entries (qcow2-format.md §7): one cluster per
// step. A COPIED cluster is written in place, copying on write only the partly written
// subclusters that are not allocated yet; any other cluster gets a new host cluster holding
// the written subclusters (and, when it replaces a shared or compressed one, the subclusters
// that held data), the rest left unallocated so that they keep reading through to the
// backing file, as QEMU 7.2 does. The subcluster bitmap is linked after the data, under the
// cluster's allocation fence.
#include <fmt/format.h>

#include <bit>

#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

namespace {

// The bitmap bits a write of [from, to) of a cluster (byte offsets inside it) sets and
// clears: every subcluster it touches becomes allocated.
struct BitmapChange {
  uint64_t set = 0;
  uint64_t clear = 0;
  uint64_t apply(uint64_t bitmap) const { return (bitmap | set) & ~clear; }
};
BitmapChange written_subclusters(uint64_t from, uint64_t to, uint64_t subcluster_size) {
  const uint32_t first = static_cast<uint32_t>(from / subcluster_size);
  const uint32_t count =
      static_cast<uint32_t>((to + subcluster_size - 1) / subcluster_size) - first;
  return BitmapChange{alloc_range(first, count), zero_range(first, count)};
}

// True if a write into the cluster with this entry needs a new host cluster (QEMU's
// cluster_needs_new_alloc): anything but a COPIED cluster with a host offset.
bool needs_new_cluster(uint64_t entry) {
  return (entry & kCompressedFlag) || !(entry & kOffsetMask) || !(entry & kCopied);
}

}  // namespace

Task<Result<uint64_t>> Qcow2Node::write_subclusters(uint64_t guest, IoVec data,
                                                    AsyncMutex::Guard guard,
                                                    std::vector<JoinedPiece>& joined) {
  const uint64_t scs = subcluster_size();
  const uint64_t cluster = guest - guest % cs_;
  if (FenceRange* found = find_fence(inflight_, cluster, cluster + cs_)) {
    // Another request is filling or re-linking this cluster. Once its host cluster holds the
    // final contents of the subclusters it writes (`ready`), a write whose partly written
    // subclusters are among those goes straight in, counted among its writers, and its
    // subclusters are linked with the others (block-semantics.md §6 at subcluster
    // granularity). Otherwise wait for it, then plan again.
    std::shared_ptr<AllocationFence> fence =
        static_cast<AllocationFence*>(found)->shared_from_this();
    const uint64_t in = guest % cs_;
    const uint64_t end = std::min(cs_, in + data.size());
    if (fence->ready && !fence->subcluster_bits.empty() && fence->start <= cluster &&
        cluster + cs_ <= fence->end) {
      uint64_t& filled = fence->subcluster_bits[(cluster - fence->start) / cs_];
      const uint32_t first_sc = static_cast<uint32_t>(in / scs);
      const uint32_t last_sc = static_cast<uint32_t>((end - 1) / scs);
      if ((in % scs == 0 || (filled >> first_sc & 1)) &&
          (end % scs == 0 || (filled >> last_sc & 1))) {
        filled |= alloc_range(first_sc, last_sc - first_sc + 1);
        WriterToken token(*fence);
        const uint64_t host = fence->host + (cluster - fence->start) + in;
        guard.unlock();
        co_await file_->debug_event(DebugEvent::kWriteAio);
        IoVec part = data.slice(0, end - in);
        Status s = co_await write_payload(guest, host, std::move(part));
        token.release();
        if (!s) co_return fail(s.error());
        joined.push_back(JoinedPiece{std::move(fence), guest, end - in});
        co_return end - in;
      }
    }
    guard.unlock();
    co_await fence->done.wait();
    co_return uint64_t{0};
  }
  Result<L2SliceRef> found = co_await get_l2_slice(guest, ForWrite::kYes);
  if (!found) co_return fail(found.error());
  L2SliceRef slice = std::move(*found);
  const uint64_t index = index_in_slice(guest);
  const uint64_t entry = slice->entries[index];
  const bool in_place = !needs_new_cluster(entry);
  // The clusters [index, index + count) this step writes: one in place, or a run that all
  // needs new host clusters, allocated in one piece (QEMU's handle_alloc).
  uint64_t count = 1;
  const uint64_t in = guest % cs_;
  if (!in_place) {
    while (count * cs_ - in < data.size() && index + count < slice->entries.size() &&
           needs_new_cluster(slice->entries[index + count]) &&
           !find_fence(inflight_, cluster + count * cs_, cluster + (count + 1) * cs_)) {
      ++count;
    }
  }
  const uint64_t last = index + count - 1;
  const uint64_t end = std::min(count * cs_, in + data.size());  // from `cluster`
  const uint64_t last_start = (count - 1) * cs_;                 // of the last cluster
  const uint32_t first_sc = static_cast<uint32_t>(in / scs);
  const uint32_t last_sc = static_cast<uint32_t>((end - last_start - 1) / scs);
  const uint64_t first_bitmap = slice->bitmaps[index];
  const uint64_t last_entry = slice->entries[last];
  const uint64_t last_bitmap = slice->bitmaps[last];
  const SubclusterType first_type = subcluster_type(entry, first_bitmap, first_sc);
  const SubclusterType last_type = subcluster_type(last_entry, last_bitmap, last_sc);
  for (const uint64_t i : {index, last}) {
    const uint64_t e = slice->entries[i];
    const bool invalid = (i == index ? first_type : last_type) == SubclusterType::kInvalid;
    const uint64_t host = (e & kCompressedFlag) ? 0 : e & kOffsetMask;
    if (!invalid && host % cs_ == 0) continue;
    const uint64_t l2_index = slice->first_index + i;
    const std::string index_text = l2_index ? fmt::format("{:#x}", l2_index) : "0";
    std::string reason =
        invalid ? fmt::format("Invalid cluster entry found  (L2 offset: {:#x}, L2 index: {})",
                              slice->table_offset, index_text)
                : fmt::format(
                      "Cluster allocation offset {:#x} unaligned (L2 offset: {:#x}, L2 index: "
                      "{:#x})",
                      host, slice->table_offset, l2_index);
    Error e2 = co_await corruption(std::move(reason));
    co_return fail(e2);
  }

  // [from, to) from `cluster`: what the step writes, the data and the COW regions around it,
  // as QEMU computes them (calculate_l2_meta).
  uint64_t from = in;
  uint64_t to = end;
  if (in_place) {
    // Subclusters that hold data already need no COW.
    if (in % scs && first_type != SubclusterType::kNormal) from = first_sc * scs;
    if (end % scs && last_type != SubclusterType::kNormal) to = (last_sc + 1) * scs;
  } else {
    // A compressed cluster is copied whole; a shared one with its allocated subclusters;
    // otherwise only the partly written subclusters.
    const uint32_t first_alloc = static_cast<uint32_t>(first_bitmap & kAllAllocBits);
    const uint32_t last_alloc = static_cast<uint32_t>(last_bitmap & kAllAllocBits);
    if (entry & kCompressedFlag) {
      from = 0;
    } else if (entry & kOffsetMask) {
      from = std::min<uint64_t>(first_sc, std::countr_zero(first_alloc)) * scs;
    } else {
      from = first_sc * scs;
    }
    if (last_entry & kCompressedFlag) {
      to = last_start + cs_;
    } else if (last_entry & kOffsetMask) {
      to = last_start + cs_ -
           std::min<uint64_t>(kSubclusters - last_sc - 1, std::countl_zero(last_alloc)) * scs;
    } else {
      to = last_start + (last_sc + 1) * scs;
    }
  }
  const uint64_t old_host = entry & kOffsetMask;
  const BitmapChange first_change = written_subclusters(from, std::min(to, cs_), scs);

  if (in_place && from == in && to == end && first_change.apply(first_bitmap) == first_bitmap) {
    // A plain in-place write; it continues over following clusters that lie right after this
    // one on the host and already hold data where the write goes.
    uint64_t bytes = end - in;
    for (uint64_t i = index + 1; bytes < data.size() && i < slice->entries.size(); ++i) {
      const uint64_t e = slice->entries[i];
      const uint64_t g = cluster + (i - index) * cs_;
      if (needs_new_cluster(e) || (e & kOffsetMask) != old_host + (i - index) * cs_ ||
          find_fence(inflight_, g, g + cs_)) {
        break;
      }
      const uint64_t piece = std::min(cs_, data.size() - bytes);
      const uint64_t need = alloc_range(0, static_cast<uint32_t>(piece / scs));
      if (piece % scs || (slice->bitmaps[i] & need) != need) break;
      bytes += piece;
    }
    const uint64_t host = old_host + in;
    Status g = co_await guard_existing(host, bytes, 0, nullptr, PastEof::kIfAllocated);
    if (!g) co_return fail(g.error());
    slice.reset();
    guard.unlock();
    co_await file_->debug_event(DebugEvent::kWriteAio);
    IoVec part = data.slice(0, bytes);
    Status s = co_await write_payload(guest, host, std::move(part));
    if (!s) co_return fail(s.error());
    co_return bytes;
  }

  uint64_t host = old_host;
  if (!in_place) {
    co_await file_->debug_event(DebugEvent::kClusterAlloc);
    Result<uint64_t> where = co_await refcounts_->allocate(count);
    if (!where) co_return fail(where.error());
    if (*where == 0) {
      Error e = co_await corruption("Preventing invalid allocation of cluster at offset 0");
      co_return fail(e);
    }
    host = *where;
    if (Status g = co_await refuse_metadata_overlap(host, count * cs_); !g) {
      co_return fail(g.error());
    }
  } else {
    Status g = co_await guard_existing(host + from, to - from, 0, nullptr, PastEof::kIfAllocated);
    if (!g) co_return fail(g.error());
  }
  // The clusters are fenced until their entries and bitmaps are linked: nobody else writes,
  // zeroes or discards them meanwhile, and readers keep seeing the old mapping.
  auto fence = std::make_shared<AllocationFence>(*loop_, cluster, cluster + count * cs_);
  FenceRegistration registration(inflight_, fence);
  fence->subcluster_bits.resize(count);
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t c_from = std::max(from, i * cs_) - i * cs_;
    const uint64_t c_to = std::min(to, (i + 1) * cs_) - i * cs_;
    // In place, the subclusters that hold data already are final too.
    fence->subcluster_bits[i] =
        written_subclusters(c_from, c_to, scs).set | (in_place ? first_bitmap & kAllAllocBits : 0);
  }
  slice.reset();
  const uint64_t head = in - from;
  const uint64_t tail = to - end;
  // block-semantics.md §5.2, as QEMU's handle_alloc_space: COW regions that read as zeros
  // are not copied; the written range is zeroed efficiently and only the data goes out.
  bool zeroed = false;
  if ((head || tail) && zero_cow_ && !encrypted()) {
    Result<bool> z = co_await range_reads_zero(cluster + from, head);
    if (!z) co_return fail(z.error());
    if (*z) {
      z = co_await range_reads_zero(cluster + end, tail);
      if (!z) co_return fail(z.error());
    }
    if (*z) {
      guard.unlock();
      co_await file_->debug_event(DebugEvent::kClusterAllocSpace);
      Status zs = co_await file_->write_zeroes(host + from, to - from, kAllocate);
      zeroed = static_cast<bool>(zs);
      if (!zs && zs.error().errnum() != ENOTSUP && zs.error().errnum() != EAGAIN) {
        co_return fail(zs.error());
      }
    }
  }
  guard.unlock();  // safe twice

  Status s = ok();
  if (zeroed || (!head && !tail)) {
    co_await file_->debug_event(DebugEvent::kWriteAio);
    IoVec part = data.slice(0, end - in);
    s = co_await write_payload(guest, host + in, std::move(part));
  } else {
    // The COW regions hold what the guest sees there now (backing data, zeros, old data).
    AlignedBuffer head_buf(head, 4096), tail_buf(tail, 4096);
    if (head) {
      co_await file_->debug_event(DebugEvent::kCowRead);
      s = co_await do_read(cluster + from, IoVec(head_buf.data(), head), RequestFlags{});
      if (!s) co_return fail(s.error());
    }
    if (tail) {
      co_await file_->debug_event(DebugEvent::kCowRead);
      s = co_await do_read(cluster + end, IoVec(tail_buf.data(), tail), RequestFlags{});
      if (!s) co_return fail(s.error());
    }
    if (Status u = check_usable(); !u) co_return fail(u.error());
    IoVec merged;
    if (head) merged.append(head_buf.data(), head);
    merged.append(data.slice(0, end - in));
    if (tail) merged.append(tail_buf.data(), tail);
    co_await file_->debug_event(DebugEvent::kCowWrite);
    loop().submit_promptly();
    s = co_await write_payload(cluster + from, host + from, std::move(merged));
  }
  if (!s) co_return fail(s.error());
  // Others may write into the subclusters that are final now.
  fence->mark_ready(host);

  // §6: the entries and bitmaps point at the data only once it, and every joined write, is
  // written.
  co_await fence->wait_for_writers();
  guard = co_await lock_.lock();
  if (Status u = check_usable(); !u) co_return fail(u.error());
  while (fence->writers) {  // joined while we waited for the lock
    guard.unlock();
    co_await fence->wait_for_writers();
    guard = co_await lock_.lock();
  }
  Result<L2SliceRef> again = co_await get_l2_slice(guest, ForWrite::kYes);
  if (!again) co_return fail(again.error());
  L2Slice& linked = **again;
  std::vector<uint64_t> old(count);
  for (uint64_t i = 0; i < count; ++i) {
    old[i] = linked.entries[index + i];
    if (!in_place) linked.entries[index + i] = (host + i * cs_) | kCopied;
    const uint64_t bits = fence->subcluster_bits[i];
    linked.bitmaps[index + i] = BitmapChange{bits, bits << 32}.apply(linked.bitmaps[index + i]);
  }
  s = co_await update_l2_entries(linked, index, count);
  if (!s) co_return fail(s.error());
  for (uint64_t i = 0; i < count && !in_place; ++i) {
    if (!entry_references_host(old[i])) continue;
    // As QEMU's pass-discard-other=off: the replaced clusters are not discarded.
    s = co_await queue_data_free(old[i], DiscardType::kOther, host, count * cs_);
    if (!s) co_return fail(s.error());
  }
  fence->linked = true;
  co_return end - in;
}

}  // namespace qblock::qcow2
