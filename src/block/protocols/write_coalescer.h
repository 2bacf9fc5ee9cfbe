// WriteCoalescer: holds back the direct writes a file system serialises and merges the
// host-contiguous ones.
#pragma once

#include <coroutine>
#include <cstdint>
#include <vector>

#include "qblock/event_loop.h"
#include "qblock/iovec.h"
#include "qblock/task.h"

namespace qblock {

// Where a WriteCoalescer sends its writes: one positional vectored write, retried by the sink
// until it is complete.
class WriteSink {
 public:
  virtual ~WriteSink() = default;
  // Writes all of `qiov` at `offset`. Returns the bytes written (qiov.size()) or -errno.
  virtual Task<int64_t> write_out(uint64_t offset, IoVec qiov) = 0;
};

// ext4 and XFS run a direct write that is not aligned to the file system block, into space
// that is not yet written (a hole or an unwritten extent, which is what preallocation leaves),
// under the inode lock taken exclusively, after draining every other direct I/O on the file:
// they may have to zero the rest of a block. A stream of such writes then goes one at a time
// however deep the queue, each paying for the lock, the drain and a hand-off to an io_uring
// worker thread.
//
// WriteCoalescer keeps at most one batch of the writes it is given in flight. Writes that
// arrive meanwhile are held. Once every write of the batch has completed and its caller has
// its result, the held writes go out together as the next batch, host-contiguous ones merged
// into one vectored write, so the file system does the same work in far fewer exclusive
// sections. A write that finds nothing in flight goes out at once.
//
// Held writes are concurrent from their callers' point of view, so the order in which they
// reach the file is free, as it is for any concurrent requests. A merged write that fails is
// retried write by write, so each caller gets the result of its own bytes.
//
// Single-threaded: every call runs on `loop`.
class WriteCoalescer {
 public:
  // Bounds of one merged write: the kernel's limit on iovecs per call, and a size that keeps
  // one merged write from holding the next batch back for long.
  static constexpr unsigned kMaxSegments = 1024;
  static constexpr uint64_t kMaxBytes = 16u << 20;

  WriteCoalescer(EventLoop& loop, WriteSink& sink) : loop_(loop), sink_(sink) {}
  WriteCoalescer(const WriteCoalescer&) = delete;
  WriteCoalescer& operator=(const WriteCoalescer&) = delete;

  // Writes `qiov` at `offset` through the sink, possibly held back and merged with other
  // writes. Returns the bytes written or -errno, as WriteSink::write_out.
  Task<int64_t> write(uint64_t offset, IoVec qiov);

 private:
  // One caller's write, living in its coroutine's frame.
  struct Held {
    uint64_t offset;
    IoVec qiov;
    std::coroutine_handle<> waiter;
    Held* next = nullptr;  // the rest of its run, once dispatched
    bool leads = false;    // the first write of a run: its coroutine submits the run
    int64_t result = 0;    // set by the run's leader for the other writes of the run
  };
  class HoldAwaiter;

  // Writes the run starting at `leader` (one merged write) and fills in every result; wakes
  // the run's other writes.
  Task<void> write_run(Held& leader);
  // Starts the held writes as the next batch: sorted by offset, contiguous ones chained into
  // runs, every run's leader resumed.
  void dispatch_held();

  EventLoop& loop_;
  WriteSink& sink_;
  // Writes of the current batch whose callers have not yet been given their results.
  unsigned writes_in_flight_ = 0;
  std::vector<Held*> held_;   // waiting for the current batch; empty when none is in flight
  std::vector<Held*> batch_;  // scratch for dispatch_held, kept for its capacity
};

}  // namespace qblock
