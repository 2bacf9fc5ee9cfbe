// BackupJob on memory nodes: the target ends equal to the source as it was when the job
// started, whatever guest writes, write-zeroes and discards pass the filter during the copy
// (copy-before-write); sync=none copies only what guests overwrite; the users end on the
// source; sync=bitmap copies what a frozen dirty bitmap marks and gives the bitmap back as its
// bitmap-mode says. Also the chain helpers the commit job uses (layers_above, replace_child).
#include "jobs/backup.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "block/formats/qcow2/create.h"
#include "block/protocols/memory.h"
#include "block/test_util.h"
#include "jobs/allocated_above.h"
#include "qblock/dirty_bitmaps.h"

namespace qblock {
namespace {

class Events : public JobListener {
 public:
  void job_status_changed(const Job& job) override {
    log += std::string(job_status_name(job.status())) + " ";
  }
  void job_ready(const Job&) override {}
  void job_pending(const Job&) override {}
  void job_completed(const Job& job) override { error = job.error(); }
  void job_cancelled(const Job&) override { log += "CANCELLED "; }
  void job_io_error(const Job&, bool, const std::string&) override {}
  void job_finished(Job&) override { finished = true; }
  std::string log;
  std::string error;
  bool finished = false;
};

class BackupTest : public testing::LoopTest {
 protected:
  void spin_until(const bool& flag) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!flag && std::chrono::steady_clock::now() < deadline) loop_->run_once(true);
    ASSERT_TRUE(flag);
  }
};

void guest_writes(EventLoop& loop, BlockNode*& users, std::vector<uint8_t>& model, int rounds,
                  uint64_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  int outstanding = 0;
  auto writer = [&](uint64_t offset, uint64_t bytes, int kind, uint8_t value) -> Task<void> {
    Status s = ok();
    if (kind == 0) {
      s = co_await users->write_zeroes(offset, bytes, RequestFlags());
    } else {
      AlignedBuffer buf(bytes, 4096);
      std::fill_n(buf.data(), bytes, value);
      s = co_await users->write(offset, IoVec(buf.data(), bytes));
    }
    EXPECT_TRUE(s.has_value());
    --outstanding;
  };
  for (int round = 0; round < rounds; ++round) {
    const uint64_t offset = (rng() % (size / 512 - 256)) * 512;
    const uint64_t bytes = (1 + rng() % 256) * 512;
    const int kind = rng() % 5 == 0 ? 0 : 1;
    const uint8_t value = kind == 0 ? 0 : static_cast<uint8_t>(rng());
    std::fill_n(model.begin() + static_cast<std::ptrdiff_t>(offset), bytes, value);
    ++outstanding;
    spawn(writer(offset, bytes, kind, value));
    // A few loop turns between writes: the copy advances amid them.
    for (int i = 0; i < 3; ++i) loop.run_once(false);
  }
  while (outstanding > 0) loop.run_once(false);
}

TEST_F(BackupTest, TargetIsTheSourceAtTheStart) {
  constexpr uint64_t kSize = 8 << 20;
  MemoryNode source(*loop_, {.size = kSize, .async = true});
  MemoryNode target(*loop_, {.size = kSize, .async = true});
  for (uint64_t i = 0; i < kSize; i += 4096) {
    std::fill_n(source.data().begin() + static_cast<std::ptrdiff_t>(i), 4096,
                static_cast<uint8_t>(i / 4096));
  }
  const std::vector<uint8_t> start = source.data();
  std::vector<uint8_t> model = start;
  Events ev;
  BlockNode* users = &source;
  // Throttled to 1 MiB/s (8 s for the copy) so that the writes land amid it however slowly
  // they run (ASan, a loaded machine); then unthrottled to finish.
  BackupJob job(*loop_, BackupOptions{.job = {.id = "b", .speed = 1 << 20}}, ev, source, target,
                [&](BlockNode& n) { users = &n; });
  EXPECT_EQ(users, &job.filter());
  job.start();
  guest_writes(*loop_, users, model, 300, kSize, 11);
  EXPECT_FALSE(ev.finished) << "the writes should overlap the copy";
  ASSERT_OK(job.set_speed(0));
  spin_until(ev.finished);
  EXPECT_EQ(ev.error, "");
  EXPECT_EQ(ev.log, "created running waiting pending concluded null ");
  EXPECT_EQ(users, &source);
  EXPECT_TRUE(target.data() == start);
  EXPECT_TRUE(source.data() == model);
  EXPECT_EQ(job.current_progress(), kSize);
  EXPECT_EQ(job.total_progress(), kSize);
}

