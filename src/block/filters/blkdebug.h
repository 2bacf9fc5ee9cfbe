// The blkdebug filter: error injection and breakpoints at debug events (QEMU's blkdebug).
#pragma once

#include "block/driver.h"

namespace qblock {

// Options: `image` (child), `config` (rules file), `set-state`, `inject-error`, `align`.
Task<Result<NodePtr>> open_blkdebug_node(OpenContext& ctx, Options& options);

}  // namespace qblock
