// Request-layer tests: flag filtering, ALLOCATE, NO_FALLBACK, the write-zeroes fallback, FUA
// emulation, padding, splitting and request serialisation (block-semantics.md §1–§3).
#include <gtest/gtest.h>

#include "block/filters/passthrough.h"
#include "block/protocols/memory.h"
#include "block/test_util.h"
#include "qblock/block_backend.h"
#include "runtime/sync.h"

namespace qblock {
namespace {

using testing::LoopTest;
using Kind = RecordedRequest::Kind;

// A protocol node whose writes stay in flight until release() — to hold a request open.
class GateNode : public BlockNode {
 public:
  explicit GateNode(EventLoop& loop) : BlockNode(loop, "gate", NodeKind::kProtocol), gate_(loop) {
    supported_zero_flags_ = RequestFlag::kMayUnmap | RequestFlag::kNoFallback;
  }
  uint64_t length() const override { return 1 << 20; }
  void release() { gate_.wake_all(); }
  int writes_started = 0;
  int zeroes_done = 0;

 protected:
  Task<Status> do_read(uint64_t, IoVec qiov, RequestFlags) override {
    qiov.memset(0, 0, qiov.size());
    co_return ok();
  }
  Task<Status> do_write(uint64_t, IoVec, RequestFlags) override {
    ++writes_started;
    co_await gate_.wait();
    co_return ok();
  }
  Task<Status> do_write_zeroes(uint64_t, uint64_t, RequestFlags) override {
    ++zeroes_done;
    co_return ok();
  }

 private:
  WaitQueue gate_;
};

Task<void> store_status(Task<Status> task, Status* out, bool* done) {
  *out = co_await std::move(task);
  *done = true;
}

class RequestLayerTest : public LoopTest {
 protected:
  MemoryNode& memory(BlockNode& n) { return static_cast<MemoryNode&>(n); }
  Status write_pattern(BlockNode& n, uint64_t offset, uint64_t len, uint8_t byte,
                       RequestFlags flags = {}) {
    std::vector<uint8_t> buf(len, byte);
    return run_sync(*loop_, n.write(offset, IoVec(buf.data(), len), flags));
  }
};

TEST_F(RequestLayerTest, AllocateOnNodeWithoutEfficientZeroingIsEnotsupAndWritesNothing) {
  NodePtr node = open(R"({"driver":"memory","size":65536})");
  ASSERT_OK(write_pattern(*node, 0, 65536, 0xaa));
  memory(*node).clear_log();
  EXPECT_ERRNO(run_sync(*loop_, node->write_zeroes(0, 4096, kAllocate)), ENOTSUP);
  EXPECT_TRUE(memory(*node).log().empty());
  EXPECT_EQ(memory(*node).data()[0], 0xaa);
  close(*node);
}

TEST_F(RequestLayerTest, AllocateOnEfficientNodeZeroesWithAllocateFlagsPassedDown) {
  NodePtr node = open(R"({"driver":"memory","size":65536,"efficient-zeroes":true})");
  ASSERT_OK(write_pattern(*node, 0, 65536, 0xaa));
  memory(*node).clear_log();
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(4096, 4096, kAllocate)));
  ASSERT_EQ(memory(*node).log().size(), 1u);
  EXPECT_EQ(memory(*node).log()[0],
            (RecordedRequest{Kind::kWriteZeroes, 4096, 4096, RequestFlag::kNoFallback}));
  EXPECT_EQ(memory(*node).data()[4096], 0);
  EXPECT_EQ(memory(*node).data()[4095], 0xaa);
  close(*node);
}

TEST_F(RequestLayerTest, AllocateOverlappingInFlightWriteFailsWithEbusyWithoutWaiting) {
  GateNode gate(*loop_);
  std::vector<uint8_t> buf(4096, 1);
  Status write_status;
  bool write_done = false;
  spawn(store_status(gate.write(0, IoVec(buf.data(), buf.size())), &write_status, &write_done));
  EXPECT_EQ(gate.writes_started, 1);
  // The write is in flight; ALLOCATE over an overlapping range must fail immediately.
  EXPECT_ERRNO(run_sync(*loop_, gate.write_zeroes(2048, 4096, kAllocate)), EBUSY);
  EXPECT_EQ(gate.zeroes_done, 0);
  EXPECT_FALSE(write_done);
  // A non-overlapping ALLOCATE goes through.
  EXPECT_OK(run_sync(*loop_, gate.write_zeroes(8192, 4096, kAllocate)));
  EXPECT_EQ(gate.zeroes_done, 1);
  gate.release();
  while (!write_done) loop_->run_once();
  EXPECT_OK(write_status);
  ASSERT_OK(run_sync(*loop_, gate.close()));
}

