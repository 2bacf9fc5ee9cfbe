// The null protocol driver (see null.h).
#include "block/protocols/null.h"

#include <chrono>

#include "qblock/driver/uring.h"

namespace qblock {

namespace {

class NullNode : public BlockNode {
 public:
  NullNode(EventLoop& loop, uint64_t size, bool read_zeroes, uint64_t latency_ns)
      : BlockNode(loop, "null-co", NodeKind::kProtocol),
        size_(size),
        read_zeroes_(read_zeroes),
        latency_ns_(latency_ns) {
    supported_write_flags_ = RequestFlag::kFua;
    supported_zero_flags_ = RequestFlag::kFua | RequestFlag::kMayUnmap | RequestFlag::kNoFallback;
  }
  uint64_t length() const override { return size_; }
  std::string filename() const override { return "null-co://"; }

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
  Task<Status> do_truncate(uint64_t size, PreallocMode, Exact) override {
    size_ = size;
    co_return ok();
  }

 private:
  uint64_t size_;
  bool read_zeroes_;
  uint64_t latency_ns_;
};

}  // namespace

Task<Result<NodePtr>> open_null_node(OpenContext& ctx, Options& options) {
  auto size = take_size(options, "size");
  if (!size) co_return fail(size.error());
  auto zeroes = take_bool(options, "read-zeroes");
  if (!zeroes) co_return fail(zeroes.error());
  auto latency = take_size(options, "latency-ns");
  if (!latency) co_return fail(latency.error());
  options.erase("filename");  // "null-co://" carries nothing
  co_return NodePtr(new NullNode(ctx.loop, size->value_or(1ULL << 30), zeroes->value_or(false),
                                 latency->value_or(0)));
}

}  // namespace qblock
