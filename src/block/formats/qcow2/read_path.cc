// Guest-to-host mapping and everything that only reads through it: guest reads, the zero
// test of COW regions, block status.
#include <fmt/format.h>

#include "block/formats/qcow2/compress.h"
#include "block/formats/qcow2/qcow2_node.h"
#include "qblock/driver/uring.h"

namespace qblock::qcow2 {

Task<Result<Qcow2Node::Mapping>> Qcow2Node::map(uint64_t guest, uint64_t bytes) {
  Result<L2SliceRef> slice = co_await get_l2_slice(guest, ForWrite::kNo);
  if (!slice) co_return fail(slice.error());
  if (!*slice) {
    // No L2 table: the whole table's range is unallocated.
    const uint64_t table_span = cs_ * l2_entries_;
    const uint64_t table_end = guest - guest % table_span + table_span;
    co_return Mapping{ClusterType::kUnallocated, 0, std::min(bytes, table_end - guest)};
  }
  const L2Slice& s = **slice;
  if (header_.extended_l2()) co_return co_await map_subclusters(s, guest, bytes);
  const uint64_t index = index_in_slice(guest);
  const uint64_t entry = s.entries[index];
  const ClusterType type = entry_type(entry);
  if (type == ClusterType::kNormal && !(entry & kOffsetMask)) {
    // §10: guest cluster 0 at data-file offset 0, a run of its own.
    co_return Mapping{type, entry, std::min(bytes, cs_ - guest % cs_)};
  }
  if (has_host_cluster(type) && (entry & kOffsetMask) % cs_) {
    Error e = co_await corruption(
        fmt::format("Cluster allocation offset {:#x} unaligned (L2 offset: {:#x}, L2 index: {:#x})",
                    entry & kOffsetMask, s.table_offset, s.first_index + index));
    co_return fail(e);
  }
  const ClusterRun run = scan_run(view(s, guest), guest, bytes, RunRule::kSameMapping, inflight_);
  co_return Mapping{type, entry, run.bytes};
}

Task<Result<Qcow2Node::Mapping>> Qcow2Node::map_subclusters(const L2Slice& s, uint64_t guest,
                                                            uint64_t bytes) {
  const uint64_t sc_size = subcluster_size();
  const uint64_t first = index_in_slice(guest);
  const uint64_t entry = s.entries[first];
  const uint64_t bitmap = s.bitmaps[first];
  const uint32_t sc = static_cast<uint32_t>(guest % cs_ / sc_size);
  const bool data_file = has_data_file();
  const SubclusterType type = subcluster_type(entry, bitmap, sc, data_file);
  if (type == SubclusterType::kInvalid) {
    // QEMU prints the index with %#x, which gives a plain "0" for 0.
    const uint64_t l2_index = s.first_index + first;
    const std::string index_text = l2_index ? fmt::format("{:#x}", l2_index) : "0";
    std::string reason =
        fmt::format("Invalid cluster entry found  (L2 offset: {:#x}, L2 index: {})", s.table_offset,
                    index_text);
    Error e = co_await corruption(std::move(reason));
    co_return fail(e);
  }
  const bool host = type != SubclusterType::kCompressed &&
                    ((entry & kOffsetMask) || (data_file && (entry & kCopied)));
  if (host && (entry & kOffsetMask) % cs_) {
    Error e = co_await corruption(
        fmt::format("Cluster allocation offset {:#x} unaligned (L2 offset: {:#x}, L2 index: {:#x})",
                    entry & kOffsetMask, s.table_offset, s.first_index + first));
    co_return fail(e);
  }
  // The run of subclusters of this type, across clusters while they continue it (and, for
  // those with a host cluster, lie right after each other on the host).
  const uint64_t run_end =
      (sc + subcluster_run(entry, bitmap, sc, data_file)) * sc_size;  // in the cluster
  uint64_t covered = std::min(bytes, run_end - guest % cs_);
  for (uint64_t i = first + 1; covered < bytes && i < s.entries.size(); ++i) {
    if ((guest + covered) % cs_ != 0 || type == SubclusterType::kCompressed) break;
    const uint64_t e = s.entries[i];
    if (subcluster_type(e, s.bitmaps[i], 0, data_file) != type) break;
    if (host && ((e & kOffsetMask) != (entry & kOffsetMask) + (i - first) * cs_ ||
                 (e & kCopied) != (entry & kCopied))) {
      break;
    }
    covered += std::min(bytes - covered, subcluster_run(e, s.bitmaps[i], 0, data_file) * sc_size);
  }
  co_return Mapping{as_cluster_type(type), entry, covered};
}

Task<Status> Qcow2Node::read_backing(uint64_t guest, IoVec qiov) {
  co_await file_->debug_event(DebugEvent::kReadBackingAio);
  const uint64_t backing_len = backing_ ? backing_->length() : 0;
  const uint64_t n = qiov.size();
  // §3.5: beyond the backing file's end the image reads as zeros.
  const uint64_t avail = guest < backing_len ? std::min(n, backing_len - guest) : 0;
  if (avail < n) qiov.memset(avail, 0, n - avail);
  if (avail == 0) co_return ok();
  IoVec part = qiov.slice(0, avail);
  co_return co_await backing_->read(guest, std::move(part));
}

Task<Status> Qcow2Node::read_mapping(uint64_t guest, IoVec qiov, const Mapping& m) {
  switch (m.type) {
    case ClusterType::kUnallocated:
      if (backing_) co_return co_await read_backing(guest, std::move(qiov));
      qiov.memset(0, 0, qiov.size());
      co_return ok();
    case ClusterType::kZeroPlain:
    case ClusterType::kZeroAlloc: qiov.memset(0, 0, qiov.size()); co_return ok();
    case ClusterType::kNormal: {
      co_await file_->debug_event(DebugEvent::kReadAio);
      const uint64_t host = (m.entry & kOffsetMask) + guest % cs_;
      if (encrypted()) co_return co_await read_decrypted(guest, host, std::move(qiov));
      co_return co_await data_->read(host, std::move(qiov));
    }
    case ClusterType::kCompressed: {
      co_await file_->debug_event(DebugEvent::kReadCompressed);
      const CompressedDescriptor d = decode_compressed(m.entry, header_.cluster_bits);
      const uint64_t file_len = file_->length();
      if (d.host >= file_len) co_return fail(Error::io("compressed cluster beyond end of file"));
      const uint64_t in_len = std::min(d.max_bytes(), file_len - d.host);
      std::vector<uint8_t> in(in_len);
      Status s = co_await file_->read(d.host, IoVec(in.data(), in_len));
      if (!s) co_return s;
      // A whole cluster into one buffer is inflated in place, anything else through a copy.
      const bool direct = guest % cs_ == 0 && qiov.size() == cs_ && qiov.count() == 1;
      std::vector<uint8_t> out(direct ? 0 : cs_);
      uint8_t* dst = direct ? static_cast<uint8_t*>(qiov.data()[0].iov_base) : out.data();
      const auto type = static_cast<CompressionType>(header_.compression_type);
      // On a worker thread: the clusters of one request (read_mapping runs for each at once)
      // are inflated in parallel while the loop goes on.
      co_await uring::run_in_worker(*loop_, [&]() {
        s = decompress_cluster(type, in.data(), in_len, dst, cs_);
        return 0;
      });
      if (!s) co_return s;
      if (!direct) qiov.copy_from(0, out.data() + guest % cs_, qiov.size());
      co_return ok();
    }
  }
  co_return ok();
}

Task<Status> Qcow2Node::read_compressed(std::vector<CompressedPiece> pieces) {
  co_await file_->debug_event(DebugEvent::kReadCompressed);
  const uint64_t file_len = file_->length();
  const std::size_t n = pieces.size();
  std::vector<std::vector<uint8_t>> in(n);
  {
    std::vector<Task<Status>> reads;
    reads.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      const CompressedDescriptor d = decode_compressed(pieces[i].entry, header_.cluster_bits);
      if (d.host >= file_len) co_return fail(Error::io("compressed cluster beyond end of file"));
      in[i].resize(std::min(d.max_bytes(), file_len - d.host));
      reads.push_back(file_->read(d.host, IoVec(in[i].data(), in[i].size())));
    }
    std::vector<Status> done = co_await when_all(std::move(reads));
    for (Status& s : done) {
      if (!s) co_return s;
    }
  }
  // As many jobs as the loop has worker threads at most, each inflating a run of the pieces.
  constexpr std::size_t kJobs = 4;
  const std::size_t per_job = (n + kJobs - 1) / kJobs;
  const auto type = static_cast<CompressionType>(header_.compression_type);
  const uint64_t cs = cs_;
  std::vector<Task<Status>> jobs;
  for (std::size_t first = 0; first < n; first += per_job) {
    const std::size_t last = std::min(n, first + per_job);
    jobs.push_back([](EventLoop& loop, CompressionType type, uint64_t cs,
                      std::vector<CompressedPiece>& pieces, std::vector<std::vector<uint8_t>>& in,
                      std::size_t first, std::size_t last) -> Task<Status> {
      Status result = ok();
      co_await uring::run_in_worker(loop, [&]() {
        std::vector<uint8_t> out;
        for (std::size_t i = first; i < last && result; ++i) {
          IoVec& q = pieces[i].qiov;
          const uint64_t within = pieces[i].guest % cs;
          if (within == 0 && q.size() == cs && q.count() == 1) {
            result = decompress_cluster(type, in[i].data(), in[i].size(),
                                        static_cast<uint8_t*>(q.data()[0].iov_base), cs);
            continue;
          }
          out.resize(cs);
          result = decompress_cluster(type, in[i].data(), in[i].size(), out.data(), cs);
          if (result) q.copy_from(0, out.data() + within, q.size());
        }
        return 0;
      });
      co_return result;
    }(*loop_, type, cs, pieces, in, first, last));
  }
  std::vector<Status> done = co_await when_all(std::move(jobs));
  for (Status& s : done) {
    if (!s) co_return s;
  }
  co_return ok();
}

