// The null protocol driver (see null.h).
#include "block/protocols/null.h"

#include <chrono>

#include "block/qemu_json_name.h"
#include "qblock/driver/uring.h"

namespace qblock {

namespace {

class NullNode : public BlockNode {
 public:
  NullNode(EventLoop& loop, std::string name, uint64_t size, bool read_zeroes, uint64_t latency_ns)
      : BlockNode(loop, std::move(name), NodeKind::kProtocol),
        size_(size),
        read_zeroes_(read_zeroes),
        latency_ns_(latency_ns) {
    supported_write_flags_ = RequestFlag::kFua;
    supported_zero_flags_ = RequestFlag::kFua | RequestFlag::kMayUnmap | RequestFlag::kNoFallback;
  }
  uint64_t length() const override { return size_; }
  // "null-co://", or the options given, as QEMU names the node.
  std::string filename() const override {
    if (given_.size() <= 1) return driver_name() + "://";
    return qemu_json_filename(given_);
  }
  // The options the node was opened with (for its name).
  void set_given_options(Options given) { given_ = std::move(given); }
  // qemu-io `info`: the driver's name twice (format and protocol name) and no driver info.
  NodeInfo info() const override {
    NodeInfo i;
    i.format_name = driver_name();
    i.protocol_name = driver_name();
    i.name_only = true;
    return i;
  }

 protected:
  Task<Status> delay() {
    if (latency_ns_) co_await uring::sleep(loop(), std::chrono::nanoseconds(latency_ns_));
    co_return ok();
  }
  Task<Status> do_read(uint64_t, IoVec qiov, RequestFlags) override {
    if (read_zeroes_) qiov.memset(0, 0, qiov.size());
    co_return co_await delay();
  }
  Task<Status> do_write(uint64_t, IoVec, RequestFlags) override { co_return co_await delay(); }
  Task<Status> do_write_zeroes(uint64_t, uint64_t, RequestFlags) override {
    co_return co_await delay();
  }
  // As QEMU's null driver: an offset-valid extent, zero with read-zeroes.
  Task<Result<BlockStatus>> do_block_status(uint64_t offset, uint64_t bytes, WantZero) override {
    const uint32_t zero = read_zeroes_ ? uint32_t{kStatusZero} : 0u;
    co_return BlockStatus{zero | kStatusOffsetValid, bytes, offset, this};
  }
  Task<Status> do_truncate(uint64_t size, PreallocMode, Exact) override {
    size_ = size;
    co_return ok();
  }

 private:
  uint64_t size_;
  bool read_zeroes_;
  uint64_t latency_ns_;
  Options given_;
};

}  // namespace

namespace {

Task<Result<NodePtr>> open_null(OpenContext& ctx, Options& options, std::string name) {
  auto size = take_size(options, "size");
  if (!size) co_return fail(size.error());
  auto zeroes = take_bool(options, "read-zeroes");
  if (!zeroes) co_return fail(zeroes.error());
  auto latency = take_size(options, "latency-ns");
  if (!latency) co_return fail(latency.error());
  options.erase("filename");  // "null-co://" carries nothing
  Options given;
  given["driver"] = name;
  if (*size) given["size"] = **size;
  if (*zeroes) given["read-zeroes"] = **zeroes;
  if (*latency) given["latency-ns"] = **latency;
  auto node = std::make_unique<NullNode>(ctx.loop, std::move(name), size->value_or(1ULL << 30),
                                         zeroes->value_or(false), latency->value_or(0));
  node->set_given_options(std::move(given));
  co_return NodePtr(std::move(node));
}

}  // namespace

Task<Result<NodePtr>> open_null_node(OpenContext& ctx, Options& options) {
  co_return co_await open_null(ctx, options, "null-co");
}

Task<Result<NodePtr>> open_null_aio_node(OpenContext& ctx, Options& options) {
  co_return co_await open_null(ctx, options, "null-aio");
}

}  // namespace qblock
