// The generic request layer of BlockNode (include/qblock/block_node.h): the checks,
// padding, splitting, flag filtering and request tracking done once for every driver.
#include <algorithm>
#include <limits>

#include "base/check.h"
#include "qblock/block_node.h"
#include "qblock/event_loop.h"
#include "runtime/sync.h"

namespace qblock {

namespace {
constexpr uint64_t kMaxBounceBytes = 16 << 20;  // block-semantics.md REQ-WZ-4
constexpr uint64_t kMaxOffset = std::numeric_limits<int64_t>::max();
constexpr uint64_t kNoLengthLimit = std::numeric_limits<uint64_t>::max();

uint64_t round_down(uint64_t v, uint64_t a) { return v / a * a; }
uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Data requests are limited to kMaxRequestBytes; write-zeroes and discard carry no data and
// take any length up to the offset limit (`max_bytes` = UINT64_MAX), split further down.
Status check_range(uint64_t offset, uint64_t bytes, uint64_t max_bytes = kMaxRequestBytes) {
  if (bytes > max_bytes) return fail(Error::invalid("request too large"));
  if (offset > kMaxOffset || bytes > kMaxOffset - offset) {
    return fail(Error::io("request beyond the maximum offset"));
  }
  return ok();
}
}  // namespace

Result<PreallocMode> parse_prealloc_mode(std::string_view text) {
  if (text == "off") return PreallocMode::kOff;
  if (text == "metadata") return PreallocMode::kMetadata;
  if (text == "falloc") return PreallocMode::kFalloc;
  if (text == "full") return PreallocMode::kFull;
  return fail(
      Error::with_message(EINVAL, "Invalid preallocation mode '" + std::string(text) + "'"));
}

bool apply_cache_mode(std::string_view mode, OpenFlags& flags) {
  if (mode == "none" || mode == "off") {
    flags.direct = true, flags.no_flush = false, flags.writethrough = false;
  } else if (mode == "writeback") {
    flags.direct = false, flags.no_flush = false, flags.writethrough = false;
  } else if (mode == "writethrough") {
    flags.direct = false, flags.no_flush = false, flags.writethrough = true;
  } else if (mode == "directsync") {
    flags.direct = true, flags.no_flush = false, flags.writethrough = true;
  } else if (mode == "unsafe") {
    flags.direct = false, flags.no_flush = true, flags.writethrough = false;
  } else {
    return false;
  }
  return true;
}

// An in-flight request on this node, tracked by its range. It lives in the frame of the
// coroutine serving the request, so tracking allocates nothing: try_begin() (no conflict) or
// wait_for_conflicts() links it into the node's list, and the destructor unlinks it and wakes
// the requests waiting for it to end.
class BlockNode::TrackedRequest {
 public:
  // `bytes` may be UINT64_MAX - offset for "to the end".
  TrackedRequest(BlockNode& node, uint64_t offset, uint64_t bytes, bool serialising)
      : node_(node),
        offset_(offset),
        end_(bytes == std::numeric_limits<uint64_t>::max() - offset
                 ? std::numeric_limits<uint64_t>::max()
                 : offset + bytes),
        serialising_(serialising),
        done_(*node.loop_) {}
  ~TrackedRequest() { end(); }
  TrackedRequest(const TrackedRequest&) = delete;
  TrackedRequest& operator=(const TrackedRequest&) = delete;

  // True if `this` must wait for `other` (either is serialising and their ranges overlap).
  bool conflicts_with(const TrackedRequest& other) const {
    return (serialising_ || other.serialising_) && offset_ < other.end_ && other.offset_ < end_;
  }
  // Tracks the request without waiting. Returns false (tracking nothing) on a conflict.
  bool try_begin() {
    if (node_.find_conflict(*this)) return false;
    link();
    return true;
  }
  void link() {
    CHECK(!linked_);
    prev_ = node_.tracked_tail_;
    next_ = nullptr;
    (prev_ ? prev_->next_ : node_.tracked_head_) = this;
    node_.tracked_tail_ = this;
    ++node_.tracked_count_;
    linked_ = true;
  }
  // Stops tracking (if tracked) and wakes the waiters. Idempotent.
  void end() {
    if (!linked_) return;
    (prev_ ? prev_->next_ : node_.tracked_head_) = next_;
    (next_ ? next_->prev_ : node_.tracked_tail_) = prev_;
    --node_.tracked_count_;
    linked_ = false;
    done_.wake_all();
  }