TEST_F(BackupTest, SyncNoneCopiesOnlyWhatGuestsOverwrite) {
  constexpr uint64_t kSize = 1 << 20;
  MemoryNode source(*loop_, {.size = kSize});
  MemoryNode target(*loop_, {.size = kSize});
  std::fill(source.data().begin(), source.data().end(), 0x11);
  Events ev;
  BlockNode* users = &source;
  BackupJob job(*loop_, BackupOptions{.job = {"b"}, .sync = BackupSync::kNone}, ev, source, target,
                [&](BlockNode& n) { users = &n; });
  job.start();
  for (int i = 0; i < 100; ++i) loop_->run_once(false);
  EXPECT_EQ(job.status(), JobStatus::kRunning);
  std::vector<uint8_t> buf(4096, 0x22);
  ASSERT_OK(run_sync(*loop_, users->write(70000, IoVec(buf.data(), buf.size()))));
  // The 64 KiB granule the write touched went to the target first, nothing else.
  EXPECT_TRUE(std::all_of(target.data().begin() + 65536, target.data().begin() + 131072,
                          [](uint8_t b) { return b == 0x11; }));
  EXPECT_TRUE(std::all_of(target.data().begin(), target.data().begin() + 65536,
                          [](uint8_t b) { return b == 0; }));
  EXPECT_EQ(source.data()[70000], 0x22);
  // A second write to the granule copies nothing again.
  ASSERT_OK(run_sync(*loop_, users->write(65536, IoVec(buf.data(), buf.size()))));
  EXPECT_EQ(target.data()[65536], 0x11);
  ASSERT_TRUE(job.cancel(true));
  spin_until(ev.finished);
  EXPECT_EQ(users, &source);
  EXPECT_EQ(ev.log, "created running aborting CANCELLED concluded null ");
}

// sync=bitmap from a qcow2 source whose bitmap "bm" marks the granules at 0 and 6 MiB (64 KiB
// granules); a guest write at 2 MiB lands during the job. The job copies in 1 MiB steps, so at
// 1 byte/s it copies the granule at 0 and then waits: a cancel leaves 6 MiB uncopied.
class BackupBitmapTest : public BackupTest {
 protected:
  void SetUp() override {
    BackupTest::SetUp();
    target_ =
        std::make_unique<MemoryNode>(*loop_, MemoryNode::Config{.size = kSize, .async = true});
    qcow2::Qcow2CreateOptions opts;
    opts.filename = path_;
    opts.size = kSize;
    ASSERT_OK(run_sync(*loop_, qcow2::create_qcow2(*loop_, opts)));
    source_ = open(R"({"driver":"qcow2","file":{"driver":"file","filename":")" + path_ + "\"}}");
    ASSERT_OK(add_dirty_bitmap(*source_, "bm", 65536, BitmapPersistence::kTransient,
                               BitmapRecording::kEnabled));
    write(*source_, 0, 0x11);
    write(*source_, 6 << 20, 0x66);
  }
  void TearDown() override {
    close(*source_);
    BackupTest::TearDown();
  }
  void write(BlockNode& node, uint64_t offset, uint8_t value) {
    AlignedBuffer buf(4096, 4096);
    std::fill_n(buf.data(), 4096, value);
    ASSERT_OK(run_sync(*loop_, node.write(offset, IoVec(buf.data(), 4096))));
  }
  DirtyBitmapInfo bm() {
    for (const DirtyBitmapInfo& b : dirty_bitmaps(*source_)) {
      if (b.name == "bm") return b;
    }
    ADD_FAILURE() << "bitmap bm missing";
    return {};
  }
  // Runs sync=bitmap with `mode` at `speed`; the guest writes at 2 MiB once the job runs;
  // cancels the job when `cancel`. Returns the job's last status line.
  std::string backup(BitmapMode mode, uint64_t speed, bool cancel) {
    Result<const DirtyBitmap*> frozen = freeze_dirty_bitmap(*source_, "bm", true);
    EXPECT_TRUE(frozen.has_value());
    EXPECT_TRUE(bm().busy);
    EXPECT_FALSE(clear_dirty_bitmap(*source_, "bm").has_value());
    Events ev;
    BlockNode* users = source_.get();
    BackupJob job(*loop_,
                  BackupOptions{.job = {.id = "b", .speed = speed},
                                .sync = BackupSync::kBitmap,
                                .bitmap = "bm",
                                .frozen = *frozen,
                                .bitmap_mode = mode},
                  ev, *source_, *target_, [&](BlockNode& n) { users = &n; });
    job.start();
    write(*users, 2 << 20, 0x22);
    if (cancel) {
      EXPECT_FALSE(ev.finished);
      EXPECT_TRUE(job.cancel(true));
    }
    spin_until(ev.finished);
    EXPECT_EQ(job.total_progress(), 128u << 10);  // the two granules dirty at the start
    EXPECT_FALSE(bm().busy);
    return ev.log;
  }
  // Whether the target holds `value` at `offset` (what the backup copied there).
  bool copied(uint64_t offset, uint8_t value) { return target_->data()[offset] == value; }

  static constexpr uint64_t kSize = 8 << 20;
  testing::TempDir dir_;
  std::string path_ = dir_.file("src.qcow2");
  NodePtr source_;
  std::unique_ptr<MemoryNode> target_;  // made in SetUp (the loop exists then)
};

