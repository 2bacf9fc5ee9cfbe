// allocated_above_base (see allocated_above.h).
#include "jobs/allocated_above.h"

#include <algorithm>
#include <optional>

namespace qblock {

Task<Result<Allocation>> allocated_above_base(std::vector<BlockNode*> layers, uint64_t offset,
                                              uint64_t bytes) {
  Allocation a{false, bytes};
  for (std::size_t i = 0; i < layers.size(); ++i) {
    BlockNode* layer = layers[i];
    if (offset >= layer->length()) {
      // An image between top and base that ends before the top reads as zeros past its end,
      // hiding what the base has there: that counts as allocated (so zeros are committed).
      if (i > 0) co_return Allocation{true, a.bytes};
      continue;
    }
    const uint64_t ask = std::min(a.bytes, layer->length() - offset);
    Task<Result<std::pair<bool, uint64_t>>> query = layer->is_allocated(offset, ask);
    Result<std::pair<bool, uint64_t>> r = co_await std::move(query);
    if (!r) co_return fail(r.error());
    if (r->first) co_return Allocation{true, r->second};
    // Unallocated here for r->second bytes: the next layer decides about that much.
    a.bytes = std::min(a.bytes, r->second);
  }
  co_return a;
}

std::optional<std::vector<BlockNode*>> layers_above(BlockNode& top, const BlockNode* base) {
  std::vector<BlockNode*> layers;
  for (BlockNode* n = &top; n != nullptr; n = n->child(ChildRole::kBacking)) {
    if (n == base) return layers;
    layers.push_back(n);
  }
  if (base == nullptr) return layers;
  return std::nullopt;
}

}  // namespace qblock