 private:
  friend class BlockNode;
  BlockNode& node_;
  uint64_t offset_;
  uint64_t end_;  // exclusive; UINT64_MAX for "to the end"
  bool serialising_;
  bool linked_ = false;
  TrackedRequest* prev_ = nullptr;
  TrackedRequest* next_ = nullptr;
  WaitQueue done_;  // woken when the request ends
};

BlockNode::BlockNode(EventLoop& loop, std::string driver_name, NodeKind kind)
    : loop_(&loop), driver_name_(std::move(driver_name)), kind_(kind) {}

BlockNode::~BlockNode() { CHECK(tracked_head_ == nullptr); }

BlockNode* BlockNode::child(ChildRole role) const {
  for (const Child& c : children_) {
    if (c.role == role) return c.node.get();
  }
  return nullptr;
}

BlockNode* BlockNode::primary_child() const {
  if (BlockNode* f = child(ChildRole::kFile)) return f;
  return child(ChildRole::kImage);
}

void BlockNode::add_child(ChildRole role, std::string name, std::unique_ptr<BlockNode> node) {
  children_.push_back(Child{role, std::move(name), std::move(node)});
}

std::unique_ptr<BlockNode> BlockNode::replace_child(ChildRole role,
                                                    std::unique_ptr<BlockNode> node) {
  std::unique_ptr<BlockNode> old;
  for (auto it = children_.begin(); it != children_.end(); ++it) {
    if (it->role != role) continue;
    old = std::move(it->node);
    if (node) {
      it->node = std::move(node);
    } else {
      children_.erase(it);
    }
    break;
  }
  if (!old && node) {
    children_.push_back(
        Child{role, role == ChildRole::kBacking ? "backing" : "file", std::move(node)});
  }
  children_changed();
  return old;
}

void BlockNode::inherit_from_child() {
  BlockNode* c = primary_child();
  CHECK(c != nullptr);
  limits_ = c->limits();
  // block-semantics.md REQ-FLAGS-3.
  supported_write_flags_ =
      RequestFlags(RequestFlag::kWriteUnchanged) | (c->supported_write_flags() & RequestFlag::kFua);
  supported_zero_flags_ = RequestFlags(RequestFlag::kWriteUnchanged) |
                          (c->supported_zero_flags() & (RequestFlag::kFua | RequestFlag::kMayUnmap |
                                                        RequestFlags(RequestFlag::kNoFallback)));
}

// ---- request tracking --------------------------------------------------------------------

BlockNode::TrackedRequest* BlockNode::find_conflict(const TrackedRequest& req) const {
  for (TrackedRequest* r = tracked_head_; r; r = r->next_) {
    if (req.conflicts_with(*r)) return r;
  }
  return nullptr;
}

// The slow path of tracking, taken only when try_begin() found a conflict, so the common
// case costs no coroutine frame. `req` lives in the caller's frame, which awaits this.
Task<Status> BlockNode::wait_for_conflicts(TrackedRequest& req, bool no_wait) {
  while (TrackedRequest* conflict = find_conflict(req)) {
    // block-semantics.md REQ-ALLOC-3: fail at once, no partial effect.
    if (no_wait) co_return fail(Error::busy("overlapping request in flight"));
    co_await conflict->done_.wait();
  }
  req.link();
  co_return ok();
}

// ---- read --------------------------------------------------------------------------------

Task<Status> BlockNode::read(uint64_t offset, IoVec qiov, RequestFlags flags) {
  uint64_t bytes = qiov.size();
  if (Status s = check_range(offset, bytes); !s) co_return s;
  if (bytes == 0) co_return ok();
  const uint64_t align = limits_.request_alignment;
  const uint64_t start = round_down(offset, align);
  const uint64_t end = round_up(offset + bytes, align);
  TrackedRequest req(*this, start, end - start, false);
  if (!req.try_begin()) {
    Status tracked = co_await wait_for_conflicts(req, false);
    if (!tracked) co_return tracked;
  }
  Status result;
  if (start == offset && end == offset + bytes) {
    result = co_await read_aligned(offset, std::move(qiov), flags);
  } else {
    // Pad to the request alignment with bounce blocks at head and tail.
    const uint64_t head = offset - start;
    const uint64_t tail = end - (offset + bytes);
    AlignedBuffer head_buf(head ? align : 0, std::max<uint64_t>(align, 512));
    AlignedBuffer tail_buf(tail ? align : 0, std::max<uint64_t>(align, 512));
    IoVec padded;
    if (head) padded.append(head_buf.data(), head);
    padded.append(qiov);
    if (tail) padded.append(tail_buf.data() + (align - tail), tail);
    result = co_await read_aligned(start, std::move(padded), flags);
  }
  req.end();
  co_return result;
}

// The largest piece a data request is split into: max_transfer (or the request limit),
// rounded down to the request alignment.
uint64_t BlockNode::transfer_limit() const {
  const uint64_t align = limits_.request_alignment;
  uint64_t max = limits_.max_transfer ? limits_.max_transfer : kMaxRequestBytes;
  return std::max<uint64_t>(round_down(std::min(max, kMaxRequestBytes), align), align);
}

Task<Status> BlockNode::read_aligned(uint64_t offset, IoVec qiov, RequestFlags flags) {
  const uint64_t max = transfer_limit();
  RequestFlags pass = flags & RequestFlag::kCopyOnRead;
  if (qiov.size() <= max) co_return co_await do_read(offset, std::move(qiov), pass);
  for (uint64_t done = 0; done < qiov.size();) {
    uint64_t n = std::min<uint64_t>(max, qiov.size() - done);
    IoVec part = qiov.slice(done, n);
    Status s = co_await do_read(offset + done, std::move(part), pass);
    if (!s) co_return s;
    done += n;
  }
  co_return ok();
}

// ---- write -------------------------------------------------------------------------------

Task<Status> BlockNode::write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  if (flags.has(RequestFlag::kZeroWrite)) {
    co_return co_await write_zeroes(offset, qiov.size(), flags.without(RequestFlag::kZeroWrite));
  }
  if (read_only()) co_return fail(Error::permission("Block node is read-only"));
  // Compression changes what is stored; a node that cannot do it must not drop the flag.
  if (flags.has(RequestFlag::kWriteCompressed) &&
      !supported_write_flags_.has(RequestFlag::kWriteCompressed)) {
    co_return fail(Error::unsupported());
  }
  uint64_t bytes = qiov.size();
  if (Status s = check_range(offset, bytes); !s) co_return s;
  const bool no_wait = flags.has(RequestFlag::kNoWait);
  CHECK(!no_wait || flags.has(RequestFlag::kSerialising));  // REQ-ALLOC-5
  if (bytes == 0) co_return ok();
  const uint64_t align = limits_.request_alignment;
  const uint64_t start = round_down(offset, align);
  const uint64_t end = round_up(offset + bytes, align);
  const bool aligned = start == offset && end == offset + bytes;
  // REQ-ALLOC-6: a NO_WAIT request cannot be padded (padding would have to wait).
  if (no_wait && !aligned) co_return fail(Error::invalid("NO_WAIT request is not aligned"));
  const bool serialising = flags.has(RequestFlag::kSerialising) || !aligned;
  TrackedRequest req(*this, start, end - start, serialising);
  if (!req.try_begin()) {
    Status tracked = co_await wait_for_conflicts(req, no_wait);
    if (!tracked) co_return tracked;
  }
  // Not `aligned ? co_await a : co_await b`: g++ 12 destroys the result of a co_await in a
  // conditional expression twice when the awaited task completes after suspending.
  Status result = ok();
  if (aligned) {
    result = co_await write_aligned(offset, std::move(qiov), flags);
  } else {
    result = co_await write_padded(offset, std::move(qiov), flags);
  }
  req.end();
  co_return result;
}