TEST_F(BackupBitmapTest, OnSuccessKeepsOnlyTheWritesMadeDuringTheJob) {
  EXPECT_EQ(backup(BitmapMode::kOnSuccess, 0, false),
            "created running waiting pending concluded null ");
  EXPECT_TRUE(copied(0, 0x11));
  EXPECT_TRUE(copied(6 << 20, 0x66));
  EXPECT_FALSE(copied(2 << 20, 0x22));  // written after the point in time
  EXPECT_FALSE(copied(1 << 20, 0x11));  // never dirty: not copied
  EXPECT_EQ(bm().count, 64u << 10);     // the write at 2 MiB
}

TEST_F(BackupBitmapTest, NeverKeepsTheBitmapAndAddsTheWrites) {
  backup(BitmapMode::kNever, 0, false);
  EXPECT_TRUE(copied(6 << 20, 0x66));
  EXPECT_EQ(bm().count, 192u << 10);
}

TEST_F(BackupBitmapTest, CancelledOnSuccessGivesEverythingBack) {
  EXPECT_EQ(backup(BitmapMode::kOnSuccess, 1, true),
            "created running aborting CANCELLED concluded null ");
  EXPECT_EQ(bm().count, 192u << 10);
}

TEST_F(BackupBitmapTest, CancelledAlwaysKeepsWhatWasNotCopied) {
  backup(BitmapMode::kAlways, 1, true);
  EXPECT_TRUE(copied(0, 0x11));
  EXPECT_FALSE(copied(6 << 20, 0x66));
  // 6 MiB (not copied) and 2 MiB (written meanwhile); 0 was copied.
  Result<std::vector<std::pair<uint64_t, bool>>> runs =
      dirty_bitmap_extents(*source_, "bm", 0, kSize);
  ASSERT_TRUE(runs.has_value());
  const std::vector<std::pair<uint64_t, bool>> expected = {{2 << 20, false},
                                                           {64 << 10, true},
                                                           {(4 << 20) - (64 << 10), false},
                                                           {64 << 10, true},
                                                           {(2 << 20) - (64 << 10), false}};
  EXPECT_EQ(*runs, expected);
}

TEST_F(BackupTest, LayersAboveAndReplaceChild) {
  // top -> mid -> base as backing children (memory nodes do not read through them).
  MemoryNode top(*loop_, {.size = 4096});
  top.add_child(ChildRole::kBacking, "backing",
                std::make_unique<MemoryNode>(*loop_, MemoryNode::Config{.size = 4096}));
  BlockNode* mid = top.child(ChildRole::kBacking);
  mid->add_child(ChildRole::kBacking, "backing",
                 std::make_unique<MemoryNode>(*loop_, MemoryNode::Config{.size = 4096}));
  BlockNode* base = mid->child(ChildRole::kBacking);
  auto layers = layers_above(top, base);
  ASSERT_TRUE(layers);
  EXPECT_EQ(*layers, (std::vector<BlockNode*>{&top, mid}));
  EXPECT_EQ(layers_above(top, nullptr)->size(), 3u);
  MemoryNode stranger(*loop_, {.size = 4096});
  EXPECT_FALSE(layers_above(top, &stranger));
  // Dropping mid: base moves up under top, mid comes back without it.
  std::unique_ptr<BlockNode> kept = mid->replace_child(ChildRole::kBacking, nullptr);
  EXPECT_EQ(kept.get(), base);
  EXPECT_EQ(mid->child(ChildRole::kBacking), nullptr);
  std::unique_ptr<BlockNode> dropped = top.replace_child(ChildRole::kBacking, std::move(kept));
  EXPECT_EQ(dropped.get(), mid);
  EXPECT_EQ(top.child(ChildRole::kBacking), base);
  EXPECT_EQ(top.children().size(), 1u);
}

}  // namespace
}  // namespace qblock
