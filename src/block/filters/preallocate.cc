// PreallocateFilter (see preallocate.h; block-semantics.md §7).
#include "block/filters/preallocate.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <string>

namespace qblock {

namespace {

constexpr uint64_t kMaxOffset = std::numeric_limits<int64_t>::max();

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace

PreallocateFilter::PreallocateFilter(EventLoop& loop, NodePtr file, Settings settings)
    : PassthroughFilter(loop, "preallocate", std::move(file)), settings_(settings) {
  BlockNode& f = child_node();
  // §7.2: the state is valid only while the filter may write and resize its file.
  active_ = !f.read_only();
  // REQ-NOFB-1: a file without NO_FALLBACK would refuse every ALLOCATE request anyway.
  disabled_ = !f.supported_zero_flags().has(RequestFlag::kNoFallback);
  data_end_ = f.length();
  zero_start_ = data_end_;
  file_end_ = static_cast<int64_t>(data_end_);
}

uint64_t PreallocateFilter::length() const { return active_ ? data_end_ : child_node().length(); }

// §7.3. The bookkeeping before the first suspension point is what concurrent requests rely
// on: data_end_ and zero_start_ move before anything is awaited, so a request that runs while
// this one waits for its preallocation already sees them.
Task<bool> PreallocateFilter::before_write(uint64_t offset, uint64_t bytes, bool mergeable) {
  if (!active_) co_return false;
  const uint64_t end = offset + bytes;
  // Everything at or beyond `zero_floor` reads as zero, this request aside: a preallocation
  // may start there without clobbering data written by requests still in flight.
  const uint64_t zero_floor = zero_start_;
  if (!mergeable) zero_start_ = std::max(zero_start_, end);
  // Like QEMU, only a write that extends the data is considered for preallocation or merging.
  if (end <= data_end_) co_return false;
  data_end_ = end;
  if (disabled_) co_return false;

  BlockNode& file = child_node();
  if (file_end_ < 0) file_end_ = static_cast<int64_t>(file.length());
  if (end <= static_cast<uint64_t>(file_end_)) {
    // Already preallocated: a plain write-zeroes of a known-zero area is done.
    const bool done = mergeable && offset >= zero_start_;
    // Refill while the writes are still half the preallocation size away from the end of
    // the file (qblock's departure from QEMU, which waits until a write crosses it): the new
    // range then overlaps no request in flight, so it neither fails with EBUSY nor holds
    // anybody up, and writes never extend the file (an extending O_DIRECT write drains every
    // other write to the file on ext4).
    const bool refill = settings_.refill_ahead && settings_.prealloc_size &&
                        static_cast<uint64_t>(file_end_) - end < settings_.prealloc_size / 2;
    if (refill && !in_flight_) {
      // In the background: this request does not need it. (It sets in_flight_ before it
      // first suspends, so no second refill starts meanwhile.)
      spawn(refill_ahead(end, zero_floor));
    }
    co_return done;
  }
  // One preallocation at a time: a second one would overlap the first and fail with EBUSY
  // (REQ-ALLOC-3). This request simply goes to the file; the file serialises its write after
  // the running preallocation where they overlap.
  if (in_flight_) co_return false;
  Task<bool> grow = preallocate(end, zero_floor);
  const bool covered = co_await std::move(grow);
  co_return covered&& mergeable&& offset >= zero_start_;
}

// Zeroes from the file end (or `zero_floor`, if higher) to `prealloc_size` beyond `end`, with
// one ALLOCATE request. Returns true if the preallocated area now covers `end`.
Task<bool> PreallocateFilter::preallocate(uint64_t end, uint64_t zero_floor) {
  BlockNode& file = child_node();

  const uint64_t file_align = file.limits().request_alignment;
  const uint64_t align = std::max<uint64_t>(settings_.prealloc_align, file_align);
  const uint64_t pstart =
      align_up(std::max(static_cast<uint64_t>(file_end_), zero_floor), file_align);
  const uint64_t base = std::max(pstart, end);
  if (settings_.prealloc_size > kMaxOffset - base ||
      base + settings_.prealloc_size > kMaxOffset - align) {
    co_return false;  // beyond the largest offset: nothing sensible to preallocate
  }
  const uint64_t pend = align_up(base + settings_.prealloc_size, align);

  // REQ-ALLOC-1..4: zero efficiently or fail, serialised, never waiting. Any failure only
  // skips the preallocation; the request itself is forwarded by the caller.
  in_flight_ = true;
  Task<Status> zero = file.write_zeroes(pstart, pend - pstart, kAllocate);
  Status s = co_await std::move(zero);
  in_flight_ = false;
  if (!active_) co_return false;  // write access was given up meanwhile
  if (!s) {
    // ENOTSUP: the file cannot zero efficiently and never will; remember it so later writes
    // do not pay for the attempt. EBUSY (a request overlapped) and other errors: just skip
    // this one and read the file length again next time.
    if (s.error().errnum() == ENOTSUP) disabled_ = true;
    file_end_ = -1;
    co_return false;
  }
  file_end_ = std::max(file_end_, static_cast<int64_t>(pend));
  co_return end <= static_cast<uint64_t>(file_end_);
}

Task<Status> PreallocateFilter::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  Task<bool> prepare = before_write(offset, qiov.size(), false);
  (void)co_await std::move(prepare);
  Task<Status> write = child_node().write(offset, std::move(qiov), flags);
  co_return co_await std::move(write);
}

Task<Status> PreallocateFilter::do_write_zeroes(uint64_t offset, uint64_t bytes,
                                                RequestFlags flags) {
  // §7.3 write-zeroes merging: only a plain write-zeroes (NO_FALLBACK at most) may be
  // dropped; MAY_UNMAP, FUA or WRITE_UNCHANGED ask for more than "reads as zero".
  const bool mergeable = flags.without(RequestFlag::kNoFallback).empty();
  Task<bool> prepare = before_write(offset, bytes, mergeable);
  const bool done = co_await std::move(prepare);
  if (done) co_return ok();
  Task<Status> zero = child_node().write_zeroes(offset, bytes, flags);
  co_return co_await std::move(zero);
}

Task<Status> PreallocateFilter::drop_preallocation() {
  BlockNode& file = child_node();
  const uint64_t len = file.length();
  if (len > data_end_) {
    Task<Status> cut = file.truncate(data_end_, PreallocMode::kOff, Exact::kYes);
    Status s = co_await std::move(cut);
    if (!s) {
      file_end_ = -1;
      co_return s;
    }
  }
  file_end_ = static_cast<int64_t>(file.length());
  zero_start_ = std::min(zero_start_, std::max(data_end_, file.length()));
  co_return ok();
}

// §7.4. The request layer serialises a truncate against every request on this node, so no
// write is in flight here.
Task<Status> PreallocateFilter::do_truncate(uint64_t size, PreallocMode mode, Exact exact) {
  BlockNode& file = child_node();
  if (!active_) {
    Task<Status> t = file.truncate(size, mode, exact);
    co_return co_await std::move(t);
  }
  if (file_end_ < 0) file_end_ = static_cast<int64_t>(file.length());
  // Growing into the preallocated area with falloc: that area is allocated and reads as
  // zero already, so only the data end moves.
  if (mode == PreallocMode::kFalloc && size > data_end_ &&
      size <= static_cast<uint64_t>(file_end_) && data_end_ >= zero_start_) {
    data_end_ = size;
    co_return ok();
  }
  // Anything else: without the preallocated tail the file is what it would be without the
  // filter, so the truncate then has the file's own semantics (iotest 298).
  Task<Status> drop = drop_preallocation();
  if (Status s = co_await std::move(drop); !s) co_return s;
  Task<Status> t = file.truncate(size, mode, exact);
  Status s = co_await std::move(t);
  const uint64_t len = file.length();
  if (!s) {
    file_end_ = -1;  // the data end stays; close cuts whatever the failure left behind
    co_return s;
  }
  data_end_ = size;
  file_end_ = static_cast<int64_t>(len);
  // A shrunk file reads as zero past its end and a grown one in its new area; only an
  // inexact truncate that left the file longer than asked keeps bytes we know nothing of.
  zero_start_ = len > size ? len : std::min(zero_start_, size);
  co_return ok();
}

Task<void> PreallocateFilter::refill_ahead(uint64_t end, uint64_t zero_floor) {
  Task<bool> ahead = preallocate(end, zero_floor);
  (void)co_await std::move(ahead);
  refill_done_.wake_all();
}

Task<Status> PreallocateFilter::release_write_access() {
  if (!active_) co_return ok();
  while (in_flight_) co_await refill_done_.wait();  // a background refill must not outlive us
  Task<Status> drop = drop_preallocation();
  Status s = co_await std::move(drop);
  // §7.2: the state is void without write access, whether or not the cut worked.
  active_ = false;
  file_end_ = -1;
  co_return s;
}

Task<Status> PreallocateFilter::do_close() {
  // §7.4/§7.5: a failed cut only leaves trailing space, which qcow2 ignores; QEMU does not
  // report it either.
  Task<Status> release = release_write_access();
  (void)co_await std::move(release);
  co_return ok();
}

Task<Result<NodePtr>> open_preallocate_node(OpenContext& ctx, Options& options) {
  // QEMU opens the file first, then reads and checks the options.
  Result<NodePtr> file = co_await open_child(ctx, options, "file", "file");
  if (!file) co_return fail(file.error());
  PreallocateFilter::Settings settings;
  std::optional<Error> err;
  auto align = take_size(options, "prealloc-align");
  auto size = take_size(options, "prealloc-size");
  auto refill = take_bool(options, "refill-ahead");
  if (refill && *refill) settings.refill_ahead = **refill;
  if (!refill) {
    err = refill.error();
  } else if (!align) {
    err = align.error();
  } else if (!size) {
    err = size.error();
  } else {
    if (*align) settings.prealloc_align = **align;
    if (*size) settings.prealloc_size = **size;
    const uint64_t file_align = (*file)->limits().request_alignment;
    if (settings.prealloc_align % 512 != 0) {
      err = Error::with_message(
          EINVAL, "prealloc-align parameter of preallocate filter is not aligned to 512");
    } else if (settings.prealloc_align % file_align != 0) {
      err = Error::with_message(EINVAL,
                                "prealloc-align parameter of preallocate filter is not aligned "
                                "to underlying node request alignment (" +
                                    std::to_string(file_align) + ")");
    } else if (!ctx.flags.read_only && (*file)->read_only()) {
      // The filter needs to write and resize its file (§7.2); QEMU's permission check fails.
      err = Error::with_message(EPERM, "Block node is read-only");
    }
  }
  if (err) {
    (void)co_await (*file)->close();
    co_return fail(*err);
  }
  co_return NodePtr(new PreallocateFilter(ctx.loop, std::move(*file), settings));
}

}  // namespace qblock
