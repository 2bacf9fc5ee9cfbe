// MirrorJob: blockdev-mirror as a Job. A mirror_top filter goes above the source and the
// source's users are switched onto it; every guest write, write-zeroes and discard through it
// marks a dirty bitmap (write-blocking mode: the write also goes to the target before it is
// acknowledged). The copy loop copies dirty chunks (zero ranges as efficient write-zeroes),
// becomes ready when the target is in sync, and on job-complete stops guest writes at the
// filter, copies what is left, flushes the target and switches the users onto the target
// (the pivot); the parked writes then go to the target, in order.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "block/dirty_bitmap.h"
#include "block/filters/mirror_top.h"
#include "jobs/buffer_pool.h"
#include "jobs/job.h"
#include "jobs/range_locks.h"

namespace qblock {

enum class MirrorSync { kFull, kTop, kNone };

struct MirrorOptions {
  JobOptions job;
  MirrorSync sync = MirrorSync::kFull;
  uint64_t granularity = 0;  // 0: the target's cluster size within [4 KiB, 64 KiB]
  uint64_t buf_size = 0;     // 0: 16 MiB; bytes in flight at most
  bool write_blocking = false;
  OnError on_source_error = OnError::kReport;
  OnError on_target_error = OnError::kReport;
  // The QAPI job type: "mirror", or "commit" for an active block-commit, which is a mirror of
  // the active layer into a base in its own backing chain.
  const char* type = "mirror";
  // With sync=top: the copy starts with what the chain above `base` allocates (not only the
  // top layer). An active commit's base; null for blockdev-mirror.
  const BlockNode* base = nullptr;
};

class MirrorJob : public Job, private MirrorTopFilter::Hooks {
 public:
  // `switch_users(node)` makes every user of the source use `node` instead (the filter at
  // the start, the target at the pivot, the source again when the job ends otherwise).
  // REQUIRES: source and target outlive the job and have the same length.
  MirrorJob(EventLoop& loop, MirrorOptions options, JobListener& listener, BlockNode& source,
            BlockNode& target, std::function<void(BlockNode&)> switch_users);
  ~MirrorJob() override;

  const char* type() const override { return options_.type; }
  uint64_t current_progress() const override;
  uint64_t total_progress() const override;
  BlockNode& source() const { return source_; }
  BlockNode& target() const { return target_; }
  MirrorTopFilter& filter() { return *filter_; }
  // True until the job has switched the source's users away from the filter (pivot, or
  // back to the source): a new user of the source must go through the filter meanwhile.
  bool filter_in_path() const { return final_node_ == nullptr; }

 protected:
  Task<Status> run() override;
  Status do_complete() override;
  bool do_soft_cancel() override;
  void do_cancel() override;
  Task<void> abort() override;

 private:
  // Guest requests (MirrorTopFilter::Hooks).
  Task<Status> guest_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> guest_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> guest_discard(uint64_t offset, uint64_t bytes) override;
  // Waits while the filter holds guest writes back; true if they now go to `final_node_`.
  Task<bool> enter_guest_request();
  void leave_guest_request();
  // A write-blocking guest write reached the target too: its whole granules are clean.
  void clean_after_guest_copy(uint64_t offset, uint64_t bytes);

  Task<Status> mark_initial_dirty();
  // Copies one dirty chunk, then counts it done. Errors are handled by policy here.
  Task<void> copy_chunk(uint64_t offset, uint64_t bytes);
  Task<Status> copy_range(uint64_t offset, uint64_t bytes, bool& is_read_error);
  Task<Status> drain_and_switch(BlockNode& to);
  // Exclusive access to a byte range between copies and write-blocking guest writes.

  MirrorOptions options_;
  BlockNode& source_;
  BlockNode& target_;
  std::function<void(BlockNode&)> switch_users_;
  std::unique_ptr<MirrorTopFilter> filter_;
  DirtyBitmap dirty_;
  uint64_t length_;
  uint64_t chunk_bytes_;
  uint64_t cursor_ = 0;
  uint64_t in_flight_bytes_ = 0;
  uint64_t copied_bytes_ = 0;
  int copies_in_flight_ = 0;
  int guests_in_flight_ = 0;
  bool completing_ = false;          // job-complete: pivot once in sync
  bool no_pivot_ = false;            // block-job-cancel of a ready job: finish without pivoting
  bool gate_closed_ = false;         // guest writes wait at the filter
  BlockNode* final_node_ = nullptr;  // where held-back guest writes go after the switch
  Status failure_;
  WaitQueue gate_;
  RangeLocks ranges_;  // copies in progress
  BufferPool buffers_{kCopyBufferBytes};
  WaitQueue progress_;  // a copy or a guest request finished
};

}  // namespace qblock
