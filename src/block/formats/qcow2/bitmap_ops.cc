// The dirty bitmap operations of qblock/dirty_bitmaps.h on the qcow2 node that keeps them.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <memory>

#include "block/formats/qcow2/qcow2_node.h"
#include "qblock/dirty_bitmaps.h"

namespace qblock {

namespace {

using qcow2::Qcow2Node;

// The qcow2 node under `node` and the filters above it, or nullptr.
Qcow2Node* qcow2_of(BlockNode& node) {
  BlockNode* n = &node;
  while (n && n->kind() == NodeKind::kFilter) n = n->primary_child();
  return dynamic_cast<Qcow2Node*>(n);
}

std::string node_label(const BlockNode& node) { return node.node_name(); }

Error not_found(const std::string& name) {
  return Error::with_message(ENOENT, "Dirty bitmap '" + name + "' not found");
}

Result<Qcow2Node::NodeBitmap*> lookup(BlockNode& node, const std::string& name) {
  Qcow2Node* q = qcow2_of(node);
  Qcow2Node::NodeBitmap* b = q ? q->find_bitmap(name) : nullptr;
  if (!b) return fail(not_found(name));
  return b;
}

// QEMU's bdrv_dirty_bitmap_check: a bitmap a job uses serves nothing else; an inconsistent
// bitmap serves nothing but remove; a bitmap of a read-only node cannot be modified (`modify`).
// Reading the bits (`reading`) is allowed while a job uses them.
Status usable(BlockNode& node, const Qcow2Node::NodeBitmap& b, bool modify, bool reading = false) {
  if (b.successor && !reading) {
    return fail(Error::with_message(
        EBUSY,
        "Bitmap '" + b.name + "' is currently in use by another operation and cannot be used"));
  }
  if (modify && node.read_only()) {
    return fail(
        Error::with_message(EPERM, "Bitmap '" + b.name + "' is readonly and cannot be modified"));
  }
  if (!b.bits) {
    return fail(Error::with_message(EINVAL, "Bitmap '" + b.name +
                                                "' is inconsistent and cannot be used\n"
                                                "Try block-dirty-bitmap-remove to delete this "
                                                "bitmap from disk"));
  }
  return ok();
}

Task<Status> remove_from(Qcow2Node* q, std::string name) {
  co_return co_await q->remove_bitmap(std::move(name));
}

}  // namespace

uint64_t default_bitmap_granularity(const BlockNode& node) {
  const uint64_t cs = node.info().cluster_size;
  return cs ? std::max<uint64_t>(cs, 4096) : 65536;
}

Status add_dirty_bitmap(BlockNode& node, const std::string& name,
                        std::optional<uint64_t> granularity, BitmapPersistence persistence,
                        BitmapRecording recording) {
  if (name.empty()) return fail(Error::with_message(EINVAL, "Bitmap name cannot be empty"));
  const uint64_t g = granularity.value_or(default_bitmap_granularity(node));
  if (g < 512 || g > (uint64_t{1} << 31) || !std::has_single_bit(g)) {
    return fail(Error::with_message(EINVAL, "Granularity must be power of 2 and at least 512"));
  }
  Qcow2Node* q = qcow2_of(node);
  if (!q) {
    if (persistence == BitmapPersistence::kPersistent) {
      return fail(Error::with_message(
          ENOTSUP, fmt::format("Can't store persistent bitmaps to {}: Operation not supported",
                               node_label(node))));
    }
    return fail(Error::with_message(ENOTSUP, "Dirty bitmaps are only kept by qcow2 nodes"));
  }
  return q->add_bitmap(name, static_cast<uint32_t>(std::countr_zero(g)),
                       persistence == BitmapPersistence::kPersistent,
                       recording == BitmapRecording::kEnabled);
}

Task<Status> remove_dirty_bitmap(BlockNode& node, std::string name) {
  Qcow2Node* q = qcow2_of(node);
  if (!q) co_return fail(not_found(name));
  if (const Qcow2Node::NodeBitmap* b = q->find_bitmap(name); b && b->successor) {
    co_return fail(usable(node, *b, false).error());
  }
  co_return co_await remove_from(q, std::move(name));
}

Status check_dirty_bitmap(BlockNode& node, const std::string& name, bool modify) {
  Result<Qcow2Node::NodeBitmap*> b = lookup(node, name);
  if (!b) return fail(b.error());
  return usable(node, **b, modify);
}

Result<const DirtyBitmap*> freeze_dirty_bitmap(BlockNode& node, const std::string& name,
                                               bool modify) {
  Result<Qcow2Node::NodeBitmap*> b = lookup(node, name);
  if (!b) return fail(b.error());
  if (Status s = usable(node, **b, modify); !s) return fail(s.error());
  DirtyBitmap& bits = *(*b)->bits;
  if (bits.length() != node.length()) bits.resize(node.length());
  (*b)->successor = std::make_unique<DirtyBitmap>(bits.length(), bits.granularity());
  return &bits;
}

void thaw_dirty_bitmap(BlockNode& node, const std::string& name, BitmapThaw how,
                       const DirtyBitmap* also_dirty) {
  Qcow2Node* q = qcow2_of(node);
  if (!q) return;
  std::vector<Qcow2Node::NodeBitmap>& all = q->bitmaps();
  auto it = std::find_if(all.begin(), all.end(), [&name](const Qcow2Node::NodeBitmap& b) {
    return b.name == name && b.successor;
  });
  if (it == all.end()) return;
  std::unique_ptr<DirtyBitmap> successor = std::move(it->successor);
  if (successor->length() != it->bits->length()) successor->resize(it->bits->length());
  if (how == BitmapThaw::kReclaim) {
    it->bits->merge(*successor);
  } else {
    it->bits = std::move(successor);
  }
  if (also_dirty) it->bits->merge(*also_dirty);
  if (how == BitmapThaw::kAbdicate) std::rotate(it, it + 1, all.end());
}

Status clear_dirty_bitmap(BlockNode& node, const std::string& name) {
  Result<Qcow2Node::NodeBitmap*> b = lookup(node, name);
  if (!b) return fail(b.error());
  if (Status s = usable(node, **b, true); !s) return s;
  (*b)->bits->clear();
  return ok();
}

Status enable_dirty_bitmap(BlockNode& node, const std::string& name) {
  Result<Qcow2Node::NodeBitmap*> b = lookup(node, name);
  if (!b) return fail(b.error());
  if (Status s = usable(node, **b, false); !s) return s;
  (*b)->enabled = true;
  return ok();
}

Status disable_dirty_bitmap(BlockNode& node, const std::string& name) {
  Result<Qcow2Node::NodeBitmap*> b = lookup(node, name);
  if (!b) return fail(b.error());
  if (Status s = usable(node, **b, false); !s) return s;
  (*b)->enabled = false;
  return ok();
}

Status merge_dirty_bitmap(BlockNode& node, const std::string& target, BlockNode& source_node,
                          const std::string& source) {
  Result<Qcow2Node::NodeBitmap*> dst = lookup(node, target);
  if (!dst) return fail(dst.error());
  if (Status s = usable(node, **dst, true); !s) return s;
  Result<Qcow2Node::NodeBitmap*> src = lookup(source_node, source);
  if (!src) return fail(src.error());
  if (Status s = usable(source_node, **src, false); !s) return s;
  DirtyBitmap& d = *(*dst)->bits;
  const DirtyBitmap& from = *(*src)->bits;
  if (d.length() != node.length()) d.resize(node.length());
  if (from.length() != d.length()) {
    return fail(Error::with_message(EINVAL, "Bitmaps are incompatible and can't be merged"));
  }
  d.merge(from);
  return ok();
}

std::vector<DirtyBitmapInfo> dirty_bitmaps(BlockNode& node) {
  std::vector<DirtyBitmapInfo> out;
  Qcow2Node* q = qcow2_of(node);
  if (!q) return out;
  for (const Qcow2Node::NodeBitmap& b : q->bitmaps()) {
    DirtyBitmapInfo i;
    i.name = b.name;
    i.granularity = uint64_t{1} << b.granularity_bits;
    i.count = b.bits ? b.bits->dirty_bytes() : 0;
    i.recording = b.enabled && b.bits;
    i.persistent = b.persistent;
    i.inconsistent = !b.bits;
    i.busy = b.successor != nullptr;
    out.push_back(std::move(i));
  }
  for (const Qcow2Node::NodeBitmap& b : q->bitmaps()) {
    if (!b.successor) continue;
    DirtyBitmapInfo i;
    i.granularity = uint64_t{1} << b.granularity_bits;
    i.count = b.successor->dirty_bytes();
    i.recording = b.enabled;
    out.push_back(std::move(i));
  }
  return out;
}

Result<std::vector<std::pair<uint64_t, bool>>> dirty_bitmap_extents(BlockNode& node,
                                                                    const std::string& name,
                                                                    uint64_t offset,
                                                                    uint64_t bytes) {
  Result<Qcow2Node::NodeBitmap*> b = lookup(node, name);
  if (!b) return fail(b.error());
  if (Status s = usable(node, **b, false, true); !s) return fail(s.error());
  DirtyBitmap& bits = *(*b)->bits;
  if (bits.length() != node.length()) bits.resize(node.length());
  std::vector<std::pair<uint64_t, bool>> runs;
  const uint64_t g = bits.granularity();
  const uint64_t end = std::min(offset + bytes, bits.length());
  uint64_t pos = offset;
  while (pos < end) {
    const bool dirty = bits.test_granule(pos / g);
    uint64_t next = (pos / g + 1) * g;
    while (next < end && bits.test_granule(next / g) == dirty) next += g;
    next = std::min(next, end);
    if (!runs.empty() && runs.back().second == dirty) {
      runs.back().first += next - pos;
    } else {
      runs.emplace_back(next - pos, dirty);
    }
    pos = next;
  }
  return runs;
}

}  // namespace qblock
