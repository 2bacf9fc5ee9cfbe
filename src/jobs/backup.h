// BackupJob: blockdev-backup as a Job, a point-in-time copy of a running disk. A filter
// (MirrorTopFilter) goes above the source and the source's users are switched onto it; a
// guest write, write-zeroes or discard first copies the old data of the granules it touches
// to the target if they have not been copied yet (copy-before-write), then goes to the
// source. Meanwhile the job copies every granule still pending. The target therefore ends
// equal to the source as it was when the job started. sync=full copies everything, top what
// the source's top layer allocates, none only what guest writes are about to overwrite (the
// job then runs until cancelled). No READY: the job concludes by itself, then the users are
// switched back onto the source.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "block/dirty_bitmap.h"
#include "block/filters/mirror_top.h"
#include "jobs/buffer_pool.h"
#include "jobs/job.h"
#include "jobs/range_locks.h"

namespace qblock {

// sync=bitmap copies what a dirty bitmap of the source marks (sync=incremental is sync=bitmap
// with BitmapMode::kOnSuccess).
enum class BackupSync { kFull, kTop, kNone, kBitmap };

// What becomes of the job's bitmap (QMP's bitmap-mode): after success it holds only the writes
// made during the job (kOnSuccess, kAlways), or it keeps its bits plus those writes (kNever, and
// kOnSuccess after a failure); after a failure kAlways keeps the writes and what was not copied.
enum class BitmapMode { kOnSuccess, kNever, kAlways };

struct BackupOptions {
  JobOptions job;
  BackupSync sync = BackupSync::kFull;
  OnError on_source_error = OnError::kReport;
  OnError on_target_error = OnError::kReport;
  // The source's bitmap `bitmap` (empty: none), frozen by the caller with
  // freeze_dirty_bitmap(); `frozen` is what that returned. The job gives it back
  // (thaw_dirty_bitmap) when it ends, as `bitmap_mode` says.
  std::string bitmap{};
  const DirtyBitmap* frozen = nullptr;
  BitmapMode bitmap_mode = BitmapMode::kOnSuccess;
};

class BackupJob : public Job, private MirrorTopFilter::Hooks {
 public:
  // `switch_users(node)` makes every user of the source use `node` instead (the filter at
  // the start, the source again at the end). REQUIRES: source and target outlive the job and
  // have the same length.
  BackupJob(EventLoop& loop, BackupOptions options, JobListener& listener, BlockNode& source,
            BlockNode& target, std::function<void(BlockNode&)> switch_users);
  ~BackupJob() override;

  const char* type() const override { return "backup"; }
  bool cancel_wakes_throttle() const override { return true; }
  uint64_t current_progress() const override { return copied_bytes_; }
  uint64_t total_progress() const override { return total_bytes_; }
  BlockNode& source() const { return source_; }
  BlockNode& target() const { return target_; }
  MirrorTopFilter& filter() { return *filter_; }
  // The granules the target still lacks (QEMU lists this copy bitmap among the source's
  // bitmaps while the job runs).
  const DirtyBitmap& copy_bitmap() const { return pending_; }
  // True until the users are back on the source: a new user must go through the filter.
  bool filter_in_path() const { return !filter_removed_; }

 protected:
  Task<Status> run() override;
  Task<void> commit() override;
  Task<void> abort() override;

 private:
  Task<Status> guest_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> guest_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> guest_discard(uint64_t offset, uint64_t bytes) override;
  // Copies the old data of every pending granule [offset, offset + bytes) touches.
  Task<Status> copy_before_write(uint64_t offset, uint64_t bytes);
  Task<Status> mark_pending();
  // Copies the pending granules of [offset, offset + bytes) (whole granules) to the target.
  // REQUIRES: the range is locked.
  Task<Status> copy_pending(uint64_t offset, uint64_t bytes, bool& is_read_error);
  Task<Status> copy_range(uint64_t offset, uint64_t bytes, bool& is_read_error);
  Task<void> remove_filter();
  // Gives the frozen bitmap back as the job ended (`succeeded` or not).
  void release_bitmap(bool succeeded);

  BackupOptions options_;
  BlockNode& source_;
  BlockNode& target_;
  std::function<void(BlockNode&)> switch_users_;
  std::unique_ptr<MirrorTopFilter> filter_;
  DirtyBitmap pending_;  // granules whose point-in-time data the target still lacks
  uint64_t length_;
  uint64_t chunk_bytes_;
  uint64_t copied_bytes_ = 0;
  uint64_t total_bytes_ = 0;
  bool filter_removed_ = false;
  RangeLocks ranges_;  // copies in progress
  BufferPool buffers_{kCopyBufferBytes};
};

}  // namespace qblock
