// The executor of the write path: asks plan_write_step() (write_plan.h) what to do with the
// rest of a guest write and carries the step out. Data I/O runs without the metadata lock:
// in-place writes release it after the lookup, allocating writes after the allocation
// (their clusters fenced by an AllocationFence until linked).
#include "base/check.h"
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

namespace {

std::shared_ptr<AllocationFence> owning(FenceRange* range) {
  // Every registered FenceRange is an AllocationFence (allocation_fence.h).
  return static_cast<AllocationFence*>(range)->shared_from_this();
}

}  // namespace

Task<void> Qcow2Node::wait_inflight(uint64_t start, uint64_t end, AsyncMutex::Guard& guard) {
  while (FenceRange* found = find_fence(inflight_, start, end)) {
    std::shared_ptr<AllocationFence> f = owning(found);
    guard.unlock();
    co_await f->done.wait();
    guard = co_await lock_.lock();
  }
}

Task<Status> Qcow2Node::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  if (Status u = check_usable(); !u) co_return u;
  mark_dirty(offset, qiov.size());  // the dirty bitmaps (bitmap_store.cc)
  if (flags.has(RequestFlag::kWriteCompressed)) {
    // §9.1: compressed clusters are never encrypted; QEMU 7.2's qemu-io stores them in plain
    // text (§19), qblock refuses.
    if (encrypted()) {
      co_return fail(Error::with_message(
          ENOTSUP, "Compression and encryption not supported at the same time"));
    }
    // §10: no compressed clusters in a data file (QEMU 7.2: ENOTSUP).
    if (has_data_file()) co_return fail(Error::from_errno(ENOTSUP));
    co_return co_await write_compressed(offset, std::move(qiov));
  }
  if (has_data_file()) co_return co_await write_data_file(offset, std::move(qiov));
  // [pos, end) of the request is still to be written: first all of it, then any piece whose
  // joined allocation was given up.
  uint64_t pos = 0;
  uint64_t end = qiov.size();
  std::vector<JoinedPiece> joined;
  std::size_t confirmed = 0;
  for (;;) {
    while (pos < end) {
      AsyncMutex::Guard guard = co_await lock_.lock();
      Result<uint64_t> written =
          co_await write_step(offset + pos, qiov.slice(pos, end - pos), std::move(guard), joined);
      if (!written) co_return fail(written.error());
      pos += *written;
    }
    // The joined pieces count once their clusters are linked (block-semantics.md §6).
    if (confirmed == joined.size()) co_return ok();
    JoinedPiece piece = std::move(joined[confirmed++]);
    while (!piece.fence->finished) co_await piece.fence->done.wait();
    if (resolve_joined(piece.fence->linked) == JoinedOutcome::kRewrite) {
      pos = piece.guest - offset;
      end = pos + piece.len;
    }
  }
}

Task<Result<uint64_t>> Qcow2Node::write_step(uint64_t guest, IoVec data, AsyncMutex::Guard guard,
                                             std::vector<JoinedPiece>& joined) {
  if (header_.extended_l2()) {
    Task<Result<uint64_t>> sub =
        write_subclusters(guest, std::move(data), std::move(guard), joined);
    co_return co_await std::move(sub);
  }
  // The L2 table this write goes through must be a private, sane one (allocated if absent).
  Result<L2SliceRef> found = co_await get_l2_slice(guest, ForWrite::kYes);
  if (!found) co_return fail(found.error());
  L2SliceRef slice = std::move(*found);
  const WriteQuery query{view(*slice, guest), guest, data.size(), slice->table_offset,
                         slice->first_index};
  WriteStep step = plan_write_step(query, inflight_);
  slice.reset();  // the executors look it up again where they need it
  if (auto* corrupt = std::get_if<Corrupt>(&step)) {
    Error e = co_await corruption(corrupt->message);
    co_return fail(e);
  }
  if (auto* wait = std::get_if<WaitForFence>(&step)) {
    std::shared_ptr<AllocationFence> fence = owning(wait->fence);
    guard.unlock();
    co_await fence->done.wait();
    co_return uint64_t{0};
  }
  if (auto* in_place = std::get_if<WriteInPlace>(&step)) {
    Task<Result<uint64_t>> write =
        write_in_place(guest, std::move(data), std::move(*in_place), std::move(guard));
    co_return co_await std::move(write);
  }
  if (auto* allocate = std::get_if<Allocate>(&step)) {
    Task<Result<uint64_t>> write =
        allocate_and_write(*allocate, std::move(data), std::move(guard), nullptr);
    co_return co_await std::move(write);
  }
  // Join: write straight into the settled clusters of another request's allocation.
  Join& join = std::get<Join>(step);
  std::shared_ptr<AllocationFence> fence = owning(join.fence);
  WriterToken token(*fence);
  if (join.then_allocate) {
    JoinedPrefix prefix{join.host, guest, data.slice(0, join.bytes), std::move(token)};
    IoVec rest = data.slice(join.bytes, data.size() - join.bytes);
    Task<Result<uint64_t>> write =
        allocate_and_write(*join.then_allocate, std::move(rest), std::move(guard), &prefix);
    Result<uint64_t> written = co_await std::move(write);
    if (!written) co_return written;
    joined.push_back(JoinedPiece{std::move(fence), guest, join.bytes});
    co_return join.bytes + *written;
  }
  guard.unlock();
  co_await file_->debug_event(DebugEvent::kWriteAio);
  IoVec part = data.slice(0, join.bytes);
  Status s = co_await write_payload(guest, join.host, std::move(part));
  token.release();
  if (!s) co_return fail(s.error());
  joined.push_back(JoinedPiece{std::move(fence), guest, join.bytes});
  co_return join.bytes;
}

