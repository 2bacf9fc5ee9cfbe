// Placeholder until the blkdebug rules engine lands: forwards to its image child.
#include "block/filters/blkdebug.h"

#include "block/filters/passthrough.h"

namespace qblock {

Task<Result<NodePtr>> open_blkdebug_node(OpenContext& ctx, Options& options) {
  Result<NodePtr> child = co_await open_child(ctx, options, "image", "file");
  if (!child) co_return fail(child.error());
  co_return NodePtr(
      new PassthroughFilter(ctx.loop, "blkdebug", std::move(*child), ChildRole::kImage, "image"));
}

}  // namespace qblock
