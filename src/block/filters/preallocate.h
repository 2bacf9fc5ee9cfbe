// PreallocateFilter: QEMU's `preallocate` filter (block-semantics.md §7). It sits between a
// format and its file (`driver=qcow2,file.driver=preallocate,file.file.filename=X`) and, when
// a write goes past the end of the file, zeroes a large area ahead of it with one ALLOCATE
// write-zeroes, so that the writes that follow land in allocated space instead of extending
// the file one cluster at a time. Upward it reports the real end of the data, and it cuts the
// file back to that end on close.
#pragma once

#include <cstdint>

#include "block/driver.h"
#include "block/filters/passthrough.h"
#include "runtime/sync.h"

namespace qblock {

class PreallocateFilter : public PassthroughFilter {
 public:
  struct Settings {
    uint64_t prealloc_align = 1 << 20;   // the preallocated end is a multiple of this
    uint64_t prealloc_size = 128 << 20;  // how far beyond a write's end to preallocate
    // qblock's extension (option `refill-ahead`, off by default as in QEMU; qcow2's default
    // filter turns it on): preallocate the next range in the background once writes come
    // within prealloc_size / 2 of the preallocated end, so that they never reach it.
    bool refill_ahead = false;
  };

  // Takes ownership of `file`. The preallocation state is set up only when `file` is
  // writable; over a read-only file the filter just passes requests through.
  // REQUIRES: settings validated (prealloc_align a multiple of 512 and of the file's request
  // alignment, or 0).
  PreallocateFilter(EventLoop& loop, NodePtr file, Settings settings);

  // The end of the data (block-semantics.md §7.4): the file's length at open, then the
  // highest end of any write or truncate through the filter. Not the preallocated file size.
  uint64_t length() const override;
  // qemu-io `info` on the filter itself: "format name: preallocate", no cluster size.
  NodeInfo info() const override { return BlockNode::info(); }

  // Cuts the file back to the end of the data and stops preallocating: what the filter does
  // when it loses write access to its file (§7.2). After it, length() is the file's length.
  // qblock has no permission updates yet; this is the hook they will call. Idempotent.
  Task<Status> release_write_access();

  // For tests and diagnostics. file_end() < 0 means unknown.
  const Settings& settings() const { return settings_; }
  int64_t file_end() const { return file_end_; }
  uint64_t zero_start() const { return zero_start_; }
  // True once the file has answered ENOTSUP to an ALLOCATE request (or never advertised
  // NO_FALLBACK): no further preallocation is tried while the filter stays open.
  bool preallocation_disabled() const { return disabled_; }

 protected:
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> do_truncate(uint64_t size, PreallocMode mode, Exact exact) override;
  // Truncates the file back to the end of the data.
  Task<Status> do_close() override;

 private:
  // Bookkeeping for a write or write-zeroes of [offset, offset + bytes) before it is
  // forwarded: moves the data end and, if the write goes past the preallocated end,
  // preallocates ahead (§7.3). `mergeable`: a plain write-zeroes that may be dropped.
  // Returns true when the request is a write-zeroes of an area already known to read as zero
  // and allocated, so it need not be forwarded at all.
  Task<bool> before_write(uint64_t offset, uint64_t bytes, bool mergeable);
  // The preallocation itself (see before_write()); REQUIRES: none in flight.
  Task<bool> preallocate(uint64_t end, uint64_t zero_floor);
  // preallocate() as a background task, announced on refill_done_ when it ends.
  Task<void> refill_ahead(uint64_t end, uint64_t zero_floor);
  // Truncates the file to the data end if it is longer. Leaves file_end_ unknown on failure.
  Task<Status> drop_preallocation();

  Settings settings_;
  // All of the state below is meaningful only while `active_` (the file is writable and the
  // filter holds it).
  bool active_ = false;
  bool disabled_ = false;   // see preallocation_disabled()
  bool in_flight_ = false;  // a preallocation is running; others skip theirs meanwhile
  WaitQueue refill_done_{loop()};
  uint64_t data_end_ = 0;  // see length()
  // Every byte of the file at or beyond zero_start_ reads as zero: it is >= the end of every
  // write forwarded to the file (raised before the write is sent). zero_start_ <= data_end_
  // except after an inexact truncate left the file longer than asked.
  uint64_t zero_start_ = 0;
  // The file's length as far as the filter knows it: every byte below it is allocated.
  // < 0: unknown, read again from the file when needed (after a failed preallocation).
  int64_t file_end_ = -1;
};

// Registry entry for "preallocate". Options: `file` (child), `prealloc-align` (default
// 1 MiB), `prealloc-size` (default 128 MiB). Errors carry QEMU's messages:
// "prealloc-align parameter of preallocate filter is not aligned to 512" and "... is not
// aligned to underlying node request alignment (N)".
Task<Result<NodePtr>> open_preallocate_node(OpenContext& ctx, Options& options);

}  // namespace qblock
