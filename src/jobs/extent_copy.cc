// copy_extent (see extent_copy.h).
#include "jobs/extent_copy.h"

#include <algorithm>

#include "qblock/chain_status.h"
#include "qblock/iovec.h"

namespace qblock {

namespace {

// Reads [offset, offset + bytes) of `source` and writes it to `target`, one pool buffer at a
// time (a one-off buffer where a node needs more alignment than the pool's).
Task<Status> copy_data(BlockNode& source, BlockNode& target, uint64_t offset, uint64_t bytes,
                       bool& is_read_error, BufferPool& buffers) {
  const std::size_t align =
      std::max(source.limits().memory_alignment, target.limits().memory_alignment);
  const bool pooled = align <= buffers.alignment();
  AlignedBuffer buf = pooled
                          ? buffers.take()
                          : AlignedBuffer(std::min<uint64_t>(bytes, buffers.buffer_bytes()), align);
  Status result = ok();
  for (uint64_t done = 0; done < bytes;) {
    const uint64_t n = std::min<uint64_t>(bytes - done, buf.size());
    result = co_await source.read(offset + done, IoVec(buf.data(), n));
    if (!result) {
      is_read_error = true;
      break;
    }
    result = co_await target.write(offset + done, IoVec(buf.data(), n));
    if (!result) {
      is_read_error = false;
      break;
    }
    done += n;
  }
  if (pooled) buffers.give(std::move(buf));
  co_return result;
}

}  // namespace

Task<Status> copy_extent(BlockNode& source, BlockNode& target, uint64_t offset, uint64_t bytes,
                         bool& is_read_error, BufferPool& buffers) {
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
      Status s = co_await copy_data(source, target, pos, n, is_read_error, buffers);
      if (!s) co_return s;
    }
    pos += n;
  }
  co_return ok();
}

}  // namespace qblock