Task<Result<bool>> Qcow2Node::reads_as_zero(uint64_t entry, uint64_t guest_cluster) {
  switch (cluster_type(entry)) {
    case ClusterType::kZeroPlain:
    case ClusterType::kZeroAlloc: co_return true;
    case ClusterType::kUnallocated:
      if (!backing_ || guest_cluster >= backing_->length()) co_return true;
      {
        // Ask the backing chain cheaply whether that range holds data: metadata only
        // (WantZero::kNo), no lseek of a raw file per allocation, as QEMU's fast zero test.
        const uint64_t len = std::min(cs_, backing_->length() - guest_cluster);
        Result<BlockStatus> st = co_await backing_->block_status(guest_cluster, len, WantZero::kNo);
        if (!st) co_return fail(st.error());
        co_return (st->flags & kStatusZero) && st->bytes >= len;
      }
    default: co_return false;
  }
}

Task<Status> Qcow2Node::do_read(uint64_t offset, IoVec qiov, RequestFlags) {
  if (Status u = check_usable(); !u) co_return u;
  // Map the whole request first, then read every extent at once: a fragmented request costs
  // one round trip, not one per extent.
  struct Extent {
    uint64_t pos;
    Mapping m;
  };
  std::vector<Extent> extents;
  {
    AsyncMutex::Guard guard = co_await lock_.lock();
    for (uint64_t pos = 0; pos < qiov.size();) {
      Result<Mapping> m = co_await map(offset + pos, qiov.size() - pos);
      if (!m) co_return fail(m.error());
      extents.push_back(Extent{pos, *m});
      pos += m->bytes;
    }
  }
  if (extents.size() == 1) {
    co_return co_await read_mapping(offset, std::move(qiov), extents[0].m);
  }
  std::vector<Task<Status>> reads;
  reads.reserve(extents.size());
  std::vector<CompressedPiece> compressed;
  for (const Extent& e : extents) {
    if (e.m.type == ClusterType::kCompressed) {
      compressed.push_back(
          CompressedPiece{offset + e.pos, qiov.slice(e.pos, e.m.bytes), e.m.entry});
      continue;
    }
    reads.push_back(read_mapping(offset + e.pos, qiov.slice(e.pos, e.m.bytes), e.m));
  }
  if (compressed.size() == 1) {
    const CompressedPiece& p = compressed[0];
    reads.push_back(
        read_mapping(p.guest, p.qiov, Mapping{ClusterType::kCompressed, p.entry, p.qiov.size()}));
  } else if (!compressed.empty()) {
    reads.push_back(read_compressed(std::move(compressed)));
  }
  std::vector<Status> results = co_await when_all(std::move(reads));
  for (Status& r : results) {
    if (!r) co_return r;
  }
  co_return ok();
}

