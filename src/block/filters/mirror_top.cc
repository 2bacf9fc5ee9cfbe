// MirrorTopFilter (see mirror_top.h).
#include "block/filters/mirror_top.h"

namespace qblock {

MirrorTopFilter::MirrorTopFilter(BlockNode& source, Hooks& hooks)
    : BlockNode(source.loop(), "mirror_top", NodeKind::kFilter), forward_(&source), hooks_(&hooks) {
  flags_ = source.open_flags();
  inherit_from(source);
}

void MirrorTopFilter::inherit_from(const BlockNode& node) {
  // Exactly what the node below supports: the request layer then passes every flag a user
  // gives (FUA, MAY_UNMAP, NO_FALLBACK, ...) down unchanged instead of emulating or dropping
  // it here.
  limits_ = node.limits();
  supported_write_flags_ = node.supported_write_flags();
  supported_zero_flags_ = node.supported_zero_flags();
}

void MirrorTopFilter::redirect(BlockNode& node) {
  forward_ = &node;
  hooks_ = nullptr;
  inherit_from(node);
}

Task<Status> MirrorTopFilter::do_read(uint64_t offset, IoVec qiov, RequestFlags flags) {
  co_return co_await forward_->read(offset, std::move(qiov), flags);
}

Task<Status> MirrorTopFilter::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  if (hooks_ != nullptr) co_return co_await hooks_->guest_write(offset, std::move(qiov), flags);
  co_return co_await forward_->write(offset, std::move(qiov), flags);
}

Task<Status> MirrorTopFilter::do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  if (hooks_ != nullptr) co_return co_await hooks_->guest_write_zeroes(offset, bytes, flags);
  co_return co_await forward_->write_zeroes(offset, bytes, flags);
}

Task<Status> MirrorTopFilter::do_discard(uint64_t offset, uint64_t bytes) {
  if (hooks_ != nullptr) co_return co_await hooks_->guest_discard(offset, bytes);
  co_return co_await forward_->discard(offset, bytes);
}

Task<Status> MirrorTopFilter::do_flush() { co_return co_await forward_->flush(); }

Task<Result<BlockStatus>> MirrorTopFilter::do_block_status(uint64_t offset, uint64_t bytes,
                                                           WantZero want_zero) {
  co_return co_await forward_->block_status(offset, bytes, want_zero);
}

}  // namespace qblock
