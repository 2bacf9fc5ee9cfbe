// The raw format driver (see raw.h).
#include "block/formats/raw.h"

#include "block/filters/passthrough.h"

namespace qblock {

namespace {

class RawFormat : public PassthroughFilter {
 public:
  RawFormat(EventLoop& loop, NodePtr file, uint64_t offset, std::optional<uint64_t> size)
      : PassthroughFilter(loop, "raw", std::move(file), ChildRole::kFile, "file",
                          NodeKind::kFormat),
        offset_(offset),
        size_(size) {
    // The format sits on a file: everything the file honours is honoured here.
    supported_write_flags_ = child_node().supported_write_flags() | RequestFlag::kWriteUnchanged;
    supported_zero_flags_ = child_node().supported_zero_flags() | RequestFlag::kWriteUnchanged;
  }

  uint64_t length() const override {
    if (size_) return *size_;
    uint64_t file_len = child_node().length();
    return file_len > offset_ ? file_len - offset_ : 0;
  }

  NodeInfo info() const override {
    NodeInfo i;
    i.format_name = "raw";
    return i;
  }

  Options options() const override {
    Options o = BlockNode::options();
    if (offset_) o["offset"] = offset_;
    if (size_) o["size"] = *size_;
    return o;
  }

  std::string filename() const override { return child_node().filename(); }

 protected:
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override {
    co_await child_node().debug_event(DebugEvent::kReadAio);
    co_return co_await child_node().read(offset_ + offset, std::move(qiov), flags);
  }
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override {
    co_await child_node().debug_event(DebugEvent::kWriteAio);
    co_return co_await child_node().write(offset_ + offset, std::move(qiov), flags);
  }
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override {
    co_return co_await child_node().write_zeroes(offset_ + offset, bytes, flags);
  }
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override {
    co_return co_await child_node().discard(offset_ + offset, bytes);
  }
  Task<Status> do_truncate(uint64_t size, PreallocMode mode, Exact exact) override {
    if (offset_ || size_) {
      co_return fail(Error::with_message(
          ENOTSUP, "The new size must be the same as the size of the raw image"));
    }
    co_return co_await child_node().truncate(size, mode, exact);
  }
  Task<Result<BlockStatus>> do_block_status(uint64_t offset, uint64_t bytes, WantZero) override {
    co_return BlockStatus{kStatusRaw | kStatusOffsetValid, bytes, offset_ + offset, &child_node()};
  }

 private:
  uint64_t offset_;
  std::optional<uint64_t> size_;
};

}  // namespace

Task<Result<NodePtr>> open_raw_node(OpenContext& ctx, Options& options) {
  auto offset = take_size(options, "offset");
  if (!offset) co_return fail(offset.error());
  auto size = take_size(options, "size");
  if (!size) co_return fail(size.error());
  Result<NodePtr> file = co_await open_child(ctx, options, "file", "file");
  if (!file) co_return fail(file.error());
  uint64_t off = offset->value_or(0);
  uint64_t file_len = (*file)->length();
  if (off > file_len) {
    (void)co_await (*file)->close();
    co_return fail(Error::with_message(EINVAL, "The sum of offset (" + std::to_string(off) +
                                                   ") and size (0) has to be smaller or equal to "
                                                   "the actual size of the containing file (" +
                                                   std::to_string(file_len) + ")"));
  }
  co_return NodePtr(new RawFormat(ctx.loop, std::move(*file), off, *size));
}

}  // namespace qblock
