// PowerCutFilter (see powercut.h).
#include "block/filters/powercut.h"

#include <algorithm>

namespace qblock {

PowerCutFilter::PowerCutFilter(EventLoop& loop, std::unique_ptr<MemoryNode> child,
                               uint64_t cut_after)
    : PassthroughFilter(loop, "powercut", std::move(child)), remaining_(cut_after) {
  stable_ = memory().data();
}

bool PowerCutFilter::admit() {
  if (cut_) return false;
  if (remaining_ == 0) {
    cut_ = true;
    return false;
  }
  --remaining_;
  return true;
}

Task<Status> PowerCutFilter::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  if (!admit()) co_return fail(Error::io("power cut"));
  Change change{offset, std::vector<uint8_t>(qiov.size())};
  qiov.copy_to(0, change.data.data(), qiov.size());
  Status s = co_await child_node().write(offset, std::move(qiov), flags);
  if (s) since_flush_.push_back(std::move(change));
  co_return s;
}

Task<Status> PowerCutFilter::do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  if (!admit()) co_return fail(Error::io("power cut"));
  Status s = co_await child_node().write_zeroes(offset, bytes, flags);
  if (s) since_flush_.push_back(Change{offset, std::vector<uint8_t>(bytes, 0)});
  co_return s;
}

Task<Status> PowerCutFilter::do_discard(uint64_t offset, uint64_t bytes) {
  if (!admit()) co_return fail(Error::io("power cut"));
  co_return co_await child_node().discard(offset, bytes);  // the memory node keeps the data
}

Task<Status> PowerCutFilter::do_truncate(uint64_t size, PreallocMode mode, Exact exact) {
  if (!admit()) co_return fail(Error::io("power cut"));
  Status s = co_await child_node().truncate(size, mode, exact);
  if (s) since_flush_.push_back(Change{size, {}, true});
  co_return s;
}

Task<Status> PowerCutFilter::do_flush() {
  if (!admit()) co_return fail(Error::io("power cut"));
  Status s = co_await child_node().flush();
  if (s) {
    // Everything written so far is now on "stable storage".
    stable_ = memory().data();
    since_flush_.clear();
  }
  co_return s;
}

std::vector<uint8_t> PowerCutFilter::crash_image(std::mt19937_64& rng, double keep) const {
  std::vector<uint8_t> image = stable_;
  std::bernoulli_distribution survives(keep);
  for (const Change& c : since_flush_) {
    if (!survives(rng)) continue;
    if (c.resize) {
      image.resize(c.offset, 0);
      continue;
    }
    if (c.offset + c.data.size() > image.size()) image.resize(c.offset + c.data.size(), 0);
    std::copy(c.data.begin(), c.data.end(), image.begin() + static_cast<std::ptrdiff_t>(c.offset));
  }
  return image;
}

Task<Result<NodePtr>> open_powercut_node(OpenContext& ctx, Options& options) {
  auto cut_after = take_size(options, "cut-after");
  if (!cut_after) co_return fail(cut_after.error());
  Result<NodePtr> child = co_await open_child(ctx, options, "file", "memory");
  if (!child) co_return fail(child.error());
  if ((*child)->driver_name() != "memory") {
    (void)co_await (*child)->close();
    co_return fail(Error::with_message(EINVAL, "powercut needs a memory child"));
  }
  std::unique_ptr<MemoryNode> memory(static_cast<MemoryNode*>(child->release()));
  co_return NodePtr(
      new PowerCutFilter(ctx.loop, std::move(memory), cut_after->value_or(UINT64_MAX)));
}

}  // namespace qblock