TEST_F(RequestLayerTest, SerialisingWriteWaitsForOverlappingInFlightWrite) {
  GateNode gate(*loop_);
  std::vector<uint8_t> buf(4096, 1);
  Status first, second;
  bool first_done = false, second_done = false;
  spawn(store_status(gate.write(0, IoVec(buf.data(), buf.size())), &first, &first_done));
  spawn(store_status(gate.write(1024, IoVec(buf.data(), 1024), RequestFlag::kSerialising), &second,
                     &second_done));
  for (int i = 0; i < 10; ++i) loop_->run_once(false);
  EXPECT_EQ(gate.writes_started, 1);  // the serialising one is waiting, not started
  gate.release();
  while (!first_done || gate.writes_started < 2) loop_->run_once();
  gate.release();
  while (!second_done) loop_->run_once();
  EXPECT_OK(first);
  EXPECT_OK(second);
  ASSERT_OK(run_sync(*loop_, gate.close()));
}

TEST_F(RequestLayerTest, NoFallbackUnalignedIsEnotsup) {
  NodePtr node =
      open(R"({"driver":"memory","size":65536,"efficient-zeroes":true,"request-alignment":512})");
  EXPECT_ERRNO(run_sync(*loop_, node->write_zeroes(100, 512, RequestFlag::kNoFallback)), ENOTSUP);
  EXPECT_ERRNO(run_sync(*loop_, node->write_zeroes(512, 100, RequestFlag::kNoFallback)), ENOTSUP);
  EXPECT_TRUE(memory(*node).log().empty());
  EXPECT_OK(run_sync(*loop_, node->write_zeroes(512, 512, RequestFlag::kNoFallback)));
  close(*node);
}

TEST_F(RequestLayerTest, NoFallbackOnNodeNotAdvertisingItIsEnotsupBeforeTheDriver) {
  NodePtr node = open(R"({"driver":"memory","size":65536})");
  EXPECT_ERRNO(run_sync(*loop_, node->write_zeroes(0, 4096, RequestFlag::kNoFallback)), ENOTSUP);
  EXPECT_TRUE(memory(*node).log().empty());
  close(*node);
}

TEST_F(RequestLayerTest, WriteZeroesFallbackWritesZeroBuffersInChunksOfAtMost16MiB) {
  const uint64_t size = 40 << 20;
  NodePtr node = open(R"({"driver":"memory","size":)" + std::to_string(size) + "}");
  ASSERT_OK(write_pattern(*node, 0, size, 0x55));
  memory(*node).clear_log();
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(0, size)));
  const auto& log = memory(*node).log();
  ASSERT_EQ(log.size(), 4u);
  EXPECT_EQ(log[0].kind, Kind::kWriteZeroes);
  EXPECT_EQ(log[1], (RecordedRequest{Kind::kWrite, 0, 16 << 20, {}}));
  EXPECT_EQ(log[2], (RecordedRequest{Kind::kWrite, 16 << 20, 16 << 20, {}}));
  EXPECT_EQ(log[3], (RecordedRequest{Kind::kWrite, 32 << 20, 8 << 20, {}}));
  const auto& data = memory(*node).data();
  EXPECT_TRUE(std::all_of(data.begin(), data.end(), [](uint8_t b) { return b == 0; }));
  close(*node);
}

TEST_F(RequestLayerTest, UnsupportedFuaIsEmulatedWithAFlush) {
  NodePtr node = open(R"({"driver":"memory","size":65536})");
  ASSERT_OK(write_pattern(*node, 0, 512, 1, RequestFlag::kFua));
  ASSERT_EQ(memory(*node).log().size(), 2u);
  EXPECT_EQ(memory(*node).log()[0], (RecordedRequest{Kind::kWrite, 0, 512, {}}));
  EXPECT_EQ(memory(*node).log()[1].kind, Kind::kFlush);
  close(*node);
}

