// The raw format driver (see raw.h).
#include "block/formats/raw.h"

#include "block/filters/passthrough.h"
#include "block/qemu_json_name.h"

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

  // A window is named by its options, as QEMU names it.
  std::string filename() const override {
    if (offset_ || size_) return qemu_json_filename(options());
    return child_node().filename();
  }

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
    // QEMU 7.2: a window with a size is fixed; one with only an offset moves its end.
    if (size_) {
      co_return fail(Error::with_message(ENOTSUP, "Cannot resize fixed-size raw disks"));
    }
    co_return co_await child_node().truncate(offset_ + size, mode, exact);
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
  // QEMU 7.2's checks, in its order and words (the double space is QEMU's).
  std::string error;
  if (off > file_len) {
    error = "Offset (" + std::to_string(off) +
            ") cannot be greater than size of the containing file (" + std::to_string(file_len) +
            ")";
  } else if (*size && file_len - off < **size) {
    error = "The sum of offset (" + std::to_string(off) + ") and size (" + std::to_string(**size) +
            ") has to be smaller or equal to the  actual size of the containing file (" +
            std::to_string(file_len) + ")";
  } else if (*size && **size % 512 != 0) {
    error = "Specified size is not multiple of 512";
  }
  if (!error.empty()) {
    (void)co_await (*file)->close();
    co_return fail(Error::with_message(EINVAL, error));
  }
  co_return NodePtr(new RawFormat(ctx.loop, std::move(*file), off, *size));
}

}  // namespace qblock
