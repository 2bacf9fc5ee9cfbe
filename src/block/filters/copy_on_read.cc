// CopyOnReadFilter (see copy_on_read.h).
#include "block/filters/copy_on_read.h"

#include <algorithm>

#include "block/node_reference.h"

namespace qblock {

namespace {

// QEMU copies at most this much per bounce buffer (MAX_BOUNCE_BUFFER, 32768 sectors).
constexpr uint64_t kMaxCopyBytes = 16 << 20;

uint64_t round_down_to(uint64_t v, uint64_t a) { return v / a * a; }
uint64_t round_up_to(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// The node a reference stands for, or `node` itself.
BlockNode* resolve(BlockNode* node) {
  if (node == nullptr) return nullptr;
  BlockNode* target = referenced_node(*node);
  return target ? target : node;
}

BlockNode* backing_of(BlockNode* node) { return resolve(node)->child(ChildRole::kBacking); }

}  // namespace

CopyOnReadFilter::CopyOnReadFilter(EventLoop& loop, NodePtr file, BlockNode* bottom)
    : PassthroughFilter(loop, "copy-on-read", std::move(file)),
      bottom_(bottom),
      range_done_(loop) {}

Task<std::size_t> CopyOnReadFilter::begin_range(Range r) {
  for (;;) {
    bool blocked = false;
    for (const auto& [id, other] : in_flight_) {
      if (other.start < r.end && r.start < other.end && (r.copy || other.copy)) blocked = true;
    }
    if (!blocked) break;
    co_await range_done_.wait();
  }
  const std::size_t id = next_range_id_++;
  in_flight_.emplace_back(id, r);
  co_return id;
}

void CopyOnReadFilter::end_range(std::size_t id) {
  std::erase_if(in_flight_, [id](const auto& e) { return e.first == id; });
  range_done_.wake_all();
}

Task<Status> CopyOnReadFilter::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  const std::size_t id = co_await begin_range({offset, offset + qiov.size(), false});
  Status s = co_await child_node().write(offset, std::move(qiov), flags);
  end_range(id);
  co_return s;
}

Task<Status> CopyOnReadFilter::do_write_zeroes(uint64_t offset, uint64_t bytes,
                                               RequestFlags flags) {
  const std::size_t id = co_await begin_range({offset, offset + bytes, false});
  Status s = co_await child_node().write_zeroes(offset, bytes, flags);
  end_range(id);
  co_return s;
}

Task<Status> CopyOnReadFilter::do_discard(uint64_t offset, uint64_t bytes) {
  const std::size_t id = co_await begin_range({offset, offset + bytes, false});
  Status s = co_await child_node().discard(offset, bytes);
  end_range(id);
  co_return s;
}

NodeInfo CopyOnReadFilter::info() const {
  NodeInfo i = child_node().info();
  i.format_name = "copy-on-read";
  i.format_specific.clear();
  return i;
}

Options CopyOnReadFilter::options() const {
  Options o = BlockNode::options();
  if (bottom_ != nullptr) o["bottom"] = bottom_->node_name();
  return o;
}

Task<Result<std::pair<bool, uint64_t>>> CopyOnReadFilter::allocated_above_bottom(uint64_t offset,
                                                                                 uint64_t bytes) {
  if (resolve(&child_node()) == resolve(bottom_)) co_return std::pair<bool, uint64_t>{false, bytes};
  for (BlockNode* layer = backing_of(&child_node()); layer != nullptr; layer = backing_of(layer)) {
    if (offset >= layer->length()) break;
    Result<std::pair<bool, uint64_t>> st = co_await layer->is_allocated(offset, bytes);
    if (!st) co_return fail(st.error());
    bytes = std::min(bytes, st->second);
    if (st->first) co_return std::pair<bool, uint64_t>{true, bytes};
    if (resolve(layer) == resolve(bottom_)) break;
  }
  co_return std::pair<bool, uint64_t>{false, bytes};
}

Task<Status> CopyOnReadFilter::copy_and_read(uint64_t offset, IoVec qiov) {
  BlockNode& file = child_node();
  NodeInfo fi = file.info();
  const uint64_t cluster =
      std::max<uint64_t>(fi.cluster_size ? fi.cluster_size : 0,
                         std::max<uint32_t>(file.limits().request_alignment, 1));
  const uint64_t end = offset + qiov.size();
  uint64_t start = round_down_to(offset, cluster);
  const uint64_t stop = std::min(round_up_to(end, cluster), file.length());
  while (start < stop) {
    uint64_t n = std::min(kMaxCopyBytes, stop - start);
    const std::size_t id = co_await begin_range({start, start + n, true});
    // A write may have allocated clusters while this copy waited: those are read, not copied.
    Result<std::pair<bool, uint64_t>> now = co_await file.is_allocated(start, n);
    const bool copy = !now || !now->first;
    if (now && now->second > 0) n = std::min(n, now->second);
    AlignedBuffer bounce(n);
    Status r = co_await file.read(start, IoVec(bounce.data(), n));
    if (!r) {
      end_range(id);
      co_return r;
    }
    if (copy) {
      IoVec whole(bounce.data(), n);
      // Data that reads as zeros is stored as zeros (no buffer written), as QEMU does.
      Status w = whole.is_zero()
                     ? co_await file.write_zeroes(start, n, RequestFlag::kWriteUnchanged)
                     : co_await file.write(start, whole, RequestFlag::kWriteUnchanged);
      if (!w) {
        end_range(id);
        co_return w;
      }
    }
    end_range(id);
    const uint64_t from = std::max(start, offset);
    const uint64_t to = std::min(start + n, end);
    if (to > from) qiov.copy_from(from - offset, bounce.data() + (from - start), to - from);
    start += n;
  }
  // The part of the request past the file's end (none for a format node) reads as the file
  // says.
  if (stop < end) {
    const uint64_t from = std::max(stop, offset);
    Status r = co_await file.read(from, qiov.slice(from - offset, end - from));
    if (!r) co_return r;
  }
  co_return ok();
}

Task<Status> CopyOnReadFilter::do_read(uint64_t offset, IoVec qiov, RequestFlags flags) {
  BlockNode& file = child_node();
  const uint64_t end = offset + qiov.size();
  uint64_t pos = offset;
  while (pos < end) {
    uint64_t n = end - pos;
    bool copy = false;
    Result<std::pair<bool, uint64_t>> here = co_await file.is_allocated(pos, n);
    // As in QEMU, a failed status query copies anyway.
    if (!here) {
      copy = true;
    } else {
      n = here->second;
      if (!here->first) {
        if (bottom_ == nullptr) {
          copy = true;
        } else {
          Result<std::pair<bool, uint64_t>> above = co_await allocated_above_bottom(pos, n);
          copy = !above || above->first;
          if (above) n = above->second;
        }
      }
    }
    if (n == 0) n = end - pos;
    IoVec part = qiov.slice(pos - offset, n);
    Status s =
        copy ? co_await copy_and_read(pos, std::move(part))
             : co_await file.read(pos, std::move(part), flags.without(RequestFlag::kCopyOnRead));
    if (!s) co_return s;
    pos += n;
  }
  co_return ok();
}

Task<Result<NodePtr>> open_copy_on_read_node(OpenContext& ctx, Options& options) {
  auto bottom_name = take_string(options, "bottom");
  if (!bottom_name) co_return fail(bottom_name.error());
  Result<NodePtr> file = co_await open_child(ctx, options, "file", "file");
  if (!file) co_return fail(file.error());
  if (ctx.flags.read_only || (*file)->read_only()) {
    (void)co_await (*file)->close();
    co_return fail(Error::with_message(EPERM, "Block node is read-only"));
  }
  BlockNode* bottom = nullptr;
  if (*bottom_name) {
    for (BlockNode* n = file->get(); n != nullptr; n = backing_of(n)) {
      if (resolve(n)->node_name() == **bottom_name) {
        bottom = resolve(n);
        break;
      }
    }
    if (bottom == nullptr) {
      (void)co_await (*file)->close();
      co_return fail(Error::with_message(ENOENT, "Bottom node '" + **bottom_name + "' not found"));
    }
  }
  co_return NodePtr(new CopyOnReadFilter(ctx.loop, std::move(*file), bottom));
}

}  // namespace qblock
