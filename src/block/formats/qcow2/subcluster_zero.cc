// Write-zeroes on images with extended L2 entries (qcow2-format.md §7): subclusters become
// zero through their bitmap's zero bits (no data written, the host cluster kept), whole
// clusters as zero_clusters() makes them. Requests that do not cover whole subclusters are
// zeroed only where the rest of the subcluster reads as zeros already, as QEMU 7.2 does.
#include "block/formats/qcow2/qcow2_node.h"
#include "qblock/chain_status.h"

namespace qblock::qcow2 {

Task<Result<bool>> Qcow2Node::range_reads_zero(uint64_t guest, uint64_t bytes) {
  // As QEMU's is_zero: clamped to the image, extent by extent, zero flags asked for
  // (WantZero::kYes) down the backing chain.
  if (guest >= length()) co_return true;
  bytes = std::min(bytes, length() - guest);
  while (bytes > 0) {
    Result<Mapping> m = co_await map(guest, bytes);
    if (!m) co_return fail(m.error());
    if (m->type == ClusterType::kNormal || m->type == ClusterType::kCompressed) co_return false;
    if (m->type == ClusterType::kUnallocated && backing_ && guest < backing_->length()) {
      // Beyond the backing file's end the image reads as zeros.
      const uint64_t end = guest + std::min(m->bytes, backing_->length() - guest);
      for (uint64_t pos = guest; pos < end;) {
        Task<Result<ChainStatus>> ask = chain_status(backing_, pos, end - pos, ChainStatusQuery{});
        Result<ChainStatus> st = co_await std::move(ask);
        if (!st) co_return fail(st.error());
        if (st->defined && !(st->status.flags & kStatusZero)) co_return false;
        if (st->status.bytes == 0) co_return false;
        pos += st->status.bytes;
      }
    }
    guest += m->bytes;
    bytes -= m->bytes;
  }
  co_return true;
}

Task<Status> Qcow2Node::write_zeroes_subclusters(uint64_t offset, uint64_t bytes,
                                                 RequestFlags flags) {
  const uint64_t scs = subcluster_size();
  AsyncMutex::Guard guard = co_await lock_.lock();
  // Clusters being filled by a write are not touched until it has linked them.
  co_await wait_inflight(offset - offset % cs_, offset + bytes, guard);
  const uint64_t head = offset % scs;
  const uint64_t tail = offset + bytes == header_.size ? 0 : (scs - (offset + bytes) % scs) % scs;
  if (head || tail) {
    // The generic layer split the request at subcluster boundaries: this is one piece of a
    // single subcluster. It becomes a zero subcluster only if the rest of it reads as zeros.
    Result<bool> z = co_await range_reads_zero(offset - head, head);
    if (!z) co_return fail(z.error());
    if (*z) {
      z = co_await range_reads_zero(offset + bytes, tail);
      if (!z) co_return fail(z.error());
    }
    if (!*z) co_return fail(Error::unsupported());
    offset -= head;
    bytes = scs;
    Result<Mapping> m = co_await map(offset, bytes);
    if (!m) co_return fail(m.error());
    if (m->type != ClusterType::kUnallocated && m->type != ClusterType::kZeroPlain &&
        m->type != ClusterType::kZeroAlloc) {
      co_return fail(Error::unsupported());
    }
  }
  co_return co_await zeroize_subclusters(offset, offset + bytes, flags);
}

Task<Status> Qcow2Node::zeroize_subclusters(uint64_t start, uint64_t end, RequestFlags flags) {
  const uint64_t scs = subcluster_size();
  // The subclusters of the first and the last cluster the range covers only in part.
  const uint64_t head = std::min(end, (start + cs_ - 1) / cs_ * cs_) - start;
  const uint64_t whole_start = start + head;
  const uint64_t tail = end >= header_.size ? 0 : end - std::max(whole_start, end - end % cs_);
  const uint64_t whole_end = end - tail;
  // One cluster's subclusters [guest, guest + len) zeroed through its bitmap.
  struct Part {
    uint64_t guest;
    uint64_t len;
  };
  Part parts[2] = {{start, head}, {whole_end, tail}};
  for (const Part& p : parts) {
    if (p.len == 0) continue;
    Result<L2SliceRef> slice = co_await get_l2_slice(p.guest, ForWrite::kYes);
    if (!slice) co_return fail(slice.error());
    const uint64_t index = index_in_slice(p.guest);
    // A compressed cluster cannot be zeroed in part (the caller writes zeros instead).
    if ((*slice)->entries[index] & kCompressedFlag) co_return fail(Error::unsupported());
    const uint32_t first = static_cast<uint32_t>(p.guest % cs_ / scs);
    const uint32_t count = static_cast<uint32_t>((p.len + scs - 1) / scs);
    uint64_t& bitmap = (*slice)->bitmaps[index];
    const uint64_t updated = (bitmap | zero_range(first, count)) & ~alloc_range(first, count);
    if (updated == bitmap) continue;
    bitmap = updated;
    Status s = co_await update_l2_entries(**slice, index, 1);
    if (!s) co_return s;
  }
  if (whole_end > whole_start) {
    Status s = co_await zero_clusters(whole_start, whole_end, flags);
    if (!s) co_return s;
  }
  co_return ok();
}

}  // namespace qblock::qcow2
