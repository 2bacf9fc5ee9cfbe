// Live backing chain changes (see chain_edit.h).
#include "jobs/chain_edit.h"

#include "base/check.h"
#include "qblock/driver/driver.h"
#include "qblock/event_loop.h"

namespace qblock {

namespace {

// The nodes of a reopened subtree mirror the old one's: each gets its twin's name. A
// writable qcow2 image may have an implicit preallocate filter above its file that the
// read-only open had not: the name goes to the file below it.
void copy_names(const BlockNode& from, BlockNode& to) {
  to.set_node_name(from.node_name());
  for (const Child& a : from.children()) {
    BlockNode* b = to.child(a.role);
    if (b == nullptr) continue;
    if (b->driver_name() == "preallocate" && a.node->driver_name() != "preallocate" &&
        b->primary_child() != nullptr) {
      b = b->primary_child();
    }
    copy_names(*a.node, *b);
  }
}

}  // namespace

OpenFlags writable_flags(const BlockNode& node) {
  OpenFlags flags = node.open_flags();
  flags.read_only = false;
  flags.backing_chain = nullptr;
  flags.force_share = true;
  return flags;
}

Task<Result<BlockNode*>> reopen_child_writable(BlockNode& parent, ChildRole role) {
  BlockNode* old = parent.child(role);
  CHECK(old != nullptr);
  Task<Result<NodePtr>> open = open_node(parent.loop(), old->options(), writable_flags(*old), "");
  Result<NodePtr> fresh = co_await std::move(open);
  if (!fresh) co_return fail(fresh.error());
  copy_names(*old, **fresh);
  BlockNode* node = fresh->get();
  std::unique_ptr<BlockNode> replaced = parent.replace_child(role, std::move(*fresh));
  Task<void> retire = retire_node(std::move(replaced));
  co_await std::move(retire);
  co_return node;
}

Task<void> drop_intermediates(BlockNode& above, BlockNode& base) {
  BlockNode* base_parent = above.child(ChildRole::kBacking);
  CHECK(base_parent != nullptr && base_parent != &base);
  while (base_parent->child(ChildRole::kBacking) != &base) {
    base_parent = base_parent->child(ChildRole::kBacking);
    CHECK(base_parent != nullptr);
  }
  // No suspension between the two steps: no request sees the chain half changed.
  std::unique_ptr<BlockNode> kept = base_parent->replace_child(ChildRole::kBacking, nullptr);
  std::unique_ptr<BlockNode> dropped = above.replace_child(ChildRole::kBacking, std::move(kept));
  Task<void> retire = retire_node(std::move(dropped));
  co_await std::move(retire);
}

Task<void> retire_node(std::unique_ptr<BlockNode> node) {
  if (!node) co_return;
  while (node->tracked_requests() > 0) co_await node->loop().yield();
  (void)co_await node->close();
}

}  // namespace qblock
