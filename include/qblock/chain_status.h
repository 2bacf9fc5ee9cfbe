// Block status through a backing chain: which layer defines an extent, and what it says.
// One walk for qemu-img map, convert and measure and for the NBD server's block status.
#pragma once

#include <cstdint>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/task.h"

namespace qblock {

// How chain_status judges each layer's answer.
struct ChainStatusQuery {
  WantZero want_zero = WantZero::kYes;
  // A layer that allocates the extent decides even without a data or zero flag (the NBD
  // qemu:allocation-depth context); otherwise only a data or zero flag decides.
  bool allocated_decides = false;
  // Only the top layer is asked, and its answer is returned as it is (convert onto a target
  // that has the same backing file).
  bool top_only = false;
  // Applied to every layer's answer before it is judged; its errors are ignored. qemu-img's
  // tools use it for metadata-preallocated qcow2 images (tools/qblock/img_common.h).
  Task<Status> (*refine)(BlockNode* node, BlockStatus* status) = nullptr;
};

struct ChainStatus {
  // The deciding layer's answer, whose `bytes` is the extent's length. For an extent no layer
  // defines: kStatusZero, without kStatusAllocated.
  BlockStatus status;
  // The layer that answered: 0 = top, 1 = its backing file, ... (the last one asked when no
  // layer defines the extent).
  uint32_t layer = 0;
  // False when no layer defines the extent: the chain ends, or the backing file ends before
  // the extent. It then reads as zeros.
  bool defined = true;
};

// The status of a prefix of [offset, offset + bytes) through the backing chain below `top`:
// the first layer whose answer decides (see ChainStatusQuery), going down through each
// node's backing child. REQUIRES: bytes > 0.
Task<Result<ChainStatus>> chain_status(BlockNode* top, uint64_t offset, uint64_t bytes,
                                       ChainStatusQuery query);

}  // namespace qblock