Task<Status> BlockNode::write_aligned(uint64_t offset, IoVec qiov, RequestFlags flags) {
  const uint64_t max = transfer_limit();
  const RequestFlags pass = flags & supported_write_flags_;
  if (qiov.size() <= max) {
    Status s = co_await do_write(offset, std::move(qiov), pass);
    if (!s) co_return s;
  } else {
    for (uint64_t done = 0; done < qiov.size();) {
      uint64_t n = std::min<uint64_t>(max, qiov.size() - done);
      IoVec part = qiov.slice(done, n);
      Status s = co_await do_write(offset + done, std::move(part), pass);
      if (!s) co_return s;
      done += n;
    }
  }
  co_return co_await emulate_fua(flags, pass);
}

// Read-modify-write of the partial blocks at head and tail. The caller holds a serialising
// tracked request over the padded range, so nothing else can change those blocks meanwhile.
Task<Status> BlockNode::write_padded(uint64_t offset, IoVec qiov, RequestFlags flags) {
  const uint64_t align = limits_.request_alignment;
  const uint64_t start = round_down(offset, align);
  const uint64_t end = round_up(offset + qiov.size(), align);
  const uint64_t head = offset - start;
  const uint64_t tail = end - (offset + qiov.size());
  const bool one_block = end - start == align;
  const uint64_t buf_align = std::max<uint64_t>(align, 512);
  AlignedBuffer head_buf(head ? align : 0, buf_align);
  AlignedBuffer tail_buf(tail && !(one_block && head) ? align : 0, buf_align);
  if (head) {
    Status s = co_await read_aligned(start, IoVec(head_buf.data(), align), {});
    if (!s) co_return s;
  }
  uint8_t* tail_block = head && one_block ? head_buf.data() : tail_buf.data();
  if (tail && !(head && one_block)) {
    Status s = co_await read_aligned(end - align, IoVec(tail_block, align), {});
    if (!s) co_return s;
  }
  IoVec padded;
  if (head) padded.append(head_buf.data(), head);
  padded.append(qiov);
  if (tail) padded.append(tail_block + (align - tail), tail);
  co_return co_await write_aligned(start, std::move(padded), flags);
}

