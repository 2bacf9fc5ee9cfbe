// Allocation fences: the record of an allocation whose data I/O runs outside the metadata
// lock, between the moment its host clusters are taken and the moment its L2 entries are
// linked (block-semantics.md §6). While a fence stands, nobody else allocates, zeroes or
// discards its guest clusters; once the clusters hold their final COW contents (`ready`),
// other writes may go straight into them as counted writers, and the link waits for them.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "qblock/task.h"
#include "runtime/sync.h"

namespace qblock::qcow2 {

// What the write planner needs to know of a fence (plain data, so planner tests need no
// event loop). Every FenceRange the driver registers is the base of an AllocationFence.
struct FenceRange {
  uint64_t start = 0;  // first guest byte (cluster-aligned)
  uint64_t end = 0;    // past the last guest byte (cluster-aligned)
  uint64_t host = 0;   // host offset of `start`; valid once `ready`
  bool ready = false;  // zeroed or COW-filled: other writes may go in
};

// The first fence in `fences` that overlaps [start, end), or nullptr.
inline FenceRange* find_fence(const std::vector<FenceRange*>& fences, uint64_t start,
                              uint64_t end) {
  for (FenceRange* f : fences) {
    if (f->start < end && start < f->end) return f;
  }
  return nullptr;
}

struct AllocationFence : FenceRange, std::enable_shared_from_this<AllocationFence> {
  AllocationFence(EventLoop& loop, uint64_t s, uint64_t e) : done(loop), writers_done(loop) {
    start = s;
    end = e;
  }
  bool finished = false;  // linked, or given up (then `linked` stays false)
  bool linked = false;
  unsigned writers = 0;  // other writes into the clusters still running
  // Extended L2 entries (subcluster_write.cc), one word per cluster of the fence: the alloc
  // bits of the subclusters whose contents are final once `ready` (the allocating write's,
  // the old cluster's data, joined writers'); the link makes them all allocated. Empty for
  // standard clusters.
  std::vector<uint64_t> subcluster_bits;
  WaitQueue done;  // woken when ready and when finished
  WaitQueue writers_done;

  // Publishes the clusters' host offset: their contents are final, others may write in.
  void mark_ready(uint64_t host_offset) {
    if (ready) return;
    host = host_offset;
    ready = true;
    done.wake_all();
  }
  // Waits until no counted writer is in flight.
  Task<void> wait_for_writers() {
    while (writers) co_await writers_done.wait();
  }
};

// The fence list's owner side: registers a new fence on construction and, on destruction
// (whatever path the allocation took), withdraws it, marks it finished and wakes everybody
// waiting on it. The fence itself stays alive as long as a joined writer holds it.
class FenceRegistration {
 public:
  FenceRegistration(std::vector<FenceRange*>& list, std::shared_ptr<AllocationFence> fence)
      : list_(&list), fence_(std::move(fence)) {
    list_->push_back(fence_.get());
  }
  FenceRegistration(const FenceRegistration&) = delete;
  FenceRegistration& operator=(const FenceRegistration&) = delete;
  ~FenceRegistration() {
    std::erase(*list_, static_cast<FenceRange*>(fence_.get()));
    fence_->finished = true;
    fence_->done.wake_all();
  }
  AllocationFence& fence() const { return *fence_; }

 private:
  std::vector<FenceRange*>* list_;
  std::shared_ptr<AllocationFence> fence_;
};

// A write counted among a fence's writers: the fence's link waits until it is released.
// Released explicitly once the write's data I/O is done, or on destruction.
class WriterToken {
 public:
  WriterToken() = default;
  explicit WriterToken(AllocationFence& fence) : fence_(&fence) { ++fence_->writers; }
  WriterToken(WriterToken&& o) noexcept : fence_(std::exchange(o.fence_, nullptr)) {}
  WriterToken& operator=(WriterToken&& o) noexcept {
    if (this != &o) {
      release();
      fence_ = std::exchange(o.fence_, nullptr);
    }
    return *this;
  }
  ~WriterToken() { release(); }
  void release() {
    if (fence_ && --fence_->writers == 0) fence_->writers_done.wake_all();
    fence_ = nullptr;
  }
  bool held() const { return fence_ != nullptr; }

 private:
  AllocationFence* fence_ = nullptr;
};

}  // namespace qblock::qcow2
