// MirrorJob and its mirror_top filter on memory nodes: the filter advertises exactly its
// source's write/zero flags, zero ranges are copied as efficient write-zeroes, guest writes
// during the copy (background and write-blocking) end up on the target, and the pivot
// switches the users without losing a write.
#include "jobs/mirror.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "block/dirty_bitmap.h"
#include "block/protocols/memory.h"
#include "block/test_util.h"

namespace qblock {
namespace {

using Kind = RecordedRequest::Kind;

class Events : public JobListener {
 public:
  void job_status_changed(const Job& job) override {
    log += std::string(job_status_name(job.status())) + " ";
  }
  void job_ready(const Job&) override { ready = true; }
  void job_pending(const Job&) override {}
  void job_completed(const Job& job) override { error = job.error(); }
  void job_cancelled(const Job&) override { log += "CANCELLED "; }
  void job_io_error(const Job&, bool is_read, const std::string& action) override {
    errors += std::string(is_read ? "read:" : "write:") + action + " ";
  }
  void job_finished(Job&) override { finished = true; }
  std::string log;
  std::string errors;
  std::string error;
  bool ready = false;
  bool finished = false;
};

class MirrorTest : public testing::LoopTest {
 protected:
  void spin_until(const bool& flag) {
    for (int i = 0; i < 100000 && !flag; ++i) loop_->run_once(false);
    ASSERT_TRUE(flag);
  }
};

TEST(DirtyBitmap, SetResetNext) {
  DirtyBitmap b(10 * 4096 + 100, 4096);
  EXPECT_FALSE(b.any());
  b.set(4097, 1);
  b.set(10 * 4096, 1);  // the short last granule
  EXPECT_EQ(b.dirty_bytes(), 4096u + 100u);
  auto n = b.next_dirty(0, 1 << 20);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->first, 4096u);
  EXPECT_EQ(n->second, 4096u);
  b.reset(4096, 4095);  // not the whole granule
  EXPECT_EQ(b.dirty_bytes(), 4096u + 100u);
  b.reset(4096, 4096);
  n = b.next_dirty(8192, 1 << 20);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->first, 10u * 4096);
  EXPECT_EQ(n->second, 100u);
  b.reset(10 * 4096, 100);
  EXPECT_FALSE(b.any());
  b.set(0, 10 * 4096);
  n = b.next_dirty(5 * 4096, 2 * 4096);
  EXPECT_EQ(n->first, 5u * 4096);
  EXPECT_EQ(n->second, 2u * 4096);
}

TEST_F(MirrorTest, FilterInheritsExactlyTheSourceFlags) {
  MemoryNode source(*loop_, {.size = 1 << 20, .efficient_zeroes = true, .fua = true});
  MemoryNode target(*loop_, {.size = 1 << 20});
  Events ev;
  BlockNode* users = &source;
  MirrorJob job(*loop_, MirrorOptions{.job = {"j"}}, ev, source, target,
                [&](BlockNode& n) { users = &n; });
  EXPECT_EQ(users, &job.filter());
  EXPECT_EQ(job.filter().supported_write_flags(), source.supported_write_flags());
  EXPECT_EQ(job.filter().supported_zero_flags(), source.supported_zero_flags());
  // A guest NO_FALLBACK|MAY_UNMAP write-zeroes reaches the source with its flags.
  source.clear_log();
  const RequestFlags flags = RequestFlag::kMayUnmap | RequestFlag::kNoFallback;
  ASSERT_OK(run_sync(*loop_, job.filter().write_zeroes(0, 65536, flags)));
  ASSERT_EQ(source.log().size(), 1u);
  EXPECT_EQ(source.log()[0].kind, Kind::kWriteZeroes);
  EXPECT_EQ(source.log()[0].flags, flags);
  ASSERT_TRUE(job.cancel(true));
  job.start();
  spin_until(ev.finished);
  EXPECT_EQ(users, &source);
}

// A memory node that reports the zero ranges it holds, as a format does for unallocated or
// zero clusters (64 KiB units).
class ZeroReportingNode : public MemoryNode {
 public:
  using MemoryNode::MemoryNode;

