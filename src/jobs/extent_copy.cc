// copy_extent (see extent_copy.h).
#include "jobs/extent_copy.h"

#include <algorithm>

#include "qblock/chain_status.h"
#include "qblock/iovec.h"

namespace qblock {

Task<Status> copy_extent(BlockNode& source, BlockNode& target, uint64_t offset, uint64_t bytes,
                         bool& is_read_error) {
  const uint64_t end = offset + bytes;
  // Unmapping is allowed where nothing below the target could show through.
  const bool may_unmap = target.child(ChildRole::kBacking) == nullptr;
  uint64_t pos = offset;
  while (pos < end) {
    // Through the backing chain: what no layer defines reads as zeros.
    Result<ChainStatus> chain = co_await chain_status(&source, pos, end - pos, ChainStatusQuery{});
    if (!chain) {
      is_read_error = true;
      co_return fail(chain.error());
    }
    const BlockStatus* st = &chain->status;
    const uint64_t n = st->bytes == 0 ? end - pos : std::min(st->bytes, end - pos);
    if (st->flags & kStatusZero) {
      RequestFlags flags;
      if (may_unmap) flags |= RequestFlag::kMayUnmap;
      Status s = ok();
      if (target.supported_zero_flags().has(RequestFlag::kNoFallback)) {
        // Efficient zeroing only; a target that cannot gets zero buffers below.
        s = co_await target.write_zeroes(pos, n, flags | RequestFlag::kNoFallback);
        if (!s && s.error().errnum() == ENOTSUP) s = co_await target.write_zeroes(pos, n, flags);
      } else {
        s = co_await target.write_zeroes(pos, n, flags);
      }
      if (!s) {
        is_read_error = false;
        co_return s;
      }
    } else {
      const std::size_t align = std::max<std::size_t>(
          4096, std::max(source.limits().memory_alignment, target.limits().memory_alignment));
      AlignedBuffer buf(n, align);
      Status r = co_await source.read(pos, IoVec(buf.data(), n));
      if (!r) {
        is_read_error = true;
        co_return r;
      }
      Status w = co_await target.write(pos, IoVec(buf.data(), n));
      if (!w) {
        is_read_error = false;
        co_return w;
      }
    }
    pos += n;
  }
  co_return ok();
}

}  // namespace qblock
