// The null protocol (QEMU's null-co/null-aio): discards writes and completes reads without
// touching memory unless read-zeroes is set. For benchmarking the layers above it.
#pragma once

#include "block/driver.h"

namespace qblock {

// Options: size (default 1 GiB), read-zeroes (default off), latency-ns (default 0).
Task<Result<NodePtr>> open_null_node(OpenContext& ctx, Options& options);
// The same driver under QEMU's other name: the node calls itself "null-aio".
Task<Result<NodePtr>> open_null_aio_node(OpenContext& ctx, Options& options);

}  // namespace qblock