TEST_F(RequestLayerTest, SupportedFuaIsPassedDownWithoutAFlush) {
  NodePtr node = open(R"({"driver":"memory","size":65536,"fua":true})");
  ASSERT_OK(write_pattern(*node, 0, 512, 1, RequestFlag::kFua));
  ASSERT_EQ(memory(*node).log().size(), 1u);
  EXPECT_EQ(memory(*node).log()[0], (RecordedRequest{Kind::kWrite, 0, 512, RequestFlag::kFua}));
  close(*node);
}

TEST_F(RequestLayerTest, UnalignedWriteIsPaddedByReadModifyWrite) {
  NodePtr node = open(R"({"driver":"memory","size":4096,"request-alignment":512})");
  ASSERT_OK(write_pattern(*node, 0, 4096, 0x11));
  memory(*node).clear_log();
  ASSERT_OK(write_pattern(*node, 500, 100, 0x22));
  const auto& log = memory(*node).log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[0], (RecordedRequest{Kind::kRead, 0, 512, {}}));
  EXPECT_EQ(log[1], (RecordedRequest{Kind::kRead, 512, 512, {}}));
  EXPECT_EQ(log[2], (RecordedRequest{Kind::kWrite, 0, 1024, {}}));
  const auto& d = memory(*node).data();
  EXPECT_EQ(d[499], 0x11);
  EXPECT_EQ(d[500], 0x22);
  EXPECT_EQ(d[599], 0x22);
  EXPECT_EQ(d[600], 0x11);
  close(*node);
}

TEST_F(RequestLayerTest, UnalignedReadInsideOneBlockIsPadded) {
  NodePtr node = open(R"({"driver":"memory","size":4096,"request-alignment":512})");
  ASSERT_OK(write_pattern(*node, 0, 4096, 0x33));
  memory(*node).clear_log();
  std::vector<uint8_t> buf(10, 0);
  ASSERT_OK(run_sync(*loop_, node->read(1030, IoVec(buf.data(), buf.size()))));
  EXPECT_EQ(buf[0], 0x33);
  ASSERT_EQ(memory(*node).log().size(), 1u);
  EXPECT_EQ(memory(*node).log()[0], (RecordedRequest{Kind::kRead, 1024, 512, {}}));
  close(*node);
}

TEST_F(RequestLayerTest, RequestsAreSplitAtMaxTransfer) {
  NodePtr node = open(R"({"driver":"memory","size":65536,"max-transfer":4096})");
  ASSERT_OK(write_pattern(*node, 0, 10000, 0x44));
  const auto& log = memory(*node).log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[0].bytes, 4096u);
  EXPECT_EQ(log[1].bytes, 4096u);
  EXPECT_EQ(log[2], (RecordedRequest{Kind::kWrite, 8192, 1808, {}}));
  close(*node);
}

TEST_F(RequestLayerTest, PassthroughFilterInheritsFlagsFromItsChild) {
  NodePtr efficient = open(
      R"({"driver":"passthrough","file":{"driver":"memory","size":4096,"efficient-zeroes":true,"fua":true}})");
  EXPECT_TRUE(
      efficient->supported_zero_flags().has_all(RequestFlag::kMayUnmap | RequestFlag::kNoFallback));
  EXPECT_TRUE(efficient->supported_write_flags().has(RequestFlag::kFua));
  NodePtr plain = open(R"({"driver":"passthrough","file":{"driver":"memory","size":4096}})");
  EXPECT_FALSE(plain->supported_zero_flags().has(RequestFlag::kNoFallback));
  EXPECT_FALSE(plain->supported_write_flags().has(RequestFlag::kFua));
  close(*efficient);
  close(*plain);
}

