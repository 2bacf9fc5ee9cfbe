// The memory protocol driver (see memory.h).
#include "block/protocols/memory.h"

#include <algorithm>
#include <fstream>
#include <iterator>

namespace qblock {

MemoryNode::MemoryNode(EventLoop& loop, Config config)
    : BlockNode(loop, "memory", NodeKind::kProtocol), data_(config.size, 0) {
  limits_.request_alignment = config.request_alignment;
  limits_.max_transfer = config.max_transfer;
  if (config.efficient_zeroes) {
    supported_zero_flags_ = RequestFlag::kMayUnmap | RequestFlag::kNoFallback;
  }
  if (config.fua) {
    supported_write_flags_ = RequestFlag::kFua;
    supported_zero_flags_ |= RequestFlag::kFua;
  }
  efficient_zeroes_ = config.efficient_zeroes;
  async_ = config.async;
}

// With `async`, requests interleave like real I/O instead of completing inline.
Task<void> MemoryNode::maybe_yield() {
  if (async_) co_await loop().yield();
}

Task<Status> MemoryNode::do_read(uint64_t offset, IoVec qiov, RequestFlags flags) {
  co_await maybe_yield();
  log_.push_back({RecordedRequest::Kind::kRead, offset, qiov.size(), flags});
  // Past the end reads as zeros, like a file.
  uint64_t avail =
      offset < data_.size() ? std::min<uint64_t>(qiov.size(), data_.size() - offset) : 0;
  if (avail) qiov.copy_from(0, data_.data() + offset, avail);
  if (avail < qiov.size()) qiov.memset(avail, 0, qiov.size() - avail);
  co_return ok();
}

Task<Status> MemoryNode::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  max_concurrent_writes_ = std::max(max_concurrent_writes_, ++writes_in_flight_);
  co_await maybe_yield();
  --writes_in_flight_;
  log_.push_back({RecordedRequest::Kind::kWrite, offset, qiov.size(), flags});
  if (offset + qiov.size() > data_.size()) data_.resize(offset + qiov.size(), 0);
  qiov.copy_to(0, data_.data() + offset, qiov.size());
  co_return ok();
}

Task<Status> MemoryNode::do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  co_await maybe_yield();
  log_.push_back({RecordedRequest::Kind::kWriteZeroes, offset, bytes, flags});
  if (!efficient_zeroes_) co_return fail(Error::unsupported());
  if (offset + bytes > data_.size()) data_.resize(offset + bytes, 0);
  std::fill_n(data_.begin() + static_cast<std::ptrdiff_t>(offset), bytes, 0);
  co_return ok();
}

Task<Status> MemoryNode::do_discard(uint64_t offset, uint64_t bytes) {
  log_.push_back({RecordedRequest::Kind::kDiscard, offset, bytes, {}});
  co_return ok();
}

Task<Status> MemoryNode::do_flush() {
  co_await maybe_yield();
  log_.push_back({RecordedRequest::Kind::kFlush, 0, 0, {}});
  co_return ok();
}

Task<Status> MemoryNode::do_truncate(uint64_t size, PreallocMode, Exact) {
  log_.push_back({RecordedRequest::Kind::kTruncate, size, 0, {}});
  data_.resize(size, 0);
  co_return ok();
}

Task<Result<NodePtr>> open_memory_node(OpenContext& ctx, Options& options) {
  MemoryNode::Config config;
  auto size = take_size(options, "size");
  if (!size) co_return fail(size.error());
  config.size = size->value_or(0);
  auto align = take_size(options, "request-alignment");
  if (!align) co_return fail(align.error());
  if (*align) {
    if (**align == 0 || (**align & (**align - 1))) {
      co_return fail(Error::with_message(EINVAL, "request-alignment must be a power of two"));
    }
    config.request_alignment = static_cast<uint32_t>(**align);
  }
  auto max = take_size(options, "max-transfer");
  if (!max) co_return fail(max.error());
  config.max_transfer = max->value_or(0);
  auto zeroes = take_bool(options, "efficient-zeroes");
  if (!zeroes) co_return fail(zeroes.error());
  config.efficient_zeroes = zeroes->value_or(false);
  auto fua = take_bool(options, "fua");
  if (!fua) co_return fail(fua.error());
  config.fua = fua->value_or(false);
  auto async = take_bool(options, "async");
  if (!async) co_return fail(async.error());
  config.async = async->value_or(false);
  // `image`: a file whose bytes become the initial contents (tests of format drivers).
  auto image = take_string(options, "image");
  if (!image) co_return fail(image.error());
  std::vector<uint8_t> contents;
  if (*image) {
    std::ifstream in(**image, std::ios::binary);
    if (!in) {
      co_return fail(Error::with_message(ENOENT, "Could not open '" + **image + "'"));
    }
    // One read of the whole file: byte-wise stream iteration costs seconds per image in
    // unoptimised builds, and the power-cut tests load hundreds of crash images.
    in.seekg(0, std::ios::end);
    contents.resize(static_cast<std::size_t>(in.tellg()));
    in.seekg(0, std::ios::beg);
    in.read(reinterpret_cast<char*>(contents.data()),
            static_cast<std::streamsize>(contents.size()));
    if (!in) co_return fail(Error::io("Could not read '" + **image + "'"));
    config.size = std::max<uint64_t>(config.size, contents.size());
  }
  auto node = std::make_unique<MemoryNode>(ctx.loop, config);
  std::copy(contents.begin(), contents.end(), node->data().begin());
  co_return NodePtr(std::move(node));
}

}  // namespace qblock