Task<Status> BlockNode::emulate_fua(RequestFlags requested, RequestFlags passed) {
  if (requested.has(RequestFlag::kFua) && !passed.has(RequestFlag::kFua)) {
    co_return co_await flush();  // REQ-FLAGS-1
  }
  co_return ok();
}

// ---- write-zeroes ------------------------------------------------------------------------

Task<Status> BlockNode::write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  if (read_only()) co_return fail(Error::permission("Block node is read-only"));
  if (Status s = check_range(offset, bytes, kNoLengthLimit); !s) co_return s;
  const bool no_wait = flags.has(RequestFlag::kNoWait);
  CHECK(!no_wait || flags.has(RequestFlag::kSerialising));  // REQ-ALLOC-5
  const bool no_fallback = flags.has(RequestFlag::kNoFallback);
  // REQ-WZ-1 / REQ-NOFB-1.
  if (no_fallback && !supported_zero_flags_.has(RequestFlag::kNoFallback)) {
    co_return fail(Error::unsupported("NO_FALLBACK not supported by " + driver_name_));
  }
  if (bytes == 0) co_return ok();
  const uint64_t align = limits_.request_alignment;
  const uint64_t start = round_down(offset, align);
  const uint64_t end = round_up(offset + bytes, align);
  const bool aligned = start == offset && end == offset + bytes;
  // REQ-NOFB-2: no read-modify-write for NO_FALLBACK.
  if (no_fallback && !aligned) co_return fail(Error::unsupported("unaligned NO_FALLBACK zeroes"));
  if (no_wait && !aligned) co_return fail(Error::invalid("NO_WAIT request is not aligned"));

  if (!aligned) {
    // REQ-WZ-6: pad the partial blocks with a serialising read-modify-write of zeros; the
    // aligned middle goes down the efficient path.
    TrackedRequest req(*this, start, end - start, true);
    if (!req.try_begin()) {
      Status tracked = co_await wait_for_conflicts(req, false);
      if (!tracked) co_return tracked;
    }
    Status result = ok();
    uint64_t pos = offset;
    const uint64_t stop = offset + bytes;
    if (pos % align) {
      uint64_t n = std::min(stop, round_up(pos + 1, align)) - pos;
      AlignedBuffer zeros(n, 512);
      zeros.fill(0);
      result = co_await write_padded(pos, IoVec(zeros.data(), n), flags.without(RequestFlag::kFua));
      pos += n;
    }
    const uint64_t mid_end = round_down(stop, align);
    if (result && mid_end > pos) {
      result = co_await write_zeroes_tracked(pos, mid_end - pos, flags.without(RequestFlag::kFua));
      pos = mid_end;
    }
    if (result && pos < stop) {
      AlignedBuffer zeros(stop - pos, 512);
      zeros.fill(0);
      result = co_await write_padded(pos, IoVec(zeros.data(), stop - pos),
                                     flags.without(RequestFlag::kFua));
    }
    if (result && flags.has(RequestFlag::kFua)) result = co_await flush();
    req.end();
    co_return result;
  }

  const bool to_end = zeroes_serialise_to_end(offset, bytes);
  const bool serialising = flags.has(RequestFlag::kSerialising) || to_end;
  const uint64_t track_bytes = to_end ? std::numeric_limits<uint64_t>::max() - offset : bytes;
  TrackedRequest req(*this, offset, track_bytes, serialising);
  if (!req.try_begin()) {
    Status tracked = co_await wait_for_conflicts(req, no_wait);
    if (!tracked) co_return tracked;
  }
  Status result = co_await write_zeroes_tracked(offset, bytes, flags);
  req.end();
  co_return result;
}

