// The file protocol: regular files and block devices through io_uring (or worker threads
// with aio=threads). Zeroes with fallocate as block-semantics.md §4 requires, tracks its EOF
// to serialise post-EOF zeroing (REQ-EOF-1), and takes QEMU-compatible image locks.
#pragma once

#include "block/driver.h"

namespace qblock {

// Options: filename (required), aio (io_uring|threads|native), locking (auto|on|off).
// Generic cache.direct selects O_DIRECT; the request alignment is then probed.
Task<Result<NodePtr>> open_file_node(OpenContext& ctx, Options& options);

}  // namespace qblock
