// BufferPool: the data buffers a job's copies use, kept for the next copy instead of freed.
// A fresh buffer costs a page fault and a zeroed page per 4 KiB the first time the kernel pins
// it for O_DIRECT; a mirror of 4 GiB through new 1 MiB buffers spent more time in the kernel
// clearing pages than copying. Single-threaded: one pool per job, on the job's loop.
#pragma once

#include <cstddef>
#include <vector>

#include "qblock/iovec.h"

namespace qblock {

// The buffer size the jobs copy through.
inline constexpr std::size_t kCopyBufferBytes = 1 << 20;

class BufferPool {
 public:
  // Buffers of `buffer_bytes`, aligned to `alignment` (a power of two).
  explicit BufferPool(std::size_t buffer_bytes, std::size_t alignment = 4096)
      : buffer_bytes_(buffer_bytes), alignment_(alignment) {}

  std::size_t buffer_bytes() const { return buffer_bytes_; }
  std::size_t alignment() const { return alignment_; }

  // A buffer of buffer_bytes(): one given back before, or a new one.
  AlignedBuffer take() {
    if (free_.empty()) return AlignedBuffer(buffer_bytes_, alignment_);
    AlignedBuffer b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  // Keeps `buffer` (from take()) for a later take().
  void give(AlignedBuffer buffer) { free_.push_back(std::move(buffer)); }

 private:
  std::size_t buffer_bytes_;
  std::size_t alignment_;
  std::vector<AlignedBuffer> free_;
};

}  // namespace qblock