TEST_F(RequestLayerTest, RawForwardsNoFallbackToItsChild) {
  NodePtr raw =
      open(R"({"driver":"raw","file":{"driver":"memory","size":65536,"efficient-zeroes":true}})");
  EXPECT_TRUE(raw->supported_zero_flags().has(RequestFlag::kNoFallback));
  ASSERT_OK(run_sync(*loop_, raw->write_zeroes(4096, 4096, RequestFlag::kNoFallback)));
  auto& mem = static_cast<MemoryNode&>(*raw->primary_child());
  ASSERT_EQ(mem.log().size(), 1u);
  EXPECT_EQ(mem.log()[0],
            (RecordedRequest{Kind::kWriteZeroes, 4096, 4096, RequestFlag::kNoFallback}));
  close(*raw);
}

TEST_F(RequestLayerTest, RawWithOffsetAndSizeIsAWindow) {
  NodePtr raw = open(
      R"({"driver":"raw","offset":"4096","size":"8192","file":{"driver":"memory","size":65536}})");
  EXPECT_EQ(raw->length(), 8192u);
  ASSERT_OK(write_pattern(*raw, 0, 512, 0x77));
  auto& mem = static_cast<MemoryNode&>(*raw->primary_child());
  EXPECT_EQ(mem.data()[4096], 0x77);
  EXPECT_EQ(mem.data()[4095], 0);
  close(*raw);
}

TEST_F(RequestLayerTest, UnknownOptionIsRejectedWithQemuMessage) {
  Result<NodePtr> node = run_sync(
      *loop_,
      open_node(*loop_,
                Options::parse(R"({"driver":"raw","bogus":"1","file":{"driver":"memory"}})"), {},
                ""));
  ASSERT_FALSE(node);
  EXPECT_EQ(node.error().message(), "Block format 'raw' does not support the option 'bogus'");
  Result<NodePtr> unknown =
      run_sync(*loop_, open_node(*loop_, Options::parse(R"({"driver":"bogus"})"), {}, ""));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message(), "Unknown driver 'bogus'");
}

TEST_F(RequestLayerTest, ReadOnlyNodeRefusesWrites) {
  OpenFlags flags;
  flags.read_only = true;
  NodePtr node = open(R"({"driver":"memory","size":4096})", flags);
  EXPECT_ERRNO(write_pattern(*node, 0, 512, 1), EPERM);
  EXPECT_ERRNO(run_sync(*loop_, node->write_zeroes(0, 512)), EPERM);
  close(*node);
}

// A large protocol node that stores nothing and records the size of every zero and discard
// request it receives: for requests far larger than a memory node could hold.
class SizeRecordingNode : public BlockNode {
 public:
  SizeRecordingNode(EventLoop& loop, uint32_t alignment, uint64_t max_pwrite_zeroes)
      : BlockNode(loop, "size-recorder", NodeKind::kProtocol) {
    limits_.request_alignment = alignment;
    limits_.max_pwrite_zeroes = max_pwrite_zeroes;
    supported_zero_flags_ = RequestFlag::kMayUnmap | RequestFlag::kNoFallback;
    OpenFlags flags;
    flags.discard = DiscardMode::kUnmap;
    set_open_flags(flags);
  }
  uint64_t length() const override { return uint64_t{16} << 30; }
  std::vector<std::pair<uint64_t, uint64_t>> zeroes, discards, writes;

 protected:
  Task<Status> do_read(uint64_t, IoVec qiov, RequestFlags) override {
    qiov.memset(0, 0, qiov.size());
    co_return ok();
  }
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags) override {
    writes.emplace_back(offset, qiov.size());
    co_return ok();
  }
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags) override {
    zeroes.emplace_back(offset, bytes);
    co_return ok();
  }
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override {
    discards.emplace_back(offset, bytes);
    co_return ok();
  }
};

// The pieces cover [offset, offset + bytes) in order, each at most `max` bytes.
void expect_pieces(const std::vector<std::pair<uint64_t, uint64_t>>& pieces, uint64_t offset,
                   uint64_t bytes, uint64_t max) {
  ASSERT_FALSE(pieces.empty());
  uint64_t pos = offset;
  for (const auto& [o, n] : pieces) {
    EXPECT_EQ(o, pos);
    EXPECT_GT(n, 0u);
    EXPECT_LE(n, max);
    pos = o + n;
  }
  EXPECT_EQ(pos, offset + bytes);
}

constexpr uint64_t kGiB = uint64_t{1} << 30;

