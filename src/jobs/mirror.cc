// MirrorJob (see mirror.h).
#include "jobs/mirror.h"

#include <algorithm>

#include "jobs/allocated_above.h"
#include "jobs/extent_copy.h"
#include "qblock/chain_status.h"

namespace qblock {

namespace {

constexpr uint64_t kDefaultBufSize = 16 << 20;
constexpr uint64_t kMaxChunk = 1 << 20;

uint64_t default_granularity(const BlockNode& target) {
  const uint64_t cluster = target.info().cluster_size;
  if (cluster == 0) return 64 << 10;
  return std::clamp<uint64_t>(cluster, 4 << 10, 64 << 10);
}

}  // namespace

MirrorJob::MirrorJob(EventLoop& loop, MirrorOptions options, JobListener& listener,
                     BlockNode& source, BlockNode& target,
                     std::function<void(BlockNode&)> switch_users)
    : Job(loop, options.job, listener),
      options_(std::move(options)),
      source_(source),
      target_(target),
      switch_users_(std::move(switch_users)),
      filter_(
          std::make_unique<MirrorTopFilter>(source, static_cast<MirrorTopFilter::Hooks&>(*this))),
      dirty_(source.length(),
             options_.granularity ? options_.granularity : default_granularity(target)),
      length_(source.length()),
      gate_(loop),
      ranges_(loop),
      progress_(loop) {
  if (options_.buf_size == 0) options_.buf_size = kDefaultBufSize;
  chunk_bytes_ = std::max(dirty_.granularity(), std::min(kMaxChunk, options_.buf_size));
  // From here on every guest request of the source's users passes the filter.
  switch_users_(*filter_);
}

MirrorJob::~MirrorJob() = default;

// As QEMU counts: every byte copied is progress (also a range copied again after a guest
// wrote it), and the total is that plus what is still to copy, so guest writes during the
// job make the total grow.
uint64_t MirrorJob::total_progress() const {
  return copied_bytes_ + dirty_.dirty_bytes() + in_flight_bytes_;
}

uint64_t MirrorJob::current_progress() const { return copied_bytes_; }

Status MirrorJob::do_complete() {
  completing_ = true;
  return ok();
}

bool MirrorJob::do_soft_cancel() {
  no_pivot_ = true;
  return true;
}

void MirrorJob::do_cancel() { progress_.wake_all(); }

// ---- guest requests through the filter ----

Task<bool> MirrorJob::enter_guest_request() {
  while (gate_closed_) co_await gate_.wait();
  if (final_node_ != nullptr) co_return true;
  ++guests_in_flight_;
  co_return false;
}

void MirrorJob::leave_guest_request() {
  --guests_in_flight_;
  progress_.wake_all();
  kick();
}

Task<Status> MirrorJob::guest_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  const bool switched = co_await enter_guest_request();
  if (switched) co_return co_await final_node_->write(offset, std::move(qiov), flags);
  const uint64_t bytes = qiov.size();
  Status s = ok();
  if (options_.write_blocking) {
    co_await ranges_.lock(offset, bytes);
    s = co_await source_.write(offset, qiov, flags);
    dirty_.set(offset, bytes);
    if (s) {
      Status t = co_await target_.write(offset, std::move(qiov), flags);
      // The target has these bytes: whole granules need no copy any more.
      if (t) clean_after_guest_copy(offset, bytes);
    }
    ranges_.unlock(offset, bytes);
  } else {
    s = co_await source_.write(offset, std::move(qiov), flags);
    // Marked after the write completed: a copy that read the old data before is redone.
    dirty_.set(offset, bytes);
  }
  leave_guest_request();
  co_return s;
}

Task<Status> MirrorJob::guest_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  const bool switched = co_await enter_guest_request();
  if (switched) co_return co_await final_node_->write_zeroes(offset, bytes, flags);
  Status s = ok();
  if (options_.write_blocking) {
    co_await ranges_.lock(offset, bytes);
    s = co_await source_.write_zeroes(offset, bytes, flags);
    dirty_.set(offset, bytes);
    if (s) {
      Status t = co_await target_.write_zeroes(offset, bytes, flags);
      if (t) clean_after_guest_copy(offset, bytes);
    }
    ranges_.unlock(offset, bytes);
  } else {
    s = co_await source_.write_zeroes(offset, bytes, flags);
    dirty_.set(offset, bytes);
  }
  leave_guest_request();
  co_return s;
}

Task<Status> MirrorJob::guest_discard(uint64_t offset, uint64_t bytes) {
  const bool switched = co_await enter_guest_request();
  if (switched) co_return co_await final_node_->discard(offset, bytes);
  Status s = co_await source_.discard(offset, bytes);
  // What the source reads there now may differ from the target: copy it again.
  dirty_.set(offset, bytes);
  leave_guest_request();
  co_return s;
}

void MirrorJob::clean_after_guest_copy(uint64_t offset, uint64_t bytes) {
  const uint64_t before = dirty_.dirty_bytes();
  dirty_.reset(offset, bytes);
  copied_bytes_ += before - dirty_.dirty_bytes();
}

