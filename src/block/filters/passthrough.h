// PassthroughFilter: the copy-me template for filters. It forwards every request to its one
// child unchanged and advertises the child's flags as block-semantics.md REQ-FLAGS-3 says.
// A real filter derives from it and overrides only what it changes.
#pragma once

#include "block/driver.h"

namespace qblock {

class PassthroughFilter : public BlockNode {
 public:
  // Takes ownership of `child`, attached under `child_name` with `role`.
  PassthroughFilter(EventLoop& loop, std::string driver_name, NodePtr child,
                    ChildRole role = ChildRole::kFile, std::string child_name = "file",
                    NodeKind kind = NodeKind::kFilter);

  uint64_t length() const override { return primary_child()->length(); }
  NodeInfo info() const override { return primary_child()->info(); }

 protected:
  BlockNode& child_node() const { return *primary_child(); }

  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override;
  Task<Status> do_truncate(uint64_t size, PreallocMode mode, Exact exact) override;
};

// Registry entry for the "passthrough" driver: options are just its `file` child.
Task<Result<NodePtr>> open_passthrough_node(OpenContext& ctx, Options& options);

}  // namespace qblock