Task<Result<BlockStatus>> Qcow2Node::do_block_status(uint64_t offset, uint64_t bytes, WantZero) {
  AsyncMutex::Guard guard = co_await lock_.lock();
  Result<Mapping> m = co_await map(offset, bytes);
  if (!m) co_return fail(m.error());
  BlockStatus st{0, m->bytes, 0, nullptr};
  // An encrypted cluster's host bytes are not the guest's: no offset is reported (QEMU's
  // map then says "File contains external, encrypted or compressed clusters.").
  if (encrypted()) {
    if (m->type == ClusterType::kNormal) st.flags = kStatusData;
    if (m->type == ClusterType::kZeroPlain || m->type == ClusterType::kZeroAlloc) {
      st.flags = kStatusZero;
    }
    co_return st;
  }
  switch (m->type) {
    case ClusterType::kUnallocated:
      // §7.2 UNALLOCATED_ALLOC: the host offset is reported, as QEMU does (§10: guest
      // cluster 0 of a data file included).
      if (references_data(m->entry)) {
        st.flags = kStatusOffsetValid;
        st.host_offset = (m->entry & kOffsetMask) + offset % cs_;
        st.file = data_;
      }
      break;
    case ClusterType::kZeroPlain: st.flags = kStatusZero; break;
    case ClusterType::kZeroAlloc:
      st.flags = kStatusZero | kStatusOffsetValid;
      st.host_offset = (m->entry & kOffsetMask) + offset % cs_;
      st.file = data_;
      break;
    case ClusterType::kNormal:
      st.flags = kStatusData | kStatusOffsetValid;
      st.host_offset = (m->entry & kOffsetMask) + offset % cs_;
      st.file = data_;
      break;
    case ClusterType::kCompressed: st.flags = kStatusData; break;
  }
  co_return st;
}

}  // namespace qblock::qcow2
