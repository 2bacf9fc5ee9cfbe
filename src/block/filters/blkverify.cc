// BlkverifyFilter (see blkverify.h).
#include "block/filters/blkverify.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "block/filters/probed_child.h"
#include "block/qemu_json_name.h"

namespace qblock {

namespace {

// QEMU prints the children's results as negative errnos (0 for success).
int result_code(const Status& s) { return s ? 0 : -s.error().errnum(); }

}  // namespace

BlkverifyFilter::BlkverifyFilter(EventLoop& loop, NodePtr test, NodePtr raw)
    : BlockNode(loop, "blkverify", NodeKind::kFilter) {
  flags_ = test->open_flags();
  limits_.request_alignment =
      std::max(test->limits().request_alignment, raw->limits().request_alignment);
  limits_.memory_alignment =
      std::max(test->limits().memory_alignment, raw->limits().memory_alignment);
  add_child(ChildRole::kRaw, "raw", std::move(raw));
  add_child(ChildRole::kTest, "test", std::move(test));
  // REQ-FLAGS-4: no flag whose guarantee two children could not keep together.
  supported_write_flags_ = RequestFlag::kWriteUnchanged;
  supported_zero_flags_ = RequestFlag::kWriteUnchanged;
}

NodeInfo BlkverifyFilter::info() const {
  NodeInfo i;
  i.format_name = "blkverify";
  i.protocol_name = "blkverify";
  return i;
}

std::string BlkverifyFilter::filename() const {
  // QEMU: "blkverify:RAW:TEST" when both children have plain names, else json:.
  const std::string r = raw().filename();
  const std::string t = test().filename();
  if (r.rfind("json:", 0) != 0 && t.rfind("json:", 0) != 0) return "blkverify:" + r + ":" + t;
  return qemu_json_filename(options());
}

Status BlkverifyFilter::mismatch(const char* op, uint64_t offset, uint64_t bytes,
                                 const std::string& what) {
  char head[128];
  std::snprintf(head, sizeof head, "blkverify: %s offset=%llu bytes=%llu ", op,
                static_cast<unsigned long long>(offset), static_cast<unsigned long long>(bytes));
  const std::string message = head + what;
  if (on_mismatch_) {
    on_mismatch_(message);
    return fail(Error::io());
  }
  // QEMU's blkverify_err(): the message on stderr, then exit(1) (not an abort).
  std::fflush(stdout);
  std::fprintf(stderr, "%s\n", message.c_str());
  std::exit(1);
}

Status BlkverifyFilter::compare_results(const char* op, uint64_t offset, uint64_t bytes,
                                        const Status& t, const Status& r) {
  if (result_code(t) != result_code(r)) {
    return mismatch(op, offset, bytes,
                    "return value mismatch " + std::to_string(result_code(t)) +
                        " != " + std::to_string(result_code(r)));
  }
  return t;
}

Task<Status> BlkverifyFilter::do_read(uint64_t offset, IoVec qiov, RequestFlags flags) {
  const uint64_t bytes = qiov.size();
  AlignedBuffer raw_buf(std::max<uint64_t>(bytes, 1),
                        std::max<uint32_t>(limits_.memory_alignment, 8));
  Status t = co_await test().read(offset, qiov, flags);
  Status r = co_await raw().read(offset, IoVec(raw_buf.data(), bytes), flags);
  Status both = compare_results("read", offset, bytes, t, r);
  if (!both) co_return both;
  // Compare in pieces small enough for a stack buffer.
  uint8_t piece[4096];
  for (uint64_t done = 0; done < bytes;) {
    const uint64_t n = std::min<uint64_t>(sizeof piece, bytes - done);
    qiov.copy_to(done, piece, n);
    if (std::memcmp(piece, raw_buf.data() + done, n) != 0) {
      uint64_t at = 0;
      while (piece[at] == raw_buf.data()[done + at]) ++at;
      co_return mismatch("read", offset, bytes,
                         "contents mismatch at offset " + std::to_string(offset + done + at));
    }
    done += n;
  }
  co_return ok();
}

Task<Status> BlkverifyFilter::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  Status t = co_await test().write(offset, qiov, flags);
  Status r = co_await raw().write(offset, qiov, flags);
  co_return compare_results("write", offset, qiov.size(), t, r);
}

Task<Result<BlockStatus>> BlkverifyFilter::do_block_status(uint64_t offset, uint64_t bytes,
                                                           WantZero) {
  // QEMU's blkverify is a filter over its raw child: the status is the raw child's.
  co_return BlockStatus{kStatusRaw | kStatusOffsetValid, bytes, offset, &raw()};
}

Task<Result<NodePtr>> open_blkverify_node(OpenContext& ctx, Options& options) {
  Result<NodePtr> raw = co_await open_probed_child(ctx, options, "raw");
  if (!raw) co_return fail(raw.error());
  Result<NodePtr> test = co_await open_child(ctx, options, "test", "");
  if (!test) {
    (void)co_await (*raw)->close();
    co_return fail(test.error());
  }
  co_return NodePtr(new BlkverifyFilter(ctx.loop, std::move(*test), std::move(*raw)));
}

}  // namespace qblock
