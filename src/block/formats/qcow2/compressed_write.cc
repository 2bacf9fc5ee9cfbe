// Compressed writes (qcow2-format.md §6): whole clusters compressed on the loop's worker
// threads and packed byte-wise into shared host clusters.
#include <fmt/format.h>

#include <algorithm>

#include "block/formats/qcow2/compress.h"
#include "block/formats/qcow2/qcow2_node.h"
#include "qblock/driver/uring.h"

namespace qblock::qcow2 {

namespace {

// Compresses one cluster on a worker thread into `out` (left empty when the cluster does not
// shrink below a cluster, §6: compressed data ends before the cluster it starts in does).
Task<Status> compress_in_worker(EventLoop& loop, CompressionType type, const uint8_t* src,
                                std::size_t cluster, std::vector<uint8_t>& out) {
  Status result = ok();
  co_await uring::run_in_worker(loop, [&]() {
    Result<std::vector<uint8_t>> packed = compress_cluster(type, src, cluster, cluster - 1);
    if (packed) {
      out = std::move(*packed);
    } else {
      result = fail(packed.error());
    }
    return 0;
  });
  co_return result;
}

// Passes the allocation turn on when a compressed write is done with it, however it ends.
class TurnRelease {
 public:
  TurnRelease(uint64_t& turn, WaitQueue& waiters) : turn_(turn), waiters_(waiters) {}
  TurnRelease(const TurnRelease&) = delete;
  TurnRelease& operator=(const TurnRelease&) = delete;
  ~TurnRelease() {
    ++turn_;
    waiters_.wake_all();
  }

