// BackupJob on memory nodes: the target ends equal to the source as it was when the job
// started, whatever guest writes, write-zeroes and discards pass the filter during the copy
// (copy-before-write); sync=none copies only what guests overwrite; the users end on the
// source. Also the chain helpers the commit job uses (layers_above, replace_child).
#include "jobs/backup.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "block/protocols/memory.h"
#include "block/test_util.h"
#include "jobs/allocated_above.h"

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
