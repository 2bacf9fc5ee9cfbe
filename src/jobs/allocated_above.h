// allocated_above_base: which extents the layers above a base define, the question every
// commit asks (qemu-img commit's streaming copy, and the live block-commit job: intermediate
// commits copy exactly these extents, an active commit starts with them dirty).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/task.h"

namespace qblock {

// Whether a prefix of an extent is allocated in one of the layers asked, and how long that
// prefix is.
struct Allocation {
  bool allocated = false;
  uint64_t bytes = 0;
};

// `layers`: the top first, then each image down to (not including) the base. An image below
// the top that ends before the extent counts as allocating it (it reads as zeros there, hiding
// the base). Returns a prefix of [offset, offset + bytes) of one kind; bytes > 0 when asked
// for bytes > 0. Errors: the first failing is_allocated().
[[nodiscard]] Task<Result<Allocation>> allocated_above_base(std::vector<BlockNode*> layers,
                                                            uint64_t offset, uint64_t bytes);

// The layers above `base` in the backing chain below `top` (top first), or nullopt if `base`
// is not in that chain. `base` null: every layer of the chain.
std::optional<std::vector<BlockNode*>> layers_above(BlockNode& top, const BlockNode* base);

}  // namespace qblock
