// commit_image (qblock/jobs.h): the streaming copy of qemu-img commit. The extents the layers
// above the base allocate are copied from the top into the base, opened read-write for it;
// the top is emptied afterwards if asked.
#include <algorithm>
#include <chrono>
#include <memory>
#include <utility>
#include <vector>

#include "base/check.h"
#include "jobs/allocated_above.h"
#include "jobs/chain_edit.h"
#include "qblock/chain_status.h"
#include "qblock/iovec.h"
#include "qblock/jobs.h"

namespace qblock {

namespace {

struct Throttle {
  uint64_t rate = 0;  // bytes per second, 0: none
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  uint64_t written = 0;
};

Task<void> throttle(EventLoop& loop, Throttle& t, uint64_t bytes) {
  t.written += bytes;
  if (t.rate == 0) co_return;
  const auto due = t.start + std::chrono::nanoseconds(static_cast<int64_t>(
                                 static_cast<long double>(t.written) * 1e9L / t.rate));
  const auto now = std::chrono::steady_clock::now();
  if (due <= now) co_return;
  Task<void> wait = loop.sleep_for(due - now);
  co_await std::move(wait);
}

// Opens the base read-write with the options the chain opened it with.
Task<Result<std::unique_ptr<BlockBackend>>> open_base_writable(EventLoop& loop, BlockNode& base) {
  BackendOptions options;
  options.tree = base.options();
  options.flags = writable_flags(base);
  Task<Result<std::unique_ptr<BlockBackend>>> open = BlockBackend::open(loop, std::move(options));
  co_return co_await std::move(open);
}

// The units qemu-img 7.2 commits in, where they matter: its commit is a mirror whose
// granularity is the base's cluster size bounded to 4 KiB..64 KiB, and which zeroes (instead
// of copying zeros) only extents of whole base clusters. On a base with extended L2 entries
// (qcow2-format.md §7) that decides which subclusters become allocated, so qblock commits in
// those units there; for other bases exact extents give the same result.
struct CommitUnits {
  uint64_t granule = 0;  // 0: exact extents
  uint64_t cluster = 0;
};
CommitUnits commit_units(BlockNode& base) {
  const NodeInfo info = base.info();
  for (const auto& [key, value] : info.format_specific) {
    if (key == "extended l2" && value == "true") {
      return {std::clamp<uint64_t>(info.cluster_size, 4096, 65536), info.cluster_size};
    }
  }
  return {};
}

Task<Status> copy_above_base(EventLoop& loop, BlockBackend& top, BlockBackend& base,
                             std::vector<BlockNode*> layers, const CommitOptions& options) {
  const uint64_t length = top.length();
  const CommitUnits units = commit_units(base.root());
  const uint64_t granule = units.granule;
  // A granule is copied in one piece, even when it is larger than a chunk.
  AlignedBuffer buffer(static_cast<std::size_t>(std::max(options.chunk_bytes, granule)));
  Throttle limit;
  limit.rate = options.rate_limit;
  uint64_t copied_to = 0;  // with granules: everything below was copied already
  for (uint64_t offset = 0; offset < length;) {
    const uint64_t want = std::min(length - offset, options.chunk_bytes);
    Task<Result<Allocation>> ask = allocated_above_base(layers, offset, want);
    Result<Allocation> a = co_await std::move(ask);
    if (!a) co_return fail(a.error());
    uint64_t n = std::max<uint64_t>(std::min(a->bytes, want), 1);
    if (a->allocated && granule) {
      // The whole granules the extent touches, as the top reads there.
      const uint64_t start = std::max(copied_to, offset - offset % granule);
      const uint64_t end = std::min(length, (offset + n + granule - 1) / granule * granule);
      for (uint64_t pos = start; pos < end;) {
        const uint64_t piece = std::min(end - pos, options.chunk_bytes);
        Task<Result<ChainStatus>> status = chain_status(&top.root(), pos, piece, {});
        Result<ChainStatus> st = co_await std::move(status);
        if (!st) co_return fail(st.error());
        // As QEMU's mirror: whole granules, at least one; zeros only for an extent without
        // data of whole base clusters, anything else copied as data.
        const uint64_t known = std::min(piece, st->status.bytes);
        const uint64_t m = std::min(end - pos, std::max(granule, known - known % granule));
        const bool zero = !(st->status.flags & kStatusData) && known >= granule &&
                          pos % units.cluster == 0 && (pos + m) % units.cluster == 0;
        Status done = ok();
        if (zero) {
          done = co_await base.write_zeroes(pos, m, RequestFlag::kMayUnmap);
        } else {
          done = co_await top.read(pos, IoVec(buffer.data(), static_cast<std::size_t>(m)));
          if (done)
            done = co_await base.write(pos, IoVec(buffer.data(), static_cast<std::size_t>(m)));
        }
        if (!done) co_return done;
        co_await throttle(loop, limit, m);
        pos += m;
      }
      copied_to = end;
      offset = std::max(offset + n, end);
      if (options.progress) options.progress(offset, length);
      continue;
    }
    if (a->allocated) {
      Task<Result<ChainStatus>> status = chain_status(&top.root(), offset, n, {});
      Result<ChainStatus> st = co_await std::move(status);
      if (!st) co_return fail(st.error());
      n = std::min(n, st->status.bytes);
      const bool zero = (st->status.flags & kStatusZero) && !(st->status.flags & kStatusData);
      Status done = ok();
      if (zero) {
        done = co_await base.write_zeroes(offset, n, RequestFlag::kMayUnmap);
      } else {
        const std::size_t len = static_cast<std::size_t>(n);
        done = co_await top.read(offset, IoVec(buffer.data(), len));
        if (done) done = co_await base.write(offset, IoVec(buffer.data(), len));
      }
      if (!done) co_return done;
      co_await throttle(loop, limit, n);
    }
    offset += n;
    if (options.progress) options.progress(offset, length);
  }
  co_return ok();
}

}  // namespace

Task<Status> commit_image(EventLoop& loop, BlockBackend& top, CommitOptions options) {
  CHECK(options.base_depth >= 1 && options.chunk_bytes >= 512);
  std::vector<BlockNode*> layers{&top.root()};
  BlockNode* base = &top.root();
  for (uint32_t i = 0; i < options.base_depth; ++i) {
    base = base->child(ChildRole::kBacking);
    if (!base) {
      co_return fail(Error::with_message(EINVAL, "Image does not have a backing file"));
    }
    if (i + 1 < options.base_depth) layers.push_back(base);
  }
  Task<Result<std::unique_ptr<BlockBackend>>> open = open_base_writable(loop, *base);
  Result<std::unique_ptr<BlockBackend>> writable = co_await std::move(open);
  if (!writable) co_return fail(writable.error());
  BlockBackend& target = **writable;
  Status s = ok();
  if (target.length() < top.length()) s = co_await target.truncate(top.length());
  if (s) {
    Task<Status> copy = copy_above_base(loop, top, target, layers, options);
    s = co_await std::move(copy);
  }
  Status closed = co_await target.close();
  if (!s) co_return s;
  if (!closed) co_return closed;
  if (options.empty_top) {
    s = co_await make_image_empty(top.root());
    if (!s) co_return s;
    s = co_await top.flush();
  }
  co_return s;
}

}  // namespace qblock
