// Images with an external data file (qcow2-format.md §10): the data-file child opened from the
// header's name or the `data-file` option, and guest writes into it. The metadata stays in the
// file child; the data clusters live in the data file at host offset = guest offset and are
// not refcounted.
#include <fmt/format.h>

#include "block/formats/qcow2/qcow2_node.h"
#include "block/node_reference.h"

namespace qblock::qcow2 {

Task<Result<NodePtr>> open_data_file(OpenContext& ctx, Options& options, const Header& header) {
  const bool wanted = header.incompatible_features & kIncompatDataFile;
  if (!options.contains("data-file")) {
    if (!wanted) co_return NodePtr();
    if (header.data_file.empty()) {
      co_return fail(Error::with_message(EINVAL, "'data-file' is required for this image"));
    }
    // QEMU 7.2 (observed) opens the recorded name as it is: a relative name is relative to
    // the working directory, not to the image's directory.
    Options opts = Options::object();
    opts["driver"] = "file";
    opts["filename"] = header.data_file;
    co_return co_await open_node(ctx.loop, std::move(opts), ctx.flags, "file");
  }
  if (!wanted) {
    options.erase("data-file");
    co_return fail(Error::with_message(
        EINVAL, "'data-file' can only be set for images with an external data file"));
  }
  co_return co_await open_child(ctx, options, "data-file", "file");
}

void Qcow2Node::set_data_file(NodePtr data_file, bool raw) {
  add_child(ChildRole::kDataFile, "data-file", std::move(data_file));
  data_ = child(ChildRole::kDataFile);
  data_file_raw_ = raw;
}

Task<Status> Qcow2Node::read_locked(uint64_t guest, IoVec qiov) {
  for (uint64_t pos = 0; pos < qiov.size();) {
    Result<Mapping> m = co_await map(guest + pos, qiov.size() - pos);
    if (!m) co_return fail(m.error());
    Status s = co_await read_mapping(guest + pos, qiov.slice(pos, m->bytes), *m);
    if (!s) co_return s;
    pos += m->bytes;
  }
  co_return ok();
}

Task<Status> Qcow2Node::grow_data_file(uint64_t old_size, uint64_t size, PreallocMode mode) {
  const bool map = mode != PreallocMode::kOff || data_file_raw_;
  if (size > data_->length()) {
    const PreallocMode data_mode = mode == PreallocMode::kMetadata ? PreallocMode::kOff : mode;
    Status s = co_await data_->truncate(size, data_mode);
    if (!s) co_return s;
  }
  if (!map) co_return ok();
  // The old last cluster, if partial, keeps its mapping: the data file past the old end need
  // not read as zeros there.
  for (uint64_t guest = (old_size + cs_ - 1) / cs_ * cs_; guest < size;) {
    Result<SliceRun> run = co_await private_slice_run(guest, size);
    if (!run) co_return fail(run.error());
    for (uint64_t i = 0; i < run->count; ++i) {
      uint64_t& e = run->slice->entries[run->first + i];
      if (entry_type(e) != ClusterType::kNormal) e = (guest + i * cs_) | kCopied;
    }
    Status s = co_await update_l2_entries(*run->slice, run->first, run->count);
    if (!s) co_return s;
    guest += run->count * cs_;
  }
  co_return co_await flush_metadata();
}

Task<Status> Qcow2Node::write_data_file(uint64_t offset, IoVec qiov) {
  AsyncMutex::Guard guard = co_await lock_.lock();
  if (header_.extended_l2()) co_return co_await write_data_file_subclusters(offset, qiov);
  const uint64_t n = qiov.size();
  for (uint64_t pos = 0; pos < n;) {
    const uint64_t guest = offset + pos;
    Result<Mapping> m = co_await map(guest, n - pos);
    if (!m) co_return fail(m.error());
    if (m->type == ClusterType::kCompressed) {
      // §10: a data file never holds compressed clusters.
      Error e = co_await corruption(
          fmt::format("Compressed cluster at {:#x} in an image with a data file", guest));
      co_return fail(e);
    }
    if (m->type == ClusterType::kNormal) {
      const uint64_t host = (m->entry & kOffsetMask) + guest % cs_;
      co_await file_->debug_event(DebugEvent::kWriteAio);
      Status s = co_await write_payload(guest, host, qiov.slice(pos, m->bytes));
      if (!s) co_return s;
      pos += m->bytes;
      continue;
    }
    // New clusters [start, end) at host offset = guest offset: the parts the request does not
    // cover keep what they read as now (backing file or zeros).
    const uint64_t len = m->bytes;
    const uint64_t start = guest - guest % cs_;
    // Whole clusters, as QEMU 7.2 (observed): the last one of an image whose size is not
    // cluster-aligned extends the data file to the cluster's end.
    const uint64_t end = (guest + len + cs_ - 1) / cs_ * cs_;
    AlignedBuffer buf(end - start, 4096);
    const uint64_t head = guest - start;
    const uint64_t tail = end - (guest + len);
    if (head) {
      Status s = co_await read_locked(start, IoVec(buf.data(), head));
      if (!s) co_return s;
    }
    if (tail) {
      Status s = co_await read_locked(guest + len, IoVec(buf.data() + head + len, tail));
      if (!s) co_return s;
    }
    qiov.slice(pos, len).copy_to(0, buf.data() + head, len);
    co_await file_->debug_event(DebugEvent::kClusterAlloc);
    Status s = co_await write_payload(start, start, IoVec(buf.data(), buf.size()));
    // §17 R3: the data is stable before an L2 entry points at it.
    if (s) s = co_await data_->flush();
    if (!s) co_return s;
    for (uint64_t c = start; c < end;) {
      Result<L2SliceRef> slice = co_await get_l2_slice(c, ForWrite::kYes);
      if (!slice) co_return fail(slice.error());
      const uint64_t first = index_in_slice(c);
      const uint64_t count = std::min(l2_cache_.slice_entries() - first, (end - c + cs_ - 1) / cs_);
      for (uint64_t i = 0; i < count; ++i) {
        (*slice)->entries[first + i] = (c + i * cs_) | kCopied;
      }
      s = co_await update_l2_entries(**slice, first, count);
      if (!s) co_return s;
      c += count * cs_;
    }
    pos += len;
  }
  co_return ok();
}

Task<Status> Qcow2Node::write_data_file_subclusters(uint64_t offset, IoVec qiov) {
  const uint64_t scs = subcluster_size();
  const uint64_t n = qiov.size();
  for (uint64_t pos = 0; pos < n;) {
    const uint64_t guest = offset + pos;
    const uint64_t cluster = guest - guest % cs_;
    const uint64_t in = guest % cs_;
    const uint64_t len = std::min(n - pos, cs_ - in);
    Result<L2SliceRef> found = co_await get_l2_slice(guest, ForWrite::kYes);
    if (!found) co_return fail(found.error());
    const uint64_t index = index_in_slice(guest);
    const uint64_t entry = (*found)->entries[index];
    found->reset();
    if (entry & kCompressedFlag) {
      // §10: a data file never holds compressed clusters.
      Error e = co_await corruption(
          fmt::format("Compressed cluster at {:#x} in an image with a data file", guest));
      co_return fail(e);
    }
    // §10: every data cluster sits at host offset = guest offset (COPIED, offset 0 for
    // cluster 0); an unallocated cluster gets that offset.
    const bool allocated = references_data(entry);
    const uint64_t host = allocated ? entry & kOffsetMask : cluster;
    // §7, as QEMU 7.2 (observed): the touched subclusters are written whole (the rest of
    // each as it reads now: backing file, zeros or its data) and become allocated; the
    // others keep their state.
    const uint64_t from = in - in % scs;
    const uint64_t to = std::min(cs_, (in + len + scs - 1) / scs * scs);
    AlignedBuffer buf(to - from, 4096);
    const uint64_t head = in - from;
    const uint64_t tail = to - (in + len);
    if (head) {
      Status s = co_await read_locked(cluster + from, IoVec(buf.data(), head));
      if (!s) co_return s;
    }
    if (tail) {
      Status s = co_await read_locked(guest + len, IoVec(buf.data() + head + len, tail));
      if (!s) co_return s;
    }
    qiov.slice(pos, len).copy_to(0, buf.data() + head, len);
    co_await file_->debug_event(allocated ? DebugEvent::kWriteAio : DebugEvent::kClusterAlloc);
    Status s = co_await write_payload(cluster + from, host + from, IoVec(buf.data(), buf.size()));
    if (!s) co_return s;
    const uint32_t first = static_cast<uint32_t>(from / scs);
    const uint32_t count = static_cast<uint32_t>((to - from) / scs);
    found = co_await get_l2_slice(guest, ForWrite::kYes);
    if (!found) co_return fail(found.error());
    uint64_t& bitmap = (*found)->bitmaps[index];
    const uint64_t updated = (bitmap | alloc_range(first, count)) & ~zero_range(first, count);
    if (allocated && updated == bitmap) {
      pos += len;
      continue;
    }
    // §17 R3: the data is stable before the L2 entry and bitmap point at it.
    s = co_await data_->flush();
    if (!s) co_return s;
    (*found)->entries[index] = host | kCopied;
    bitmap = updated;
    s = co_await update_l2_entries(**found, index, 1);
    if (!s) co_return s;
    pos += len;
  }
  co_return ok();
}

}  // namespace qblock::qcow2
