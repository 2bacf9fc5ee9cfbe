// BackupJob (see backup.h).
#include "jobs/backup.h"

#include <algorithm>

#include "jobs/extent_copy.h"
#include "qblock/dirty_bitmaps.h"

namespace qblock {

namespace {

constexpr uint64_t kMaxChunk = 1 << 20;

// QEMU's backup cluster: the target's cluster size, at least 64 KiB.
uint64_t backup_granularity(const BlockNode& target) {
  return std::max<uint64_t>(target.info().cluster_size, 64 << 10);
}

}  // namespace

BackupJob::BackupJob(EventLoop& loop, BackupOptions options, JobListener& listener,
                     BlockNode& source, BlockNode& target,
                     std::function<void(BlockNode&)> switch_users)
    : Job(loop, options.job, listener),
      options_(std::move(options)),
      source_(source),
      target_(target),
      switch_users_(std::move(switch_users)),
      filter_(
          std::make_unique<MirrorTopFilter>(source, static_cast<MirrorTopFilter::Hooks&>(*this))),
      pending_(source.length(), backup_granularity(target)),
      length_(source.length()),
      ranges_(loop) {
  chunk_bytes_ = std::max(pending_.granularity(), kMaxChunk);
  // The point in time is now: everything is pending until the job has looked at the source
  // (sync=top narrows it down in run(), before any guest write can have passed the filter's
  // copy-before-write, which copies what is pending).
  if (options_.sync == BackupSync::kBitmap) {
    pending_.merge(*options_.frozen);
  } else {
    pending_.set(0, length_);
  }
  total_bytes_ = options_.sync == BackupSync::kNone ? length_ : 0;
  switch_users_(*filter_);
}

BackupJob::~BackupJob() = default;

// ---- guest requests through the filter ----

Task<Status> BackupJob::copy_before_write(uint64_t offset, uint64_t bytes) {
  const uint64_t g = pending_.granularity();
  const uint64_t start = offset / g * g;
  const uint64_t end = std::min(length_, (offset + bytes + g - 1) / g * g);
  co_await ranges_.lock(start, end - start);
  bool read_error = false;
  Status s = co_await copy_pending(start, end - start, read_error);
  ranges_.unlock(start, end - start);
  if (!s)
    report_io_error(read_error, read_error ? options_.on_source_error : options_.on_target_error);
  co_return s;
}

Task<Status> BackupJob::guest_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  Status s = co_await copy_before_write(offset, qiov.size());
  if (!s) co_return s;
  co_return co_await source_.write(offset, std::move(qiov), flags);
}

Task<Status> BackupJob::guest_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  Status s = co_await copy_before_write(offset, bytes);
  if (!s) co_return s;
  co_return co_await source_.write_zeroes(offset, bytes, flags);
}

Task<Status> BackupJob::guest_discard(uint64_t offset, uint64_t bytes) {
  Status s = co_await copy_before_write(offset, bytes);
  if (!s) co_return s;
  co_return co_await source_.discard(offset, bytes);
}

// ---- the copy ----

Task<Status> BackupJob::copy_pending(uint64_t offset, uint64_t bytes, bool& is_read_error) {
  const uint64_t end = offset + bytes;
  uint64_t pos = offset;
  while (pos < end) {
    std::optional<std::pair<uint64_t, uint64_t>> next =
        pending_.next_dirty(pos, std::max(end - pos, pending_.granularity()));
    // next_dirty wraps around: only runs inside [pos, end) count.
    if (!next || next->first < pos || next->first >= end) break;
    const uint64_t run = std::min(next->second, end - next->first);
    Status s = co_await copy_extent(source_, target_, next->first, run, is_read_error, buffers_);
    if (!s) co_return s;
    pending_.reset(next->first, run);
    copied_bytes_ += run;
    pos = next->first + run;
  }
  co_return ok();
}

Task<Status> BackupJob::mark_pending() {
  if (options_.sync != BackupSync::kTop) {
    if (options_.sync == BackupSync::kFull) total_bytes_ = length_;
    if (options_.sync == BackupSync::kBitmap) total_bytes_ = pending_.dirty_bytes();
    co_return ok();
  }
  // Only what the top layer allocates is part of the backup; the rest is the target's
  // backing file's business. A guest write that came first copied a granule that was still
  // pending: what it copied is the point-in-time data either way.
  uint64_t offset = 0;
  while (offset < length_) {
    Result<std::pair<bool, uint64_t>> a = co_await source_.is_allocated(offset, length_ - offset);
    if (!a) co_return fail(a.error());
    if (a->second == 0) break;
    if (!a->first) {
      // Whole granules only: a granule partly allocated stays pending.
      const uint64_t g = pending_.granularity();
      const uint64_t start = (offset + g - 1) / g * g;
      const uint64_t end = offset + a->second == length_ ? length_ : (offset + a->second) / g * g;
      if (end > start) pending_.reset(start, end - start);
    }
    offset += a->second;
  }
  total_bytes_ = pending_.dirty_bytes();
  co_return ok();
}

Task<Status> BackupJob::run() {
  Status init = co_await mark_pending();
  if (!init) co_return init;
  if (options_.sync == BackupSync::kNone) {
    // Only copy-before-write: the job runs until it is cancelled.
    while (!co_await pause_point()) co_await idle_wait();
    co_return ok();
  }
  uint64_t cursor = 0;
  while (true) {
    if (co_await pause_point()) break;
    std::optional<std::pair<uint64_t, uint64_t>> next = pending_.next_dirty(cursor, chunk_bytes_);
    if (!next) break;
    co_await ranges_.lock(next->first, next->second);
    bool read_error = false;
    Status s = co_await copy_pending(next->first, next->second, read_error);
    ranges_.unlock(next->first, next->second);
    if (!s) {
      const OnError policy = read_error ? options_.on_source_error : options_.on_target_error;
      report_io_error(read_error, policy);
      if (policy == OnError::kReport) co_return s;
      // ignore: tried again at once; stop: after job-resume (the granules are still pending).
      continue;
    }
    cursor = next->first + next->second;
    co_await throttle(next->second);
  }
  if (should_stop()) co_return ok();
  co_return co_await target_.flush();
}

Task<void> BackupJob::remove_filter() {
  if (filter_removed_) co_return;
  filter_removed_ = true;
  filter_->redirect(source_);
  switch_users_(source_);
  // Requests still in the filter may be copying before their write: they finish first.
  while (filter_->tracked_requests() > 0) co_await loop_.yield();
}

void BackupJob::release_bitmap(bool succeeded) {
  if (options_.bitmap.empty()) return;
  const BitmapMode mode = options_.bitmap_mode;
  const bool clean_copied =
      mode == BitmapMode::kAlways || (succeeded && mode != BitmapMode::kNever);
  thaw_dirty_bitmap(source_, options_.bitmap,
                    clean_copied ? BitmapThaw::kAbdicate : BitmapThaw::kReclaim,
                    !succeeded && mode == BitmapMode::kAlways ? &pending_ : nullptr);
  options_.bitmap.clear();
}

Task<void> BackupJob::commit() {
  co_await remove_filter();
  release_bitmap(true);
}

Task<void> BackupJob::abort() {
  co_await remove_filter();
  release_bitmap(false);
}

}  // namespace qblock