Task<Result<uint64_t>> Qcow2Node::write_in_place(uint64_t guest, IoVec data, WriteInPlace step,
                                                 AsyncMutex::Guard guard) {
  Task<Status> checked = guard_existing(step.host, step.bytes, 0, nullptr, PastEof::kIfAllocated);
  if (Status g = co_await std::move(checked); !g) {
    co_return fail(g.error());
  }
  IoVec part = data.slice(0, step.bytes);
  if (step.zero_alloc.empty()) {
    guard.unlock();
    co_await file_->debug_event(DebugEvent::kWriteAio);
    Status s = co_await write_payload(guest, step.host, std::move(part));
    if (!s) co_return fail(s.error());
    co_return step.bytes;
  }
  // Preallocated zero clusters in the run: fenced until their zero flags are cleared, which
  // happens only after the data is written.
  const uint64_t first_cluster = guest - guest % cs_;
  const uint64_t end_cluster = (guest + step.bytes + cs_ - 1) / cs_ * cs_;
  FenceRegistration fence(inflight_,
                          std::make_shared<AllocationFence>(*loop_, first_cluster, end_cluster));
  guard.unlock();
  co_await file_->debug_event(DebugEvent::kWriteAio);
  Status s = co_await write_payload(guest, step.host, std::move(part));
  guard = co_await lock_.lock();
  if (s) {
    Result<L2SliceRef> slice = co_await get_l2_slice(guest, ForWrite::kYes);
    if (!slice) {
      s = fail(slice.error());
    } else {
      for (uint64_t i : step.zero_alloc) (*slice)->entries[i] &= ~kZeroFlag;
      const uint64_t first = step.zero_alloc.front();
      s = co_await update_l2_entries(**slice, first, step.zero_alloc.back() - first + 1);
    }
  }
  if (!s) co_return fail(s.error());
  co_return step.bytes;
}

Task<Result<uint64_t>> Qcow2Node::allocate_and_write(Allocate step, IoVec data,
                                                     AsyncMutex::Guard guard,
                                                     JoinedPrefix* prefix) {
  Result<L2SliceRef> found = co_await get_l2_slice(step.guest, ForWrite::kYes);
  if (!found) co_return fail(found.error());
  L2SliceRef slice = std::move(*found);
  const uint64_t head_entry = slice->entries[step.first_index];
  uint64_t host = head_entry & kOffsetMask;
  uint64_t granted = 1;
  if (!step.reuse_zero_cluster) {
    co_await file_->debug_event(DebugEvent::kClusterAlloc);
    // Take the first free run, even if shorter than wanted; the rest goes in the next step.
    Result<std::pair<uint64_t, uint64_t>> run = co_await refcounts_->allocate_run(1, step.count);
    if (!run) co_return fail(run.error());
    if (run->first == 0) {
      Error e = co_await corruption("Preventing invalid allocation of cluster at offset 0");
      co_return fail(e);
    }
    host = run->first;
    granted = run->second;
  }
  if (Status g = co_await refuse_metadata_overlap(host, granted * cs_); !g) {
    co_return fail(g.error());
  }
  const AllocationLayout layout = allocation_layout(step, granted, cs_);
  const uint64_t tail_entry = slice->entries[step.first_index + granted - 1];
  const uint64_t guest_start = step.guest - layout.head;

  // Fence the clusters, then do the data I/O without the lock.
  auto fence = std::make_shared<AllocationFence>(*loop_, guest_start, guest_start + granted * cs_);
  FenceRegistration registration(inflight_, fence);
  slice.reset();
  guard.unlock();
  Status s = co_await fill_new_clusters(step, layout, host, head_entry, tail_entry,
                                        data.slice(0, layout.data), *fence, prefix);
  if (!s) co_return fail(s.error());
  fence->mark_ready(host);
  // §6: the L2 entry may point at the clusters only once every write into them is done
  // (a crash must not expose a linked cluster with missing data).
  co_await fence->wait_for_writers();
  guard = co_await lock_.lock();
  if (Status u = check_usable(); !u) co_return fail(u.error());  // never link into a broken image
  while (fence->writers) {  // joined while we waited for the lock
    guard.unlock();
    co_await fence->wait_for_writers();
    guard = co_await lock_.lock();
  }
  s = co_await link_allocation(step, granted, host, *fence);
  if (!s) co_return fail(s.error());
  co_return layout.data;
}

