// NodeReference and the thread's node resolver (see node_reference.h).
#include "block/node_reference.h"

namespace qblock {

namespace {

thread_local NodeResolver* current_resolver = nullptr;

}  // namespace

void set_node_resolver(NodeResolver resolver) {
  thread_local NodeResolver storage;
  storage = std::move(resolver);
  current_resolver = storage ? &storage : nullptr;
}

Result<NodePtr> open_node_reference(EventLoop& loop, const std::string& name) {
  BlockNode* target = current_resolver != nullptr ? (*current_resolver)(name) : nullptr;
  if (target == nullptr) {
    return fail(Error::with_message(
        ENOENT, "Cannot find device='" + name + "' nor node-name='" + name + "'"));
  }
  return NodePtr(new NodeReference(loop, *target));
}

BlockNode* referenced_node(const BlockNode& node) {
  const auto* ref = dynamic_cast<const NodeReference*>(&node);
  return ref != nullptr ? &ref->target() : nullptr;
}

NodeReference::NodeReference(EventLoop& loop, BlockNode& target)
    : BlockNode(loop, target.driver_name(), target.kind()), target_(&target) {
  flags_ = target.open_flags();
  limits_ = target.limits();
  supported_write_flags_ = target.supported_write_flags();
  supported_zero_flags_ = target.supported_zero_flags();
}

Task<Status> NodeReference::do_read(uint64_t offset, IoVec qiov, RequestFlags flags) {
  co_return co_await target_->read(offset, std::move(qiov), flags);
}

Task<Status> NodeReference::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  co_return co_await target_->write(offset, std::move(qiov), flags);
}

Task<Status> NodeReference::do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  co_return co_await target_->write_zeroes(offset, bytes, flags);
}

Task<Status> NodeReference::do_discard(uint64_t offset, uint64_t bytes) {
  co_return co_await target_->discard(offset, bytes);
}

Task<Status> NodeReference::do_flush() { co_return co_await target_->flush(); }

Task<Status> NodeReference::do_truncate(uint64_t size, PreallocMode mode, Exact exact) {
  co_return co_await target_->truncate(size, mode, exact);
}

Task<Result<BlockStatus>> NodeReference::do_block_status(uint64_t offset, uint64_t bytes,
                                                         WantZero want_zero) {
  co_return co_await target_->block_status(offset, bytes, want_zero);
}

Task<Status> NodeReference::do_close() { co_return ok(); }

Task<void> NodeReference::do_debug_event(DebugEvent event) { co_await target_->debug_event(event); }

}  // namespace qblock
