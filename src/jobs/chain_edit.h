// Changing a live backing chain, for the block-commit job: the base reopened read-write in
// place (QEMU reopens it for the commit), intermediate images dropped from the chain at the
// end of an intermediate commit, and nodes taken out of a graph closed once no request is in
// them.
#pragma once

#include <memory>
#include <string>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/task.h"

namespace qblock {

// The flags to open `node`'s image again read-write with the options the chain opened it
// with: the chain's read-only open holds the image locks and shares no write with anyone
// else, so the second open does not lock again (force-share).
OpenFlags writable_flags(const BlockNode& node);

// Replaces the child `role` of `parent` by the same image (and its own children) opened
// again read-write; the new nodes keep the old ones' node names. Reads through `parent` go to
// the new node at once; the old one is closed once its requests have finished. Returns the
// new child. Errors: the open's (the old child stays). REQUIRES: `parent` has such a child.
[[nodiscard]] Task<Result<BlockNode*>> reopen_child_writable(BlockNode& parent, ChildRole role);

// Takes the images between `above` and `base` out of the chain: `base` (a node below
// `above`'s backing child) becomes `above`'s backing child, and the nodes dropped are closed
// once their requests have finished. Nothing is written to any image (the caller records the
// new backing file with change_backing_file). REQUIRES: `base` is in the chain below
// above.child(kBacking), and not that child itself.
[[nodiscard]] Task<void> drop_intermediates(BlockNode& above, BlockNode& base);

// Waits until no request is in `node`, closes it and destroys it.
[[nodiscard]] Task<void> retire_node(std::unique_ptr<BlockNode> node);

}  // namespace qblock