// REQ-WZ-2..5: split at the zeroes alignment and max_pwrite_zeroes (never more than
// kMaxRequestBytes, as QEMU's request layer does, so a driver never sees a longer request),
// call the driver, fall back to zero buffers on ENOTSUP unless NO_FALLBACK.
Task<Status> BlockNode::write_zeroes_tracked(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  const RequestFlags pass = flags & supported_zero_flags_;
  const uint64_t zalign =
      std::max<uint64_t>(limits_.pwrite_zeroes_alignment, limits_.request_alignment);
  const uint64_t limit = limits_.max_pwrite_zeroes
                             ? std::min(limits_.max_pwrite_zeroes, kMaxRequestBytes)
                             : kMaxRequestBytes;
  const uint64_t max = std::max<uint64_t>(round_down(limit, zalign), zalign);
  while (bytes > 0) {
    uint64_t n = bytes;
    if (offset % zalign) {
      n = std::min(bytes, zalign - offset % zalign);  // head up to the zeroes alignment
    } else if (bytes > zalign && bytes % zalign) {
      n = bytes - bytes % zalign;  // aligned bulk; the tail comes next round
    }
    n = std::min(n, max);
    Status s = co_await do_write_zeroes(offset, n, pass);
    if (!s && s.error().errnum() == ENOTSUP && !flags.has(RequestFlag::kNoFallback)) {
      s = co_await write_zero_buffers(offset, n, flags);
    }
    if (!s) co_return s;
    offset += n;
    bytes -= n;
  }
  co_return co_await emulate_fua(flags, pass);
}