TEST_F(RequestLayerTest, WriteZeroesLargerThanTheRequestLimitIsSplit) {
  SizeRecordingNode node(*loop_, 512, 0);
  ASSERT_OK(run_sync(*loop_, node.write_zeroes(kGiB, 5 * kGiB)));
  expect_pieces(node.zeroes, kGiB, 5 * kGiB, kMaxRequestBytes);
  EXPECT_EQ(node.zeroes.size(), 3u);
  EXPECT_EQ(node.zeroes[0].second, kMaxRequestBytes);
  EXPECT_EQ(node.tracked_requests(), 0u);
}

TEST_F(RequestLayerTest, LargeWriteZeroesHonoursMaxPwriteZeroes) {
  SizeRecordingNode node(*loop_, 512, kGiB);
  ASSERT_OK(run_sync(*loop_, node.write_zeroes(0, 5 * kGiB, RequestFlag::kNoFallback)));
  expect_pieces(node.zeroes, 0, 5 * kGiB, kGiB);
  EXPECT_EQ(node.zeroes.size(), 5u);
}

TEST_F(RequestLayerTest, UnalignedLargeWriteZeroesPadsAndSplitsAligned) {
  SizeRecordingNode node(*loop_, 4096, 0);
  const uint64_t offset = 4096 + 100, bytes = 5 * kGiB + 1000;
  ASSERT_OK(run_sync(*loop_, node.write_zeroes(offset, bytes)));
  // Head and tail blocks are read-modify-written; the middle is zeroed in aligned pieces.
  ASSERT_EQ(node.writes.size(), 2u);
  EXPECT_EQ(node.writes[0], (std::pair<uint64_t, uint64_t>{4096, 4096}));
  const uint64_t mid_end = (offset + bytes) / 4096 * 4096;
  EXPECT_EQ(node.writes[1], (std::pair<uint64_t, uint64_t>{mid_end, 4096}));
  expect_pieces(node.zeroes, 8192, mid_end - 8192, kMaxRequestBytes / 4096 * 4096);
  for (const auto& [o, n] : node.zeroes) EXPECT_EQ((o | n) % 4096, 0u);
}

TEST_F(RequestLayerTest, DiscardLargerThanTheRequestLimitIsSplit) {
  SizeRecordingNode node(*loop_, 512, 0);
  ASSERT_OK(run_sync(*loop_, node.discard(512, 6 * kGiB)));
  expect_pieces(node.discards, 512, 6 * kGiB, kMaxRequestBytes);
  EXPECT_EQ(node.discards.size(), 4u);
}

TEST_F(RequestLayerTest, ZeroesBeyondTheOffsetLimitAreRefused) {
  SizeRecordingNode node(*loop_, 512, 0);
  const uint64_t max_offset = std::numeric_limits<int64_t>::max();
  EXPECT_ERRNO(run_sync(*loop_, node.write_zeroes(max_offset - 511, 1024)), EIO);
  EXPECT_ERRNO(run_sync(*loop_, node.discard(1024, max_offset)), EIO);
  EXPECT_TRUE(node.zeroes.empty());
  EXPECT_TRUE(node.discards.empty());
}

TEST_F(RequestLayerTest, BackendAcceptsLargeZeroesButNotLargeWrites) {
  BackendOptions options;
  options.filename = R"(json:{"driver":"raw","file":{"driver":"null-co","size":8589934592}})";
  auto blk = run_sync(*loop_, BlockBackend::open(*loop_, std::move(options)));
  ASSERT_OK(blk);
  ASSERT_OK(run_sync(*loop_, (*blk)->write_zeroes(kGiB, 5 * kGiB)));
  ASSERT_OK(run_sync(*loop_, (*blk)->discard(0, 8 * kGiB)));
  EXPECT_ERRNO(run_sync(*loop_, (*blk)->write_zeroes(4 * kGiB, 5 * kGiB)), EIO);
  // Data requests keep the 2 GiB limit; the buffer is never touched.
  uint8_t byte = 0;
  EXPECT_ERRNO(run_sync(*loop_, (*blk)->write(0, IoVec(&byte, 3 * kGiB))), EINVAL);
  ASSERT_OK(run_sync(*loop_, (*blk)->close()));
}

}  // namespace
}  // namespace qblock
