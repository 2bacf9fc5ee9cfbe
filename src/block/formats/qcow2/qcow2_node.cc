// The qcow2 node's construction and its whole-image operations: info, flush, close.
#include "block/formats/qcow2/qcow2_node.h"

#include "block/formats/luks.h"

namespace qblock::qcow2 {

Qcow2Node::Qcow2Node(EventLoop& loop, NodePtr file, Header header, const CacheSettings& cache)
    : BlockNode(loop, "qcow2", NodeKind::kFormat),
      lock_(loop),
      compressed_turns_(loop),
      header_(std::move(header)),
      cs_(header_.cluster_size()),
      l2_entries_(cs_ / (header_.extended_l2() ? 16 : 8)),
      refcount_cache_blocks_(cache.refcount_cache_bytes / cs_),
      l2_cache_(*file, cs_, cache.l2_entry_bytes, cache.l2_cache_bytes / cache.l2_entry_bytes,
                header_.extended_l2() ? 16 : 8),
      clean_interval_(std::chrono::seconds(cache.clean_interval_seconds)) {
  flags_ = file->open_flags();
  pass_discard_request_ = flags_.discard == DiscardMode::kUnmap;
  add_child(ChildRole::kFile, "file", std::move(file));
  file_ = primary_child();
  data_ = file_;
  replace_refcounts();
  // §3.7: write-zeroes of whole clusters is a metadata operation on v3; v2 has no zero flag.
  if (header_.version >= 3) {
    supported_zero_flags_ = RequestFlag::kMayUnmap | RequestFlag::kNoFallback;
  }
  // §7: with extended L2 entries a subcluster can be zeroed on its own.
  limits_.pwrite_zeroes_alignment =
      static_cast<uint32_t>(header_.extended_l2() ? cs_ / kSubclusters : cs_);
  supported_write_flags_ |= RequestFlag::kWriteCompressed;
}

void Qcow2Node::replace_refcounts() {
  refcounts_ = std::make_unique<Refcounts>(*file_, header_, refcount_cache_blocks_);
  l2_cache_.set_refcounts(refcounts_.get());
}

void Qcow2Node::set_backing(NodePtr backing) {
  if (backing) add_child(ChildRole::kBacking, "backing", std::move(backing));
  backing_ = child(ChildRole::kBacking);
}

NodeInfo Qcow2Node::info() const {
  NodeInfo i;
  i.format_name = "qcow2";
  i.cluster_size = cs_;
  // QEMU stores VM state right after the guest-visible L1 range.
  const uint64_t l1_span = cs_ * l2_entries_;
  i.vm_state_offset = (header_.size + l1_span - 1) / l1_span * l1_span;
  const bool v3 = header_.version >= 3;
  i.format_specific.emplace_back("compat", v3 ? "1.1" : "0.10");
  i.format_specific.emplace_back("compression type", header_.compression_type ? "zstd" : "zlib");
  if (v3) {
    i.format_specific.emplace_back(
        "lazy refcounts", header_.compatible_features & kCompatLazyRefcounts ? "true" : "false");
  }
  i.format_specific.emplace_back("refcount bits", std::to_string(header_.refcount_bits()));
  const bool data_file = header_.incompatible_features & kIncompatDataFile;
  if (data_file && !header_.data_file.empty()) {
    i.format_specific.emplace_back("data file", header_.data_file);
  }
  if (encrypted()) {
    i.format_specific.emplace_back("encrypt", "");
    if (crypt_.luks_header) {
      const LuksInfo luks = luks_info(*crypt_.luks_header, crypt_.luks_params);
      for (auto& [key, value] : luks_info_fields(luks, LuksInfoIn::kQcow2Encrypt)) {
        i.format_specific.emplace_back("    " + key, std::move(value));
      }
    } else {
      i.format_specific.emplace_back("    format", crypt_format_name(crypt_.method));
    }
  }
  if (data_file) {
    i.format_specific.emplace_back(
        "data file raw", header_.autoclear_features & kAutoclearDataFileRaw ? "true" : "false");
  }
  if (v3) {
    i.format_specific.emplace_back(
        "corrupt", header_.incompatible_features & kIncompatCorrupt ? "true" : "false");
    i.format_specific.emplace_back("extended l2", header_.extended_l2() ? "true" : "false");
  }
  return i;
}

Task<Status> Qcow2Node::do_flush() {
  if (read_only() || broken_) co_return ok();
  AsyncMutex::Guard guard = co_await lock_.lock();
  co_await file_->debug_event(DebugEvent::kFlushToOs);
  // §10: guest data written in place in the data file is stable with the metadata.
  if (has_data_file()) {
    Status d = co_await data_->flush();
    if (!d) co_return d;
  }
  co_return co_await flush_metadata();
}

Task<Status> Qcow2Node::do_close() {
  if (read_only() || broken_ || open_flags().check) co_return ok();
  AsyncMutex::Guard guard = co_await lock_.lock();
  Status s = ok();
  if (has_data_file()) s = co_await data_->flush();
  if (s) s = co_await flush_metadata();
  if (s) s = co_await store_bitmaps();
  if (!s) co_return s;
  co_return co_await file_->flush();
}

}  // namespace qblock::qcow2
