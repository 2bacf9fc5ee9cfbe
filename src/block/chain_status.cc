// chain_status (see chain_status.h).
#include "block/chain_status.h"

namespace qblock {

Task<Result<ChainStatus>> chain_status(BlockNode* top, uint64_t offset, uint64_t bytes,
                                       ChainStatusQuery query) {
  uint32_t deciding = kStatusData | kStatusZero;
  if (query.allocated_decides) deciding |= kStatusAllocated;
  BlockNode* node = top;
  ChainStatus out;
  for (;;) {
    Task<Result<BlockStatus>> ask = node->block_status(offset, bytes, query.want_zero);
    Result<BlockStatus> st = co_await std::move(ask);
    if (!st) co_return tl::unexpected(st.error());
    if (st->bytes == 0) {  // past the node's end: nothing there but zeros
      out.status = BlockStatus{kStatusZero, bytes, 0, nullptr};
      out.defined = false;
      co_return out;
    }
    if (query.refine) {
      Task<Status> refine = query.refine(node, &*st);
      Status refined = co_await std::move(refine);
      (void)refined;  // best effort: a refinement only sharpens the answer
    }
    bytes = st->bytes;
    out.status = *st;
    if (query.top_only || (st->flags & deciding)) co_return out;
    // A filter (copy-on-read, compress, ...) answers for the format below it: that node's
    // backing file is the next layer.
    BlockNode* below = node;
    while (below->child(ChildRole::kBacking) == nullptr && below->kind() == NodeKind::kFilter &&
           below->primary_child() != nullptr) {
      below = below->primary_child();
    }
    BlockNode* backing = below->child(ChildRole::kBacking);
    if (backing && offset < backing->length()) {
      node = backing;
      ++out.layer;
      continue;
    }
    out.status.flags = (st->flags | kStatusZero) & ~uint32_t{kStatusAllocated};
    out.defined = false;
    co_return out;
  }
}

}  // namespace qblock
