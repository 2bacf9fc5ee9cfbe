// Compressed writes (qcow2-format.md §6): whole clusters compressed one by one and packed
// byte-wise into shared host clusters.
#include <fmt/format.h>

#include <algorithm>

#include "block/formats/qcow2/compress.h"
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

Task<Result<uint64_t>> Qcow2Node::allocate_compressed(uint64_t bytes) {
  const uint64_t used = compressed_end_ % cs_;
  if (compressed_end_ && used && used + bytes <= cs_) {
    // Share the cluster the previous compressed data went into, if it still holds it and
    // the refcount width allows one more user.
    Result<uint64_t> rc = co_await refcounts_->get(compressed_end_ / cs_);
    if (rc && *rc > 0) {
      Status more = co_await refcounts_->update(compressed_end_ / cs_, 1, +1);
      if (more) {
        const uint64_t host = compressed_end_;
        compressed_end_ += bytes;
        co_return host;
      }
    }
  }
  Result<uint64_t> fresh = co_await refcounts_->allocate(1);
  if (!fresh) co_return fresh;
  if (*fresh == 0) {
    Error e =
        co_await corruption("Preventing invalid allocation of compressed cluster at offset 0");
    co_return fail(e);
  }
  compressed_end_ = *fresh + bytes;
  co_return *fresh;
}

Task<Status> Qcow2Node::write_compressed(uint64_t offset, IoVec qiov) {
  // QEMU's rules (observed with qemu-io 7.2): cluster-aligned start, whole clusters except
  // the last one of the image, and never over an allocated cluster (EIO).
  if (offset % cs_ || (qiov.size() % cs_ && offset + qiov.size() != header_.size)) {
    co_return fail(Error::invalid());
  }
  std::vector<uint8_t> plain(cs_);
  for (uint64_t pos = 0; pos < qiov.size(); pos += cs_) {
    const uint64_t guest = offset + pos;
    const uint64_t len = std::min<uint64_t>(cs_, qiov.size() - pos);
    std::fill(plain.begin(), plain.end(), 0);
    qiov.copy_to(pos, plain.data(), len);
    // Compressed data must end before the cluster it starts in does (one host cluster).
    Result<std::vector<uint8_t>> packed = compress_cluster(
        static_cast<CompressionType>(header_.compression_type), plain.data(), cs_, cs_ - 1);
    if (!packed) co_return fail(packed.error());
    if (packed->empty()) {
      Status s = co_await do_write(guest, qiov.slice(pos, len), {});
      if (!s) co_return s;
      continue;
    }
    AsyncMutex::Guard guard = co_await lock_.lock();
    co_await wait_inflight(guest, guest + cs_, guard);
    Result<L2SliceRef> slice = co_await get_l2_slice(guest, ForWrite::kYes);
    if (!slice) co_return fail(slice.error());
    if (entry_references_host((*slice)->entries[index_in_slice(guest)])) {
      co_return fail(Error::io("compressed write over an allocated cluster"));
    }
    slice->reset();
    co_await file_->debug_event(DebugEvent::kClusterAllocBytes);
    Result<uint64_t> host = co_await allocate_compressed(packed->size());
    if (!host) co_return fail(host.error());
    if (Status g = co_await refuse_metadata_overlap(*host, packed->size()); !g) co_return g;
    Status s = ok();
    {
      FenceRegistration fence(inflight_,
                              std::make_shared<AllocationFence>(*loop_, guest, guest + cs_));
      guard.unlock();
      co_await file_->debug_event(DebugEvent::kWriteCompressed);
      s = co_await file_->write(*host, IoVec(packed->data(), packed->size()));
      guard = co_await lock_.lock();
    }
    if (!s) co_return s;
    Result<L2SliceRef> linked = co_await get_l2_slice(guest, ForWrite::kYes);
    if (!linked) co_return fail(linked.error());
    const uint64_t index = index_in_slice(guest);
    (*linked)->entries[index] = encode_compressed(*host, packed->size(), header_.cluster_bits);
    s = co_await update_l2_entries(**linked, index, 1);
    if (!s) co_return s;
  }
  co_return ok();
}

}  // namespace qblock::qcow2
