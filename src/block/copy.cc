// copy_image (qblock/image.h): copies one backend's contents into another, extent by extent.
// Workers take the next extent in order under a mutex (so block status is asked once per
// extent, front to back) and copy it outside the lock, so up to `parallel` reads and writes
// overlap.
#include <algorithm>
#include <utility>
#include <vector>

#include "base/check.h"
#include "qblock/chain_status.h"
#include "qblock/image.h"
#include "qblock/iovec.h"
#include "qblock/sync.h"

namespace qblock {

namespace {

struct CopyState {
  CopyState(EventLoop& loop, BlockBackend& s, BlockBackend& t, CopyOptions o)
      : source(s), target(t), options(o), mutex(loop) {}
  BlockBackend& source;
  BlockBackend& target;
  CopyOptions options;
  AsyncMutex mutex;  // guards next_offset and failed
  uint64_t next_offset = 0;
  bool failed = false;  // a worker failed: the others stop taking extents
};

struct Extent {
  uint64_t offset = 0;
  uint64_t bytes = 0;  // 0: nothing left
  bool zero = false;
};

// Takes the next extent (at most chunk_bytes) for this worker.
Task<Result<Extent>> next_extent(CopyState* s) {
  AsyncMutex::Guard guard = co_await s->mutex.lock();
  Extent e;
  const uint64_t length = s->source.length();
  if (s->failed || s->next_offset >= length) co_return e;
  e.offset = s->next_offset;
  const uint64_t want = std::min(length - e.offset, s->options.chunk_bytes);
  Task<Result<ChainStatus>> ask = chain_status(&s->source.root(), e.offset, want, {});
  Result<ChainStatus> st = co_await std::move(ask);
  if (!st) {
    s->failed = true;
    co_return fail(st.error());
  }
  e.bytes = std::min(st->status.bytes, want);
  // Only a zero flag without data makes the extent skippable (qblock/chain_status.h).
  e.zero = (st->status.flags & kStatusZero) && !(st->status.flags & kStatusData);
  s->next_offset += e.bytes;
  co_return e;
}

Task<Status> copy_worker(CopyState* s) {
  AlignedBuffer buffer(static_cast<std::size_t>(s->options.chunk_bytes));
  for (;;) {
    Task<Result<Extent>> take = next_extent(s);
    Result<Extent> e = co_await std::move(take);
    if (!e) co_return fail(e.error());
    if (e->bytes == 0) co_return ok();
    Status done = ok();
    if (e->zero) {
      if (!s->options.target_is_zero) {
        done = co_await s->target.write_zeroes(e->offset, e->bytes, RequestFlag::kMayUnmap);
      }
    } else {
      const std::size_t n = static_cast<std::size_t>(e->bytes);
      done = co_await s->source.read(e->offset, IoVec(buffer.data(), n));
      if (done) done = co_await s->target.write(e->offset, IoVec(buffer.data(), n));
    }
    if (!done) {
      s->failed = true;
      co_return done;
    }
  }
}

}  // namespace

Task<Status> copy_image(EventLoop& loop, BlockBackend& source, BlockBackend& target,
                        CopyOptions options) {
  CHECK(options.parallel >= 1 && options.chunk_bytes >= 512);
  if (target.length() < source.length()) {
    co_return fail(Error::with_message(EINVAL, "Target image is smaller than the source"));
  }
  CopyState state(loop, source, target, options);
  std::vector<Task<Status>> workers;
  for (uint32_t i = 0; i < options.parallel; ++i) workers.push_back(copy_worker(&state));
  Task<std::vector<Status>> all = when_all(std::move(workers));
  std::vector<Status> results = co_await std::move(all);
  for (Status& r : results) {
    if (!r) co_return r;
  }
  co_return ok();
}

}  // namespace qblock