 protected:
  Task<Result<BlockStatus>> do_block_status(uint64_t offset, uint64_t bytes, WantZero) override {
    const uint64_t n = std::min<uint64_t>(bytes, 65536 - offset % 65536);
    const auto begin = data().begin() + static_cast<std::ptrdiff_t>(offset);
    const bool zero = std::all_of(begin, begin + static_cast<std::ptrdiff_t>(n),
                                  [](uint8_t b) { return b == 0; });
    co_return BlockStatus{zero ? uint32_t{kStatusZero} : uint32_t{kStatusData}, n, 0, nullptr};
  }
};

void fill(MemoryNode& node, uint64_t offset, uint64_t bytes, uint8_t value) {
  std::fill_n(node.data().begin() + static_cast<std::ptrdiff_t>(offset), bytes, value);
}

TEST_F(MirrorTest, CopiesDataAndZeroesThenPivots) {
  constexpr uint64_t kSize = 4 << 20;
  ZeroReportingNode source(*loop_, {.size = kSize});
  MemoryNode target(*loop_, {.size = kSize, .efficient_zeroes = true});
  fill(source, 0, 1 << 20, 0x11);
  fill(target, 0, kSize, 0xee);  // stale: must end up overwritten or zeroed
  Events ev;
  BlockNode* users = &source;
  MirrorJob job(*loop_, MirrorOptions{.job = {"j"}, .granularity = 65536}, ev, source, target,
                [&](BlockNode& n) { users = &n; });
  job.start();
  spin_until(ev.ready);
  EXPECT_EQ(target.data(), source.data());
  // The zero ranges went as efficient write-zeroes.
  bool saw_zeroes = false;
  for (const RecordedRequest& r : target.log()) {
    if (r.kind == Kind::kWriteZeroes) {
      saw_zeroes = true;
      EXPECT_TRUE(r.flags.has(RequestFlag::kNoFallback));
      EXPECT_TRUE(r.flags.has(RequestFlag::kMayUnmap));
    }
  }
  EXPECT_TRUE(saw_zeroes);
  ASSERT_TRUE(job.complete());
  spin_until(ev.finished);
  EXPECT_EQ(users, &target);
  EXPECT_EQ(ev.error, "");
  EXPECT_EQ(ev.log, "created running ready waiting pending concluded null ");
}

// Guest writes through the filter while the copy runs; afterwards the target holds exactly
// the model of what was written.
void run_with_guest_writes(testing::LoopTest& t, EventLoop& loop, bool write_blocking) {
  constexpr uint64_t kSize = 8 << 20;
  MemoryNode source(loop, {.size = kSize, .async = true});
  MemoryNode target(loop, {.size = kSize, .async = true});
  fill(source, 0, kSize, 0x5a);
  std::vector<uint8_t> model = source.data();
  Events ev;
  BlockNode* users = &source;
  MirrorOptions options{.job = {"j"}, .granularity = 65536, .buf_size = 1 << 20};
  options.write_blocking = write_blocking;
  MirrorJob job(loop, options, ev, source, target, [&](BlockNode& n) { users = &n; });
  job.start();
  std::mt19937 rng(7);
  int outstanding = 0;
  auto writer = [&](uint64_t offset, uint64_t bytes, uint8_t value) -> Task<void> {
    AlignedBuffer buf(bytes, 4096);
    std::fill_n(buf.data(), bytes, value);
    Status s = co_await users->write(offset, IoVec(buf.data(), bytes));
    EXPECT_TRUE(s.has_value());
    --outstanding;
  };
  for (int round = 0; round < 200; ++round) {
    const uint64_t offset = (rng() % (kSize / 512 - 64)) * 512;
    const uint64_t bytes = (1 + rng() % 64) * 512;
    const uint8_t value = static_cast<uint8_t>(rng());
    std::fill_n(model.begin() + static_cast<std::ptrdiff_t>(offset), bytes, value);
    ++outstanding;
    spawn(writer(offset, bytes, value));
    // Completes in order per range only if overlapping writes are serialised: keep one write
    // per range in flight by waiting for each before the next.
    while (outstanding > 0) loop.run_once(false);
    if (round == 100 && ev.ready) {
      EXPECT_TRUE(job.complete());  // the pivot happens amid the writes
    }
  }
  for (int i = 0; i < 100000 && !ev.ready; ++i) loop.run_once(false);
  ASSERT_TRUE(ev.ready);
  (void)job.complete();
  for (int i = 0; i < 100000 && !ev.finished; ++i) loop.run_once(false);
  ASSERT_TRUE(ev.finished);
  EXPECT_EQ(users, &target);
  EXPECT_TRUE(target.data() == model);
  (void)t;
}