Task<Status> BlockNode::write_zero_buffers(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  const uint64_t align = limits_.request_alignment;
  uint64_t chunk =
      limits_.max_transfer ? std::min(limits_.max_transfer, kMaxBounceBytes) : kMaxBounceBytes;
  chunk = std::max<uint64_t>(round_down(chunk, align), align);
  chunk = std::min(chunk, bytes);
  AlignedBuffer zeros(chunk, std::max<uint64_t>(align, 4096));
  zeros.fill(0);
  // FUA is honoured once by the caller after all pieces.
  const RequestFlags pass = (flags & supported_write_flags_).without(RequestFlag::kFua);
  while (bytes > 0) {
    uint64_t n = std::min(chunk, bytes);
    Status s = co_await do_write(offset, IoVec(zeros.data(), n), pass);
    if (!s) co_return s;
    offset += n;
    bytes -= n;
  }
  co_return ok();
}

// ---- discard, flush, truncate ------------------------------------------------------------

Task<Status> BlockNode::discard(uint64_t offset, uint64_t bytes) {
  if (read_only()) co_return fail(Error::permission("Block node is read-only"));
  if (Status s = check_range(offset, bytes, kNoLengthLimit); !s) co_return s;
  if (flags_.discard == DiscardMode::kIgnore || bytes == 0) co_return ok();
  // Discard is advisory: only the aligned part is passed down.
  const uint64_t align = limits_.request_alignment;
  const uint64_t start = round_up(offset, align);
  const uint64_t end = round_down(offset + bytes, align);
  if (end <= start) co_return ok();
  TrackedRequest req(*this, start, end - start, false);
  if (!req.try_begin()) {
    Status tracked = co_await wait_for_conflicts(req, false);
    if (!tracked) co_return tracked;
  }
  // Pieces of at most kMaxRequestBytes (aligned), like write-zeroes.
  const uint64_t max = std::max<uint64_t>(round_down(kMaxRequestBytes, align), align);
  Status s = ok();
  for (uint64_t pos = start; s && pos < end;) {
    const uint64_t n = std::min(max, end - pos);
    s = co_await do_discard(pos, n);
    pos += n;
  }
  req.end();
  co_return s;
}

Task<Status> BlockNode::flush() {
  if (closed_) co_return ok();
  Status s = co_await do_flush();
  if (!s) co_return s;
  for (Child& c : children_) {
    Status cs = co_await c.node->flush();
    if (!cs) co_return cs;
  }
  co_return ok();
}

Task<Status> BlockNode::truncate(uint64_t size, PreallocMode mode, Exact exact) {
  if (read_only()) co_return fail(Error::permission("Block node is read-only"));
  if (size > kMaxOffset) co_return fail(Error::invalid("size too large"));
  // A resize races with everything; serialise it against all requests.
  TrackedRequest req(*this, 0, std::numeric_limits<uint64_t>::max(), true);
  if (!req.try_begin()) {
    Status tracked = co_await wait_for_conflicts(req, false);
    if (!tracked) co_return tracked;
  }
  Status s = co_await do_truncate(size, mode, exact);
  req.end();
  co_return s;
}

// ---- block status ------------------------------------------------------------------------

Task<Result<BlockStatus>> BlockNode::block_status(uint64_t offset, uint64_t bytes,
                                                  WantZero want_zero) {
  const uint64_t len = length();
  if (offset >= len) co_return BlockStatus{kStatusEof, 0, 0, nullptr};
  bytes = std::min(bytes, len - offset);
  if (bytes == 0) co_return BlockStatus{0, 0, 0, nullptr};
  Result<BlockStatus> st = co_await do_block_status(offset, bytes, want_zero);
  if (!st) co_return st;
  CHECK(st->bytes > 0 && st->bytes <= bytes);
  if (st->flags & kStatusRaw) {
    CHECK(st->file != nullptr);
    BlockNode* file = st->file;
    const uint64_t host = st->host_offset;
    if (host >= file->length()) {
      // Past the end of the file reads as zeros.
      co_return BlockStatus{kStatusZero | kStatusAllocated, st->bytes, 0, nullptr};
    }
    Result<BlockStatus> inner = co_await file->block_status(host, st->bytes, want_zero);
    if (!inner) co_return inner;
    co_return *inner;
  }
  if (st->flags & (kStatusData | kStatusZero)) st->flags |= kStatusAllocated;
  co_return st;
}

