// Opening a filter's child the way QEMU's blkverify and quorum open theirs: a subtree with a
// driver is opened as it is; one with only a filename ("raw.filename=r.raw",
// "children.0.file.filename=..." is not this case) has its format probed (qcow2 or raw) over a
// file node, like an image named on the command line.
#pragma once

#include <string_view>

#include "block/driver.h"

namespace qblock {

// Opens and removes the child `key` of `options`. Errors: QEMU's "A block device must be
// specified for \"KEY\"" when it is missing, and the child's open errors.
Task<Result<NodePtr>> open_probed_child(OpenContext& ctx, Options& options, std::string_view key);

}  // namespace qblock