TEST_F(MirrorTest, GuestWritesDuringBackgroundCopy) { run_with_guest_writes(*this, *loop_, false); }

TEST_F(MirrorTest, GuestWritesDuringWriteBlockingCopy) {
  run_with_guest_writes(*this, *loop_, true);
}

// Writes held at the filter during the pivot go to the target afterwards, in order.
TEST_F(MirrorTest, WritesDuringPivotReachTheTarget) {
  constexpr uint64_t kSize = 1 << 20;
  MemoryNode source(*loop_, {.size = kSize, .async = true});
  MemoryNode target(*loop_, {.size = kSize, .async = true});
  Events ev;
  BlockNode* users = &source;
  MirrorJob job(*loop_, MirrorOptions{.job = {"j"}}, ev, source, target,
                [&](BlockNode& n) { users = &n; });
  job.start();
  spin_until(ev.ready);
  ASSERT_TRUE(job.complete());
  BlockNode* filter = users;
  int done = 0;
  std::vector<AlignedBuffer> bufs;
  for (int i = 0; i < 8; ++i) {
    bufs.emplace_back(4096, 4096);
    std::fill_n(bufs.back().data(), 4096, static_cast<uint8_t>(i + 1));
  }
  auto writer = [&](int i) -> Task<void> {
    Status s = co_await filter->write(0, IoVec(bufs[static_cast<std::size_t>(i)].data(), 4096));
    EXPECT_TRUE(s.has_value());
    ++done;
  };
  for (int i = 0; i < 8; ++i) {
    spawn(writer(i));
    loop_->run_once(false);
  }
  spin_until(ev.finished);
  for (int i = 0; i < 100000 && done < 8; ++i) loop_->run_once(false);
  EXPECT_EQ(done, 8);
  EXPECT_EQ(users, &target);
  EXPECT_EQ(target.data()[0], 8);
}

// A target whose writes fail while `failing` is set.
class FailingNode : public MemoryNode {
 public:
  using MemoryNode::MemoryNode;
  bool failing = true;

 protected:
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override {
    if (failing) co_return fail(Error::io());
    co_return co_await MemoryNode::do_write(offset, std::move(qiov), flags);
  }
};

TEST_F(MirrorTest, TargetErrorReportedEndsTheJob) {
  MemoryNode source(*loop_, {.size = 1 << 20});
  fill(source, 0, 1 << 20, 0x42);
  FailingNode target(*loop_, {.size = 1 << 20});
  Events ev;
  BlockNode* users = &source;
  MirrorJob job(*loop_, MirrorOptions{.job = {"j"}}, ev, source, target,
                [&](BlockNode& n) { users = &n; });
  job.start();
  spin_until(ev.finished);
  EXPECT_EQ(ev.errors.substr(0, 13), "write:report ");
  EXPECT_FALSE(ev.error.empty());
  EXPECT_EQ(ev.log, "created running aborting concluded null ");
  EXPECT_EQ(users, &source);
}

TEST_F(MirrorTest, TargetErrorWithStopPausesUntilResumed) {
  MemoryNode source(*loop_, {.size = 1 << 20});
  fill(source, 0, 1 << 20, 0x42);
  FailingNode target(*loop_, {.size = 1 << 20});
  Events ev;
  MirrorOptions options{.job = {"j"}};
  options.on_target_error = OnError::kStop;
  MirrorJob job(*loop_, options, ev, source, target, [](BlockNode&) {});
  job.start();
  for (int i = 0; i < 1000 && job.status() != JobStatus::kPaused; ++i) loop_->run_once(false);
  ASSERT_EQ(job.status(), JobStatus::kPaused);
  EXPECT_STREQ(job.io_status(), "failed");
  EXPECT_EQ(ev.errors.substr(0, 11), "write:stop ");
  target.failing = false;
  ASSERT_TRUE(job.resume());
  EXPECT_STREQ(job.io_status(), "ok");
  spin_until(ev.ready);
  EXPECT_EQ(target.data(), source.data());
  ASSERT_TRUE(job.cancel(true));
  spin_until(ev.finished);
}

}  // namespace
}  // namespace qblock
