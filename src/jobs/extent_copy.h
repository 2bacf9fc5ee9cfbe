// copy_extent: the copy step of the mirror, active-commit and backup jobs. A range of the
// source is copied to the same place of the target by its status through the source's
// backing chain: what reads as zeros becomes an efficient write-zeroes (NO_FALLBACK where the
// target supports it, falling back to plain write-zeroes on ENOTSUP; MAY_UNMAP when the
// target has no backing file that could show through), the rest is read and written.
#pragma once

#include <cstdint>

#include "jobs/buffer_pool.h"
#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/task.h"

namespace qblock {

// Copies [offset, offset + bytes) of `source` to `target`, data through buffers of `buffers`
// (pieces of at most its buffer size). On failure `is_read_error` tells whether the source
// (true) or the target (false) failed.
[[nodiscard]] Task<Status> copy_extent(BlockNode& source, BlockNode& target, uint64_t offset,
                                       uint64_t bytes, bool& is_read_error, BufferPool& buffers);

}  // namespace qblock