Task<Status> Qcow2Node::fill_new_clusters(const Allocate& step, const AllocationLayout& layout,
                                          uint64_t host, uint64_t head_entry, uint64_t tail_entry,
                                          IoVec payload, AllocationFence& fence,
                                          JoinedPrefix* prefix) {
  const uint64_t clusters = (layout.head + layout.data + layout.tail) / cs_;
  const uint64_t guest_start = step.guest - layout.head;
  bool head_zero = true;
  bool tail_zero = true;
  if (layout.head) {
    Result<bool> z = co_await reads_as_zero(head_entry, guest_start);
    if (!z) co_return fail(z.error());
    head_zero = *z;
  }
  if (layout.tail) {
    Result<bool> z = co_await reads_as_zero(tail_entry, guest_start + (clusters - 1) * cs_);
    if (!z) co_return fail(z.error());
    tail_zero = *z;
  }
  // §9.1: zeroed host clusters decrypt to garbage, so an encrypted image always writes its
  // COW regions (encrypted zeros or re-encrypted old data) merged with the data.
  CowMethod method = choose_cow(layout, head_zero, tail_zero, zero_cow_ && !encrypted());
  if (method == CowMethod::kZeroThenData) {
    // block-semantics.md §5.2: one efficient zeroing of the whole allocation, data only after.
    co_await file_->debug_event(DebugEvent::kClusterAllocSpace);
    Status zeroed = co_await file_->write_zeroes(host, clusters * cs_, kAllocate);
    if (zeroed) {
      // The clusters read as zero now, which is their COW content: others may write in.
      fence.mark_ready(host);
    } else {
      method = CowMethod::kMergedCow;
    }
  }
  // The joined prefix goes out with this allocation's first write when it ends where the new
  // clusters begin on the host, else on its own first.
  const bool merge_prefix = prefix && prefix->host + prefix->data.size() == host;
  Status s = ok();
  if (prefix && !merge_prefix) {
    co_await file_->debug_event(DebugEvent::kWriteAio);
    s = co_await write_payload(prefix->guest, prefix->host, prefix->data);
    prefix->token.release();
    if (!s) co_return s;
  }
  if (encrypted()) {
    Task<Status> write = write_new_encrypted(step, layout, host, head_entry, tail_entry,
                                             std::move(payload), merge_prefix ? prefix : nullptr);
    s = co_await std::move(write);
  } else if (method != CowMethod::kMergedCow) {
    co_await file_->debug_event(DebugEvent::kWriteAio);
    if (merge_prefix) {
      IoVec merged = prefix->data;
      merged.append(payload);
      s = co_await file_->write(prefix->host, std::move(merged));
    } else {
      s = co_await file_->write(host + layout.head, std::move(payload));
    }
  } else {
    // block-semantics.md §5.3: COW head and tail merged with the data into one write.
    AlignedBuffer head_buf(layout.head, 4096), tail_buf(layout.tail, 4096);
    if (layout.head) {
      co_await file_->debug_event(DebugEvent::kCowRead);
      const Mapping m{cluster_type(head_entry), head_entry, layout.head};
      s = co_await read_mapping(guest_start, IoVec(head_buf.data(), layout.head), m);
      if (!s) co_return s;
    }
    if (layout.tail) {
      co_await file_->debug_event(DebugEvent::kCowRead);
      const Mapping m{cluster_type(tail_entry), tail_entry, layout.tail};
      s = co_await read_mapping(step.guest + layout.data, IoVec(tail_buf.data(), layout.tail), m);
      if (!s) co_return s;
    }
    // The image may have been found corrupt while this request waited (iotest 060 case 4).
    if (Status u = check_usable(); !u) co_return u;
    IoVec merged;
    if (merge_prefix) merged.append(prefix->data);
    if (layout.head) merged.append(head_buf.data(), layout.head);
    merged.append(payload);
    if (layout.tail) merged.append(tail_buf.data(), layout.tail);
    co_await file_->debug_event(DebugEvent::kCowWrite);
    // The request has waited for its COW read already; holding its write for the loop's batch
    // would add to that latency (W4: a write into a new cluster over a backing file).
    if (layout.head || layout.tail) loop().submit_promptly();
    s = co_await file_->write(merge_prefix ? prefix->host : host, std::move(merged));
  }
  if (prefix) prefix->token.release();
  co_return s;
}