Task<Result<std::pair<bool, uint64_t>>> BlockNode::is_allocated(uint64_t offset, uint64_t bytes) {
  Result<BlockStatus> st = co_await block_status(offset, bytes, WantZero::kNo);
  if (!st) co_return fail(st.error());
  co_return std::pair<bool, uint64_t>{(st->flags & kStatusAllocated) != 0, st->bytes};
}

// ---- lifecycle and debug -----------------------------------------------------------------

Task<Status> BlockNode::close() {
  if (closed_) co_return ok();
  Status s = co_await do_close();
  closed_ = true;
  for (Child& c : children_) {
    Status cs = co_await c.node->close();
    if (s && !cs) s = cs;
  }
  co_return s;
}

Task<void> BlockNode::debug_event(DebugEvent event) { co_await do_debug_event(event); }

Status BlockNode::debug_breakpoint(std::string_view event, std::string_view tag) {
  return do_debug_breakpoint(event, tag);
}
Status BlockNode::debug_remove_breakpoint(std::string_view tag) {
  return do_debug_remove_breakpoint(tag);
}
Status BlockNode::debug_resume(std::string_view tag) { return do_debug_resume(tag); }
bool BlockNode::debug_is_suspended(std::string_view tag) { return do_debug_is_suspended(tag); }

// ---- default hooks -----------------------------------------------------------------------

Task<Status> BlockNode::do_write_zeroes(uint64_t, uint64_t, RequestFlags) {
  co_return fail(Error::unsupported());
}
Task<Status> BlockNode::do_discard(uint64_t, uint64_t) { co_return ok(); }
Task<Status> BlockNode::do_flush() { co_return ok(); }
Task<Status> BlockNode::do_truncate(uint64_t, PreallocMode, Exact) {
  co_return fail(Error::unsupported("Image format driver does not support resize"));
}
Task<Result<BlockStatus>> BlockNode::do_block_status(uint64_t offset, uint64_t bytes, WantZero) {
  if (kind_ == NodeKind::kFilter && primary_child()) {
    co_return BlockStatus{kStatusRaw | kStatusOffsetValid, bytes, offset, primary_child()};
  }
  co_return BlockStatus{kStatusData | kStatusOffsetValid, bytes, offset, this};
}
Task<Status> BlockNode::do_close() { co_return ok(); }
// Events travel down the primary-child chain to the first node that acts on them, so a
// blkdebug node below other filters still sees them.
Task<void> BlockNode::do_debug_event(DebugEvent event) {
  if (BlockNode* c = primary_child()) co_await c->debug_event(event);
}

Status BlockNode::do_debug_breakpoint(std::string_view event, std::string_view tag) {
  if (BlockNode* c = primary_child()) return c->debug_breakpoint(event, tag);
  return fail(Error::unsupported());
}
Status BlockNode::do_debug_remove_breakpoint(std::string_view tag) {
  if (BlockNode* c = primary_child()) return c->debug_remove_breakpoint(tag);
  return fail(Error::unsupported());
}
Status BlockNode::do_debug_resume(std::string_view tag) {
  if (BlockNode* c = primary_child()) return c->debug_resume(tag);
  return fail(Error::unsupported());
}
bool BlockNode::do_debug_is_suspended(std::string_view tag) {
  if (BlockNode* c = primary_child()) return c->debug_is_suspended(tag);
  return false;
}
bool BlockNode::zeroes_serialise_to_end(uint64_t, uint64_t) const { return false; }

NodeInfo BlockNode::info() const {
  NodeInfo i;
  i.format_name = driver_name_;
  return i;
}

Options BlockNode::options() const {
  Options o;
  o["driver"] = driver_name_;
  for (const Child& c : children_) o[c.name] = c.node->options();
  return o;
}

std::string BlockNode::filename() const {
  if (BlockNode* c = primary_child()) return c->filename();
  return "json:" + options().dump();
}

}  // namespace qblock
