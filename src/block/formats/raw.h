// The raw format: a window [offset, offset + size) onto its file child. It inherits every
// request flag from the child (block-semantics.md §2) and emits read_aio/write_aio events.
#pragma once

#include "block/driver.h"

namespace qblock {

// Options: `file` (child), `offset`, `size`.
Task<Result<NodePtr>> open_raw_node(OpenContext& ctx, Options& options);

}  // namespace qblock