Task<Status> Qcow2Node::write_new_encrypted(const Allocate& step, const AllocationLayout& layout,
                                            uint64_t host, uint64_t head_entry, uint64_t tail_entry,
                                            IoVec payload, JoinedPrefix* prefix) {
  // The COW regions in plain text (decrypted from the old clusters, from the backing file,
  // or zeros), then everything encrypted into one bounce buffer and written at once.
  const uint64_t guest_start = step.guest - layout.head;
  const uint64_t prefix_len = prefix ? prefix->data.size() : 0;
  const uint64_t total = prefix_len + layout.head + layout.data + layout.tail;
  AlignedBuffer plain(total, 4096);
  Status s = ok();
  if (prefix) prefix->data.copy_to(0, plain.data(), prefix_len);
  if (layout.head) {
    co_await file_->debug_event(DebugEvent::kCowRead);
    const Mapping m{cluster_type(head_entry), head_entry, layout.head};
    s = co_await read_mapping(guest_start, IoVec(plain.data() + prefix_len, layout.head), m);
    if (!s) co_return s;
  }
  payload.copy_to(0, plain.data() + prefix_len + layout.head, layout.data);
  if (layout.tail) {
    co_await file_->debug_event(DebugEvent::kCowRead);
    const Mapping m{cluster_type(tail_entry), tail_entry, layout.tail};
    IoVec tail(plain.data() + prefix_len + layout.head + layout.data, layout.tail);
    s = co_await read_mapping(step.guest + layout.data, std::move(tail), m);
    if (!s) co_return s;
  }
  if (Status u = check_usable(); !u) co_return u;
  AlignedBuffer sealed(total, 4096);
  if (prefix) {
    s = co_await encrypt_copy(prefix->guest, prefix->host, IoVec(plain.data(), prefix_len),
                              sealed.data());
    if (!s) co_return s;
  }
  s = co_await encrypt_copy(guest_start, host, IoVec(plain.data() + prefix_len, total - prefix_len),
                            sealed.data() + prefix_len);
  if (!s) co_return s;
  co_await file_->debug_event((layout.head || layout.tail) ? DebugEvent::kCowWrite
                                                           : DebugEvent::kWriteAio);
  if (layout.head || layout.tail) loop().submit_promptly();
  co_return co_await file_->write(prefix ? prefix->host : host, IoVec(sealed.data(), total));
}

Task<Status> Qcow2Node::link_allocation(const Allocate& step, uint64_t granted, uint64_t host,
                                        AllocationFence& fence) {
  // The slice may have left the cache meanwhile, so look it up again. Its entries for these
  // clusters cannot have changed (everybody else waits on the fence).
  Result<L2SliceRef> found = co_await get_l2_slice(step.guest, ForWrite::kYes);
  if (!found) co_return fail(found.error());
  L2Slice& slice = **found;
  const uint64_t first = step.first_index;
  CHECK(first == index_in_slice(step.guest));
  // The entries change in the cache; the write-back puts them on disk after the refcounts
  // and the data are stable (§17 R1/R3).
  std::vector<uint64_t> old(slice.entries.begin() + static_cast<std::ptrdiff_t>(first),
                            slice.entries.begin() + static_cast<std::ptrdiff_t>(first + granted));
  for (uint64_t i = 0; i < granted; ++i) slice.entries[first + i] = (host + i * cs_) | kCopied;
  Status s = co_await update_l2_entries(slice, first, granted);
  if (!s) co_return s;
  if (!step.reuse_zero_cluster) {
    // As QEMU's pass-discard-other=off: the replaced clusters are not discarded.
    for (uint64_t e : old) {
      if (!entry_references_host(e)) continue;
      s = co_await queue_data_free(e, DiscardType::kOther, host, granted * cs_);
      if (!s) co_return s;
    }
  }
  fence.linked = true;
  co_return ok();
}

}  // namespace qblock::qcow2
