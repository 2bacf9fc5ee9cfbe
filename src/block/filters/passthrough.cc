// PassthroughFilter (see passthrough.h).
#include "block/filters/passthrough.h"

namespace qblock {

PassthroughFilter::PassthroughFilter(EventLoop& loop, std::string driver_name, NodePtr child,
                                     ChildRole role, std::string child_name, NodeKind kind)
    : BlockNode(loop, std::move(driver_name), kind) {
  flags_ = child->open_flags();
  add_child(role, std::move(child_name), std::move(child));
  inherit_from_child();
}

Task<Status> PassthroughFilter::do_read(uint64_t offset, IoVec qiov, RequestFlags flags) {
  co_return co_await child_node().read(offset, std::move(qiov), flags);
}

Task<Status> PassthroughFilter::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  co_return co_await child_node().write(offset, std::move(qiov), flags);
}

Task<Status> PassthroughFilter::do_write_zeroes(uint64_t offset, uint64_t bytes,
                                                RequestFlags flags) {
  co_return co_await child_node().write_zeroes(offset, bytes, flags);
}

Task<Status> PassthroughFilter::do_discard(uint64_t offset, uint64_t bytes) {
  co_return co_await child_node().discard(offset, bytes);
}

Task<Status> PassthroughFilter::do_truncate(uint64_t size, PreallocMode mode, Exact exact) {
  co_return co_await child_node().truncate(size, mode, exact);
}

Task<Result<NodePtr>> open_passthrough_node(OpenContext& ctx, Options& options) {
  Result<NodePtr> child = co_await open_child(ctx, options, "file", "file");
  if (!child) co_return fail(child.error());
  co_return NodePtr(new PassthroughFilter(ctx.loop, "passthrough", std::move(*child)));
}

}  // namespace qblock