// ---- the copy ----

Task<Status> MirrorJob::mark_initial_dirty() {
  if (options_.sync == MirrorSync::kFull) {
    dirty_.set(0, length_);
  } else if (options_.sync == MirrorSync::kTop && options_.base != nullptr) {
    std::optional<std::vector<BlockNode*>> layers = layers_above(source_, options_.base);
    if (!layers) co_return fail(Error::with_message(EINVAL, "base not in the source's chain"));
    uint64_t offset = 0;
    while (offset < length_) {
      Result<Allocation> a = co_await allocated_above_base(*layers, offset, length_ - offset);
      if (!a) co_return fail(a.error());
      if (a->bytes == 0) break;
      if (a->allocated) dirty_.set(offset, a->bytes);
      offset += a->bytes;
    }
  } else if (options_.sync == MirrorSync::kTop) {
    uint64_t offset = 0;
    while (offset < length_) {
      Result<std::pair<bool, uint64_t>> a = co_await source_.is_allocated(offset, length_ - offset);
      if (!a) co_return fail(a.error());
      if (a->second == 0) break;
      if (a->first) dirty_.set(offset, a->second);
      offset += a->second;
    }
  }
  co_return ok();
}

Task<Status> MirrorJob::copy_range(uint64_t offset, uint64_t bytes, bool& is_read_error) {
  co_return co_await copy_extent(source_, target_, offset, bytes, is_read_error, buffers_);
}

Task<void> MirrorJob::copy_chunk(uint64_t offset, uint64_t bytes) {
  co_await ranges_.lock(offset, bytes);
  bool read_error = false;
  Status s = co_await copy_range(offset, bytes, read_error);
  ranges_.unlock(offset, bytes);
  if (s) copied_bytes_ += bytes;
  if (!s) {
    const OnError policy = read_error ? options_.on_source_error : options_.on_target_error;
    report_io_error(read_error, policy);
    if (policy == OnError::kReport) {
      if (failure_) failure_ = s;
    } else {
      // Tried again: at once (ignore, as QEMU does), or after job-resume (stop).
      dirty_.set(offset, bytes);
    }
  }
  in_flight_bytes_ -= bytes;
  --copies_in_flight_;
  progress_.wake_all();
}

Task<Status> MirrorJob::run() {
  Status init = co_await mark_initial_dirty();
  if (!init) co_return init;
  while (true) {
    const bool stop = co_await pause_point();
    if (stop || !failure_) break;
    std::optional<std::pair<uint64_t, uint64_t>> next = dirty_.next_dirty(cursor_, chunk_bytes_);
    if (next && (copies_in_flight_ == 0 || in_flight_bytes_ + next->second <= options_.buf_size)) {
      dirty_.reset(next->first, next->second);
      cursor_ = next->first + next->second;
      in_flight_bytes_ += next->second;
      ++copies_in_flight_;
      spawn(copy_chunk(next->first, next->second));
      co_await throttle(next->second);
      continue;
    }
    if (next || copies_in_flight_ > 0) {
      co_await progress_.wait();
      continue;
    }
    // In sync.
    if (!ready()) {
      Status f = co_await target_.flush();
      if (!f) {
        failure_ = f;
        break;
      }
      set_ready();
      continue;
    }
    if (completing_ || no_pivot_) {
      Status done = co_await drain_and_switch(no_pivot_ ? source_ : target_);
      co_return done;
    }
    co_await idle_wait();
  }
  while (copies_in_flight_ > 0) co_await progress_.wait();
  co_return failure_;
}

Task<Status> MirrorJob::drain_and_switch(BlockNode& to) {
  // Guest writes wait at the filter from now on; those already past it finish first.
  gate_closed_ = true;
  while (guests_in_flight_ > 0) co_await progress_.wait();
  Status result = ok();
  if (&to == &target_) {
    // What they left dirty is copied with the writes held back: nothing can race it.
    while (std::optional<std::pair<uint64_t, uint64_t>> next = dirty_.next_dirty(0, chunk_bytes_)) {
      dirty_.reset(next->first, next->second);
      bool read_error = false;
      result = co_await copy_range(next->first, next->second, read_error);
      if (!result) {
        dirty_.set(next->first, next->second);
        break;
      }
      copied_bytes_ += next->second;
    }
    if (result) result = co_await target_.flush();
  }
  BlockNode& dest = result ? to : source_;
  final_node_ = &dest;
  filter_->redirect(dest);
  switch_users_(dest);
  gate_closed_ = false;
  gate_.wake_all();
  // The held-back requests go on to `dest`; the filter stays until they have finished.
  while (filter_->tracked_requests() > 0) co_await loop_.yield();
  co_return result;
}

Task<void> MirrorJob::abort() {
  if (final_node_ == nullptr) {
    final_node_ = &source_;
    filter_->redirect(source_);
    switch_users_(source_);
    gate_closed_ = false;
    gate_.wake_all();
  }
  while (filter_->tracked_requests() > 0) co_await loop_.yield();
}

}  // namespace qblock