 private:
  uint64_t& turn_;
  WaitQueue& waiters_;
};

}  // namespace

Task<Result<uint64_t>> Qcow2Node::allocate_compressed(uint64_t bytes) {
  const uint64_t used = compressed_end_ % cs_;
  // The cluster the previous compressed data ended in, if it still holds it and the refcount
  // width allows one more user (a failed increment leaves the refcount as it was).
  bool shareable = false;
  if (compressed_end_ && used) {
    Result<uint64_t> rc = co_await refcounts_->get(compressed_end_ / cs_);
    shareable = rc && *rc > 0;
  }
  if (shareable && used + bytes <= cs_) {
    Status more = co_await refcounts_->update(compressed_end_ / cs_, 1, +1);
    if (more) {
      const uint64_t host = compressed_end_;
      compressed_end_ += bytes;
      co_return host;
    }
  }
  Result<uint64_t> fresh = co_await refcounts_->allocate(1);
  if (!fresh) co_return fresh;
  if (*fresh == 0) {
    Error e =
        co_await corruption("Preventing invalid allocation of compressed cluster at offset 0");
    co_return fail(e);
  }
  const uint64_t per_block = refcounts_->entries_per_block();
  const uint64_t current = compressed_end_ / cs_;
  if (shareable && used + bytes > cs_ && *fresh == (current + 1) * cs_ &&
      (current + 1) / per_block == current / per_block) {
    // The next free cluster directly follows: the data continues into it (§6 allows a
    // compressed stream to span host clusters; each holds one reference for it), as QEMU
    // packs it. Not into the first cluster of the next refcount block: QEMU (observed with
    // 7.2) starts afresh there.
    Status more = co_await refcounts_->update(current, 1, +1);
    if (more) {
      const uint64_t host = compressed_end_;
      compressed_end_ += bytes;
      co_return host;
    }
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
  const std::size_t n = (qiov.size() + cs_ - 1) / cs_;
  // The clusters as one contiguous buffer: the caller's when it is one (whole clusters),
  // else a zero-padded copy.
  std::vector<uint8_t> copy;
  const uint8_t* plain = nullptr;
  if (qiov.count() == 1 && qiov.size() % cs_ == 0) {
    plain = static_cast<const uint8_t*>(qiov.data()[0].iov_base);
  } else {
    copy.assign(n * cs_, 0);
    qiov.copy_to(0, copy.data(), qiov.size());
    plain = copy.data();
  }
  const auto type = static_cast<CompressionType>(header_.compression_type);
  // The ticket is taken before the first suspension, so requests allocate in the order
  // their callers issued them, not in the order their compression finishes.
  const uint64_t ticket = compressed_tickets_++;
  TurnRelease release(compressed_turn_, compressed_turns_);
  std::vector<std::vector<uint8_t>> packed(n);
  {
    std::vector<Task<Status>> jobs;
    jobs.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      jobs.push_back(compress_in_worker(*loop_, type, plain + i * cs_, cs_, packed[i]));
    }
    std::vector<Status> done = co_await when_all(std::move(jobs));
    // Wait for the turn even after a failure: the release passes it on only in order.
    while (compressed_turn_ != ticket) co_await compressed_turns_.wait();
    for (Status& s : done) {
      if (!s) co_return s;
    }
  }
  // In guest order: runs of compressed clusters, and the clusters that did not shrink
  // written normally between them.
  for (std::size_t i = 0; i < n;) {
    if (packed[i].empty()) {
      const uint64_t len = std::min<uint64_t>(cs_, qiov.size() - i * cs_);
      Status s = co_await do_write(offset + i * cs_, qiov.slice(i * cs_, len), {});
      if (!s) co_return s;
      ++i;
      continue;
    }
    std::size_t j = i + 1;
    while (j < n && !packed[j].empty()) ++j;
    Status s = co_await write_compressed_run(offset, packed, i, j);
    if (!s) co_return s;
    i = j;
  }
  co_return ok();
}

Task<Status> Qcow2Node::write_compressed_run(uint64_t base,
                                             const std::vector<std::vector<uint8_t>>& packed,
                                             std::size_t first, std::size_t last) {
  const uint64_t start = base + first * cs_;
  const uint64_t end = base + last * cs_;
  AsyncMutex::Guard guard = co_await lock_.lock();
  co_await wait_inflight(start, end, guard);
  std::vector<uint64_t> hosts(last - first);
  for (std::size_t i = first; i < last; ++i) {
    const uint64_t guest = base + i * cs_;
    Result<L2SliceRef> slice = co_await get_l2_slice(guest, ForWrite::kYes);
    if (!slice) co_return fail(slice.error());
    if (entry_references_host((*slice)->entries[index_in_slice(guest)])) {
      co_return fail(Error::io("compressed write over an allocated cluster"));
    }
    slice->reset();
    co_await file_->debug_event(DebugEvent::kClusterAllocBytes);
    Result<uint64_t> host = co_await allocate_compressed(packed[i].size());
    if (!host) co_return fail(host.error());
    if (Status g = co_await refuse_metadata_overlap(*host, packed[i].size()); !g) co_return g;
    hosts[i - first] = *host;
  }
  Status s = ok();
  {
    FenceRegistration fence(inflight_, std::make_shared<AllocationFence>(*loop_, start, end));
    guard.unlock();
    // Streams that follow each other in the file go out in one write.
    for (std::size_t i = first; i < last && s;) {
      IoVec v(const_cast<uint8_t*>(packed[i].data()), packed[i].size());
      std::size_t j = i + 1;
      while (j < last && hosts[j - first] == hosts[j - 1 - first] + packed[j - 1].size()) {
        v.append(const_cast<uint8_t*>(packed[j].data()), packed[j].size());
        ++j;
      }
      co_await file_->debug_event(DebugEvent::kWriteCompressed);
      s = co_await file_->write(hosts[i - first], std::move(v));
      i = j;
    }
    guard = co_await lock_.lock();
  }
  if (!s) co_return s;
  for (std::size_t i = first; i < last; ++i) {
    const uint64_t guest = base + i * cs_;
    Result<L2SliceRef> linked = co_await get_l2_slice(guest, ForWrite::kYes);
    if (!linked) co_return fail(linked.error());
    const uint64_t index = index_in_slice(guest);
    (*linked)->entries[index] =
        encode_compressed(hosts[i - first], packed[i].size(), header_.cluster_bits);
    // §7.1: a compressed cluster's subcluster bitmap is 0 (zero bits included).
    if (!(*linked)->bitmaps.empty()) (*linked)->bitmaps[index] = 0;
    s = co_await update_l2_entries(**linked, index, 1);
    if (!s) co_return s;
  }
  co_return ok();
}

}  // namespace qblock::qcow2
