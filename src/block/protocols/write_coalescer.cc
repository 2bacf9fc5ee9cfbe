// WriteCoalescer (see write_coalescer.h).
#include "block/protocols/write_coalescer.h"

#include <algorithm>

namespace qblock {

// Queues the write in the held list until dispatch_held resumes it.
class WriteCoalescer::HoldAwaiter {
 public:
  HoldAwaiter(WriteCoalescer& coalescer, Held& write) : coalescer_(coalescer), write_(write) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    write_.waiter = h;
    coalescer_.held_.push_back(&write_);
  }
  void await_resume() const noexcept {}

 private:
  WriteCoalescer& coalescer_;
  Held& write_;
};

Task<int64_t> WriteCoalescer::write(uint64_t offset, IoVec qiov) {
  Held self{offset, std::move(qiov), {}};
  if (writes_in_flight_ == 0) {
    // Nothing in flight, so nothing is held: go out at once.
    ++writes_in_flight_;
    self.leads = true;
  } else {
    co_await HoldAwaiter(*this, self);
  }
  if (self.leads) co_await write_run(self);
  const int64_t result = self.result;
  // The batch ends when its last caller has its result, so that the writes its callers issue
  // next (while the others are still being resumed) are held for one batch together.
  if (--writes_in_flight_ == 0 && !held_.empty()) dispatch_held();
  co_return result;
}

Task<void> WriteCoalescer::write_run(Held& leader) {
  if (!leader.next) {
    leader.result = co_await sink_.write_out(leader.offset, std::move(leader.qiov));
    co_return;
  }
  IoVec merged = leader.qiov;
  for (Held* w = leader.next; w; w = w->next) merged.append(w->qiov);
  const int64_t total = static_cast<int64_t>(merged.size());
  const int64_t merged_result = co_await sink_.write_out(leader.offset, std::move(merged));
  for (Held* w = &leader; w; w = w->next) {
    if (merged_result == total) {
      w->result = static_cast<int64_t>(w->qiov.size());
    } else {
      // Find out whose bytes failed: each write goes out on its own.
      w->result = co_await sink_.write_out(w->offset, w->qiov);
    }
  }
  for (Held* w = leader.next; w;) {
    Held* next = w->next;  // `w` may be freed once its coroutine runs
    loop_.post(w->waiter);
    w = next;
  }
}

void WriteCoalescer::dispatch_held() {
  batch_.swap(held_);
  writes_in_flight_ += static_cast<unsigned>(batch_.size());
  // Writes at one offset may go out in any order (they are concurrent), so an unstable sort,
  // which needs no buffer, will do.
  std::sort(batch_.begin(), batch_.end(),
            [](const Held* a, const Held* b) { return a->offset < b->offset; });
  Held* run_tail = nullptr;
  uint64_t run_end = 0, run_bytes = 0;
  unsigned run_segments = 0;
  for (Held* w : batch_) {
    const uint64_t bytes = w->qiov.size();
    if (run_tail && w->offset == run_end && run_segments + w->qiov.count() <= kMaxSegments &&
        run_bytes + bytes <= kMaxBytes) {
      run_tail->next = w;
    } else {
      w->leads = true;
      run_bytes = 0;
      run_segments = 0;
    }
    run_tail = w;
    run_end = w->offset + bytes;
    run_bytes += bytes;
    run_segments += w->qiov.count();
  }
  for (Held* w : batch_) {
    if (w->leads) loop_.post(w->waiter);
  }
  batch_.clear();
}

}  // namespace qblock
