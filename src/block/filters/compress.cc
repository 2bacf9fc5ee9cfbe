// CompressFilter (see compress.h).
#include "block/filters/compress.h"

namespace qblock {

CompressFilter::CompressFilter(EventLoop& loop, NodePtr file)
    : PassthroughFilter(loop, "compress", std::move(file)) {
  // Compression works on whole clusters (QEMU's compress_refresh_limits()).
  const uint64_t cluster = child_node().info().cluster_size;
  if (cluster > limits_.request_alignment) {
    limits_.request_alignment = static_cast<uint32_t>(cluster);
  }
}

NodeInfo CompressFilter::info() const {
  NodeInfo i = child_node().info();
  i.format_name = "compress";
  i.format_specific.clear();
  return i;
}

Task<Status> CompressFilter::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  co_return co_await child_node().write(offset, std::move(qiov),
                                        flags | RequestFlag::kWriteCompressed);
}

Task<Result<NodePtr>> open_compress_node(OpenContext& ctx, Options& options) {
  Result<NodePtr> file = co_await open_child(ctx, options, "file", "file");
  if (!file) co_return fail(file.error());
  if (!(*file)->supported_write_flags().has(RequestFlag::kWriteCompressed) ||
      (*file)->info().cluster_size == 0) {
    std::string format = (*file)->driver_name();
    (void)co_await (*file)->close();
    co_return fail(Error::with_message(
        ENOTSUP, "Compression is not supported for underlying format: " + format));
  }
  if (!ctx.flags.read_only && (*file)->length() % (*file)->info().cluster_size != 0) {
    (void)co_await (*file)->close();
    co_return fail(Error::with_message(EPERM,
                                       "Cannot get 'write' permission without 'resize': Image "
                                       "size is not a multiple of request alignment"));
  }
  co_return NodePtr(new CompressFilter(ctx.loop, std::move(*file)));
}

}  // namespace qblock
