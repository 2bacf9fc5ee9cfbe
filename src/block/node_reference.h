// Node references: a child given as a string ("file": "proto", "backing": "base") names a node
// that already exists in someone else's graph (qemu-compat.md §5.2). The graph that names it
// gets a NodeReference, a child that forwards every request to the named node and owns
// nothing: the node is opened once and stays where it is (no second open, no lock conflict).
// Who may be named is decided by the resolver the owner of the graphs installs (the storage
// daemon); without one, a string child is refused as QEMU refuses an unknown node name.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "block/driver.h"

namespace qblock {

// Finds the node called `name`, or returns nullptr.
using NodeResolver = std::function<BlockNode*(const std::string& name)>;

// Installs `resolver` for the calling thread's opens (an empty one removes it). The nodes it
// returns must outlive every graph that references them.
void set_node_resolver(NodeResolver resolver);

// Installs a resolver for its lifetime (the storage daemon's graphs).
class ScopedNodeResolver {
 public:
  explicit ScopedNodeResolver(NodeResolver resolver) { set_node_resolver(std::move(resolver)); }
  ~ScopedNodeResolver() { set_node_resolver({}); }
  ScopedNodeResolver(const ScopedNodeResolver&) = delete;
  ScopedNodeResolver& operator=(const ScopedNodeResolver&) = delete;
};

// A child node forwarding to the node named `name`. Errors: ENOENT "Cannot find
// device='NAME' nor node-name='NAME'" when no resolver is installed or it finds nothing.
Result<NodePtr> open_node_reference(EventLoop& loop, const std::string& name);

// The node `node` forwards to if it is a reference, else nullptr.
BlockNode* referenced_node(const BlockNode& node);

class NodeReference : public BlockNode {
 public:
  // REQUIRES: `target` outlives this node.
  NodeReference(EventLoop& loop, BlockNode& target);

  BlockNode& target() const { return *target_; }
  uint64_t length() const override { return target_->length(); }
  NodeInfo info() const override { return target_->info(); }
  // A reference prints as the name it was given (QEMU's "file": "proto").
  Options options() const override { return target_->node_name(); }
  std::string filename() const override { return target_->filename(); }

 protected:
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override;
  Task<Status> do_flush() override;
  Task<Status> do_truncate(uint64_t size, PreallocMode mode, Exact exact) override;
  Task<Result<BlockStatus>> do_block_status(uint64_t offset, uint64_t bytes,
                                            WantZero want_zero) override;
  // Closing a reference leaves the named node open: its owner closes it.
  Task<Status> do_close() override;
  Task<void> do_debug_event(DebugEvent event) override;

 private:
  BlockNode* target_;
};

}  // namespace qblock
